"""The simulated vehicle as a peer: its stream, faults, events and ground-truth log."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time

import anyio
import pytest
from bleak import BleakClient, BleakScanner

from o2x import EventKind, Gear, ParkBrake, SystemState, VehicleStatus, derive_status
from o2x.dongle.frames import InfoFrame
from o2x.dongle.profile import TELEMETRY_UUID
from o2x.sim import Fault, LogKind, SimulatedVehicle, VirtualRadio

pytestmark = pytest.mark.anyio

VIN = "VR7ABCDEF12345678"


def frame_boundaries(stream) -> list[int]:
    """Stream offsets where frames end (all frames arrived intact)."""
    sizes = [23 if isinstance(f, InfoFrame) else 8 for f in stream.frames]
    return list(itertools.accumulate(sizes))


async def test_notification_size_cuts_the_stream_anywhere(radio, ble):
    # A long flush timeout: a short tail waits for the next frame, as in a byte stream.
    vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=40, flush_timeout=5.0))
    await vehicle.set_notification_size(7)
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        await stream.wait_for(lambda s: len(s.infos) >= 6)
    sizes = [len(data) for _, data in stream.notifications]
    assert set(sizes) == {7}
    assert stream.decoder.stats.crc_errors == 0
    # Some notifications hold the end of one frame and the start of the next.
    ends = frame_boundaries(stream)
    starts = [7 * i for i in range(len(sizes))]
    crossing = [s for s in starts if any(s < end < s + 7 for end in ends)]
    assert crossing


async def test_default_notification_size_is_mtu_minus_3(ble_for):
    for mtu in (247, 64):
        async with VirtualRadio(mtu=mtu) as radio:
            vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=100, flush_timeout=5.0))
            client = BleakClient(vehicle.address, **radio.client_kwargs())
            await radio.portal.run(client.connect)
            stream = await ble_for(radio).stream(client)
            await stream.wait_for(lambda s: len(s.notifications) >= 2)
            await radio.portal.run(client.disconnect)
            assert {len(data) for _, data in stream.notifications[:2]} == {mtu - 3}
            assert vehicle.notification_size is None


async def test_notification_size_is_capped_by_the_mtu(ble_for):
    async with VirtualRadio(mtu=40) as radio:
        vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=100, flush_timeout=5.0))
        await vehicle.set_notification_size(200)
        client = BleakClient(vehicle.address, **radio.client_kwargs())
        await radio.portal.run(client.connect)
        stream = await ble_for(radio).stream(client)
        await stream.wait_for(lambda s: len(s.notifications) >= 3)
        await radio.portal.run(client.disconnect)
    assert {len(data) for _, data in stream.notifications} == {37}


async def test_notification_size_changes_mid_stream(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=40))
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        await stream.wait_for(lambda s: len(s.infos) >= 2)
        # Until then each notification holds whole 23-byte INFO frames (one, or a few
        # that followed each other within the flush timeout).
        assert all(len(data) % 23 == 0 for _, data in stream.notifications)
        await vehicle.set_notification_size(5)
        mark = len(stream.notifications)
        await stream.wait_for(lambda s: len(s.infos) >= 8)
    later = [len(data) for _, data in stream.notifications[mark + 1 :]]
    assert later
    assert max(later) == 5
    assert stream.decoder.stats.crc_errors == 0
    assert [r.details["size"] for r in vehicle.log if r.fault is Fault.NOTIFICATION_SIZE] == [5]


async def test_corrupt_next_breaks_exactly_that_many_crcs(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=40))
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        await stream.next_info()
        await vehicle.corrupt_next(3)
        await stream.wait_for(lambda s: s.decoder.stats.crc_errors == 3 and len(s.infos) >= 6)
        mark = len(stream.infos)
        await stream.wait_for(lambda s: len(s.infos) >= mark + 3)
    assert stream.decoder.stats.crc_errors == 3
    corrupted = [r.seq for r in vehicle.log if r.fault is Fault.CORRUPTED_FRAME]
    assert len(corrupted) == 3
    received = {f.seq for f in stream.infos}
    assert not received & set(corrupted)
    # The frames around the corrupted ones arrived: the stream resynchronised.
    assert max(corrupted) + 1 in received
    assert min(corrupted) - 1 in received
    statuses = [r.seq for r in vehicle.log if r.kind is LogKind.STATUS]
    assert not set(statuses) & set(corrupted)


async def test_go_silent_pauses_notifications_on_a_live_link(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=40))
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        await stream.wait_for(lambda s: len(s.infos) >= 2)
        await vehicle.go_silent(0.5)
        silenced_at = time.monotonic()
        mark = len(stream.infos)
        await stream.wait_for(lambda s: len(s.infos) > mark + 2)
        assert client.is_connected
    gaps = list(itertools.pairwise(stream.frame_times))
    longest = max(later - earlier for earlier, later in gaps)
    assert longest >= 0.45
    resumed = next(t for t in stream.frame_times if t > silenced_at + 0.05)
    assert resumed >= silenced_at + 0.45
    # No frame was made during the silence: the numbering just carries on.
    seqs = [f.seq for f in stream.infos]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert [r.details["seconds"] for r in vehicle.log if r.fault is Fault.GO_SILENT] == [0.5]


async def test_emit_event_sends_event_frames(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN))
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        await stream.next_info()
        assert await vehicle.emit_event(EventKind.CANT_CHARGE)
        assert await vehicle.emit_event(0x42)
        await stream.wait_for(lambda s: len(s.events) == 2)
    assert [(e.code, e.kind) for e in stream.events] == [
        (0x01, EventKind.CANT_CHARGE),
        (0x42, None),
    ]
    logged = [(r.seq, r.event, r.details["code"]) for r in vehicle.log if r.kind is LogKind.EVENT]
    assert logged == [(e.seq, e.kind, e.code) for e in stream.events]


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("time_scale", -1.0),
        ("time_scale", math.nan),
        ("time_scale", math.inf),
        ("time_scale", 1e7),  # a frame would take a million model steps
        ("rate_hz", 0.0),
        ("rate_hz", math.nan),
        ("rate_hz", math.inf),
        ("flush_timeout", -0.1),
        ("flush_timeout", math.nan),
    ],
)
def test_unusable_rates_and_time_scales_are_refused(argument: str, value: float) -> None:
    with pytest.raises(ValueError, match=argument):
        SimulatedVehicle(VIN, **{argument: value})


def test_the_limits_themselves_are_accepted() -> None:
    from o2x.sim.vehicle import MAX_RATE_HZ, MAX_TIME_SCALE

    vehicle = SimulatedVehicle(VIN, time_scale=MAX_TIME_SCALE, rate_hz=MAX_RATE_HZ)
    assert (vehicle.time_scale, vehicle.rate_hz) == (MAX_TIME_SCALE, MAX_RATE_HZ)
    assert SimulatedVehicle(VIN, time_scale=0).time_scale == 0  # a car frozen in time


async def test_events_need_a_listener_and_a_wire_code(radio):
    vehicle = await radio.add(SimulatedVehicle(VIN))
    assert not await vehicle.emit_event(EventKind.CANT_CHARGE)
    with pytest.raises(ValueError, match="wire code"):
        await vehicle.emit_event(EventKind.DISCONNECTED)
    assert vehicle.log == []


async def test_cant_charge_arises_when_charging_with_the_brake_released(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN, battery_soc=30))
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        await stream.next_info()
        await vehicle.set(park_brake_status=ParkBrake.RELEASED)
        await vehicle.charge(delay_minutes=0)
        await stream.wait_for(lambda s: len(s.events) == 1)
        mark = len(stream.infos)
        await stream.wait_for(lambda s: len(s.infos) >= mark + 3)
    assert stream.events[0].kind is EventKind.CANT_CHARGE
    after = [f for f in stream.infos if f.seq > stream.events[0].seq]
    assert after
    assert all(f.system_state is not SystemState.CHARGING for f in after)
    assert all(f.battery_soc == 30 for f in after)
    assert [r.event for r in vehicle.log if r.kind is LogKind.EVENT] == [EventKind.CANT_CHARGE]


async def test_charging_counts_the_delay_down_in_model_time(radio, ble):
    # One frame is 60 model seconds: the 3-minute delay is over within a few frames.
    vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=40, time_scale=2400, battery_soc=50))
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        await stream.next_info()
        await vehicle.charge(delay_minutes=3)
        await stream.wait_for(lambda s: s.infos[-1].battery_soc >= 55)
    charging = [f for f in stream.infos if f.system_state is SystemState.CHARGING]
    delays = [f.charge_delay for f in charging]
    assert delays[0] == 3
    assert delays == sorted(delays, reverse=True)
    assert 0 in delays
    waiting = [f for f in charging if f.charge_delay]
    assert all(f.battery_soc == 50 for f in waiting)


async def test_ground_truth_status_log_matches_the_stream(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=40))
    started = time.monotonic()
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        await stream.next_info()
        for step in (vehicle.drive, vehicle.park, vehicle.charge):
            await step()
            mark = len(stream.infos)
            await stream.wait_for(lambda s, mark=mark: len(s.infos) >= mark + 2)
        await vehicle.set(system_state=SystemState.FAULT)
        await stream.wait_for(lambda s: s.infos[-1].system_state is SystemState.FAULT)
    observed = [derive_status(f.system_state, f.rnd) for f in stream.infos]
    transitions = [status for status, _ in itertools.groupby(observed)]
    records = [r for r in vehicle.log if r.kind is LogKind.STATUS]
    assert [r.status for r in records] == transitions
    assert transitions == [
        VehicleStatus.PARKED,
        VehicleStatus.DRIVING,
        VehicleStatus.PARKED,
        VehicleStatus.CHARGING,
        VehicleStatus.UNKNOWN,
    ]
    assert [r.previous_status for r in records] == [None, *transitions[:-1]]
    times = [r.at for r in vehicle.log]
    assert times == sorted(times)
    assert started <= times[0] <= times[-1] <= time.monotonic()


async def test_autopilot_with_a_time_scale_goes_through_the_cycle(radio, ble):
    vehicle = await radio.add(
        SimulatedVehicle(VIN, seed=4, autopilot=True, time_scale=600, rate_hz=40, battery_soc=70)
    )
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)

        def statuses(s):
            return {derive_status(f.system_state, f.rnd) for f in s.infos}

        await stream.wait_for(
            lambda s: {VehicleStatus.DRIVING, VehicleStatus.CHARGING} <= statuses(s), within=10
        )
    driving = [
        f for f in stream.infos if derive_status(f.system_state, f.rnd) is VehicleStatus.DRIVING
    ]
    assert driving[-1].total_odometer > driving[0].total_odometer
    assert driving[-1].battery_soc < driving[0].battery_soc
    assert stream.decoder.stats.crc_errors == 0


async def test_two_vehicles_stream_at_once(radio, ble):
    first = await radio.add(SimulatedVehicle(VIN, seed=1, battery_soc=11))
    second = await radio.add(SimulatedVehicle("VF7SA9HP0AW123456", seed=2, battery_soc=99))
    async with ble.connect(first.address) as a, ble.connect(second.address) as b:
        stream_a = await ble.stream(a)
        stream_b = await ble.stream(b)
        await second.drive()
        await stream_a.wait_for(lambda s: len(s.infos) >= 3)
        await stream_b.wait_for(lambda s: s.infos and s.infos[-1].rnd is Gear.DRIVE)
    assert {f.battery_soc for f in stream_a.infos} == {11}
    assert all(f.rnd is Gear.NEUTRAL for f in stream_a.infos)
    assert stream_b.infos[0].battery_soc == 99


async def test_wait_subscribed(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN))
    assert not vehicle.subscribed
    async with ble.connect(vehicle.address) as client:
        assert vehicle.connected
        await ble.stream(client)
        with anyio.fail_after(3):
            await vehicle.wait_subscribed()
        assert vehicle.subscribed


async def test_a_removed_vehicle_can_come_back(radio, ble):
    vehicle = await radio.add(SimulatedVehicle(VIN))
    await radio.remove(vehicle)
    assert not vehicle.attached
    await vehicle.set(battery_soc=42)  # the car goes on while off the air
    await radio.add(vehicle)
    async with ble.connect(vehicle.address) as client:
        stream = await ble.stream(client)
        assert (await stream.next_info()).battery_soc == 42


async def test_leaving_the_radio_leaves_nothing_running(anyio_backend):
    threads_before = set(threading.enumerate())
    tasks_before = set(asyncio.all_tasks()) if anyio_backend == "asyncio" else set()
    dropped = []
    async with VirtualRadio() as radio:
        first = await radio.add(SimulatedVehicle(VIN, rate_hz=50))
        await radio.add(SimulatedVehicle("VF7SA9HP0AW123456", rate_hz=50))

        async def busy() -> tuple[BleakClient, BleakScanner]:
            # Left open on purpose: the radio must close them.
            client = BleakClient(
                first.address, lambda _c: dropped.append(True), **radio.client_kwargs()
            )
            await client.connect()
            await client.start_notify(TELEMETRY_UUID, lambda _c, _d: None)
            scanner = BleakScanner(**radio.scanner_kwargs())
            await scanner.start()
            return client, scanner

        client, _ = await radio.portal.run(busy)
        loop = radio.portal.loop
    assert dropped == [True]
    assert not client.is_connected
    assert set(threading.enumerate()) <= threads_before | {
        t for t in threading.enumerate() if t.name.startswith("Trio thread")
    }
    if anyio_backend == "asyncio":
        assert set(asyncio.all_tasks()) == tasks_before
    else:
        assert loop.is_closed()
