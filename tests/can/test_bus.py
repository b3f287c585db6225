"""AmiBus against frames written by hand from the public findings.

Every payload here is spelled out in hex with the derivation of its bytes, from the
layout in docs/can.md (all signals little-endian, byte n = bits 8n..8n+7):

* 0x580 (8): current, signed, 0.1 A, bytes 0-1; voltage 0.01 V, bytes 2-3; SoC, byte 5.
* 0x581 (8): odometer 0.1 km, bytes 4-6; speed km/h, byte 7.
* 0x582 (8): remaining charge time, seconds, bytes 0-1; FFFF = no estimate.
* 0x594 (8): pack temperatures, int8, bytes 0 and 3.
* 0x713 (7): range = byte 0 & 0x7F; gear = bit 7 of byte 0 (low) + bit 0 of byte 1
  (high), 0 R 1 N 2 D 3 Null; ready = byte 2 bit 2; parking brake = byte 3 bit 5.
* 0x714 (2): parking brake, byte 0: 1 applied, 0 released.
* 0x712 / 0x710 / 0x711: VIN characters 1-3 / 4-9 / 10-17, ASCII from byte 0.

None of them comes from o2x's own encoder, so an error shared by the DBC and the
decoder cannot hide here.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import math
import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x.can import AmiBus, AmiBusStats
from o2x.model import (
    BatteryState,
    Gear,
    LiveData,
    Measure,
    ParkBrake,
    SystemState,
    VehicleStatus,
)
from o2x.sdk import from_sdk, to_sdk

VIN = "VR1AB12C3D4567890"
AT = dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=dt.UTC)

# --- 0x580, traction battery ---------------------------------------------------------
# +1.6 A = 16 = 0x0010 -> 10 00 | 52.60 V = 5260 = 0x148C -> 8C 14 | byte 4 00 |
# SoC 85 % = 0x55 | bytes 6-7 00 00
BATTERY_CHARGING = "10 00 8c 14 00 55 00 00"
# -41.5 A = -415 = 0x10000 - 415 = 0xFE61 -> 61 FE | 50.20 V = 5020 = 0x139C -> 9C 13 |
# SoC 64 % = 0x40
BATTERY_DRIVING = "61 fe 9c 13 00 40 00 00"
# +12.3 A (regenerative braking) = 123 = 0x007B -> 7B 00 | 51.00 V = 5100 = 0x13EC -> EC 13 |
# SoC 64 %
BATTERY_REGEN = "7b 00 ec 13 00 40 00 00"
# -0.3 A (standing, the car's own consumption) = -3 = 0xFFFD -> FD FF | 50.20 V | SoC 64 %
BATTERY_IDLE = "fd ff 9c 13 00 40 00 00"
# 0.0 A -> 00 00 | 50.20 V | SoC 64 %
BATTERY_ZERO = "00 00 9c 13 00 40 00 00"

# --- 0x581, odometer and speed ---------------------------------------------------------
# bytes 0-3 unused | 4696.2 km = 46962 = 0x00B772 -> 72 B7 00 | speed 0
ODOMETER_STANDING = "00 00 00 00 72 b7 00 00"
# same odometer | speed 32 km/h = 0x20
ODOMETER_32 = "00 00 00 00 72 b7 00 20"
# same odometer | speed 25 km/h = 0x19
ODOMETER_25 = "00 00 00 00 72 b7 00 19"

# --- 0x582, remaining charge time -----------------------------------------------------
# 2 h 30 min = 9000 s = 0x2328 -> 28 23 | bytes 2-7 unused
CHARGE_9000_S = "28 23 00 00 00 00 00 00"
# FF FF: no estimate
CHARGE_NO_ESTIMATE = "ff ff 00 00 00 00 00 00"

# --- 0x594, pack temperatures -----------------------------------------------------------
# 23 degC = 0x17 in byte 0 | bytes 1-2 00 | 21 degC = 0x15 in byte 3 | bytes 4-7 00
TEMPS_23_21 = "17 00 00 15 00 00 00 00"
# -5 degC = 0x100 - 5 = 0xFB | -12 degC = 0x100 - 12 = 0xF4
TEMPS_MINUS_5_12 = "fb 00 00 f4 00 00 00 00"


# --- 0x713, the dashboard frame (7 bytes) ----------------------------------------------
def display(*, range_km: int, gear: int, ready: bool, brake: bool) -> str:
    """Not an encoder: only the two bytes the gear straddles are computed, so that
    the tables below can name every gear; each caller's bytes are also written out."""
    byte0 = (range_km & 0x7F) | (gear & 1) << 7
    byte1 = gear >> 1
    byte2 = 0x05 if ready else 0x03  # servicemensch: 0b101 ready, 0b011 not ready
    byte3 = 0xA0 if brake else 0x80  # stwoowts: 0x80, 0xA0 with the brake applied
    return f"{byte0:02x} {byte1:02x} {byte2:02x} {byte3:02x} 00 00 00"


# D = 2 (bit 7 of byte 0 clear, bit 0 of byte 1 set), range 45 = 0x2D, ready, released
DISPLAY_D_READY = "2d 01 05 80 00 00 00"
# N = 1 (bit 7 of byte 0 set: 0x80 | 40 = 0xA8, byte 1 00), not ready, brake applied
DISPLAY_N_OFF_BRAKE = "a8 00 03 a0 00 00 00"
# N, range 40, ready, brake applied
DISPLAY_N_READY_BRAKE = "a8 00 05 a0 00 00 00"
# R = 0 (both gear bits clear), range 45 = 0x2D, ready, released
DISPLAY_R_READY = "2d 00 05 80 00 00 00"
# D, range 0, ready, released
DISPLAY_D_READY_RANGE_0 = "00 01 05 80 00 00 00"
# N, range 0 (0x80 | 0), not ready, brake applied
DISPLAY_N_OFF_RANGE_0 = "80 00 03 a0 00 00 00"
# N, range 0, ready, brake applied
DISPLAY_N_READY_RANGE_0 = "80 00 05 a0 00 00 00"
# N, range 40, not ready, released (0x80 in byte 3)
DISPLAY_N_OFF_RELEASED = "a8 00 03 80 00 00 00"

# --- 0x714, parking brake ---------------------------------------------------------------
BRAKE_ON = "01 00"
BRAKE_OFF = "00 00"

