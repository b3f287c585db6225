"""O2XVehicle through BLE OBD adapters, end to end on the virtual radio, asyncio and trio.

The simulated car carries an emulated ELM327 clone (FFF0 layout) or a WiCAN (FEE0,
SLCAN) in its OBD port; the library finds it with the same ``first_time(vin)`` that
finds an O2X dongle, reads the car's VIN off the bus, and streams readings decoded
from the car's CAN frames.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from bleak import BleakClient
from bleak.exc import BleakError

import o2x.machine
import o2x.vehicle
from o2x import (
    ConnectionFailed,
    EventKind,
    O2XError,
    O2XVehicle,
    ScanTimeout,
    Timeouts,
    VehicleStatus,
)
from o2x.machine import SURVEY
from o2x.sim import SimulatedVehicle, VirtualRadio
from o2x.sim.adapters import Elm327Quirks

pytestmark = pytest.mark.anyio

T = TypeVar("T")
VIN = "VR1AB12C3D4567890"
OTHER_VIN = "VXKUHZKXZL4123456"
WAIT = 15.0
ADAPTERS = ["elm327", "wican"]


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as r:
        yield r


async def _next(stream: AsyncIterator[T]) -> T:
    with anyio.fail_after(WAIT):
        return await anext(stream)


@pytest.mark.parametrize("dongle", ADAPTERS)
async def test_first_time_finds_the_car_through_its_adapter(
    radio: VirtualRadio, tmp_path: Path, dongle: str
) -> None:
    sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle=dongle))
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            assert car.address == sim.address
            info = await car.get()
            assert info.vin == VIN
            assert info.status is VehicleStatus.PARKED
            assert info.data.battery_soc is not None
            assert info.data.battery_soc.value == 80
            assert info.current_alert is None  # the bus carries no alerts
            assert info.live is not None
            assert info.live.pack_voltage is not None
            assert car.stats.identity_verified
            assert car.stats.frames > 0
            changes = car.status_changes()
            assert (await anext(changes)).status is VehicleStatus.PARKED
            await sim.drive()
            driving = await anext(changes)
            assert driving.status is VehicleStatus.DRIVING
            assert driving.live is not None
            assert driving.live.ready is True
    remembered = json.loads((tmp_path / "vehicle.json").read_text())
    assert remembered == {
        "format": 1,
        "vin": VIN,
        "address": sim.address,
        "dongle": "adapter",
    }


@pytest.mark.parametrize("dongle", ADAPTERS)
async def test_previous_reconnects_to_the_remembered_adapter(
    radio: VirtualRadio, tmp_path: Path, dongle: str
) -> None:
    await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle=dongle))
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            await car.get()
    # previous() has no time limit: a scan timeout of a second must not matter.
    with anyio.fail_after(WAIT):
        async with O2XVehicle.previous(
            radio=radio, state_dir=tmp_path, timeouts=Timeouts(scan=1)
        ) as car:
            info = await car.get()
    assert info.vin == VIN


async def test_another_cars_adapter_is_left_and_the_right_one_found(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    neighbour = await radio.add(SimulatedVehicle(OTHER_VIN, rate_hz=20, dongle="elm327"))
    ours = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="wican"))
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            assert car.address == ours.address
            assert (await car.get()).vin == VIN
            assert car.stats.identity_verified
    assert neighbour.address != ours.address


async def test_only_another_cars_adapter_in_range_is_a_scan_timeout_naming_it(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    neighbour = await radio.add(SimulatedVehicle(OTHER_VIN, rate_hz=20, dongle="elm327"))
    with anyio.fail_after(WAIT), pytest.raises(ScanTimeout) as raised:
        async with O2XVehicle.first_time(
            VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(scan=3)
        ):
            pytest.fail("entered the wrong car")
    assert f"{neighbour.address} reads {OTHER_VIN}" in str(raised.value)


async def test_a_named_adapter_on_a_bus_without_a_vin_is_used_unverified(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="elm327", broadcast_vin=False))
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(
            VIN,
            radio=radio,
            state_dir=tmp_path,
            adapter=sim.address,
            timeouts=Timeouts(loose_connection=0.5),
        ) as car:
            info = await car.get()
            assert info.vin == VIN
            assert not car.stats.identity_verified


async def test_a_long_loose_connection_caps_the_wait_for_a_vin_within_the_set_up_guard(
    radio: VirtualRadio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The VIN wait is loose_connection, capped (MAX_VIN_WAIT) below the 30 s guard on
    # one link's set-up: else a named adapter on a bus without a VIN, with a long
    # loose_connection, would be cut by the guard at every attempt and never used.
    monkeypatch.setattr(o2x.vehicle, "MAX_VIN_WAIT", 0.5)
    monkeypatch.setattr(o2x.machine, "CONNECT_GUARD", 4.0)
    sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="elm327", broadcast_vin=False))
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(
            VIN,
            radio=radio,
            state_dir=tmp_path,
            adapter=sim.address,
            timeouts=Timeouts(scan=10, loose_connection=3600),
        ) as car:
            assert (await car.get()).vin == VIN
            assert not car.stats.identity_verified


async def test_the_only_adapter_without_a_vin_is_used_after_the_survey(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="elm327", broadcast_vin=False))
    started = anyio.current_time()
    with anyio.fail_after(WAIT + SURVEY):
        async with O2XVehicle.first_time(
            VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(loose_connection=0.5)
        ) as car:
            assert anyio.current_time() - started >= SURVEY
            assert not car.stats.identity_verified
            assert (await car.get()).data.battery_soc is not None


async def test_a_refused_charge_is_cant_charge_on_the_bus(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="elm327"))
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            events = car.events()
            await car.get()
            await sim.drive()  # brake released
            await sim.charge()  # refused, but plugged in: the charger reports a time
            event = await _next(events)
            assert event.kind is EventKind.CANT_CHARGE


async def test_a_sleeping_car_is_one_disconnection_and_readings_resume(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="elm327"))
    timeouts = Timeouts(loose_connection=0.5)
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(
            VIN, radio=radio, state_dir=tmp_path, timeouts=timeouts
        ) as car:
            events = car.events()
            await car.get()
            assert sim.adapter is not None
            commands = sim.adapter.emulator.stats.commands
            await sim.go_silent(2.0)  # the bus goes quiet; the BLE link stays up
            assert (await _next(events)).kind is EventKind.DISCONNECTED
            samples = car.samples()
            await _next(samples)  # the car woke: readings again
            assert car.stats.disconnections == 1
            assert car.stats.reconnects == 1
            # The adapter was waited on, not reconnected and set up again.
            assert sim.adapter.emulator.stats.commands == commands
            assert sim.connected


async def test_a_dropped_link_is_reconnected(radio: VirtualRadio, tmp_path: Path) -> None:
    sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="wican"))
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            events = car.events()
            await car.get()
            await sim.drop_link()
            assert (await _next(events)).kind is EventKind.DISCONNECTED
            samples = car.samples()
            await _next(samples)
            assert car.stats.reconnects == 1


@pytest.mark.parametrize(
    "quirks",
    [
        Elm327Quirks(keeps_echo=True, ignores_spaces_off=True),
        Elm327Quirks(garbage=0.05),
        Elm327Quirks(answer_delay=0.05),
    ],
    ids=["echo-and-spaces", "garbage", "slow"],
)
async def test_clone_quirks_are_survived(
    radio: VirtualRadio, tmp_path: Path, quirks: Elm327Quirks
) -> None:
    sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="elm327", quirks=quirks))
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            assert (await car.get()).vin == VIN
            changes = car.status_changes()
            await _next(changes)
            await sim.drive()
            assert (await _next(changes)).status is VehicleStatus.DRIVING


async def test_an_adapter_that_cannot_do_can_is_never_the_car(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    await radio.add(
        SimulatedVehicle(VIN, rate_hz=20, dongle="elm327", quirks=Elm327Quirks(no_can=True))
    )
    with anyio.fail_after(WAIT), pytest.raises(O2XError) as raised:
        async with O2XVehicle.first_time(
            VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(scan=3)
        ):
            pytest.fail("streamed from an adapter that cannot read CAN")
    assert isinstance(raised.value, ScanTimeout | ConnectionFailed)
    assert "ATSP6" in str(raised.value) or "CAN" in str(raised.value)


# --- pairing: the WiCAN asks for a passkey (123456 unless changed) -------------------------


async def test_a_wican_with_another_passkey_needs_it(radio: VirtualRadio, tmp_path: Path) -> None:
    await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="wican", passkey="654321"))
    with anyio.fail_after(WAIT), pytest.raises(ScanTimeout) as raised:
        async with O2XVehicle.first_time(
            VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(scan=3)
        ):
            pytest.fail("paired with the wrong passkey")
    message = str(raised.value)
    assert "could not pair" in message
    assert "123456" in message  # the passkey tried, so the user sees which
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(
            VIN, radio=radio, state_dir=tmp_path, passkey="654321"
        ) as car:
            assert (await car.get()).vin == VIN


async def test_an_unpaired_central_cannot_write_to_a_wican(radio: VirtualRadio) -> None:
    sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="wican"))
    pipe = "0000fee1-0000-1000-8000-00805f9b34fb"

    async def attempt() -> None:
        async with BleakClient(sim.address, **radio.client_kwargs()) as client:
            with pytest.raises(BleakError):
                await client.write_gatt_char(pipe, b"O\r", response=True)
            await client.pair(passkey="123456")
            await client.write_gatt_char(pipe, b"O\r", response=True)

    with anyio.fail_after(WAIT):
        await radio.portal.run(attempt)
    assert sim.adapter is not None
    assert sim.adapter.bytes_written == 2  # only the write after pairing got through


def test_a_passkey_is_six_digits() -> None:
    with pytest.raises(ValueError, match="six digits"):
        O2XVehicle.first_time(VIN, passkey="1234")


async def test_an_adapter_without_a_vin_found_first_is_not_taken_for_the_car(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    # A neighbour's adapter, on a bus that names no VIN, is in range from the start
    # and tried at once; the car's own adapter arrives a second later, while o2x waits
    # (5 s, the default loose_connection) for a VIN on the neighbour's bus. By then
    # the clock has run the survey's 5 s, but the scan has not (it stopped for the
    # attempt): the neighbour's is not trusted, and the car's own is found.
    await radio.add(SimulatedVehicle(OTHER_VIN, rate_hz=20, dongle="elm327", broadcast_vin=False))
    async with anyio.create_task_group() as tg:

        async def arrive_later() -> None:
            await anyio.sleep(1.0)  # a car driving up
            await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="wican"))

        tg.start_soon(arrive_later)
        with anyio.fail_after(WAIT + SURVEY):
            async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
                assert car.stats.identity_verified
                assert (await car.get()).vin == VIN


async def test_a_wican_set_to_its_elm327_protocol_is_spoken_to_in_elm327(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    sim = await radio.add(
        SimulatedVehicle(VIN, rate_hz=20, dongle="wican", wican_protocol="elm327")
    )
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            assert car.address == sim.address
            assert (await car.get()).data.battery_soc is not None
            assert car.stats.identity_verified
