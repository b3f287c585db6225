"""Reach the asyncio-only BLE stack (bleak, Bumble) from asyncio or from trio.

Under asyncio the stack runs on the caller's own loop; no thread is involved.
Under trio it runs on a private asyncio loop in a dedicated thread, owned by the
``async with open_portal()`` block: the thread is started on entry and joined on
exit, so nothing outlives the block. ``docs/design.md`` explains why a loop thread
was chosen over running asyncio inside trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import anyio
import sniffio

__all__ = ["AsyncioPortal", "open_portal"]

T = TypeVar("T")
P = ParamSpec("P")


class AsyncioPortal:
    """The asyncio loop the BLE stack lives on, and the way to it from the caller's library."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        to_caller: Callable[..., object],
        *,
        same_loop: bool,
    ) -> None:
        #: The asyncio loop on which bleak and Bumble objects live.
        self.loop = loop
        #: True when the caller runs on ``loop`` itself (asyncio): no thread is involved.
        self.same_loop = same_loop
        self._to_caller = to_caller

    async def run(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run the coroutine ``fn(*args, **kwargs)`` on the BLE loop and return its result.

        Cancelling the caller cancels the coroutine and waits for it to finish, so it
        never outlives the caller's cancel scope.
        """
        if self.same_loop:
            return await self._run_in_task(fn(*args, **kwargs))
        return await self._run_threadsafe(fn(*args, **kwargs))

    async def _run_in_task(self, coro: Coroutine[Any, Any, T]) -> T:
        # anyio cancels level-triggered: a task inside a cancelled scope is cancelled
        # again at each await until it leaves the scope. asyncio code (bleak's, Bumble's)
        # that awaits its own clean-up after a CancelledError would be cut short and
        # leave work running. So the coroutine runs as a task of its own, cancelled
        # once, as asyncio code expects; a task per call is only paid for outside the
        # data path (scan, connect, GATT), never per notification.
        task = self.loop.create_task(coro)
        done = anyio.Event()
        task.add_done_callback(lambda _: done.set())
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await done.wait()
            if not task.cancelled():
                task.exception()  # retrieved: the caller's cancellation is what propagates
            raise
        return task.result()

    async def _run_threadsafe(self, coro: Coroutine[Any, Any, T]) -> T:
        # The task is made, watched and cancelled on the BLE loop itself. Waiting on
        # the concurrent future of run_coroutine_threadsafe instead would return as
        # soon as that future is cancelled, while the coroutine is still cleaning up.
        done = anyio.Event()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:  # on the BLE loop
            task = self.loop.create_task(coro)
            tasks.append(task)
            task.add_done_callback(lambda _: self._to_caller(done.set))

        def cancel() -> None:  # on the BLE loop, after start(): callbacks run in order
            tasks[0].cancel()

        self.loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            with contextlib.suppress(RuntimeError):  # a closed loop has ended its tasks
                self.loop.call_soon_threadsafe(cancel)
            with anyio.CancelScope(shield=True):
                await done.wait()  # the coroutine has really ended
            if not tasks[0].cancelled():
                tasks[0].exception()  # retrieved: the caller's cancellation propagates
            raise
        task = tasks[0]
        if task.cancelled():
            raise RuntimeError("the Bluetooth event loop stopped while a call was running")
        return task.result()

    def run_sync_soon(self, fn: Callable[..., object], /, *args: object) -> None:
        """Schedule the plain callable ``fn(*args)`` on the BLE loop (thread-safe)."""
        if self.same_loop:
            self.loop.call_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def to_caller_soon(self, fn: Callable[..., object], /, *args: object) -> None:
        """Schedule the plain callable ``fn(*args)`` on the caller's loop (thread-safe)."""
        self._to_caller(fn, *args)


@asynccontextmanager
async def open_portal(
    loop: asyncio.AbstractEventLoop | None = None,
) -> AsyncIterator[AsyncioPortal]:
    """Open a portal to an asyncio loop suitable for bleak and Bumble.

    ``loop``: a loop already running (in this thread, or in one of its own), which
    the portal reaches and leaves running; without it, the caller's own loop under
    asyncio, or a loop in a thread of the portal's under trio.

    >>> async def main():                                  # doctest: +SKIP
    ...     async with open_portal() as portal:
    ...         devices = await portal.run(BleakScanner.discover)
    """
    library = sniffio.current_async_library()
    if library not in ("asyncio", "trio"):
        raise RuntimeError(f"o2x runs on asyncio or trio, not {library}")
    if library == "asyncio":
        running = asyncio.get_running_loop()
        if loop is None or loop is running:
            yield AsyncioPortal(running, running.call_soon_threadsafe, same_loop=True)
        else:
            yield AsyncioPortal(loop, running.call_soon_threadsafe, same_loop=False)
        return
    import trio

    token = trio.lowlevel.current_trio_token()
    if loop is not None:
        yield AsyncioPortal(loop, token.run_sync_soon, same_loop=False)
        return
    thread = _LoopThread()
    await anyio.to_thread.run_sync(thread.start)
    try:
        yield AsyncioPortal(thread.loop, token.run_sync_soon, same_loop=False)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(thread.stop)


_LOOP_CLASS: type[asyncio.AbstractEventLoop] = getattr(
    asyncio, "ProactorEventLoop" if sys.platform == "win32" else "SelectorEventLoop"
)


class _LoopThread:
    """An asyncio loop running forever in its own thread, until ``stop``."""

    def __init__(self) -> None:
        # The loop class itself, not asyncio.new_event_loop(): a loop policy installed
        # by another library (trio-asyncio's, for one) must not decide what runs here.
        self.loop: asyncio.AbstractEventLoop = _LOOP_CLASS()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="o2x-ble-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
            # Whatever is still running belongs to a caller that has left: cancel it
            # and let it clean up before the loop closes.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
