"""ami.dbc and the decoders compiled from it, checked against cantools itself.

The compiled decoders must return exactly what cantools' ``decode_message`` returns
(same values, same types, floats bit for bit), for any payload; the DBC itself must
load strictly, cite a source for every signal, and carry real ranges.
"""

from __future__ import annotations

import importlib.resources
import math
import struct

import cantools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x.can import dbc

MESSAGES = dbc.compiled()
FRAME_IDS = sorted(MESSAGES)
#: The VIN frames: their DLC and byte positions are assumed, so longer frames are fine.
VIN_IDS = frozenset({0x710, 0x711, 0x712})
#: The public sources a comment must name (docs/can.md, "Sources").
SOURCES = ("flrahe", "servicemensch", "stwoowts", "mreschka")


def dbc_text() -> str:
    return importlib.resources.files("o2x.can").joinpath(dbc.DBC_NAME).read_text("utf-8")


def same_value(ours: object, theirs: object) -> bool:
    """Equal, of the same type, and for floats the same 64 bits."""
    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, float):
        return struct.pack("<d", ours) == struct.pack("<d", theirs)  # type: ignore[arg-type]
    return ours == theirs


def assert_decodes_like_cantools(frame_id: int, data: bytes) -> None:
    message = MESSAGES[frame_id]
    ours = message.decode(data)
    theirs = dbc.database().decode_message(frame_id, data, decode_choices=False)
    assert tuple(theirs) == message.signal_names  # cantools' order is the DBC's order
    assert len(ours) == len(theirs)
    for name, mine, reference in zip(message.signal_names, ours, theirs.values(), strict=True):
        assert same_value(mine, reference), (
            f"{message.name}.{name} of {data.hex()}: "
            f"{mine!r} ({type(mine).__name__}) != {reference!r} ({type(reference).__name__})"
        )


# --- the compiled decoders against cantools ------------------------------------------


@pytest.mark.parametrize("frame_id", FRAME_IDS, ids=hex)
@settings(max_examples=300)
@given(data=st.data())
def test_compiled_decoder_equals_cantools(frame_id: int, data: st.DataObject) -> None:
    length = MESSAGES[frame_id].length
    extra = data.draw(st.integers(0, 56), label="extra bytes") if frame_id in VIN_IDS else 0
    payload = data.draw(st.binary(min_size=length + extra, max_size=length + extra))
    assert_decodes_like_cantools(frame_id, payload)


@pytest.mark.parametrize("frame_id", FRAME_IDS, ids=hex)
@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x80, 0x7F, 0x55, 0xAA])
def test_compiled_decoder_equals_cantools_at_the_edges(frame_id: int, fill: int) -> None:
    # Every sign bit set, none set, and alternating bits: the cases a shift or a
    # sign extension gets wrong first.
    assert_decodes_like_cantools(frame_id, bytes([fill]) * MESSAGES[frame_id].length)


def test_a_float_that_differs_in_its_last_bit_is_not_the_same_value() -> None:
    # same_value is what makes the differential test bit-for-bit: it must tell
    # 52.6 from the float next to it, 0 from 0.0 and 0.0 from -0.0.
    assert same_value(5260 * 0.01, 5260 * 0.01)
    assert not same_value(52.6, math.nextafter(52.6, math.inf))
    assert not same_value(0, 0.0)
    assert not same_value(0.0, -0.0)


def test_compiled_covers_every_message_of_the_database() -> None:
    database = dbc.database()
    assert sorted(m.frame_id for m in database.messages) == FRAME_IDS
    for message in database.messages:
        ours = MESSAGES[message.frame_id]
        assert ours.name == message.name
        assert ours.length == message.length
        assert ours.signal_names == tuple(s.name for s in message.signals)


def test_index_names_a_signal_and_refuses_an_unknown_one() -> None:
    battery = MESSAGES[0x580]
    assert battery.index("StateOfCharge") == 2
    with pytest.raises(KeyError, match="no signal 'Nope'"):
        battery.index("Nope")


# --- the DBC file ------------------------------------------------------------------


def test_the_dbc_is_ascii_so_every_dbc_reader_reads_the_same_text() -> None:
    raw = importlib.resources.files("o2x.can").joinpath(dbc.DBC_NAME).read_bytes()
    assert raw.isascii()


def test_the_dbc_loads_strictly() -> None:
    database = cantools.database.load_string(dbc_text(), database_format="dbc", strict=True)
    assert sorted(m.frame_id for m in database.messages) == FRAME_IDS


def test_strict_loading_would_catch_overlapping_signals() -> None:
    # What the test above relies on: strict mode does check. StateOfCharge moved onto
    # the high byte of PackVoltage must be refused.
    broken = dbc_text().replace("SG_ StateOfCharge : 40|8@1+", "SG_ StateOfCharge : 24|8@1+")
    assert broken != dbc_text()
    with pytest.raises(cantools.database.UnsupportedDatabaseFormatError):
        cantools.database.load_string(broken, database_format="dbc", strict=True)