# --- the VIN: VR1 / AB12C3 / D4567890 in ASCII --------------------------------------------
VIN_1_TO_3 = "56 52 31"  # V R 1
VIN_4_TO_9 = "41 42 31 32 43 33"  # A B 1 2 C 3
VIN_10_TO_17 = "44 34 35 36 37 38 39 30"  # D 4 5 6 7 8 9 0


def frame(text: str) -> bytes:
    return bytes.fromhex(text)


def fed(*frames: tuple[int, str]) -> AmiBus:
    bus = AmiBus()
    for t, (can_id, text) in enumerate(frames):
        bus.feed(can_id, frame(text), t / 100)
    return bus


def snap(bus: AmiBus):  # -> VehicleInfo
    return bus.snapshot(vin=VIN, received_at=AT)


def stats(**counts: int) -> AmiBusStats:
    zero = dict.fromkeys(attrs.fields_dict(AmiBusStats), 0)
    return AmiBusStats(**{**zero, **counts})


def close(value: float | None, expected: float) -> bool:
    return value is not None and math.isclose(value, expected, rel_tol=0, abs_tol=1e-9)


# --- the signals -----------------------------------------------------------------------


def test_the_hand_written_display_frames_are_what_the_helper_gives() -> None:
    # The constants and the helper are derived independently; they must agree.
    assert display(range_km=45, gear=2, ready=True, brake=False) == DISPLAY_D_READY
    assert display(range_km=40, gear=1, ready=False, brake=True) == DISPLAY_N_OFF_BRAKE
    assert display(range_km=45, gear=0, ready=True, brake=False) == DISPLAY_R_READY
    assert display(range_km=0, gear=1, ready=False, brake=True) == DISPLAY_N_OFF_RANGE_0


def test_battery_frame() -> None:
    info = snap(fed((0x580, BATTERY_CHARGING)))
    assert info.data.battery_soc == Measure(85, "%")
    assert type(info.data.battery_soc.value) is int
    assert close(info.live.pack_current, 1.6)
    assert close(info.live.pack_voltage, 52.6)
    # 52.6 V * 1.6 A = 84.16 W = 0.084 kW (rounded to watts)
    assert info.live.pack_power == 0.084


def test_negative_current_and_power() -> None:
    info = snap(fed((0x580, BATTERY_DRIVING)))
    assert close(info.live.pack_current, -41.5)
    assert close(info.live.pack_voltage, 50.2)
    assert info.data.battery_soc == Measure(64, "%")
    # 50.2 V * -41.5 A = -2083.3 W
    assert info.live.pack_power == -2.083


def test_odometer_and_speed() -> None:
    info = snap(fed((0x581, ODOMETER_32)))
    assert info.data.total_odometer == Measure(4696.2, "km")
    assert info.live.speed == 32
    # 123456.7 km = 1234567 = 0x12D687 -> 87 D6 12 in bytes 4-6; speed 0
    info = snap(fed((0x581, "00 00 00 00 87 d6 12 00")))
    assert info.data.total_odometer == Measure(123456.7, "km")
    assert info.live.speed == 0
    # bytes 0-3 are not part of it: the same odometer whatever they hold
    info = snap(fed((0x581, "ff ff ff ff 72 b7 00 00")))
    assert info.data.total_odometer == Measure(4696.2, "km")


@pytest.mark.parametrize(
    ("payload", "minutes"),
    [
        (CHARGE_9000_S, 150),  # 9000 s = 150 min exactly
        ("3d 00 00 00 00 00 00 00", 2),  # 61 s = 0x003D: 1 min 1 s, rounded up
        ("3c 00 00 00 00 00 00 00", 1),  # 60 s = 0x003C
        ("01 00 00 00 00 00 00 00", 1),  # 1 s
        ("00 00 00 00 00 00 00 00", 0),  # 0 s
        ("a0 8c 00 00 00 00 00 00", 600),  # 36000 s = 0x8CA0: 600 min, the longest
        ("a1 8c 00 00 00 00 00 00", None),  # 36001 s: over 600 min means "not charging"
        ("fe ff 00 00 00 00 00 00", None),  # 65534 s, 1092 min: "not charging"
        (CHARGE_NO_ESTIMATE, None),  # FFFF: no estimate
    ],
)
def test_charge_delay(payload: str, minutes: int | None) -> None:
    info = snap(fed((0x582, payload)))
    expected = None if minutes is None else Measure(minutes, "min")
    assert info.data.charge_delay == expected
    if expected is not None:
        assert type(info.data.charge_delay.value) is int


def test_charge_delay_ignores_bytes_2_to_7() -> None:
    info = snap(fed((0x582, "28 23 ff ff ff ff ff ff")))
    assert info.data.charge_delay == Measure(150, "min")


@pytest.mark.parametrize(
    ("payload", "temperatures"),
    [
        (TEMPS_23_21, (23, 21)),
        (TEMPS_MINUS_5_12, (-5, -12)),
        ("80 00 00 7f 00 00 00 00", (-128, 127)),  # the int8 extremes
        ("17 ff ff 15 ff ff ff ff", (23, 21)),  # bytes 1, 2 and 4-7 are not part of it
    ],
)
def test_pack_temperatures(payload: str, temperatures: tuple[int, int]) -> None:
    assert snap(fed((0x594, payload))).live.pack_temperatures == temperatures


@pytest.mark.parametrize(
    ("byte0", "byte1", "gear"),
    [
        (0x2D, 0x00, Gear.REVERSE),  # 0: bit 7 of byte 0 clear, bit 0 of byte 1 clear
        (0xAD, 0x00, Gear.NEUTRAL),  # 1: bit 7 of byte 0 set (0x80 | 0x2D)
        (0x2D, 0x01, Gear.DRIVE),  # 2: bit 0 of byte 1 set
        (0xAD, 0x01, Gear.UNKNOWN),  # 3: both, "Null"
        (0x2D, 0xFF, Gear.DRIVE),  # only bit 0 of byte 1 counts
        (0xAD, 0xFE, Gear.NEUTRAL),
    ],
)
def test_gear(byte0: int, byte1: int, gear: Gear) -> None:
    info = snap(fed((0x713, f"{byte0:02x} {byte1:02x} 05 80 00 00 00")))
    assert info.data.rnd is gear
    assert info.data.remaining_autonomy == Measure(45, "km")  # the gear bit is not range


