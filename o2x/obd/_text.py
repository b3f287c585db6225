"""Tables shared by the adapters' parsers (private): hex headers, byte clean-up."""

from __future__ import annotations

from typing import Final

#: Every 11-bit ID as its 3 hex digits (upper and lower case) -> the ID. One dictionary
#: look-up both checks that a header is hex and converts it, faster than ``int(s, 16)``,
#: which would also take "+5_8" or " 58".
HEADERS: Final[dict[str, int]] = {
    **{f"{can_id:03X}": can_id for can_id in range(0x800)},
    **{f"{can_id:03x}": can_id for can_id in range(0x800)},
}

#: ``bytes.translate`` table for an ELM327's output: LF -> CR (CR LF then makes an empty
#: line, which is skipped), and the prompt with random high bits -> ``>``: [K]
#: ``can327_is_ready_char`` accepts any byte whose low 6 bits are those of ``>``
#: ("Bits 0xc0 are sometimes set (randomly) ... Probably bad hardware").
ELM_CLEAN: Final = bytes.maketrans(b"\n\x7e\xbe\xfe", b"\r>>>")
#: Deleted by the same call: NUL, which [K] drops ("the PIC microcontroller may
#: inadvertently insert [it] due to a known hardware bug").
ELM_DELETE: Final = b"\x00"

#: The hex digits, for the slow paths' checks.
HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")

#: The largest 29-bit identifier.
MAX_EXTENDED_ID: Final = 0x1FFFFFFF
#: The most data bytes of a classic CAN frame.
MAX_DATA: Final = 8


def is_hex(text: str) -> bool:
    """Whether ``text`` is one or more hex digits and nothing else (no sign, space, ``_``)."""
    return bool(text) and all(char in HEX_DIGITS for char in text)
