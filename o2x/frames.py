"""The O2X wire format: :mod:`o2x.dongle.frames`, importable here too.

The O2X dongle is one way of reaching the car among others, so its code lives in
:mod:`o2x.dongle`; this module keeps ``o2x.frames`` working.
"""

from .dongle.frames import (
    MAX_FRAME_SIZE,
    MAX_PAYLOAD,
    SOF,
    VERSION,
    DecoderStats,
    EventFrame,
    Frame,
    FrameDecoder,
    FrameType,
    IdentityFrame,
    InfoFrame,
    crc16,
    decode_frame,
    encode,
    encode_event,
    encode_frame,
    encode_identity,
    encode_info,
)

__all__ = [
    "MAX_FRAME_SIZE",
    "MAX_PAYLOAD",
    "SOF",
    "VERSION",
    "DecoderStats",
    "EventFrame",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "IdentityFrame",
    "InfoFrame",
    "crc16",
    "decode_frame",
    "encode",
    "encode_event",
    "encode_frame",
    "encode_identity",
    "encode_info",
]