@pytest.mark.parametrize(
    ("byte0", "range_km"),
    [(0x2D, 45), (0xAD, 45), (0x7F, 127), (0xFF, 127), (0x01, 1)],
)
def test_remaining_range_is_byte_0_low_7_bits(byte0: int, range_km: int) -> None:
    info = snap(fed((0x713, f"{byte0:02x} 00 05 80 00 00 00")))  # ready, not charging
    assert info.data.remaining_autonomy == Measure(range_km, "km")


@pytest.mark.parametrize(
    ("byte2", "ready"),
    [(0x05, True), (0x04, True), (0xFF, True), (0x03, False), (0x00, False), (0xFB, False)],
)
def test_ready_is_byte_2_bit_2(byte2: int, ready: bool) -> None:
    info = snap(fed((0x713, f"a8 00 {byte2:02x} 80 00 00 00")))
    assert info.live.ready is ready
    assert info.data.system_state is (SystemState.READY if ready else SystemState.STANDBY)


@pytest.mark.parametrize(
    ("byte3", "brake"),
    [
        (0xA0, ParkBrake.ACTIVATED),
        (0x20, ParkBrake.ACTIVATED),
        (0x80, ParkBrake.RELEASED),
        (0xDF, ParkBrake.RELEASED),  # every bit but bit 5
    ],
)
def test_parking_brake_from_0x713_when_0x714_is_not_seen(byte3: int, brake: ParkBrake) -> None:
    info = snap(fed((0x713, f"a8 00 03 {byte3:02x} 00 00 00")))
    assert info.data.park_brake_status is brake


@pytest.mark.parametrize(
    ("payload", "brake"),
    [
        (BRAKE_ON, ParkBrake.ACTIVATED),
        (BRAKE_OFF, ParkBrake.RELEASED),
        ("01 ff", ParkBrake.ACTIVATED),  # byte 1 is not part of it
        ("00 ff", ParkBrake.RELEASED),
    ],
)
def test_parking_brake_from_0x714(payload: str, brake: ParkBrake) -> None:
    assert snap(fed((0x714, payload))).data.park_brake_status is brake


@pytest.mark.parametrize("byte0", [0x02, 0x03, 0x10, 0x80, 0xFF])
def test_0x714_other_values_are_unknown(byte0: int) -> None:
    bus = fed((0x714, f"{byte0:02x} 00"))
    assert snap(bus).data.park_brake_status is ParkBrake.UNKNOWN
    assert bus.stats.out_of_range == 1


@pytest.mark.parametrize(
    ("display_frame", "brake"),
    [(DISPLAY_N_OFF_BRAKE, ParkBrake.ACTIVATED), (DISPLAY_N_OFF_RELEASED, ParkBrake.RELEASED)],
)
def test_0x713_is_used_when_0x714_is_out_of_range(display_frame: str, brake: ParkBrake) -> None:
    bus = fed((0x714, "02 00"), (0x713, display_frame))
    assert snap(bus).data.park_brake_status is brake
    assert bus.stats.out_of_range == 1
    assert bus.stats.brake_disagreements == 0


def test_0x714_wins_over_0x713_and_a_disagreement_is_counted() -> None:
    bus = fed((0x713, DISPLAY_N_OFF_RELEASED), (0x714, BRAKE_ON))
    assert snap(bus).data.park_brake_status is ParkBrake.ACTIVATED
    assert bus.stats.brake_disagreements == 1
    bus = fed((0x713, DISPLAY_N_OFF_BRAKE), (0x714, BRAKE_ON))
    assert snap(bus).data.park_brake_status is ParkBrake.ACTIVATED
    assert bus.stats.brake_disagreements == 0


def test_a_disagreement_is_counted_once_however_many_readings_see_it() -> None:
    bus = fed((0x713, DISPLAY_N_OFF_RELEASED), (0x714, BRAKE_ON))
    for t in range(5):
        bus.feed(0x714, frame(BRAKE_ON), 1.0 + t)
        snap(bus)
    assert bus.stats.brake_disagreements == 1
    bus.feed(0x713, frame(DISPLAY_N_OFF_BRAKE), 7.0)  # they agree again
    snap(bus)
    bus.feed(0x713, frame(DISPLAY_N_OFF_RELEASED), 8.0)  # and disagree again
    snap(bus)
    assert bus.stats.brake_disagreements == 2


# --- status and systemState ---------------------------------------------------------------


def test_nothing_seen() -> None:
    bus = AmiBus()
    info = snap(bus)
    assert info.status is VehicleStatus.UNKNOWN
    assert info.current_alert is None
    assert info.previous_alert is None
    data = info.data
    assert data.battery_soc is None
    assert data.system_state is SystemState.UNKNOWN
    assert data.battery_state is BatteryState.UNKNOWN
    assert data.remaining_autonomy is None
    assert data.rnd is Gear.UNKNOWN
    assert data.charge_delay is None
    assert data.park_brake_status is ParkBrake.UNKNOWN
    assert data.total_odometer is None
    assert info.live == LiveData()
    assert bus.vin is None
    assert not bus.charging
    assert not bus.cant_charge
    assert bus.last_timestamp is None
    assert bus.stats == stats()


def test_charging_standing_with_the_brake_applied() -> None:
    bus = fed((0x580, BATTERY_CHARGING), (0x581, ODOMETER_STANDING), (0x713, DISPLAY_N_OFF_BRAKE))
    info = snap(bus)
    assert bus.charging
    assert info.status is VehicleStatus.CHARGING
    assert info.data.system_state is SystemState.CHARGING
    assert info.data.battery_state is BatteryState.UNKNOWN  # not on the decoded bus


def test_charging_needs_only_a_positive_current() -> None:
    # Speed and ready never seen: a positive current alone is charging.
    bus = fed((0x580, BATTERY_CHARGING))
    assert bus.charging
    assert snap(bus).status is VehicleStatus.CHARGING


def test_charging_in_neutral_with_the_car_ready() -> None:
    bus = fed((0x580, BATTERY_CHARGING), (0x581, ODOMETER_STANDING), (0x713, DISPLAY_N_READY_BRAKE))
    info = snap(bus)
    assert info.status is VehicleStatus.CHARGING
    assert info.data.system_state is SystemState.CHARGING


def test_regenerative_braking_is_driving_not_charging() -> None:
    bus = fed((0x580, BATTERY_REGEN), (0x581, ODOMETER_25), (0x713, DISPLAY_D_READY))
    info = snap(bus)
    assert not bus.charging
    assert info.status is VehicleStatus.DRIVING
    assert info.data.system_state is SystemState.READY
    assert close(info.live.pack_current, 12.3)


