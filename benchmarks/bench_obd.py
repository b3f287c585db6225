"""OBD adapter parsers: ``MonitorParser`` and ``SlcanParser`` against a floor, side by side.

Run with ``nox -s bench -- obd`` or ``python benchmarks/bench_obd.py`` (``--quick``
for a short run that checks the script, not the numbers). Results and how to read
them: ``benchmarks/README.md``, "OBD adapter parsers".

Every candidate reads the same transcript cut into the same 20-byte chunks (the
notifications of a BLE link at the default MTU of 23): about 50,000 frames of the
messages ``ami.dbc`` lists, as an ELM327 prints them in ``AT MA`` with headers on
(spaces on, and spaces off) and as a WiCAN sends them in SLCAN, with CR line ends
and now and then what a busy bus adds (a ``BUFFER FULL`` glued to a cut frame and
the prompt, ``STOPPED``, ``<RX ERROR``; acknowledgements for SLCAN).

The floor does the least any parser must: it buffers the chunks (decoded to str, as
``bytes.fromhex`` takes a str), splits them on CR, and calls ``bytes.fromhex`` on each
line past its header (it needs no ID, checks nothing, and drops what fromhex
refuses). For the spaces-on format fromhex skips the spaces itself.

The candidates run interleaved and keep the fastest time of every segment, as in
``bench_frames.py``. The target, checked and printed as PASS or FAIL (a full run
exits with status 1 on a miss): each parser takes **at most 3x the floor's time** on
its own format. ``Elm327Session.received`` in monitor mode (the parser plus the
session's checks) is shown beside them, without a target.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence

from _harness import cpu_name

from o2x.can import dbc
from o2x.obd import Elm327Session, MonitorParser, Send, SlcanParser

SEGMENT = 2_000  # chunks timed as one piece: a few milliseconds
MTU_PAYLOAD = 20  # bytes a notification carries at the default ATT MTU of 23
NOISE_EVERY = 400  # frames between two noise lines
FLOOR_TARGET = 3.0  # a parser takes at most this many times the floor


# --- the transcripts ----------------------------------------------------------------


def bus_frames(count: int, seed: int = 2026) -> list[tuple[int, bytes]]:
    """``count`` frames of the messages o2x reads, at their DBC lengths, random payloads.

    The parsers do not look at the values, so random bytes are as good as a drive's.
    """
    rng = random.Random(seed)
    lengths = {frame_id: message.length for frame_id, message in dbc.compiled().items()}
    ids = sorted(lengths)
    return [(can_id, rng.randbytes(lengths[can_id])) for can_id in rng.choices(ids, k=count)]


ELM_NOISE = [
    b"580 10 00 8CBUFFER FULL\r\r>",  # [K]: glued to the frame it cut short, then the prompt
    b"STOPPED\r\r>",
    b"<RX ERROR\r",
    b"CAN ERROR\r",
]
SLCAN_NOISE = [b"\r", b"z\r", b"\x07"]


def elm_transcript(frames: list[tuple[int, bytes]], *, spaces: bool) -> bytes:
    """What an ELM327 prints in AT MA with AT H1, spaces on or off, CR line ends."""
    parts = []
    for i, (can_id, data) in enumerate(frames):
        if i and i % NOISE_EVERY == 0:
            parts.append(ELM_NOISE[(i // NOISE_EVERY) % len(ELM_NOISE)])
        digits = data.hex().upper()
        if spaces:
            line = f"{can_id:03X} " + " ".join(digits[j : j + 2] for j in range(0, len(digits), 2))
        else:
            line = f"{can_id:03X}{digits}"
        parts.append(line.encode() + b"\r")
    return b"".join(parts)


def slcan_transcript(frames: list[tuple[int, bytes]]) -> bytes:
    """What a WiCAN sends in SLCAN ([W] slcan.c), no timestamps, a little noise."""
    parts = []
    for i, (can_id, data) in enumerate(frames):
        if i and i % NOISE_EVERY == 0:
            parts.append(SLCAN_NOISE[(i // NOISE_EVERY) % len(SLCAN_NOISE)])
        parts.append(f"t{can_id:03X}{len(data)}{data.hex().upper()}\r".encode())
    return b"".join(parts)


def notifications(stream: bytes) -> list[bytes]:
    return [stream[i : i + MTU_PAYLOAD] for i in range(0, len(stream), MTU_PAYLOAD)]


# --- the candidates ---------------------------------------------------------------


def floor(header: int) -> Callable[[], Callable[[bytes], list[bytes]]]:
    """A floor feed: buffer, split on CR, bytes.fromhex on each line past ``header``."""

    def make() -> Callable[[bytes], list[bytes]]:
        pending = ""
        fromhex = bytes.fromhex

        def feed(chunk: bytes) -> list[bytes]:
            nonlocal pending
            lines = (pending + chunk.decode("latin-1")).split("\r")
            pending = lines.pop()
            out = []
            for line in lines:
                # try/except, not contextlib.suppress: a slower floor would flatter us.
                try:  # noqa: SIM105
                    out.append(fromhex(line[header:]))
                except ValueError:
                    pass
            return out

        return feed

    return make


def monitor() -> Callable[[bytes], list[tuple[int, bytes]]]:
    return MonitorParser().feed


def slcan() -> Callable[[bytes], list[tuple[int, bytes]]]:
    return SlcanParser().feed


def session() -> Callable[[bytes], object]:
    """An Elm327Session taken to monitoring by hand; its received() in monitor mode."""
    elm = Elm327Session()
    actions = elm.start(0.0)
    elm.received(b"ELM327 v1.5\r\r>", 0.0)
    while not any(isinstance(a, Send) and a.data == b"ATMA\r" for a in actions):
        actions = elm.received(b"OK\r\r>", 0.0)
    received = elm.received
    return lambda chunk: received(chunk, 0.0)


def time_feed(make: Callable[[], Callable[[bytes], object]], chunks: list[bytes]) -> list[int]:
    """One pass of a new parser over ``chunks``: the time of each segment, in ns."""
    feed = make()
    times = []
    for i in range(0, len(chunks), SEGMENT):
        segment = chunks[i : i + SEGMENT]
        start = time.perf_counter_ns()
        for chunk in segment:
            feed(chunk)
        times.append(time.perf_counter_ns() - start)
    return times


def interleaved(candidates: dict[str, Callable[[], list[int]]], repeats: int) -> dict[str, int]:
    """Nanoseconds of a whole pass of each candidate, the fastest of each segment kept."""
    best: dict[str, list[int]] = {}
    for _ in range(repeats):
        for name, one_pass in candidates.items():
            times = one_pass()
            best[name] = [min(a, b) for a, b in zip(best.get(name, times), times, strict=True)]
    return {name: sum(times) for name, times in best.items()}


def check(frames: list[tuple[int, bytes]], streams: dict[str, bytes]) -> None:
    """Every parser finds exactly the frames (the cut one before BUFFER FULL is none)."""
    for name, stream in streams.items():
        feed = slcan() if name == "slcan" else monitor()
        found = [f for chunk in notifications(stream) for f in feed(chunk)]
        if found != frames:
            raise AssertionError(f"{name}: {len(found):,} frames read of {len(frames):,}")


# --- the run ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (checks the script)")
    quick: bool = parser.parse_args(argv).quick

    n_frames = 5_000 if quick else 50_000
    repeats = 3 if quick else 15
    frames = bus_frames(n_frames)
    streams = {
        "spaces": elm_transcript(frames, spaces=True),
        "no_spaces": elm_transcript(frames, spaces=False),
        "slcan": slcan_transcript(frames),
    }
    check(frames, streams)
    chunks = {name: notifications(stream) for name, stream in streams.items()}

    print(
        f"o2x OBD parser benchmark: Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.machine()}, "
        f"{cpu_name()}, {os.cpu_count()} CPUs"
    )
    print(
        f"{n_frames:,} frames of the {len(dbc.compiled())} messages o2x reads, a noise line "
        f"every {NOISE_EVERY}, in {MTU_PAYLOAD}-byte notifications: "
        + ", ".join(f"{name} {len(c):,}" for name, c in chunks.items())
    )
    print(f"{repeats} interleaved passes in segments of {SEGMENT:,} notifications, fastest kept")
    print()
    ns = interleaved(
        {
            "floor_spaces": lambda: time_feed(floor(3), chunks["spaces"]),
            "monitor_spaces": lambda: time_feed(monitor, chunks["spaces"]),
            "session_spaces": lambda: time_feed(session, chunks["spaces"]),
            "floor_no_spaces": lambda: time_feed(floor(3), chunks["no_spaces"]),
            "monitor_no_spaces": lambda: time_feed(monitor, chunks["no_spaces"]),
            "session_no_spaces": lambda: time_feed(session, chunks["no_spaces"]),
            "floor_slcan": lambda: time_feed(floor(5), chunks["slcan"]),
            "slcan": lambda: time_feed(slcan, chunks["slcan"]),
        },
        repeats,
    )

    rows: list[tuple[str, float, str, str, bool | None]] = []
    for label, fmt, ours in (
        ("ELM327, spaces on (H1 S1)", "spaces", "monitor_spaces"),
        ("ELM327, spaces off (H1 S0)", "no_spaces", "monitor_no_spaces"),
        ("SLCAN (WiCAN)", "slcan", "slcan"),
    ):
        base = ns[f"floor_{fmt}"]
        ratio = ns[ours] / base
        parser_name = "SlcanParser.feed" if fmt == "slcan" else "MonitorParser.feed"
        rows.append((f"{label}: floor", base / n_frames, "", "", None))
        rows.append((f"    {parser_name}", ns[ours] / n_frames, f"{ratio:.2f}x the floor",
                     f"<= {FLOOR_TARGET:g}x", ratio <= FLOOR_TARGET))  # fmt: skip
        if fmt != "slcan":
            with_session = ns[f"session_{fmt}"] / base
            rows.append(("    Elm327Session.received", ns[f"session_{fmt}"] / n_frames,
                         f"{with_session:.2f}x the floor", "", None))  # fmt: skip

    print(f"{'candidate':<40} {'ns/frame':>9}  {'ratio':<18} {'target':<8} result")
    print("-" * 86)
    for name, per_frame, ratio, target, ok in rows:
        result = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:<40} {per_frame:>9,.0f}  {ratio:<18} {target:<8} {result}".rstrip())
    print()
    print(
        "frames/s: "
        + ", ".join(
            f"{name} {n_frames * 1e9 / ns[name]:,.0f}"
            for name in ("monitor_spaces", "monitor_no_spaces", "slcan")
        )
    )
    if quick:
        print("(--quick: too short to mean anything; it checks that the script works)")
        return 0
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    gc.collect()
    sys.exit(main())
