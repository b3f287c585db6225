"""O2X wire format v1: encode and decode frames, and reassemble them from a byte stream.

This is the only module that knows the byte layout (``docs/protocol.md``); a
different mapping of the dongle's protocol replaces this module and nothing else.
It is pure: no I/O, no clock. The decoder is on the hot path of every telemetry
notification, so it is written for speed: precompiled structs, a C-implemented
CRC, lookup tables instead of per-field branches, and tuple-based records.
"""

from __future__ import annotations

import enum
import math
import struct
from binascii import crc_hqx
from collections.abc import Iterable
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple, TypeVar

from ..errors import (
    BadCRC,
    BadStartOfFrame,
    FrameError,
    TruncatedFrame,
    UnknownFrameType,
    UnsupportedVersion,
    ValueOutOfRange,
)
from ..model import (
    _ALERTS_BY_MASK,
    _VIN_RE,
    Alerts,
    BatteryState,
    EventKind,
    Gear,
    ParkBrake,
    SystemState,
)

__all__ = [
    "MAX_FRAME_SIZE",
    "MAX_PAYLOAD",
    "SOF",
    "VERSION",
    "DecoderStats",
    "EventFrame",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "IdentityFrame",
    "InfoFrame",
    "crc16",
    "decode_frame",
    "encode",
    "encode_event",
    "encode_frame",
    "encode_identity",
    "encode_info",
]

SOF: Final = 0xA5
VERSION: Final = 0x01
MAX_PAYLOAD: Final = 240
_HEADER_SIZE: Final = 5
_OVERHEAD: Final = _HEADER_SIZE + 2  # header and CRC
MAX_FRAME_SIZE: Final = _OVERHEAD + MAX_PAYLOAD
INFO_PAYLOAD_SIZE: Final = 16
_INFO_FRAME_SIZE: Final = _OVERHEAD + INFO_PAYLOAD_SIZE


