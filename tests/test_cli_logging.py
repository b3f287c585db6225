"""``o2x -v`` / ``-vv`` / ``-q``: what the library logs, on stderr, from a real process."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.logging import RichHandler

from o2x.cli._logging import configure_logging

VIN = "VR7ABCDEF12345678"
#: A plain log line: time, level, logger, message.
LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<level>[A-Z]+) +(?P<logger>[\w.]+): (?P<message>.*)$")


def _o2x(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "o2x", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "O2X_STATE_DIR": str(state_dir), "COLUMNS": "200"},
    )


def _records(stderr: str) -> list[tuple[str, str, str]]:
    return [
        (m["level"], m["logger"], m["message"]) for m in map(LINE.match, stderr.splitlines()) if m
    ]


def test_v_says_what_the_connection_does(tmp_path: Path) -> None:
    result = _o2x("-v", "watch", "--simulate", VIN, "--count", "1", state_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    records = _records(result.stderr)
    messages = [message for _, _, message in records]
    assert {level for level, _, _ in records} == {"INFO"}
    assert messages[0] == f"scanning for {VIN}"
    address = re.search(r"Connected to \w+ at ([0-9A-F:]{17})", result.stderr)
    assert address is not None
    assert any(
        m.startswith(f"heard {address[1]} (an O2X dongle advertising {VIN}") for m in messages
    )
    assert f"connecting to {address[1]}" in messages
    assert f"{address[1]} serves VIN {VIN}" in messages
    assert f"subscribed to {address[1]}: readings flow" in messages
    # The log goes to stderr, the readings to stdout: a pipe reads the readings alone.
    assert "parked" in result.stdout
    assert "o2x.vehicle" not in result.stdout


def test_vv_shows_each_step_and_each_command_to_an_adapter(tmp_path: Path) -> None:
    result = _o2x(
        "-vv", "watch", "--simulate", VIN, "--dongle", "elm327", "--count", "1", state_dir=tmp_path
    )
    assert result.returncode == 0, result.stderr
    records = _records(result.stderr)
    debug = [(logger, message) for level, logger, message in records if level == "DEBUG"]
    assert ("o2x.obd.link", "to the adapter: b'ATZ\\r'") in debug
    assert ("o2x.obd.link", "to the adapter: b'ATMA\\r'") in debug
    assert any(logger == "o2x.transport" and "the fff0 layout" in m for logger, m in debug)
    assert any(
        level == "INFO" and m.startswith("the OBD adapter is set up (ELM327")
        for level, _, m in records
    )


def test_without_v_the_log_is_quiet(tmp_path: Path) -> None:
    result = _o2x("watch", "--simulate", VIN, "--count", "1", state_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _records(result.stderr) == []


def test_v_and_q_together_are_a_usage_error(tmp_path: Path) -> None:
    result = _o2x("-v", "-q", "watch", "--simulate", VIN, state_dir=tmp_path)
    assert result.returncode == 2
    assert "-v and -q say opposite things" in result.stderr


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ("o2x", "bleak", "bumble")}
    yield None
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("verbosity", "o2x", "bleak", "bumble"),
    [
        (-1, logging.ERROR, logging.ERROR, logging.ERROR),
        (0, logging.WARNING, logging.WARNING, logging.ERROR),
        (1, logging.INFO, logging.WARNING, logging.ERROR),
        (2, logging.DEBUG, logging.DEBUG, logging.WARNING),
        (5, logging.DEBUG, logging.DEBUG, logging.DEBUG),
    ],
)
def test_the_levels_of_each_verbosity(
    restore_logging: object, verbosity: int, o2x: int, bleak: int, bumble: int
) -> None:
    configure_logging(verbosity)
    assert logging.getLogger("o2x").level == o2x
    assert logging.getLogger("bleak").level == bleak
    assert logging.getLogger("bumble").level == bumble


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_rich_s_handler_and_one_handler_however_often_configured(
    restore_logging: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    configure_logging(1)
    handler = configure_logging(1)
    ours = [h for h in logging.getLogger().handlers if h.get_name() == handler.get_name()]
    assert ours == [handler]
    assert isinstance(handler, RichHandler)
    logging.getLogger("o2x.vehicle").info("scanning for %s", VIN)
    assert f"scanning for {VIN}" in sys.stderr.getvalue()


def test_v_says_why_an_attempt_failed_and_when_the_next_comes(tmp_path: Path) -> None:
    # A WiCAN whose passkey is not the one given: each pairing fails, and the back-off
    # doubles between the attempts.
    result = _o2x(
        "-v",
        "watch",
        "--simulate",
        VIN,
        "--dongle",
        "wican",
        "--passkey",
        "111111",
        "--timeout",
        "3",
        state_dir=tmp_path,
    )
    assert result.returncode == 4, result.stderr  # not found in time
    messages = [message for _, _, message in _records(result.stderr)]
    failures = [m for m in messages if m.startswith("setting up the link failed: could not pair")]
    waits = [
        float(m.split(" in ")[1].split()[0]) for m in messages if m.startswith("next attempt at")
    ]
    assert len(failures) >= 2
    assert waits[:2] == [0.5, 1.0]


def test_the_virtual_radio_refuses_a_passkey_it_cannot_pair_with() -> None:
    from o2x.sim import SimulatedVehicle

    with pytest.raises(ValueError, match="cannot pair with the passkey 000000"):
        SimulatedVehicle(VIN, dongle="wican", passkey="000000")
