"""Hostile peers, end to end over the virtual radio on asyncio and trio.

An impostor dongle, a dongle flooding the link with tiny notifications, corrupt
frames or garbage, and advertisements that are malformed in every way that matters.
Besides the simulated car, the peers here are raw Bumble peripherals on the radio's
own link (:class:`RawPeripheral`), which can advertise and send anything at all.
What the radio's central really connected to is read from Bumble (:class:`CentralLog`),
not from the library under test.
"""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import attrs
import pytest
from bumble import att, gatt
from hypothesis import given
from hypothesis import strategies as st
from memory_filters import NOT_THE_LIBRARY

import o2x
from o2x import O2XVehicle, ScanTimeout, Timeouts, _state
from o2x.dongle.frames import encode_frame, encode_identity, encode_info
from o2x.dongle.profile import (
    COMPANY_ID,
    IDENTITY_UUID,
    PROFILE_VERSION,
    SERVICE_UUID,
    TELEMETRY_UUID,
    advertised_vin,
    manufacturer_data_for,
)
from o2x.model import SystemState
from o2x.sim import SimulatedVehicle, VirtualRadio
from o2x.sim._stack import AD_FLAGS, AD_MANUFACTURER, address_for, build_ad, make_device

pytestmark = pytest.mark.anyio

VIN = "VR1AB12C3D4567890"
OTHER_VIN = "VXKUHZKXZL4123456"
WAIT = 10.0
_VIN_BYTES = VIN.encode("ascii")


def _manufacturer(company: int, value: bytes) -> bytes:
    return company.to_bytes(2, "little") + value


# --- advertised_vin, unit tests ---------------------------------------------------------


def test_advertised_vin_accepts_the_profile() -> None:
    assert advertised_vin({COMPANY_ID: manufacturer_data_for(VIN)}) == VIN
    assert advertised_vin({COMPANY_ID: bytearray(b"\x01" + _VIN_BYTES)}) == VIN
    # Another company's data beside it changes nothing.
    assert advertised_vin({0x004C: b"\x02\x15", COMPANY_ID: b"\x01" + _VIN_BYTES}) == VIN
    # A VIN is case-insensitive; it is reported normalised.
    assert advertised_vin({COMPANY_ID: b"\x01" + VIN.lower().encode()}) == VIN


MALFORMED: dict[str, Mapping[int, bytes]] = {
    "no manufacturer data": {},
    "another company": {0x004C: b"\x01" + _VIN_BYTES},
    "another company, the same VIN": {0x0006: manufacturer_data_for(VIN)},
    "empty": {COMPANY_ID: b""},
    "version only": {COMPANY_ID: b"\x01"},
    "one byte short": {COMPANY_ID: b"\x01" + _VIN_BYTES[:-1]},
    "one byte long": {COMPANY_ID: b"\x01" + _VIN_BYTES + b"0"},
    "oversized (27 bytes, the most legacy advertising holds)": {
        COMPANY_ID: b"\x01" + _VIN_BYTES + b"\x00" * 9
    },
    "huge": {COMPANY_ID: b"\x01" + _VIN_BYTES * 60},
    "version 0": {COMPANY_ID: b"\x00" + _VIN_BYTES},
    "version 2": {COMPANY_ID: b"\x02" + _VIN_BYTES},
    "version 0xFF": {COMPANY_ID: b"\xff" + _VIN_BYTES},
    "letter O": {COMPANY_ID: b"\x01VR1AB12C3D456789O"},
    "letter I": {COMPANY_ID: b"\x01IR1AB12C3D4567890"},
    "letter Q": {COMPANY_ID: b"\x01VR1AB12C3D45678Q0"},
    "space": {COMPANY_ID: b"\x01VR1AB12C3D456789 "},
    "NUL": {COMPANY_ID: b"\x01VR1AB12C3D456789\x00"},
    "newline": {COMPANY_ID: b"\x01VR1AB12C3D456789\n"},
    "byte 0xFF": {COMPANY_ID: b"\x01VR1AB12C3D456789\xff"},
    "UTF-8 letter": {COMPANY_ID: b"\x01VR1AB12C3D45678\xc3\x89"[:18]},
    "all 0xFF": {COMPANY_ID: b"\xff" * 18},
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_advertised_vin_ignores_malformed_data(data: Mapping[int, bytes]) -> None:
    assert advertised_vin(data) is None


@given(
    st.dictionaries(
        st.integers(0, 0xFFFF),
        st.one_of(
            st.binary(max_size=40),
            st.builds(lambda tail: b"\x01" + tail, st.binary(min_size=17, max_size=17)),
            st.builds(
                lambda vin: b"\x01" + vin.encode(),
                st.text(
                    alphabet="ABCDEFGHJKLMNPRSTUVWXYZ0123456789abcxyz", min_size=17, max_size=17
                ),
            ),
        ),
    )
)
def test_advertised_vin_never_raises_and_returns_only_what_was_advertised(
    data: dict[int, bytes],
) -> None:
    vin = advertised_vin(data)
    if vin is not None:
        value = data[COMPANY_ID]
        assert value[0] == PROFILE_VERSION
        assert value[1:].decode("ascii").upper() == vin
        assert o2x.normalize_vin(vin) == vin


# --- the peers ------------------------------------------------------------------------


class CentralLog:
    """What the radio's central heard and connected to, by peer address, from Bumble."""

    def __init__(self, radio: VirtualRadio) -> None:
        self._radio = radio
        self.advertisers: set[str] = set()
        self.connected: list[str] = []
        self.disconnected: list[str] = []
        self._changed = anyio.Event()

    async def start(self) -> None:
        async def register() -> None:
            central = self._radio.air.central
            central.on("connection", self._on_connection)
            central.on("advertisement", self._on_advertisement)

        await self._radio.portal.run(register)

    def _on_advertisement(self, advertisement: Any) -> None:  # on the radio's loop
        self.advertisers.add(advertisement.address.to_string(False))

    def _on_connection(self, connection: Any) -> None:  # on the radio's loop
        address = connection.peer_address.to_string(False)
        self.connected.append(address)
        connection.on("disconnection", lambda _reason: self._on_disconnection(address))
        self._radio.portal.to_caller_soon(self._wake)

    def _on_disconnection(self, address: str) -> None:
        self.disconnected.append(address)
        self._radio.portal.to_caller_soon(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[CentralLog], bool]) -> None:
        with anyio.fail_after(WAIT):
            while not predicate(self):
                await self._changed.wait()