def test_positive_current_while_moving_is_driving_even_without_the_display() -> None:
    bus = fed((0x580, BATTERY_REGEN), (0x581, ODOMETER_25))
    assert not bus.charging
    info = snap(bus)
    assert info.status is VehicleStatus.DRIVING
    assert info.data.system_state is SystemState.UNKNOWN  # ready never seen


@pytest.mark.parametrize("display_frame", [DISPLAY_D_READY, DISPLAY_R_READY])
def test_positive_current_standing_ready_in_d_or_r_is_driving(display_frame: str) -> None:
    bus = fed((0x580, BATTERY_CHARGING), (0x581, ODOMETER_STANDING), (0x713, display_frame))
    assert not bus.charging
    assert snap(bus).status is VehicleStatus.DRIVING


def test_driving() -> None:
    bus = fed((0x580, BATTERY_DRIVING), (0x581, ODOMETER_32), (0x713, DISPLAY_D_READY))
    info = snap(bus)
    assert info.status is VehicleStatus.DRIVING
    assert info.data.system_state is SystemState.READY
    assert info.data.rnd is Gear.DRIVE
    assert info.live.speed == 32


def test_reversing() -> None:
    # R, ready, 3 km/h = 0x03 in byte 7
    bus = fed(
        (0x580, BATTERY_DRIVING),
        (0x581, "00 00 00 00 72 b7 00 03"),
        (0x713, DISPLAY_R_READY),
    )
    info = snap(bus)
    assert info.status is VehicleStatus.DRIVING
    assert info.data.rnd is Gear.REVERSE


def test_ready_in_drive_standing_is_driving() -> None:
    # Waiting at a light: speed 0, ready, D.
    bus = fed((0x580, BATTERY_IDLE), (0x581, ODOMETER_STANDING), (0x713, DISPLAY_D_READY))
    assert snap(bus).status is VehicleStatus.DRIVING


def test_speed_alone_makes_driving() -> None:
    bus = fed((0x581, ODOMETER_32))
    info = snap(bus)
    assert info.status is VehicleStatus.DRIVING
    assert info.data.system_state is SystemState.UNKNOWN


def test_ready_in_drive_with_speed_unknown_is_driving() -> None:
    assert snap(fed((0x713, DISPLAY_D_READY))).status is VehicleStatus.DRIVING


def test_parked_switched_off() -> None:
    bus = fed((0x580, BATTERY_IDLE), (0x581, ODOMETER_STANDING), (0x713, DISPLAY_N_OFF_BRAKE))
    info = snap(bus)
    assert info.status is VehicleStatus.PARKED
    assert info.data.system_state is SystemState.STANDBY
    assert info.live.ready is False


def test_parked_ready_in_neutral() -> None:
    bus = fed((0x580, BATTERY_IDLE), (0x581, ODOMETER_STANDING), (0x713, DISPLAY_N_READY_BRAKE))
    info = snap(bus)
    assert info.status is VehicleStatus.PARKED
    assert info.data.system_state is SystemState.READY


def test_parked_ready_with_gear_null() -> None:
    # Null = 3: 0x80 | 40 = 0xA8, byte 1 01; ready
    info = snap(fed((0x581, ODOMETER_STANDING), (0x713, "a8 01 05 a0 00 00 00")))
    assert info.data.rnd is Gear.UNKNOWN
    assert info.status is VehicleStatus.PARKED
    assert info.data.system_state is SystemState.READY


@pytest.mark.parametrize(
    "frames",
    [
        [(0x581, ODOMETER_STANDING)],  # speed 0
        [(0x580, BATTERY_IDLE)],  # current <= 0
        [(0x580, BATTERY_ZERO)],
        [(0x713, DISPLAY_N_OFF_BRAKE)],  # ready known
    ],
)
def test_parked_from_any_one_of_speed_current_or_ready(frames: list[tuple[int, str]]) -> None:
    assert snap(fed(*frames)).status is VehicleStatus.PARKED


@pytest.mark.parametrize(
    "frames",
    [
        [(0x594, TEMPS_23_21)],
        [(0x582, CHARGE_9000_S)],
        [(0x714, BRAKE_ON)],
        [(0x712, VIN_1_TO_3), (0x710, VIN_4_TO_9), (0x711, VIN_10_TO_17)],
        [(0x593, "c0 04 00 00 00 00 00 00")],  # the 12 V frame, reported nowhere
    ],
)
def test_unknown_status_without_speed_current_or_ready(frames: list[tuple[int, str]]) -> None:
    info = snap(fed(*frames))
    assert info.status is VehicleStatus.UNKNOWN
    assert info.data.system_state is SystemState.UNKNOWN


def test_the_12v_frame_is_counted_but_reported_nowhere() -> None:
    # 12.48 V = 1248 = 0x04E0 -> E0 04
    bus = fed((0x580, BATTERY_IDLE), (0x593, "e0 04 00 00 00 00 00 00"))
    assert bus.stats.frames == 2
    info = snap(bus)
    assert info == snap(fed((0x580, BATTERY_IDLE)))


# --- remainingAutonomy's 0 -----------------------------------------------------------------


def test_range_0_while_charging_is_unknown() -> None:
    bus = fed((0x580, BATTERY_CHARGING), (0x581, ODOMETER_STANDING), (0x713, DISPLAY_N_OFF_RANGE_0))
    assert snap(bus).data.remaining_autonomy is None


def test_range_0_while_charging_ready_is_unknown() -> None:
    bus = fed(
        (0x580, BATTERY_CHARGING), (0x581, ODOMETER_STANDING), (0x713, DISPLAY_N_READY_RANGE_0)
    )
    info = snap(bus)
    assert info.status is VehicleStatus.CHARGING
    assert info.data.remaining_autonomy is None


def test_range_0_not_ready_is_unknown() -> None:
    bus = fed((0x580, BATTERY_IDLE), (0x713, DISPLAY_N_OFF_RANGE_0))
    assert snap(bus).data.remaining_autonomy is None


@pytest.mark.parametrize("display_frame", [DISPLAY_D_READY_RANGE_0, DISPLAY_N_READY_RANGE_0])
def test_range_0_ready_and_not_charging_is_kept(display_frame: str) -> None:
    bus = fed((0x580, BATTERY_IDLE), (0x713, display_frame))
    assert snap(bus).data.remaining_autonomy == Measure(0, "km")