class FrameType(enum.IntEnum):
    """The frame's type byte."""

    INFO = 0x01
    EVENT = 0x02
    IDENTITY = 0x03


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, no final xor).

    >>> hex(crc16(b"123456789"))
    '0x29b1'
    """
    return crc_hqx(data, 0xFFFF)


# --- records -------------------------------------------------------------------

try:  # the C accessor behind collections.namedtuple's fields
    from collections import _tuplegetter as _field  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other Python implementations

    def _field(index: int, doc: str) -> Any:
        return property(itemgetter(index), doc=doc)


_INFO_FIELDS_DOC: Final = {
    "seq": "Sequence number, 0..255, wrapping.",
    "current_alert": "Alerts active now.",
    "previous_alert": "Alerts that were active before.",
    "battery_soc": "State of charge in percent, 0..100, or ``None`` when not reported.",
    "system_state": "State of the vehicle's system.",
    "battery_state": "State of the traction battery's management system.",
    "remaining_autonomy": "Kilometres left, or ``None`` when not reported.",
    "rnd": "The selected gear.",
    "charge_delay": "Minutes until charging starts, or ``None`` when not reported.",
    "park_brake_status": "Position of the parking brake.",
    "total_odometer": "Kilometres driven, to 0.1 km, or ``None`` when not reported.",
    "raw": "The whole frame as received: header, payload (with any bytes a later "
    "format version adds) and CRC.",
}


class InfoFrame(
    tuple[
        int,
        Alerts,
        Alerts,
        int | None,
        SystemState,
        BatteryState,
        int | None,
        Gear,
        int | None,
        ParkBrake,
        float | None,
        bytes,
    ]
):
    """An INFO frame: one telemetry reading, fully decoded and immutable.

    Coded fields are enums; a code this library does not know decodes to the
    enum's ``UNKNOWN`` member and stays readable (see the ``*_code`` properties
    and :attr:`payload`). Measures the car does not report are ``None``.

    It is a tuple, like the other frame records, but not built by field: frames
    come from :func:`decode_frame` (build test frames with :func:`encode_info`).
    The decoder creates one for every telemetry notification, and a plain tuple
    subclass is the cheapest immutable record Python can create.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        seq: int
        current_alert: Alerts
        previous_alert: Alerts
        battery_soc: int | None
        system_state: SystemState
        battery_state: BatteryState
        remaining_autonomy: int | None
        rnd: Gear
        charge_delay: int | None
        park_brake_status: ParkBrake
        total_odometer: float | None
        raw: bytes
    else:
        seq = _field(0, _INFO_FIELDS_DOC["seq"])
        current_alert = _field(1, _INFO_FIELDS_DOC["current_alert"])
        previous_alert = _field(2, _INFO_FIELDS_DOC["previous_alert"])
        battery_soc = _field(3, _INFO_FIELDS_DOC["battery_soc"])
        system_state = _field(4, _INFO_FIELDS_DOC["system_state"])
        battery_state = _field(5, _INFO_FIELDS_DOC["battery_state"])
        remaining_autonomy = _field(6, _INFO_FIELDS_DOC["remaining_autonomy"])
        rnd = _field(7, _INFO_FIELDS_DOC["rnd"])
        charge_delay = _field(8, _INFO_FIELDS_DOC["charge_delay"])
        park_brake_status = _field(9, _INFO_FIELDS_DOC["park_brake_status"])
        total_odometer = _field(10, _INFO_FIELDS_DOC["total_odometer"])
        raw = _field(11, _INFO_FIELDS_DOC["raw"])

    #: The field names, in tuple order.
    _fields: ClassVar[tuple[str, ...]] = tuple(_INFO_FIELDS_DOC)
    __match_args__: ClassVar[tuple[str, ...]] = _fields

    def __repr__(self) -> str:
        pairs = zip(self._fields, self, strict=False)
        return "InfoFrame(" + ", ".join(f"{name}={value!r}" for name, value in pairs) + ")"

    def _asdict(self) -> dict[str, Any]:
        """The fields as a dictionary, like ``namedtuple._asdict``."""
        return dict(zip(self._fields, self, strict=True))

    @property
    def payload(self) -> bytes:
        """The payload as received, including any bytes a later format version adds."""
        return self.raw[_HEADER_SIZE:-2]

    @property
    def system_state_code(self) -> int:
        """The raw ``system_state`` code, known or not."""
        return self.raw[_HEADER_SIZE + 3]

    @property
    def battery_state_code(self) -> int:
        """The raw ``battery_state`` code, known or not."""
        return self.raw[_HEADER_SIZE + 4]

    @property
    def rnd_code(self) -> int:
        """The raw ``rnd`` (gear) code, known or not."""
        return self.raw[_HEADER_SIZE + 7]

    @property
    def park_brake_code(self) -> int:
        """The raw ``park_brake_status`` code, known or not."""
        return self.raw[_HEADER_SIZE + 10]


class EventFrame(NamedTuple):
    """An EVENT frame. ``kind`` is ``None`` for codes this library does not know."""

    seq: int
    code: int
    kind: EventKind | None


class IdentityFrame(NamedTuple):
    """The IDENTITY frame served by the dongle: which vehicle it is installed in."""

    seq: int
    vin: str
    firmware: tuple[int, int]
    """Firmware version of the dongle as ``(major, minor)``."""


Frame = InfoFrame | EventFrame | IdentityFrame


_E = TypeVar("_E")


# --- code tables ----------------------------------------------------------------
# 256-entry tables turn every coded byte into its value with one index operation.


def _table(known: Iterable[_E], unknown: _E) -> tuple[_E, ...]:
    members = list(known)
    return tuple(members[code] if code < len(members) else unknown for code in range(256))


