"""The adapter's CAN filter, computed from the IDs the DBC lists (never typed in by hand).

An ELM327 passes a received 11-bit ID when ``id & mask == filter & mask``: ``AT CF hhh``
sets the filter and ``AT CM hhh`` the mask, a 1 in the mask meaning "this bit must
match" ([E] ELM327DSJ, the CF and CM commands; their effect on ``AT MA``: p. 21). One
filter/mask pair cannot pass exactly an arbitrary set of IDs: the tightest pair keeps
in the mask only the bits on which all the IDs agree, and passes every ID that agrees
with them there, wanted or not.

For the 10 IDs of ``ami.dbc`` (0x580-0x582, 0x593, 0x594, 0x710-0x714) the bits that
agree are 0x568, so the tightest pair is filter 0x500, mask 0x568: it passes
2 ** 6 = 64 IDs, the 10 wanted and **54 more**. That is fine: ``AmiBus`` ignores
(and counts) IDs it does not know, and the point of the filter is only to cut the
adapter's output, whose 512-byte transmit buffer overflows into ``BUFFER FULL`` on a
busy bus ([E] p. 87; [K] ``can327.c``). It is twice as tight as the pair
servicemensch/TopolinoInfoDisplay ([T], ``src/main.cpp``) picks by hand for its
MCP2515, 0x500/0x560 (128 IDs), which leaves bit 3 free.

>>> ami = ami_filter()
>>> ami
CanFilter(filter=0x500, mask=0x568)
>>> ami.commands()
('ATCF500', 'ATCM568')
>>> ami.passes(0x593), ami.passes(0x7DF)
(True, False)
>>> len(ami.passed()) - len(ami_ids())
54
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import attrs

__all__ = ["CanFilter", "ami_filter", "ami_ids", "can_filter"]

#: The largest 11-bit identifier; ``AT CF``/``AT CM`` with three digits take 11 bits.
_ALL_BITS = 0x7FF


def _check_11_bit(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= _ALL_BITS:
        raise ValueError(f"{attribute.name} {value:#x} is not an 11-bit value (0 to 0x7FF)")


@attrs.frozen(repr=False)
class CanFilter:
    """One 11-bit acceptance filter and mask, as an ELM327 applies them.

    ``mask`` bits set to 1 must match ``filter``; bits set to 0 are "don't care".
    A mask of 0 passes everything (:meth:`pass_all`).
    """

    filter: int = attrs.field(validator=_check_11_bit)
    mask: int = attrs.field(validator=_check_11_bit)

    @classmethod
    def pass_all(cls) -> CanFilter:
        """A filter that passes every ID: no filter at all (a session then sends none)."""
        return cls(0, 0)

    @property
    def passes_all(self) -> bool:
        """Whether every ID passes (the mask is 0)."""
        return self.mask == 0

    def passes(self, can_id: int) -> bool:
        """Whether the adapter shows frames with the 11-bit ``can_id``."""
        return (can_id & self.mask) == (self.filter & self.mask)

    def passed(self) -> list[int]:
        """Every 11-bit ID the filter passes, in order (at most 2,048)."""
        return [can_id for can_id in range(_ALL_BITS + 1) if self.passes(can_id)]

    def commands(self) -> tuple[str, str]:
        """The ELM327 commands setting it: ``ATCF`` and ``ATCM``, each with 3 hex digits.

        [E] (CF, CM): "AT CF hhh" and "AT CM hhh" take three hex digits for 11-bit
        IDs (eight for 29-bit ones, which o2x does not use). Spaces are optional to
        the ELM327 ([E] p. 9: it ignores spaces), so none are sent.
        """
        return f"ATCF{self.filter & self.mask:03X}", f"ATCM{self.mask:03X}"

    def __repr__(self) -> str:
        return f"CanFilter(filter={self.filter:#05x}, mask={self.mask:#05x})"


def can_filter(ids: Iterable[int]) -> CanFilter:
    """The tightest single filter/mask pair passing every 11-bit ID in ``ids``.

    The mask keeps exactly the bits on which all the IDs agree; the filter is their
    value there. No other pair passing all the IDs passes fewer: a mask bit on which
    two IDs differ would drop one of them, and clearing a bit that agrees only lets
    more IDs through.

    >>> can_filter([0x580, 0x581])
    CanFilter(filter=0x580, mask=0x7fe)
    >>> can_filter([0x123])
    CanFilter(filter=0x123, mask=0x7ff)
    """
    agree_one = _ALL_BITS  # bits that are 1 in every ID
    any_one = 0  # bits that are 1 in some ID
    count = 0
    for can_id in ids:
        if not 0 <= can_id <= _ALL_BITS:
            raise ValueError(f"ID {can_id:#x} is not an 11-bit CAN identifier")
        agree_one &= can_id
        any_one |= can_id
        count += 1
    if not count:
        raise ValueError("a filter needs at least one ID to pass")
    mask = ~(agree_one ^ any_one) & _ALL_BITS  # 1 where all are 1 or all are 0
    return CanFilter(agree_one & mask, mask)


@functools.cache
def ami_ids() -> tuple[int, ...]:
    """The IDs of every message ``ami.dbc`` lists, in order (loaded once, lazily)."""
    from ..can import dbc

    return tuple(sorted(dbc.compiled()))


@functools.cache
def ami_filter() -> CanFilter:
    """The tightest filter for the messages of ``ami.dbc``: filter 0x500, mask 0x568 today."""
    return can_filter(ami_ids())
