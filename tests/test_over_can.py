"""O2XVehicle.over_can end to end: python-can's real virtual bus, a simulated AMI on it,
on asyncio and trio."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import can
import pytest

import o2x
from o2x import (
    AlreadySubscribed,
    ConnectionFailed,
    EventKind,
    IdentityMismatch,
    O2XVehicle,
    Timeouts,
    VehicleStatus,
)
from o2x.sim.can import SimulatedCanCar

pytestmark = pytest.mark.anyio

VIN = "VR1AB12C3D4567890"
OTHER_VIN = "VXKUHZKXZL4123456"
WAIT = 10.0
_channels = itertools.count()


@asynccontextmanager
async def car_on_a_bus(**options: object) -> AsyncIterator[tuple[SimulatedCanCar, can.BusABC]]:
    """A simulated AMI broadcasting on a fresh virtual channel, and the user's bus on it."""
    channel = f"o2x-test-{next(_channels)}"
    vin = str(options.pop("vin", VIN))
    async with SimulatedCanCar(vin, channel=channel, rate_hz=50, **options) as sim:  # type: ignore[arg-type]
        with can.Bus(interface="virtual", channel=channel) as bus:
            yield sim, bus


async def test_readings_come_from_the_bus_and_follow_the_car() -> None:
    async with car_on_a_bus() as (sim, bus):
        async with O2XVehicle.over_can(bus) as car:
            assert car.vin == VIN  # read off the bus: no vin= was given
            assert o2x.current_vin() == VIN
            assert car.address is not None
            assert car.address.startswith("can:")
            first = await car.get()
            assert first.status is VehicleStatus.PARKED
            assert first.data.battery_soc is not None
            assert first.data.battery_soc.value == 80
            assert first.current_alert is None  # not on the decoded bus
            assert first.live is not None
            assert first.live.ready is False
            changes = car.status_changes()
            assert (await anext(changes)).status is VehicleStatus.PARKED
            await sim.drive()
            with anyio.fail_after(WAIT):
                driving = await anext(changes)
            assert driving.status is VehicleStatus.DRIVING
            assert driving.live is not None
            assert driving.live.ready is True
            assert car.stats.identity_verified
            assert car.stats.frames > 0
        assert o2x.current_vin() is None
        # The bus is the user's: still open after leaving.
        bus.send(can.Message(arbitration_id=0x123, data=b"\x00", is_extended_id=False))


async def test_a_silent_bus_is_one_disconnection_and_readings_resume() -> None:
    timeouts = Timeouts(loose_connection=0.5)
    async with (
        car_on_a_bus() as (sim, bus),
        O2XVehicle.over_can(bus, vin=VIN, timeouts=timeouts) as car,
    ):
        events = car.events()
        await car.get()
        await sim.go_silent(2.0)  # four loose-connection periods
        with anyio.fail_after(WAIT):
            event = await anext(events)
        assert event.kind is EventKind.DISCONNECTED
        samples = car.samples()
        with anyio.fail_after(WAIT):
            await anext(samples)  # the bus woke up
        assert car.stats.disconnections == 1
        assert car.stats.reconnects == 1


async def test_a_bus_broadcasting_another_vin_is_refused() -> None:
    async with car_on_a_bus(vin=OTHER_VIN) as (_, bus):
        with anyio.fail_after(WAIT), pytest.raises(IdentityMismatch, match=OTHER_VIN):
            async with O2XVehicle.over_can(bus, vin=VIN):
                pytest.fail("entered a car of another VIN")
    assert o2x.current_vin() is None


async def test_a_bus_without_a_vin_needs_one() -> None:
    timeouts = Timeouts(loose_connection=0.3)
    async with car_on_a_bus(broadcast_vin=False) as (_, bus):
        with anyio.fail_after(WAIT), pytest.raises(ConnectionFailed, match="vin="):
            async with O2XVehicle.over_can(bus, timeouts=timeouts):
                pytest.fail("entered without knowing the VIN")
        async with O2XVehicle.over_can(bus, vin=VIN, timeouts=timeouts) as car:
            info = await car.get()
            assert info.vin == VIN
            assert not car.stats.identity_verified  # taken on trust


