"""The ``o2x`` command as a process, in the ways only a real process shows: the
reader of its output going away (``o2x watch ... | head -1``) and Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

VIN = "VR7ABCDEF12345678"
OTHER_VIN = "VXKUHZKXZL4123456"

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="no SIGPIPE convention, and no SIGINT to send, on Windows"
)


@contextmanager
def o2x_process(
    *args: str, state_dir: Path, stderr: int = subprocess.PIPE
) -> Iterator[subprocess.Popen[str]]:
    """``o2x ARGS`` running, killed if it outlives the test (a watchdog, not a pause)."""
    env = {**os.environ, "O2X_STATE_DIR": str(state_dir)}
    with subprocess.Popen(
        [sys.executable, "-m", "o2x", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    ) as proc:
        watchdog = threading.Timer(60, proc.kill)
        watchdog.start()
        try:
            yield proc
        finally:
            watchdog.cancel()
            proc.kill()


# --- the reader of the output goes away ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["watch", VIN, "--simulate", "--reception", "information", "--json"], 1),
        (["watch", VIN, "--simulate", "--reception", "information", "--backend", "trio"], 1),
        (["demo", "--json", "--pace", "0"], 1),
        (["demo", "--pace", "0"], 1),
        (["scan", "--simulate", "--sim-vin", VIN, "--json", "--timeout", "0.3"], 0),
    ],
    ids=["watch-json", "watch-text-trio", "demo-json", "demo-text", "scan-json"],
)
def test_a_command_whose_reader_stops_reading_ends_quietly(tmp_path, args, lines):
    # As `o2x ... | head -1` (or head -0): read some lines, then close the pipe.
    with o2x_process(*args, state_dir=tmp_path) as proc:
        read = [proc.stdout.readline() for _ in range(lines)]
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait()
    assert all(read), err
    assert proc.returncode == 128 + 13, err  # as if ended by SIGPIPE, as shells expect
    for word in ("Traceback", "Exception", "Error"):
        assert word not in err


def test_a_recording_whose_reader_stops_reading_is_complete(tmp_path):
    path = tmp_path / "c.o2xcap"
    command = ["record", VIN, "--simulate", "-o", str(path), "--json"]
    with o2x_process(*command, state_dir=tmp_path) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait()
    assert first, err
    assert proc.returncode == 128 + 13, err
    assert "Traceback" not in err
    # The recording was ended properly: its summary, and a capture file that reads
    # whole, with no link lost (the vehicle was left, not cut off).
    assert f"from {VIN} to {path}" in err
    replayed = subprocess.run(
        [sys.executable, "-m", "o2x", "replay", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "Warning" not in replayed.stderr
    assert "0 link losses" in replayed.stdout
