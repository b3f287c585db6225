"""``o2x watch --can``: the CLI over python-can's virtual bus with the simulated car."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from o2x.cli import cli
from o2x.sdk import from_sdk

VIN = "VR7ABCDEF12345678"
_channels = itertools.count()


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("O2X_STATE_DIR", str(directory))
    return directory


def o2x(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def channel() -> str:
    return f"virtual:o2x-cli-{next(_channels)}"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_watch_can_json_carries_the_sdk_result_and_live(backend: str) -> None:
    result = o2x(
        "watch", "--can", channel(), "--simulate", VIN, "--reception", "information",
        "--json", "--count", "3", "--backend", backend,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert set(line) == {"api", "reception", "result", "live"}
        info = from_sdk(line["result"])  # the SDK's shape, exactly
        assert info.vin == VIN  # read off the simulated bus
        assert line["result"]["currentAlert"] is None
        assert set(line["live"]) == {
            "speed", "packVoltage", "packCurrent", "packPower", "packTemperatures", "ready",
        }  # fmt: skip
        assert line["live"]["packTemperatures"] == [21, 22]


def test_watch_can_without_a_vin_reads_it_off_the_bus() -> None:
    result = o2x("watch", "--can", channel(), "--simulate", "--sim-vin", VIN, "--count", "1")
    assert result.exit_code == 0, result.output
    assert VIN in result.stderr
    assert "alerts: not reported" in result.stdout
    # A car read over CAN is not remembered: --previous finds a dongle.
    assert o2x("vin").exit_code == 5


def test_watch_can_with_a_foreign_vin_is_refused() -> None:
    result = o2x(
        "watch", "--can", channel(), "--simulate", "--sim-vin", VIN, "VXKUHZKXZL4123456",
        "--count", "1",
    )  # fmt: skip
    assert result.exit_code == 4
    assert "broadcasts the VIN VR7ABCDEF12345678" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--can", "can0"], 2, "INTERFACE:CHANNEL"),
        (["--can", "no-such-interface:x", VIN], 3, "cannot open the CAN interface"),
        (["--can", "virtual:x", "--previous"], 2, "--previous"),
        (["--can", "socketcan:can0", "--simulate", VIN], 2, "virtual"),
    ],
)
def test_watch_can_usage_errors(args: list[str], code: int, message: str) -> None:
    result = o2x("watch", *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_record_can_writes_a_candump_log_that_replays(tmp_path: Path) -> None:
    log = tmp_path / "drive.log"
    result = o2x(
        "record", "--can", channel(), "--simulate", VIN, "-o", str(log), "--duration", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = log.read_text().splitlines()
    assert len(lines) > 6
    assert all(" 5" in line or " 7" in line for line in lines)  # 0x58x, 0x59x, 0x71x frames
    replayed = o2x("replay", str(log), "--json", "--reception", "status")
    assert replayed.exit_code == 0, replayed.output
    first = json.loads(replayed.stdout.splitlines()[0])
    assert from_sdk(first["result"]).vin == VIN


def test_record_can_needs_a_can_log_suffix(tmp_path: Path) -> None:
    result = o2x(
        "record", "--can", channel(), "--simulate", VIN, "-o", str(tmp_path / "x.o2xcap"),
    )  # fmt: skip
    assert result.exit_code == 2
    assert ".log" in result.stderr
    assert not (tmp_path / "x.o2xcap").exists()


def test_record_can_on_a_full_disk_says_so_and_exits_6(tmp_path: Path) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full here")
    log = tmp_path / "drive.log"
    log.symlink_to(full)  # every write that reaches the disk fails with ENOSPC
    result = o2x(
        "record", "--can", channel(), "--simulate", VIN, "-o", str(log), "--duration", "30",
    )  # fmt: skip
    assert result.exit_code == 6, result.output
    assert "cannot write the CAN log" in result.stderr
    assert "No space left on device" in result.stderr
    assert "Recorded" not in result.output


def test_watch_can_information_shows_the_live_values() -> None:
    result = o2x(
        "watch", "--can", channel(), "--simulate", VIN, "--reception", "information",
        "--duration", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if " SoC " in line)
    # The simulated car stands with the brake applied: 0 km/h, a pack voltage, ready off.
    assert " 0 km/h " in line
    assert " V " in line
    assert " A " in line
    assert "not ready" in line
