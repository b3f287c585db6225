"""The virtual radio through bleak's public classes: scanning, connecting, GATT, notifications."""

from __future__ import annotations

import functools
import time
from typing import Any

import anyio
import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from o2x import Gear, ParkBrake, SystemState
from o2x.dongle.frames import IdentityFrame, decode_frame
from o2x.dongle.profile import IDENTITY_UUID, SERVICE_UUID, TELEMETRY_UUID
from o2x.sim import SimulatedVehicle, VirtualRadio

pytestmark = pytest.mark.anyio

VIN_A = "VR7ABCDEF12345678"
VIN_B = "VXKUHZKXZL4123456"


async def test_discover_reports_the_advertisement_and_scan_response(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A, rssi=-71, tx_power=4))
    found = await ble.discover(seconds=0.3)
    assert vehicle.address in found
    device, ad = found[vehicle.address]
    assert ad.manufacturer_data == {0xFFFF: b"\x01" + VIN_A.encode()}
    assert ad.local_name == "O2X-345678"
    assert device.name == "O2X-345678"
    assert ad.service_uuids == [SERVICE_UUID]
    assert ad.rssi == -71
    assert ad.tx_power == 4
    by_name = await ble.run(
        functools.partial(
            BleakScanner.find_device_by_name, "O2X-345678", timeout=3, **radio.scanner_kwargs()
        )
    )
    assert by_name is not None
    assert by_name.address == vehicle.address


async def test_passive_scanning_gets_no_scan_response(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    found = await ble.discover(seconds=0.3, scanning_mode="passive")
    _, ad = found[vehicle.address]
    assert ad.manufacturer_data[0xFFFF][1:] == VIN_A.encode()
    assert ad.local_name is None
    assert ad.service_uuids == []


async def test_service_uuid_filter(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    assert vehicle.address in await ble.discover(service_uuids=[SERVICE_UUID])
    assert await ble.discover(service_uuids=["0000180f-0000-1000-8000-00805f9b34fb"]) == {}


async def test_two_vehicles_are_told_apart_by_vin(radio, ble):
    a = await radio.add(SimulatedVehicle(VIN_A, seed=1))
    b = await radio.add(SimulatedVehicle(VIN_B, seed=2))
    assert a.address != b.address
    device_b, ad_b = await ble.find_vin(VIN_B)
    device_a, _ = await ble.find_vin(VIN_A)
    assert (device_a.address, device_b.address) == (a.address, b.address)
    assert ad_b.local_name == "O2X-123456"
    await b.set(battery_soc=21)
    await a.set(battery_soc=87)
    async with ble.connect(device_b) as client:
        stream = await ble.stream(client)
        assert (await stream.next_info()).battery_soc == 21
        identity = decode_frame(await ble.run(client.read_gatt_char, IDENTITY_UUID))
        assert isinstance(identity, IdentityFrame)
        assert identity.vin == VIN_B


async def test_advertisement_data_iterator(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))

    async def first_o2x() -> tuple[BLEDevice, AdvertisementData]:
        async with BleakScanner(**radio.scanner_kwargs()) as scanner:
            async for device, ad in scanner.advertisement_data():
                if 0xFFFF in ad.manufacturer_data:
                    return device, ad
        raise AssertionError("unreachable")

    with anyio.fail_after(3):
        device, ad = await ble.run(first_o2x)
    assert device.address == vehicle.address
    assert ad.manufacturer_data[0xFFFF] == b"\x01" + VIN_A.encode()


async def test_connect_negotiates_mtu_and_discovers_the_o2x_service(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A, firmware=(2, 7)))
    device = await ble.find(vehicle)
    assert device is not None
    async with ble.connect(device) as client:
        assert client.is_connected
        assert client.mtu_size == 247
        assert client.name == "O2X-345678"
        service = client.services.get_service(SERVICE_UUID)
        assert service is not None
        telemetry = service.get_characteristic(TELEMETRY_UUID)
        identity_char = service.get_characteristic(IDENTITY_UUID)
        assert telemetry is not None
        assert identity_char is not None
        assert telemetry.properties == ["notify"]
        assert identity_char.properties == ["read"]
        assert [d.uuid for d in telemetry.descriptors] == ["00002902-0000-1000-8000-00805f9b34fb"]
        assert telemetry.max_write_without_response_size == 244
        identity = decode_frame(await ble.run(client.read_gatt_char, IDENTITY_UUID))
        assert isinstance(identity, IdentityFrame)
        assert (identity.vin, identity.firmware) == (VIN_A, (2, 7))
        assert vehicle.connected
    with anyio.fail_after(3):
        await vehicle.wait_disconnected()


