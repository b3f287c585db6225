"""Regression: ``FrameDecoder.last_error`` must not keep its caller's frames alive.

Found by the flood tests (``tests/test_hostile.py``): after a flood of garbage, up
to one whole batch of notifications (4096 under trio, about 1.4 MB) stayed in
memory until the next decoding error. ``feed`` keeps the last ``FrameError`` it
caught, and with it its traceback; the traceback holds ``feed``'s frame, whose
``f_back`` holds the caller's frame, and so on up the stack: every local variable of
every caller at the time (the transport's batch of notifications, the event loop's
own frames) lived as long as that error was the last one. The error is now kept
without its traceback.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from o2x.dongle.frames import FrameDecoder, encode_frame, encode_info


class _Held:
    """Something a caller of ``feed`` holds in a local variable."""


def _feed_from_a_caller(decoder: FrameDecoder, data: bytes) -> weakref.ref[_Held]:
    held = _Held()
    decoder.feed(data)
    return weakref.ref(held)


def _bad_crc() -> bytes:
    frame = bytearray(encode_info(seq=1, battery_soc=50))
    frame[-1] ^= 0xFF
    return bytes(frame)


@pytest.mark.parametrize(
    "data",
    # A CRC error; a frame with a correct CRC but no content (an EVENT needs a code).
    [_bad_crc(), encode_frame(0x02, b"")],
    ids=["bad CRC", "empty EVENT"],
)
def test_last_error_keeps_no_caller_alive(data: bytes) -> None:
    decoder = FrameDecoder()
    held = _feed_from_a_caller(decoder, data)
    gc.collect()
    assert decoder.last_error is not None  # the error is kept, for diagnostics
    assert held() is None, "the caller's local variables outlive the call"
