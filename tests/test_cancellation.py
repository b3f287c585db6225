"""Cancellation at every await point of entering, streaming and leaving, on asyncio and trio.

The scenarios are what a user writes: enter the vehicle (scan, connect, read the
identity, subscribe), read samples, leave (or leave by an exception). Every time a
coroutine of the scenario is about to give control back to its event loop counts as
one step: the user's task, the vehicle's driver task, and every coroutine the library
runs on the BLE loop through the portal (bleak's and the radio's own awaits, on the
radio's thread under trio). The test runs the scenario once to count the steps, then
again for each N, cancelling the user's cancel scope at the N-th step. That walks a
cancellation through every await point of the library, including while the radio is
in the middle of something (a connection being set up, a GATT read, a subscription).

After each cancellation nothing may be left: no task of the library on the caller's
loop or the radio's, no connection, no scan, no claimed VIN, no extra thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Coroutine, Generator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sniffio

import o2x
from o2x import O2XVehicle, _state
from o2x._aio import AsyncioPortal
from o2x.sim import SimulatedVehicle, VirtualRadio

pytestmark = pytest.mark.anyio

VIN = "VR1AB12C3D4567890"
WAIT = 10.0
# How long the radio may take to report that a link the library dropped is down.
LINK_DOWN = 2.0


class Steps:
    """Counts scheduling steps while ``scope`` is set; at step ``cancel_at`` cancels it.

    Steps are counted on the caller's loop and on the BLE loop, which is another
    thread under trio: from there the cancellation is handed to the caller's loop.
    """

    def __init__(self) -> None:
        self.count = 0
        self.cancel_at: int | None = None
        self.scope: anyio.CancelScope | None = None
        self.to_caller: Callable[..., object] | None = None
        self._caller_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def arm(self, cancel_at: int, scope: anyio.CancelScope, portal: AsyncioPortal) -> None:
        self.count, self.cancel_at, self.scope = 0, cancel_at, scope
        self.to_caller = portal.to_caller_soon
        self._caller_thread = threading.current_thread()

    def disarm(self) -> None:
        self.scope = None

    def step(self) -> None:
        scope = self.scope
        if scope is None:
            return
        with self._lock:
            self.count += 1
            hit = self.count == self.cancel_at
        if hit:
            if threading.current_thread() is self._caller_thread:
                scope.cancel()
            else:
                assert self.to_caller is not None
                self.to_caller(scope.cancel)


class Counted:
    """Awaits ``coro`` transparently, counting each time it yields to the event loop."""

    def __init__(self, coro: Coroutine[Any, Any, Any], steps: Steps) -> None:
        self._coro = coro
        self._steps = steps

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self._coro.__await__()
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = inner.send(value) if error is None else inner.throw(error)
            except StopIteration as stop:
                return stop.value
            self._steps.step()
            try:
                value, error = (yield yielded), None
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as exc:  # a cancellation, delivered to the inner coroutine
                value, error = None, exc


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> Steps:
    """Count the steps of the vehicle's driver task (it runs in the vehicle's task
    group) and of everything the library runs on the BLE loop (bleak, the radio)."""
    counter = Steps()
    drive = O2XVehicle._drive
    run = AsyncioPortal.run

    async def counted_drive(self: O2XVehicle) -> None:
        await Counted(drive(self), counter)

    async def counted_run(self: AsyncioPortal, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        async def counted() -> Any:
            return await Counted(fn(*args, **kwargs), counter)

        return await run(self, counted)

    monkeypatch.setattr(O2XVehicle, "_drive", counted_drive)
    monkeypatch.setattr(AsyncioPortal, "run", counted_run)
    return counter


def _o2x_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("o2x")]


def _library_task(task: asyncio.Task[Any]) -> bool:
    # Tasks of the simulated car (its ticker, its advertising) are the peripheral's,
    # not the library's; everything else on the BLE loop ran on the library's behalf.
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "o2x/sim/vehicle.py" not in filename.replace("\\", "/")


async def _ble_loop_tasks(radio: VirtualRadio) -> set[asyncio.Task[Any]]:
    """The tasks on the loop the BLE stack lives on (the caller's loop under asyncio)."""

    async def tasks() -> set[asyncio.Task[Any]]:
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    return await radio.portal.run(tasks)


async def _radio_state(radio: VirtualRadio) -> tuple[int, int]:
    """(connections of the radio's central, scanners listening on the air)."""

    async def state() -> tuple[int, int]:
        air = radio.air
        return len(air.central.connections), len(air._listeners)

    return await radio.portal.run(state)


def _child_nurseries() -> int:
    if sniffio.current_async_library() != "trio":
        return 0
    import trio

    return len(trio.lowlevel.current_task().child_nurseries)


async def _run_cancelled_at(
    n: int,
    *,
    radio: VirtualRadio,
    car_sim: SimulatedVehicle,
    steps: Steps,
    state_dir: Path,
    scenario: Callable[[VirtualRadio, Path], Coroutine[Any, Any, None]],
) -> bool:
    """Run the scenario, cancelled at step ``n`` (0: before it starts); True if it was."""
    tasks_before = await _ble_loop_tasks(radio)
    nurseries_before = _child_nurseries()
    with anyio.fail_after(WAIT):  # a hang fails the test instead of blocking it
        with anyio.CancelScope() as scope:
            steps.arm(n, scope, radio.portal)
            if n == 0:
                scope.cancel()
            await Counted(scenario(radio, state_dir), steps)
        steps.disarm()
        fired = n >= 0 and steps.count >= n

        # Nothing is left, at once: no task, no claimed VIN, no scan, no thread...
        leftovers = {t for t in await _ble_loop_tasks(radio) - tasks_before if not t.done()}
        assert [t for t in leftovers if _library_task(t)] == [], f"cancelled at step {n}"
        assert _child_nurseries() == nurseries_before
        assert o2x.current_vin() is None
        expected_threads = ["o2x-ble-loop"] if sniffio.current_async_library() == "trio" else []
        assert _o2x_threads() == expected_threads  # the radio's own, under trio
        # ... and the link the library had, if any, goes down within a bound.
        with anyio.fail_after(LINK_DOWN):
            await car_sim.wait_disconnected()
        connections, scanners = await _radio_state(radio)
        assert (connections, scanners) == (0, 0), f"cancelled at step {n}"
    # A vehicle remembered before the cancellation is remembered whole.
    remembered = _state.load(state_dir / "vehicle.json")
    assert remembered is None or remembered.vin == VIN
    return fired


async def _enter_stream_leave(radio: VirtualRadio, state_dir: Path) -> None:
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=state_dir) as car:
        samples = car.samples()
        for _ in range(3):
            await anext(samples)


