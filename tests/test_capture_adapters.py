"""Captures of BLE OBD adapter sessions: recorded whole, replayed through the adapters' parsers.

A link to an adapter is recorded as the adapter's raw output (answers, prompts and
monitor lines), after an ADAPTER record naming its protocol; replay reads it with
MonitorParser or SlcanParser into an AmiBus and takes readings as CAN logs give
them (docs/protocol.md, "Adapter links"). Recorded here from simulated ELM327 and
WiCAN adapters, by the library and by `o2x record`, and written by hand from an
adapter's transcript.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result

from o2x import EventKind, ParkBrake, VehicleInfo, VehicleStatus
from o2x.can.bus import READING_INTERVAL
from o2x.capture import (
    FORMAT_VERSION,
    MAGIC,
    AdapterDecoder,
    AdapterOpened,
    CaptureHeader,
    CaptureReader,
    CaptureWriter,
    LinkChange,
    RecordingVehicle,
    RecordKind,
    replay,
)
from o2x.cli import cli
from o2x.dongle.frames import InfoFrame, encode_info
from o2x.model import Gear, SystemState
from o2x.sim import SimulatedVehicle, VirtualRadio

VIN = "VR7ABCDEF12345678"
#: What each simulated adapter is, as the capture names it.
ADAPTERS = {"elm327": AdapterOpened("elm327", "fff0"), "wican": AdapterOpened("slcan", "wican")}
INTERVAL_NS = round(READING_INTERVAL * 1e9)
MS = 1_000_000  # nanoseconds


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

    async def wait_for(self, predicate, within: float = 15.0) -> None:
        with anyio.fail_after(within):
            while not predicate():
                await self._changed.wait()


def o2x(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def deduplicated(values: Iterable[object]) -> list[object]:
    """The values with each run of equal ones made one: what a field went through."""
    out: list[object] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


def is_subsequence(part: Sequence[object], whole: Sequence[object]) -> bool:
    """Whether ``part`` is ``whole`` with some items left out, the rest in order."""
    remaining = iter(whole)
    return all(any(item == other for other in remaining) for item in part)


def fields(line: dict) -> dict[str, str]:
    """A JSON reading's leaves (its time left out), each as JSON, by path."""
    out: dict[str, str] = {}

    def walk(path: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{path}.{key}", item)
        else:
            out[path] = json.dumps(value)

    result = dict(line["result"])
    result.pop("receivedAt")
    walk("result", result)
    walk("live", line.get("live"))
    return out


def assert_spaced(items: list[tuple[int, object]]) -> None:
    """Readings of a link are at least READING_INTERVAL of capture time apart, but for
    its last one, which may come sooner as the link ends."""
    links: list[list[int]] = []
    for offset, item in items:
        if isinstance(item, LinkChange | AdapterOpened):
            links.append([])
        elif isinstance(item, VehicleInfo):
            links[-1].append(offset)
    for offsets in links:
        body = offsets[:-1]
        gaps = [b - a for a, b in itertools.pairwise(body)]
        assert all(gap >= INTERVAL_NS for gap in gaps), gaps
        assert offsets == sorted(offsets)


# --- the format -------------------------------------------------------------------------


def test_the_adapter_record_is_the_documented_one(tmp_path):
    path = tmp_path / "c.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        capture.write(RecordKind.LINK_UP, b"E2:4D:C9:F0:90:CC", offset_ns=5)
        capture.adapter("elm327", "fff0")
    blob = path.read_bytes()
    assert struct.unpack_from("<H", blob, 8) == (FORMAT_VERSION,) == (3,)
    with CaptureReader.open(path) as reader:
        records = list(reader)
    assert records[1].offset_ns >= 5
    assert records[1][1:] == (RecordKind.ADAPTER, b'{"layout":"fff0","protocol":"elm327"}')
    assert RecordKind.ADAPTER == 4


EXAMPLE_METADATA = (
    b'{"recorder":"o2x 0.1.0","source":"bluetooth",'
    b'"started_at_ns":1795338930000000000,"vin":"VR1AB12C3D4567890"}'
)
#: The records of the example, as (record header, payload, CRC-32) in version 3 (the
#: ADAPTER record on two lines).
EXAMPLE_RECORDS = [
    ("fe d2 00 23 66 30 00 00 00 00 02 11 00", b"E2:4D:C9:F0:90:CC", "dc de 45 c9"),
    ("fe d2 40 62 66 30 00 00 00 00 04 25 00", b'{"layout":"fff0",', ""),
    ("", b'"protocol":"elm327"}', "be 5e 1b f3"),
    ("fe d2 00 04 5c 36 00 00 00 00 01 14 00", b"580 FB FF 4F 14 00 5", "df f3 d8 e8"),
    ("fe d2 c0 3d 5d 36 00 00 00 00 01 08 00", b"0 00 00\r", "f7 35 1f 49"),
]  # fmt: skip


@pytest.mark.parametrize("version", [3, 2])
def test_the_adapter_example_of_docs_protocol_md(tmp_path, version):
    # Byte for byte as docs/protocol.md, section 7, "Example", writes it.
    blob = bytes.fromhex(f"89 4f 32 58 43 41 50 0a 0{version} 00 6b 00 00 00") + EXAMPLE_METADATA
    if version == 3:
        blob += bytes.fromhex("e5 56 43 86")
    for head, payload, crc in EXAMPLE_RECORDS:
        if version == 3:
            blob += bytes.fromhex(head) + payload + bytes.fromhex(crc)
        else:  # version 2: neither
            blob += bytes.fromhex(head)[2:] + payload
    path = tmp_path / "example.o2xcap"
    path.write_bytes(blob)
    with CaptureReader.open(path) as reader:
        items = list(replay(reader))
        assert reader.problem is None
        assert reader.damage == []
    assert [(offset, type(item)) for offset, item in items] == [
        (812_000_000, LinkChange),
        (812_016_192, AdapterOpened),
        (912_080_320, VehicleInfo),
    ]
    assert items[1][1] == AdapterOpened("elm327", "fff0")
    info = items[2][1]
    assert isinstance(info, VehicleInfo)
    assert info.vin == "VR1AB12C3D4567890"
    assert info.received_at == dt.datetime(2026, 11, 22, 9, 15, 30, tzinfo=dt.UTC)
    assert info.status is VehicleStatus.PARKED
    assert info.data.battery_soc is not None
    assert info.data.battery_soc.value == 80
    assert info.live is not None
    assert (info.live.pack_current, info.live.pack_voltage) == (-0.5, 51.99)


# --- a transcript written by hand ---------------------------------------------------------

# An ELM327 clone (Vgate layout) that ignores ATS0 and keeps its spaces, driven by
# Elm327Session: the reset's echo and banner, ATE0 echoed (echo is still on), the
# eight set-up commands answered OK (ATL0 ATS0 ATH1 ATD0 ATSP6 ATCAF0 ATCF500
# ATCM568), then ATMA (not echoed) and the car's frames, one line each. Payloads
# from ami.dbc, all little-endian:
#
#   580 BMS_Battery      PackCurrent s16 x0.1 A, PackVoltage u16 x0.01 V, byte 5 SoC %
#       FB FF 4F 14 00 50 00 00    -5 -> -0.5 A, 0x144F = 5199 -> 51.99 V, 0x50 = 80 %
#       38 FF 1E 14 00 50 00 00    -200 -> -20.0 A, 0x141E = 5150 -> 51.50 V, 80 %
#   581 ECU_Odometer     bytes 4-6 Odometer u24 x0.1 km, byte 7 Speed km/h
#       00 00 00 00 39 30 00 00    0x3039 = 12345 -> 1234.5 km, 0 km/h
#       00 00 00 00 3A 30 00 0C    1234.6 km, 12 km/h
#       00 00 00 00 3B 30 00 0C    1234.7 km, 12 km/h
#   582 OBC_Charge       FF FF ...: RemainingChargeTime 0xFFFF, NoEstimate
#   594 BMS_Temperatures 15 00 00 16 ...: byte 0 = 21 degC, byte 3 = 22 degC
#   713 Display          bits 0-6 RemainingRange, 7-8 Gear (0 R, 1 N, 2 D), bit 18
#                        Ready, bit 29 ParkBrake
#       80 00 00 20 00 00 00       range 0, gear 1 (bit 7) N, not ready, brake applied
#       37 01 04 00 00 00 00       range 0x37 = 55 km, gear 2 (bit 8) D, ready, released
#   714 ParkBrakeStatus  01 00 applied, 00 00 released
#
# Parked at 1.0 s; at 1.5 s the car is ready, in drive and rolling; at 1.6 s the
# adapter's buffer overflows in the middle of the 0x580 line (BUFFER FULL and the
# prompt on the same line, that frame lost), and the session's ATMA gets it going
# again at 1.7 s.
SETUP = b"ATZ\r\r\rELM327 v1.5\r\r>ATE0\rOK\r\r>" + b"OK\r\r>" * 8
PARKED = (
    b"580 FB FF 4F 14 00 50 00 00\r"
    b"581 00 00 00 00 39 30 00 00\r"
    b"582 FF FF 00 00 00 00 00 00\r"
    b"594 15 00 00 16 00 00 00 00\r"
    b"713 80 00 00 20 00 00 00\r"
    b"714 01 00\r"
)
DRIVING = (
    b"580 38 FF 1E 14 00 50 00 00\r"
    b"581 00 00 00 00 3A 30 00 0C\r"
    b"713 37 01 04 00 00 00 00\r"
    b"714 00 00\r"
)
OVERFLOW = b"580 38 FF 1E 14 BUFFER FULL\r\r>"
RESTARTED = b"581 00 00 00 00 3B 30 00 0C\r"
NOTIFICATION = 20  # bytes: an ATT MTU of 23
EVENT_NS = 7_500_000  # one notification per 7.5 ms connection event


def notifications(start_ns: int, text: bytes) -> list[tuple[int, bytes]]:
    """``text`` as the adapter's bridge sends it: 20-byte notifications, 7.5 ms apart."""
    return [
        (start_ns + i * EVENT_NS, text[at : at + NOTIFICATION])
        for i, at in enumerate(range(0, len(text), NOTIFICATION))
    ]


def write_transcript(path: Path, *, protocol: str = "elm327", layout: str = "vgate") -> None:
    with CaptureWriter(path, vin=VIN, metadata={"source": "bluetooth"}) as capture:
        capture.write(RecordKind.LINK_UP, b"D4:3A:2C:11:8E:07", offset_ns=500 * MS)
        payload = json.dumps({"protocol": protocol, "layout": layout}).encode()
        capture.write(RecordKind.ADAPTER, payload, offset_ns=500 * MS)
        for start, text in (
            (510 * MS, SETUP),
            (1000 * MS, PARKED),
            (1500 * MS, DRIVING),
            (1600 * MS, OVERFLOW),
            (1700 * MS, RESTARTED),
        ):
            for offset, chunk in notifications(start, text):
                capture.write(RecordKind.NOTIFICATION, chunk, offset_ns=offset)


def test_a_monitor_transcript_replays_to_the_cars_readings(tmp_path):
    path = tmp_path / "vgate.o2xcap"
    write_transcript(path)
    with CaptureReader.open(path) as reader:
        adapters = AdapterDecoder(reader.header)
        items = list(replay(reader, adapters=adapters))
        header = reader.header
    assert items[:2] == [
        (500 * MS, LinkChange(True, "D4:3A:2C:11:8E:07")),
        (500 * MS, AdapterOpened("elm327", "vgate")),
    ]
    readings = [(offset, item) for offset, item in items if isinstance(item, VehicleInfo)]
    assert all(isinstance(item, VehicleInfo) for _, item in items[2:])  # no events
    assert_spaced(items)
    # The first frame (0x580) is complete in the second notification at 1.0075 s: the
    # link's first reading. The rest of the burst comes within the interval and is
    # taken as it ends, at 1.0575 s, once the next record (1.5 s) shows it over.
    assert [offset for offset, _ in readings[:2]] == [1_007_500_000, 1_057_500_000]
    first = readings[0][1]
    assert first.status is VehicleStatus.PARKED  # a current is known
    assert first.data.total_odometer is None
    parked = readings[1][1]
    assert parked.received_at == header.at(1_057_500_000).replace(microsecond=0)
    data = parked.data
    assert parked.status is VehicleStatus.PARKED
    assert data.system_state is SystemState.STANDBY
    assert data.battery_soc is not None
    assert data.battery_soc.value == 80
    assert data.total_odometer is not None
    assert data.total_odometer.value == 1234.5
    assert data.rnd is Gear.NEUTRAL
    assert data.park_brake_status is ParkBrake.ACTIVATED
    assert data.remaining_autonomy is None  # 0, sent while not ready
    assert parked.live is not None
    assert (parked.live.pack_current, parked.live.pack_voltage) == (-0.5, 51.99)
    assert parked.live.pack_temperatures == (21, 22)
    assert parked.live.speed == 0
    # Every reading after it is the car switched on and driving off.
    assert deduplicated(info.status for _, info in readings) == [
        VehicleStatus.PARKED,
        VehicleStatus.DRIVING,
    ]
    last = readings[-1][1]
    assert last.status is VehicleStatus.DRIVING
    assert last.data.system_state is SystemState.READY
    assert last.data.rnd is Gear.DRIVE
    assert last.data.park_brake_status is ParkBrake.RELEASED
    assert last.data.remaining_autonomy is not None
    assert last.data.remaining_autonomy.value == 55
    assert last.data.total_odometer is not None
    assert last.data.total_odometer.value == 1234.7
    assert last.live is not None
    # The 0x580 cut short by BUFFER FULL is lost: the earlier one stands.
    assert (last.live.pack_current, last.live.pack_voltage, last.live.speed) == (-20.0, 51.5, 12)
    stats = adapters.stats
    assert stats.links == 1
    assert stats.frames == stats.bus_frames == 6 + 4 + 1
    assert stats.buffer_fulls == 1
    # ATZ, the banner, ATE0 and nine OKs; then the line BUFFER FULL cut.
    assert stats.lines_ignored == 12 + 1
    assert stats.readings == len(readings)
    assert stats.notifications == sum(
        len(notifications(0, text)) for text in (SETUP, PARKED, DRIVING, OVERFLOW, RESTARTED)
    )


# The same bus through a WiCAN (slcan): C, S6 and L acknowledged by a lone CR each,
# then a line per frame: t, 3 digits of ID, the DLC, the data.
SLCAN = (
    b"\r\r\r"
    b"t5808FBFF4F1400500000\r"
    b"t58180000000039300000\r"
    b"t5828FFFF000000000000\r"
    b"t59481500001600000000\r"
    b"t713780000020000000\r"
    b"t71420100\r"
)


def test_the_same_bus_through_a_wican_reads_the_same(tmp_path):
    elm, wican = tmp_path / "elm.o2xcap", tmp_path / "wican.o2xcap"
    write_transcript(elm)
    with CaptureWriter(wican, vin=VIN) as capture:
        capture.write(RecordKind.LINK_UP, b"F0:9E:9E:12:34:56", offset_ns=500 * MS)
        capture.adapter("slcan", "wican")
        for offset, chunk in notifications(1000 * MS, SLCAN):
            capture.write(RecordKind.NOTIFICATION, chunk, offset_ns=offset)

    def last_reading(path: Path) -> VehicleInfo:
        with CaptureReader.open(path) as reader:
            infos = [
                item
                for offset, item in replay(reader)
                if isinstance(item, VehicleInfo) and offset < 1500 * MS
            ]
        return infos[-1]

    through_wican = last_reading(wican)
    assert through_wican == last_reading(elm)
    assert through_wican.data.total_odometer is not None
    assert through_wican.data.total_odometer.value == 1234.5


def test_a_protocol_this_version_cannot_read_is_skipped_not_guessed(tmp_path):
    path = tmp_path / "later.o2xcap"
    write_transcript(path, protocol="stn2120")
    with CaptureReader.open(path) as reader:
        adapters = AdapterDecoder(reader.header)
        items = list(replay(reader, adapters=adapters))
    assert [item for _, item in items] == [
        LinkChange(True, "D4:3A:2C:11:8E:07"),
        AdapterOpened("stn2120", "vgate"),
    ]
    assert not items[1][1].readable
    assert adapters.stats.skipped > 0
    assert adapters.stats.frames == 0
    result = o2x("replay", str(path))
    assert result.exit_code == 0
    assert "stn2120, which this o2x cannot read" in result.stdout
    assert f"{adapters.stats.skipped} notifications" in result.stderr


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"[1]", b'{"protocol": 6}', b"{" * 5000])
def test_a_damaged_adapter_record_skips_its_link(tmp_path, payload):
    path = tmp_path / "c.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        capture.write(RecordKind.LINK_UP, b"AA:BB", offset_ns=1)
        capture.write(RecordKind.ADAPTER, payload, offset_ns=2)
        capture.write(RecordKind.NOTIFICATION, PARKED, offset_ns=3)
    with CaptureReader.open(path) as reader:
        items = [item for _, item in replay(reader)]
    assert items == [LinkChange(True, "AA:BB"), AdapterOpened("", "")]


