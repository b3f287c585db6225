"""Frame decoder benchmark: ratios against three baselines, measured side by side.

Run with ``nox -s bench -- frames`` or ``python benchmarks/bench_frames.py``
(``--quick`` for a short run that checks the script, not the numbers). Results and
how to read them: ``benchmarks/README.md``.

Every candidate decodes the same list of distinct INFO frames. The candidates run
interleaved (one pass each, in turn, repeated) and each keeps its fastest pass:
on a shared, noisy machine the minimum is the best estimate of the real cost, and
interleaving exposes all candidates to the same conditions. Ratios, not absolute
times, are the result; the targets are checked and printed as PASS or FAIL, and a
full run exits with status 1 if any target is missed.

The targets:

* ``decode_frame`` at least 15x faster than a compiled ``construct`` parser and
  10x faster than a naive decoder, and at most 2.3x the floor (``struct`` unpack
  plus ``binascii.crc_hqx``, a plain tuple). The floor target was 2x; it was set
  to 2.3x when it was decided that the decoder stays pure Python, with no
  compiled variant (a typed record alone costs 0.3x to 0.45x of the floor);
* ``FrameDecoder.feed`` at least 0.5x the frames per second of ``decode_frame`` on
  the same frames already split, with the stream cut into chunks of 1..40 bytes,
  and at least 0.7x with it cut into full 244-byte notifications (the ATT payload
  of the MTU of 247 a real link negotiates).
"""

from __future__ import annotations

import argparse
import enum
import functools
import gc
import os
import platform
import random
import struct
import sys
import time
from binascii import crc_hqx
from collections import deque as _consume
from collections.abc import Callable, Sequence
from typing import Any

import construct as cs
from _harness import cpu_name

from o2x.dongle.frames import (
    _BATTERY,
    _BATTERY_CODES,
    _BRAKE,
    _BRAKE_CODES,
    _GEAR,
    _GEAR_CODES,
    _SYSTEM,
    _SYSTEM_CODES,
    FrameDecoder,
    InfoFrame,
    decode_frame,
    encode_info,
)
from o2x.errors import BadCRC, FrameError
from o2x.model import _ALERTS_BY_MASK, Alerts, BatteryState, Gear, ParkBrake, SystemState

# --- the frames -------------------------------------------------------------------


def realistic_frames(count: int, seed: int = 2026) -> list[bytes]:
    """``count`` distinct INFO frames from a simulated day of driving and charging."""
    rng = random.Random(seed)
    frames = []
    soc = 90.0
    odometer = 12_345.6
    charging = False
    alerts = 0
    for i in range(count):
        if charging:
            soc += rng.uniform(0.0, 0.05)
            charging = soc < 99.0
            state, gear, speed = SystemState.CHARGING, Gear.NEUTRAL, 0.0
        else:
            soc -= rng.uniform(0.0, 0.03)
            charging = soc < 15.0
            state = SystemState.READY
            gear = rng.choices((Gear.DRIVE, Gear.NEUTRAL, Gear.REVERSE), (90, 8, 2))[0]
            speed = rng.uniform(0.0, 0.02) if gear is not Gear.NEUTRAL else 0.0
        odometer += speed
        if rng.random() < 0.01:  # now and then a lamp goes on or off
            alerts ^= 1 << rng.randrange(8)
        frames.append(
            encode_info(
                seq=i & 0xFF,
                current_alert=alerts,
                previous_alert=alerts & 0b0110_0001,
                battery_soc=round(soc) if rng.random() > 0.001 else None,
                system_state=state,
                battery_state=BatteryState.CHARGING if charging else BatteryState.DISCHARGING,
                remaining_autonomy=round(soc * 0.75),
                rnd=gear,
                charge_delay=rng.choice((None, 0, 30, 90)) if charging else None,
                park_brake_status=ParkBrake.ACTIVATED if charging else ParkBrake.RELEASED,
                total_odometer=round(odometer, 1),
            )
        )
    return frames


# --- baseline (a): a declarative construct parser -----------------------------------