def test_a_range_above_0_is_kept_while_charging_and_not_ready() -> None:
    bus = fed((0x580, BATTERY_CHARGING), (0x713, DISPLAY_N_OFF_BRAKE))
    info = snap(bus)
    assert info.status is VehicleStatus.CHARGING
    assert info.data.remaining_autonomy == Measure(40, "km")


# --- cantCharge ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # remaining time reported, brake released (0x714), no current: can't charge
        ([(0x582, CHARGE_9000_S), (0x714, BRAKE_OFF), (0x580, BATTERY_ZERO)], True),
        ([(0x582, CHARGE_9000_S), (0x714, BRAKE_OFF), (0x580, BATTERY_IDLE)], True),
        # the brake from 0x713 when 0x714 is not seen
        ([(0x582, CHARGE_9000_S), (0x713, DISPLAY_N_OFF_RELEASED), (0x580, BATTERY_ZERO)], True),
        # 0 s remaining is a remaining time too
        ([(0x582, "00 00 00 00 00 00 00 00"), (0x714, BRAKE_OFF), (0x580, BATTERY_ZERO)], True),
        # current flows: it does charge
        ([(0x582, CHARGE_9000_S), (0x714, BRAKE_OFF), (0x580, BATTERY_CHARGING)], False),
        # brake applied
        ([(0x582, CHARGE_9000_S), (0x714, BRAKE_ON), (0x580, BATTERY_ZERO)], False),
        # no estimate
        ([(0x582, CHARGE_NO_ESTIMATE), (0x714, BRAKE_OFF), (0x580, BATTERY_ZERO)], False),
        # something never seen
        ([(0x714, BRAKE_OFF), (0x580, BATTERY_ZERO)], False),
        ([(0x582, CHARGE_9000_S), (0x580, BATTERY_ZERO)], False),
        ([(0x582, CHARGE_9000_S), (0x714, BRAKE_OFF)], False),
        # 0x714 out of range and 0x713 not seen: the brake is unknown
        ([(0x582, CHARGE_9000_S), (0x714, "07 00"), (0x580, BATTERY_ZERO)], False),
        # moving (25 km/h), or ready in D: driving, not plugged in
        ([(0x582, CHARGE_9000_S), (0x714, BRAKE_OFF), (0x580, BATTERY_IDLE),
          (0x581, ODOMETER_25)], False),
        ([(0x582, CHARGE_9000_S), (0x713, DISPLAY_D_READY), (0x580, BATTERY_IDLE)], False),
        # standing, speed 0, not ready: the heuristic holds
        ([(0x582, CHARGE_9000_S), (0x714, BRAKE_OFF), (0x580, BATTERY_IDLE),
          (0x581, ODOMETER_STANDING)], True),
        # a remaining time over 600 min means "not charging"
        ([(0x582, "a1 8c 00 00 00 00 00 00"), (0x714, BRAKE_OFF), (0x580, BATTERY_ZERO)], False),
    ],
)  # fmt: skip
def test_cant_charge(frames: list[tuple[int, str]], expected: bool) -> None:
    assert fed(*frames).cant_charge is expected


def test_cant_charge_follows_the_newest_frames() -> None:
    bus = fed((0x582, CHARGE_9000_S), (0x714, BRAKE_OFF), (0x580, BATTERY_ZERO))
    assert bus.cant_charge
    bus.feed(0x714, frame(BRAKE_ON), 10.0)
    assert not bus.cant_charge
    bus.feed(0x714, frame(BRAKE_OFF), 11.0)
    bus.feed(0x580, frame(BATTERY_CHARGING), 12.0)
    assert not bus.cant_charge


# --- live ------------------------------------------------------------------------------------


def test_live_data_of_a_full_reading() -> None:
    bus = fed(
        (0x580, BATTERY_DRIVING),
        (0x581, ODOMETER_32),
        (0x594, TEMPS_MINUS_5_12),
        (0x713, DISPLAY_D_READY),
    )
    live = snap(bus).live
    assert live.speed == 32
    assert close(live.pack_voltage, 50.2)
    assert close(live.pack_current, -41.5)
    assert live.pack_power == -2.083
    assert live.pack_temperatures == (-5, -12)
    assert live.ready is True


def test_pack_power_needs_both_voltage_and_current() -> None:
    # 0x580 with voltage 42.00 V = 4200 = 0x1068 -> 68 10 (out of range): power unknown
    info = snap(fed((0x580, "10 00 68 10 00 55 00 00")))
    assert info.live.pack_voltage is None
    assert close(info.live.pack_current, 1.6)
    assert info.live.pack_power is None


# --- the VIN -----------------------------------------------------------------------------------


def test_vin_assembled_from_three_frames() -> None:
    bus = fed((0x711, VIN_10_TO_17), (0x710, VIN_4_TO_9), (0x712, VIN_1_TO_3))
    assert bus.vin == "VR1AB12C3D4567890"
    assert bus.stats.invalid_vins == 0


@pytest.mark.parametrize("missing", [0x710, 0x711, 0x712])
def test_no_vin_until_all_three_frames_are_seen(missing: int) -> None:
    frames = {0x712: VIN_1_TO_3, 0x710: VIN_4_TO_9, 0x711: VIN_10_TO_17}
    del frames[missing]
    bus = fed(*frames.items())
    assert bus.vin is None
    assert bus.stats.invalid_vins == 0


def test_longer_vin_frames_are_accepted_and_their_extra_bytes_ignored() -> None:
    bus = fed(
        (0x712, VIN_1_TO_3 + " 00 00 00 00 00"),  # 8 bytes
        (0x710, VIN_4_TO_9 + " ff ff"),  # 8 bytes
        (0x711, VIN_10_TO_17 + " 41 41 41 41"),  # 12 bytes: more than CAN carries
        (0x711, VIN_10_TO_17),
    )
    assert bus.vin == "VR1AB12C3D4567890"
    assert bus.stats.bad_lengths == 1
    assert bus.stats.frames == 3


@pytest.mark.parametrize(
    ("short", "padded"),
    [
        ((0x713, DISPLAY_D_READY), (0x713, DISPLAY_D_READY + " 00")),
        ((0x714, BRAKE_ON), (0x714, BRAKE_ON + " 00 00 00 00 00 00")),
    ],
)
def test_frames_padded_to_8_bytes_read_as_the_dbc_length(
    short: tuple[int, str], padded: tuple[int, str]
) -> None:
    # 0x713's 7 bytes and 0x714's 2 come from one source; a car that pads them to 8
    # must still be read.
    as_given = fed((0x580, BATTERY_IDLE), short)
    as_padded = fed((0x580, BATTERY_IDLE), padded)
    assert snap(as_padded) == snap(as_given)
    assert as_padded.stats == as_given.stats


