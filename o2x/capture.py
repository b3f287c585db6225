"""Capture files: the raw telemetry notifications of a session, with their receive times.

A capture keeps exactly what the radio delivered — notification payloads, cut
wherever the dongle cut them — so that a drive can be decoded again later, offline,
by the same decoders that decoded it live. The layout is documented in
``docs/protocol.md`` ("Capture files"); in short (version 3)::

    header   magic b"\\x89O2XCAP\\n" | u16 version | u32 n | n bytes of JSON metadata | u32 CRC
    record   sync b"\\xfe\\xd2" | u64 offset_ns | u8 kind | u16 length | length bytes | u32 CRC

all little-endian, each CRC a CRC-32 of the bytes before it. An O2X dongle's
notifications are decoded by a :class:`~o2x.dongle.frames.FrameDecoder`. A link to
a BLE OBD adapter (:mod:`o2x.obd`) has an ``ADAPTER`` record after its ``LINK_UP``,
naming the adapter's protocol and layout: the notifications after it are the
adapter's serial output (answers, prompts and monitor lines, as it sent them), which
replay reads with that protocol's parser into an :class:`~o2x.can.AmiBus`
(:class:`AdapterDecoder`).

Records are appended one ``write`` at a time and flushed, so a recorder that
crashes loses at most the record it was writing; :class:`CaptureReader` reads
everything before such a torn record and reports it in
:attr:`~CaptureReader.problem` instead of failing. Damage anywhere else costs only
the records it touches: the reader finds the next intact record by its sync bytes
and checksum, and reports what it skipped in :attr:`~CaptureReader.damage`
(:meth:`~CaptureReader.check` raises it as a :class:`CaptureDamaged`).

Recording: :class:`RecordingVehicle` is an :class:`~o2x.O2XVehicle` that also
appends every notification it receives to a :class:`CaptureWriter`. Replaying:
:func:`replay` turns records back into frames (an O2X dongle's), readings (an
adapter's) and link changes.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import IO, Any, Final, NamedTuple, Self

import attrs

from .can.bus import READING_INTERVAL, AmiBus
from .dongle import DongleSource
from .dongle.frames import Frame, FrameDecoder
from .errors import O2XError
from .machine import Action, DeliverEvent
from .model import EventKind, VehicleInfo, _quote, normalize_vin
from .obd.layouts import AdapterLayout, Protocol
from .obd.monitor import MonitorParser
from .obd.slcan import SlcanParser
from .source import Source
from .vehicle import O2XVehicle

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "READ_VERSIONS",
    "RECORD_SYNC",
    "AdapterDecoder",
    "AdapterOpened",
    "AdapterStats",
    "CaptureDamaged",
    "CaptureError",
    "CaptureHeader",
    "CaptureReader",
    "CaptureRecord",
    "CaptureWriter",
    "DamagedSpan",
    "LinkChange",
    "RecordKind",
    "RecordingVehicle",
    "replay",
]

#: The first bytes of every capture file. The leading non-ASCII byte and the
#: trailing newline catch files mangled by text-mode transfers, as PNG's do.
MAGIC: Final = b"\x89O2XCAP\n"
#: The version of the layout written by this module. Version 3 gave each record
#: sync bytes and a checksum, and the header a checksum: damage in the middle of a
#: file costs only the records it touches. Version 2 added the ``ADAPTER`` record,
#: which changes what the notifications after it are: a version-1 reader would take
#: an adapter's output for an O2X dongle's frames.
FORMAT_VERSION: Final = 3
#: The versions this module reads: a version-1 capture is a version-2 one without
#: ``ADAPTER`` records; both have records without sync bytes or checksums.
READ_VERSIONS: Final = (1, 2, 3)
#: The first bytes of every record of a version-3 capture: where a reader looks for
#: the next record after damage. Neither byte is ASCII, and 0xFE is never in UTF-8
#: text, so that an adapter's text output seldom holds the pair.
RECORD_SYNC: Final = b"\xfe\xd2"

_PREAMBLE: Final = struct.Struct("<8sHI")  # magic, version, metadata length
_RECORD: Final = struct.Struct("<QBH")  # offset_ns, kind, payload length (versions 1, 2)
_RECORD3: Final = struct.Struct("<2sQBH")  # sync, offset_ns, kind, payload length
_CRC: Final = struct.Struct("<I")  # CRC-32 (zlib's, PNG's) of the bytes before it
#: More metadata than this is taken as a damaged header, not read into memory.
_MAX_METADATA: Final = 1 << 20
_MAX_PAYLOAD: Final = 0xFFFF
_MAX_OFFSET: Final = (1 << 64) - 1
#: How much of a file is read at a time when scanning past damage, or skipping a
#: damaged end.
_CHUNK: Final = 1 << 20

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US: Final = dt.timedelta(microseconds=1)
_DAY_NS: Final = 86_400 * 1_000_000_000
#: The first and the last nanosecond a datetime can hold (0001-01-01 and 9999-12-31, UTC).
_FIRST_NS: Final = (dt.datetime.min.replace(tzinfo=dt.UTC) - _EPOCH) // _US * 1000
_LAST_NS: Final = ((dt.datetime.max.replace(tzinfo=dt.UTC) - _EPOCH) // _US + 1) * 1000 - 1
# A start a day inside that range can be shown in any time zone (none is a day
# away from UTC), and leaves a day of offsets before a record cannot be dated.
_FIRST_START: Final = _FIRST_NS + _DAY_NS
_LAST_START: Final = _LAST_NS - _DAY_NS


class CaptureError(O2XError, ValueError):
    """A file that is not a readable capture (wrong magic, unknown version, bad header,
    or an error reading it)."""


@attrs.frozen
class DamagedSpan:
    """Bytes of a capture, from ``start`` up to ``end``, that hold no intact record."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


