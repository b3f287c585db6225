"""The data model: status derivation, VINs, alerts, VehicleInfo."""

from __future__ import annotations

import datetime as dt
import enum
import string

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from o2x.dongle.frames import InfoFrame, decode_frame, encode_info
from o2x.errors import InvalidVIN
from o2x.model import (
    Alerts,
    BatteryState,
    Gear,
    Measure,
    ParkBrake,
    SystemState,
    VehicleData,
    VehicleInfo,
    VehicleStatus,
    derive_status,
    normalize_vin,
)

VIN = "VR1AB12C3D4567890"
VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
ALERT_NAMES = (
    "parking_brake",
    "cluster_issue",
    "stop",
    "battery_charge",
    "brake_system_problem",
    "service",
    "battery_temperature",
    "turtle_mode",
)

# --- derive_status: the whole truth table, written out --------------------------

S, G, V = SystemState, Gear, VehicleStatus
TRUTH_TABLE = {
    # charging whenever the system says so, whatever the gear
    (S.CHARGING, G.NEUTRAL): V.CHARGING,
    (S.CHARGING, G.DRIVE): V.CHARGING,
    (S.CHARGING, G.REVERSE): V.CHARGING,
    (S.CHARGING, G.UNKNOWN): V.CHARGING,
    # ready: driving in drive or reverse, parked in neutral
    (S.READY, G.DRIVE): V.DRIVING,
    (S.READY, G.REVERSE): V.DRIVING,
    (S.READY, G.NEUTRAL): V.PARKED,
    (S.READY, G.UNKNOWN): V.UNKNOWN,
    # off or standby: parked, whatever the gear
    (S.OFF, G.NEUTRAL): V.PARKED,
    (S.OFF, G.DRIVE): V.PARKED,
    (S.OFF, G.REVERSE): V.PARKED,
    (S.OFF, G.UNKNOWN): V.PARKED,
    (S.STANDBY, G.NEUTRAL): V.PARKED,
    (S.STANDBY, G.DRIVE): V.PARKED,
    (S.STANDBY, G.REVERSE): V.PARKED,
    (S.STANDBY, G.UNKNOWN): V.PARKED,
    # anything else: unknown
    (S.FAULT, G.NEUTRAL): V.UNKNOWN,
    (S.FAULT, G.DRIVE): V.UNKNOWN,
    (S.FAULT, G.REVERSE): V.UNKNOWN,
    (S.FAULT, G.UNKNOWN): V.UNKNOWN,
    (S.UNKNOWN, G.NEUTRAL): V.UNKNOWN,
    (S.UNKNOWN, G.DRIVE): V.UNKNOWN,
    (S.UNKNOWN, G.REVERSE): V.UNKNOWN,
    (S.UNKNOWN, G.UNKNOWN): V.UNKNOWN,
}


def test_the_truth_table_covers_every_combination() -> None:
    assert set(TRUTH_TABLE) == {(s, g) for s in SystemState for g in Gear}


@pytest.mark.parametrize(("state", "gear"), list(TRUTH_TABLE))
def test_derive_status(state: SystemState, gear: Gear) -> None:
    assert derive_status(state, gear) is TRUTH_TABLE[state, gear]


@pytest.mark.parametrize(("state", "gear"), list(TRUTH_TABLE))
def test_from_frame_derives_the_status(state: SystemState, gear: Gear) -> None:
    # Every combination through the wire: unknown members travel as unlisted codes.
    frame = decode_frame(
        encode_info(
            system_state=200 if state is S.UNKNOWN else state,
            rnd=200 if gear is G.UNKNOWN else gear,
        )
    )
    assert isinstance(frame, InfoFrame)
    info = VehicleInfo.from_frame(frame, vin=VIN, received_at=dt.datetime.now(dt.UTC))
    assert info.status is TRUTH_TABLE[state, gear]


# --- VINs -------------------------------------------------------------------------