def test_an_o2x_link_and_an_adapter_link_are_each_read_by_their_own_decoder(tmp_path):
    path = tmp_path / "both.o2xcap"
    with CaptureWriter(path, vin=VIN) as capture:
        capture.write(RecordKind.LINK_UP, b"AA:BB", offset_ns=1 * MS)
        capture.write(RecordKind.NOTIFICATION, encode_info(seq=0, battery_soc=64), offset_ns=2 * MS)
        capture.write(RecordKind.LINK_DOWN, offset_ns=3 * MS)
        capture.write(RecordKind.LINK_UP, b"CC:DD", offset_ns=4 * MS)
        capture.adapter("elm327", "fff0")
        capture.write(RecordKind.NOTIFICATION, PARKED, offset_ns=5 * MS)
        capture.write(RecordKind.LINK_DOWN, offset_ns=6 * MS)
        # A new O2X link: no longer the adapter's, and its frame is decoded again.
        capture.write(RecordKind.LINK_UP, b"AA:BB", offset_ns=7 * MS)
        capture.write(RecordKind.NOTIFICATION, encode_info(seq=1, battery_soc=63), offset_ns=8 * MS)
    with CaptureReader.open(path) as reader:
        items = list(replay(reader))
    kinds = [type(item).__name__ for _, item in items]
    assert kinds == [
        "LinkChange",
        "InfoFrame",
        "LinkChange",
        "LinkChange",
        "AdapterOpened",
        "VehicleInfo",
        "LinkChange",
        "LinkChange",
        "InfoFrame",
    ]
    socs = [
        item.battery_soc if isinstance(item, InfoFrame) else item.data.battery_soc.value
        for _, item in items
        if isinstance(item, InfoFrame | VehicleInfo)
    ]
    assert socs == [64, 80, 63]


