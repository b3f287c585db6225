"""O2XVehicle end to end: bleak's public classes over the virtual radio, on asyncio and trio."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

import o2x
import o2x.sdk
from o2x import (
    AlreadySubscribed,
    BluetoothUnavailable,
    EventKind,
    InvalidVIN,
    NoPreviousVehicle,
    O2XVehicle,
    ScanTimeout,
    StateFileDamaged,
    StateFileError,
    Timeouts,
    VehicleStatus,
    _state,
)
from o2x.sim import SimulatedVehicle, VirtualRadio

pytestmark = pytest.mark.anyio

T = TypeVar("T")
VIN = "VR1AB12C3D4567890"
OTHER_VIN = "VXKUHZKXZL4123456"
# Generous bounds for waits on the virtual radio: a stuck test fails instead of hanging.
WAIT = 10.0


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as r:
        yield r


@pytest.fixture
async def car_sim(radio: VirtualRadio) -> SimulatedVehicle:
    return await radio.add(SimulatedVehicle(VIN, rate_hz=20))


def _o2x_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("o2x")]


async def _next(stream: AsyncIterator[T]) -> T:
    with anyio.fail_after(WAIT):
        return await anext(stream)


async def test_first_time_connects_streams_and_remembers(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    async with O2XVehicle.first_time(VIN.lower(), radio=radio, state_dir=tmp_path) as car:
        assert o2x.current_vin() == VIN
        assert car.vin == VIN
        assert car.address == car_sim.address
        info = await car.get()
        assert info.vin == VIN
        assert info.received_at.tzinfo is not None
        assert car.latest is not None
    assert o2x.current_vin() is None
    state = tmp_path / "vehicle.json"
    saved = json.loads(state.read_text())
    assert saved["vin"] == VIN
    assert saved["address"] == car_sim.address
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


async def test_scripted_drive_is_seen_in_order(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
        changes = car.status_changes()
        assert (await _next(changes)).status is VehicleStatus.PARKED
        await car_sim.drive()
        driving = await _next(changes)
        assert driving.status is VehicleStatus.DRIVING
        assert driving.data.rnd is o2x.Gear.DRIVE
        await car_sim.park()
        assert (await _next(changes)).status is VehicleStatus.PARKED
        await car_sim.charge()
        charging = await _next(changes)
        assert charging.status is VehicleStatus.CHARGING
        # The library saw exactly the transitions the car made, in order.
        truth = [r.status for r in car_sim.log if r.kind == "status"]
        assert truth == [
            VehicleStatus.PARKED,
            VehicleStatus.DRIVING,
            VehicleStatus.PARKED,
            VehicleStatus.CHARGING,
        ]


async def test_samples_arrive_in_sequence_and_streams_are_independent(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
        first, second = car.samples(), car.samples()
        a = [await _next(first) for _ in range(10)]
        b = [await _next(second) for _ in range(10)]
        assert a == b  # both consumers see every sample
        assert car.stats.seq_gaps == 0
        assert car.stats.crc_errors == 0
        assert car.stats.frames >= 10
        assert car.stats.samples_dropped == 0


async def test_slow_consumer_loses_oldest_samples_and_they_are_counted(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
        slow = car.samples(buffer=2)
        fast = car.samples()
        for _ in range(6):  # the slow stream is not read meanwhile
            await _next(fast)
        assert car.stats.samples_dropped >= 3
        assert slow.dropped == car.stats.samples_dropped
        kept = [await _next(slow), await _next(slow)]
        assert kept[0].received_at <= kept[1].received_at


async def test_cant_charge_event(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
        events = car.events()
        await car_sim.emit_event(EventKind.CANT_CHARGE)
        event = await _next(events)
        assert event.kind is EventKind.CANT_CHARGE
        assert o2x.sdk.to_sdk(event) == {"event": "cantCharge"}


async def test_link_drop_emits_one_disconnected_and_reconnects(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
        events, samples = car.events(), car.samples()
        await _next(samples)
        assert await car_sim.drop_link()
        assert (await _next(events)).kind is EventKind.DISCONNECTED
        after = car.samples()  # only readings from after the loss
        await _next(after)  # streams continue after the automatic reconnection
        assert car.stats.disconnections == 1
        assert car.stats.reconnects == 1
        assert car.address == car_sim.address


async def test_silence_longer_than_loose_connection_counts_as_a_loss(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    timeouts = Timeouts(loose_connection=0.3)
    async with O2XVehicle.first_time(
        VIN, radio=radio, state_dir=tmp_path, timeouts=timeouts
    ) as car:
        events, samples = car.events(), car.samples()
        await _next(samples)
        # Longer than loose_connection, shorter than twice it: the silence ends before
        # the new link's own deadline, so it is exactly one loss.
        await car_sim.go_silent(0.5)
        assert (await _next(events)).kind is EventKind.DISCONNECTED
        await _next(car.samples())
        assert car.stats.disconnections == 1
        assert car.stats.reconnects == 1


async def test_missing_vehicle_raises_scan_timeout(radio: VirtualRadio, tmp_path: Path) -> None:
    await radio.add(SimulatedVehicle(OTHER_VIN))
    vehicle = O2XVehicle.first_time(
        VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(scan=0.5)
    )
    with anyio.fail_after(WAIT), pytest.raises(ScanTimeout, match=VIN) as caught:
        async with vehicle:
            pytest.fail("entered without a vehicle")
    assert isinstance(caught.value, TimeoutError)
    assert o2x.current_vin() is None
    assert not (tmp_path / "vehicle.json").exists()


async def test_previous_reconnects_to_the_remembered_vehicle(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    await radio.add(SimulatedVehicle(OTHER_VIN))
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path):
        pass
    with anyio.fail_after(WAIT):
        async with O2XVehicle.previous(radio=radio, state_dir=tmp_path) as car:
            assert car.vin == VIN
            assert (await car.get()).vin == VIN


async def test_previous_uses_environment_state_dir(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("O2X_STATE_DIR", str(tmp_path / "env"))
    async with O2XVehicle.first_time(VIN, radio=radio):
        pass
    # On a virtual radio: in the simulated runs' own directory within it.
    assert (tmp_path / "env" / "simulated" / "vehicle.json").exists()
    assert not (tmp_path / "env" / "vehicle.json").exists()
    async with O2XVehicle.previous(radio=radio) as car:
        assert car.vin == VIN


async def test_a_virtual_radio_never_replaces_the_real_remembered_car(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("O2X_STATE_DIR", str(tmp_path))
    real = tmp_path / "vehicle.json"
    _state.save(real, _state.RememberedVehicle(OTHER_VIN, "C1:11:11:11:11:11"))
    before = real.read_bytes()
    async with O2XVehicle.first_time(VIN, radio=radio) as car:
        await car.get()
    assert real.read_bytes() == before  # the real car is still the one remembered
    assert _state.load(tmp_path / "simulated" / "vehicle.json") == _state.RememberedVehicle(
        VIN, car_sim.address
    )
    async with O2XVehicle.previous(radio=radio) as car:  # the simulated one, on the radio
        assert car.vin == VIN
    # The command line reads the same two places.
    from click.testing import CliRunner

    from o2x.cli import cli

    assert CliRunner().invoke(cli, ["vin"]).stdout.strip() == OTHER_VIN
    assert CliRunner().invoke(cli, ["vin", "--simulate"]).stdout.strip() == VIN


async def test_state_dir_given_with_a_virtual_radio_is_used_as_it_is(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path):
        pass
    assert _state.load(tmp_path / "vehicle.json") == _state.RememberedVehicle(VIN, car_sim.address)
    assert not (tmp_path / "simulated").exists()


async def test_first_time_refuses_a_damaged_state_file_on_entry_and_keeps_it(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    state = tmp_path / "vehicle.json"
    state.write_bytes(b"garbage")
    with anyio.fail_after(WAIT), pytest.raises(StateFileDamaged) as caught:
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path):
            pytest.fail("entered over a damaged state file")
    error = caught.value
    assert error.path == str(state)
    assert error.problem.startswith("Expecting value")  # what is wrong, in words
    message = str(error)
    assert str(state) in message
    assert "damaged" in message
    assert "delete it" in message
    assert "--" not in message  # spoken to a Python caller, not to a command line
    assert state.read_bytes() == b"garbage"
    assert car_sim.frames_sent == 0  # refused before any connection
    assert o2x.current_vin() is None


async def test_previous_without_a_remembered_vehicle(tmp_path: Path) -> None:
    # No radio at all: the error comes before any Bluetooth is touched.
    with pytest.raises(NoPreviousVehicle, match="first_time"):
        async with O2XVehicle.previous(state_dir=tmp_path):
            pytest.fail("entered without a remembered vehicle")


async def test_damaged_state_file_is_named_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "vehicle.json"
    state.write_text("{not json")
    with pytest.raises(StateFileError, match=str(state).replace("\\", "\\\\")):
        async with O2XVehicle.previous(state_dir=tmp_path):
            pytest.fail("entered with a damaged state file")
    assert state.read_text() == "{not json"


async def test_wrong_identity_is_rejected_and_scanning_continues(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    await radio.add(SimulatedVehicle(VIN, identity_vin=OTHER_VIN))
    vehicle = O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(scan=2))
    with anyio.fail_after(WAIT), pytest.raises(o2x.ConnectionFailed, match=OTHER_VIN):
        async with vehicle:
            pytest.fail("accepted a dongle serving another vehicle's identity")


async def test_only_one_vehicle_at_a_time(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    await radio.add(SimulatedVehicle(OTHER_VIN))
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path):
        with pytest.raises(AlreadySubscribed, match=VIN):
            async with O2XVehicle.first_time(OTHER_VIN, radio=radio, state_dir=tmp_path):
                pytest.fail("two vehicles subscribed at once")
        assert o2x.current_vin() == VIN
    async with O2XVehicle.first_time(OTHER_VIN, radio=radio, state_dir=tmp_path):
        assert o2x.current_vin() == OTHER_VIN


async def test_cancellation_mid_stream_cleans_up(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    received = 0
    with anyio.move_on_after(WAIT) as scope:
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            async for _ in car.samples():
                received += 1
                if received == 3:
                    scope.cancel()
    assert scope.cancelled_caught
    assert received == 3
    assert o2x.current_vin() is None
    with anyio.fail_after(WAIT):
        await car_sim.wait_disconnected()
    # Streams end once the vehicle is closed.
    stream_after = car.events()
    with pytest.raises(StopAsyncIteration):
        await anext(stream_after)


async def test_leaving_by_exception_disconnects(
    radio: VirtualRadio, car_sim: SimulatedVehicle, tmp_path: Path
) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path):
            raise Boom
    with anyio.fail_after(WAIT):
        await car_sim.wait_disconnected()
    assert o2x.current_vin() is None


async def test_cancelled_while_scanning_leaves_nothing(radio: VirtualRadio, tmp_path: Path) -> None:
    with anyio.move_on_after(0.3) as scope:
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path):
            pytest.fail("found a vehicle that is not there")
    assert scope.cancelled_caught
    assert o2x.current_vin() is None


@pytest.mark.skipif(
    os.path.exists("/run/dbus/system_bus_socket")
    or os.path.exists("/var/run/dbus/system_bus_socket"),
    reason="this machine has a D-Bus system bus, so BlueZ may be reachable",
)
async def test_system_bluetooth_missing_is_a_clear_error(tmp_path: Path) -> None:
    with anyio.fail_after(WAIT), pytest.raises(BluetoothUnavailable) as caught:
        async with O2XVehicle.first_time(VIN, state_dir=tmp_path):
            pytest.fail("scanned without Bluetooth")
    message = str(caught.value)
    assert "Bluetooth is not available" in message
    assert "\n" not in message
    assert o2x.current_vin() is None
    assert _o2x_threads() == []


def test_first_time_validates_the_vin_when_called() -> None:
    with pytest.raises(InvalidVIN, match="17 characters"):
        O2XVehicle.first_time("VR1AB12")
    with pytest.raises(InvalidVIN, match="'O'"):
        O2XVehicle.first_time("VR1AB12C3D456789O")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scan": -1}, "scan"),
        ({"scan": 0}, "scan"),
        ({"loose_connection": float("nan")}, "loose_connection"),
        ({"change_status": -0.5}, "change_status"),
    ],
)
def test_timeouts_are_validated(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"Timeouts.{field}"):
        Timeouts(**kwargs)


def test_streams_need_the_vehicle_to_be_entered() -> None:
    car = O2XVehicle.first_time(VIN)
    with pytest.raises(RuntimeError, match="async with"):
        car.samples()
