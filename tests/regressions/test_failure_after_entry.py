"""Regressions: a vehicle that stops for good says so, in the error's own type.

* A state file that cannot be written (the vehicle is remembered once it streams)
  used to reach the caller of ``async with`` as an ``ExceptionGroup`` from the
  vehicle's internal task group; it is a ``StateFileError``.
* A failure after the block was entered (the radio cannot scan any more while the
  vehicle is being found again) ended the streams with the error, but ``get()``
  went on returning the last, stale reading and the block was left as if nothing
  had happened. ``get()`` now raises the error, and so does leaving the block,
  unless the block is already raising something.
* ``get()`` on a vehicle left before any reading arrived looped for ever (the end
  of the vehicle sets the event it waits on); it raises ``RuntimeError``.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import anyio
import pytest

from o2x import ConnectionFailed, O2XVehicle, StateFileError, transport
from o2x.sim import SimulatedVehicle, VirtualRadio

pytestmark = pytest.mark.anyio
VIN = "VR1AB12C3D4567890"


async def test_an_unwritable_state_file_raises_state_file_error(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    async with VirtualRadio() as radio:
        await radio.add(SimulatedVehicle(VIN, rate_hz=20))
        with pytest.raises(StateFileError, match="cannot remember the vehicle"):
            async with O2XVehicle.first_time(VIN, radio=radio, state_dir=not_a_directory / "d"):
                pytest.fail("entered without remembering the vehicle")
        # Nothing was left behind: the VIN can be subscribed to again at once.
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            await car.get()


@pytest.fixture
def scanning_fails_after_the_first_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    start_scan = transport.BleakLink.start_scan
    scans = 0

    async def fail_after_the_first(self: transport.BleakLink) -> None:
        nonlocal scans
        scans += 1
        if scans > 1:
            raise ConnectionFailed("the radio failed to scan: the adapter went away")
        await start_scan(self)

    monkeypatch.setattr(transport.BleakLink, "start_scan", fail_after_the_first)


@pytest.mark.usefixtures("scanning_fails_after_the_first_scan")
async def test_a_failure_inside_the_block_reaches_get_streams_and_the_exit(
    tmp_path: Path,
) -> None:
    async def quiet_block(radio: VirtualRadio, sim: SimulatedVehicle) -> None:
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            samples = car.samples()
            await car.get()
            await sim.drop_link()  # the vehicle scans again, and cannot
            with anyio.fail_after(5), pytest.raises(ConnectionFailed):
                async for _ in samples:
                    pass
            with pytest.raises(ConnectionFailed):
                await car.get()
            # The block ends quietly; leaving it raises the failure.

    async with VirtualRadio() as radio:
        sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20))
        with pytest.raises(ConnectionFailed, match="adapter went away"):
            await quiet_block(radio, sim)


@pytest.mark.usefixtures("scanning_fails_after_the_first_scan")
async def test_the_block_s_own_exception_wins_over_the_failure(tmp_path: Path) -> None:
    async def raising_block(radio: VirtualRadio, sim: SimulatedVehicle) -> None:
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            events = car.events()
            await car.get()
            await sim.drop_link()
            with anyio.fail_after(5), pytest.raises(ConnectionFailed):
                async for _ in events:
                    pass
            raise KeyError("the caller's own error")

    async with VirtualRadio() as radio:
        sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20))
        with pytest.raises(KeyError):
            await raising_block(radio, sim)


async def test_get_after_leaving_without_a_reading_raises_instead_of_spinning(
    tmp_path: Path,
) -> None:
    # get() waits for the first reading; the vehicle's end sets the event it waits
    # on, and a get() that only looped back to wait again spun for ever.
    async with VirtualRadio() as radio:
        sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20))
        await sim.go_silent(30)  # connected, subscribed, but nothing sent
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            assert car.latest is None
        with anyio.fail_after(5), pytest.raises(RuntimeError, match="before any reading"):
            await car.get()


@pytest.mark.usefixtures("scanning_fails_after_the_first_scan")
async def test_raising_the_failure_again_and_again_keeps_its_traceback_short(
    tmp_path: Path,
) -> None:
    # The same error object is raised by get(), by every stream and on leaving;
    # each raise used to add its frames to the error's traceback, keeping the
    # callers' locals alive: a program polling get() grew without bound.
    async def poll_after_the_failure(radio: VirtualRadio, sim: SimulatedVehicle) -> None:
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            events = car.events()
            await car.get()
            await sim.drop_link()
            with anyio.fail_after(5), pytest.raises(ConnectionFailed):
                async for _ in events:
                    pass
            lengths = []
            for _ in range(50):
                try:
                    await car.get()
                except ConnectionFailed as exc:
                    lengths.append(len(traceback.extract_tb(exc.__traceback__)))
            assert len(set(lengths)) == 1, lengths[:5]
            with pytest.raises(ConnectionFailed) as again:
                await anext(car.events())
            first = len(traceback.extract_tb(again.value.__traceback__))
            with pytest.raises(ConnectionFailed) as later:
                await anext(car.events())
            assert len(traceback.extract_tb(later.value.__traceback__)) == first

    async with VirtualRadio() as radio:
        sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20))
        # A stream made after the failure ends at once with it (it used to wait
        # for ever): the time limit is for that.
        with anyio.fail_after(10), pytest.raises(ConnectionFailed):
            await poll_after_the_failure(radio, sim)