_ALERT = cs.FlagsEnum(
    cs.Int8ul,
    parkingBrake=1,
    clusterIssue=2,
    stop=4,
    batteryCharge=8,
    brakeSystemProblem=16,
    service=32,
    batteryTemperature=64,
    turtleMode=128,
)
_INFO_PAYLOAD = cs.Struct(
    "current_alert" / _ALERT,
    "previous_alert" / _ALERT,
    "battery_soc" / cs.Int8ul,
    "system_state" / cs.Enum(cs.Int8ul, off=0, standby=1, ready=2, charging=3, fault=4),
    "battery_state"
    / cs.Enum(
        cs.Int8ul,
        bootloader=0,
        init=1,
        idle=2,
        discharging=3,
        charging=4,
        balancing=5,
        fault=6,
    ),
    "remaining_autonomy" / cs.Int16ul,
    "rnd" / cs.Enum(cs.Int8ul, neutral=0, drive=1, reverse=2),
    "charge_delay" / cs.Int16ul,
    "park_brake_status" / cs.Enum(cs.Int8ul, released=0, activated=1),
    "total_odometer" / cs.Int32ul,
    cs.Padding(1),
)
_INFO_BODY = cs.Struct(
    "version" / cs.Const(1, cs.Int8ul),
    "type" / cs.Const(1, cs.Int8ul),
    "seq" / cs.Int8ul,
    "length" / cs.Const(16, cs.Int8ul),
    "payload" / _INFO_PAYLOAD,
)
CONSTRUCT_INFO_FRAME = cs.Struct(
    cs.Const(b"\xa5"),
    "body" / cs.RawCopy(_INFO_BODY),
    "crc" / cs.Checksum(cs.Int16ul, lambda data: crc_hqx(data, 0xFFFF), cs.this.body.data),
    cs.Terminated,
)


# --- baseline (b): a naive decoder ------------------------------------------------


def crc16_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE one bit at a time, as a first implementation would have it."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _naive_enum(codes: Sequence[enum.Enum], code: int, unknown: Any) -> Any:
    return codes[code] if code < len(codes) else unknown


def naive_decode(data: bytes) -> InfoFrame:
    """Decode an INFO frame field by field, each with its own ``struct.unpack``."""
    if len(data) < 7:
        raise FrameError("too short")
    (sof,) = struct.unpack("<B", data[0:1])
    (version,) = struct.unpack("<B", data[1:2])
    (ftype,) = struct.unpack("<B", data[2:3])
    (seq,) = struct.unpack("<B", data[3:4])
    (length,) = struct.unpack("<B", data[4:5])
    if sof != 0xA5 or version != 1 or ftype != 1 or length < 16 or len(data) != 7 + length:
        raise FrameError("not an INFO frame")
    (crc,) = struct.unpack("<H", data[5 + length : 7 + length])
    if crc != crc16_bitwise(data[1 : 5 + length]):
        raise BadCRC("CRC mismatch")
    payload = data[5 : 5 + length]
    (cur,) = struct.unpack("<B", payload[0:1])
    (prev,) = struct.unpack("<B", payload[1:2])
    (soc,) = struct.unpack("<B", payload[2:3])
    (system,) = struct.unpack("<B", payload[3:4])
    (battery,) = struct.unpack("<B", payload[4:5])
    (autonomy,) = struct.unpack("<H", payload[5:7])
    (gear,) = struct.unpack("<B", payload[7:8])
    (delay,) = struct.unpack("<H", payload[8:10])
    (brake,) = struct.unpack("<B", payload[10:11])
    (odometer,) = struct.unpack("<I", payload[11:15])
    if 100 < soc < 255:
        raise FrameError("battery_soc out of range")
    return InfoFrame(
        (
            seq,
            Alerts.from_mask(cur),
            Alerts.from_mask(prev),
            None if soc == 255 else soc,
            _naive_enum(_SYSTEM_CODES, system, SystemState.UNKNOWN),
            _naive_enum(_BATTERY_CODES, battery, BatteryState.UNKNOWN),
            None if autonomy == 0xFFFF else autonomy,
            _naive_enum(_GEAR_CODES, gear, Gear.UNKNOWN),
            None if delay == 0xFFFF else delay,
            _naive_enum(_BRAKE_CODES, brake, ParkBrake.UNKNOWN),
            None if odometer == 0xFFFFFFFF else odometer / 10,
            bytes(data),
        )
    )