def test_adapter_records_without_a_header_cannot_be_dated(tmp_path):
    path = tmp_path / "c.o2xcap"
    write_transcript(path)
    with CaptureReader.open(path) as reader:
        records = list(reader)
        header = reader.header
    with pytest.raises(ValueError, match="AdapterDecoder"):
        list(replay(records))
    given = list(replay(records, adapters=AdapterDecoder(header)))
    with CaptureReader.open(path) as reader:
        assert given == list(replay(reader))


def test_o2x_replay_of_the_transcript_text_json_and_csv(tmp_path):
    path = tmp_path / "vgate.o2xcap"
    write_transcript(path)
    with CaptureReader.open(path) as reader:
        expected = [item for _, item in replay(reader) if isinstance(item, VehicleInfo)]
    text = o2x("replay", str(path))
    assert text.exit_code == 0, text.output
    assert "link up to D4:3A:2C:11:8E:07" in text.stdout
    assert "through an ELM327 adapter (vgate layout)" in text.stdout
    assert (
        f"{len(expected)} readings, 0 events, 0 link losses; adapters: 11 CAN frames read "
        "(11 of the car's messages), 13 other lines, 1 BUFFER FULL"
    ) in text.stdout
    assert "decoder:" not in text.stdout  # no O2X dongle's link

    lines = json_lines(o2x("replay", str(path), "--json").stdout)
    assert [line["result"]["status"] for line in lines] == [i.status.value for i in expected]
    assert lines[-1]["live"]["speed"] == 12
    changes = json_lines(o2x("replay", str(path), "--json", "--reception", "status").stdout)
    assert [line["result"]["status"] for line in changes] == ["parked", "driving"]

    rows = o2x("replay", str(path), "--csv").stdout.splitlines()
    assert rows[0].startswith("time,t_s,kind,seq,status,batterySoc,")
    assert len(rows) - 1 == len(expected)
    cells = rows[2].split(",")
    assert cells[1:6] == ["1.058", "information", "-1", "parked", "80"]
    assert cells[12] == "1234.5"