@given(st.text(alphabet=VIN_CHARS, min_size=17, max_size=17), st.data())
def test_normalize_vin_accepts_vins_in_any_case_and_spacing(vin: str, data: st.DataObject) -> None:
    mixed = "".join(c.lower() if data.draw(st.booleans()) else c for c in vin)
    padded = data.draw(st.sampled_from(["", " ", "\t", "\n "])) + mixed + " "
    assert normalize_vin(padded) == vin
    assert normalize_vin(vin) == vin


@pytest.mark.parametrize("letter", "IOQioq")
def test_normalize_vin_rejects_i_o_and_q(letter: str) -> None:
    with pytest.raises(InvalidVIN, match=f"'{letter.upper()}' cannot appear in a VIN"):
        normalize_vin("VR1AB12C3D456789" + letter)


@given(st.characters().filter(lambda c: c.upper() not in VIN_CHARS and not c.isspace()))
def test_normalize_vin_rejects_every_other_character(char: str) -> None:
    with pytest.raises(InvalidVIN):
        normalize_vin("VR1AB12C3D456789" + char)


@pytest.mark.parametrize(
    "vin",
    [
        "VR1AB12C3D45678\ufb00",  # the ligature ff upper-cases to "FF": 17 characters
        "VR1AB12C3D456789\u017f",  # long s upper-cases to "S"
        "VR1AB12C3D456789\u00df",  # sharp s upper-cases to "SS"
        "VR1AB12C3D456789\uff10",  # fullwidth zero
        "VR1AB12C3D45678\u0131",  # dotless i
    ],
)
def test_normalize_vin_does_not_make_a_vin_of_non_ascii_letters(vin: str) -> None:
    with pytest.raises(InvalidVIN, match="is not a VIN"):
        normalize_vin(vin)


@pytest.mark.parametrize(("vin", "length"), [("", 0), ("VR1AB12C3D456789", 16), (VIN + "1", 18)])
def test_normalize_vin_rejects_wrong_lengths(vin: str, length: int) -> None:
    with pytest.raises(InvalidVIN, match=f"a VIN has 17 characters, not {length}"):
        normalize_vin(vin)


@pytest.mark.parametrize("value", [None, 17, b"VR1AB12C3D4567890", ["V"] * 17])
def test_normalize_vin_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidVIN, match=f"not {type(value).__name__}"):
        normalize_vin(value)  # type: ignore[arg-type]


def test_invalid_vin_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="is not a VIN"):
        normalize_vin("hello")


def test_a_megabyte_long_non_vin_is_quoted_cut_short() -> None:
    with pytest.raises(InvalidVIN) as caught:
        normalize_vin("x" * 1_000_000)
    assert str(caught.value) == (
        f"'{'x' * 60}'... (1000000 characters) is not a VIN: a VIN has 17 characters, not 1000000"
    )


# --- alerts ------------------------------------------------------------------------


@pytest.mark.parametrize("mask", range(256))
def test_alerts_mask_round_trip(mask: int) -> None:
    alerts = Alerts.from_mask(mask)
    assert alerts.mask == mask
    assert [getattr(alerts, name) for name in ALERT_NAMES] == [
        bool(mask & 1 << bit) for bit in range(8)
    ]
    assert alerts.active() == tuple(n for b, n in enumerate(ALERT_NAMES) if mask & 1 << b)
    assert Alerts(**{name: getattr(alerts, name) for name in ALERT_NAMES}) == alerts


def test_alert_field_order_is_the_bit_order() -> None:
    assert tuple(a.name for a in attrs.fields(Alerts)) == ALERT_NAMES
    assert Alerts(turtle_mode=True).mask == 0x80
    assert Alerts(parking_brake=True).mask == 0x01


@pytest.mark.parametrize("mask", [-1, 256, 1 << 16])
def test_alerts_from_mask_rejects_more_than_8_bits(mask: int) -> None:
    with pytest.raises(ValueError, match=f"an alert mask is 8 bits \\(0..255\\), not {mask}"):
        Alerts.from_mask(mask)


