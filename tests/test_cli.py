"""The ``o2x`` command, run for real: on simulated cars, on this machine's (absent)
Bluetooth, and on capture files."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from o2x import VehicleStatus
from o2x.cli import cli
from o2x.cli._common import Simulation
from o2x.cli._live import Target, watch
from o2x.sdk import from_sdk
from o2x.sim import VirtualRadio

VIN = "VR7ABCDEF12345678"
OTHER_VIN = "VXKUHZKXZL4123456"
STEPS = "connect, parked, driving, parked, cantCharge, charging, disconnected, reconnected"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty state directory for the remembered vehicle, for every test."""
    directory = tmp_path / "state"
    monkeypatch.setenv("O2X_STATE_DIR", str(directory))
    return directory


def o2x(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def assert_sdk_line(line: dict) -> None:
    """Every line is one of the SDK's two APIs, in its shape."""
    if line["api"] == "pims.vehicle.informations":
        # ``live`` beside the SDK's result where the source has it (an OBD adapter).
        assert set(line) - {"live"} == {"api", "reception", "result"}
        assert line["reception"] in {"information", "status"}
        from_sdk(line["result"])  # raises if not the SDK's shape
    else:
        assert line == {
            "api": "pims.vehicle.event",
            "result": {"event": line["result"]["event"]},
        }
        assert line["result"]["event"] in {"disconnected", "cantCharge"}


# --- demo ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_runs_the_scenario_and_sees_every_step(backend, state_dir):
    result = o2x("demo", "--pace", "0", "--backend", backend)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"steps seen:  8 of 8 ({STEPS})" in out
    # What the client reported, as it happened.
    for line in ("status parked", "status driving", "status charging"):
        assert line in out
    assert "event cantCharge" in out
    assert "event disconnected" in out
    assert "reconnected to" in out
    assert "events:      2 (cantCharge, disconnected)" in out
    assert "reconnects:  1" in out
    # The demo keeps to itself: nothing is remembered for the user's own runs.
    assert not state_dir.exists()


def test_demo_json_is_sdk_shaped(state_dir):
    result = o2x("demo", "--json", "--pace", "0")
    assert result.exit_code == 0, result.stderr
    lines = json_lines(result.stdout)
    for line in lines:
        assert_sdk_line(line)
    statuses = [line["result"]["status"] for line in lines if line.get("reception") == "status"]
    assert statuses == ["parked", "driving", "parked", "charging"]
    events = [line["result"]["event"] for line in lines if line["api"] == "pims.vehicle.event"]
    assert events == ["cantCharge", "disconnected"]
    samples = [from_sdk(line["result"]) for line in lines if line.get("reception") == "information"]
    assert len(samples) >= 6
    assert {s.status for s in samples} == {
        VehicleStatus.PARKED,
        VehicleStatus.DRIVING,
        VehicleStatus.CHARGING,
    }
    assert "steps seen:  8 of 8" in result.stderr  # the summary stays off stdout


# --- watch, vin, scan ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_watch_streams_sdk_json_and_remembers_the_vehicle(backend, state_dir):
    result = o2x(
        "watch", VIN, "--simulate", "--json", "--reception", "information", "--count", "3",
        "--backend", backend,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = json_lines(result.stdout)
    assert len(lines) == 3
    for line in lines:
        assert_sdk_line(line)
        assert line["reception"] == "information"
        assert line["result"]["vin"] == VIN
    # Simulated runs remember their car apart from the real one.
    assert o2x("vin", "--simulate").stdout == VIN + "\n"
    real = o2x("vin")
    assert real.exit_code == 5
    again = o2x("watch", "--previous", "--simulate", "--count", "1")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.count("\n") == 1
    assert "parked" in again.stdout
    assert f"Connected to {VIN}" in again.stderr


def on_a_terminal() -> tuple[Console, io.StringIO]:
    """A console that takes itself for a terminal, as the CLI's own does on one."""
    screen = io.StringIO()
    return Console(file=screen, force_terminal=True, width=100, highlight=False), screen


def parked_car() -> Target:
    # No autopilot: the car stays parked, so what is on screen is known exactly.
    return Target(VIN, previous=False, timeout=None, sim=Simulation(VIN, 10.0, autopilot=False))


@pytest.mark.anyio
async def test_watch_on_a_terminal_shows_the_last_reading_in_place(state_dir):
    out, screen = on_a_terminal()
    err = Console(file=io.StringIO())
    await watch(out, err, parked_car(), reception="status", json_mode=False, count=1, duration=None)
    raw = screen.getvalue()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    # The status scrolls, as a line...
    assert re.search(r"\d\d:\d\d:\d\d  parked    SoC  80 %", text), text
    # ...above the last reading, drawn a value a row, redrawn in place (cursor up,
    # erase line) and left on the screen at the end.
    assert "\x1b[1A\x1b[2K" in raw
    last = text.rindex(f"{VIN}, as o2x reports it at ")
    assert text.index("parked    SoC") < last
    view = text[last:]
    for row in ("State of charge", "80 %", "PARKED", "1234.5 km", "activated", "connected ("):
        assert row in view, view
    assert "statuses shown 1" in view


@pytest.mark.anyio
async def test_watch_json_on_a_terminal_is_still_one_line_per_message(state_dir, capsys):
    out, screen = on_a_terminal()
    err = Console(file=io.StringIO())
    await watch(
        out, err, parked_car(), reception="information", json_mode=True, count=2, duration=None
    )
    assert screen.getvalue() == ""  # no live view
    lines = json_lines(capsys.readouterr().out)
    assert [line["reception"] for line in lines] == ["information"] * 2


def test_watch_count_counts_the_messages_of_the_reception(state_dir):
    # Status: the status and each change of it, however many readings come between
    # (at 10,000x the simulated car changes status within a second).
    statuses = o2x("watch", VIN, "--simulate", "--sim-speed", "10000", "--count", "3", "--json")
    assert statuses.exit_code == 0, statuses.stderr
    lines = json_lines(statuses.stdout)
    readings = [line for line in lines if line["api"] == "pims.vehicle.informations"]
    assert [line["reception"] for line in readings] == ["status"] * 3
    shown = [line["result"]["status"] for line in readings]
    assert all(a != b for a, b in itertools.pairwise(shown)), shown
    # Information: readings; and each says, on connecting, what it waits for.
    text = o2x("watch", VIN, "--simulate", "--count", "4", "--reception", "information")
    assert text.exit_code == 0, text.stderr
    assert text.stdout.count("\n") == 4
    assert "stopping after 4 readings." in text.stderr
    status = o2x("watch", VIN, "--simulate", "--count", "1", "--duration", "30")
    assert status.exit_code == 0, status.stderr
    assert "stopping after 1 status or 30 s." in status.stderr


def test_watch_help_says_what_count_counts():
    help_text = " ".join(o2x("watch", "--help").stdout.split())
    assert "Stop after N messages of the reception (exit 0): N readings with information;" in (
        help_text
    )
    assert "with status, N statuses: the first, then each change" in help_text


def test_watch_stops_cleanly_on_ctrl_c(state_dir):
    # A real process and a real SIGINT: the only way to see what Ctrl-C does.
    env = {**os.environ, "O2X_STATE_DIR": str(state_dir)}
    command = [sys.executable, "-m", "o2x", "watch", VIN, "--simulate", "--json", "--reception"]
    proc = subprocess.Popen(
        [*command, "information"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        first = proc.stdout.readline()  # the car is connected and streaming
        assert_sdk_line(json.loads(first))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == 130, err
    assert "Stopped; the vehicle was disconnected." in err
    assert "Traceback" not in err


def test_scan_lists_the_simulated_dongle(state_dir):
    result = o2x("scan", "--simulate", "--sim-vin", OTHER_VIN, "--timeout", "0.3")
    assert result.exit_code == 0, result.stderr
    vin, address, rssi, name, kind = result.stdout.strip().split("\t")
    assert (vin, rssi, name, kind) == (OTHER_VIN, "-60", "O2X-123456", "o2x")
    assert address.count(":") == 5


# --- errors -------------------------------------------------------------------------------


def assert_failure(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("command", ["watch", "record"])
def test_an_invalid_vin_is_a_usage_error(command, tmp_path, state_dir):
    output = ["-o", str(tmp_path / "x")] if command == "record" else []
    result = o2x(command, "VR1AB12C3D456789O", "--simulate", *output)
    assert_failure(result, 2, "'O'", "cannot appear in a VIN", "17-character VIN")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("watch", VIN, "--timeout", "5"),
        ("record", VIN, "-o", "capture.o2xcap", "--timeout", "5"),
        ("scan", "--timeout", "0.2"),
    ],
)
def test_without_bluetooth_the_system_path_says_what_to_check(
    args, state_dir, tmp_path, monkeypatch
):
    # This machine has no Bluetooth service: the real path must say so, not crash.
    monkeypatch.chdir(tmp_path)
    result = o2x(*args)
    assert_failure(result, 3, "Bluetooth is not available", "--simulate")
    assert not (tmp_path / "capture.o2xcap").exists()


@pytest.mark.parametrize("command", ["watch", "record"])
def test_a_car_that_is_not_around_times_out(command, state_dir, tmp_path):
    capture = tmp_path / "c.o2xcap"
    result = o2x(
        command, VIN, "--simulate", "--sim-vin", OTHER_VIN, "--timeout", "0.5",
        *(["-o", str(capture)] if command == "record" else []),
    )  # fmt: skip
    assert_failure(result, 4, f"no vehicle {VIN} found within 0.5 s", "within Bluetooth range")
    assert not capture.exists()  # no empty capture left behind


def test_a_file_that_was_already_there_is_never_deleted(state_dir, tmp_path):
    # Nothing recorded: the command removes only a file it created. A file the user
    # already had stays, as would a device such as /dev/null (see the next test).
    kept = tmp_path / "mine.o2xcap"
    kept.write_bytes(b"the user's own bytes")
    result = o2x(
        "record", VIN, "--simulate", "--sim-vin", OTHER_VIN, "--timeout", "0.3", "-o", str(kept)
    )
    assert_failure(result, 4, f"no vehicle {VIN} found")
    assert kept.is_file()  # replaced by an empty capture, as asked, but not deleted


def test_only_regular_files_are_ever_removed(tmp_path):
    from o2x.cli._common import remove_quietly

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = tmp_path / "target"
    target.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    regular = tmp_path / "regular"
    regular.write_text("x")
    for path in (fifo, link, regular, tmp_path / "absent"):
        remove_quietly(path)
    assert fifo.exists()
    assert link.is_symlink()
    assert target.exists()
    assert not regular.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("watch", VIN, "--simulate", "--sim-speed", "nan"),
        ("watch", VIN, "--simulate", "--sim-speed", "inf"),
        ("watch", VIN, "--simulate", "--sim-speed", "1e7"),
        ("watch", VIN, "--simulate", "--timeout", "nan"),
        ("watch", VIN, "--simulate", "--duration", "nan"),
        ("scan", "--simulate", "--timeout", "nan"),
        ("record", VIN, "--simulate", "--duration", "nan", "-o", "x.o2xcap"),
    ],
)
def test_numbers_that_are_not_usable_are_usage_errors(args, state_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = o2x(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Invalid value" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.o2xcap").exists()


def test_the_fastest_sim_speed_is_the_simulators_own_limit():
    from o2x.cli import _MAX_SIM_SPEED
    from o2x.sim.vehicle import MAX_TIME_SCALE

    assert _MAX_SIM_SPEED == MAX_TIME_SCALE


def test_scan_that_hears_nothing_exits_4(state_dir, monkeypatch):
    from o2x.cli import _live

    @asynccontextmanager
    async def empty_radio(sim):  # the virtual radio, with no car on the air
        async with VirtualRadio() as radio:
            yield radio

    monkeypatch.setattr(_live, "open_radio", empty_radio)
    result = o2x("scan", "--simulate", "--timeout", "0.2")
    assert_failure(result, 4, "no dongle found within 0.2 s")


@pytest.mark.parametrize(
    "args", [("vin",), ("watch", "--previous"), ("record", "--previous", "-o", "x")]
)
def test_no_previous_vehicle(args, state_dir):
    result = o2x(*args)
    assert_failure(result, 5, "no vehicle remembered yet", str(state_dir), "o2x watch VIN")


@pytest.mark.parametrize("args", [("vin",), ("watch", "--previous", "--simulate")])
def test_a_damaged_state_file_is_named(args, state_dir):
    path = (
        state_dir / "simulated" / "vehicle.json"
        if "--simulate" in args
        else state_dir / "vehicle.json"
    )
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "vin": "not a vin"}')
    result = o2x(*args)
    assert_failure(result, 5, f"{path} is damaged", "delete it")


@pytest.mark.parametrize("simulate", [True, False])
def test_connecting_never_replaces_a_damaged_state_file(simulate, state_dir):
    # It used to be replaced by the vehicle connected to, and the command exit 0.
    path = state_dir / "simulated" / "vehicle.json" if simulate else state_dir / "vehicle.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage")
    args = ("--simulate",) if simulate else ("--timeout", "5")
    result = o2x("watch", VIN, "--json", "--count", "1", *args)
    assert_failure(result, 5, str(path), "is damaged (", "left as it is", "delete it")
    assert "first_time" not in result.stderr  # the command's own words, not the library's
    assert "STATE_DIR" not in result.stderr  # nothing to do with a directory not writable
    assert result.stdout == ""  # refused before connecting, not after
    assert path.read_bytes() == b"\x00garbage"