# --- recorded from simulated adapters --------------------------------------------------------


def statuses(infos: Iterable[VehicleInfo]) -> list[object]:
    return deduplicated(info.status for info in infos)


def held(samples: list[VehicleInfo], status: VehicleStatus, readings: int = 3) -> bool:
    """Whether the last ``readings`` live readings all have ``status``."""
    return len(samples) >= readings and all(i.status is status for i in samples[-readings:])


@pytest.mark.anyio
@pytest.mark.parametrize("dongle", ["elm327", "wican"])
async def test_a_recorded_adapter_session_replays_to_what_the_car_did(tmp_path, dongle):
    path = tmp_path / "drive.o2xcap"
    async with VirtualRadio() as radio:
        sim = await radio.add(SimulatedVehicle(VIN, time_scale=60, dongle=dongle, seed=3))
        with CaptureWriter(path, vin=VIN) as capture:
            car = RecordingVehicle.first_time(VIN, radio=radio, state_dir=tmp_path)
            car.capture = capture
            async with car:
                reports = Reports()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(reports.take_samples, car.samples(buffer=100_000))
                    tg.start_soon(reports.take_events, car.events())
                    # Each state is held for a few live readings (at least 0.1 s):
                    # one shorter than a reading's interval may be missed by either.
                    await reports.wait_for(lambda: held(reports.samples, VehicleStatus.PARKED))
                    await sim.drive()
                    await reports.wait_for(lambda: held(reports.samples, VehicleStatus.DRIVING))
                    await sim.park()
                    await reports.wait_for(lambda: held(reports.samples, VehicleStatus.PARKED))
                    await sim.set(park_brake_status=ParkBrake.RELEASED)
                    await sim.charge()  # refused: the brake is released
                    await reports.wait_for(lambda: EventKind.CANT_CHARGE in reports.events)
                    await sim.drop_link()
                    await reports.wait_for(lambda: car.stats.reconnects == 1)
                    count = len(reports.samples)
                    await reports.wait_for(lambda: len(reports.samples) >= count + 3)
                    tg.cancel_scope.cancel()
            assert car.adapter_layout is not None
            assert car.adapter_layout.name == ADAPTERS[dongle].layout
        live = car.stats  # once left: every notification recorded has been decoded
        final = sim.info

    with CaptureReader.open(path) as reader:
        adapters = AdapterDecoder(reader.header)
        items = list(replay(reader, adapters=adapters))
        assert reader.problem is None
    links = [item for _, item in items if isinstance(item, LinkChange | AdapterOpened)]
    opened = ADAPTERS[dongle]
    assert links == [
        LinkChange(True, sim.address),
        opened,
        LinkChange(False),
        LinkChange(True, sim.address),
        opened,
    ]
    infos = [item for _, item in items if isinstance(item, VehicleInfo)]
    assert_spaced(items)
    # The car's own log of what it put on its bus, the live readings and the replayed
    # ones: parked, driving, parked.
    car_did = deduplicated(r.status for r in sim.log if r.kind == "status")
    assert car_did == [VehicleStatus.PARKED, VehicleStatus.DRIVING, VehicleStatus.PARKED]
    assert statuses(reports.samples) == car_did
    assert statuses(infos) == car_did
    # The refused charge, on each link once the bus shows it, as the live vehicle said.
    events = [item for _, item in items if isinstance(item, EventKind)]
    assert events == [e for e in reports.events if e is not EventKind.DISCONNECTED]
    assert events == [EventKind.CANT_CHARGE, EventKind.CANT_CHARGE]
    # Parked at the end: the last reading is the car as it stands.
    end = infos[-1]
    assert end.data.battery_soc is not None
    assert final.battery_soc is not None
    assert end.data.battery_soc.value == final.battery_soc
    assert end.data.total_odometer is not None
    assert final.total_odometer is not None
    assert end.data.total_odometer.value == pytest.approx(final.total_odometer, abs=0.05)
    assert end.data.park_brake_status is ParkBrake.RELEASED
    # Each value a field took live, it took in the replay too, in the same order.
    for name in ("battery_soc", "total_odometer", "rnd", "park_brake_status", "system_state"):
        seen_live = deduplicated(getattr(i.data, name) for i in reports.samples)
        replayed = deduplicated(getattr(i.data, name) for i in infos)
        assert is_subsequence(seen_live, replayed), name
    # Every frame the live vehicle read is in the file. Replay may read a few more: an
    # adapter still monitoring when the second link came up sends frames the new
    # session drops while it sets the adapter up, which the parser takes.
    stats = adapters.stats
    assert stats.links == 2
    assert live.frames <= stats.bus_frames <= sim.frames_sent
    assert stats.bus_frames - live.frames <= 10


