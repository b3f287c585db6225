"""The soak scenario, short: a few faults of each kind, on asyncio and on trio.

The harness is ``tests/soak.py``; the long run is ``nox -s soak`` (see
docs/reliability.md, "Soak"). This version must give the same verdict however loaded
the machine is: every wait in the harness is for a condition, bounded generously, and
silences end once the library has reported the loss instead of after a fixed time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import anyio
import pytest
from bleak import BleakClient
from soak import (
    ADAPTER_SIZES,
    DROP,
    ELM327_FAULTS,
    PAUSE,
    SETUP,
    SILENCE,
    SIZE,
    SoakConfig,
    run_soak,
)

from o2x import VehicleStatus
from o2x.dongle.frames import FrameDecoder, InfoFrame
from o2x.dongle.profile import TELEMETRY_UUID
from o2x.sim import LogKind, SimulatedVehicle, VirtualRadio

pytestmark = pytest.mark.anyio

SHORT = SoakConfig(
    rounds=3,
    min_per_kind=3,
    seed=7,
    loose_connection=1.5,
    end_silence_on_loss=True,
    pause=(0.05, 0.3),
    dwell=(0.0, 0.1),
    # Around the edges: 1 byte, an INFO frame (23 bytes) give or take one, MTU - 3.
    sizes=(1, 2, 3, 5, 8, 13, 22, 23, 24, 46, 122, 244),
)


async def test_short_soak(tmp_path: Path) -> None:
    with anyio.fail_after(180):
        report = await run_soak(SHORT, state_dir=tmp_path)
    assert report.passed, "\n" + report.table()
    assert report.disconnections_expected == sum(
        report.injected[k] for k in (DROP, SILENCE, PAUSE, SETUP)
    )
    assert report.injected[SIZE] == SHORT.rounds * len(SHORT.step_kinds)
    assert report.injected[SETUP] == SHORT.rounds
    assert sum(report.setup_steps.values()) == SHORT.rounds
    assert report.statuses_expected >= 4


#: The same through an ELM327 clone in the car's OBD port, with the clone's faults.
SHORT_ELM327 = dataclasses.replace(
    SHORT, dongle="elm327", quirks=ELM327_FAULTS, sizes=ADAPTER_SIZES, loose_connection=2.0
)


async def test_short_soak_through_an_elm327_with_its_faults(tmp_path: Path) -> None:
    with anyio.fail_after(300):
        report = await run_soak(SHORT_ELM327, state_dir=tmp_path)
    assert report.passed, "\n" + report.table()
    assert report.disconnections_expected == sum(
        report.injected[k] for k in (DROP, SILENCE, PAUSE, SETUP)
    )
    assert report.adapter_stats is not None
    assert report.adapter_stats["lines_garbled"] >= SHORT.min_per_kind
    assert report.statuses_expected >= 4


async def test_sim_log_holds_only_frames_that_left_the_dongle_whole() -> None:
    """The ground-truth log promises "only frames actually sent are logged": a perfect
    receiver decodes every STATUS record's frame."""
    async with VirtualRadio() as radio:
        sim = await radio.add(SimulatedVehicle("VR7SAKTEST7654321", rate_hz=1, flush_timeout=5))
        await sim.set_notification_size(23)  # whole INFO frames: nothing waits for a flush
        decoded: list[int] = []
        decoder = FrameDecoder()

        def received(_: object, data: bytearray) -> None:
            decoded.extend(f.seq for f in decoder.feed(data) if isinstance(f, InfoFrame))

        async def until_decoded(count: int) -> None:
            while len(decoded) < count:  # noqa: ASYNC110 - filled by a bleak callback
                await asyncio.sleep(0.01)

        async def scenario() -> None:
            async with BleakClient(sim.address, **radio.client_kwargs()) as client:
                await client.start_notify(TELEMETRY_UUID, received)
                await until_decoded(1)
                await sim.set_notification_size(5)
                await sim.drive()  # 4 notifications of 5 bytes; 3 bytes wait for the flush
                await sim.go_silent(0.2)  # and are dropped
                await sim.set_notification_size(23)
                await until_decoded(2)  # a later frame: the DRIVING one will never come

        with anyio.fail_after(20):
            await radio.portal.run(scenario)
        statuses = [r for r in sim.log if r.kind is LogKind.STATUS]
        assert [r.status for r in statuses] == [VehicleStatus.PARKED, VehicleStatus.DRIVING]
        assert [r.seq for r in statuses if r.seq not in decoded] == []
