"""The adapter's CAN filter, computed from ami.dbc."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from o2x.can import dbc
from o2x.obd.filters import CanFilter, ami_filter, ami_ids, can_filter


def test_the_ids_are_the_dbc_s() -> None:
    assert ami_ids() == tuple(sorted(dbc.compiled()))
    assert ami_ids() == (0x580, 0x581, 0x582, 0x593, 0x594, 0x710, 0x711, 0x712, 0x713, 0x714)


def test_the_ami_filter_passes_every_dbc_id() -> None:
    assert all(ami_filter().passes(can_id) for can_id in dbc.compiled())


def test_the_ami_filter_is_the_one_the_docstring_gives() -> None:
    # Worked by hand: the IDs AND to 0x500 and OR to 0x797, so they agree on
    # ~(0x500 ^ 0x797) & 0x7FF = 0x568 (5 bits); 6 free bits pass 64 IDs.
    assert ami_filter() == CanFilter(0x500, 0x568)
    assert len(ami_filter().passed()) == 64
    extra = set(ami_filter().passed()) - set(ami_ids())
    assert len(extra) == 54  # what the module docstring says


def test_tighter_than_the_hand_picked_mcp2515_filter() -> None:
    # servicemensch/TopolinoInfoDisplay's 0x500/0x560 passes all the IDs too, but 128.
    topolino = CanFilter(0x500, 0x560)
    assert all(topolino.passes(can_id) for can_id in ami_ids())
    assert len(topolino.passed()) == 128
    assert set(ami_filter().passed()) < set(topolino.passed())


def test_ids_outside_pass_or_not_as_the_mask_says() -> None:
    ami = ami_filter()
    assert ami.passes(0x583)  # one of the 54 extras: AmiBus ignores it
    assert not ami.passes(0x7DF)  # the OBD functional request ID
    assert not ami.passes(0x7E8)
    assert not ami.passes(0x000)


def test_the_commands_are_atcf_and_atcm_with_3_hex_digits() -> None:
    # [E]: "AT CF hhh", "AT CM hhh" (11-bit: 3 hex digits); spaces are optional.
    set_filter, set_mask = ami_filter().commands()
    assert (set_filter, set_mask) == ("ATCF500", "ATCM568")
    assert re.fullmatch("ATCF[0-9A-F]{3}", set_filter)
    assert re.fullmatch("ATCM[0-9A-F]{3}", set_mask)
    assert CanFilter(0x1, 0x7FF).commands() == ("ATCF001", "ATCM7FF")


def test_the_filter_command_keeps_only_masked_bits() -> None:
    assert CanFilter(0x7FF, 0x700).commands() == ("ATCF700", "ATCM700")


def test_pass_all() -> None:
    every = CanFilter.pass_all()
    assert every.passes_all
    assert len(every.passed()) == 0x800
    assert not ami_filter().passes_all


@pytest.mark.parametrize("ids", [[], [0x800], [-1]])
def test_bad_ids_are_refused(ids: list[int]) -> None:
    with pytest.raises(ValueError, match=r"ID|at least one"):
        can_filter(ids)


@pytest.mark.parametrize(("value", "mask"), [(0x800, 0), (0, 0x800), (-1, 0)])
def test_a_filter_is_11_bit(value: int, mask: int) -> None:
    with pytest.raises(ValueError, match="11-bit"):
        CanFilter(value, mask)


@given(st.sets(st.integers(0, 0x7FF), min_size=1, max_size=20))
def test_the_computed_filter_is_the_tightest_single_pair(ids: set[int]) -> None:
    computed = can_filter(ids)
    assert all(computed.passes(can_id) for can_id in ids)
    passed = set(computed.passed())
    # No pair passing every ID passes fewer: try the tightening of each free bit.
    for bit in range(11):
        if computed.mask & (1 << bit):
            continue
        for value in (computed.filter, computed.filter | (1 << bit)):
            tighter = CanFilter(value, computed.mask | (1 << bit))
            assert not all(tighter.passes(can_id) for can_id in ids)
            assert set(tighter.passed()) < passed
