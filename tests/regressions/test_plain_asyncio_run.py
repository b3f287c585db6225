"""Regression: under a plain ``asyncio.run`` (not anyio's runner) telemetry must arrive.

Found while writing the hostile-peer tests. Notifications reach the vehicle from a
bare loop callback, outside any task; there ``sniffio.current_async_library()``
cannot tell asyncio (anyio's runners set its context variable, which is why the
anyio-driven tests did not see it). A vehicle that asked sniffio which clock to use
on its first notification raised ``AsyncLibraryNotFoundError`` for every one, so a
program started with ``asyncio.run`` connected and then received nothing. The clock
is now resolved when the vehicle is entered, inside a task.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from o2x import Measure, O2XVehicle
from o2x.sim import SimulatedVehicle, VirtualRadio

VIN = "VR1AB12C3D4567890"


def test_readings_arrive_under_plain_asyncio_run(tmp_path: Path) -> None:
    async def main() -> tuple[Measure | None, int]:
        async with VirtualRadio() as radio:
            await radio.add(SimulatedVehicle(VIN, rate_hz=20, battery_soc=64))
            async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
                samples = car.samples()
                async with asyncio.timeout(3):
                    first = await car.get()
                    await anext(samples)
                    await anext(samples)
                return first.data.battery_soc, car.stats.frames

    soc, frames = asyncio.run(main())
    assert soc == Measure(64, "%")
    assert frames >= 2
