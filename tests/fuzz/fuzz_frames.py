"""Coverage-guided fuzzing of the wire format with atheris (libFuzzer for Python).

Not a pytest module (no ``test_`` prefix): run it through ``nox -s fuzz -- 600``,
or by hand::

    python tests/fuzz/fuzz_frames.py CORPUS_DIR tests/fuzz/seeds \\
        -max_total_time=600 -rss_limit_mb=2048 -timeout=10

``CORPUS_DIR`` collects the inputs that found new coverage; ``tests/fuzz/seeds``
holds valid frames and streams to start from (``--write-seeds DIR`` rewrites them).
A crash is written to ``crash-<sha1>`` in the working directory (``nox -s fuzz``
passes ``-artifact_prefix`` to put it in ``.nox/fuzz/tmp/artifacts``); replay it with
``python tests/fuzz/fuzz_frames.py crash-<sha1>`` and turn it into a test in
``tests/regressions/``.

Each input is checked against these properties:

* ``decode_frame`` raises nothing but :class:`~o2x.errors.FrameError`, and a frame
  it returns re-encodes (``o2x.frames.encode``) to bytes that decode to an equal
  frame; an INFO frame re-encodes to exactly the bytes it came from.
* ``FrameDecoder.feed``, given the same bytes cut into chunks the input chooses,
  never raises, never holds more than ``MAX_FRAME_SIZE`` bytes, and every frame
  it returns round-trips as above.
* How the bytes are cut changes nothing: the frames and counters are those of the
  same bytes fed in one piece.
* Bytes ``decode_frame`` accepts as one frame come out of the decoder as exactly
  that frame.

Random bytes almost never carry a correct CRC-16, which would keep the fuzzer in
the decoder's error paths; so one bit of each input asks for the CRCs of whatever
looks like a frame to be repaired first (see :func:`repair_crcs`).
"""

from __future__ import annotations

import sys
from binascii import crc_hqx
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["o2x"]):
    from o2x.dongle.frames import (
        MAX_FRAME_SIZE,
        SOF,
        Frame,
        FrameDecoder,
        InfoFrame,
        decode_frame,
        encode,
        encode_event,
        encode_frame,
        encode_identity,
        encode_info,
    )
    from o2x.errors import FrameError
    from o2x.model import Alerts, BatteryState, EventKind, Gear, ParkBrake, SystemState

# The largest chunk the input may ask for: beyond a frame and a half, bigger chunks
# exercise nothing new.
MAX_CHUNK = 2 * MAX_FRAME_SIZE
MAX_CUTS = 16


def repair_crcs(data: bytes) -> bytes:
    """Give every frame-shaped run in ``data`` a correct CRC.

    Walks the bytes: at a start-of-frame byte whose declared payload fits in what
    follows, the CRC at the end of that frame is overwritten with the right one and
    the walk continues after it; anything else is skipped a byte at a time.
    """
    out = bytearray(data)
    pos = 0
    while pos + 5 <= len(out):
        if out[pos] == SOF:
            end = pos + 7 + out[pos + 4]
            if end <= len(out):
                out[end - 2 : end] = crc_hqx(bytes(out[pos + 1 : end - 2]), 0xFFFF).to_bytes(
                    2, "little"
                )
                pos = end
                continue
        pos += 1
    return bytes(out)


def check_round_trip(frame: Frame) -> None:
    """``frame`` re-encodes to bytes that decode to an equal frame."""
    encoded = encode(frame)
    again = decode_frame(encoded)
    if again != frame:
        raise AssertionError(f"{frame!r} re-encodes to {encoded!r}, which decodes to {again!r}")


def decode_all(stream: bytes, cuts: list[int]) -> tuple[list[Frame], FrameDecoder]:
    """Feed ``stream`` cut at ``cuts`` (chunk sizes; the rest goes in one chunk), then flush."""
    decoder = FrameDecoder()
    frames: list[Frame] = []
    pos = 0
    for size in [*cuts, len(stream)]:
        chunk = stream[pos : pos + size]
        pos += size
        frames += decoder.feed(chunk)
        if decoder.buffered > MAX_FRAME_SIZE:
            raise AssertionError(f"the decoder holds {decoder.buffered} bytes")
        if pos >= len(stream):
            break
    frames += decoder.flush()
    if decoder.buffered:
        raise AssertionError(f"flush() left {decoder.buffered} bytes buffered")
    return frames, decoder