class RawPeripheral:
    """A Bumble peripheral on the radio's link advertising exactly ``advertising_data``.

    With ``identity``, it serves the O2X service: that identity, and a telemetry
    characteristic through which :meth:`start_flood` sends whatever it is given as
    fast as the radio's loop lets it.
    """

    def __init__(
        self, radio: VirtualRadio, key: str, advertising_data: bytes, identity: bytes | None = None
    ) -> None:
        self.radio = radio
        self.address = address_for(f"raw-peripheral:{key}")
        self.advertising_data = advertising_data
        self.identity = identity
        self.notifications_sent = 0
        #: Seconds spent flooding, all floods together.
        self.flood_seconds = 0.0
        self._device: Any = None
        self._controller: Any = None
        self._telemetry: Any = None
        self._connection: Any = None
        self._flood: asyncio.Task[None] | None = None

    async def attach(self) -> None:
        await self.radio.portal.run(self._attach)

    async def detach(self) -> None:
        await self.radio.portal.run(self._detach)

    async def start_flood(
        self, chunks: Callable[[], Iterator[bytes]], per_second: int, seconds: float
    ) -> None:
        """Notify the chunks at ``per_second``, paced by the clock, for ``seconds``.

        The peer stops by itself: a flood lasts as long as asked even if the library's
        loop falls behind (then the peer sends faster than it is read).
        """

        async def start() -> None:
            loop = asyncio.get_running_loop()
            self._flood = loop.create_task(self._run_flood(chunks(), per_second, seconds))

        await self.radio.portal.run(start)

    async def stop_flood(self) -> None:
        await self.radio.portal.run(self._stop_flood)

    async def send(self, chunk: bytes) -> None:
        async def send() -> None:
            self._notify(chunk)

        await self.radio.portal.run(send)

    # on the radio's loop

    async def _attach(self) -> None:
        air = self.radio.air
        self._controller, device = make_device(air.link, "raw", self.address)
        if self.identity is not None:
            self._telemetry = gatt.Characteristic(
                TELEMETRY_UUID, gatt.Characteristic.Properties.NOTIFY, gatt.Characteristic.READABLE
            )
            identity = gatt.Characteristic(
                IDENTITY_UUID,
                gatt.Characteristic.Properties.READ,
                gatt.Characteristic.READABLE,
                self.identity,
            )
            device.add_service(gatt.Service(SERVICE_UUID, [self._telemetry, identity]))
        device.on("connection", self._on_connection)
        await device.power_on()
        await device.start_advertising(
            advertising_data=self.advertising_data,
            scan_response_data=b"",
            auto_restart=True,
            advertising_interval_min=20.0,
            advertising_interval_max=20.0,
        )
        self._device = device

    def _on_connection(self, connection: Any) -> None:
        self._connection = connection
        connection.on("disconnection", lambda _reason: self._on_disconnection(connection))

    def _on_disconnection(self, connection: Any) -> None:
        if self._connection is connection:
            self._connection = None

    def _notify(self, chunk: bytes) -> None:
        if self._connection is None:
            return
        pdu = att.ATT_Handle_Value_Notification(
            attribute_handle=self._telemetry.handle, attribute_value=chunk
        )
        self._connection.send_l2cap_pdu(att.ATT_CID, bytes(pdu))
        self.notifications_sent += 1

    async def _run_flood(self, chunks: Iterator[bytes], per_second: int, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        try:
            while self._connection is not None and loop.time() - started < seconds:
                due = int((loop.time() - started) * per_second)
                for _ in range(min(due - sent, per_second // 100)):  # 10 ms' worth at most
                    self._notify(next(chunks))
                    sent += 1
                await asyncio.sleep(0.001)
        finally:
            self.flood_seconds += loop.time() - started

    async def _stop_flood(self) -> None:
        if self._flood is not None:
            self._flood.cancel()
            await asyncio.gather(self._flood, return_exceptions=True)
            self._flood = None

    async def _detach(self) -> None:
        await self._stop_flood()
        device, self._device = self._device, None
        if device is None:
            return
        if self._connection is not None:
            await self._connection.disconnect()
        await device.stop_advertising()
        await device.power_off()
        air = self.radio.air
        if self._controller in air.link.controllers:
            air.link.remove_controller(self._controller)


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as r:
        yield r


@pytest.fixture
async def central(radio: VirtualRadio) -> CentralLog:
    log = CentralLog(radio)
    await log.start()
    return log


@pytest.fixture
async def peripherals(radio: VirtualRadio) -> AsyncIterator[list[RawPeripheral]]:
    """Raw peripherals appended here are attached by the test and detached at the end."""
    attached: list[RawPeripheral] = []
    try:
        yield attached
    finally:
        with anyio.CancelScope(shield=True):
            for peer in attached:
                await peer.detach()


def _o2x_advertisement(
    manufacturer_value: bytes, company: int = COMPANY_ID, *, flags: bool = True
) -> bytes:
    manufacturer = (AD_MANUFACTURER, _manufacturer(company, manufacturer_value))
    return build_ad([(AD_FLAGS, b"\x06"), manufacturer] if flags else [manufacturer])


# --- impostors ------------------------------------------------------------------------


async def test_impostor_alone_is_rejected_again_and_again(
    radio: VirtualRadio, central: CentralLog, tmp_path: Any
) -> None:
    impostor = await radio.add(SimulatedVehicle(VIN, identity_vin=OTHER_VIN))
    vehicle = O2XVehicle.first_time(
        VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(scan=1.5)
    )
    with anyio.fail_after(WAIT), pytest.raises(o2x.IdentityMismatch, match=OTHER_VIN) as raised:
        async with vehicle:
            pytest.fail("accepted a dongle serving another vehicle's identity")
    assert isinstance(raised.value, o2x.ConnectionFailed)  # caught by the broader handler too
    # Rejected, then scanned for again after the back-off (0.5 s, then 1 s): tried
    # more than once, never subscribed to, and not left connected.
    assert central.connected.count(impostor.address) >= 2
    assert not impostor.subscribed
    assert not impostor.connected
    assert o2x.current_vin() is None
    assert not (tmp_path / "vehicle.json").exists()


async def test_real_vehicle_wins_over_an_impostor_advertising_its_vin(
    radio: VirtualRadio, central: CentralLog, tmp_path: Any
) -> None:
    impostor = SimulatedVehicle(VIN, identity_vin=OTHER_VIN)
    # The simulator derives addresses from the advertised VIN; the impostor is elsewhere.
    impostor.address = address_for("impostor")  # type: ignore[misc]
    await radio.add(impostor)
    real: SimulatedVehicle | None = None
    address: str | None = None
    done = anyio.Event()

    async def subscribe() -> None:
        nonlocal address
        async with O2XVehicle.first_time(
            VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(scan=WAIT)
        ) as car:
            address = car.address
            assert (await car.get()).vin == VIN
            assert o2x.current_vin() == VIN
        done.set()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(subscribe)
            # Only the impostor is on the air: the library connects to it first and
            # rejects it. Then the real car comes in range.
            await central.wait_for(lambda c: impostor.address in c.disconnected)
            real = await radio.add(SimulatedVehicle(VIN))
            await done.wait()
    assert real is not None
    assert address == real.address != impostor.address
    assert not impostor.subscribed
    remembered = _state.load(tmp_path / "vehicle.json")
    assert remembered is not None
    assert remembered.address == real.address


# --- malformed advertisements ------------------------------------------------------------

RAW_ADVERTISEMENTS = {
    "another company": _o2x_advertisement(b"\x01" + _VIN_BYTES, company=0x004C),
    "version 2": _o2x_advertisement(b"\x02" + _VIN_BYTES),
    "one byte short": _o2x_advertisement(b"\x01" + _VIN_BYTES[:-1]),
    # 27 bytes of manufacturer data: all that 31 bytes of advertising data can hold.
    "oversized": _o2x_advertisement(b"\x01" + _VIN_BYTES + b"\x00" * 9, flags=False),
    "letter O": _o2x_advertisement(b"\x01VR1AB12C3D456789O"),
    "byte 0xFF": _o2x_advertisement(b"\x01VR1AB12C3D456789\xff"),
    # Structures whose length runs past the end of the data, or is zero.
    "overrunning structure": b"\x02\x01\x06\x1e\xff\xff\xff\x01" + _VIN_BYTES[:10],
    "zero-length structure": b"\x00\x00\x02\x01\x06",
    "company id cut short": b"\x02\xff\xff",
}


async def test_malformed_advertisements_are_ignored_end_to_end(
    radio: VirtualRadio,
    central: CentralLog,
    peripherals: list[RawPeripheral],
    tmp_path: Any,
) -> None:
    # Every one of them would pass the identity check if the library connected.
    identity = encode_identity(VIN)
    for key, data in RAW_ADVERTISEMENTS.items():
        peer = RawPeripheral(radio, key, data, identity=identity)
        peripherals.append(peer)
        await peer.attach()
    vehicle = O2XVehicle.first_time(
        VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(scan=1.0)
    )
    # ScanTimeout, not ConnectionFailed: the VIN was never taken as advertised.
    with anyio.fail_after(WAIT), pytest.raises(ScanTimeout):
        async with vehicle:
            pytest.fail("connected to a malformed advertisement")
    # They were all on the air and heard while the library scanned; none connected to.
    assert central.advertisers >= {peer.address for peer in peripherals}
    assert central.connected == []
    # The library is not wedged: the real car is found on the same radio afterwards.
    car_sim = await radio.add(SimulatedVehicle(VIN))
    with anyio.fail_after(WAIT):
        async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
            assert car.address == car_sim.address
    assert set(central.connected) == {car_sim.address}


# --- floods ---------------------------------------------------------------------------


class Ticker:
    """A task that wants to run every 10 ms; records how late it got to run, at most.

    Lateness is measured against the original schedule, so a loop that keeps it a
    little late on every tick accumulates it; and a tick still waiting when the
    ticker is cancelled counts as late by as long as it has waited past its time.
    """

    PERIOD = 0.01

    def __init__(self) -> None:
        self.max_lateness = 0.0
        self.ticks = 0

    async def run(self) -> None:
        deadline = anyio.current_time()
        try:
            while True:
                deadline += self.PERIOD
                await anyio.sleep_until(deadline)
                self.max_lateness = max(self.max_lateness, anyio.current_time() - deadline)
                self.ticks += 1
        finally:
            self.max_lateness = max(self.max_lateness, anyio.current_time() - deadline)


@attrs.define
class FloodReport:
    #: Bytes held after a flood, all it sent processed, more than before it: by the
    #: library, and everything but the simulated radio and peer.
    growth: int = 0
    #: The most memory allocated during the flood was above its start (all code).
    peak: int = 0
    max_lateness: float = 0.0
    ticks: int = 0
    #: The lines whose allocations grew most, for a failure's message.
    largest: list[str] = attrs.Factory(list)


async def _measure_flood(
    start: Callable[[float], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    drained: Callable[[], Awaitable[None]],
) -> FloodReport:
    """Flood; measure the loop's lateness for FLOOD_SECONDS, then memory for as long.

    ``drained`` returns once everything the peer sent before it has been processed:
    memory is compared between two such quiet moments, one before a flood and one
    after, so that bytes in flight do not count as memory held.
    """
    report = FloodReport()
    ticker = Ticker()
    await start(0.2 + FLOOD_SECONDS + 0.3)
    try:
        await anyio.sleep(0.2)  # the link settles into the flood
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            await anyio.sleep(FLOOD_SECONDS)
            tg.cancel_scope.cancel()
        report.max_lateness, report.ticks = ticker.max_lateness, ticker.ticks
        # Traced from here on. The first snapshot is taken once the buffers that
        # rotate (the decoder's, the streams') hold traced objects too.
        tracemalloc.start()
        try:
            await anyio.sleep(0.3)
            await stop()
            await drained()
            before = _snapshot()
            tracemalloc.reset_peak()
            start_size = tracemalloc.get_traced_memory()[0]
            await start(FLOOD_SECONDS)
            await anyio.sleep(FLOOD_SECONDS)
            report.peak = tracemalloc.get_traced_memory()[1] - start_size
            await stop()
            await drained()
            after = _snapshot()
        finally:
            tracemalloc.stop()
    finally:
        await stop()
    stats = after.compare_to(before, "lineno")
    report.growth = sum(stat.size_diff for stat in stats)
    report.largest = [str(stat) for stat in stats[:5]]
    return report


def _snapshot() -> tracemalloc.Snapshot:
    gc.collect()  # garbage in reference cycles is not memory held
    return tracemalloc.take_snapshot().filter_traces(NOT_THE_LIBRARY)


def _corrupt_frames() -> Iterator[bytes]:
    rng = random.Random(1)
    seq = 0
    while True:
        frame = bytearray(encode_info(seq=seq, battery_soc=50, system_state=SystemState.READY))
        bit = rng.randrange(5 * 8, len(frame) * 8)  # after the header: framing still holds
        frame[bit // 8] ^= 1 << (bit % 8)
        seq = (seq + 1) & 0xFF
        # Cut into notifications of 1 to 7 bytes.
        pos = 0
        while pos < len(frame):
            size = rng.randint(1, 7)
            yield bytes(frame[pos : pos + size])
            pos += size


def _garbage() -> Iterator[bytes]:
    # Full notifications (MTU 247 - 3) of random bytes, or of the decoder's worst
    # case: headers declaring the largest payload (240 bytes) every 5 bytes, which
    # never complete into a valid frame but each make the decoder wait and check.
    rng = random.Random(2)
    worst = (b"\xa5\x01\x01\x00\xf0" * 49)[:244]
    while True:
        yield worst if rng.random() < 0.5 else rng.randbytes(244)


# 2000 notifications of 1 to 7 bytes a second, or 600 of 244 bytes (146 kB/s): about as
# many packets, or nearly as many bytes, as a BLE link carries (2M PHY: about 175 kB/s).
FLOODS = {
    "corrupt frames in tiny notifications": (_corrupt_frames, 2000),
    "garbage": (_garbage, 600),
}
FLOOD_SECONDS = 1.0
# Bounds of behaviour, not benchmarks: generous against a slow machine, and far
# below what a starved loop, or a leak of the bytes received, would give.
MAX_GROWTH = 16 * 1024
MAX_LATENESS = 0.5
MIN_TICKS = FLOOD_SECONDS / Ticker.PERIOD / 2


def _report(what: str, **numbers: object) -> None:
    # Shown with pytest -s (docs/reliability.md quotes these numbers).
    print(f"\n{what}: " + ", ".join(f"{name}={value}" for name, value in numbers.items()))


@pytest.mark.parametrize("flood", FLOODS.values(), ids=FLOODS.keys())
async def test_flood_of_bad_bytes_neither_grows_memory_nor_starves_the_loop(
    radio: VirtualRadio,
    peripherals: list[RawPeripheral],
    tmp_path: Any,
    flood: tuple[Callable[[], Iterator[bytes]], int],
    anyio_backend: str,
) -> None:
    peer = RawPeripheral(
        radio, "flood", _o2x_advertisement(manufacturer_data_for(VIN)), encode_identity(VIN)
    )
    peripherals.append(peer)
    await peer.attach()
    timeouts = Timeouts(loose_connection=60)  # no valid frame comes: do not give up on it
    async with O2XVehicle.first_time(
        VIN, radio=radio, state_dir=tmp_path, timeouts=timeouts
    ) as car:
        samples = car.samples()
        frames_sent = 0

        async def drained() -> None:
            # Valid frames sent after the flood come out of the decoder: it resynchronised,
            # and everything sent before them has been processed. Twelve frames, more
            # than the longest frame a header in the garbage may have declared (247
            # bytes), which the decoder waits for before it can rule that frame out.
            nonlocal frames_sent
            frames = b"".join(encode_info(seq=i, battery_soc=42) for i in range(12))
            await peer.send(frames[:138])
            await peer.send(frames[138:])
            seen = 0
            with anyio.fail_after(WAIT):
                while seen < 12:
                    seen += (await anext(samples)).data.battery_soc.value == 42
            # Then, once all that is decoded, a frame the decoder rejects and a valid
            # one, alone. FrameDecoder.last_error once kept the call stack of the last
            # error alive, with the batch of notifications being decoded (up to 4096
            # under trio): tests/regressions/test_decoder_last_error.py. The last error
            # happens on a batch of one notification, so what is measured is the
            # memory the flood left, whatever the decoder keeps of its last error.
            rejected = encode_frame(0x02, b"", seq=12)  # an EVENT without its code
            await peer.send(rejected + encode_info(seq=13, battery_soc=43))
            frames_sent += 13
            with anyio.fail_after(WAIT):
                while (await anext(samples)).data.battery_soc.value != 43:
                    pass

        report = await _measure_flood(
            lambda seconds: peer.start_flood(*flood, seconds), peer.stop_flood, drained
        )
        stats = car.stats
        _report(
            f"bad-bytes flood ({anyio_backend})",
            notifications=peer.notifications_sent,
            flood_seconds=round(peer.flood_seconds, 2),
            bytes_discarded=stats.bytes_discarded,
            crc_errors=stats.crc_errors,
            growth=report.growth,
            peak=report.peak,
            max_lateness_ms=round(report.max_lateness * 1000, 1),
            ticks=report.ticks,
            largest=report.largest[:3],
        )
        assert peer.notifications_sent >= 500  # it was a flood
        assert stats.bytes_discarded >= 5_000  # that reached the decoder
        # Only the valid frames sent after it, but for the odd random candidate frame
        # whose CRC-16 matched by chance (1 in 65536 of those checked).
        assert frames_sent <= stats.frames <= frames_sent + stats.crc_errors // 4096
        assert report.growth < MAX_GROWTH, report.largest
        assert report.max_lateness < MAX_LATENESS
        assert report.ticks >= MIN_TICKS
        assert stats.disconnections == 0


async def test_flood_of_tiny_valid_notifications_neither_grows_memory_nor_starves_the_loop(
    radio: VirtualRadio,
    tmp_path: Any,
    anyio_backend: str,
) -> None:
    # 50 frames a second, one byte per notification: 1150 notifications a second, about
    # the most a BLE link carries (a notification or more per 7.5 ms connection event).
    car_sim = await radio.add(SimulatedVehicle(VIN, rate_hz=50))
    async with O2XVehicle.first_time(VIN, radio=radio, state_dir=tmp_path) as car:
        samples = car.samples(buffer=16)  # never read during the flood: it must stay bounded
        statuses = car.status_changes()
        sent_before = car_sim.notifications_sent

        async def start(_seconds: float) -> None:
            await car_sim.set_notification_size(1)  # one byte per notification

        async def stop() -> None:
            await car_sim.set_notification_size(None)

        async def drained() -> None:
            # Frames go out whole again: one sent after the flood has been processed.
            fresh = car.samples()
            with anyio.fail_after(WAIT):
                await anext(fresh)
                await anext(fresh)

        report = await _measure_flood(start, stop, drained)
        sent = car_sim.notifications_sent - sent_before
        stats = car.stats
        _report(
            f"valid flood ({anyio_backend})",
            notifications=sent,
            frames=stats.frames,
            samples_dropped=stats.samples_dropped,
            growth=report.growth,
            peak=report.peak,
            max_lateness_ms=round(report.max_lateness * 1000, 1),
            ticks=report.ticks,
            largest=report.largest[:3],
        )
        assert sent >= 500
        assert stats.frames >= 50
        assert stats.crc_errors == stats.invalid_frames == 0
        assert samples.dropped > 0  # the unread stream stayed at its 16 samples
        assert report.growth < MAX_GROWTH, report.largest
        assert report.max_lateness < MAX_LATENESS
        assert report.ticks >= MIN_TICKS
        # The one status there was, once: a flood of identical readings is not a change.
        assert (await anext(statuses)).status is o2x.VehicleStatus.PARKED
        with anyio.move_on_after(0) as nothing_more:  # cancels at once unless one is queued
            await anext(statuses)
        assert nothing_more.cancelled_caught