def test_help_lists_the_exit_codes():
    result = o2x("--help")
    assert result.exit_code == 0
    for line in ("Exit codes:", "3    Bluetooth unavailable", "130  interrupted"):
        assert line in result.stdout


def test_python_dash_m_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "o2x", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("o2x, version ")


# --- record and replay ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A short simulated drive, recorded; with the readings printed live meanwhile."""
    directory = tmp_path_factory.mktemp("recording")
    path = directory / "drive.o2xcap"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("O2X_STATE_DIR", str(directory / "state"))
        # At 300x the car moves off within half a second.
        result = o2x(
            "record", VIN, "--simulate", "--sim-speed", "300", "-o", str(path),
            "--duration", "2", "--json",
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "Recorded" in result.stderr
    return path, json_lines(result.stdout)


def strip_time(line: dict) -> dict:
    result = dict(line["result"])
    result.pop("receivedAt")
    return {**line, "result": result}


def test_replay_gives_back_what_was_decoded_while_recording(recording):
    path, live = recording
    result = o2x("replay", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    replayed = json_lines(result.stdout)
    for line in replayed:
        assert_sdk_line(line)
    live_readings = [strip_time(line) for line in live]
    readings = [strip_time(line) for line in replayed]
    # The live printout starts once connected and stops before the link is closed;
    # the file holds every notification, so the live readings are one run inside it.
    assert len(live_readings) >= 10
    span = len(live_readings)
    assert any(readings[i : i + span] == live_readings for i in range(len(readings) - span + 1))
    assert 0 <= len(readings) - span <= 5
    statuses = [line["result"]["status"] for line in replayed]
    assert statuses[0] == "parked"
    assert "driving" in statuses
    odometers = [line["result"]["data"]["totalOdometer"]["value"] for line in replayed]
    assert odometers == sorted(odometers)
    assert odometers[-1] > odometers[0]


def test_replay_text_csv_and_status(recording):
    path, _ = recording
    text = o2x("replay", str(path))
    assert text.exit_code == 0
    assert f"capture of {VIN}" in text.stdout
    assert "simulated at 300x speed" in text.stdout
    assert "link up to" in text.stdout
    assert "0 CRC errors" in text.stdout
    readings = json_lines(o2x("replay", str(path), "--json").stdout)

    table = o2x("replay", str(path), "--csv")
    rows = table.stdout.splitlines()
    assert rows[0].startswith("time,t_s,kind,seq,status,batterySoc,")
    assert len(rows) - 1 == len(readings)
    first = rows[1].split(",")
    assert first[2] == "information"
    assert first[4] == readings[0]["result"]["status"]
    assert float(first[12]) == readings[0]["result"]["data"]["totalOdometer"]["value"]

    changes = json_lines(o2x("replay", str(path), "--json", "--reception", "status").stdout)
    assert [c["result"]["status"] for c in changes] == ["parked", "driving"]
    assert {c["reception"] for c in changes} == {"status"}


def test_replay_plot_writes_a_png(recording, tmp_path):
    path, _ = recording
    png = tmp_path / "drive.png"
    result = o2x("replay", str(path), "--plot", str(png))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\n") == 3  # what the file is, its summary, the plot: no records
    blob = png.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    assert blob[12:16] == b"IHDR"
    width, height = struct.unpack(">II", blob[16:24])
    assert (width, height) == (1000, 900)
    assert len(blob) > 20_000  # four panels of curves and labels, not a blank canvas


def test_plot_without_matplotlib_says_how_to_get_it(recording, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    path, _ = recording
    result = o2x("replay", str(path), "--plot", str(tmp_path / "p.png"))
    assert_failure(result, 7, "pip install 'o2x[plot]'")
    assert not (tmp_path / "p.png").exists()


def test_replay_reads_a_truncated_capture_and_warns(recording, tmp_path):
    path, _ = recording
    whole = json_lines(o2x("replay", str(path), "--json").stdout)
    cut = tmp_path / "cut.o2xcap"
    cut.write_bytes(path.read_bytes()[:-5])
    result = o2x("replay", str(cut), "--json")
    assert result.exit_code == 0
    assert "Warning:" in result.stderr
    assert "cut short" in result.stderr
    replayed = json_lines(result.stdout)
    assert [strip_time(r) for r in replayed] == [strip_time(r) for r in whole[: len(replayed)]]
    assert len(whole) - len(replayed) <= 1


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [(b"not a capture at all", "not an o2x capture file"), (None, "cannot read")],
)
def test_replay_of_a_bad_file_exits_6(tmp_path, blob, fragment):
    path = tmp_path / "bad.o2xcap"
    if blob is not None:
        path.write_bytes(blob)
    result = o2x("replay", str(path))
    assert_failure(result, 6, fragment, str(path))


def test_replaying_a_directory_exits_6_saying_it_cannot_be_read(tmp_path):
    result = o2x("replay", str(tmp_path))
    assert_failure(result, 6, "cannot read", str(tmp_path))


def test_record_to_an_unwritable_file_exits_6(state_dir, tmp_path):
    result = o2x("record", VIN, "--simulate", "-o", str(tmp_path / "missing" / "dir" / "c"))
    assert_failure(result, 6, "cannot write the capture file")