def test_alerts_from_mask_takes_integers_of_other_types() -> None:
    # What operator.index takes (an IntFlag, a NumPy integer) is a mask; a bool is not.
    class Bits(enum.IntFlag):
        PARKING_BRAKE = 1
        STOP = 4

    assert Alerts.from_mask(Bits.PARKING_BRAKE | Bits.STOP) == Alerts.from_mask(5)

    class Index:
        def __index__(self) -> int:
            return 3

    assert Alerts.from_mask(Index()) == Alerts.from_mask(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("mask", [1.0, True, False, "1", None])
def test_alerts_from_mask_takes_only_an_int(mask: object) -> None:
    # 1.0 == 1 and True == 1 in Python, but neither is a bit mask.
    with pytest.raises(TypeError, match=r"an alert mask is an int \(0\.\.255\), not "):
        Alerts.from_mask(mask)  # type: ignore[arg-type]


def test_alerts_are_immutable() -> None:
    alerts = Alerts()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        alerts.stop = True  # type: ignore[misc]
    assert alerts.mask == 0


# --- measures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "error", "message"),
    [
        (float("nan"), "%", ValueError, "a measure's value must be a finite number, not nan"),
        (float("-inf"), "km", ValueError, "a measure's value must be a finite number, not -inf"),
        (True, "%", TypeError, "a measure's value must be an int or a float, not True (bool)"),
        ("42", "%", TypeError, "a measure's value must be an int or a float, not '42' (str)"),
        (None, "%", TypeError, "a measure's value must be an int or a float, not None (NoneType)"),
        (2**53, "km", ValueError, "an integer within +-(2**53 - 1), not 9007199254740992"),
        (-(10**5000), "km", ValueError, "not an integer of at least 5000 digits"),
        (42, 1, TypeError, "a measure's unit must be a string such as 'km', not 1"),
        (42, None, TypeError, "a measure's unit must be a string such as 'km', not None"),
    ],
    ids=["nan", "-inf", "bool", "text", "None", "2**53", "5000 digits", "unit 1", "no unit"],
)
def test_measure_rejects_what_json_cannot_carry(
    value: object, unit: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        Measure(value, unit)  # type: ignore[arg-type]
    assert message in str(caught.value)
    with pytest.raises(error):  # evolve builds through __init__ too
        attrs.evolve(Measure(1, "km"), value=value, unit=unit)


# --- VehicleInfo ---------------------------------------------------------------------


def make_info(received_at: dt.datetime, vin: str = VIN) -> VehicleInfo:
    return VehicleInfo(
        vin=vin,
        received_at=received_at,
        status=VehicleStatus.PARKED,
        current_alert=Alerts(),
        previous_alert=Alerts(),
        data=VehicleData(
            None, S.OFF, BatteryState.IDLE, None, G.NEUTRAL, None, ParkBrake.ACTIVATED, None
        ),
    )


def test_received_at_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="received_at must be timezone-aware"):
        make_info(dt.datetime(2026, 11, 22, 10, 15, 30))


def test_received_at_must_be_a_datetime() -> None:
    with pytest.raises(TypeError, match="received_at must be a datetime, not str"):
        make_info("2026-11-22T10:15:30Z")  # type: ignore[arg-type]


@given(
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.builds(
            dt.timezone, st.timedeltas(dt.timedelta(hours=-23), dt.timedelta(hours=23))
        ),
    )
)
def test_received_at_is_kept_in_utc_at_whole_seconds(moment: dt.datetime) -> None:
    info = make_info(moment)
    assert info.received_at.tzinfo is dt.UTC
    assert info.received_at.microsecond == 0
    # The same instant, cut (not rounded) to the second.
    assert dt.timedelta(0) <= moment - info.received_at < dt.timedelta(seconds=1)


