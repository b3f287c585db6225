"""Capture files written by hand, from docs/protocol.md, section 7, not from o2x.capture:
what the tests compare the writer against, and files holding what no writer would."""

from __future__ import annotations

import json
import struct
import zlib

MAGIC = b"\x89O2XCAP\n"
#: The first bytes of a version-3 record.
SYNC = b"\xfe\xd2"
RECORD_HEADER = 13  # sync, u64 offset, u8 kind, u16 length
RECORD_OVERHEAD = RECORD_HEADER + 4  # and the u32 CRC-32 after the payload
NOTIFICATION = 1


def capture_bytes(metadata: dict | bytes, records: bytes = b"", *, version: int = 3) -> bytes:
    """A header (version 3: with its checksum) and ``records``."""
    blob = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    header = MAGIC + struct.pack("<HI", version, len(blob)) + blob
    if version >= 3:
        header += struct.pack("<I", zlib.crc32(header))
    return header + records


def record(offset_ns: int, data: bytes = b"", kind: int = NOTIFICATION) -> bytes:
    """A version-3 record: sync, offset, kind, length, payload, CRC-32 of all that."""
    blob = SYNC + struct.pack("<QBH", offset_ns, kind, len(data)) + data
    return blob + struct.pack("<I", zlib.crc32(blob))


def record_v2(offset_ns: int, data: bytes = b"", kind: int = NOTIFICATION) -> bytes:
    """A record of versions 1 and 2: no sync bytes, no checksum."""
    return struct.pack("<QBH", offset_ns, kind, len(data)) + data