@pytest.mark.parametrize(("can_id", "payload"), [(0x712, "56 52"), (0x710, "41 42 31 32 43")])
def test_shorter_vin_frames_are_refused(can_id: int, payload: str) -> None:
    frames = {0x712: VIN_1_TO_3, 0x710: VIN_4_TO_9, 0x711: VIN_10_TO_17}
    frames[can_id] = payload
    bus = fed(*frames.items())
    assert bus.vin is None
    assert bus.stats.bad_lengths == 1


@pytest.mark.parametrize(
    "chars_10_to_17",
    [
        "44 34 35 36 37 38 39 ff",  # not ASCII
        "44 34 35 36 37 38 39 4f",  # "O" cannot appear in a VIN
        "44 34 35 36 37 38 39 00",  # NUL
        "44 34 35 36 37 38 39 20",  # a space: 16 characters once stripped
    ],
)
def test_an_invalid_vin_is_counted_and_not_used(chars_10_to_17: str) -> None:
    bus = fed((0x712, VIN_1_TO_3), (0x710, VIN_4_TO_9), (0x711, chars_10_to_17))
    assert bus.vin is None
    assert bus.vin is None  # asked again: counted once
    assert bus.stats.invalid_vins == 1
    bus.feed(0x711, frame(VIN_10_TO_17), 9.0)
    assert bus.vin == "VR1AB12C3D4567890"
    assert bus.stats.invalid_vins == 1


def test_the_vin_follows_a_changed_frame() -> None:
    bus = fed((0x712, VIN_1_TO_3), (0x710, VIN_4_TO_9), (0x711, VIN_10_TO_17))
    assert bus.vin == "VR1AB12C3D4567890"
    bus.feed(0x712, frame("56 52 37"), 5.0)  # V R 7
    assert bus.vin == "VR7AB12C3D4567890"


# --- the SDK shape -------------------------------------------------------------------------------


def full_bus() -> AmiBus:
    return fed(
        (0x580, BATTERY_CHARGING),
        (0x581, ODOMETER_STANDING),
        (0x582, CHARGE_9000_S),
        (0x594, TEMPS_23_21),
        (0x713, DISPLAY_N_OFF_BRAKE),
        (0x714, BRAKE_ON),
        (0x712, VIN_1_TO_3),
        (0x710, VIN_4_TO_9),
        (0x711, VIN_10_TO_17),
    )


def test_to_sdk_of_a_charging_car() -> None:
    bus = full_bus()
    assert bus.vin is not None
    sdk = to_sdk(bus.snapshot(vin=bus.vin, received_at=AT))
    assert json.loads(json.dumps(sdk)) == {
        "vin": "VR1AB12C3D4567890",
        "currentAlert": None,
        "previousAlert": None,
        "data": {
            "batterySoc": {"unit": "%", "value": 85},
            "systemState": "charging",
            "batteryState": "unknown",
            "remainingAutonomy": {"unit": "km", "value": 40},
            "rnd": "neutral",
            "chargeDelay": {"unit": "min", "value": 150},
            "parkBrakeStatus": "activated",
            "totalOdometer": {"unit": "km", "value": 4696.2},
        },
        "receivedAt": "2026-11-22T10:15:30Z",
        "status": "charging",
    }


def test_to_sdk_of_a_bus_never_seen() -> None:
    assert json.loads(json.dumps(to_sdk(snap(AmiBus())))) == {
        "vin": VIN,
        "currentAlert": None,
        "previousAlert": None,
        "data": {
            "batterySoc": None,
            "systemState": "unknown",
            "batteryState": "unknown",
            "remainingAutonomy": None,
            "rnd": "unknown",
            "chargeDelay": None,
            "parkBrakeStatus": "unknown",
            "totalOdometer": None,
        },
        "receivedAt": "2026-11-22T10:15:30Z",
        "status": "unknown",
    }


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [(0x580, BATTERY_DRIVING), (0x581, ODOMETER_32), (0x713, DISPLAY_D_READY)],
        [(0x580, BATTERY_IDLE), (0x713, DISPLAY_N_OFF_RANGE_0), (0x582, CHARGE_NO_ESTIMATE)],
    ],
)
def test_to_sdk_round_trips_but_for_live(frames: list[tuple[int, str]]) -> None:
    info = snap(fed(*frames))
    assert info.live is not None
    back = from_sdk(json.loads(json.dumps(to_sdk(info))))
    assert back.live is None  # the SDK's shape has no field for it
    assert back == attrs.evolve(info, live=None)


def test_round_trip_of_the_full_reading() -> None:
    info = snap(full_bus())
    assert from_sdk(to_sdk(info)) == attrs.evolve(info, live=None)


# --- malformed input ----------------------------------------------------------------------------

LENGTHS = {
    0x580: 8,
    0x581: 8,
    0x582: 8,
    0x593: 8,
    0x594: 8,
    0x710: 6,
    0x711: 8,
    0x712: 3,
    0x713: 7,
    0x714: 2,
}


@pytest.mark.parametrize("can_id", sorted(LENGTHS), ids=hex)
def test_wrong_lengths_are_counted_and_ignored(can_id: int) -> None:
    bus = AmiBus()
    # Shorter than the DBC's length, or longer than a CAN frame carries.
    wrong = [0, LENGTHS[can_id] - 1, 9, 64]
    for i, length in enumerate(wrong):
        bus.feed(can_id, b"\x01" * length, float(i))
    assert bus.stats == stats(bad_lengths=len(wrong))
    assert snap(bus) == snap(AmiBus())
    assert bus.last_timestamp is None


def test_a_short_battery_frame_does_not_replace_the_good_one() -> None:
    bus = fed((0x580, BATTERY_CHARGING))
    bus.feed(0x580, frame(BATTERY_DRIVING)[:7], 1.0)
    bus.feed(0x580, frame(BATTERY_DRIVING) + b"\x00", 2.0)
    info = snap(bus)
    assert close(info.live.pack_current, 1.6)
    assert bus.stats == stats(frames=1, bad_lengths=2)
    assert bus.last_timestamp == 0.0