def parse(data: bytes) -> tuple[bool, list[int], bytes]:
    """Split an input into (repair CRCs?, chunk sizes, byte stream).

    Byte 0 says whether to repair; the last byte is how many cuts, each cut is the
    two bytes before (FuzzedDataProvider takes integers from the end); everything
    in between is the byte stream.
    """
    fdp = atheris.FuzzedDataProvider(data)
    repair = fdp.ConsumeBool()
    n_cuts = fdp.ConsumeIntInRange(0, MAX_CUTS)
    cuts = [fdp.ConsumeIntInRange(0, MAX_CHUNK) for _ in range(n_cuts)]
    return repair, cuts, fdp.ConsumeBytes(fdp.remaining_bytes())


def make_input(stream: bytes, *, repair: bool = False, cuts: tuple[int, ...] = ()) -> bytes:
    """The input :func:`parse` splits into ``(repair, list(cuts), stream)``."""
    tail = b"".join(bytes((c & 0xFF, c >> 8)) for c in reversed(cuts))
    return bytes((int(repair),)) + stream + tail + bytes((len(cuts),))


def TestOneInput(data: bytes) -> None:  # the name atheris looks for
    repair, cuts, stream = parse(data)
    if repair:
        stream = repair_crcs(stream)

    # decode_frame: one frame, or a FrameError.
    single: Frame | None
    try:
        single = decode_frame(stream)
    except FrameError:
        single = None
    if single is not None:
        check_round_trip(single)
        if isinstance(single, InfoFrame) and encode(single) != stream:
            raise AssertionError(f"INFO frame {stream!r} re-encodes to {encode(single)!r}")

    # FrameDecoder: the same bytes, cut where the input says.
    frames, decoder = decode_all(stream, cuts)
    for frame in frames:
        check_round_trip(frame)

    # Chunking-invariance: the frames and counters of the bytes fed in one piece.
    whole, whole_decoder = decode_all(stream, [])
    if frames != whole or decoder.stats != whole_decoder.stats:
        raise AssertionError(
            f"cut at {cuts}: {frames!r} {decoder.stats}; in one piece: {whole!r} "
            f"{whole_decoder.stats}"
        )
    if single is not None and whole != [single]:
        raise AssertionError(f"decode_frame gives {single!r}, the decoder {whole!r}")

    # The last error, built when read, is a FrameError; there is one exactly when
    # the decoder counted something it rejected.
    for d in (decoder, whole_decoder):
        error = d.last_error
        rejected = d.stats.crc_errors + d.stats.invalid_frames
        if not (isinstance(error, FrameError) if rejected else error is None):
            raise AssertionError(f"last_error {error!r} after {d.stats}")


def seeds() -> dict[str, bytes]:
    """Valid frames and streams for the fuzzer to start from (and mutate)."""
    info = encode_info(
        seq=1,
        current_alert=Alerts.from_mask(0x05),
        battery_soc=80,
        system_state=SystemState.READY,
        battery_state=BatteryState.DISCHARGING,
        remaining_autonomy=55,
        rnd=Gear.DRIVE,
        charge_delay=None,
        park_brake_status=ParkBrake.RELEASED,
        total_odometer=1234.5,
    )
    info_none = encode_info(seq=2)
    info_long = encode_info(seq=3, battery_soc=100, extra=b"\x01\x02\x03")
    event = encode_event(EventKind.CANT_CHARGE, seq=4)
    unknown_event = encode_event(0x7F, seq=5)
    identity = encode_identity("VR1AB12C3D4567890", (2, 7), seq=6)
    unknown_type = encode_frame(0x09, b"\x00" * 4, seq=7)
    stream = info + event + info_none + identity + info_long
    noisy = b"\xa5\x01\x01" + info + b"\xa5" + event + b"\x00\xa5\x01" + info + b"\x17"
    frames = {
        "info": info,
        "info_none": info_none,
        "info_long": info_long,
        "event": event,
        "unknown_event": unknown_event,
        "identity": identity,
        "unknown_type": unknown_type,
        "max_payload": encode_frame(0x03, b"A" * 240, seq=255),
    }
    out = {name: make_input(value) for name, value in frames.items()}
    out["stream"] = make_input(stream)
    out["stream_cut"] = make_input(stream, cuts=(1, 22, 5, 40, 3))
    out["noisy_repaired"] = make_input(noisy, repair=True, cuts=(7, 7, 7))
    out["bytewise"] = make_input(info + event, cuts=(1,) * MAX_CUTS)
    return out


def write_seeds(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in seeds().items():
        (directory / name).write_bytes(value)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        write_seeds(Path(sys.argv[2]))
        return
    # Sanity: the seeds parse as meant and pass.
    assert parse(make_input(b"\xa5xyz", repair=True, cuts=(3, 300))) == (True, [3, 300], b"\xa5xyz")
    for value in seeds().values():
        TestOneInput(value)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
