"""The O2X wire format v1 (docs/protocol.md): CRC, encoding, decoding, errors.

Expected values come from the specification, written out here independently of
o2x.frames: a bit-by-bit CRC, frames assembled byte by byte, and the code tables.
"""

from __future__ import annotations

import pickle
import re
import struct
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from o2x.dongle.frames import (
    MAX_FRAME_SIZE,
    MAX_PAYLOAD,
    EventFrame,
    FrameType,
    IdentityFrame,
    InfoFrame,
    crc16,
    decode_frame,
    encode,
    encode_event,
    encode_frame,
    encode_identity,
    encode_info,
)
from o2x.errors import (
    BadCRC,
    BadStartOfFrame,
    FrameError,
    O2XError,
    TruncatedFrame,
    UnknownFrameType,
    UnsupportedVersion,
    ValueOutOfRange,
)
from o2x.model import Alerts, BatteryState, EventKind, Gear, ParkBrake, SystemState

# --- the specification, independently of o2x.frames ----------------------------

SYSTEM_CODES = {
    0: SystemState.OFF,
    1: SystemState.STANDBY,
    2: SystemState.READY,
    3: SystemState.CHARGING,
    4: SystemState.FAULT,
}
BATTERY_CODES = {
    0: BatteryState.BOOTLOADER,
    1: BatteryState.INIT,
    2: BatteryState.IDLE,
    3: BatteryState.DISCHARGING,
    4: BatteryState.CHARGING,
    5: BatteryState.BALANCING,
    6: BatteryState.FAULT,
}
GEAR_CODES = {0: Gear.NEUTRAL, 1: Gear.DRIVE, 2: Gear.REVERSE}
BRAKE_CODES = {0: ParkBrake.RELEASED, 1: ParkBrake.ACTIVATED}
ALERT_BITS = (
    "parking_brake",
    "cluster_issue",
    "stop",
    "battery_charge",
    "brake_system_problem",
    "service",
    "battery_temperature",
    "turtle_mode",
)
VIN = "VR1AB12C3D4567890"
VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"