# --- baseline (c): the floor --------------------------------------------------------

_WHOLE_FRAME = struct.Struct("<BBBBB" + "BBBBBHBHBIx" + "H")
_CRC_SPAN = slice(1, 21)


def floor_decode(
    data: bytes,
    _unpack: Callable[[bytes], tuple[int, ...]] = _WHOLE_FRAME.unpack_from,
    _crc: Callable[[bytes, int], int] = crc_hqx,
    _span: slice = _CRC_SPAN,
) -> tuple[int, ...]:
    """The least any decoder must do: unpack the frame, check its CRC, return a tuple."""
    fields = _unpack(data)
    if _crc(data[_span], 0xFFFF) != fields[15]:
        raise BadCRC("CRC mismatch")
    return fields


def floor_decode_exact(
    data: bytes,
    _unpack: Callable[[bytes], tuple[int, ...]] = _WHOLE_FRAME.unpack,
    _crc: Callable[[bytes, int], int] = crc_hqx,
    _span: slice = _CRC_SPAN,
) -> tuple[int, ...]:
    """The floor with ``unpack`` (which also checks the size) instead of ``unpack_from``."""
    fields = _unpack(data)
    if _crc(data[_span], 0xFFFF) != fields[15]:
        raise BadCRC("CRC mismatch")
    return fields


# --- for reference: decode_frame's work, returning a plain tuple ---------------------

_INFO = struct.Struct("<HBBB" + "BBBBBHBHBIx" + "H").unpack