class _Leave(Exception):
    pass


async def _enter_stream_leave_by_error(radio: VirtualRadio, state_dir: Path) -> None:
    # Leaving by an exception runs the same shutdown with an error in flight; the
    # exception must come out as it went in (not in an exception group).
    with contextlib.suppress(_Leave):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=state_dir) as car:
            await car.get()
            raise _Leave


async def _previous_stream_leave(radio: VirtualRadio, state_dir: Path) -> None:
    # previous() reads the remembered vehicle in a worker thread first.
    async with O2XVehicle.previous(radio=radio, state_dir=state_dir) as car:
        samples = car.samples()
        await anext(samples)


@pytest.mark.parametrize(
    "scenario", [_enter_stream_leave, _enter_stream_leave_by_error, _previous_stream_leave]
)
async def test_cancelled_at_every_step_leaves_nothing_behind(
    steps: Steps,
    tmp_path: Path,
    scenario: Callable[[VirtualRadio, Path], Coroutine[Any, Any, None]],
) -> None:
    async with VirtualRadio() as radio:
        car_sim = await radio.add(SimulatedVehicle(VIN, rate_hz=50))
        _state.save(tmp_path / "vehicle.json", _state.RememberedVehicle(VIN, car_sim.address))
        # A run without cancellation counts the steps.
        run = functools.partial(
            _run_cancelled_at,
            radio=radio,
            car_sim=car_sim,
            steps=steps,
            state_dir=tmp_path,
            scenario=scenario,
        )
        assert not await run(-1)
        total = steps.count
        assert total >= 5
        cancelled = 0
        # Then one run per step; the number of steps varies a little from run to run
        # (a sample may already be there, or not), so go on until a run ends first.
        n = 0
        while await run(n):
            cancelled += 1
            n += 1
            assert n <= 4 * total, "the scenario never ran to its end"
        assert cancelled >= total - 2
        print(f"\n{scenario.__name__}: {total} steps, cancelled at each of {cancelled}")
        # The library is still usable after all that, on the same radio.
        with anyio.fail_after(WAIT):
            async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
                assert (await car.get()).vin == VIN
    assert _o2x_threads() == []  # the radio's loop thread is gone with it
