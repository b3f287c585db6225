"""Route calls from asyncio or trio to the asyncio loop the simulator's BLE stack lives on.

The portal comes from :mod:`o2x._aio`; these helpers run code directly when the
caller is already on that loop (or nothing is attached yet), else through the portal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from .._aio import AsyncioPortal

__all__ = ["call_async", "call_sync", "on_loop"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


def on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop`` (so it may touch the BLE stack directly)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def call_async(
    portal: AsyncioPortal | None,
    fn: Callable[_P, Coroutine[Any, Any, _T]],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T:
    """Await the coroutine ``fn(*args)`` where the BLE stack lives.

    Without a portal (nothing attached yet) or when already on its loop, ``fn``
    runs right here; otherwise on the portal's loop, awaited from the caller's
    library (asyncio or trio).
    """
    if portal is None or on_loop(portal.loop):
        return await fn(*args, **kwargs)
    return await portal.run(fn, *args, **kwargs)


async def call_sync(
    portal: AsyncioPortal | None,
    fn: Callable[_P, _T],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T:
    """Call the plain function ``fn(*args)`` where the BLE stack lives (see :func:`call_async`)."""
    if portal is None or on_loop(portal.loop):
        return fn(*args, **kwargs)

    async def runner() -> _T:
        return fn(*args, **kwargs)

    return await portal.run(runner)
