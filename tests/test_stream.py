"""``o2x.vehicle.Stream``: one consumer's subscription, alone (no vehicle needed)."""

from __future__ import annotations

import anyio
import pytest

from o2x.vehicle import Stream

pytestmark = pytest.mark.anyio


async def test_items_come_out_in_order_then_the_end() -> None:
    stream: Stream[int] = Stream(None)
    for i in range(3):
        stream._push(i)
    stream._close()
    assert [item async for item in stream] == [0, 1, 2]


async def test_the_end_carries_the_error_after_the_items() -> None:
    stream: Stream[int] = Stream(None)
    stream._push(1)
    stream._close(ConnectionError("gone"))
    assert await anext(stream) == 1
    with pytest.raises(ConnectionError, match="gone"):
        await anext(stream)


async def test_a_bounded_stream_drops_the_oldest_and_counts_them() -> None:
    dropped: list[None] = []
    stream: Stream[int] = Stream(2, lambda: dropped.append(None))
    for i in range(5):
        stream._push(i)
    stream._close()
    assert [item async for item in stream] == [3, 4]
    assert stream.dropped == 3
    assert len(dropped) == 3


async def test_after_aclose_nothing_more_is_received() -> None:
    stream: Stream[int] = Stream(None)
    stream._push(1)
    await stream.aclose()
    stream._push(2)  # the vehicle still holds it until it is collected
    assert [item async for item in stream] == []
    assert stream.dropped == 0


async def test_leaving_async_with_closes_it() -> None:
    stream: Stream[int] = Stream(None)
    async with stream:
        stream._push(1)
        assert await anext(stream) == 1
    stream._push(2)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_every_task_waiting_on_one_stream_wakes_and_sees_the_end() -> None:
    stream: Stream[int] = Stream(None)
    got: dict[str, list[int]] = {"a": [], "b": []}

    async def consume(name: str) -> None:
        async for item in stream:
            got[name].append(item)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume, "a")
            tasks.start_soon(consume, "b")
            await anyio.wait_all_tasks_blocked()  # both are waiting for an item
            for i in range(4):
                stream._push(i)
                await anyio.lowlevel.checkpoint()
            stream._close()  # both consumers end: neither is left waiting
    assert sorted(got["a"] + got["b"]) == [0, 1, 2, 3]
