"""The command line with BLE OBD adapters: demo, scan, watch on a simulated car."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from o2x import _state
from o2x.cli import _target, cli
from o2x.sdk import from_sdk

VIN = "VR7ABCDEF12345678"
STEPS = "connect, parked, driving, parked, cantCharge, charging, disconnected, reconnected"


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("O2X_STATE_DIR", str(directory))
    return directory


def o2x(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("dongle", ["wican", "o2x"])
def test_demo_through_each_dongle_sees_every_step(dongle: str) -> None:
    result = o2x("demo", "--pace", "0", "--dongle", dongle)
    assert result.exit_code == 0, result.output
    assert f"steps seen:  8 of 8 ({STEPS})" in result.stdout


def test_demo_goes_through_an_elm327_adapter_by_default() -> None:
    result = o2x("demo", "--pace", "0", "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    readings = [line for line in lines if line.get("reception") == "information"]
    # Only a CAN source has live values: the readings came off the car's bus.
    assert readings
    assert all("live" in line for line in readings)
    assert all(line["live"]["packVoltage"] is not None for line in readings)


@pytest.mark.parametrize(("dongle", "name"), [("elm327", "OBDII"), ("wican", "WiC_")])
def test_scan_lists_a_simulated_adapter(dongle: str, name: str) -> None:
    result = o2x("scan", "--simulate", "--dongle", dongle, "--timeout", "0.3")
    assert result.exit_code == 0, result.stderr
    vin, address, _rssi, seen_name, kind = result.stdout.strip().split("\t")
    assert vin == "-"  # an adapter's car is only known once connected
    assert kind == "adapter"
    assert seen_name.startswith(name)
    assert address.count(":") == 5


def test_scan_json_gives_an_adapter_no_vin() -> None:
    result = o2x("scan", "--simulate", "--dongle", "elm327", "--timeout", "0.3", "--json")
    assert result.exit_code == 0, result.stderr
    (found,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert found["vin"] is None
    assert found["kind"] == "adapter"


def test_watch_through_a_wican_gives_sdk_readings_with_live_values() -> None:
    result = o2x(
        "watch", VIN, "--simulate", "--dongle", "wican", "--reception", "information",
        "--json", "--count", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert from_sdk(line["result"]).vin == VIN
        assert line["live"]["packCurrent"] is not None


def test_previous_comes_back_through_the_remembered_adapter(state_dir: Path) -> None:
    first = o2x("watch", VIN, "--simulate", "--dongle", "elm327", "--count", "1")
    assert first.exit_code == 0, first.stderr
    remembered = json.loads((state_dir / "simulated" / "vehicle.json").read_text())
    assert remembered["dongle"] == "adapter"
    again = o2x("watch", "--previous", "--simulate", "--dongle", "elm327", "--count", "1")
    assert again.exit_code == 0, again.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--simulate", "--adapter", "AA:BB:CC:DD:EE:FF"), "--dongle"),
        (("--passkey", "1234"), "six digits"),
        (("--can", "virtual:x", "--adapter", "AA:BB:CC:DD:EE:FF"), "--can"),
        (("--can", "virtual:x", "--simulate", "--dongle", "wican"), "--dongle"),
    ],
)
def test_adapter_options_that_do_not_fit_are_usage_errors(
    args: tuple[str, ...], fragment: str
) -> None:
    result = o2x("watch", VIN, *args)
    assert result.exit_code == 2
    assert fragment in result.stderr


def test_dongle_without_simulate_is_a_usage_error() -> None:
    result = o2x("scan", "--dongle", "wican")
    assert result.exit_code == 2
    assert "--simulate" in result.stderr


def test_previous_with_a_timeout_keeps_to_the_remembered_adapter(state_dir: Path) -> None:
    # --previous --timeout looks for the remembered VIN with first_time(): the
    # remembered adapter must be the one pinned, not any adapter reading that VIN.
    path = _state.state_file(state_dir)
    _state.save(path, _state.RememberedVehicle(VIN, "AA:BB:CC:DD:EE:0A", "adapter"))
    target = _target(
        vin=None, previous=True, timeout=10.0, simulate=False, sim_vin=None,
        sim_speed=10.0, backend="asyncio",
    )  # fmt: skip
    assert (target.vin, target.adapter) == (VIN, "AA:BB:CC:DD:EE:0A")
    _state.save(path, _state.RememberedVehicle(VIN, "AA:BB:CC:DD:EE:01", "o2x"))
    target = _target(
        vin=None, previous=True, timeout=10.0, simulate=False, sim_vin=None,
        sim_speed=10.0, backend="asyncio",
    )  # fmt: skip
    assert target.adapter is None  # an O2X dongle is found by its VIN