async def test_a_refused_charge_is_cant_charge() -> None:
    async with car_on_a_bus() as (sim, bus), O2XVehicle.over_can(bus) as car:
        events = car.events()
        await car.get()
        await sim.drive()  # brake released
        await sim.charge()  # refused: the charger reports a time, no current flows
        with anyio.fail_after(WAIT):
            event = await anext(events)
        assert event.kind is EventKind.CANT_CHARGE


async def test_charging_is_seen_on_the_bus() -> None:
    async with car_on_a_bus() as (sim, bus), O2XVehicle.over_can(bus) as car:
        changes = car.status_changes()
        await anext(changes)
        await sim.charge()
        with anyio.fail_after(WAIT):
            charging = await anext(changes)
        assert charging.status is VehicleStatus.CHARGING
        assert charging.data.remaining_autonomy is None  # the car's 0 is no range
        assert charging.data.charge_delay is not None
        assert charging.live is not None
        assert charging.live.pack_current is not None
        assert charging.live.pack_current > 0


async def test_one_vehicle_at_a_time_holds_for_a_bus_too() -> None:
    async with car_on_a_bus() as (_, bus), O2XVehicle.over_can(bus):
        with pytest.raises(AlreadySubscribed):
            async with O2XVehicle.over_can(bus):
                pytest.fail("two vehicles at once")


async def test_over_can_refuses_what_is_not_a_bus() -> None:
    with pytest.raises(TypeError, match="BusABC"):
        O2XVehicle.over_can("can0")  # type: ignore[arg-type]


def battery_frame(soc: int) -> can.Message:
    # 0x580: current 0 A (bytes 0-1), 50.20 V = 5020 = 0x139C (bytes 2-3), SoC in byte 5.
    data = bytes([0x00, 0x00, 0x9C, 0x13, 0x00, soc, 0x00, 0x00])
    return can.Message(arbitration_id=0x580, data=data, is_extended_id=False)


#: The VIN frames of VIN, ASCII from byte 0: 0x712 chars 1-3, 0x710 4-9, 0x711 10-17.
VIN_FRAMES = [
    can.Message(arbitration_id=0x712, data=b"VR1", is_extended_id=False),
    can.Message(arbitration_id=0x710, data=b"AB12C3", is_extended_id=False),
    can.Message(arbitration_id=0x711, data=b"D4567890", is_extended_id=False),
]


async def test_a_burst_of_frames_is_a_few_readings_and_the_last_value_is_not_lost() -> None:
    channel = f"o2x-test-{next(_channels)}"
    with (
        can.Bus(interface="virtual", channel=channel) as car_side,
        can.Bus(interface="virtual", channel=channel) as bus,
    ):
        for message in [*VIN_FRAMES, battery_frame(50)]:
            car_side.send(message)
        async with O2XVehicle.over_can(bus, vin=VIN) as car:
            samples = car.samples()
            assert car.stats.identity_verified
            # 100 frames over about 0.3 s, each read on its own (a busy bus), then
            # silence: a few readings, and the one held back must still come, with
            # the newest value. (The sleep paces the sender, as a bus's rate does.)
            for i in range(100):
                car_side.send(battery_frame(i if i < 99 else 42))
                await anyio.sleep(0.003)
            seen = []
            with anyio.fail_after(WAIT):
                async for info in samples:
                    assert info.data.battery_soc is not None
                    seen.append(info.data.battery_soc.value)
                    if seen[-1] == 42:
                        break
            assert len(seen) < 20, f"{len(seen)} readings for 100 frames"
            assert car.stats.frames >= 104


async def test_a_bus_that_carries_nothing_of_the_car_says_what_to_check() -> None:
    channel = f"o2x-test-{next(_channels)}"
    with (
        can.Bus(interface="virtual", channel=channel) as other,
        can.Bus(interface="virtual", channel=channel) as bus,
    ):
        other.send(can.Message(arbitration_id=0x123, data=b"\x01", is_extended_id=False))
        with (
            anyio.fail_after(WAIT),
            pytest.raises(o2x.ScanTimeout, match=r"^no vehicle found within 0.3 s; .*OBD-II"),
        ):
            async with O2XVehicle.over_can(bus, timeouts=Timeouts(scan=0.3)):
                pytest.fail("found a car on a bus without one")