def reference_crc(data: bytes) -> int:
    """CRC-16/CCITT-FALSE one bit at a time: poly 0x1021, init 0xFFFF, no reflection."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def reference_frame(ftype: int, seq: int, payload: bytes, version: int = 1) -> bytes:
    """A frame assembled byte by byte: SOF, version, type, seq, length, payload, CRC (LE)."""
    body = bytes((0xA5, version, ftype, seq, len(payload))) + payload
    crc = reference_crc(body[1:])
    return body + bytes((crc & 0xFF, crc >> 8))


def le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


@st.composite
def info_wire(draw: st.DrawFn, *, extra: bool = True) -> dict[str, Any]:
    """Every INFO field as its wire value; ``None`` for the not-available sentinels."""
    return {
        "seq": draw(st.integers(0, 255)),
        "cur": draw(st.integers(0, 255)),
        "prev": draw(st.integers(0, 255)),
        "soc": draw(st.none() | st.integers(0, 100)),
        "system": draw(st.integers(0, 255)),
        "battery": draw(st.integers(0, 255)),
        "autonomy": draw(st.none() | st.integers(0, 0xFFFE)),
        "gear": draw(st.integers(0, 255)),
        "delay": draw(st.none() | st.integers(0, 0xFFFE)),
        "brake": draw(st.integers(0, 255)),
        "odometer_tenths": draw(st.none() | st.integers(0, 0xFFFF_FFFE)),
        "extra": draw(st.binary(max_size=MAX_PAYLOAD - 16)) if extra else b"",
    }


def reference_info_payload(w: dict[str, Any]) -> bytes:
    def opt(value: int | None, size: int) -> bytes:
        return le((1 << 8 * size) - 1 if value is None else value, size)

    return (
        bytes((w["cur"], w["prev"], 0xFF if w["soc"] is None else w["soc"]))
        + bytes((w["system"], w["battery"]))
        + opt(w["autonomy"], 2)
        + bytes((w["gear"],))
        + opt(w["delay"], 2)
        + bytes((w["brake"],))
        + opt(w["odometer_tenths"], 4)
        + b"\x00"  # reserved
        + w["extra"]
    )


def encode_wire(w: dict[str, Any]) -> bytes:
    """encode_info for the wire values ``w`` (raw codes given as ints)."""
    tenths = w["odometer_tenths"]
    return encode_info(
        seq=w["seq"],
        current_alert=w["cur"],
        previous_alert=w["prev"],
        battery_soc=w["soc"],
        system_state=w["system"],
        battery_state=w["battery"],
        remaining_autonomy=w["autonomy"],
        rnd=w["gear"],
        charge_delay=w["delay"],
        park_brake_status=w["brake"],
        total_odometer=None if tenths is None else tenths / 10,
        extra=w["extra"],
    )


def assert_decodes_to(frame: InfoFrame, w: dict[str, Any], raw: bytes) -> None:
    assert type(frame) is InfoFrame
    assert frame.seq == w["seq"]
    for name, mask in (("current_alert", w["cur"]), ("previous_alert", w["prev"])):
        alerts = getattr(frame, name)
        assert isinstance(alerts, Alerts)
        assert [getattr(alerts, a) for a in ALERT_BITS] == [bool(mask >> b & 1) for b in range(8)]
    assert frame.battery_soc == w["soc"]
    assert frame.system_state is SYSTEM_CODES.get(w["system"], SystemState.UNKNOWN)
    assert frame.battery_state is BATTERY_CODES.get(w["battery"], BatteryState.UNKNOWN)
    assert frame.rnd is GEAR_CODES.get(w["gear"], Gear.UNKNOWN)
    assert frame.park_brake_status is BRAKE_CODES.get(w["brake"], ParkBrake.UNKNOWN)
    assert frame.system_state_code == w["system"]
    assert frame.battery_state_code == w["battery"]
    assert frame.rnd_code == w["gear"]
    assert frame.park_brake_code == w["brake"]
    assert frame.remaining_autonomy == w["autonomy"]
    assert frame.charge_delay == w["delay"]
    tenths = w["odometer_tenths"]
    if tenths is None:
        assert frame.total_odometer is None
    else:
        assert isinstance(frame.total_odometer, float)
        assert frame.total_odometer == tenths / 10
    assert type(frame.raw) is bytes
    assert frame.raw == raw
    assert frame.payload == raw[5:-2] == reference_info_payload(w)


# --- CRC ---------------------------------------------------------------------------


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert reference_crc(b"123456789") == 0x29B1  # the reference is the right CRC too


def test_crc_of_nothing_is_the_initial_value() -> None:
    assert crc16(b"") == 0xFFFF


@given(st.binary(max_size=300))
def test_crc_matches_the_bitwise_definition(data: bytes) -> None:
    assert crc16(data) == reference_crc(data)
    assert crc16(bytearray(data)) == crc16(memoryview(data)) == crc16(data)


# --- INFO: encoding and decoding every field value ----------------------------------


@given(info_wire())
@example(  # every sentinel
    {
        "seq": 0,
        "cur": 0,
        "prev": 0,
        "soc": None,
        "system": 0,
        "battery": 0,
        "autonomy": None,
        "gear": 0,
        "delay": None,
        "brake": 0,
        "odometer_tenths": None,
        "extra": b"",
    }
)
@example(  # every field at its largest value
    {
        "seq": 255,
        "cur": 255,
        "prev": 255,
        "soc": 100,
        "system": 255,
        "battery": 255,
        "autonomy": 0xFFFE,
        "gear": 255,
        "delay": 0xFFFE,
        "brake": 255,
        "odometer_tenths": 0xFFFF_FFFE,
        "extra": b"\xa5" * (MAX_PAYLOAD - 16),
    }
)
def test_info_round_trip_over_every_field(w: dict[str, Any]) -> None:
    raw = encode_wire(w)
    assert raw == reference_frame(0x01, w["seq"], reference_info_payload(w))
    frame = decode_frame(raw)
    assert_decodes_to(frame, w, raw)
    assert encode(frame) == raw
    assert decode_frame(encode(frame)) == frame


@given(info_wire(extra=False), st.binary(min_size=1, max_size=MAX_PAYLOAD - 16))
def test_trailing_payload_bytes_change_nothing_but_the_payload(
    w: dict[str, Any], extra: bytes
) -> None:
    # 23-byte frames take decode_frame's fast path, longer ones the general path:
    # both must give the same values.
    short = decode_frame(encode_wire(w))
    long = decode_frame(encode_wire({**w, "extra": extra}))
    assert isinstance(short, InfoFrame)
    assert isinstance(long, InfoFrame)
    assert long[:-1] == short[:-1]
    assert long.payload == short.payload + extra


@pytest.mark.parametrize(
    ("field", "offset", "table", "unknown"),
    [
        ("system_state", 3, SYSTEM_CODES, SystemState.UNKNOWN),
        ("battery_state", 4, BATTERY_CODES, BatteryState.UNKNOWN),
        ("rnd", 7, GEAR_CODES, Gear.UNKNOWN),
        ("park_brake_status", 10, BRAKE_CODES, ParkBrake.UNKNOWN),
    ],
)
def test_all_256_codes_of_each_coded_byte(
    field: str, offset: int, table: dict[int, Any], unknown: Any
) -> None:
    base = bytearray(reference_info_payload(info_wire_zero()))
    seen = set()
    for code in range(256):
        base[offset] = code
        frame = decode_frame(reference_frame(1, 0, bytes(base)))
        assert isinstance(frame, InfoFrame)
        value = getattr(frame, field)
        assert value is table.get(code, unknown)
        code_property = {"park_brake_status": "park_brake_code"}.get(field, f"{field}_code")
        assert getattr(frame, code_property) == code
        seen.add(value)
    assert seen == {*table.values(), unknown}  # every listed member is reachable


def info_wire_zero() -> dict[str, Any]:
    return {
        "seq": 0,
        "cur": 0,
        "prev": 0,
        "soc": 50,
        "system": 0,
        "battery": 0,
        "autonomy": 0,
        "gear": 0,
        "delay": 0,
        "brake": 0,
        "odometer_tenths": 0,
        "extra": b"",
    }


def test_alert_bits_in_order() -> None:
    for bit, name in enumerate(ALERT_BITS):
        frame = decode_frame(encode_wire({**info_wire_zero(), "cur": 1 << bit, "prev": 0}))
        assert isinstance(frame, InfoFrame)
        assert frame.current_alert.active() == (name,)
        assert frame.previous_alert.active() == ()


def test_battery_soc_sentinel_and_range() -> None:
    payload = bytearray(reference_info_payload(info_wire_zero()))
    for soc in range(256):
        payload[2] = soc
        for extra in (b"", b"\x00"):  # fast path and general path
            raw = reference_frame(1, 0, bytes(payload) + extra)
            if 101 <= soc <= 254:
                with pytest.raises(ValueOutOfRange, match=f"battery_soc is {soc}: it must be"):
                    decode_frame(raw)
            else:
                frame = decode_frame(raw)
                assert isinstance(frame, InfoFrame)
                assert frame.battery_soc == (None if soc == 255 else soc)


def test_encoding_enum_members_gives_their_codes() -> None:
    for table, keyword in (
        (SYSTEM_CODES, "system_state"),
        (BATTERY_CODES, "battery_state"),
        (GEAR_CODES, "rnd"),
        (BRAKE_CODES, "park_brake_status"),
    ):
        for code, member in table.items():
            assert encode_info(**{keyword: member}) == encode_info(**{keyword: code})


def test_encode_info_accepts_alerts_objects() -> None:
    alerts = Alerts(stop=True, turtle_mode=True)
    raw = encode_info(current_alert=alerts, previous_alert=alerts)
    assert raw[5] == raw[6] == 0b1000_0100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"battery_soc": 101}, "battery_soc must be 0..100 or None"),
        ({"battery_soc": -1}, "battery_soc must be 0..100 or None"),
        ({"remaining_autonomy": 0xFFFF}, "remaining_autonomy must be 0..65534 or None"),
        ({"charge_delay": -1}, "charge_delay must be 0..65534 or None"),
        ({"total_odometer": -0.1}, "does not fit the wire format"),
        ({"total_odometer": 429496729.5}, "does not fit the wire format"),
        ({"total_odometer": float("inf")}, "does not fit the wire format"),
        ({"total_odometer": float("nan")}, "does not fit the wire format"),
        ({"current_alert": 256}, "alert masks are 8 bits"),
        ({"system_state": 256}, "system_state code is one byte"),
        ({"rnd": Gear.UNKNOWN}, "has no code on the wire"),
        ({"seq": 256}, "seq is one byte"),
        ({"extra": bytes(MAX_PAYLOAD - 15)}, "a payload holds at most 240 bytes"),
    ],
)
def test_encode_info_refuses_what_the_wire_cannot_carry(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        encode_info(**kwargs)


# --- EVENT and IDENTITY -------------------------------------------------------------


@pytest.mark.parametrize("code", range(256))
def test_event_codes(code: int) -> None:
    raw = encode_event(code, seq=code ^ 0x5A)
    assert raw == reference_frame(0x02, code ^ 0x5A, bytes((code,)))
    frame = decode_frame(raw)
    assert frame == EventFrame(code ^ 0x5A, code, EventKind.CANT_CHARGE if code == 1 else None)
    assert encode(frame) == raw


def test_event_kinds_on_the_wire() -> None:
    assert encode_event(EventKind.CANT_CHARGE) == encode_event(1)
    with pytest.raises(ValueError, match="not sent by the dongle"):
        encode_event(EventKind.DISCONNECTED)


def test_event_with_trailing_bytes_keeps_its_code() -> None:
    frame = decode_frame(reference_frame(0x02, 9, b"\x01\xff\xfe"))
    assert frame == EventFrame(9, 1, EventKind.CANT_CHARGE)


vins = st.text(alphabet=VIN_CHARS, min_size=17, max_size=17)


@given(vins, st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
def test_identity_round_trip(vin: str, major: int, minor: int, seq: int) -> None:
    raw = encode_identity(vin, (major, minor), seq=seq)
    assert raw == reference_frame(0x03, seq, vin.encode("ascii") + bytes((major, minor)))
    frame = decode_frame(raw)
    assert frame == IdentityFrame(seq, vin, (major, minor))
    assert encode(frame) == raw


@pytest.mark.parametrize(
    "raw_vin",
    [b"VR1AB12C3D456789O", b"vr1ab12c3d4567890", b"VR1AB12C3D45678\xff\x00", b" " * 17],
)
def test_identity_that_is_not_a_vin(raw_vin: bytes) -> None:
    with pytest.raises(ValueOutOfRange, match="which is not a VIN"):
        decode_frame(reference_frame(0x03, 0, raw_vin + b"\x01\x00"))


def test_identity_too_short() -> None:
    with pytest.raises(TruncatedFrame, match="IDENTITY payload has 18 bytes; it needs 19"):
        decode_frame(reference_frame(0x03, 0, VIN.encode() + b"\x01"))


def test_encode_identity_refuses_a_non_vin() -> None:
    with pytest.raises(ValueError, match="is not a VIN"):
        encode_identity("VR1AB12C3D456789I")


# --- errors ---------------------------------------------------------------------------

GOOD_INFO = encode_info(seq=3, battery_soc=42, total_odometer=1234.5)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", TruncatedFrame, "0 bytes cannot be a frame: the smallest frame has 7"),
        (b"\xa5", TruncatedFrame, "1 bytes cannot be a frame"),
        (GOOD_INFO[:6], TruncatedFrame, "6 bytes cannot be a frame"),
        (b"\x00" + GOOD_INFO[1:], BadStartOfFrame, "a frame starts with 0xA5, not 0x00"),
        (b"\x5a", BadStartOfFrame, "not 0x5A"),
        (reference_frame(1, 0, bytes(16), version=2), UnsupportedVersion, "version 2;"),
        (b"\xa5\x00", UnsupportedVersion, "wire-format version 0; this library reads version 1"),
        (
            b"\xa5\x01\x01\x00\xf1" + bytes(243),
            ValueOutOfRange,
            "payload length 241 is over the maximum of 240",
        ),
        (GOOD_INFO[:-1], TruncatedFrame, "frame declares 23 bytes but only 22 arrived"),
        (GOOD_INFO + b"\x00", FrameError, "1 bytes follow the end of the frame"),
        (
            GOOD_INFO[:-2] + bytes((GOOD_INFO[-2] ^ 0xFF, GOOD_INFO[-1])),
            BadCRC,
            "CRC mismatch: frame carries 0x",
        ),
        (reference_frame(0x04, 0, b"x"), UnknownFrameType, "unknown frame type 0x04"),
        (reference_frame(0x00, 0, b""), UnknownFrameType, "unknown frame type 0x00"),
        (reference_frame(0x01, 0, bytes(15)), TruncatedFrame, "INFO payload has 15 bytes"),
        (reference_frame(0x02, 0, b""), TruncatedFrame, "EVENT frame has an empty payload"),
    ],
)
def test_each_error_says_what_is_wrong(data: bytes, error: type[FrameError], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)) as caught:
        decode_frame(data)
    assert type(caught.value) is error  # not a subclass standing in for it
    assert isinstance(caught.value, O2XError)
    assert isinstance(caught.value, ValueError)


def test_the_crc_message_gives_both_values() -> None:
    bad = GOOD_INFO[:-2] + b"\x34\x12"
    expected = reference_crc(GOOD_INFO[1:-2])
    with pytest.raises(BadCRC, match=f"carries 0x1234, contents give 0x{expected:04X}"):
        decode_frame(bad)


def test_version_is_checked_before_anything_that_depends_on_it() -> None:
    # A frame of another version may have another layout and CRC: it is reported
    # as a version problem, not as a CRC or length problem.
    other = bytes((0xA5, 0x02, 0x01, 0x00, 0xFF)) + bytes(3)
    with pytest.raises(UnsupportedVersion):
        decode_frame(other)


@pytest.mark.parametrize("length", [n for n in range(MAX_PAYLOAD + 1) if n != 16])
def test_a_length_byte_that_disagrees_with_the_size_is_refused(length: int) -> None:
    # 23 bytes with a CRC that matches bytes 1..20, as in an INFO frame, but a
    # length byte that does not say 16: not an INFO frame, whatever the CRC says.
    body = bytearray(GOOD_INFO[:-2])
    body[4] = length
    crc = reference_crc(bytes(body[1:]))
    data = bytes(body) + bytes((crc & 0xFF, crc >> 8))
    with pytest.raises(FrameError) as caught:
        decode_frame(data)
    assert type(caught.value) is (TruncatedFrame if length > 16 else FrameError)


@pytest.mark.parametrize(("ftype", "expected"), [(2, EventFrame), (3, IdentityFrame)])
def test_other_types_with_a_16_byte_payload_are_not_info(ftype: int, expected: type) -> None:
    payload = b"\x01" + bytes(15) if ftype == 2 else VIN.encode()[:16]
    if ftype == 2:
        assert decode_frame(reference_frame(ftype, 0, payload)) == EventFrame(
            0, 1, EventKind.CANT_CHARGE
        )
    else:  # 16 bytes is too short for an IDENTITY payload
        with pytest.raises(TruncatedFrame):
            decode_frame(reference_frame(ftype, 0, payload))
    assert expected is not InfoFrame


def test_non_bytes_are_a_type_error() -> None:
    for value in ("\xa5\x01", 23, [0xA5] * 23, None):
        with pytest.raises(TypeError, match="decode_frame\\(\\) takes bytes"):
            decode_frame(value)  # type: ignore[arg-type]


def frame_like() -> st.SearchStrategy[bytes]:
    """Bytes that get past the first checks: SOF, version 1, a type, a length."""
    return st.builds(
        lambda ftype, seq, length, body: bytes((0xA5, 1, ftype, seq, length)) + body,
        st.integers(0, 4),
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(max_size=260),
    )


@given(st.binary(max_size=300) | frame_like())
def test_arbitrary_bytes_only_ever_raise_frame_errors(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except FrameError:
        return
    # The rare valid frame: it must re-encode to what it came from.
    if isinstance(frame, InfoFrame):
        assert encode(frame) == data


@given(st.binary(max_size=60) | frame_like() | info_wire().map(encode_wire))
def test_bytearray_and_memoryview_behave_like_bytes(data: bytes) -> None:
    outcomes = []
    for value in (data, bytearray(data), memoryview(data), memoryview(b"__" + data)[2:]):
        try:
            outcomes.append(("ok", decode_frame(value)))
        except FrameError as exc:
            outcomes.append((type(exc).__name__, str(exc)))
    assert outcomes[1:] == outcomes[:1] * 3


def test_a_decoded_bytearray_is_copied() -> None:
    buffer = bytearray(GOOD_INFO)
    frame = decode_frame(buffer)
    buffer[7] = 99  # the caller reuses its buffer
    assert isinstance(frame, InfoFrame)
    assert type(frame.raw) is bytes
    assert frame.raw == GOOD_INFO
    assert frame.battery_soc == 42


# --- single-bit errors ----------------------------------------------------------------


def expected_error_for_flip(frame: bytes, index: int, flipped: bytes) -> type[FrameError]:
    """Which error the documented check order gives for ``frame`` with one bit flipped."""
    if index == 0:
        return BadStartOfFrame
    if index == 1:
        return UnsupportedVersion
    if index == 4:
        length = flipped[4]
        if length > MAX_PAYLOAD:
            return ValueOutOfRange
        return TruncatedFrame if 7 + length > len(frame) else FrameError
    return BadCRC


valid_frames = (
    info_wire().map(encode_wire)
    | st.builds(encode_event, st.integers(0, 255), seq=st.integers(0, 255))
    | st.builds(
        encode_identity,
        vins,
        st.tuples(st.integers(0, 255), st.integers(0, 255)),
        seq=st.integers(0, 255),
    )
)


@given(valid_frames)
def test_every_single_bit_flip_is_detected(frame: bytes) -> None:
    decode_frame(frame)  # valid as it is
    for index in range(len(frame)):
        for bit in range(8):
            flipped = bytearray(frame)
            flipped[index] ^= 1 << bit
            expected = expected_error_for_flip(frame, index, flipped)
            with pytest.raises(FrameError) as caught:
                decode_frame(bytes(flipped))
            assert type(caught.value) is expected, (index, bit)


def test_every_single_bit_flip_of_a_typical_frame_is_detected() -> None:
    # The same, without hypothesis, on the frame of the documentation.
    crc_errors = 0
    for index in range(len(GOOD_INFO)):
        for bit in range(8):
            flipped = bytearray(GOOD_INFO)
            flipped[index] ^= 1 << bit
            with pytest.raises(FrameError) as caught:
                decode_frame(bytes(flipped))
            crc_errors += isinstance(caught.value, BadCRC)
    # All but the SOF, version and length bytes are covered by the CRC alone.
    assert crc_errors == (len(GOOD_INFO) - 3) * 8


def test_every_two_bit_error_of_a_typical_frame_is_detected() -> None:
    # CRC-16/CCITT-FALSE has a Hamming distance of 4 at this length: no error of
    # two (or three) bits passes. Two bits, exhaustively (16,836 cases).
    size = len(GOOD_INFO) * 8
    for first in range(size):
        for second in range(first + 1, size):
            flipped = bytearray(GOOD_INFO)
            flipped[first >> 3] ^= 1 << (first & 7)
            flipped[second >> 3] ^= 1 << (second & 7)
            with pytest.raises(FrameError):
                decode_frame(bytes(flipped))


def test_the_examples_of_docs_protocol_md() -> None:
    info = decode_frame(
        bytes.fromhex("a5 01 01 2a 10 00 01 50 02 03 3c 00 01 ff ff 00 39 30 00 00 00 e3 65")
    )
    assert isinstance(info, InfoFrame)
    assert (info.seq, info.battery_soc, info.remaining_autonomy, info.total_odometer) == (
        42,
        80,
        60,
        1234.5,
    )
    assert info.current_alert.active() == ()
    assert info.previous_alert.active() == ("parking_brake",)
    assert (info.system_state, info.battery_state) == (SystemState.READY, BatteryState.DISCHARGING)
    assert (info.rnd, info.park_brake_status) == (Gear.DRIVE, ParkBrake.RELEASED)
    assert info.charge_delay is None
    assert decode_frame(bytes.fromhex("a501022b01011203")) == EventFrame(
        0x2B, 1, EventKind.CANT_CHARGE
    )
    identity = "a501030013" + VIN.encode().hex() + "0207" + "1dd7"
    assert decode_frame(bytes.fromhex(identity)) == IdentityFrame(0, VIN, (2, 7))


# --- the records ----------------------------------------------------------------------


def test_info_frame_is_an_immutable_hashable_tuple() -> None:
    frame = decode_frame(GOOD_INFO)
    assert isinstance(frame, InfoFrame)
    assert isinstance(frame, tuple)
    assert len(frame) == len(InfoFrame._fields) == 12
    with pytest.raises(AttributeError):
        frame.seq = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        frame[0] = 4  # type: ignore[index]
    assert hash(frame) == hash(decode_frame(GOOD_INFO))
    assert frame == decode_frame(bytearray(GOOD_INFO))
    assert frame != decode_frame(encode_info(seq=4, battery_soc=42, total_odometer=1234.5))


def test_info_frame_fields_are_its_tuple_items() -> None:
    frame = decode_frame(GOOD_INFO)
    assert isinstance(frame, InfoFrame)
    assert frame._asdict() == {name: getattr(frame, name) for name in InfoFrame._fields}
    assert list(frame._asdict().values()) == list(frame)
    assert InfoFrame.__match_args__ == InfoFrame._fields
    assert InfoFrame._fields[-1] == "raw"


def test_info_frame_pattern_matching() -> None:
    match decode_frame(GOOD_INFO):
        case InfoFrame(seq, battery_soc=soc, total_odometer=km):
            assert (seq, soc, km) == (3, 42, 1234.5)
        case _:
            pytest.fail("an INFO frame did not match InfoFrame(...)")


def test_info_frame_repr_names_the_fields() -> None:
    text = repr(decode_frame(GOOD_INFO))
    assert text.startswith("InfoFrame(seq=3, current_alert=Alerts(")
    assert "battery_soc=42" in text
    assert "total_odometer=1234.5" in text


def test_info_frame_pickles() -> None:
    frame = decode_frame(GOOD_INFO)
    copy = pickle.loads(pickle.dumps(frame))
    assert copy == frame
    assert type(copy) is InfoFrame


def test_constants() -> None:
    assert MAX_PAYLOAD == 240
    assert MAX_FRAME_SIZE == 247
    assert [t.value for t in FrameType] == [1, 2, 3]
    assert len(encode_frame(FrameType.EVENT, bytes(MAX_PAYLOAD))) == MAX_FRAME_SIZE


def test_encode_frame_builds_any_frame() -> None:
    raw = encode_frame(0x7F, b"abc", seq=9, version=3)
    assert raw == reference_frame(0x7F, 9, b"abc", version=3)
    with pytest.raises(ValueError, match="single bytes"):
        encode_frame(256, b"")
    assert struct.unpack("<H", raw[-2:])[0] == reference_crc(raw[1:-2])


def test_the_old_module_paths_still_work() -> None:
    import o2x.dongle.frames
    import o2x.dongle.profile
    import o2x.frames
    import o2x.profile

    for old, new in ((o2x.frames, o2x.dongle.frames), (o2x.profile, o2x.dongle.profile)):
        assert old.__all__ == new.__all__
        for name in new.__all__:
            assert getattr(old, name) is getattr(new, name), name