@pytest.mark.parametrize("can_id", [0x000, 0x123, 0x583, 0x715, 0x652, 0x7FF, -1])
def test_unknown_ids_are_counted_and_ignored(can_id: int) -> None:
    bus = AmiBus()
    bus.feed(can_id, frame(BATTERY_CHARGING), 0.0)
    assert bus.stats == stats(unknown_ids=1)
    assert snap(bus) == snap(AmiBus())


@pytest.mark.parametrize(
    ("can_id", "is_extended_id"),
    [(0x800, False), (0x18DAF110, False), (0x1FFFFFFF, False), (0x580, True), (0x123, True)],
)
def test_extended_ids_are_counted_and_ignored(can_id: int, is_extended_id: bool) -> None:
    bus = AmiBus()
    bus.feed(can_id, frame(BATTERY_CHARGING), 0.0, is_extended_id=is_extended_id)
    assert bus.stats == stats(extended_ids=1)
    assert snap(bus) == snap(AmiBus())


@pytest.mark.parametrize("soc", [101, 0x80, 0xFF])
def test_soc_out_of_range(soc: int) -> None:
    bus = fed((0x580, f"10 00 8c 14 00 {soc:02x} 00 00"))
    info = snap(bus)
    assert info.data.battery_soc is None
    assert close(info.live.pack_current, 1.6)  # the frame's other values still count
    assert close(info.live.pack_voltage, 52.6)
    assert bus.stats.out_of_range == 1


@pytest.mark.parametrize("soc", [0, 100])
def test_soc_at_its_bounds(soc: int) -> None:
    bus = fed((0x580, f"10 00 8c 14 00 {soc:02x} 00 00"))
    assert snap(bus).data.battery_soc == Measure(soc, "%")
    assert bus.stats.out_of_range == 0


@pytest.mark.parametrize(
    ("voltage_bytes", "volts"),
    [
        ("00 00", None),  # 0
        ("68 10", None),  # 4200 = 0x1068: 42.00 V
        ("69 10", 42.01),  # 4201 = 0x1069
        ("63 19", 64.99),  # 6499 = 0x1963
        ("64 19", None),  # 6500 = 0x1964: 65.00 V
        ("ff ff", None),  # 655.35 V
    ],
)
def test_voltage_range(voltage_bytes: str, volts: float | None) -> None:
    bus = fed((0x580, f"10 00 {voltage_bytes} 00 55 00 00"))
    info = snap(bus)
    if volts is None:
        assert info.live.pack_voltage is None
        assert bus.stats.out_of_range == 1
    else:
        assert close(info.live.pack_voltage, volts)
        assert bus.stats.out_of_range == 0
    assert info.data.battery_soc == Measure(85, "%")


@pytest.mark.parametrize(
    ("current_bytes", "amperes"),
    [
        ("ff 7f", 3276.7),  # 32767 = 0x7FFF, the largest the 16 bits carry
        ("00 80", -3276.8),  # -32768 = 0x8000
        ("01 00", 0.1),
        ("ff ff", -0.1),
    ],
)
def test_current_at_the_ends_of_its_range(current_bytes: str, amperes: float) -> None:
    # The DBC's range is the whole signed 16-bit range, so every payload is in range.
    bus = fed((0x580, f"{current_bytes} 8c 14 00 55 00 00"))
    info = snap(bus)
    assert info.live.pack_current == pytest.approx(amperes, abs=1e-9)
    assert bus.stats.out_of_range == 0


def test_out_of_range_is_counted_once_per_payload_not_per_reading() -> None:
    bus = fed((0x580, "10 00 8c 14 00 65 00 00"))  # SoC 101
    for _ in range(3):
        snap(bus)
    assert bus.stats.out_of_range == 1
    bus.feed(0x580, frame("10 00 8c 14 00 66 00 00"), 1.0)  # SoC 102: a new payload
    snap(bus)
    assert bus.stats.out_of_range == 2


def test_an_out_of_range_value_becomes_known_again_with_a_good_frame() -> None:
    bus = fed((0x580, "10 00 8c 14 00 65 00 00"))
    assert snap(bus).data.battery_soc is None
    bus.feed(0x580, frame(BATTERY_CHARGING), 1.0)
    assert snap(bus).data.battery_soc == Measure(85, "%")


# --- feed ---------------------------------------------------------------------------------------


def test_feed_counts_and_timestamps() -> None:
    bus = AmiBus()
    bus.feed(0x580, frame(BATTERY_CHARGING), 1.5)
    bus.feed(0x580, frame(BATTERY_CHARGING), 2.5)  # the same payload again
    bus.feed(0x123, frame(BATTERY_CHARGING), 3.5)  # not used: no timestamp
    assert bus.stats == stats(frames=2, unknown_ids=1)
    assert bus.changes == 1
    assert bus.last_timestamp == 2.5
    bus.feed(0x580, frame(BATTERY_DRIVING), 4.5)
    assert bus.changes == 2


def test_the_newest_frame_wins_after_a_reading() -> None:
    bus = fed((0x580, BATTERY_CHARGING))
    assert snap(bus).status is VehicleStatus.CHARGING
    bus.feed(0x580, frame(BATTERY_DRIVING), 1.0)
    bus.feed(0x581, frame(ODOMETER_32), 1.0)
    info = snap(bus)
    assert info.status is VehicleStatus.DRIVING
    assert close(info.live.pack_current, -41.5)
    bus.feed(0x580, frame(BATTERY_CHARGING), 2.0)  # back to the first payload
    assert close(snap(bus).live.pack_current, 1.6)


def test_feed_stores_a_copy() -> None:
    bus = AmiBus()
    buffer = bytearray(frame(BATTERY_CHARGING))
    bus.feed(0x580, buffer, 0.0)
    buffer[:] = frame(BATTERY_DRIVING)  # the caller reuses its buffer
    info = snap(bus)
    assert close(info.live.pack_current, 1.6)
    assert info.data.battery_soc == Measure(85, "%")
    # and fed again, the changed buffer is a change
    bus.feed(0x580, buffer, 1.0)
    assert close(snap(bus).live.pack_current, -41.5)
    buffer[:] = frame(BATTERY_CHARGING)
    assert close(snap(bus).live.pack_current, -41.5)


def test_feed_takes_memoryviews() -> None:
    bus = AmiBus()
    backing = bytearray(frame(BATTERY_CHARGING))
    bus.feed(0x580, memoryview(backing), 0.0)
    backing[5] = 0x10  # SoC 16
    assert snap(bus).data.battery_soc == Measure(85, "%")


