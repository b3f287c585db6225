"""How BleakLink hands notifications from the BLE thread to the caller's loop.

Under trio, bleak's callbacks run on the BLE loop's thread and notifications cross
to trio in batches. These tests drive that hand-off by hand: the "caller's loop" is
a list of scheduled callbacks, run one at a time, so every interleaving is explicit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from o2x._aio import AsyncioPortal
from o2x.transport import _MAX_BATCH, _MAX_PENDING, BleakLink


class Sink:
    def __init__(self) -> None:
        self.log: list[tuple[str, int, list[bytes]]] = []

    def advertisement(self, address: str, vin: str) -> None:
        raise AssertionError("no advertisement expected")

    def notifications(self, generation: int, chunks: list[bytes]) -> None:
        self.log.append(("notifications", generation, chunks))

    def link_lost(self, generation: int) -> None:
        self.log.append(("link_lost", generation, []))

    def received(self) -> list[bytes]:
        return [
            chunk for kind, _, chunks in self.log if kind == "notifications" for chunk in chunks
        ]


class CallerLoop:
    """The caller's loop, reduced to its queue of callbacks."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    def to_caller(self, fn: Callable[..., object], *args: object) -> None:
        self.scheduled.append((fn, args))

    def run_one(self) -> None:
        fn, args = self.scheduled.pop(0)
        fn(*args)

    def run_all(self) -> int:
        ran = 0
        while self.scheduled:
            self.run_one()
            ran += 1
        return ran


@pytest.fixture
def setup() -> Iterator[tuple[BleakLink, Sink, CallerLoop]]:
    loop = asyncio.new_event_loop()  # never run: only the BLE-loop identity is needed
    caller = CallerLoop()
    sink = Sink()
    link = BleakLink(AsyncioPortal(loop, caller.to_caller, same_loop=False), sink)
    yield link, sink, caller
    loop.close()


def chunk(i: int) -> bytes:
    return i.to_bytes(4, "little")


def test_a_backlog_is_handed_over_in_bounded_slices_in_order(
    setup: tuple[BleakLink, Sink, CallerLoop],
) -> None:
    link, sink, caller = setup
    count = 3 * _MAX_BATCH + 17
    for i in range(count):
        link._received(0, bytearray(chunk(i)))  # the BLE thread, faster than the caller
    assert len(caller.scheduled) == 1  # one flush scheduled for the whole burst
    sizes = []
    while caller.scheduled:
        before = len(sink.received())
        caller.run_one()
        sizes.append(len(sink.received()) - before)
    assert sizes == [_MAX_BATCH, _MAX_BATCH, _MAX_BATCH, 17]
    assert sink.received() == [chunk(i) for i in range(count)]


def test_notifications_arriving_between_slices_keep_their_order(
    setup: tuple[BleakLink, Sink, CallerLoop],
) -> None:
    link, sink, caller = setup
    for i in range(_MAX_BATCH + 10):
        link._received(0, bytearray(chunk(i)))
    caller.run_one()  # the first slice; a second flush is scheduled for the rest
    for i in range(_MAX_BATCH + 10, _MAX_BATCH + 20):
        link._received(0, bytearray(chunk(i)))  # must not schedule a third
    assert len(caller.scheduled) == 1
    caller.run_all()
    assert sink.received() == [chunk(i) for i in range(_MAX_BATCH + 20)]


def test_everything_received_before_a_loss_is_delivered_before_it(
    setup: tuple[BleakLink, Sink, CallerLoop],
) -> None:
    link, sink, caller = setup
    link.generation = 3
    for i in range(2 * _MAX_BATCH + 5):
        link._received(3, bytearray(chunk(i)))
    link._disconnected(3)
    largest = 0
    while caller.scheduled:  # the loss, and anything still scheduled
        before = len(sink.received())
        caller.run_one()
        largest = max(largest, len(sink.received()) - before)
    kinds = [kind for kind, _, _ in sink.log]
    assert kinds[-1] == "link_lost"
    assert kinds.count("link_lost") == 1
    assert largest <= _MAX_BATCH  # the loss does not hand the backlog over in one go
    assert sink.received() == [chunk(i) for i in range(2 * _MAX_BATCH + 5)]
    assert link._pending == type(link._pending)()  # nothing left behind


def test_batches_split_where_the_generation_changes(
    setup: tuple[BleakLink, Sink, CallerLoop],
) -> None:
    link, sink, caller = setup
    for generation, i in ((1, 0), (1, 1), (2, 2), (2, 3), (1, 4)):
        link._received(generation, bytearray(chunk(i)))
    caller.run_all()
    assert [(g, chunks) for _, g, chunks in sink.log] == [
        (1, [chunk(0), chunk(1)]),
        (2, [chunk(2), chunk(3)]),
        (1, [chunk(4)]),
    ]


def test_the_hand_off_is_bounded_when_the_caller_stalls(
    setup: tuple[BleakLink, Sink, CallerLoop],
) -> None:
    link, sink, caller = setup
    for i in range(_MAX_PENDING + 100):
        link._received(0, bytearray(chunk(i)))
    caller.run_all()
    # The oldest went: the decoder resynchronises and counts the damage.
    assert sink.received() == [chunk(i) for i in range(100, _MAX_PENDING + 100)]
