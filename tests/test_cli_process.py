"""The ``o2x`` command as a process, in the ways only a real process shows: the
reader of its output going away (``o2x watch ... | head -1``) and Ctrl-C."""

from __future__ import annotations

import os
import pty
import re
import signal
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
    # A terminal's size, for a pseudo-terminal that has none.
    env = {**os.environ, "O2X_STATE_DIR": str(state_dir), "COLUMNS": "120", "LINES": "40"}
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


# --- Ctrl-C ---------------------------------------------------------------------------------


class Terminal:
    """A pseudo-terminal for a process's stderr, read as it is written, so that a test
    can wait for what a person would see (the scanning spinner) before acting."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self._seen = b""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        os.close(self.slave)  # the process holds it now
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the process closed its end
                chunk = b""
            with self._changed:
                if not chunk:
                    self._seen += b"\0"  # the end
                    self._changed.notify_all()
                    return
                self._seen += chunk
                self._changed.notify_all()

    def wait_for(self, text: str) -> None:
        with self._changed:
            self._changed.wait_for(
                lambda: text.encode() in self._seen or self._seen.endswith(b"\0"), timeout=60
            )
            assert text.encode() in self._seen, self._seen.decode(errors="replace")

    def text(self) -> str:
        """Everything written, once the process has ended."""
        self._reader.join(60)
        os.close(self.master)
        return self._seen.decode(errors="replace")


@contextmanager
def on_a_terminal(*args: str, state_dir: Path) -> Iterator[tuple[subprocess.Popen[str], Terminal]]:
    terminal = Terminal()
    with o2x_process(*args, state_dir=state_dir, stderr=terminal.slave) as proc:
        terminal.start()
        yield proc, terminal


def test_ctrl_c_while_scanning_says_nothing_was_connected(tmp_path):
    # The simulated car is another one: the car asked for is never found.
    command = ["watch", VIN, "--simulate", "--sim-vin", OTHER_VIN, "--timeout", "50"]
    with on_a_terminal(*command, state_dir=tmp_path) as (proc, terminal):
        terminal.wait_for(f"Scanning for {VIN}")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate()
    err = terminal.text()
    assert proc.returncode == 130, err
    assert re.search(
        rf"Stopped after \d+\.\d s of looking for {VIN}, before it was connected\.", err
    )
    assert "disconnected" not in err
    assert "Traceback" not in err
    assert out == ""


def test_ctrl_c_while_recording_from_a_car_not_found_says_nothing_was_recorded(tmp_path):
    path = tmp_path / "c.o2xcap"
    command = ["record", VIN, "--simulate", "--sim-vin", OTHER_VIN, "-o", str(path)]
    with on_a_terminal(*command, state_dir=tmp_path) as (proc, terminal):
        terminal.wait_for(f"Scanning for {VIN}")
        proc.send_signal(signal.SIGINT)
        proc.communicate()
    err = terminal.text()
    assert proc.returncode == 130, err
    assert f"of looking for {VIN}, before it was connected. Nothing was recorded." in err
    assert "complete up to now" not in err
    assert not path.exists()


def test_ctrl_c_during_a_scan_lists_what_was_heard(tmp_path):
    command = ["scan", "--simulate", "--sim-vin", VIN, "--timeout", "50"]
    with on_a_terminal(*command, state_dir=tmp_path) as (proc, terminal):
        terminal.wait_for("1 found")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate()
    err = terminal.text()
    assert proc.returncode == 130, err
    vin, _, rssi, name, kind = out.strip().split("\t")
    assert (vin, rssi, name, kind) == (VIN, "-60", f"O2X-{VIN[-6:]}", "o2x")
    assert re.search(
        r"Stopped after \d+\.\d s of 50 s: 1 dongle heard until then \(listed\)\.", err
    )
    assert "Traceback" not in err