_SYSTEM_CODES: Final = (
    SystemState.OFF,
    SystemState.STANDBY,
    SystemState.READY,
    SystemState.CHARGING,
    SystemState.FAULT,
)
_BATTERY_CODES: Final = (
    BatteryState.BOOTLOADER,
    BatteryState.INIT,
    BatteryState.IDLE,
    BatteryState.DISCHARGING,
    BatteryState.CHARGING,
    BatteryState.BALANCING,
    BatteryState.FAULT,
)
_GEAR_CODES: Final = (Gear.NEUTRAL, Gear.DRIVE, Gear.REVERSE)
_BRAKE_CODES: Final = (ParkBrake.RELEASED, ParkBrake.ACTIVATED)
_EVENT_CODES: Final = {0x01: EventKind.CANT_CHARGE}

_SYSTEM: Final = _table(_SYSTEM_CODES, SystemState.UNKNOWN)
_BATTERY: Final = _table(_BATTERY_CODES, BatteryState.UNKNOWN)
_GEAR: Final = _table(_GEAR_CODES, Gear.UNKNOWN)
_BRAKE: Final = _table(_BRAKE_CODES, ParkBrake.UNKNOWN)
_ALERTS: Final = _ALERTS_BY_MASK

_SOC_MAX: Final = 100
_SOC_NOT_AVAILABLE: Final = 0xFF
_U16_NONE: Final = 0xFFFF
_U32_NONE: Final = 0xFFFFFFFF