def test_received_at_example() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    info = make_info(dt.datetime(2026, 11, 22, 11, 15, 30, 999_999, tzinfo=paris))
    assert info.received_at == dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=dt.UTC)
    assert str(info.received_at) == "2026-11-22 10:15:30+00:00"


def test_received_at_out_of_range_in_utc() -> None:
    early = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    with pytest.raises(ValueError, match="out of range in UTC"):
        make_info(early)


def test_vehicle_info_normalises_and_checks_the_vin() -> None:
    now = dt.datetime.now(dt.UTC)
    assert make_info(now, vin=" vr1ab12c3d4567890").vin == VIN
    with pytest.raises(InvalidVIN):
        make_info(now, vin="VR1AB12C3D456789O")


frames = st.builds(
    encode_info,
    seq=st.integers(0, 255),
    current_alert=st.integers(0, 255),
    previous_alert=st.integers(0, 255),
    battery_soc=st.none() | st.integers(0, 100),
    system_state=st.integers(0, 255),
    battery_state=st.integers(0, 255),
    remaining_autonomy=st.none() | st.integers(0, 0xFFFE),
    rnd=st.integers(0, 255),
    charge_delay=st.none() | st.integers(0, 0xFFFE),
    park_brake_status=st.integers(0, 255),
    total_odometer=st.none() | st.integers(0, 0xFFFF_FFFE).map(lambda t: t / 10),
).map(decode_frame)


@given(frames)
def test_from_frame_units_and_values(frame: InfoFrame) -> None:
    moment = dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=dt.UTC)
    info = VehicleInfo.from_frame(frame, vin=VIN.lower(), received_at=moment)
    assert info.vin == VIN
    assert info.received_at == moment
    assert info.current_alert == frame.current_alert
    assert info.previous_alert == frame.previous_alert
    data = info.data
    for measure, value, unit in (
        (data.battery_soc, frame.battery_soc, "%"),
        (data.remaining_autonomy, frame.remaining_autonomy, "km"),
        (data.charge_delay, frame.charge_delay, "min"),
        (data.total_odometer, frame.total_odometer, "km"),
    ):
        if value is None:
            assert measure is None
        else:
            assert measure == Measure(value, unit)
            assert type(measure.value) is type(value)  # 42 stays an int, 1234.5 a float
    assert data.system_state is frame.system_state
    assert data.battery_state is frame.battery_state
    assert data.rnd is frame.rnd
    assert data.park_brake_status is frame.park_brake_status
    assert info.status is derive_status(frame.system_state, frame.rnd)


def test_from_frame_example() -> None:
    frame = decode_frame(
        encode_info(
            battery_soc=42,
            system_state=S.READY,
            rnd=G.DRIVE,
            remaining_autonomy=31,
            charge_delay=90,
            total_odometer=1234.5,
        )
    )
    assert isinstance(frame, InfoFrame)
    info = VehicleInfo.from_frame(frame, vin=VIN, received_at=dt.datetime.now(dt.UTC))
    assert info.status is V.DRIVING
    assert info.data.battery_soc == Measure(42, "%")
    assert info.data.remaining_autonomy == Measure(31, "km")
    assert info.data.charge_delay == Measure(90, "min")
    assert info.data.total_odometer == Measure(1234.5, "km")


def test_the_enum_values_are_the_sdk_strings() -> None:
    assert [m.value for m in SystemState] == [
        "off",
        "standby",
        "ready",
        "charging",
        "fault",
        "unknown",
    ]
    assert [m.value for m in Gear] == ["neutral", "drive", "reverse", "unknown"]
    assert [m.value for m in VehicleStatus] == ["unknown", "driving", "parked", "charging"]
    assert {m.value for m in ParkBrake} == {"released", "activated", "unknown"}
    assert set(string.ascii_lowercase) >= {c for m in BatteryState for c in m.value}
