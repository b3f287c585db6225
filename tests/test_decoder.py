"""FrameDecoder: frames out of a byte stream cut anywhere, with noise and corruption.

The expected frames are always decoded one by one with decode_frame (tested in
test_frames.py), and the stream is built from them with known noise in between,
so the expected counters can be computed from the stream's construction.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from o2x.dongle.frames import (
    MAX_FRAME_SIZE,
    DecoderStats,
    EventFrame,
    Frame,
    FrameDecoder,
    InfoFrame,
    crc16,
    decode_frame,
    encode,
    encode_event,
    encode_frame,
    encode_identity,
    encode_info,
)
from o2x.errors import BadCRC, UnknownFrameType, ValueOutOfRange
from o2x.model import EventKind, Gear, SystemState

VIN = "VR1AB12C3D4567890"


def info(seq: int, **fields: object) -> bytes:
    return encode_info(seq=seq, battery_soc=50, total_odometer=100.0, **fields)  # type: ignore[arg-type]


def wire_size(frame: Frame) -> int:
    return len(frame.raw) if isinstance(frame, InfoFrame) else len(encode(frame))


def feed_all(decoder: FrameDecoder, chunks: Iterable[bytes]) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        frames += decoder.feed(chunk)
        assert decoder.buffered < MAX_FRAME_SIZE
    return frames


def cut_at(stream: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(points)]


# --- strategies -------------------------------------------------------------------

vins = st.text(alphabet="0123456789ABCDEFGHJKLMNPRSTUVWXYZ", min_size=17, max_size=17)
frame_bytes = st.one_of(
    st.builds(
        encode_info,
        seq=st.integers(0, 255),
        current_alert=st.integers(0, 255),
        battery_soc=st.none() | st.integers(0, 100),
        system_state=st.integers(0, 255),
        rnd=st.integers(0, 255),
        remaining_autonomy=st.none() | st.integers(0, 0xFFFE),
        total_odometer=st.none() | st.integers(0, 10**9).map(lambda t: t / 10),
        extra=st.binary(max_size=8),
    ),
    st.builds(encode_event, st.integers(0, 255), seq=st.integers(0, 255)),
    st.builds(encode_identity, vins, seq=st.integers(0, 255)),
)
# Noise the way it comes: random bytes, lone SOF bytes, headers of frames that never
# follow (they make the decoder wait), and the ends and beginnings of real frames
# (a connection joining or leaving mid-frame).
noise = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\xa5", b"\xa5\x01", b"\xa5\x01\x01", b"\xa5\x01\x01\x07\x10"]),
    st.builds(lambda n: bytes((0xA5, 1, 2, 0, n)), st.integers(0, 255)),
    st.builds(lambda f, n: f[: n % len(f)], frame_bytes, st.integers(1, 300)),
    st.builds(lambda f, n: f[1 + n % (len(f) - 1) :], frame_bytes, st.integers(0, 300)),
)


@st.composite
def stream_with_noise(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    frames = draw(st.lists(frame_bytes, max_size=8))
    parts = [draw(noise)]
    for frame in frames:
        parts += [frame, draw(noise)]
    return frames, b"".join(parts)


@st.composite
def chunked(draw: st.DrawFn, stream: bytes) -> list[bytes]:
    if not stream:
        return []
    cuts = draw(st.lists(st.integers(1, len(stream)), max_size=len(stream)))
    return cut_at(stream, cuts)


# --- fragmentation ------------------------------------------------------------------


@given(st.lists(frame_bytes, max_size=10), st.data())
def test_any_fragmentation_yields_the_same_frames(frames: list[bytes], data: st.DataObject) -> None:
    expected = [decode_frame(f) for f in frames]
    stream = b"".join(frames)
    decoder = FrameDecoder()
    assert feed_all(decoder, data.draw(chunked(stream))) == expected
    assert decoder.buffered == 0
    assert decoder.flush() == []
    assert decoder.stats == DecoderStats(len(frames), 0, 0, 0, decoder.stats.seq_gaps)


@given(st.lists(frame_bytes, min_size=1, max_size=6))
def test_one_byte_at_a_time_and_all_at_once(frames: list[bytes]) -> None:
    expected = [decode_frame(f) for f in frames]
    stream = b"".join(frames)
    byte_by_byte = FrameDecoder()
    assert feed_all(byte_by_byte, (stream[i : i + 1] for i in range(len(stream)))) == expected
    at_once = FrameDecoder()
    assert at_once.feed(stream) == expected
    assert byte_by_byte.stats == at_once.stats


def test_several_frames_in_one_chunk_and_one_frame_in_several() -> None:
    frames = [info(1), encode_event(1, seq=2), info(3), encode_identity(VIN, seq=4)]
    stream = b"".join(frames)
    decoder = FrameDecoder()
    assert decoder.feed(stream[:30]) == [decode_frame(frames[0])]
    assert decoder.buffered == 7
    assert decoder.feed(stream[30:31]) == [decode_frame(frames[1])]
    assert decoder.feed(stream[31:40]) == []
    assert decoder.feed(stream[40:]) == [decode_frame(frames[2]), decode_frame(frames[3])]
    assert decoder.stats.frames == 4


def test_chunk_types() -> None:
    frame = info(1)
    for wrap in (bytes, bytearray, memoryview):
        decoder = FrameDecoder()
        assert decoder.feed(wrap(frame[:9])) == []
        assert decoder.feed(wrap(frame[9:])) == [decode_frame(frame)]


def test_the_decoder_copies_what_it_keeps() -> None:
    frame = info(1, rnd=Gear.DRIVE)
    chunk = bytearray(frame[:12])
    decoder = FrameDecoder()
    decoder.feed(chunk)
    chunk[:] = bytes(12)  # the caller reuses its buffer
    (decoded,) = decoder.feed(frame[12:])
    assert decoded == decode_frame(frame)


# --- noise and corruption ---------------------------------------------------------------


@given(stream_with_noise(), st.data())
def test_noise_between_frames_loses_no_intact_frame(
    case: tuple[list[bytes], bytes], data: st.DataObject
) -> None:
    frames, stream = case
    decoder = FrameDecoder()
    found = feed_all(decoder, data.draw(chunked(stream)))
    found += decoder.flush()
    assert decoder.buffered == 0
    # Every intact frame comes out, in order. (The noise might hold a valid frame
    # of its own, a cut of a real one; then it comes out too, as a real frame.)
    expected = [decode_frame(f) for f in frames]
    remaining = iter(found)
    assert all(any(got == want for got in remaining) for want in expected), (found, expected)
    # Bytes are accounted for: in a frame returned, or discarded.
    stats = decoder.stats
    assert stats.frames == len(found)
    assert sum(map(wire_size, found)) + stats.bytes_discarded == len(stream)


def test_why_flush_exists() -> None:
    # Noise that looks like the header of a long frame makes the decoder wait for
    # that frame; the real frames behind it are only found once it gives up on it.
    # During a connection more bytes always arrive and settle it; at the end of
    # a stream, flush() settles it.
    frames = [info(1), info(2)]
    stream = b"\xa5\x01\x02\x00\xf0" + b"".join(frames)
    decoder = FrameDecoder()
    assert decoder.feed(stream) == []
    assert decoder.buffered == len(stream)
    assert decoder.flush() == [decode_frame(f) for f in frames]
    assert decoder.stats == DecoderStats(2, 0, 0, 5, 0)
    assert decoder.flush() == []


def test_more_data_settles_a_false_header_without_flush() -> None:
    stream = b"\xa5\x01\x02\x00\xf0" + info(1) + info(2)
    decoder = FrameDecoder()
    assert decoder.feed(stream) == []
    rest = b"".join(info(seq) for seq in range(3, 14))  # 253 more bytes
    frames = decoder.feed(rest)
    assert [f.seq for f in frames] == list(range(1, 14))
    assert decoder.stats.crc_errors == 1


def test_crc_failure_loses_only_the_bad_frame() -> None:
    bad = bytearray(info(1))
    bad[12] ^= 0x10
    good = info(2)
    decoder = FrameDecoder()
    assert decoder.feed(bytes(bad) + good) == [decode_frame(good)]
    assert decoder.stats == DecoderStats(
        frames=1, crc_errors=1, invalid_frames=0, bytes_discarded=23, seq_gaps=0
    )
    assert isinstance(decoder.last_error, BadCRC)


@given(frame_bytes, frame_bytes, st.integers(0, 10**6), st.data())
def test_a_flipped_bit_never_passes_and_never_costs_the_next_frame(
    first: bytes, second: bytes, where: int, data: st.DataObject
) -> None:
    index = where % len(first)
    flipped = bytearray(first)
    flipped[index] ^= 1 << where % 8
    decoder = FrameDecoder()
    found = feed_all(decoder, data.draw(chunked(bytes(flipped) + second)))
    found += decoder.flush()
    assert found == [decode_frame(second)]
    assert decoder.stats.frames == 1
    assert decoder.stats.bytes_discarded == len(first)


def test_last_error_says_what_decode_frame_says_and_is_the_latest() -> None:
    bad = bytearray(info(1))
    bad[12] ^= 0x10
    with pytest.raises(BadCRC) as raised:
        decode_frame(bytes(bad))
    decoder = FrameDecoder()
    decoder.feed(bytes(bad))
    error = decoder.last_error
    assert isinstance(error, BadCRC)
    assert str(error) == str(raised.value)
    assert decoder.last_error is error  # built once, then kept
    # A later error of another kind replaces it, and a later CRC error that one.
    invalid = bytearray(info(2))
    invalid[7] = 200
    decoder.feed(encode_frame(1, bytes(invalid[5:-2]), seq=2))
    assert isinstance(decoder.last_error, ValueOutOfRange)
    decoder.feed(bytes(bad))
    assert isinstance(decoder.last_error, BadCRC)
    assert decoder.last_error is not error


def test_invalid_frames_are_skipped_whole_and_counted() -> None:
    # The CRC is right but the content is not: a state of charge of 200 %.
    invalid = bytearray(info(7))
    invalid[7] = 200
    invalid = encode_frame(1, bytes(invalid[5:-2]), seq=7)
    decoder = FrameDecoder()
    assert decoder.feed(info(6) + invalid + info(8)) == [
        decode_frame(info(6)),
        decode_frame(info(8)),
    ]
    assert decoder.stats == DecoderStats(
        frames=2, crc_errors=0, invalid_frames=1, bytes_discarded=23, seq_gaps=0
    )
    assert isinstance(decoder.last_error, ValueOutOfRange)
    assert "battery_soc is 200" in str(decoder.last_error)


def test_frames_of_an_unknown_type_or_version_are_skipped_as_noise() -> None:
    stream = encode_frame(0x09, b"\x01\x02", seq=1) + encode_frame(1, b"z", version=2) + info(2)
    decoder = FrameDecoder()
    assert decoder.feed(stream) == [decode_frame(info(2))]
    assert decoder.stats == DecoderStats(1, 0, 0, 9 + 8, 0)
    # decode_frame, given one such frame, says what it is:
    with pytest.raises(UnknownFrameType):
        decode_frame(encode_frame(0x09, b"\x01\x02", seq=1))


# --- counters -------------------------------------------------------------------------


def test_counters_are_exact() -> None:
    bad_crc = bytearray(info(3))
    bad_crc[-1] ^= 0xFF
    stream = (
        b"\x00\x13\x37"  # 3 bytes of noise
        + info(1)
        + info(2)
        + bytes(bad_crc)  # CRC error: 23 bytes discarded (no SOF inside)
        + info(5)  # gap: 2 -> 5
        + encode_event(EventKind.CANT_CHARGE, seq=6)
        + b"\xff"  # 1 byte of noise
        + info(255)  # gap: 6 -> 255
        + info(0)  # 255 -> 0 is no gap
        + info(1)
    )
    decoder = FrameDecoder()
    chunks = [stream[i : i + 5] for i in range(0, len(stream), 5)]
    frames = feed_all(decoder, chunks)
    assert [f.seq for f in frames] == [1, 2, 5, 6, 255, 0, 1]
    assert isinstance(frames[3], EventFrame)
    assert decoder.stats == DecoderStats(
        frames=7, crc_errors=1, invalid_frames=0, bytes_discarded=3 + 23 + 1, seq_gaps=2
    )
    assert isinstance(decoder.last_error, BadCRC)


def test_sequence_numbers_wrap() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"".join(info(seq % 256) for seq in range(250, 600)))
    assert decoder.stats.frames == 350
    assert decoder.stats.seq_gaps == 0


def test_every_kind_of_seq_gap_counts_once() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"".join(info(seq) for seq in (10, 12, 12, 11, 0, 1, 255, 3)))
    # 10 -> 12 skipped one, 12 -> 12 repeated, 12 -> 11 went back, 11 -> 0 and
    # 1 -> 255 jumped, 255 -> 3 skipped 0 to 2.
    assert decoder.stats.seq_gaps == 6


def test_seq_gaps_around_frames_the_general_path_decodes() -> None:
    # EVENT frames and INFO frames with a longer payload are not on the fast path.
    decoder = FrameDecoder()
    decoder.feed(
        encode_event(1, seq=255)
        + encode_info(seq=3, extra=b"\x00")
        + encode_event(1, seq=4)
        + encode_event(1, seq=255)
        + encode_event(1, seq=0)
    )
    assert decoder.stats.frames == 5
    assert decoder.stats.seq_gaps == 2  # 255 -> 3, 4 -> 255


def test_frames_that_look_like_info_but_are_not() -> None:
    # 23 bytes with a matching CRC where an INFO frame has it, but another type or
    # another length byte: the decoder must not take them for INFO frames.
    event = encode_frame(2, b"\x01" + bytes(15), seq=1)
    body = bytearray(info(2)[:-2])
    body[4] = 17  # says 24 bytes
    crc = crc16(bytes(body[1:]))
    fake = bytes(body) + bytes((crc & 0xFF, crc >> 8))
    decoder = FrameDecoder()
    frames = decoder.feed(event + fake + info(3))
    assert frames == [EventFrame(1, 1, EventKind.CANT_CHARGE), decode_frame(info(3))]
    assert decoder.stats == DecoderStats(2, 1, 0, 23, 1)


def test_reset_forgets_the_partial_frame_and_the_sequence() -> None:
    decoder = FrameDecoder()
    decoder.feed(info(40) + info(41)[:10])
    decoder.reset()
    assert decoder.buffered == 0
    assert decoder.feed(info(7)) == [decode_frame(info(7))]  # no gap after a reset
    assert decoder.stats == DecoderStats(2, 0, 0, 10, 0)


def test_flush_at_the_end_of_a_stream_cut_mid_frame() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(info(1) + info(2)[:-1]) == [decode_frame(info(1))]
    assert decoder.flush() == []
    assert decoder.buffered == 0
    assert decoder.stats.bytes_discarded == 22


# --- bounds and robustness ------------------------------------------------------------

adversarial_chunk = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=50).map(lambda b: b"\xa5\x01\x01\x00\xf0" + b),
    st.integers(0, 300).map(lambda n: b"\xa5" * n),
    st.integers(0, 60).map(lambda n: b"\xa5\x01\x03\x00\xf0" * n),
)


@given(st.lists(adversarial_chunk, max_size=20))
def test_the_buffer_stays_bounded_and_feed_never_raises(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    found = feed_all(decoder, chunks)  # checks the bound after every chunk
    found += decoder.flush()
    assert decoder.buffered == 0
    stats = decoder.stats
    assert sum(map(wire_size, found)) + stats.bytes_discarded == sum(map(len, chunks))


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_chunk_type_does_not_change_the_outcome(chunks: list[bytes]) -> None:
    outcomes = []
    for wrap in (bytes, bytearray, memoryview):
        decoder = FrameDecoder()
        frames = [f for c in chunks for f in decoder.feed(wrap(c))] + decoder.flush()
        outcomes.append((frames, decoder.stats))
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_a_megabyte_of_noise() -> None:
    noise = random.Random(1).randbytes(1 << 20)
    decoder = FrameDecoder()
    frames = decoder.feed(noise)
    assert decoder.buffered < MAX_FRAME_SIZE
    frames += decoder.feed(info(1))
    assert frames[-1:] == [decode_frame(info(1))]
    frames += decoder.flush()
    stats = decoder.stats
    assert sum(map(wire_size, frames)) + stats.bytes_discarded == len(noise) + 23


def test_a_flood_of_false_headers_in_small_chunks() -> None:
    # The worst noise: every byte starts a plausible header of a 247-byte frame.
    flood = b"\xa5\x01\x01\x00\xf0" * 20_000
    decoder = FrameDecoder()
    rng = random.Random(2)
    pos = 0
    while pos < len(flood):
        size = rng.randint(1, 40)
        assert decoder.feed(flood[pos : pos + size]) == []
        assert decoder.buffered < MAX_FRAME_SIZE
        pos += size
    assert decoder.feed(info(9) * 12)[-1] == decode_frame(info(9))


def test_feed_never_raises_for_any_bytes_one_example_per_value() -> None:
    decoder = FrameDecoder()
    for value in range(256):
        decoder.feed(bytes((value,)) * 7)
    decoder.flush()
    assert decoder.stats.frames == 0


def test_system_state_in_a_stream() -> None:
    # A decoded frame in a stream is the same record decode_frame gives, fast path
    # or not, down to unknown codes.
    frames = [
        encode_info(seq=1, system_state=SystemState.CHARGING),
        encode_info(seq=2, system_state=200, rnd=77),
        encode_info(seq=3, extra=b"\x01\x02"),
    ]
    assert FrameDecoder().feed(b"".join(frames)) == [decode_frame(f) for f in frames]