def test_every_identifier_is_standard_and_every_signal_little_endian() -> None:
    for message in dbc.database().messages:
        assert not message.is_extended_frame, message.name
        assert message.frame_id <= 0x7FF, message.name
        for signal in message.signals:
            assert signal.byte_order == "little_endian", signal.name
            assert signal.start + signal.length <= 8 * message.length, signal.name


def test_the_message_layout_is_the_public_one() -> None:
    # ID, DLC and (start, length, signed, scale) per signal, from the public findings
    # (docs/can.md, "Signals"), written out here rather than read from the DBC.
    expected = {
        0x580: (8, [(0, 16, True, 0.1), (16, 16, False, 0.01), (40, 8, False, 1)]),
        0x581: (8, [(32, 24, False, 0.1), (56, 8, False, 1)]),
        0x582: (8, [(0, 16, False, 1)]),
        0x593: (8, [(0, 16, False, 0.01)]),
        0x594: (8, [(0, 8, True, 1), (24, 8, True, 1)]),
        0x710: (6, [(8 * i, 8, False, 1) for i in range(6)]),
        0x711: (8, [(8 * i, 8, False, 1) for i in range(8)]),
        0x712: (3, [(8 * i, 8, False, 1) for i in range(3)]),
        0x713: (7, [(0, 7, False, 1), (7, 2, False, 1), (18, 1, False, 1), (29, 1, False, 1)]),
        0x714: (2, [(0, 8, False, 1)]),
    }
    actual = {
        frame_id: (m.length, [(s.start, s.length, s.signed, s.scale) for s in m.signals])
        for frame_id, m in MESSAGES.items()
    }
    assert actual == expected


def test_every_signal_cites_a_source() -> None:
    for message in dbc.database().messages:
        for signal in message.signals:
            comments = [c for c in (signal.comment, message.comment) if c]
            assert comments, f"{message.name}.{signal.name} has no comment"
            assert any(source in c for c in comments for source in SOURCES), (
                f"{message.name}.{signal.name}: no source named in {comments}"
            )


def test_the_gear_value_table() -> None:
    gear = dbc.database().get_message_by_frame_id(0x713).get_signal_by_name("Gear")
    assert {int(raw): str(name) for raw, name in gear.choices.items()} == {
        0: "R",
        1: "N",
        2: "D",
        3: "Null",
    }
    spec = MESSAGES[0x713].signals[MESSAGES[0x713].index("Gear")]
    assert spec.choices == {0: "R", 1: "N", 2: "D", 3: "Null"}


def test_no_estimate_is_named_in_the_dbc() -> None:
    spec = MESSAGES[0x582].signals[0]
    assert spec.choices == {0xFFFF: "NoEstimate"}


def raw_limits(spec: dbc.SignalSpec) -> tuple[int, int]:
    if spec.signed:
        return -(1 << (spec.length - 1)), (1 << (spec.length - 1)) - 1
    return 0, (1 << spec.length) - 1


def test_ranges_are_set_and_not_the_placeholders() -> None:
    # flrahe's DBC gives [0|1] to signals it had no range for; a range that narrow
    # would make o2x treat every real odometer reading as out of range. [0|1] is
    # right only for a two-state signal (its value table has exactly 0 and 1).
    for message in MESSAGES.values():
        for spec in message.signals:
            assert spec.minimum is not None, spec.name
            assert spec.maximum is not None, spec.name
            assert spec.minimum < spec.maximum, spec.name
            if (spec.minimum, spec.maximum) == (0, 1):
                assert set(spec.choices) == {0, 1}, f"{message.name}.{spec.name}: [0|1]"
            # The range lies within what the bits can carry (half a step of slack
            # for the scaled bounds).
            low, high = raw_limits(spec)
            slack = spec.scale / 2
            assert spec.minimum >= low * spec.scale + spec.offset - slack, spec.name
            assert spec.maximum <= high * spec.scale + spec.offset + slack, spec.name


def test_ranges_are_the_public_ones() -> None:
    ranges = {
        (m.frame_id, s.name): (s.minimum, s.maximum) for m in MESSAGES.values() for s in m.signals
    }
    assert ranges[0x580, "StateOfCharge"] == (0, 100)
    assert ranges[0x580, "PackVoltage"] == (42.01, 64.99)  # servicemensch: raw 4201..6499
    assert ranges[0x580, "PackCurrent"] == (-3276.8, 3276.7)
    assert ranges[0x581, "Odometer"] == (0, 1677721.5)
    assert ranges[0x581, "Speed"] == (0, 255)
    assert ranges[0x713, "RemainingRange"] == (0, 127)
    assert ranges[0x713, "Gear"] == (0, 3)
    assert ranges[0x714, "ParkBrake"] == (0, 1)  # 8 bits wide, any value but 0 or 1 unknown
    assert ranges[0x594, "PackTemperature1"] == (-128, 127)


