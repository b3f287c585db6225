"""Capture files: the format, torn tails, offline decoding, and recording from a live link."""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path

import anyio
import attrs
import pytest

from o2x import EventKind, ParkBrake, Timeouts, VehicleInfo
from o2x.capture import (
    FORMAT_VERSION,
    MAGIC,
    CaptureError,
    CaptureReader,
    CaptureRecord,
    CaptureWriter,
    LinkChange,
    RecordingVehicle,
    RecordKind,
    replay,
)
from o2x.frames import EventFrame, FrameDecoder, InfoFrame, encode_event, encode_info
from o2x.model import SystemState
from o2x.sim import SimulatedVehicle, VirtualRadio

VIN = "VR7ABCDEF12345678"
RECORD_HEADER = 11  # u64 offset, u8 kind, u16 length
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


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
    # docs/protocol.md, "Capture files": magic, u16 version, u32 length, JSON, records.
    path = tmp_path / "c.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        capture.write(RecordKind.NOTIFICATION, b"\x01\x02\x03", offset_ns=0x0102030405)
    blob = path.read_bytes()
    assert blob[:8] == MAGIC == b"\x89O2XCAP\n"
    version, length = struct.unpack_from("<HI", blob, 8)
    assert version == 1
    metadata = json.loads(blob[14 : 14 + length])
    assert metadata["vin"] == VIN
    assert isinstance(metadata["started_at_ns"], int)
    record = blob[14 + length :]
    assert record == struct.pack("<QBH", 0x0102030405, 1, 3) + b"\x01\x02\x03"


def test_the_example_of_docs_protocol_md(tmp_path):
    metadata = (
        b'{"recorder":"o2x 0.1.0","source":"bluetooth",'
        b'"started_at_ns":1795338930000000000,"vin":"VR1AB12C3D4567890"}'
    )
    path = tmp_path / "example.o2xcap"
    path.write_bytes(
        bytes.fromhex("89 4f 32 58 43 41 50 0a 01 00 6b 00 00 00")
        + metadata
        + bytes.fromhex("00 23 66 30 00 00 00 00 02 11 00")
        + b"E2:4D:C9:F0:90:CC"
        + bytes.fromhex("60 06 7d 30 00 00 00 00 01 08 00 a5 01 02 2b 01 01 12 03")
    )
    with CaptureReader.open(path) as reader:
        header = reader.header
        items = list(replay(reader))
    assert header.vin == "VR1AB12C3D4567890"
    assert header.started_at == dt.datetime(2026, 11, 22, 9, 15, 30, tzinfo=dt.UTC)
    assert header.metadata["source"] == "bluetooth"
    assert items == [
        (812_000_000, LinkChange(True, "E2:4D:C9:F0:90:CC")),
        (813_500_000, EventFrame(0x2B, 1, EventKind.CANT_CHARGE)),
    ]


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
    last = RECORD_HEADER + len(written[-1].data)
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
        (MAGIC + struct.pack("<HI", 2, 2) + b"{}", "version 2 capture"),
        (MAGIC + struct.pack("<HI", 1, 40) + b"{}", "cut short"),
        (MAGIC + struct.pack("<HI", 1, 4) + b"[1]\n", "damaged"),
        (MAGIC + struct.pack("<HI", 1, 2) + b"{}", "damaged"),
    ],
)
def test_a_file_that_is_not_a_capture_is_refused(tmp_path, blob, message):
    path = tmp_path / "c.o2xcap"
    path.write_bytes(blob)
    with pytest.raises(CaptureError, match=message):
        CaptureReader.open(path)


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