KNOWN_IDS = sorted(LENGTHS)

can_ids = st.one_of(
    st.sampled_from(KNOWN_IDS),
    st.integers(0, 0x7FF),
    st.integers(0x800, 0x1FFFFFFF),
    st.integers(-(2**64), 2**64),
)
payloads = st.one_of(
    st.binary(max_size=8),
    st.binary(max_size=64),
    st.sampled_from([BATTERY_CHARGING, BATTERY_DRIVING, DISPLAY_D_READY, CHARGE_9000_S]).map(frame),
    st.binary(min_size=8, max_size=8).map(bytearray),
)
timestamps = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(can_ids, payloads, timestamps, st.booleans()), max_size=60))
def test_random_frames_never_raise(frames: list[tuple[int, bytes, float, bool]]) -> None:
    bus = AmiBus()
    for i, (can_id, data, timestamp, extended) in enumerate(frames):
        bus.feed(can_id, data, timestamp, is_extended_id=extended)
        if i % 7 == 0:
            bus.snapshot(vin=VIN, received_at=AT)
    info = bus.snapshot(vin=VIN, received_at=AT)
    vin = bus.vin
    assert isinstance(bus.cant_charge, bool)
    assert isinstance(bus.charging, bool)
    json.dumps(to_sdk(info))  # a valid reading, whatever came in
    if vin is not None:
        bus.snapshot(vin=vin, received_at=AT)
    counted = bus.stats
    assert counted.frames + counted.unknown_ids + counted.extended_ids + counted.bad_lengths == len(
        frames
    )


def random_frame(rng: random.Random) -> tuple[int, bytes, bool]:
    pick = rng.random()
    if pick < 0.7:  # a known ID, mostly of the right length
        can_id = rng.choice(KNOWN_IDS)
        length = LENGTHS[can_id] if rng.random() < 0.9 else rng.randrange(0, 16)
    elif pick < 0.9:
        can_id, length = rng.randrange(0, 0x800), rng.randrange(0, 9)
    else:
        can_id, length = rng.randrange(0x800, 0x20000000), rng.randrange(0, 9)
    return can_id, rng.randbytes(length), rng.random() < 0.05


def containers(bus: AmiBus) -> list[tuple[str, int]]:
    """Every mutable container reachable from ``bus``, with its size."""
    found: list[tuple[str, int]] = []
    seen: set[int] = set()
    todo: list[object] = [bus]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        if isinstance(obj, dict | list | set | bytearray):
            found.append((type(obj).__name__, len(obj)))
        todo.extend(gc.get_referents(obj))
    return sorted(found)


def test_state_stays_the_same_size_over_100k_frames() -> None:
    # The structure the bus holds (one slot per DBC message, no queue, no history)
    # does not grow with what it is fed.  How many bytes it holds is measured in
    # benchmarks/bench_can.py, where a tracemalloc reading belongs.
    rng = random.Random(20261122)
    bus = AmiBus()
    slots = len(bus._slots)

    def run(count: int, start: int) -> None:
        for i in range(start, start + count):
            can_id, data, extended = random_frame(rng)
            bus.feed(can_id, data, float(i), is_extended_id=extended)
            if i % 500 == 0:
                bus.snapshot(vin=VIN, received_at=AT)
                _ = bus.vin, bus.cant_charge

    run(2_000, 0)
    snap(bus)
    before = containers(bus)
    run(100_000, 2_000)
    snap(bus)
    assert len(bus._slots) == slots
    assert containers(bus) == before
    assert bus.stats.frames > 50_000


# --- messages that stop coming ----------------------------------------------------------


def test_a_message_not_seen_for_5_s_of_bus_time_is_forgotten() -> None:
    bus = AmiBus()
    bus.feed(0x582, frame(CHARGE_9000_S), 0.0)
    bus.feed(0x714, frame(BRAKE_OFF), 0.0)
    bus.feed(0x580, frame(BATTERY_ZERO), 0.0)
    for part, payload in ((0x712, VIN_1_TO_3), (0x710, VIN_4_TO_9), (0x711, VIN_10_TO_17)):
        bus.feed(part, frame(payload), 0.0)
    assert snap(bus).data.charge_delay == Measure(150, "min")
    assert bus.cant_charge
    # The charger falls silent (the cable was pulled); the rest keeps coming.
    for t in range(1, 6):
        bus.feed(0x580, frame(BATTERY_ZERO), float(t))
        bus.feed(0x714, frame(BRAKE_OFF), float(t))
        if t < 5:
            assert snap(bus).data.charge_delay == Measure(150, "min"), t
    info = snap(bus)  # at t = 5: 5 s without 0x582, the VIN frames as long
    assert info.data.charge_delay is None
    assert not bus.cant_charge
    assert info.data.battery_soc == Measure(64, "%")  # still coming
    assert bus.vin == VIN  # the VIN is never forgotten
    # It comes back: known again.
    bus.feed(0x582, frame(CHARGE_9000_S), 6.0)
    assert snap(bus).data.charge_delay == Measure(150, "min")


def test_a_silent_bus_forgets_nothing() -> None:
    # Time is the bus's own: with no frames at all, the last values stand (the
    # vehicle reports the silence as a disconnection).
    bus = fed((0x580, BATTERY_IDLE), (0x582, CHARGE_9000_S))
    first = snap(bus)
    assert snap(bus) == first
    assert first.data.charge_delay == Measure(150, "min")


def test_after_a_silence_the_messages_not_back_yet_are_not_forgotten_at_once() -> None:
    bus = fed((0x580, BATTERY_IDLE), (0x581, ODOMETER_STANDING), (0x713, DISPLAY_N_OFF_BRAKE))
    before = snap(bus)
    assert before.status is VehicleStatus.PARKED
    # The car sleeps for a minute; on waking, 0x580 comes first.
    bus.feed(0x580, frame(BATTERY_IDLE), 60.0)
    woken = snap(bus)
    assert woken == before  # odometer, gear, brake still known: no flicker
    # The others never come back: 5 s of a live bus later they are unknown.
    bus.feed(0x580, frame(BATTERY_IDLE), 63.0)
    assert snap(bus).data.total_odometer is not None
    bus.feed(0x580, frame(BATTERY_IDLE), 65.0)
    gone = snap(bus)
    assert gone.data.total_odometer is None
    assert gone.data.rnd is Gear.UNKNOWN
    assert gone.data.battery_soc == Measure(64, "%")