# --- encode --------------------------------------------------------------------------


@st.composite
def in_range_values(draw: st.DrawFn, frame_id: int) -> dict[str, int | float]:
    """Physical values for every signal of ``frame_id``: whole steps within its range."""
    values: dict[str, int | float] = {}
    for spec in MESSAGES[frame_id].signals:
        low, high = raw_limits(spec)
        minimum, maximum, scale, offset = spec.minimum, spec.maximum, spec.scale, spec.offset
        assert minimum is not None
        assert maximum is not None
        # The whole steps of the range (within a step; the filter settles the edges).
        low = max(low, math.floor((minimum - offset) / scale))
        high = min(high, math.ceil((maximum - offset) / scale))
        raws = st.integers(low, high).filter(
            lambda raw, s=scale, o=offset, lo=minimum, hi=maximum: lo <= raw * s + o <= hi
        )
        values[spec.name] = draw(raws, label=spec.name) * scale + offset
    return values


@pytest.mark.parametrize("frame_id", FRAME_IDS, ids=hex)
@settings(max_examples=100)
@given(data=st.data())
def test_encode_round_trips(frame_id: int, data: st.DataObject) -> None:
    message = MESSAGES[frame_id]
    values = data.draw(in_range_values(frame_id))
    payload = dbc.encode(frame_id, values)
    assert isinstance(payload, bytes)
    assert len(payload) == message.length
    decoded = dict(zip(message.signal_names, message.decode(payload), strict=True))
    for name, value in values.items():
        assert same_value(decoded[name], value), (name, decoded[name], value)
    assert dbc.encode(frame_id, decoded) == payload
    assert_decodes_like_cantools(frame_id, payload)


def test_encode_known_payloads() -> None:
    # Payloads derived by hand: 1.6 A = 0x0010, 52.6 V = 5260 = 0x148C, 85 % = 0x55.
    assert dbc.encode(0x580, {"PackCurrent": 1.6, "PackVoltage": 52.6, "StateOfCharge": 85}) == (
        bytes.fromhex("10008c1400550000")
    )
    # -41.5 A = -415 = 0xFE61.
    assert dbc.encode(0x580, {"PackCurrent": -41.5, "PackVoltage": 50.2}).hex() == (
        "61fe9c1300000000"
    )
    # D = 2: bit 7 of byte 0 clear, bit 0 of byte 1 set; ready = byte 2 bit 2.
    assert dbc.encode(0x713, {"RemainingRange": 45, "Gear": 2, "Ready": 1}).hex() == (
        "2d010400000000"
    )
    assert dbc.encode(0x714, {"ParkBrake": 1}).hex() == "0100"


def out_of_range_cases() -> list[tuple[int, str, int | float]]:
    cases = []
    for frame_id, message in MESSAGES.items():
        for spec in message.signals:
            assert spec.minimum is not None
            assert spec.maximum is not None
            cases.append((frame_id, spec.name, spec.minimum - spec.scale))
            cases.append((frame_id, spec.name, spec.maximum + spec.scale))
    return cases


@pytest.mark.parametrize(("frame_id", "signal", "value"), out_of_range_cases())
def test_encode_refuses_a_value_outside_its_range(
    frame_id: int, signal: str, value: int | float
) -> None:
    others = {s.name: max(s.minimum or 0, 0) for s in MESSAGES[frame_id].signals}
    assert dbc.encode(frame_id, others)  # the other values alone are fine
    with pytest.raises(ValueError, match=MESSAGES[frame_id].name):
        dbc.encode(frame_id, {**others, signal: value})


@pytest.mark.parametrize(
    ("frame_id", "values"),
    [
        (0x580, {"PackVoltage": 52.6, "StateOfCharge": 101}),
        (0x580, {"PackVoltage": 42.0}),
        (0x580, {"PackVoltage": 65.0}),
        (0x714, {"ParkBrake": 2}),
        (0x713, {"Gear": 4}),
        (0x713, {"RemainingRange": 128}),
    ],
)
def test_encode_refuses_the_public_bounds(frame_id: int, values: dict[str, float]) -> None:
    full = {"PackVoltage": 52.6} if frame_id == 0x580 else {}
    with pytest.raises(ValueError, match="cannot encode"):
        dbc.encode(frame_id, {**full, **values})


def test_a_signal_left_out_is_zero_and_checked_like_any_other() -> None:
    # 0 V is outside PackVoltage's range: leaving it out of 0x580 is refused.
    with pytest.raises(ValueError, match="PackVoltage"):
        dbc.encode(0x580, {"PackCurrent": 1.6, "StateOfCharge": 85})
    assert dbc.encode(0x582, {}) == bytes(8)