async def test_a_smaller_mtu_is_honoured():
    async with VirtualRadio(mtu=64) as small:
        vehicle = await small.add(SimulatedVehicle(VIN_A))
        client = BleakClient(vehicle.address, **small.client_kwargs())
        await small.portal.run(client.connect)
        try:
            assert client.mtu_size == 64
        finally:
            await small.portal.run(client.disconnect)


async def test_connect_by_address_string(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    async with ble.connect(vehicle.address) as client:
        assert client.is_connected
        assert client.address == vehicle.address


async def test_notifications_carry_frames_matching_set(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        first = await stream.next_info()
        assert first.system_state is SystemState.OFF
        await vehicle.set(
            system_state=SystemState.READY,
            rnd=Gear.DRIVE,
            park_brake_status=ParkBrake.RELEASED,
            battery_soc=64,
            total_odometer=4321.0,
        )
        await stream.wait_for(lambda s: s.infos and s.infos[-1].battery_soc == 64)
        frame = stream.infos[-1]
        assert frame.system_state is SystemState.READY
        assert frame.rnd is Gear.DRIVE
        assert frame.park_brake_status is ParkBrake.RELEASED
        assert frame.total_odometer == 4321.0
        # Frames keep coming at the vehicle's rate, numbered one after the other.
        await stream.wait_for(lambda s: len(s.infos) >= 5)
        seqs = [f.seq for f in stream.infos]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert stream.decoder.stats.crc_errors == 0


async def test_control_from_the_callers_loop_while_streaming(radio, ble):
    # vehicle.set() is awaited here (asyncio or trio) while bleak runs on the radio's loop.
    vehicle = await radio.add(SimulatedVehicle(VIN_A, rate_hz=20))
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        for soc in (55, 44, 33):
            await vehicle.set(battery_soc=soc)
            await stream.wait_for(lambda s, soc=soc: s.infos and s.infos[-1].battery_soc == soc)


async def test_stop_notify_stops_the_stream(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A, rate_hz=50))
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        await stream.next_info()
        await ble.run(client.stop_notify, TELEMETRY_UUID)
        assert not vehicle.subscribed
        sent = vehicle.frames_sent
        await vehicle.set(battery_soc=10)
        assert vehicle.frames_sent == sent


async def test_drop_link_fires_the_disconnected_callback(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    dropped = anyio.Event()
    portal = radio.portal
    async with ble.connect(
        vehicle.address, on_disconnect=lambda _client: portal.to_caller_soon(dropped.set)
    ) as client:
        await ble.stream(client)
        assert await vehicle.drop_link()
        with anyio.fail_after(3):
            await dropped.wait()
        assert not client.is_connected
        with pytest.raises(BleakError):
            await ble.run(client.read_gatt_char, IDENTITY_UUID)
    # The dongle advertises again and takes a new connection.
    async with ble.connect(vehicle.address) as client:
        assert client.is_connected
    assert [r.fault.value for r in vehicle.log if r.fault is not None] == ["drop_link"]


async def test_out_of_range_vehicle_is_undiscoverable_and_refuses_connections(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    dropped = anyio.Event()
    portal = radio.portal
    async with ble.connect(
        vehicle.address, on_disconnect=lambda _client: portal.to_caller_soon(dropped.set)
    ) as client:
        await vehicle.advertise(False)
        with anyio.fail_after(3):
            await dropped.wait()
        assert not client.is_connected
    assert await ble.find(vehicle, seconds=0.3) is None
    with anyio.fail_after(3), pytest.raises(BleakDeviceNotFoundError):
        async with ble.connect(vehicle.address, connect_within=0.3):
            pass
    await vehicle.advertise(True)
    assert await ble.find(vehicle) is not None
    async with ble.connect(vehicle.address) as client:
        assert client.is_connected


async def test_connecting_to_a_silent_address_fails_after_the_timeout(radio, ble):
    with anyio.fail_after(3), pytest.raises(BleakDeviceNotFoundError):
        async with ble.connect("C1:22:33:44:55:66", connect_within=0.3):
            pass
    # The radio is still usable afterwards: nothing was left pending.
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    async with ble.connect(vehicle.address) as client:
        assert client.is_connected


async def test_connecting_to_a_found_device_that_left_times_out(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    device = await ble.find(vehicle)
    await vehicle.advertise(False)
    with anyio.fail_after(3), pytest.raises(TimeoutError):
        async with ble.connect(device, connect_within=0.3):
            pass


async def test_cancelling_a_connect_leaves_nothing_pending(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    await vehicle.advertise(False)
    client = BleakClient(vehicle.address, timeout=30, **radio.client_kwargs())
    with anyio.move_on_after(0.2) as scope:
        await ble.run(client.connect)
    assert scope.cancelled_caught
    await vehicle.advertise(True)
    async with ble.connect(vehicle.address) as other:
        assert other.is_connected
    assert not client.is_connected


async def test_removing_a_vehicle_drops_its_link(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    dropped = anyio.Event()
    portal = radio.portal
    async with ble.connect(
        vehicle.address, on_disconnect=lambda _client: portal.to_caller_soon(dropped.set)
    ):
        await radio.remove(vehicle)
        with anyio.fail_after(3):
            await dropped.wait()
    assert radio.vehicles == ()
    assert await ble.find(vehicle, seconds=0.3) is None


async def test_client_disconnect_frees_the_vehicle(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    async with ble.connect(vehicle.address):
        assert vehicle.connected
    with anyio.fail_after(3):
        await vehicle.wait_disconnected()
    assert await ble.find(vehicle) is not None


async def test_write_to_a_read_only_characteristic_is_a_gatt_error(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    async with ble.connect(vehicle.address) as client:
        with pytest.raises(BleakGATTProtocolError) as caught:
            await ble.run(
                functools.partial(client.write_gatt_char, IDENTITY_UUID, b"x", response=True)
            )
        assert caught.value.code is BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED
        identity = decode_frame(await ble.run(client.read_gatt_char, IDENTITY_UUID))
        assert isinstance(identity, IdentityFrame)
        assert identity.vin == VIN_A


async def test_the_radio_refuses_a_second_vehicle_with_the_same_vin(radio):
    await radio.add(SimulatedVehicle(VIN_A))
    with pytest.raises(ValueError, match="same VIN"):
        await radio.add(SimulatedVehicle(VIN_A, seed=9))


async def test_bleak_on_a_closed_radio_is_like_a_switched_off_adapter():
    async with VirtualRadio() as radio:
        kwargs: dict[str, Any] = radio.client_kwargs()
        scanner = BleakScanner(**radio.scanner_kwargs())
    with pytest.raises(BleakBluetoothNotAvailableError) as caught:
        BleakClient("C1:22:33:44:55:66", **kwargs)
    assert caught.value.reason is BleakBluetoothNotAvailableReason.POWERED_OFF
    with pytest.raises(BleakBluetoothNotAvailableError):
        await scanner.start()  # no loop needed: it is refused before


async def test_telemetry_cannot_be_read(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    async with ble.connect(vehicle.address) as client:
        with pytest.raises(BleakGATTProtocolError) as caught:
            await ble.run(client.read_gatt_char, TELEMETRY_UUID)
        assert caught.value.code is BleakGATTProtocolErrorCode.READ_NOT_PERMITTED


async def test_a_failing_notification_callback_is_logged_and_the_stream_goes_on(radio, ble, caplog):
    vehicle = await radio.add(SimulatedVehicle(VIN_A, rate_hz=40))
    stream = None

    def callback(sender: object, data: bytearray) -> None:
        assert stream is not None
        stream.on_notify(sender, data)
        if len(stream.notifications) == 1:
            raise RuntimeError("application bug")

    async with ble.connect(vehicle.address) as client:
        stream = ble.new_stream()
        await ble.run(client.start_notify, TELEMETRY_UUID, callback)
        await stream.wait_for(lambda s: len(s.notifications) >= 3)
    assert "application bug" in caplog.text


async def test_a_stopped_scanner_hears_nothing_more(radio, ble):
    await radio.add(SimulatedVehicle(VIN_A))
    seen: list[float] = []
    portal = radio.portal
    heard = anyio.Event()

    def callback(_device: BLEDevice, _ad: AdvertisementData) -> None:
        seen.append(time.monotonic())
        portal.to_caller_soon(heard.set)

    scanner = BleakScanner(callback, **radio.scanner_kwargs())
    await ble.run(scanner.start)
    with anyio.fail_after(3):
        await heard.wait()
    await ble.run(scanner.stop)
    stopped = time.monotonic()
    # Another scanner keeps the radio scanning; the stopped one must stay deaf.
    other_heard = anyio.Event()
    other = BleakScanner(
        lambda _d, _a: portal.to_caller_soon(other_heard.set), **radio.scanner_kwargs()
    )
    await ble.run(other.start)
    with anyio.fail_after(3):
        await other_heard.wait()
    await ble.run(other.stop)
    assert all(t <= stopped for t in seen)
    assert not radio.air.central.is_scanning  # the last scanner gone, the radio stops


async def test_a_connection_refused_by_the_peripheral_fails_cleanly(radio, ble):
    # The race where a car leaves range between its advertisement and the
    # connection request: forced here by a controller that advertises but refuses.
    vehicle = await radio.add(SimulatedVehicle(VIN_A))
    vehicle._controller.accepting = False
    with anyio.fail_after(3), pytest.raises(BleakError):
        async with ble.connect(vehicle.address):
            pass
    assert not radio.air.central.connections
    vehicle._controller.accepting = True
    async with ble.connect(vehicle.address) as client:
        assert client.is_connected