def plain_tuple_decode(data: bytes) -> tuple[object, ...]:
    """decode_frame's fast path, line for line, but building a plain tuple.

    Not a candidate (it returns no record and checks nothing on failure): it shows
    what part of decode_frame's time is the record itself.
    """
    if data.__class__ is not bytes:
        data = bytes(data)
    (sof_version, ftype, seq, length, cur, prev, soc, system, battery,
     autonomy, gear, delay, brake, odometer, crc) = _INFO(data)  # fmt: skip
    if (
        sof_version != 0x01A5
        or ftype != 1
        or length != 16
        or crc != crc_hqx(data[_CRC_SPAN], 0xFFFF)
    ):
        raise FrameError("not an intact 23-byte INFO frame")
    if soc > 100:
        if soc != 0xFF:
            raise FrameError("battery_soc out of range")
        soc = None
    return (
        seq,
        _ALERTS_BY_MASK[cur],
        _ALERTS_BY_MASK[prev],
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


# --- timing -------------------------------------------------------------------------


SEGMENT = 2_000  # frames (or chunks) timed as one piece: a few milliseconds
SLOW_SEGMENT = 50  # the same for the slow baselines
NOTIFICATION = 244  # bytes in a full notification: the ATT payload of MTU 247
# 244-byte notifications timed as one piece: about SEGMENT frames' worth, so that
# feed's segments are as long as those of decode_frame it is compared with.
NOTIFICATION_SEGMENT = SEGMENT * 23 // NOTIFICATION

# The targets, as the module docstring gives them (the floor's was 2x until it was
# decided that the decoder stays pure Python).
CONSTRUCT_TARGET = 15.0  # construct compiled takes at least this many times decode_frame
NAIVE_TARGET = 10.0  # the naive decoder takes at least this many times decode_frame
FLOOR_TARGET = 2.3  # decode_frame takes at most this many times the floor
FEED_TARGET = 0.5  # feed, 1..40-byte chunks: at least this fraction of decode's frames/s
NOTIFICATION_FEED_TARGET = 0.7  # the same with 244-byte notifications


def _segments(items: list[bytes], size: int = SEGMENT) -> list[list[bytes]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _time_decode(
    decode: Callable[[bytes], object], frames: list[bytes], size: int = SEGMENT
) -> list[int]:
    """One pass over ``frames``: the time of each segment, in nanoseconds."""
    times = []
    for segment in _segments(frames, size):
        # Each result is dropped as soon as it is made, as a streaming consumer
        # drops it: keeping 100,000 records alive would time the garbage collector.
        start = time.perf_counter_ns()
        _consume(map(decode, segment), maxlen=0)
        times.append(time.perf_counter_ns() - start)
    return times


def _time_feed(chunks: list[bytes], expected: int, size: int = SEGMENT) -> list[int]:
    """One pass of a new FrameDecoder over ``chunks``: the time of each segment.

    ``size`` chunks make a segment. The decoder must find ``expected`` frames.
    """
    decoder = FrameDecoder()
    feed = decoder.feed
    times = []
    for segment in _segments(chunks, size):
        start = time.perf_counter_ns()
        for chunk in segment:
            feed(chunk)
        times.append(time.perf_counter_ns() - start)
    if decoder.stats.frames != expected:
        raise AssertionError(f"feed found {decoder.stats.frames} frames, not {expected}")
    return times


def interleaved(
    candidates: dict[str, tuple[Callable[[], list[int]], int]], repeats: int
) -> dict[str, float]:
    """Nanoseconds per frame of each candidate: ``{name: (one_pass, frames)}``.

    The candidates take turns, ``repeats`` passes each. A pass is timed in segments
    of a few milliseconds, and each segment keeps its fastest time over the passes:
    on a shared machine a short segment is far likelier than a whole pass to run
    undisturbed at least once. The sum of those minimums, over the frames, is the
    result; every frame is counted once.
    """
    best: dict[str, list[int]] = {}
    for _ in range(repeats):
        for name, (one_pass, _) in candidates.items():
            times = one_pass()
            best[name] = [min(a, b) for a, b in zip(best.get(name, times), times, strict=True)]
    return {name: sum(best[name]) / frames for name, (_, frames) in candidates.items()}


def notifications(stream: bytes, size: int = NOTIFICATION) -> list[bytes]:
    """``stream`` cut into full notifications of ``size`` bytes (the last one shorter)."""
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def cut(stream: bytes, rng: random.Random, smallest: int, largest: int) -> list[bytes]:
    """``stream`` cut into chunks of random sizes, as BLE notifications would carry it."""
    chunks = []
    pos = 0
    while pos < len(stream):
        size = rng.randint(smallest, largest)
        chunks.append(stream[pos : pos + size])
        pos += size
    return chunks


def hostile_notifications(count: int, seed: int = 11) -> dict[str, list[bytes]]:
    """Full 244-byte notifications (MTU 247) of three kinds, ``count`` of each.

    ``worst`` is the decoder's worst case: a header declaring a 240-byte payload
    every 5 bytes, each of which must be waited for and then ruled out.
    """
    rng = random.Random(seed)
    valid = b"".join(realistic_frames(count * 244 // 23 + 1, seed))
    worst = (b"\xa5\x01\x01\x00\xf0" * 49)[:244]
    return {
        "valid": [valid[i * 244 : (i + 1) * 244] for i in range(count)],
        "random": [rng.randbytes(244) for _ in range(count)],
        "worst": [worst] * count,
    }


def _time_feed_notifications(chunks: list[bytes]) -> list[int]:
    """One pass of a new FrameDecoder over ``chunks``: the time of each segment."""
    decoder = FrameDecoder()
    feed = decoder.feed
    times = []
    for segment in _segments(chunks, 200):
        start = time.perf_counter_ns()
        for chunk in segment:
            feed(chunk)
        times.append(time.perf_counter_ns() - start)
    return times


def _check_baselines(frames: list[bytes]) -> None:
    """The baselines must decode what decode_frame decodes, and detect a bad CRC."""
    parser = CONSTRUCT_INFO_FRAME.compile()
    for frame in frames[:200]:
        expected = decode_frame(frame)
        assert naive_decode(frame) == expected
        floor = floor_decode(frame)
        assert floor == floor_decode_exact(frame)
        assert floor[3] == expected.seq
        assert floor[15] == struct.unpack("<H", frame[-2:])[0]
        assert plain_tuple_decode(frame) == tuple(expected)
        parsed = parser.parse(frame)
        assert parsed.body.value.seq == expected.seq
        assert parsed.body.value.payload.total_odometer / 10 == expected.total_odometer
    broken = bytearray(frames[0])
    broken[10] ^= 0x01
    for decode in (decode_frame, naive_decode, floor_decode, floor_decode_exact, parser.parse):
        try:
            decode(bytes(broken))
        except (FrameError, cs.ChecksumError):
            continue
        raise AssertionError(f"{decode} accepted a frame with a bad CRC")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (checks the script)")
    quick: bool = parser.parse_args(argv).quick

    n_decode = 2_000 if quick else 20_000
    n_slow = 200 if quick else 2_000  # the slow baselines take a tenth of the frames
    n_stream = 10_000 if quick else 100_000
    repeats = 3 if quick else 20
    slow_repeats = 2 if quick else 5
    stream_repeats = 2 if quick else 10

    frames = realistic_frames(max(n_decode, n_stream))
    assert len(set(frames)) == len(frames), "frames must be distinct"
    decode_set = frames[:n_decode]
    slow_set = frames[:n_slow]
    stream_frames = frames[:n_stream]
    stream_bytes = b"".join(stream_frames)
    chunks = cut(stream_bytes, random.Random(7), 1, 40)
    full_chunks = notifications(stream_bytes)
    _check_baselines(frames)
    construct_compiled = CONSTRUCT_INFO_FRAME.compile().parse
    construct_interpreted = CONSTRUCT_INFO_FRAME.parse

    print(
        f"o2x frame decoder benchmark: Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.machine()}, "
        f"{cpu_name()}, {os.cpu_count()} CPUs"
    )
    print(
        f"{n_decode:,} distinct INFO frames (slow baselines: the first {n_slow:,}); "
        f"stream: {n_stream:,} frames in {len(chunks):,} chunks of 1..40 bytes, "
        f"and in {len(full_chunks):,} notifications of {NOTIFICATION} bytes"
    )
    print(
        f"interleaved passes: {repeats} (slow baselines {slow_repeats}, stream "
        f"{stream_repeats}), each timed in segments of {SEGMENT:,} frames or chunks "
        f"({SLOW_SEGMENT} for the slow baselines, {NOTIFICATION_SEGMENT} for the "
        f"{NOTIFICATION}-byte notifications), fastest of each segment kept"
    )
    print()

    fast = interleaved(
        {
            "decode_frame": (lambda: _time_decode(decode_frame, decode_set), n_decode),
            "floor_from": (lambda: _time_decode(floor_decode, decode_set), n_decode),
            "floor_exact": (lambda: _time_decode(floor_decode_exact, decode_set), n_decode),
            "plain_tuple": (lambda: _time_decode(plain_tuple_decode, decode_set), n_decode),
        },
        repeats,
    )
    # The floor is the faster of its two spellings: the stricter baseline.
    floor = min(fast["floor_from"], fast["floor_exact"])
    slow = interleaved(
        {
            name: (functools.partial(_time_decode, decode, slow_set, SLOW_SEGMENT), n_slow)
            for name, decode in (
                ("decode_frame", decode_frame),
                ("construct", construct_compiled),
                ("construct_interpreted", construct_interpreted),
                ("naive", naive_decode),
            )
        },
        slow_repeats,
    )
    # Both ways of cutting the stream are compared with decode_frame on the same
    # frames, split, in the same interleaved passes.
    stream = interleaved(
        {
            "split": (lambda: _time_decode(decode_frame, stream_frames), n_stream),
            "feed": (lambda: _time_feed(chunks, n_stream), n_stream),
            "feed_244": (
                lambda: _time_feed(full_chunks, n_stream, NOTIFICATION_SEGMENT),
                n_stream,
            ),
        },
        stream_repeats,
    )

    n_hostile = 400 if quick else 2_000
    hostile = interleaved(
        {
            kind: (functools.partial(_time_feed_notifications, notifications), n_hostile)
            for kind, notifications in hostile_notifications(n_hostile).items()
        },
        stream_repeats,
    )

    ours = fast["decode_frame"]
    vs_construct = slow["construct"] / slow["decode_frame"]
    vs_interpreted = slow["construct_interpreted"] / slow["decode_frame"]
    vs_naive = slow["naive"] / slow["decode_frame"]
    vs_floor = ours / floor
    plain_vs_floor = fast["plain_tuple"] / floor
    feed_vs_split = stream["split"] / stream["feed"]  # a ratio of frames per second
    feed_244_vs_split = stream["split"] / stream["feed_244"]  # the same
    rows: list[tuple[str, float, str, str, bool | None]] = [
        ("decode_frame (INFO, 23 bytes)", ours, "", "", None),
        ("(a) construct, compiled", slow["construct"], f"{vs_construct:.1f}x slower",
         f">= {CONSTRUCT_TARGET:g}x", vs_construct >= CONSTRUCT_TARGET),
        ("    construct, not compiled", slow["construct_interpreted"],
         f"{vs_interpreted:.1f}x slower", "", None),
        ("(b) naive: struct per field, bitwise CRC", slow["naive"], f"{vs_naive:.1f}x slower",
         f">= {NAIVE_TARGET:g}x", vs_naive >= NAIVE_TARGET),
        ("(c) floor: unpack + crc_hqx, a tuple", floor, f"decode_frame takes {vs_floor:.2f}x",
         f"<= {FLOOR_TARGET:g}x", vs_floor <= FLOOR_TARGET),
        ("    decode_frame's work, plain tuple", fast["plain_tuple"],
         f"{plain_vs_floor:.2f}x the floor", "", None),
        ("FrameDecoder.feed, 1..40-byte chunks", stream["feed"],
         f"{feed_vs_split:.2f}x the frames/s", f">= {FEED_TARGET:g}x",
         feed_vs_split >= FEED_TARGET),
        (f"FrameDecoder.feed, {NOTIFICATION}-byte notifications", stream["feed_244"],
         f"{feed_244_vs_split:.2f}x the frames/s", f">= {NOTIFICATION_FEED_TARGET:g}x",
         feed_244_vs_split >= NOTIFICATION_FEED_TARGET),
        ("    decode_frame, same frames split", stream["split"], "", "", None),
    ]  # fmt: skip

    print(f"{'candidate':<41} {'ns/frame':>9}  {'ratio':<26} {'target':<7} result")
    print("-" * 94)
    for name, ns, ratio, target, ok in rows:
        result = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:<41} {ns:>9,.0f}  {ratio:<26} {target:<7} {result}".rstrip())
    print()
    print(
        f"feed: {1e9 / stream['feed']:,.0f} frames/s with 1..40-byte chunks, "
        f"{1e9 / stream['feed_244']:,.0f} frames/s with {NOTIFICATION}-byte notifications"
    )
    print(f"decode_frame on the same frames split: {1e9 / stream['split']:,.0f} frames/s")
    print()
    print(f"FrameDecoder.feed on {n_hostile:,} full notifications (244 bytes) of each kind:")
    print(f"{'notifications':<41} {'us each':>9}  {'MB/s':>6}  cost per byte")
    print("-" * 74)
    for kind, label in (
        ("valid", "valid INFO frames"),
        ("random", "random bytes"),
        ("worst", "a 240-byte header every 5 bytes"),
    ):
        ns = hostile[kind]
        print(
            f"{label:<41} {ns / 1000:>9,.1f}  {244e3 / ns:>6,.1f}  "
            f"{ns / hostile['valid']:.1f}x valid frames"
        )
    if quick:
        print("(--quick: too short to mean anything; it checks that the script works)")
        return 0
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    gc.collect()
    sys.exit(main())