class CaptureDamaged(CaptureError):
    """A capture whose records are damaged: some failed their checksum and were skipped.

    Raised by :meth:`CaptureReader.check` once the records have been read: every
    intact record was returned, and :attr:`spans` says which bytes were not.
    """

    def __init__(self, name: str, spans: Iterable[DamagedSpan], records: int) -> None:
        self.name = name
        #: The bytes skipped, in the file's order.
        self.spans = tuple(spans)
        #: The intact records read.
        self.records = records
        size = sum(span.size for span in self.spans)
        where = (
            f"at byte {self.spans[0].start}"
            if len(self.spans) == 1
            else f"in {len(self.spans)} places, the first at byte {self.spans[0].start}"
        )
        super().__init__(
            f"{name} is damaged: {size} bytes {where} hold no intact record and were "
            f"skipped; the {records} intact record{'' if records == 1 else 's'} around "
            "them were read. The file changed after it was recorded (a disk or copying "
            "error): a copy made before may still be whole"
        )


class RecordKind(enum.IntEnum):
    """What a record holds. Readers skip kinds they do not know (added by later writers)."""

    #: One telemetry notification's payload, as received.
    NOTIFICATION = 1
    #: A new link: the notifications that follow come from a fresh connection, so a
    #: decoder must forget any partial frame. Payload: the dongle's address (UTF-8).
    LINK_UP = 2
    #: The radio reported the link lost. No payload.
    LINK_DOWN = 3
    #: The current link goes to a BLE OBD adapter: the notifications that follow,
    #: up to the next link, are its serial output. Payload: a JSON object (UTF-8)
    #: with the adapter's ``protocol`` (``elm327`` or ``slcan``) and ``layout`` name.
    ADAPTER = 4


class CaptureRecord(NamedTuple):
    """One record: when it was received, what kind it is, and its payload."""

    offset_ns: int
    """Nanoseconds since the start of the capture (a monotonic clock)."""
    kind: int
    """A :class:`RecordKind` value, or a code this version does not know."""
    data: bytes


