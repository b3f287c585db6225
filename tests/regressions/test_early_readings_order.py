"""Regression: a reading that raced the subscription must not overwrite newer ones.

Frames that arrive before the driver has handled the subscription's confirmation
are held, then fed to the state machine with it. Their deliveries used to be queued
behind the remembering of the vehicle (a state file written in a worker thread);
frames arriving during that write went straight to the consumers, and the held ones
were delivered after them: ``car.latest`` went back to an older reading and the
status stream started on a status the car had already left, and stayed there,
because the machine had already reported the new one. Deliveries the machine has
produced now go out before the driver awaits anything.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.from_thread
import pytest

from o2x import O2XVehicle, VehicleStatus, _state
from o2x.sim import SimulatedVehicle, VirtualRadio

pytestmark = pytest.mark.anyio
VIN = "VR1AB12C3D4567890"


async def test_readings_received_while_remembering_are_not_overtaken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with VirtualRadio() as radio:
        # flush_timeout=0: the first frame goes out as soon as the client subscribes,
        # so it reaches the vehicle before the confirmation has been handled.
        sim = await radio.add(SimulatedVehicle(VIN, rate_hz=50, flush_timeout=0))
        car = O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path)
        real_save = _state.save
        at_save: list[VehicleStatus | None] = []

        async def drive_until_seen() -> None:
            at_save.append(None if car.latest is None else car.latest.status)
            changes = car.status_changes()
            await sim.drive()
            with anyio.fail_after(5):
                async for info in changes:
                    if info.status is VehicleStatus.DRIVING:
                        break

        def save_while_driving(path: Path, vehicle: _state.RememberedVehicle) -> None:
            # In the worker thread that writes the state file: the car starts
            # driving, and the write ends only once a driving reading was delivered.
            anyio.from_thread.run(drive_until_seen)
            real_save(path, vehicle)

        monkeypatch.setattr(_state, "save", save_while_driving)
        async with car:
            assert car.latest is not None
            assert car.latest.status is VehicleStatus.DRIVING
            first_status = await anext(car.status_changes())
            assert first_status.status is VehicleStatus.DRIVING
            # Later frames keep arriving: latest only moves forward.
            before = car.latest
            await anext(car.samples())
            assert car.latest is not before
        # The held reading was delivered before the write began, not after it.
        assert at_save == [VehicleStatus.PARKED]
