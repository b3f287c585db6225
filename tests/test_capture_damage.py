"""Damage inside a capture: a version-3 capture's records carry sync bytes and a
checksum, so that damage anywhere costs only the records it touches, is reported as
damage (CaptureDamaged, `o2x replay` exits 6), and every intact record is read.
Versions 1 and 2, which have neither, still read as before.

The records here are written from docs/protocol.md, section 7, by
tests/capture_layout.py, not by o2x's writer, except where the writer is under test.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
from capture_layout import capture_bytes, record, record_v2
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x.capture import (
    AdapterDecoder,
    CaptureDamaged,
    CaptureError,
    CaptureReader,
    CaptureRecord,
    CaptureWriter,
    DamagedSpan,
    RecordKind,
    replay,
)
from o2x.cli import cli
from o2x.dongle.frames import InfoFrame, encode_info

VIN = "VR7ABCDEF12345678"
START = 1_700_000_000 * 10**9
HEADER = capture_bytes({"vin": VIN, "started_at_ns": START})


def o2x(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def layout(records: list[CaptureRecord]) -> tuple[bytes, list[tuple[int, int]]]:
    """A version-3 capture of ``records``, and where each of them lies in it."""
    blob = bytearray(HEADER)
    spans = []
    for r in records:
        encoded = record(r.offset_ns, r.data, r.kind)
        spans.append((len(blob), len(blob) + len(encoded)))
        blob += encoded
    return bytes(blob), spans


def read_all(blob: bytes) -> tuple[CaptureReader, list[CaptureRecord]]:
    reader = CaptureReader(io.BytesIO(blob))
    return reader, list(reader)


# --- by hand ----------------------------------------------------------------------------


def test_a_damaged_record_in_the_middle_costs_only_itself():
    records = [CaptureRecord(n, RecordKind.NOTIFICATION, bytes([n]) * 10) for n in range(5)]
    blob, spans = layout(records)
    damaged = bytearray(blob)
    damaged[spans[2][0] + 15] ^= 0x01  # one bit of the third record's payload
    reader, read = read_all(bytes(damaged))
    assert read == records[:2] + records[3:]
    assert reader.damage == [DamagedSpan(*spans[2])]
    assert reader.problem is None
    assert reader.records == 4
    assert reader.position == len(blob)
    with pytest.raises(CaptureDamaged) as caught:
        reader.check()
    error = caught.value
    assert isinstance(error, CaptureError)
    assert error.spans == (DamagedSpan(*spans[2]),)
    assert error.records == 4
    assert str(error) == (
        f"capture is damaged: 27 bytes at byte {spans[2][0]} hold no intact record and were "
        "skipped; the 4 intact records around them were read. The file changed after it was "
        "recorded (a disk or copying error): a copy made before may still be whole"
    )


@pytest.mark.parametrize(
    "where",
    ["sync", "offset", "kind", "length up", "length down", "crc"],
)
def test_damage_to_any_field_of_a_record_costs_that_record(where):
    records = [CaptureRecord(n, RecordKind.NOTIFICATION, b"xyz" * n) for n in range(1, 5)]
    blob, spans = layout(records)
    damaged = bytearray(blob)
    start, end = spans[1]
    if where == "sync":
        damaged[start] = 0x00
    elif where == "offset":
        damaged[start + 2] ^= 0x80
    elif where == "kind":
        damaged[start + 10] = 0x00  # a kind 0, which no writer writes
    elif where == "length up":
        damaged[start + 12] = 0xFF  # 65 280 bytes more: past the end of the file
    elif where == "length down":
        damaged[start + 11] -= 1
    else:
        damaged[end - 1] ^= 0xFF
    reader, read = read_all(bytes(damaged))
    assert read == [records[0], *records[2:]]
    assert reader.damage == [DamagedSpan(start, end)]


def test_damage_in_several_places_is_listed_place_by_place():
    records = [CaptureRecord(n, RecordKind.NOTIFICATION, b"-" * 20) for n in range(8)]
    blob, spans = layout(records)
    damaged = bytearray(blob)
    for n in (1, 2, 5):
        damaged[spans[n][0] + 20] ^= 0x55
    reader, read = read_all(bytes(damaged))
    assert read == [records[n] for n in (0, 3, 4, 6, 7)]
    assert reader.damage == [
        DamagedSpan(spans[1][0], spans[2][1]),  # two records side by side: one span
        DamagedSpan(*spans[5]),
    ]
    assert f"{3 * 37} bytes in 2 places, the first at byte {spans[1][0]} " in str(reader.damaged)


def test_garbage_between_records_is_damage_and_no_record_is_lost():
    records = [CaptureRecord(n, RecordKind.NOTIFICATION, b"abc") for n in range(3)]
    blob, spans = layout(records)
    # Garbage that starts like a record (sync bytes, a length running into the next).
    garbage = b"\xfe\xd2" + bytes(9) + b"\x40\x00" + b"noise"
    cut = spans[1][1]
    reader, read = read_all(blob[:cut] + garbage + blob[cut:])
    assert read == records
    assert reader.damage == [DamagedSpan(cut, cut + len(garbage))]


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        (record(9, b"last")[:-1], "the last record is cut short (20 bytes of 21 at byte"),
        (record(9, b"last")[:7], "the last record is cut short (7 bytes at byte"),
        (b"\xfe", "the last record is cut short (1 bytes at byte"),
        (bytes(100), "zeros from byte"),
    ],
    ids=["payload cut", "header cut", "sync cut", "zeros"],
)
def test_an_end_an_interrupted_recording_leaves_is_no_damage(tail, problem):
    records = [CaptureRecord(n, RecordKind.NOTIFICATION, b"abc") for n in range(3)]
    blob, _ = layout(records)
    reader, read = read_all(blob + tail)
    assert read == records
    assert reader.damage == []
    assert reader.problem is not None
    assert problem in reader.problem
    reader.check()  # no error: the records are all there


def test_garbage_at_the_end_is_damage():
    records = [CaptureRecord(n, RecordKind.NOTIFICATION, b"abc") for n in range(3)]
    blob, _ = layout(records)
    reader, read = read_all(blob + b"not a record")
    assert read == records
    assert reader.damage == [DamagedSpan(len(blob), len(blob) + 12)]
    assert reader.problem is None


def test_a_damaged_record_before_a_torn_one_is_damage():
    records = [CaptureRecord(n, RecordKind.NOTIFICATION, b"abcdef") for n in range(3)]
    blob, spans = layout(records)
    damaged = bytearray(blob[:-3])  # the last record cut short, as a crash leaves it
    damaged[spans[1][0] + 14] ^= 0xFF
    reader, read = read_all(bytes(damaged))
    assert read == records[:1]
    assert reader.damage == [DamagedSpan(spans[1][0], len(damaged))]


def test_a_version_2_capture_still_stops_at_the_first_damage():
    # No checksums: whatever follows damage cannot be trusted, so reading stops there
    # and says so, as it always did.
    body = record_v2(1, b"a") + record_v2(2, b"b") + record_v2(3, b"c")
    blob = bytearray(capture_bytes({"vin": VIN, "started_at_ns": START}, body, version=2))
    blob[-len(record_v2(3, b"c")) - 3] = 0xFF  # the second record's length: 255 more
    reader, read = read_all(bytes(blob))
    assert [r.data for r in read] == [b"a"]
    assert reader.damage == []
    assert reader.problem is not None
    assert "cut short" in reader.problem
    reader.check()


# --- anywhere: properties ---------------------------------------------------------------

kinds = st.sampled_from([*RecordKind, 42])
record_lists = st.lists(
    st.tuples(st.integers(0, 10**9), kinds, st.binary(max_size=48)), min_size=1, max_size=10
).map(
    lambda items: [
        CaptureRecord(sum(step for step, _, _ in items[: n + 1]), kind, data)
        for n, (_, kind, data) in enumerate(items)
    ]
)


def overlapping(spans: list[tuple[int, int]], start: int, end: int) -> list[int]:
    return [n for n, (a, b) in enumerate(spans) if a < end and start < b]


@settings(max_examples=400, deadline=None)
@given(records=record_lists, data=st.data())
def test_damage_anywhere_loses_only_the_damaged_records(records, data):
    blob, spans = layout(records)
    start = data.draw(st.integers(len(HEADER), len(blob) - 1), label="start")
    size = data.draw(st.integers(1, min(64, len(blob) - start)), label="size")
    masks = data.draw(st.lists(st.integers(1, 255), min_size=size, max_size=size))
    damaged = bytearray(blob)
    for n, mask in enumerate(masks):
        damaged[start + n] ^= mask  # every byte of the range changed
    reader, read = read_all(bytes(damaged))
    lost = overlapping(spans, start, start + size)
    assert read == [r for n, r in enumerate(records) if n not in lost]
    span = DamagedSpan(spans[lost[0]][0], spans[lost[-1]][1])
    if lost[-1] < len(records) - 1:
        # Intact records follow: this is damage, and exactly the lost records' bytes.
        assert reader.damage == [span]
        assert reader.problem is None
    else:
        # Damage to the last record may look like a recording cut short (a length
        # damaged upwards, or bytes turned to zeros): one or the other is reported.
        assert reader.damage in ([], [DamagedSpan(span.start, len(blob))])
        assert bool(reader.damage) != (reader.problem is not None)
    list(replay(read, adapters=AdapterDecoder(reader.header)))  # they take anything


@settings(max_examples=300, deadline=None)
@given(records=record_lists, data=st.data())
def test_bytes_lost_anywhere_lose_only_the_records_they_were_in(records, data):
    blob, spans = layout(records)
    start = data.draw(st.integers(len(HEADER), len(blob) - 1), label="start")
    size = data.draw(st.integers(1, len(blob) - start), label="size")
    changed = blob[:start] + blob[start + size :]
    _, read = read_all(changed)

    def lost(a: int, b: int) -> bool:
        # The bytes lost cost the records they were in, unless those that moved up
        # happen to be the ones lost: a record is then intact, where it was (or
        # moved up).
        whole = blob[a:b]
        return (
            a < start + size
            and start < b
            and whole not in (changed[a:b], changed[max(0, a - size) : b - size])
        )

    assert read == [r for r, (a, b) in zip(records, spans, strict=True) if not lost(a, b)]


@settings(max_examples=300, deadline=None)
@given(records=record_lists, data=st.data())
def test_bytes_inserted_anywhere_lose_only_the_record_they_were_put_in(records, data):
    blob, spans = layout(records)
    at = data.draw(st.integers(len(HEADER), len(blob)), label="at")
    garbage = data.draw(
        st.one_of(st.binary(min_size=1, max_size=80), st.just(b"\xfe\xd2" + bytes(30))),
        label="garbage",
    )
    changed = blob[:at] + garbage + blob[at:]
    reader, read = read_all(changed)

    def lost(a: int, b: int) -> bool:
        # Put inside a record, the garbage costs it, unless it happens to start with
        # the bytes it pushed on (or end with those before it): the record is then
        # intact, just before (or after) it.
        whole = blob[a:b]
        return a < at < b and whole not in (
            changed[a:b],
            changed[a + len(garbage) : b + len(garbage)],
        )

    assert read == [r for r, (a, b) in zip(records, spans, strict=True) if not lost(a, b)]
    if any(a >= at for a, _ in spans):
        assert reader.damage  # an intact record follows the garbage


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_damage_to_the_header_is_a_capture_error_and_nothing_else(data):
    blob = HEADER + record(1, encode_info(seq=0))
    at = data.draw(st.integers(0, len(HEADER) - 1))
    damaged = bytearray(blob)
    damaged[at] ^= data.draw(st.integers(1, 255))
    try:
        reader = CaptureReader(io.BytesIO(bytes(damaged)))
    except CaptureError:
        return
    # A damaged version field may name the older layouts, which have no checksums:
    # what they read is garbage, but reading it raises nothing.
    list(replay(reader))


@settings(max_examples=50, deadline=None)
@given(records=record_lists)
def test_the_writer_writes_the_documented_records(records):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.o2xcap"
        with CaptureWriter(path, vin=VIN) as capture:
            for r in records:
                capture.write(r.kind, r.data, offset_ns=r.offset_ns)
            size = capture.size
        blob = path.read_bytes()
    assert len(blob) == size
    body = b"".join(record(r.offset_ns, r.data, r.kind) for r in records)
    assert blob.endswith(body)
    with CaptureReader(io.BytesIO(blob)) as reader:
        assert list(reader) == records
        assert reader.position == len(blob)


# --- o2x replay ---------------------------------------------------------------------------


def write_drive(path: Path, count: int = 400) -> list[bytes]:
    """A capture of one link and ``count`` readings; the frames, in order."""
    frames = [encode_info(seq=n % 256, battery_soc=100 - n % 100) for n in range(count)]
    with CaptureWriter(path, vin=VIN) as capture:
        capture.write(RecordKind.LINK_UP, b"AA:BB", offset_ns=1)
        for n, frame in enumerate(frames):
            capture.write(RecordKind.NOTIFICATION, frame, offset_ns=10_000_000 * (n + 1))
    return frames


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_o2x_replay_of_a_capture_damaged_in_the_middle_shows_every_intact_record(tmp_path):
    path = tmp_path / "drive.o2xcap"
    frames = write_drive(path)
    whole = o2x("replay", str(path), "--json", "--reception", "information")
    assert whole.exit_code == 0, whole.output
    readings = json_lines(whole.stdout)
    assert len(readings) == len(frames)

    blob = bytearray(path.read_bytes())
    middle = len(blob) // 2
    for n in range(middle, middle + 40):  # 40 bytes flipped in the middle
        blob[n] ^= 0xFF
    path.write_bytes(blob)
    with CaptureReader.open(path) as reader:
        read = list(reader)
        spans = reader.damage
    lost = len(frames) + 1 - len(read)
    assert lost in (2, 3)  # records are 38 bytes: 40 bytes touch two or three of them
    [span] = spans

    for fmt in ("--json", "--csv", "--text"):
        result = o2x("replay", str(path), *([] if fmt == "--text" else [fmt]))
        assert result.exit_code == 6, result.output
        error = result.stderr.strip().splitlines()[-1]
        assert error.startswith(f"Error: {path} is damaged: {span.size} bytes at byte ")
        assert f"the {len(read)} intact records around them were read" in error
        assert "cut short" not in result.stderr
    damaged = o2x("replay", str(path), "--json", "--reception", "information")
    assert damaged.exit_code == 6
    shown = json_lines(damaged.stdout)
    # Every reading but the damaged ones, in order: the same as before the damage.
    kept = [
        readings[n]
        for n, frame in enumerate(frames)
        if any(r.data == frame and r.offset_ns == 10_000_000 * (n + 1) for r in read)
    ]
    assert len(shown) == len(frames) - lost == len(kept)
    assert shown == kept
    assert f"{len(read)} records over 4.0 s: {len(shown)} readings" in damaged.stderr


def test_o2x_replay_lists_each_damaged_span(tmp_path):
    path = tmp_path / "drive.o2xcap"
    write_drive(path, 50)
    blob = bytearray(path.read_bytes())
    for at in (1000, 1500, 1900):
        blob[at] ^= 0x10
    path.write_bytes(blob)
    result = o2x("replay", str(path))
    assert result.exit_code == 6
    warnings = [line for line in result.stderr.splitlines() if "hold no intact record;" in line]
    assert len(warnings) == 3
    assert "3 places, the first at byte" in result.stderr


def test_o2x_replay_plots_a_damaged_capture_before_failing(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "drive.o2xcap"
    write_drive(path, 50)
    blob = bytearray(path.read_bytes())
    blob[1000] ^= 0x10
    path.write_bytes(blob)
    plot = tmp_path / "drive.png"
    result = o2x("replay", str(path), "--plot", str(plot))
    assert result.exit_code == 6
    assert plot.stat().st_size > 0


def test_o2x_replay_of_an_interrupted_recording_exits_0(tmp_path):
    path = tmp_path / "drive.o2xcap"
    frames = write_drive(path, 20)
    path.write_bytes(path.read_bytes()[:-5])
    result = o2x("replay", str(path), "--json", "--reception", "information")
    assert result.exit_code == 0, result.output
    assert len(json_lines(result.stdout)) == len(frames) - 1
    assert "the last record is cut short" in result.stderr
    assert "the recording was probably interrupted" in result.stderr


def test_every_reading_of_a_damaged_capture_decodes(tmp_path):
    # Through replay() too: the frames either side of the damage are all there.
    path = tmp_path / "drive.o2xcap"
    frames = write_drive(path, 100)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 3] ^= 0x01
    path.write_bytes(blob)
    with CaptureReader.open(path) as reader:
        infos = [item for _, item in replay(reader) if isinstance(item, InfoFrame)]
        assert len(reader.damage) == 1
    assert len(infos) == len(frames) - 1