_HEADER: Final = struct.Struct("<BBBBB")
# The INFO payload's 16 bytes; "x" skips the reserved byte.
_INFO_FIELDS: Final = struct.Struct("<BBBBBHBHBIx")
_CRC: Final = struct.Struct("<H")
# The whole 23-byte INFO frame in one unpack. SOF and version are read as one
# little-endian u16, so one comparison checks both.
_INFO_FRAME: Final = struct.Struct("<HBBB" + "BBBBBHBHBIx" + "H")
_unpack_info_frame: Final = _INFO_FRAME.unpack
_INFO_CRC_SPAN: Final = slice(1, _INFO_FRAME_SIZE - 2)  # what an INFO frame's CRC covers
_NEXT_SEQ: Final = (*range(1, 256), 0)  # the sequence number expected after each
_StructError: Final = struct.error


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Decode exactly one complete frame.

    Raises a :class:`~o2x.errors.FrameError` subclass saying what is wrong for any
    byte string that is not one valid frame; never another exception (a ``str`` or
    other non-bytes argument is a ``TypeError``).

    >>> frame = decode_frame(encode_info(seq=7, battery_soc=80, system_state=SystemState.READY))
    >>> frame.seq, frame.battery_soc, frame.system_state
    (7, 80, <SystemState.READY: 'ready'>)
    """
    # The fast path: a 23-byte INFO frame, which is nearly every frame received.
    # Anything else, and anything wrong, goes to _decode_checked, which says
    # precisely what is wrong. This function runs once per telemetry frame, so
    # it is written out flat: one unpack, one CRC, six table lookups and the
    # record; no other call. Literals stand for the named constants (a literal
    # is a cheaper load than a global): 0x01A5 is SOF and VERSION read as one
    # u16, 16 INFO_PAYLOAD_SIZE, 100 the largest state of charge, and 0xFF,
    # 0xFFFF and 0xFFFFFFFF the "not available" values.
    if data.__class__ is not bytes:
        data = _as_bytes(data)
    try:
        (sof_version, ftype, seq, length, cur, prev, soc, system, battery,
         autonomy, gear, delay, brake, odometer, crc) = _unpack_info_frame(data)  # fmt: skip
    except _StructError:  # not 23 bytes
        return _decode_checked(data)
    if (
        sof_version != 0x01A5
        or ftype != 1
        or length != 16
        or crc != crc_hqx(data[_INFO_CRC_SPAN], 0xFFFF)
    ):
        return _decode_checked(data)
    if soc > 100:
        if soc != 0xFF:
            return _decode_checked(data)  # raises ValueOutOfRange
        soc = None
    return InfoFrame(
        (
            seq,
            _ALERTS[cur],
            _ALERTS[prev],
            soc,
            _SYSTEM[system],
            _BATTERY[battery],
            None if autonomy == 0xFFFF else autonomy,
            _GEAR[gear],
            None if delay == 0xFFFF else delay,
            _BRAKE[brake],
            None if odometer == 0xFFFFFFFF else odometer / 10,
            data,
        )
    )


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)  # a private, immutable copy the record can keep
    raise TypeError(f"decode_frame() takes bytes, not {type(data).__name__}")


def _decode_checked(data: bytes) -> Frame:
    """Decode ``data`` checking everything, in the order ``docs/protocol.md`` gives."""
    size = len(data)
    if size == 0:
        raise TruncatedFrame("0 bytes cannot be a frame: the smallest frame has 7")
    if data[0] != SOF:
        raise BadStartOfFrame(f"a frame starts with 0xA5, not 0x{data[0]:02X}")
    if size > 1 and data[1] != VERSION:
        raise UnsupportedVersion(
            f"frame is wire-format version {data[1]}; this library reads version {VERSION}"
        )
    if size < _OVERHEAD:
        raise TruncatedFrame(f"{size} bytes cannot be a frame: the smallest frame has 7")
    _, _, ftype, seq, length = _HEADER.unpack_from(data)
    if length > MAX_PAYLOAD:
        raise ValueOutOfRange(f"payload length {length} is over the maximum of {MAX_PAYLOAD}")
    expected = _OVERHEAD + length
    if size < expected:
        raise TruncatedFrame(f"frame declares {expected} bytes but only {size} arrived")
    if size > expected:
        raise FrameError(
            f"{size - expected} bytes follow the end of the frame; "
            "use FrameDecoder to split a byte stream into frames"
        )
    (crc,) = _CRC.unpack_from(data, expected - 2)
    computed = crc_hqx(data[1 : expected - 2], 0xFFFF)
    if crc != computed:
        raise _bad_crc(crc, computed)
    return _decode_body(data, ftype, seq)


def _decode_body(data: bytes, ftype: int, seq: int) -> Frame:
    """Decode one whole frame whose envelope and CRC have been checked."""
    if ftype == FrameType.INFO:
        return _decode_info(seq, data)
    payload = data[_HEADER_SIZE:-2]
    if ftype == FrameType.EVENT:
        if not payload:
            raise TruncatedFrame("EVENT frame has an empty payload; it needs a 1-byte code")
        return EventFrame(seq, payload[0], _EVENT_CODES.get(payload[0]))
    if ftype == FrameType.IDENTITY:
        return _decode_identity_payload(seq, payload)
    raise UnknownFrameType(f"unknown frame type 0x{ftype:02X} (known: 0x01, 0x02, 0x03)")


def _bad_crc(carried: int, computed: int) -> BadCRC:
    return BadCRC(f"CRC mismatch: frame carries 0x{carried:04X}, contents give 0x{computed:04X}")


def _decode_info(seq: int, frame: bytes) -> InfoFrame:
    # The general INFO decoder (payloads longer than 16 bytes, and the errors);
    # decode_frame has the same mapping written out for the common case.
    length = len(frame) - _OVERHEAD
    if length < INFO_PAYLOAD_SIZE:
        raise TruncatedFrame(
            f"INFO payload has {length} bytes; it needs at least {INFO_PAYLOAD_SIZE}"
        )
    cur, prev, soc, system, battery, autonomy, gear, delay, brake, odometer = (
        _INFO_FIELDS.unpack_from(frame, _HEADER_SIZE)
    )
    if soc > _SOC_MAX and soc != _SOC_NOT_AVAILABLE:
        raise ValueOutOfRange(f"battery_soc is {soc}: it must be 0..100, or 255 for unknown")
    return InfoFrame(
        (
            seq,
            _ALERTS[cur],
            _ALERTS[prev],
            None if soc == _SOC_NOT_AVAILABLE else soc,
            _SYSTEM[system],
            _BATTERY[battery],
            None if autonomy == _U16_NONE else autonomy,
            _GEAR[gear],
            None if delay == _U16_NONE else delay,
            _BRAKE[brake],
            None if odometer == _U32_NONE else odometer / 10,
            frame,
        )
    )


def _decode_identity_payload(seq: int, payload: bytes) -> IdentityFrame:
    if len(payload) < 19:
        raise TruncatedFrame(
            f"IDENTITY payload has {len(payload)} bytes; it needs 19 (VIN and firmware)"
        )
    raw_vin = payload[:17]
    vin = raw_vin.decode("ascii", errors="replace")
    if _VIN_RE.fullmatch(vin) is None:
        raise ValueOutOfRange(f"IDENTITY frame carries {raw_vin!r}, which is not a VIN")
    return IdentityFrame(seq, vin, (payload[17], payload[18]))


# --- encoding --------------------------------------------------------------------


def encode_frame(frame_type: int, payload: bytes, *, seq: int = 0, version: int = VERSION) -> bytes:
    """Wrap ``payload`` in a frame: header, payload and CRC.

    ``frame_type`` and ``version`` may be any byte, so tests can build frames this
    library would reject.
    """
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"seq is one byte (0..255), not {seq}")
    if not 0 <= frame_type <= 0xFF or not 0 <= version <= 0xFF:
        raise ValueError("frame_type and version are single bytes (0..255)")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a payload holds at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    body = _HEADER.pack(SOF, version, frame_type, seq, len(payload)) + payload
    return body + _CRC.pack(crc_hqx(body[1:], 0xFFFF))


def _code(value: enum.Enum | int, codes: tuple[enum.Enum, ...], field: str) -> int:
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{field} code is one byte (0..255), not {value}")
        return value
    try:
        return codes.index(value)
    except ValueError:
        raise ValueError(
            f"{field}={value!r} has no code on the wire; pass a raw int to send an unlisted code"
        ) from None


def _measure(value: int | None, limit: int, field: str) -> int:
    if value is None:
        return limit
    if not 0 <= value < limit:
        raise ValueError(f"{field} must be 0..{limit - 1} or None, not {value}")
    return value


def encode_info(
    *,
    seq: int = 0,
    current_alert: Alerts | int = 0,
    previous_alert: Alerts | int = 0,
    battery_soc: int | None = None,
    system_state: SystemState | int = SystemState.OFF,
    battery_state: BatteryState | int = BatteryState.IDLE,
    remaining_autonomy: int | None = None,
    rnd: Gear | int = Gear.NEUTRAL,
    charge_delay: int | None = None,
    park_brake_status: ParkBrake | int = ParkBrake.ACTIVATED,
    total_odometer: float | None = None,
    extra: bytes = b"",
) -> bytes:
    """Encode an INFO frame. Enums take their wire codes; a raw ``int`` is sent as is.

    ``extra`` is appended to the 16-byte payload, as a later format version might.

    >>> len(encode_info(seq=1, battery_soc=42, total_odometer=1234.5))
    23
    """
    cur = current_alert.mask if isinstance(current_alert, Alerts) else current_alert
    prev = previous_alert.mask if isinstance(previous_alert, Alerts) else previous_alert
    if not (0 <= cur <= 0xFF and 0 <= prev <= 0xFF):
        raise ValueError("alert masks are 8 bits (0..255)")
    if battery_soc is None:
        soc = _SOC_NOT_AVAILABLE
    elif 0 <= battery_soc <= 100:
        soc = battery_soc
    else:
        raise ValueError(f"battery_soc must be 0..100 or None, not {battery_soc}")
    if total_odometer is None:
        odometer = _U32_NONE
    else:
        tenths = total_odometer * 10
        # inf and nan are refused here: round() would raise OverflowError for inf.
        odometer = round(tenths) if math.isfinite(tenths) else -1
        if not 0 <= odometer < _U32_NONE:
            raise ValueError(f"total_odometer {total_odometer} km does not fit the wire format")
    payload = _INFO_FIELDS.pack(
        cur,
        prev,
        soc,
        _code(system_state, _SYSTEM_CODES, "system_state"),
        _code(battery_state, _BATTERY_CODES, "battery_state"),
        _measure(remaining_autonomy, _U16_NONE, "remaining_autonomy"),
        _code(rnd, _GEAR_CODES, "rnd"),
        _measure(charge_delay, _U16_NONE, "charge_delay"),
        _code(park_brake_status, _BRAKE_CODES, "park_brake_status"),
        odometer,
    )
    return encode_frame(FrameType.INFO, payload + extra, seq=seq)


def encode_event(event: EventKind | int, *, seq: int = 0) -> bytes:
    """Encode an EVENT frame for ``event`` (an :class:`EventKind` or a raw code).

    Only ``EventKind.CANT_CHARGE`` travels on the wire; ``DISCONNECTED`` is
    something a receiver observes, not something a dongle can send.
    """
    if isinstance(event, EventKind):
        codes = {kind: code for code, kind in _EVENT_CODES.items()}
        if event not in codes:
            raise ValueError(f"{event!r} is not sent by the dongle and has no wire code")
        code = codes[event]
    else:
        code = event
    if not 0 <= code <= 0xFF:
        raise ValueError(f"an event code is one byte (0..255), not {code}")
    return encode_frame(FrameType.EVENT, bytes((code,)), seq=seq)


def encode_identity(vin: str, firmware: tuple[int, int] = (1, 0), *, seq: int = 0) -> bytes:
    """Encode the IDENTITY frame a dongle serves for ``vin``."""
    if _VIN_RE.fullmatch(vin) is None:
        raise ValueError(f"{vin!r} is not a VIN (17 characters of [A-HJ-NPR-Z0-9])")
    major, minor = firmware
    if not (0 <= major <= 0xFF and 0 <= minor <= 0xFF):
        raise ValueError("firmware (major, minor) are single bytes (0..255)")
    return encode_frame(FrameType.IDENTITY, vin.encode("ascii") + bytes((major, minor)), seq=seq)


def encode(frame: Frame) -> bytes:
    """Encode a frame record back to bytes (``decode_frame(encode(f)) == f``)."""
    if isinstance(frame, InfoFrame):
        return encode_frame(FrameType.INFO, frame.payload, seq=frame.seq)
    if isinstance(frame, EventFrame):
        return encode_event(frame.code, seq=frame.seq)
    return encode_identity(frame.vin, frame.firmware, seq=frame.seq)


# --- streaming ----------------------------------------------------------------------


class DecoderStats(NamedTuple):
    """Counters of a :class:`FrameDecoder`, as a snapshot."""

    frames: int
    """Valid frames returned."""
    crc_errors: int
    """Candidate frames whose CRC did not match (the decoder resynchronised after each)."""
    invalid_frames: int
    """Frames with a correct CRC but content this library rejects (see ``last_error``)."""
    bytes_discarded: int
    """Bytes skipped as not belonging to any valid frame."""
    seq_gaps: int
    """Times a frame's sequence number was not the previous one plus one."""