# --- o2x record through simulated adapters ---------------------------------------------------


@pytest.fixture(
    scope="module",
    params=[("elm327", "asyncio"), ("elm327", "trio"), ("wican", "asyncio"), ("wican", "trio")],
    ids="-".join,
)
def recorded(request, tmp_path_factory) -> tuple[str, Path, Result]:
    """``o2x record --simulate --dongle ...``: the capture and what the command printed."""
    dongle, backend = request.param
    directory = tmp_path_factory.mktemp(f"{dongle}-{backend}")
    path = directory / "x.o2xcap"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("O2X_STATE_DIR", str(directory / "state"))
        # At 300x the simulated car drives off within half a second of connecting.
        result = o2x(
            "record", "--simulate", "--dongle", dongle, VIN, "-o", str(path),
            "--duration", "1", "--sim-speed", "300", "--json", "--backend", backend,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    return dongle, path, result


def test_o2x_record_keeps_the_adapters_output_and_says_which_it_is(recorded):
    dongle, path, result = recorded
    with CaptureReader.open(path) as reader:
        header = reader.header
        records = list(reader)
    assert header.version == FORMAT_VERSION
    assert header.vin == VIN
    kinds = [r.kind for r in records]
    assert kinds[:2] == [RecordKind.LINK_UP, RecordKind.ADAPTER]
    assert set(kinds[2:]) == {RecordKind.NOTIFICATION}
    adapter = json.loads(records[1].data)
    assert AdapterOpened(adapter["protocol"], adapter["layout"]) == ADAPTERS[dongle]
    # The whole output: the set-up's answers are there, not only frames.
    output = b"".join(r.data for r in records[2:])
    assert (b"ELM327 v1.5" in output) if dongle == "elm327" else output.startswith(b"\r")
    # At most one ATT payload each (MTU 23), the size the emulated adapters send.
    assert max(len(r.data) for r in records[2:]) <= 20
    layout = ADAPTERS[dongle]
    name = layout.protocol.upper()
    assert f"through an {name} adapter ({layout.layout} layout)" in result.stderr


def test_o2x_replay_gives_back_the_readings_of_the_recording(recorded):
    _, path, result = recorded
    live = json_lines(result.stdout)
    assert len(live) >= 5
    replay_result = o2x("replay", str(path), "--json")
    assert replay_result.exit_code == 0, replay_result.stderr
    replayed = json_lines(replay_result.stdout)
    assert {line["api"] for line in replayed} == {"pims.vehicle.informations"}
    assert {line["result"]["vin"] for line in replayed} == {VIN}
    # What the car did: parked, then driving off (before the adapter was set up, on a
    # slow machine), the odometer counting up. The live printout starts once
    # connected, after the first readings: the replay has those too.
    statuses = deduplicated(line["result"]["status"] for line in replayed)
    assert statuses in (["parked", "driving"], ["driving"])
    assert is_subsequence(deduplicated(line["result"]["status"] for line in live), statuses)
    odometers = [
        line["result"]["data"]["totalOdometer"]["value"]
        for line in replayed
        if line["result"]["data"]["totalOdometer"] is not None
    ]
    assert odometers == sorted(odometers)
    assert odometers[-1] > odometers[0]
    # Each value a field took live it took in the replay, in the same order (the
    # replay has the readings before and after the live printout, and reads on
    # changes where the live vehicle reads whenever frames come).
    live_fields = [fields(line) for line in live]
    replayed_fields = [fields(line) for line in replayed]
    for name in live_fields[0]:
        seen_live = deduplicated(f.get(name) for f in live_fields)
        seen_replayed = deduplicated(f.get(name) for f in replayed_fields)
        assert is_subsequence(seen_live, seen_replayed), name
    # The frames the live vehicle read (one link, opened on a fresh adapter) are
    # exactly those the replay reads.
    frames_live = result.stderr.split(" CAN frames read")[0].rsplit(" ", 1)[-1]
    text = o2x("replay", str(path)).stdout
    assert f"adapters: {frames_live} CAN frames read ({frames_live} of the car's messages)" in text


def test_o2x_replay_csv_and_status_of_the_recording(recorded):
    _, path, _ = recorded
    readings = json_lines(o2x("replay", str(path), "--json").stdout)
    rows = o2x("replay", str(path), "--csv").stdout.splitlines()
    assert len(rows) - 1 == len(readings)
    for row, reading in zip(rows[1:], readings, strict=True):
        cells = row.split(",")
        assert cells[2] == "information"
        assert cells[4] == reading["result"]["status"]
        assert cells[5] == str(reading["result"]["data"]["batterySoc"]["value"])
    changes = json_lines(o2x("replay", str(path), "--json", "--reception", "status").stdout)
    assert [c["result"]["status"] for c in changes] == deduplicated(
        r["result"]["status"] for r in readings
    )
    assert changes[-1]["result"]["status"] == "driving"
    assert {c["reception"] for c in changes} == {"status"}


def test_a_capture_made_by_a_version_1_writer_has_no_adapter_links(tmp_path):
    # What o2x wrote before version 2, byte for byte: it replays as before.
    metadata = json.dumps({"vin": VIN, "started_at_ns": 1_700_000_000 * 10**9}).encode()
    frame = encode_info(seq=0, battery_soc=55)
    blob = (
        MAGIC
        + struct.pack("<HI", 1, len(metadata))
        + metadata
        + struct.pack("<QBH", 1, RecordKind.LINK_UP, 5)
        + b"AA:BB"
        + struct.pack("<QBH", 2, RecordKind.NOTIFICATION, len(frame))
        + frame
    )
    path = tmp_path / "v1.o2xcap"
    path.write_bytes(blob)
    with CaptureReader.open(path) as reader:
        assert reader.header == CaptureHeader(1, VIN, 1_700_000_000 * 10**9, json.loads(metadata))
        items = [item for _, item in replay(reader)]
    assert items[0] == LinkChange(True, "AA:BB")
    assert isinstance(items[1], InfoFrame)
    assert items[1].battery_soc == 55
