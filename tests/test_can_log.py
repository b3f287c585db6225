"""A CAN log written by hand from the public facts, replayed through o2x.

``tests/data/ami-drive.log`` is in the format of ``candump -l`` (what anyone with
can-utils records on a real AMI). Its payloads were written byte by byte, never
produced by o2x's encoder:

* 0x580 ``FBFF4F1400500000``: current 0xFFFB = -5 -> -0.5 A (int16 LE, 0.1 A),
  voltage 0x144F = 5199 -> 51.99 V (0.01 V), byte 5 = 0x50 -> 80 % SoC.
  While driving ``70FED81300500000``: 0xFE70 = -400 -> -40.0 A, 0x13D8 -> 50.80 V.
* 0x581 ``0000000039300000``: bytes 4-6 = 0x003039 = 12345 -> 1234.5 km, byte 7
  speed 0; ``000000003A300019``: 1234.6 km at 0x19 = 25 km/h.
* 0x582 ``FFFF...``: no charge-time estimate.
* 0x594 ``1500001600000000``: temperatures 0x15 = 21 and 0x16 = 22 degC (bytes 0, 3).
* 0x713 parked ``800000A0000000``: gear LSB is byte 0 bit 7 (1), MSB byte 1 bit 0
  (0) -> 1 = N; range 0; ready (byte 2 bit 2) 0; byte 3 0xA0 -> brake bit 5 set.
  Driving ``3C010480000000``: range 0x3C = 60 km, gear 0b10 = D, ready, brake off.
* 0x714 ``0100`` brake applied, ``0000`` released.
* VIN: 0x712 ``565231`` "VR1", 0x710 ``414231324333`` "AB12C3", 0x711
  ``4434353637383930`` "D4567890".
* Also a frame of another ECU (0x4E2) and a 29-bit diagnostic frame, which o2x ignores.
"""

from __future__ import annotations

import json
from pathlib import Path

import can
import pytest
from click.testing import CliRunner

from o2x import EventKind, Gear, ParkBrake, VehicleInfo, VehicleStatus
from o2x.can import AmiBus
from o2x.can.log import find_vin, log_messages, log_readings
from o2x.cli import cli
from o2x.sdk import from_sdk

LOG = Path(__file__).parent / "data" / "ami-drive.log"
VIN = "VR1AB12C3D4567890"


def readings() -> list[VehicleInfo]:
    return [
        item
        for _, item in log_readings(log_messages(LOG), vin=VIN)
        if isinstance(item, VehicleInfo)
    ]


def test_the_log_names_its_car() -> None:
    assert find_vin(log_messages(LOG)) == VIN


def test_the_drive_replays_as_parked_driving_parked() -> None:
    infos = readings()
    statuses = [info.status for info in infos]
    collapsed = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] is not s]
    assert collapsed == [VehicleStatus.PARKED, VehicleStatus.DRIVING, VehicleStatus.PARKED]
    driving = next(i for i in infos if i.data.rnd is Gear.DRIVE)
    assert driving.live is not None
    assert driving.live.speed == 25
    assert driving.live.pack_current == -40.0
    assert driving.live.pack_voltage == 50.8
    assert driving.live.pack_power == -2.032
    assert driving.live.ready is True
    assert driving.data.park_brake_status is ParkBrake.RELEASED
    assert driving.data.remaining_autonomy is not None
    assert driving.data.remaining_autonomy.value == 60
    last = infos[-1]
    assert last.data.total_odometer is not None
    assert last.data.total_odometer.value == 1234.6
    assert last.data.park_brake_status is ParkBrake.ACTIVATED
    assert last.data.remaining_autonomy is None  # the car's 0 while off is no range
    assert last.live is not None
    assert last.live.pack_temperatures == (21, 22)
    assert last.received_at.year == 2025  # the log's own clock


def test_other_traffic_is_counted_not_decoded() -> None:
    bus = AmiBus()
    list(log_readings(log_messages(LOG), vin=VIN, bus=bus))
    assert bus.stats.unknown_ids == 1
    assert bus.stats.extended_ids == 1
    assert bus.stats.bad_lengths == 0


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("O2X_STATE_DIR", str(tmp_path))


def test_o2x_replay_reads_a_candump_log() -> None:
    result = CliRunner().invoke(cli, ["replay", str(LOG), "--json", "--reception", "status"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["result"]["status"] for line in lines] == ["parked", "driving", "parked"]
    for line in lines:
        assert from_sdk(line["result"]).vin == VIN
        assert "live" in line


def test_a_log_of_another_car_or_without_a_vin(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["replay", str(LOG), "--vin", "VXKUHZKXZL4123456"])
    assert result.exit_code == 2
    assert "is a log of VR1AB12C3D4567890" in result.stderr
    no_vin = tmp_path / "no-vin.log"
    no_vin.write_text(
        "".join(
            line + "\n"
            for line in LOG.read_text().splitlines()
            if not any(f" {vin_id}#" in line for vin_id in ("710", "711", "712"))
        )
    )
    result = CliRunner().invoke(cli, ["replay", str(no_vin)])
    assert result.exit_code == 2
    assert "--vin" in result.stderr
    result = CliRunner().invoke(cli, ["replay", str(no_vin), "--vin", VIN, "--csv"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) > 3


def test_a_damaged_log_keeps_what_came_before(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.log"
    damaged.write_text(LOG.read_text() + "(1764700001.000000) can0 580#ZZ\n")
    result = CliRunner().invoke(cli, ["replay", str(damaged)])
    assert result.exit_code == 6
    assert "damaged after" in result.stderr
    assert "driving" in result.stdout  # the readings before the damage were shown


def test_a_cant_charge_that_begins_with_the_last_frame_is_reported() -> None:
    def message(t: float, can_id: int, hex_data: str) -> can.Message:
        return can.Message(
            timestamp=t, arbitration_id=can_id, data=bytes.fromhex(hex_data), is_extended_id=False
        )

    messages = [
        # 0x714 brake released; 0x580 0.0 A, 50.20 V, SoC 64 %
        message(1.00, 0x714, "00 00"),
        message(1.00, 0x580, "00 00 9c 13 00 40 00 00"),
        # 0x582: 9000 s = 0x2328 remaining, the last frame of the log, 10 ms later:
        # within the reading interval, so only the reading at the end sees it.
        message(1.01, 0x582, "28 23 00 00 00 00 00 00"),
    ]
    items = [item for _, item in log_readings(messages, vin="VR1AB12C3D4567890")]
    assert items[-1] is EventKind.CANT_CHARGE
    assert isinstance(items[-2], VehicleInfo)
    assert items[-2].data.charge_delay is not None