@attrs.frozen
class CaptureHeader:
    """What a capture says about itself."""

    version: int
    vin: str
    #: Unix time, in nanoseconds, of offset 0.
    started_at_ns: int
    #: The whole metadata object, including keys this version does not use.
    metadata: Mapping[str, Any]

    @property
    def started_at(self) -> dt.datetime:
        """Offset 0 as an aware UTC datetime."""
        return self.at(0)

    def at(self, offset_ns: int) -> dt.datetime:
        """The wall-clock time of a record ``offset_ns`` into the capture.

        Raises :class:`ValueError` for a time after 9999 (or before year 1); the
        records a :class:`CaptureReader` returns can all be dated.
        """
        ns = self.started_at_ns + offset_ns
        if not _FIRST_NS <= ns <= _LAST_NS:
            raise ValueError(f"{offset_ns} ns into this capture is not a time a datetime can hold")
        # Integer microseconds: a float would round the nanoseconds, and the C
        # library's gmtime, which fromtimestamp uses, refuses times before 1970 on Windows.
        return _EPOCH + dt.timedelta(microseconds=ns // 1000)

    @property
    def time_scale(self) -> float:
        """How much faster than real time the recorded vehicle ran (simulations), else 1."""
        return _time_scale(self.metadata.get("time_scale", 1))


class CaptureWriter:
    """Appends records to a new capture file; a crash loses at most the record being written.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "drive.o2xcap"
    >>> with CaptureWriter(path, vin="VR1AB12C3D4567890") as capture:
    ...     capture.link_up("E2:4D:C9:F0:90:CC")
    ...     capture.notification(b"\\xa5\\x01")
    >>> with CaptureReader.open(path) as reader:
    ...     [RecordKind(r.kind).name for r in reader]
    ['LINK_UP', 'NOTIFICATION']

    The file is created (replacing any file of that name) and its header written
    when the writer is made, so an unwritable path fails at once, before any
    radio is touched. ``metadata`` adds keys to the header (``source``,
    ``time_scale``...). Each record goes to the operating system in one ``write``
    as it is added; :meth:`close` also syncs the file to disk.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        vin: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.vin = normalize_vin(vin)
        # The two clocks are read together: offsets come from the monotonic one (a
        # clock adjustment mid-drive must not bend the timeline), the wall clock
        # only dates offset 0.
        self._t0 = time.monotonic_ns()
        self.started_at_ns = time.time_ns()
        meta = dict(metadata or {})
        if "time_scale" in meta:
            _time_scale(meta["time_scale"])  # a reader would refuse the file
        meta.update(vin=self.vin, started_at_ns=self.started_at_ns)
        blob = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
        #: Records written so far.
        self.records = 0
        #: Bytes in the file so far, header included.
        self.size = 0
        #: Why writing stopped, if it failed (the file keeps what was written before).
        self.error: OSError | None = None
        self._last_offset = 0
        # Unbuffered: every write below is one system call, so nothing waits in a
        # buffer of ours when the process dies.
        self._file: IO[bytes] | None = open(self.path, "wb", buffering=0)  # noqa: SIM115
        try:
            header = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(blob)) + blob
            self._write(header + _CRC.pack(zlib.crc32(header)))
        except BaseException:
            self.close()
            raise

    def write(
        self, kind: RecordKind | int, data: bytes = b"", *, offset_ns: int | None = None
    ) -> None:
        """Append one record, stamped now unless ``offset_ns`` is given.

        Offsets never decrease: an ``offset_ns`` below the previous record's is
        refused, and a record stamped now after one given a later offset gets that offset.
        """
        if self._file is None:
            raise ValueError("the capture is closed")
        if len(data) > _MAX_PAYLOAD:
            raise ValueError(f"a record holds at most {_MAX_PAYLOAD} bytes, not {len(data)}")
        if not isinstance(kind, int):
            raise TypeError(f"a record kind is an int, not {type(kind).__name__}")
        if not 0 < kind <= 0xFF:
            raise ValueError(f"a record kind is 1..255, not {kind}")
        if offset_ns is None:
            # The monotonic clock never goes back, but an offset given earlier may
            # be ahead of it.
            offset_ns = max(time.monotonic_ns() - self._t0, self._last_offset)
        elif not isinstance(offset_ns, int):
            raise TypeError(f"offset_ns is an int, not {type(offset_ns).__name__}")
        elif not self._last_offset <= offset_ns <= _MAX_OFFSET:
            raise ValueError(
                f"offset_ns is {self._last_offset} (the previous record's) to {_MAX_OFFSET}, "
                f"not {offset_ns}"
            )
        blob = _RECORD3.pack(RECORD_SYNC, offset_ns, kind, len(data)) + data
        self._write(blob + _CRC.pack(zlib.crc32(blob)))
        self._last_offset = offset_ns
        self.records += 1

    def notification(self, data: bytes) -> None:
        """Append a telemetry notification received now."""
        self.write(RecordKind.NOTIFICATION, data)

    def link_up(self, address: str = "") -> None:
        """Mark the start of a new link (to the dongle at ``address``)."""
        self.write(RecordKind.LINK_UP, address.encode())

    def link_down(self) -> None:
        """Mark that the radio reported the link lost."""
        self.write(RecordKind.LINK_DOWN)

    def adapter(self, protocol: str, layout: str) -> None:
        """Mark that the current link goes to a BLE OBD adapter speaking ``protocol``."""
        blob = json.dumps({"layout": layout, "protocol": protocol}, separators=(",", ":"))
        self.write(RecordKind.ADAPTER, blob.encode())

    def _write(self, blob: bytes) -> None:
        assert self._file is not None
        view = memoryview(blob)
        while view:  # a regular file takes it all at once; a partial write is not an error
            view = view[self._file.write(view) :]
        self.size += len(blob)

    def close(self) -> None:
        """Sync the file to disk and close it. Safe to call more than once."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            os.fsync(file.fileno())
        except OSError:
            pass  # not every file system can; the data has reached the OS already
        finally:
            file.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._file is None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class CaptureReader:
    """Reads a capture: :attr:`header` at once, then the records by iterating.

    Raises :class:`CaptureError` if the file does not start with a valid header.
    A record cut short at the end of the file (a recorder that was killed while
    writing) ends the iteration quietly; :attr:`problem` then says what was left
    over. So do the zeros a crash can leave. Records of kinds this version does
    not know are returned as they are, and so are records whose offset goes back:
    :attr:`backwards` counts those.

    In a version-3 capture, bytes that hold no intact record (one whose sync bytes,
    checksum, kind or offset are wrong) are skipped, and reading goes on at the next
    intact record: :attr:`damage` lists what was skipped, and :meth:`check` raises it
    as a :class:`CaptureDamaged` once the records are read. A version-1 or -2
    capture has no checksums: its reader stops at the first record it cannot read
    (a kind 0, or one dated after the year 9999, which no datetime could hold) and
    says so in :attr:`problem`.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "drive.o2xcap"
    >>> with CaptureWriter(path, vin="VR1AB12C3D4567890") as capture:
    ...     for n in range(3):
    ...         capture.notification(bytes([n]) * 8)  # records of 25 bytes
    >>> blob = bytearray(path.read_bytes())
    >>> blob[-40] ^= 0xFF  # damage the second record
    >>> _ = path.write_bytes(blob)
    >>> reader = CaptureReader.open(path)
    >>> [record.data[0] for record in reader]
    [0, 2]
    >>> [span.size for span in reader.damage]
    [25]
    >>> reader.check()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    o2x.capture.CaptureDamaged: ...drive.o2xcap is damaged: 25 bytes at byte ... were skipped; ...
    >>> reader.close()
    """

    def __init__(self, file: IO[bytes], *, name: str = "capture") -> None:
        self._file = file
        self.name = name
        #: A description of unreadable bytes at the end of the file, once iterated:
        #: a record cut short, or zeros, as an interrupted recording leaves.
        self.problem: str | None = None
        #: The bytes of a version-3 capture that held no intact record, skipped
        #: (filled in while iterating). Not the end a recording that was interrupted
        #: leaves, which is the :attr:`problem`.
        self.damage: list[DamagedSpan] = []
        #: Bytes consumed so far (for progress reporting).
        self.position = 0
        #: Records returned so far.
        self.records = 0
        #: Records returned so far whose offset is below the previous record's
        #: (writers never do that: the file is damaged or was not made by o2x).
        self.backwards = 0
        #: The byte position of the first of those records.
        self.backwards_at: int | None = None
        self.header = self._read_header()

    @property
    def damaged(self) -> CaptureDamaged | None:
        """The :attr:`damage` met so far as an error, or ``None`` if there was none."""
        if not self.damage:
            return None
        return CaptureDamaged(self.name, self.damage, self.records)

    def check(self) -> None:
        """Raise :class:`CaptureDamaged` if records were skipped as damaged.

        Call it after iterating: the intact records have all been returned by then.
        """
        damaged = self.damaged
        if damaged is not None:
            raise damaged

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> CaptureReader:
        """Open the capture at ``path`` (use as a context manager to close it)."""
        file = open(path, "rb")  # noqa: SIM115 - closed by the reader
        try:
            return cls(file, name=os.fspath(path))
        except BaseException:
            file.close()
            raise

    def _read_header(self) -> CaptureHeader:
        preamble = self._read(_PREAMBLE.size)
        if not preamble:
            raise CaptureError(f"{self.name} is empty, not an o2x capture file")
        if len(preamble) < len(MAGIC) or preamble[: len(MAGIC)] != MAGIC:
            raise CaptureError(f"{self.name} is not an o2x capture file (its first bytes differ)")
        if len(preamble) < _PREAMBLE.size:
            raise CaptureError(f"{self.name}: the header is cut short")
        _, version, length = _PREAMBLE.unpack(preamble)
        if version not in READ_VERSIONS:
            raise CaptureError(
                f"{self.name} is a version {version} capture; this o2x reads versions "
                f"{', '.join(map(str, READ_VERSIONS[:-1]))} and {READ_VERSIONS[-1]}"
            )
        if length > _MAX_METADATA:
            raise CaptureError(f"{self.name}: the header claims {length} bytes of metadata")
        blob = self._read(length)
        if len(blob) < length:
            raise CaptureError(f"{self.name}: the header is cut short")
        size = _PREAMBLE.size + length
        if version >= 3:
            crc = self._read(_CRC.size)
            if len(crc) < _CRC.size:
                raise CaptureError(f"{self.name}: the header is cut short")
            size += _CRC.size
            if _CRC.unpack(crc)[0] != zlib.crc32(preamble + blob):
                raise CaptureError(
                    f"{self.name}: the header is damaged (its checksum does not match), "
                    "so the records cannot be dated; a copy made before may still be whole"
                )
        try:
            metadata, vin, started = _parse_metadata(blob)
        except (ValueError, TypeError) as exc:  # InvalidVIN is a ValueError
            raise CaptureError(f"{self.name}: the header's metadata is damaged ({exc})") from exc
        self.position = size
        return CaptureHeader(version, vin, started, metadata)

    def __iter__(self) -> Iterator[CaptureRecord]:
        if self.header.version >= 3:
            return self._records()
        return self._unchecked_records()

    def _records(self) -> Iterator[CaptureRecord]:
        """A version-3 capture's records: each checked, damage skipped."""
        read = self._read
        head = _RECORD3.size
        unpack = _RECORD3.unpack_from
        crc_size = _CRC.size
        crc_of = zlib.crc32
        latest = _LAST_NS - self.header.started_at_ns
        previous = 0
        buf = bytearray()
        base = self.position  # the file position of buf[0]
        i = 0  # where the next record should start, in buf
        eof = False
        # Where unreadable bytes began (a file position), and what they began with:
        # whether they are all zeros so far, and, if they start with a record that
        # runs past the end of the file, how much of it there is and should be.
        bad: int | None = None
        zeros = False
        torn: tuple[int, int | None] | None = None
        while True:
            if len(buf) - i < head and not eof:
                del buf[:i]
                base += i
                i = 0
                chunk = read(_CHUNK)
                buf += chunk
                eof = not chunk
                continue
            avail = len(buf) - i
            if not avail:
                break
            end = 0
            record: CaptureRecord | None = None
            if avail >= head and buf.startswith(RECORD_SYNC, i):
                _, offset_ns, kind, length = unpack(buf, i)
                end = i + head + length + crc_size
                while end > len(buf) and not eof:
                    chunk = read(max(_CHUNK, end - len(buf)))
                    buf += chunk
                    eof = not chunk
                if end <= len(buf):
                    data = bytes(buf[i + head : end - crc_size])
                    crc = crc_of(data, crc_of(buf[i : i + head]))
                    # Writers never write a kind 0, nor a time no datetime can hold.
                    if (
                        crc == _CRC.unpack_from(buf, end - crc_size)[0]
                        and kind != 0
                        and offset_ns <= latest
                    ):
                        record = CaptureRecord(offset_ns, kind, data)
            if record is not None:
                if bad is not None:
                    self.damage.append(DamagedSpan(bad, base + i))
                    bad = None
                if record.offset_ns < previous:
                    self.backwards += 1
                    if self.backwards_at is None:
                        self.backwards_at = base + i
                previous = record.offset_ns
                i = end
                self.position = base + i
                self.records += 1
                yield record
                continue
            # No record starts here: look for the next sync bytes, reading on as far
            # as needed but holding no more than a chunk of what is skipped.
            if bad is None:
                bad = base + i
                zeros = True
                have = len(buf) - i
                # The start of a record, running past the end of the file?
                if RECORD_SYNC.startswith(bytes(buf[i : i + len(RECORD_SYNC)])) and (
                    have < head or end > len(buf)
                ):
                    torn = (have, end - i if have >= head else None)
                else:
                    torn = None
            start = i  # zeros are counted from here
            search = i + 1
            found = buf.find(RECORD_SYNC, search)
            while found < 0 and not eof:
                # Keep the last byte: it may be the first of the sync bytes.
                keep = max(search, len(buf) - 1)
                zeros = zeros and buf.count(0, start, keep) == keep - start
                del buf[:keep]
                base += keep
                start = search = 0
                chunk = read(_CHUNK)
                buf += chunk
                eof = not chunk
                found = buf.find(RECORD_SYNC, search)
            stop = len(buf) if found < 0 else found
            zeros = zeros and buf.count(0, start, stop) == stop - start
            i = stop
        self.position = base + len(buf)
        if bad is not None:
            self._end(bad, base + len(buf), zeros, torn)

    def _end(self, start: int, end: int, zeros: bool, torn: tuple[int, int | None] | None) -> None:
        """Bytes at the end of a version-3 capture, from ``start``, that are no record."""
        if torn is not None:
            self.position = start
            self._torn(*torn)
        elif zeros:
            self.problem = (
                f"zeros from byte {start} on ({end - start} bytes ignored), as a crash "
                "can leave; the recording was probably interrupted"
            )
        else:
            self.damage.append(DamagedSpan(start, end))

    def _unchecked_records(self) -> Iterator[CaptureRecord]:
        """A version-1 or -2 capture's records, up to the first that cannot be read."""
        read = self._read
        size = _RECORD.size
        unpack = _RECORD.unpack
        latest = _LAST_NS - self.header.started_at_ns
        previous = 0
        while True:
            head = read(size)
            if len(head) < size:
                if head:
                    self._torn(len(head), None)
                return
            offset_ns, kind, length = unpack(head)
            if kind == 0:
                # No writer uses kind 0: this is where the data ends and something
                # else (typically the zeros a crash can leave) begins.
                self.problem = (
                    f"unreadable data from byte {self.position} on "
                    f"({size + self._skip_rest()} bytes ignored)"
                )
                return
            if offset_ns > latest:
                # Damage like a kind 0, and treated alike: a reader stops at the first
                # damage rather than guess where good records might start again.
                self.problem = (
                    f"the record at byte {self.position} is dated after the year 9999 "
                    f"({offset_ns} ns after the start); it and the rest of the file "
                    f"({size + self._skip_rest()} bytes) were ignored"
                )
                return
            data = read(length)
            if len(data) < length:
                self._torn(size + len(data), size + length)
                return
            if offset_ns < previous:
                # Counted, not refused: a single damaged offset would otherwise make
                # every record after it unreadable, though they are likely sound.
                self.backwards += 1
                if self.backwards_at is None:
                    self.backwards_at = self.position
            previous = offset_ns
            self.position += size + length
            self.records += 1
            yield CaptureRecord(offset_ns, kind, data)

    def _read(self, size: int = -1) -> bytes:
        try:
            return self._file.read(size)
        except OSError as exc:
            raise CaptureError(f"cannot read {self.name}: {exc.strerror or exc}") from exc

    def _skip_rest(self) -> int:
        """Go to the end of the file; how many bytes that passed over."""
        file = self._file
        try:
            if file.seekable():
                here = file.tell()
                return max(0, file.seek(0, os.SEEK_END) - here)
        except OSError:
            pass  # a file that says it can seek but cannot: count by reading
        # In chunks: a crash can leave hundreds of megabytes of zeros.
        skipped = 0
        while chunk := self._read(_CHUNK):
            skipped += len(chunk)
        return skipped

    def _torn(self, have: int, want: int | None) -> None:
        whole = f"of {want} " if want is not None else ""
        self.problem = (
            f"the last record is cut short ({have} bytes {whole}at byte {self.position}); "
            "the recording was probably interrupted"
        )

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _parse_metadata(blob: bytes) -> tuple[dict[str, Any], str, int]:
    try:
        metadata = json.loads(blob)
    except RecursionError:  # the decoder recurses once per level of nesting
        raise ValueError("its JSON is nested too deeply") from None
    if not isinstance(metadata, dict):
        raise TypeError("the metadata is not a JSON object")
    for key in ("vin", "started_at_ns"):
        if key not in metadata:
            raise ValueError(f"{key} is missing")
    started = metadata["started_at_ns"]
    if isinstance(started, bool) or not isinstance(started, int):
        raise TypeError("started_at_ns is not an integer")
    if not _FIRST_START <= started <= _LAST_START:
        raise ValueError(
            f"started_at_ns {_quote(started)} is not a time from 0001-01-02 to 9999-12-30 (UTC)"
        )
    _time_scale(metadata.get("time_scale", 1))
    return metadata, normalize_vin(metadata["vin"]), started


def _time_scale(value: object) -> float:
    """``value`` as a time scale: a positive, finite number, else :class:`ValueError`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            scale = float(value)
        except OverflowError:  # an int too big for a float
            scale = math.inf
        if 0 < scale < math.inf:
            return scale
    raise ValueError(f"time_scale must be a positive number, not {_quote(value)}")


class LinkChange(NamedTuple):
    """A link came up (``up``, with the dongle's ``address``) or was lost."""

    up: bool
    address: str = ""


class AdapterOpened(NamedTuple):
    """The current link goes to a BLE OBD adapter (an ``ADAPTER`` record).

    The notifications after it, up to the next link, are the adapter's serial
    output, read by :class:`AdapterDecoder`.
    """

    protocol: str
    """``elm327`` or ``slcan`` (a :class:`~o2x.obd.layouts.Protocol`); anything else is a
    protocol this version cannot read (a later writer's, or damage), whose
    notifications are skipped."""
    layout: str
    """The adapter's GATT layout (a name of :data:`o2x.obd.layouts.LAYOUTS`)."""

    @property
    def readable(self) -> bool:
        """Whether this version of o2x can read the adapter's output."""
        return self.protocol in _PARSERS


#: The parser of each protocol's output: the one the live session feeds.
_PARSERS: Final[Mapping[str, type[MonitorParser] | type[SlcanParser]]] = {
    Protocol.ELM327.value: MonitorParser,
    Protocol.SLCAN.value: SlcanParser,
}
_INTERVAL_NS: Final = round(READING_INTERVAL * 1e9)


def _adapter_opened(data: bytes) -> AdapterOpened:
    """An ``ADAPTER`` record's payload; damage gives a protocol nobody reads."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return AdapterOpened("", "")
    if not isinstance(payload, dict):
        return AdapterOpened("", "")
    protocol, layout = payload.get("protocol"), payload.get("layout")
    return AdapterOpened(
        protocol if isinstance(protocol, str) else "", layout if isinstance(layout, str) else ""
    )


@attrs.frozen
class AdapterStats:
    """What an :class:`AdapterDecoder` has read, over every adapter link of a capture."""

    #: ``ADAPTER`` records met.
    links: int = 0
    #: Notifications given to a parser.
    notifications: int = 0
    #: CAN frames the parsers read (11-bit data frames).
    frames: int = 0
    #: Frames of messages ``ami.dbc`` lists, used by the car's bus (the live
    #: vehicle's ``stats.frames``).
    bus_frames: int = 0
    #: Lines the parsers read that were no frame: answers, prompts, echoes, banners,
    #: noise, lines cut short.
    lines_ignored: int = 0
    #: ``BUFFER FULL`` messages of an ELM327 (each lost the frame it cut short).
    buffer_fulls: int = 0
    #: Notifications of links whose protocol this version cannot read, skipped.
    skipped: int = 0
    #: Readings taken.
    readings: int = 0


class AdapterDecoder:
    """Readings from the notifications of a capture's adapter links, as a CAN log gives them.

    Each adapter link gets a new parser for its protocol (a
    :class:`~o2x.obd.MonitorParser` for an ELM327, a :class:`~o2x.obd.SlcanParser`
    for SLCAN), as the live session does; the parsers skip what is no frame
    (command answers, prompts, echoes). The frames go to an :class:`~o2x.can.AmiBus`
    kept across links to the same adapter, as the live source keeps it, stamped with
    their notification's capture time. Readings follow :func:`o2x.can.log.log_readings`:
    one when the frames changed the bus's state, at most once per
    :data:`~o2x.can.bus.READING_INTERVAL` of capture time, and a ``cantCharge`` event
    when that heuristic starts to hold; plus, as the live vehicle does, one at each
    link's first frames. A change within the interval is held back and taken when
    the interval is over, stamped then and showing the bus as it was then, or when
    its link ends if that comes first (the end of a capture is its last
    notification): a link's last reading may follow the one before it sooner.

    Readings carry the capture's VIN and are dated by its header. Driven by
    :func:`replay`.
    """

    def __init__(self, header: CaptureHeader) -> None:
        self.vin = header.vin
        self._at = header.at
        #: The car's bus as the current (or last) adapter showed it.
        self.bus: AmiBus | None = None
        self._address: str | None = None
        self._parser: MonitorParser | SlcanParser | None = None
        # Whether the current link is an adapter's whose protocol cannot be read.
        self._skipping = False
        # This link's readings: the offset of the last one (None: none yet), whether
        # a change waits for the interval to end, the bus's change count when read.
        self._last: int | None = None
        self._held = False
        self._now = 0  # the offset of the last notification fed
        self._changes_seen = -1
        self._cant_charge = False
        # Counters of parsers and buses no longer current.
        self._done = AdapterStats()
        self._links = self._notifications = self._skipped = self._readings = 0

    @property
    def active(self) -> bool:
        """Whether the current link is an adapter's (its notifications go to :meth:`feed`)."""
        return self._parser is not None or self._skipping

    @property
    def stats(self) -> AdapterStats:
        """The counters so far, over every link."""
        done = self._done
        frames, ignored, buffer_fulls = _parser_counts(self._parser)
        return AdapterStats(
            links=self._links,
            notifications=self._notifications,
            frames=done.frames + frames,
            bus_frames=done.bus_frames + (self.bus.stats.frames if self.bus is not None else 0),
            lines_ignored=done.lines_ignored + ignored,
            buffer_fulls=done.buffer_fulls + buffer_fulls,
            skipped=self._skipped,
            readings=self._readings,
        )

    def open(
        self, offset_ns: int, address: str, adapter: AdapterOpened
    ) -> list[tuple[int, VehicleInfo | EventKind]]:
        """The link to ``address`` goes to ``adapter`` from ``offset_ns`` on."""
        items = self.close(offset_ns)
        self._links += 1
        parser = _PARSERS.get(adapter.protocol)
        if parser is None:
            self._skipping = True
            return items
        self._parser = parser()
        if self.bus is None or self._address != address:
            self._retire_bus()
            self.bus = AmiBus()
            self._address = address
        return items

    def feed(self, offset_ns: int, data: bytes) -> list[tuple[int, VehicleInfo | EventKind]]:
        """One notification of the current adapter link: the readings it completes."""
        parser = self._parser
        if parser is None:
            if self._skipping:
                self._skipped += 1
            return []
        self._notifications += 1
        self._now = offset_ns
        items = self._due(offset_ns)
        frames = parser.feed(data)
        if not frames:
            return items
        bus = self.bus
        assert bus is not None
        t = offset_ns / 1e9
        feed = bus.feed
        for can_id, payload in frames:
            feed(can_id, payload, t)
        last = self._last
        if last is None:  # a link's first frames: a reading, as live
            items += self._reading(offset_ns)
        elif bus.changes != self._changes_seen:
            if offset_ns - last >= _INTERVAL_NS:
                items += self._reading(offset_ns)
            else:
                self._held = True
        return items

    def close(self, offset_ns: int | None) -> list[tuple[int, VehicleInfo | EventKind]]:
        """The current link ended at ``offset_ns``, or with the capture (``None``).

        A reading held back is taken: when its interval was over, if it was over by
        then, else at the link's end (the capture's end is its last notification).
        """
        last = self._last
        if last is not None and self._held:
            end = self._now if offset_ns is None else offset_ns
            items = self._reading(min(last + _INTERVAL_NS, max(end, last)))
        else:
            items = []
        parser, self._parser = self._parser, None
        self._skipping = False
        self._last = None
        self._held = False
        self._cant_charge = False
        if parser is not None:
            self._retire_parser(parser)
        return items

    def _due(self, offset_ns: int) -> list[tuple[int, VehicleInfo | EventKind]]:
        """The reading held back, if its interval is over at ``offset_ns``."""
        if self._held and self._last is not None and offset_ns >= self._last + _INTERVAL_NS:
            return self._reading(self._last + _INTERVAL_NS)
        return []

    def _reading(self, offset_ns: int) -> list[tuple[int, VehicleInfo | EventKind]]:
        bus = self.bus
        assert bus is not None
        self._last = offset_ns
        self._held = False
        self._changes_seen = bus.changes
        self._readings += 1
        items: list[tuple[int, VehicleInfo | EventKind]] = [
            (offset_ns, bus.snapshot(vin=self.vin, received_at=self._at(offset_ns)))
        ]
        cant_charge = bus.cant_charge
        if cant_charge and not self._cant_charge:
            items.append((offset_ns, EventKind.CANT_CHARGE))
        self._cant_charge = cant_charge
        return items

    def _retire_parser(self, parser: MonitorParser | SlcanParser) -> None:
        done = self._done
        frames, ignored, buffer_fulls = _parser_counts(parser)
        self._done = attrs.evolve(
            done,
            frames=done.frames + frames,
            lines_ignored=done.lines_ignored + ignored,
            buffer_fulls=done.buffer_fulls + buffer_fulls,
        )

    def _retire_bus(self) -> None:
        if self.bus is not None:
            done = self._done
            self._done = attrs.evolve(done, bus_frames=done.bus_frames + self.bus.stats.frames)


def _parser_counts(parser: MonitorParser | SlcanParser | None) -> tuple[int, int, int]:
    """A parser's frames, lines that were no frame, and BUFFER FULL messages."""
    if isinstance(parser, MonitorParser):
        m = parser.stats
        return m.frames, m.lines_ignored + m.overlong, m.buffer_fulls
    if parser is not None:
        c = parser.stats
        return c.frames, c.lines_ignored + c.overlong, 0
    return 0, 0, 0


def replay(
    records: Iterable[CaptureRecord],
    decoder: FrameDecoder | None = None,
    *,
    adapters: AdapterDecoder | None = None,
) -> Iterator[tuple[int, Frame | LinkChange | AdapterOpened | VehicleInfo | EventKind]]:
    """Decode records as the live client did: ``(offset_ns, item)`` pairs, in order.

    The notifications of an O2X dongle's link go through ``decoder`` (a new
    :class:`~o2x.dongle.frames.FrameDecoder` by default; pass one to read its
    statistics afterwards), which forgets any partial frame at each new link,
    exactly as :class:`~o2x.O2XVehicle` does on reconnecting: they give frames.
    Those of an adapter's link (after its ``ADAPTER`` record, which gives an
    :class:`AdapterOpened`) go through ``adapters`` (by default an
    :class:`AdapterDecoder` for the header of ``records``, a :class:`CaptureReader`):
    they give :class:`~o2x.VehicleInfo` readings and ``cantCharge`` events
    (:class:`~o2x.EventKind`). Link changes give :class:`LinkChange`. Records of
    unknown kinds are skipped.

    Raises :class:`ValueError` at an ``ADAPTER`` record if ``records`` has no header
    and no ``adapters`` was given: its readings could not be dated.
    """
    if decoder is None:
        decoder = FrameDecoder()
    if adapters is None and isinstance(records, CaptureReader):
        adapters = AdapterDecoder(records.header)
    feed = decoder.feed
    address = ""
    for offset_ns, kind, data in records:
        if kind == RecordKind.NOTIFICATION:
            if adapters is not None and adapters.active:
                yield from adapters.feed(offset_ns, data)
            else:
                for frame in feed(data):
                    yield offset_ns, frame
        elif kind == RecordKind.LINK_UP:
            if adapters is not None:
                yield from adapters.close(offset_ns)
            decoder.reset()
            address = data.decode("utf-8", "replace")
            yield offset_ns, LinkChange(True, address)
        elif kind == RecordKind.LINK_DOWN:
            if adapters is not None:
                yield from adapters.close(offset_ns)
            yield offset_ns, LinkChange(False)
        elif kind == RecordKind.ADAPTER:
            if adapters is None:
                raise ValueError(
                    "an adapter's notifications give readings, which need the capture's "
                    "header: replay a CaptureReader, or pass adapters=AdapterDecoder(header)"
                )
            opened = _adapter_opened(data)
            held = adapters.open(offset_ns, address, opened)  # a previous adapter's, if any
            yield from held
            yield offset_ns, opened
    if adapters is not None:
        yield from adapters.close(None)


class RecordingVehicle(O2XVehicle):
    """An :class:`~o2x.O2XVehicle` that also appends its raw notifications to a capture.

    Made and used exactly like :class:`~o2x.O2XVehicle`; set :attr:`capture` before
    entering::

        with CaptureWriter("drive.o2xcap", vin=vin) as capture:
            car = RecordingVehicle.first_time(vin)
            car.capture = capture
            async with car:
                ...

    Every notification the radio delivers for the current link is written before
    it is decoded, with a ``LINK_UP`` record ahead of each link's first
    notification and a ``LINK_DOWN`` record when that link is lost: reported lost
    by the radio, or given up by the vehicle after ``loose_connection`` seconds of
    silence (each ``disconnected`` event of the live vehicle has its record). A
    link to a BLE OBD adapter has an ``ADAPTER`` record (its protocol and layout)
    ahead of the first notification its session reads: its notifications are the
    adapter's whole output, answers and prompts included. Writing never disturbs
    the vehicle: if the file cannot be written, recording stops and the error is
    kept in ``capture.error``.
    """

    #: Where notifications are written; ``None`` records nothing.
    capture: CaptureWriter | None = None
    _recorder: _Recorder | None = None

    @property
    def adapter_layout(self) -> AdapterLayout | None:
        """The layout of the last BLE OBD adapter recorded (``None``: none so far)."""
        return self._recorder.layout if self._recorder is not None else None

    async def _open_source(self) -> Source:
        source = await super()._open_source()
        if self.capture is not None and isinstance(source, DongleSource):
            self._recorder = source.recorder = _Recorder(self.capture, source)
        return source

    def _deliver(self, action: Action) -> None:
        # The vehicle gives a silent link up itself, with no word from the radio.
        if (
            self._recorder is not None
            and isinstance(action, DeliverEvent)
            and action.kind is EventKind.DISCONNECTED
        ):
            self._recorder.link_down()
        super()._deliver(action)


class _Recorder:
    """Writes a dongle's notifications to a capture, with a record per link up and down.

    ``source`` says, by its ``layout``, whether the current link goes to a BLE OBD
    adapter: the source decodes a notification as the adapter's output exactly when
    that is set, so the ``ADAPTER`` record goes ahead of the first such notification.
    """

    def __init__(self, capture: CaptureWriter, source: DongleSource | None = None) -> None:
        self.capture = capture
        self._source = source
        # Links are numbered by the transport; a number below the newest one seen is
        # a late callback of a link that has been replaced.
        self._link = -1
        # The link whose LINK_DOWN has been written: one record per link.
        self._down = -1
        # The link whose ADAPTER record has been written.
        self._adapter = -1
        #: The last adapter's layout recorded.
        self.layout: AdapterLayout | None = None

    def notifications(self, generation: int, address: str, chunks: list[bytes]) -> None:
        """Called by the source for the current link, before it decodes ``chunks``."""
        capture = self.capture
        if capture.closed or capture.error is not None or generation < self._link:
            return
        try:
            if generation != self._link:
                self._link = generation
                capture.link_up(address)
            if self._adapter != generation and self._source is not None:
                layout = self._source.layout
                if layout is not None:
                    self._adapter = generation
                    self.layout = layout
                    capture.adapter(layout.protocol.value, layout.name)
            for chunk in chunks:
                capture.notification(chunk)
        except OSError as exc:
            capture.error = exc

    def link_lost(self, generation: int) -> None:
        """The radio reported the current link lost."""
        if generation == self._link:
            self.link_down()

    def link_down(self) -> None:
        capture = self.capture
        if (
            not capture.closed
            and capture.error is None
            and self._link >= 0
            and self._down != self._link
        ):
            self._down = self._link
            try:
                capture.link_down()
            except OSError as exc:
                capture.error = exc
