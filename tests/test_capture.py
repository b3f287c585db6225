"""Capture files: the format, torn tails and other damage, offline decoding (`o2x replay`
included), and recording from a live link."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import struct
import subprocess
import sys
import threading
import time
import zlib
import zoneinfo
from pathlib import Path

import anyio
import attrs
import pytest
from capture_layout import RECORD_OVERHEAD, capture_bytes, record, record_v2
from click.testing import CliRunner, Result

from o2x import EventKind, ParkBrake, Timeouts, VehicleInfo
from o2x.capture import (
    FORMAT_VERSION,
    MAGIC,
    CaptureDamaged,
    CaptureError,
    CaptureHeader,
    CaptureReader,
    CaptureRecord,
    CaptureWriter,
    DamagedSpan,
    LinkChange,
    RecordingVehicle,
    RecordKind,
    replay,
)
from o2x.cli import cli
from o2x.cli._replay import describe_header
from o2x.dongle.frames import EventFrame, FrameDecoder, InfoFrame, encode_event, encode_info
from o2x.model import SystemState
from o2x.sim import SimulatedVehicle, VirtualRadio

VIN = "VR7ABCDEF12345678"
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def unix_ns(at: dt.datetime) -> int:
    """Exact nanoseconds since 1970 (a float timestamp would round far-off dates)."""
    return (at - UNIX_EPOCH) // dt.timedelta(microseconds=1) * 1000


#: The first and last starts a capture may have: a day inside datetime's range.
FIRST_START = unix_ns(dt.datetime(1, 1, 2, tzinfo=dt.UTC))
LAST_START = unix_ns(dt.datetime(9999, 12, 30, 23, 59, 59, 999_999, tzinfo=dt.UTC)) + 999


def write_sample(path: Path) -> list[CaptureRecord]:
    """A capture of two links; returns the records as written."""
    with CaptureWriter(path, vin=VIN, metadata={"source": "test"}) as capture:
        capture.write(RecordKind.LINK_UP, b"AA:BB", offset_ns=10)
        capture.write(RecordKind.NOTIFICATION, encode_info(seq=0, battery_soc=80), offset_ns=20)
        capture.write(RecordKind.LINK_DOWN, offset_ns=30)
        capture.write(RecordKind.LINK_UP, b"AA:BB", offset_ns=40)
        capture.write(RecordKind.NOTIFICATION, encode_info(seq=0, battery_soc=79), offset_ns=50)
    return [
        CaptureRecord(10, RecordKind.LINK_UP, b"AA:BB"),
        CaptureRecord(20, RecordKind.NOTIFICATION, encode_info(seq=0, battery_soc=80)),
        CaptureRecord(30, RecordKind.LINK_DOWN, b""),
        CaptureRecord(40, RecordKind.LINK_UP, b"AA:BB"),
        CaptureRecord(50, RecordKind.NOTIFICATION, encode_info(seq=0, battery_soc=79)),
    ]


def test_records_come_back_as_written(tmp_path):
    path = tmp_path / "c.o2xcap"
    written = write_sample(path)
    with CaptureReader.open(path) as reader:
        assert reader.header.vin == VIN
        assert reader.header.version == FORMAT_VERSION
        assert reader.header.metadata["source"] == "test"
        assert list(reader) == written
        assert reader.problem is None
        assert reader.position == path.stat().st_size


def test_the_header_dates_offsets_from_the_wall_clock(tmp_path):
    path = tmp_path / "c.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        started = capture.started_at_ns
    with CaptureReader.open(path) as reader:
        header = reader.header
    assert header.started_at_ns == started
    later = header.at(1_500_000_000)  # 1.5 s in
    assert (later - header.started_at).total_seconds() == pytest.approx(1.5)
    assert header.time_scale == 1.0


def test_the_layout_is_the_documented_one(tmp_path):
    # docs/protocol.md, "Capture files": magic, u16 version, u32 length, JSON, CRC-32
    # of all that; records of sync, offset, kind, length, payload, CRC-32 of all that.
    path = tmp_path / "c.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        capture.write(RecordKind.NOTIFICATION, b"\x01\x02\x03", offset_ns=0x0102030405)
    blob = path.read_bytes()
    assert blob[:8] == MAGIC == b"\x89O2XCAP\n"
    version, length = struct.unpack_from("<HI", blob, 8)
    assert version == FORMAT_VERSION == 3
    metadata = json.loads(blob[14 : 14 + length])
    assert metadata["vin"] == VIN
    assert isinstance(metadata["started_at_ns"], int)
    (crc,) = struct.unpack_from("<I", blob, 14 + length)
    assert crc == zlib.crc32(blob[: 14 + length])
    assert blob[18 + length :] == bytes.fromhex(
        "fe d2  05 04 03 02 01 00 00 00  01  03 00  01 02 03  85 b2 11 85"
    )
    # The documented CRC-32 is the one of zip and PNG: its check value.
    assert zlib.crc32(b"123456789") == 0xCBF43926


EXAMPLE_METADATA = (
    b'{"recorder":"o2x 0.1.0","source":"bluetooth",'
    b'"started_at_ns":1795338930000000000,"vin":"VR1AB12C3D4567890"}'
)
EXAMPLE_ITEMS = [
    (812_000_000, LinkChange(True, "E2:4D:C9:F0:90:CC")),
    (813_500_000, EventFrame(0x2B, 1, EventKind.CANT_CHARGE)),
]


def read_example(path: Path, blob: bytes) -> tuple[CaptureHeader, list]:
    path.write_bytes(blob)
    with CaptureReader.open(path) as reader:
        header = reader.header
        items = list(replay(reader))
        assert reader.problem is None
        assert reader.damage == []
    assert header.vin == "VR1AB12C3D4567890"
    assert header.started_at == dt.datetime(2026, 11, 22, 9, 15, 30, tzinfo=dt.UTC)
    assert header.metadata["source"] == "bluetooth"
    return header, items


def test_the_example_of_docs_protocol_md(tmp_path):
    # Byte for byte as docs/protocol.md, section 7, "Example", writes it.
    blob = (
        bytes.fromhex("89 4f 32 58 43 41 50 0a 03 00 6b 00 00 00")
        + EXAMPLE_METADATA
        + bytes.fromhex("e5 56 43 86")
        + bytes.fromhex("fe d2 00 23 66 30 00 00 00 00 02 11 00")
        + b"E2:4D:C9:F0:90:CC"
        + bytes.fromhex("dc de 45 c9")
        + bytes.fromhex("fe d2 60 06 7d 30 00 00 00 00 01 08 00 a5 01 02 2b 01 01 12 03")
        + bytes.fromhex("b8 f3 8f 2b")
    )
    header, items = read_example(tmp_path / "example.o2xcap", blob)
    assert header.version == 3
    assert items == EXAMPLE_ITEMS


# Versions 1 and 2 are what o2x wrote before records had checksums (1: before ADAPTER
# records): their captures still read.
@pytest.mark.parametrize("version", ["02 00", "01 00"])
def test_the_example_of_docs_protocol_md_in_versions_1_and_2(tmp_path, version):
    blob = (
        bytes.fromhex(f"89 4f 32 58 43 41 50 0a {version} 6b 00 00 00")
        + EXAMPLE_METADATA
        + bytes.fromhex("00 23 66 30 00 00 00 00 02 11 00")
        + b"E2:4D:C9:F0:90:CC"
        + bytes.fromhex("60 06 7d 30 00 00 00 00 01 08 00 a5 01 02 2b 01 01 12 03")
    )
    header, items = read_example(tmp_path / "example.o2xcap", blob)
    assert header.version == int(version[:2])
    assert items == EXAMPLE_ITEMS


def test_each_record_is_on_disk_as_soon_as_it_is_written(tmp_path):
    # What a crash would leave: read the file while the writer still holds it open.
    path = tmp_path / "c.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        for n in range(3):
            capture.notification(bytes([n]) * 5)
            with CaptureReader.open(path) as reader:
                assert [r.data for r in reader] == [bytes([i]) * 5 for i in range(n + 1)]
                assert reader.problem is None


def test_a_record_cut_anywhere_is_reported_and_the_rest_is_read(tmp_path):
    path = tmp_path / "c.o2xcap"
    written = write_sample(path)
    whole = path.read_bytes()
    last = RECORD_OVERHEAD + len(written[-1].data)
    for cut in range(1, last):
        path.write_bytes(whole[:-cut])
        with CaptureReader.open(path) as reader:
            assert list(reader) == written[:-1], cut
            assert reader.problem is not None
            assert "cut short" in reader.problem


def test_zeros_after_the_last_record_are_reported(tmp_path):
    # Some file systems leave zeros where a crash cut a write short.
    path = tmp_path / "c.o2xcap"
    written = write_sample(path)
    with path.open("ab") as f:
        f.write(bytes(64))
    with CaptureReader.open(path) as reader:
        assert list(reader) == written
        assert reader.problem is not None
        assert "64 bytes ignored" in reader.problem


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "is empty"),
        (b"PK\x03\x04 a zip file, say", "not an o2x capture file"),
        (MAGIC + b"\x01", "cut short"),
        (
            MAGIC + struct.pack("<HI", 4, 2) + b"{}",
            "version 4 capture; this o2x reads versions 1, 2 and 3",
        ),
        pytest.param(
            capture_bytes({"vin": VIN, "started_at_ns": 0})[:-2],
            "cut short",
            id="no header checksum",
        ),
        pytest.param(
            capture_bytes({"vin": VIN, "started_at_ns": 0}).replace(b'"vin"', b'"vIn"'),
            "the header is damaged .its checksum does not match.",
            id="header checksum",
        ),
        (MAGIC + struct.pack("<HI", 0, 2) + b"{}", "version 0 capture"),
        (MAGIC + struct.pack("<HI", 1, 40) + b"{}", "cut short"),
        (MAGIC + struct.pack("<HI", 1, 4) + b"[1]\n", "damaged"),
        (MAGIC + struct.pack("<HI", 1, 2) + b"{}", "damaged"),
        pytest.param(
            capture_bytes({"vin": VIN}), "damaged.*started_at_ns is missing", id="no start"
        ),
        pytest.param(
            capture_bytes(b"[" * 100_000 + b"]" * 100_000), "nested too deeply", id="deep JSON"
        ),
        pytest.param(
            capture_bytes({"vin": VIN, "started_at_ns": 10**30}),
            "damaged.*started_at_ns 1000000000000000000000000000000 is not a time",
            id="start after 9999",
        ),
        pytest.param(
            capture_bytes({"vin": VIN, "started_at_ns": 0, "time_scale": 10**400}),
            r"damaged.*time_scale must be a positive number, not an integer of at least \d+ digits",
            id="time scale beyond floats",
        ),
        *(
            pytest.param(
                capture_bytes({"vin": VIN, "started_at_ns": 0, "time_scale": scale}),
                "damaged.*time_scale must be a positive number",
                id=f"time scale {scale!r}",
            )
            for scale in (math.nan, math.inf, 0, -2.5, "fast", True)
        ),
    ],
)
def test_a_file_that_is_not_a_capture_is_refused(tmp_path, blob, message):
    path = tmp_path / "c.o2xcap"
    path.write_bytes(blob)
    with pytest.raises(CaptureError, match=message):
        CaptureReader.open(path)


def test_the_start_is_one_that_any_time_zone_can_show(tmp_path):
    path = tmp_path / "c.o2xcap"
    for started in (FIRST_START - 1, LAST_START + 1):
        path.write_bytes(capture_bytes({"vin": VIN, "started_at_ns": started}))
        with pytest.raises(CaptureError, match="started_at_ns"):
            CaptureReader.open(path)
    # No time zone is a day away from UTC.
    zones = [dt.timezone(dt.timedelta(hours=h, minutes=59 * h // 23)) for h in (-23, 23)]
    for started in (FIRST_START, LAST_START):
        path.write_bytes(capture_bytes({"vin": VIN, "started_at_ns": started}))
        with CaptureReader.open(path) as reader:
            at = reader.header.started_at
        assert unix_ns(at) == started // 1000 * 1000
        for zone in zones:
            assert at.astimezone(zone) == at


def test_a_record_dated_after_the_year_9999_is_skipped_as_damage(tmp_path):
    path = tmp_path / "c.o2xcap"
    started = unix_ns(dt.datetime(9990, 1, 1, tzinfo=dt.UTC))
    good = record(1, b"a") + record(2, b"b")
    damaged = record(2**63, b"c")
    blob = capture_bytes({"vin": VIN, "started_at_ns": started}, good + damaged + record(3, b"d"))
    path.write_bytes(blob)
    with CaptureReader.open(path) as reader:
        assert [r.data for r in reader] == [b"a", b"b", b"d"]
        assert reader.problem is None
        at = len(blob) - len(record(3, b"d")) - len(damaged)
        assert reader.damage == [DamagedSpan(at, at + len(damaged))]
        with pytest.raises(CaptureDamaged, match=f"{len(damaged)} bytes at byte {at} hold no"):
            reader.check()


def test_a_version_2_record_dated_after_the_year_9999_ends_the_reading_as_before(tmp_path):
    path = tmp_path / "c.o2xcap"
    started = unix_ns(dt.datetime(9990, 1, 1, tzinfo=dt.UTC))
    good = record_v2(1, b"a") + record_v2(2, b"b")
    damaged = record_v2(2**63, b"c") + record_v2(3, b"d")
    path.write_bytes(
        capture_bytes({"vin": VIN, "started_at_ns": started}, good + damaged, version=2)
    )
    with CaptureReader.open(path) as reader:
        assert [r.data for r in reader] == [b"a", b"b"]
        assert reader.problem is not None
        assert "after the year 9999" in reader.problem
        assert f"({len(damaged)} bytes)" in reader.problem
        assert reader.position == path.stat().st_size - len(damaged)
        header = reader.header
    assert header.at(2).year == 9990
    with pytest.raises(ValueError, match="not a time a datetime can hold"):
        header.at(2**63)


class SpyFile(io.BytesIO):
    """A file that notes what is asked of ``read``; unseekable, it stands for a pipe."""

    def __init__(self, blob: bytes, *, seekable: bool) -> None:
        super().__init__(blob)
        self._seekable = seekable
        self.asked: list[int] = []
        self.given = 0

    def read(self, size=-1):
        self.asked.append(size)
        data = super().read(size)
        self.given += len(data)
        return data

    def seekable(self) -> bool:
        return self._seekable


@pytest.mark.parametrize("seekable", [True, False], ids=["file", "pipe"])
@pytest.mark.parametrize("version", [2, 3])
def test_a_long_damaged_tail_is_measured_without_holding_it_in_memory(seekable, version):
    records = [record_v2(1, b"a"), record_v2(2, b"b")] if version == 2 else [record(1, b"a")]
    blob = capture_bytes({"vin": VIN, "started_at_ns": 0}, b"".join(records), version=version)
    tail = 5 << 20  # zeros, as a crash can leave hundreds of megabytes of
    spy = SpyFile(blob + bytes(tail), seekable=seekable)
    reader = CaptureReader(spy)
    assert len(list(reader)) == len(records)
    assert reader.problem is not None
    assert f"({tail} bytes ignored)" in reader.problem
    assert reader.damage == []  # zeros at the end: an interrupted recording
    assert all(0 <= size < tail for size in spy.asked)
    if seekable and version == 2:
        assert spy.given <= len(blob) + 11  # the tail was never read
    # Version 3 reads it (records may follow damage), a chunk at a time.


def test_zeros_in_the_middle_are_damage_and_the_records_after_them_are_read():
    records = [record(1, b"a"), record(2, b"b")]
    blob = capture_bytes({"vin": VIN, "started_at_ns": 0}, records[0] + bytes(3 << 20))
    reader = CaptureReader(io.BytesIO(blob + records[1]))
    assert [r.data for r in reader] == [b"a", b"b"]
    assert reader.problem is None
    assert reader.damage == [DamagedSpan(len(blob) - (3 << 20), len(blob))]


def test_offsets_that_go_back_are_counted_and_every_record_is_read(tmp_path):
    path = tmp_path / "c.o2xcap"
    records = [record(10, b"a"), record(5, b"b"), record(7, b"c"), record(3, b"d")]
    blob = capture_bytes({"vin": VIN, "started_at_ns": 0}, b"".join(records))
    path.write_bytes(blob)
    with CaptureReader.open(path) as reader:
        assert [r.offset_ns for r in reader] == [10, 5, 7, 3]
        assert reader.problem is None
        assert reader.backwards == 2
        assert reader.backwards_at == len(blob) - sum(map(len, records[1:]))


def test_replay_decodes_frames_and_reports_links(tmp_path):
    path = tmp_path / "c.o2xcap"
    write_sample(path)
    with CaptureReader.open(path) as reader:
        items = list(replay(reader))
    assert [offset for offset, _ in items] == [10, 20, 30, 40, 50]
    assert items[0][1] == LinkChange(True, "AA:BB")
    assert items[2][1] == LinkChange(False)
    socs = [item.battery_soc for _, item in items if isinstance(item, InfoFrame)]
    assert socs == [80, 79]


def test_replay_forgets_a_partial_frame_at_a_new_link(tmp_path):
    # The live client resets its decoder on every connection: so must replay,
    # or the torn frame of the old link would swallow the first frame of the new.
    torn = encode_info(seq=5, battery_soc=50)[:12]
    records = [
        CaptureRecord(1, RecordKind.LINK_UP, b""),
        CaptureRecord(2, RecordKind.NOTIFICATION, torn),
        CaptureRecord(3, RecordKind.LINK_DOWN, b""),
        CaptureRecord(4, RecordKind.LINK_UP, b""),
        CaptureRecord(5, RecordKind.NOTIFICATION, encode_event(EventKind.CANT_CHARGE, seq=0)),
    ]
    decoder = FrameDecoder()
    frames = [item for _, item in replay(records, decoder) if not isinstance(item, LinkChange)]
    assert frames == [EventFrame(0, 1, EventKind.CANT_CHARGE)]
    assert decoder.stats.crc_errors == 0
    assert decoder.stats.bytes_discarded == len(torn)
    assert decoder.stats.seq_gaps == 0


def test_records_of_unknown_kinds_are_read_and_skipped_by_replay(tmp_path):
    path = tmp_path / "c.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        capture.write(42, b"from a later version", offset_ns=1)
        capture.write(RecordKind.NOTIFICATION, encode_info(seq=1), offset_ns=2)
    with CaptureReader.open(path) as reader:
        records = list(reader)
    assert [r.kind for r in records] == [42, RecordKind.NOTIFICATION]
    assert [type(item) for _, item in replay(records)] == [InfoFrame]


def test_the_writer_refuses_what_the_format_cannot_hold(tmp_path):
    with CaptureWriter(tmp_path / "c.o2xcap", vin=VIN) as capture:
        with pytest.raises(ValueError, match="at most 65535"):
            capture.notification(bytes(70_000))
        with pytest.raises(ValueError, match="kind"):
            capture.write(0)
    with pytest.raises(ValueError, match="closed"):
        capture.notification(b"late")


@pytest.mark.parametrize(
    ("kind", "offset_ns", "error", "message"),
    [
        (RecordKind.NOTIFICATION, -1, ValueError, "offset_ns is 100 .* to 18446744073709551615"),
        (
            RecordKind.NOTIFICATION,
            2**64,
            ValueError,
            "offset_ns is 100 .* not 18446744073709551616",
        ),
        (RecordKind.NOTIFICATION, 99, ValueError, r"offset_ns is 100 \(the previous record's\)"),
        (RecordKind.NOTIFICATION, 150.0, TypeError, "offset_ns is an int, not float"),
        (1.5, 200, TypeError, "a record kind is an int, not float"),
    ],
)
def test_the_writer_refuses_offsets_and_kinds_it_cannot_write(
    tmp_path, kind, offset_ns, error, message
):
    path = tmp_path / "c.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        capture.write(RecordKind.LINK_UP, offset_ns=100)
        size = capture.size
        with pytest.raises(error, match=message):
            capture.write(kind, b"x", offset_ns=offset_ns)
        assert (capture.records, capture.size) == (1, size)
    with CaptureReader.open(path) as reader:
        assert list(reader) == [CaptureRecord(100, RecordKind.LINK_UP, b"")]


def test_a_record_stamped_now_is_never_dated_before_the_one_ahead_of_it(tmp_path):
    path = tmp_path / "c.o2xcap"
    ahead = 10**15  # eleven days: well ahead of the writer's clock
    with CaptureWriter(path, vin=VIN) as capture:
        capture.write(RecordKind.LINK_UP, offset_ns=ahead)
        capture.notification(b"x")
    with CaptureReader.open(path) as reader:
        assert [r.offset_ns for r in reader] == [ahead, ahead]
        assert reader.backwards == 0


@pytest.mark.parametrize("scale", [0, -1.0, math.nan, math.inf, "fast"])
def test_the_writer_refuses_a_time_scale_a_reader_would_refuse(tmp_path, scale):
    path = tmp_path / "c.o2xcap"
    with pytest.raises(ValueError, match="time_scale must be a positive number"):
        CaptureWriter(path, vin=VIN, metadata={"time_scale": scale})
    assert not path.exists()


# --- recording from a live link --------------------------------------------------------


class Reports:
    """What the vehicle delivered, collected by tasks, with a way to wait for more."""

    def __init__(self) -> None:
        self.samples: list[VehicleInfo] = []
        self.events: list[EventKind] = []
        self._changed = anyio.Event()

    async def take_samples(self, stream) -> None:
        async for info in stream:
            self.samples.append(info)
            self._poke()

    async def take_events(self, stream) -> None:
        async for event in stream:
            self.events.append(event.kind)
            self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate, within: float = 10.0) -> None:
        with anyio.fail_after(within):
            while not predicate():
                await self._changed.wait()


def without_time(info: VehicleInfo) -> VehicleInfo:
    # Live readings are stamped when delivered, replayed ones when written: the
    # same instant to the millisecond, but possibly on either side of a second.
    return attrs.evolve(info, received_at=EPOCH)


@pytest.mark.anyio
async def test_replaying_a_recording_gives_what_the_live_client_decoded(tmp_path):
    path = tmp_path / "drive.o2xcap"
    async with VirtualRadio() as radio:
        sim = await radio.add(SimulatedVehicle(VIN, time_scale=120, seed=3))
        # Small notifications: frames cross notification boundaries.
        await sim.set_notification_size(9)
        with CaptureWriter(path, vin=VIN) as capture:
            car = RecordingVehicle.first_time(VIN, radio=radio, state_dir=tmp_path)
            car.capture = capture
            async with car:
                reports = Reports()
                samples, events = car.samples(buffer=100_000), car.events()
                before = car.stats.frames  # decoded before the streams existed
                async with anyio.create_task_group() as tg:
                    tg.start_soon(reports.take_samples, samples)
                    tg.start_soon(reports.take_events, events)
                    await sim.drive()
                    await reports.wait_for(lambda: len(reports.samples) >= 5)
                    await sim.corrupt_next(3)
                    await reports.wait_for(lambda: car.stats.crc_errors >= 3)
                    await sim.park()
                    await sim.set(park_brake_status=ParkBrake.RELEASED)
                    await sim.charge()
                    await reports.wait_for(lambda: EventKind.CANT_CHARGE in reports.events)
                    await sim.drop_link()
                    await reports.wait_for(lambda: car.stats.reconnects == 1)
                    count = len(reports.samples)
                    await reports.wait_for(lambda: len(reports.samples) >= count + 5)
                    # Out of range: the link drops and stays down, so nothing more
                    # arrives; everything sent before has been delivered by then.
                    await sim.advertise(False)
                    await reports.wait_for(
                        lambda: reports.events.count(EventKind.DISCONNECTED) == 2
                    )
                    await reports.wait_for(
                        lambda: (
                            len(reports.samples) + reports.events.count(EventKind.CANT_CHARGE)
                            == car.stats.frames - before
                        )
                    )
                    tg.cancel_scope.cancel()
            live = car.stats

    decoder = FrameDecoder()
    with CaptureReader.open(path) as reader:
        items = list(replay(reader, decoder))
        assert reader.problem is None
    stats = decoder.stats
    assert stats.crc_errors >= 3  # the corruption is in the file, as it was on the air
    assert (stats.frames, stats.crc_errors, stats.invalid_frames, stats.bytes_discarded) == (
        live.frames,
        live.crc_errors,
        live.invalid_frames,
        live.bytes_discarded,
    )
    assert stats.seq_gaps == live.seq_gaps
    infos = [
        VehicleInfo.from_frame(item, vin=VIN, received_at=reader.header.at(offset))
        for offset, item in items
        if isinstance(item, InfoFrame)
    ]
    # The streams started after the first readings: those are the only extra ones.
    assert len(infos) - len(reports.samples) == before
    assert [without_time(i) for i in infos[before:]] == [without_time(i) for i in reports.samples]
    assert {i.data.system_state for i in infos} >= {SystemState.READY, SystemState.OFF}
    cant_charge = [i for _, i in items if isinstance(i, EventFrame)]
    assert [e.kind for e in cant_charge] == [EventKind.CANT_CHARGE]
    links = [i for _, i in items if isinstance(i, LinkChange)]
    assert [link.up for link in links] == [True, False, True, False]
    offsets = [offset for offset, _ in items]
    assert offsets == sorted(offsets)


@pytest.mark.anyio
async def test_a_silence_the_vehicle_gave_up_on_is_recorded_as_the_link_going_down(tmp_path):
    path = tmp_path / "silent.o2xcap"
    async with VirtualRadio() as radio:
        sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20))
        with CaptureWriter(path, vin=VIN) as capture:
            car = RecordingVehicle.first_time(
                VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(loose_connection=0.3)
            )
            car.capture = capture
            async with car:
                reports = Reports()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(reports.take_events, car.events())
                    tg.start_soon(reports.take_samples, car.samples())
                    await car.get()
                    # Silent for longer than two loose_connection periods: the link
                    # is given up, comes back silent and is given up again, all
                    # one outage; then data flows again.
                    await sim.go_silent(1.0)
                    await reports.wait_for(lambda: car.stats.reconnects == 1)
                    tg.cancel_scope.cancel()
                live = car.stats
    assert live.disconnections == 1
    assert reports.events == [EventKind.DISCONNECTED]
    with CaptureReader.open(path) as reader:
        links = [item for _, item in replay(reader, FrameDecoder()) if isinstance(item, LinkChange)]
    # Each disconnected event of the live vehicle has its LINK_DOWN; the silent
    # link in between carried nothing and left no record.
    assert [link.up for link in links] == [True, False, True]


class FailingCapture(CaptureWriter):
    """A capture whose disk fills up after a few notifications."""

    def notification(self, data: bytes) -> None:
        if self.records >= 4:
            raise OSError(28, "No space left on device")
        super().notification(data)


@pytest.mark.anyio
async def test_a_capture_that_cannot_be_written_never_disturbs_the_vehicle(tmp_path):
    async with VirtualRadio() as radio:
        await radio.add(SimulatedVehicle(VIN))
        with FailingCapture(tmp_path / "c.o2xcap", vin=VIN) as capture:
            car = RecordingVehicle.first_time(VIN, radio=radio, state_dir=tmp_path)
            car.capture = capture
            async with car:
                reports = Reports()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(reports.take_samples, car.samples())
                    await reports.wait_for(lambda: len(reports.samples) >= 10)
                    tg.cancel_scope.cancel()
            assert isinstance(capture.error, OSError)
            assert capture.records == 4


# --- o2x replay of damaged captures ----------------------------------------------------------


def o2x(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "metadata",
    [
        b"[" * 100_000 + b"]" * 100_000,
        {"vin": VIN, "started_at_ns": 10**30},
        {"vin": VIN, "started_at_ns": 0, "time_scale": 10**400},
    ],
    ids=["deep JSON", "start after 9999", "time scale beyond floats"],
)
def test_replay_of_a_damaged_header_exits_6_with_one_line(tmp_path, metadata):
    path = tmp_path / "c.o2xcap"
    path.write_bytes(capture_bytes(metadata, record(1, encode_info(seq=0))))
    result = o2x("replay", str(path))
    assert result.exit_code == 6, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {path}: the header's metadata is damaged (")


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--csv"]], ids=["text", "json", "csv"])
def test_replay_of_version_2_reports_a_record_dated_after_9999_after_the_readings_before_it(
    tmp_path, fmt
):
    path = tmp_path / "c.o2xcap"
    started = unix_ns(dt.datetime(9990, 1, 1, tzinfo=dt.UTC))
    records = record_v2(1, encode_info(seq=0, battery_soc=50)) + record_v2(
        2**63, encode_info(seq=1, battery_soc=49)
    )
    path.write_bytes(capture_bytes({"vin": VIN, "started_at_ns": started}, records, version=2))
    result = o2x("replay", str(path), *fmt)
    assert result.exit_code == 0, result.output
    assert "50" in result.stdout
    assert "49" not in result.stdout.replace(VIN, "")
    assert "1 records over 0.0 s: 1 readings" in result.output
    assert f"Warning: {path}: the record at byte" in result.stderr
    assert "after the year 9999" in result.stderr


def test_replay_warns_of_offsets_that_go_back_and_gives_the_latest_time(tmp_path):
    path = tmp_path / "c.o2xcap"
    records = record(2_000_000_000, encode_info(seq=0)) + record(5, encode_info(seq=1))
    path.write_bytes(capture_bytes({"vin": VIN, "started_at_ns": 0}, records))
    result = o2x("replay", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
    assert "2 records over 2.0 s" in result.stderr
    assert "the time goes back between records (1 in all" in result.stderr


def test_replay_csv_writes_every_year_with_four_digits(tmp_path):
    path = tmp_path / "c.o2xcap"
    started = unix_ns(dt.datetime(999, 5, 6, 7, 8, 9, tzinfo=dt.UTC))
    path.write_bytes(
        capture_bytes({"vin": VIN, "started_at_ns": started}, record(1, encode_info(seq=0)))
    )
    result = o2x("replay", str(path), "--csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("0999-05-06T07:08:09.000Z,")


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch):
    """Sets the process's local time zone by name."""
    if not hasattr(time, "tzset"):
        pytest.skip("the local time zone cannot be changed on this platform")

    def use(name: str) -> None:
        try:
            zoneinfo.ZoneInfo(name)
        except zoneinfo.ZoneInfoNotFoundError:
            pytest.skip(f"no time zone data for {name}")
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("zone", "started"),
    [
        ("America/New_York", dt.datetime.min.replace(tzinfo=dt.UTC)),
        ("Pacific/Kiritimati", dt.datetime.max.replace(tzinfo=dt.UTC, microsecond=0)),
    ],
)
def test_a_start_the_local_time_zone_cannot_show_is_described_in_utc(local_zone, zone, started):
    # A header a reader would refuse, made directly: the only way to reach the
    # limit of the platform's local time conversion on every platform.
    local_zone(zone)
    header = CaptureHeader(FORMAT_VERSION, VIN, unix_ns(started), {})
    line = describe_header(Path("c.o2xcap"), header, 100)
    assert f"started {started.year:04d}-{started:%m-%d %H:%M:%S} UTC," in line


@pytest.mark.skipif(sys.platform == "win32", reason="Windows reports a closed pipe otherwise")
@pytest.mark.parametrize("fmt", [[], ["--json"], ["--csv"]], ids=["text", "json", "csv"])
def test_replay_into_a_pipe_closed_early_stops_quietly(tmp_path, fmt):
    path = tmp_path / "c.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        # Far more output than a pipe buffers, so that it cannot all be written
        # before the reader has gone.
        for n in range(20_000):
            capture.write(RecordKind.NOTIFICATION, encode_info(seq=n % 256), offset_ns=n)
    with subprocess.Popen(
        [sys.executable, "-m", "o2x", "replay", str(path), *fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        watchdog = threading.Timer(60, proc.kill)
        watchdog.start()
        try:
            first = proc.stdout.readline()
            proc.stdout.close()  # as `head -1` does
            err = proc.stderr.read().decode()
            proc.wait()
        finally:
            watchdog.cancel()
            proc.kill()
    assert first
    assert proc.returncode == 128 + 13, err  # as if ended by SIGPIPE, as shells expect
    for word in ("Error", "Traceback", "Exception", "records over"):
        assert word not in err