class FrameDecoder:
    """Reassemble frames from a byte stream cut anywhere, as BLE notifications cut it.

    >>> stream = encode_info(seq=1, battery_soc=50) + encode_event(EventKind.CANT_CHARGE, seq=2)
    >>> decoder = FrameDecoder()
    >>> decoder.feed(stream[:10])
    []
    >>> [type(f).__name__ for f in decoder.feed(stream[10:])]
    ['InfoFrame', 'EventFrame']

    Garbage is skipped and, after a CRC failure, the decoder resynchronises on the
    next start-of-frame byte, so a corrupted frame never costs the intact frame that
    follows it. Between calls the buffer holds less than one frame's worth of bytes
    (fewer than :data:`MAX_FRAME_SIZE`), and each byte received is examined a
    bounded number of times, so no input can make memory or work grow faster than
    the bytes received. ``feed`` never raises for any bytes. At the end of a stream,
    :meth:`flush` returns the frames that noise was holding back. The algorithm and
    the counters are specified in ``docs/protocol.md``, section 5.2.
    """

    __slots__ = (
        "_buf",
        "_bytes_discarded",
        "_crc_errors",
        "_frames",
        "_invalid",
        "_last_error",
        "_next_seq",
        "_seq_gaps",
        "_wanted",
    )

    def __init__(self) -> None:
        self._buf = b""
        self._wanted = _HEADER_SIZE  # bytes the buffer needs before anything can be decoded
        self._frames = 0
        self._crc_errors = 0
        self._invalid = 0
        self._bytes_discarded = 0
        self._seq_gaps = 0
        self._next_seq = -1
        # A FrameError, or (carried, computed) for a CRC mismatch not yet built
        # into a BadCRC: see last_error.
        self._last_error: FrameError | tuple[int, int] | None = None

    @property
    def last_error(self) -> FrameError | None:
        """The most recent :class:`FrameError` met while decoding, for diagnostics.

        >>> decoder = FrameDecoder()
        >>> frame = bytearray(encode_info(seq=1))
        >>> frame[9] ^= 0x10  # one bit flipped in the payload
        >>> decoder.feed(bytes(frame))
        []
        >>> decoder.last_error  # doctest: +ELLIPSIS
        BadCRC('CRC mismatch: frame carries 0x..., contents give 0x...')
        """
        error = self._last_error
        if isinstance(error, tuple):
            error = self._last_error = _bad_crc(*error)
        return error

    @property
    def stats(self) -> DecoderStats:
        """A snapshot of the counters."""
        return DecoderStats(
            self._frames, self._crc_errors, self._invalid, self._bytes_discarded, self._seq_gaps
        )

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Frame]:
        """Add ``chunk`` to the stream and return the frames it completes, in order."""
        # The buffer is immutable bytes: a chunk that starts at a frame boundary
        # with nothing buffered is used as it is (b"" + chunk is chunk), and a
        # frame that fills the buffer exactly is kept without a copy. This runs
        # for every notification, so the loop uses literals, not the named
        # constants: 5 _HEADER_SIZE, 7 _OVERHEAD, 23 an INFO frame, 0xA5 SOF,
        # 1 VERSION, 240 MAX_PAYLOAD. The expected sequence number lives in a
        # local; the counters of rare events are updated where they happen.
        buf = self._buf + chunk
        end_of_data = len(buf)
        if end_of_data < self._wanted:  # the frame under way is still incomplete
            self._buf = buf
            return []
        out: list[Frame] = []
        next_seq = self._next_seq
        pos = 0
        while True:
            remaining = end_of_data - pos
            if remaining >= 23:
                # The fast path of decode_frame, inlined: a 23-byte INFO frame at
                # pos. Its bytes are cut out first (slicing all of a bytes object
                # copies nothing), then unpacked and checked as decode_frame does.
                raw = buf[pos : pos + 23]
                (sof_version, ftype, seq, length,
                 cur, prev, soc, system, battery, autonomy, gear, delay, brake, odometer,
                 crc) = _unpack_info_frame(raw)  # fmt: skip
                if (
                    sof_version == 0x01A5
                    and ftype == 1
                    and length == 16
                    and (soc <= 100 or soc == 0xFF)
                    and crc == crc_hqx(raw[_INFO_CRC_SPAN], 0xFFFF)
                ):
                    if seq != next_seq and next_seq >= 0:
                        self._seq_gaps += 1
                    next_seq = _NEXT_SEQ[seq]
                    out.append(
                        InfoFrame(
                            (
                                seq,
                                _ALERTS[cur],
                                _ALERTS[prev],
                                None if soc == 0xFF else soc,
                                _SYSTEM[system],
                                _BATTERY[battery],
                                None if autonomy == 0xFFFF else autonomy,
                                _GEAR[gear],
                                None if delay == 0xFFFF else delay,
                                _BRAKE[brake],
                                None if odometer == 0xFFFFFFFF else odometer / 10,
                                raw,
                            )
                        )
                    )
                    pos += 23
                    continue
            elif remaining < 5:
                wanted = 5
                break
            # The general path: anything but an intact 23-byte INFO frame at pos.
            if buf[pos] != 0xA5:
                found = buf.find(0xA5, pos)
                if found < 0:
                    self._bytes_discarded += remaining
                    pos = end_of_data
                    wanted = 5
                    break
                self._bytes_discarded += found - pos
                pos = found
                continue
            length = buf[pos + 4]
            # A header that cannot start a v1 frame is skipped at once rather than
            # waited on: noise would otherwise hold back the frames behind it.
            if buf[pos + 1] != 1 or not 1 <= buf[pos + 2] <= 3 or length > 240:
                self._bytes_discarded += 1
                pos += 1
                continue
            frame_end = pos + 7 + length
            if frame_end > end_of_data:
                wanted = frame_end - pos
                break
            carried = buf[frame_end - 2] | buf[frame_end - 1] << 8
            computed = crc_hqx(buf[pos + 1 : frame_end - 2], 0xFFFF)
            if carried != computed:
                # Maybe noise that looked like a header: resynchronise on the next
                # SOF, inside what seemed to be this frame. Checked here rather
                # than by _decode_checked, because raising and catching a BadCRC
                # for every false header costs several times the check itself,
                # and noise can hold one every 5 bytes. The error is built only
                # if someone reads last_error.
                self._crc_errors += 1
                self._last_error = (carried, computed)
                found = buf.find(0xA5, pos + 1)
                if found < 0:
                    self._bytes_discarded += end_of_data - pos
                    pos = end_of_data
                    wanted = 5
                    break
                self._bytes_discarded += found - pos
                pos = found
                continue
            try:
                # The envelope and CRC are checked above: only the body is left.
                frame = _decode_body(buf[pos:frame_end], buf[pos + 2], buf[pos + 3])
            except FrameError as exc:
                # Framed correctly (the CRC matched) but not acceptable: skip it
                # whole. Its sequence number still counts.
                self._invalid += 1
                self._last_error = exc.with_traceback(
                    None
                )  # a traceback would pin the callers' frames
                self._bytes_discarded += frame_end - pos
                seq = buf[pos + 3]
            else:
                seq = frame[0]
                out.append(frame)
            if seq != next_seq and next_seq >= 0:
                self._seq_gaps += 1
            next_seq = _NEXT_SEQ[seq]
            pos = frame_end
        self._buf = buf[pos:] if pos else buf
        self._wanted = wanted
        self._next_seq = next_seq
        if out:
            self._frames += len(out)
        return out

    def flush(self) -> list[Frame]:
        """End of stream: give up on any partial frame and return what can still be found.

        A start-of-frame byte inside noise can make the decoder wait for a frame
        that will never complete; at the end of a stream (a disconnection), the
        bytes behind it are searched for intact frames instead.
        """
        out: list[Frame] = []
        while self._buf:
            self._bytes_discarded += 1
            rest = self._buf[1:]
            self._buf = b""
            self._wanted = _HEADER_SIZE
            out += self.feed(rest)
        return out

    def reset(self) -> None:
        """Forget buffered bytes and the expected sequence number (for a new connection).

        The counters are kept.
        """
        self._bytes_discarded += len(self._buf)
        self._buf = b""
        self._wanted = _HEADER_SIZE
        self._next_seq = -1
