"""Fixtures for the simulator's tests: an open radio and a way to use bleak on it.

bleak and Bumble are asyncio-only, so every bleak call goes through the radio's
portal; the helpers here make that read the same under asyncio and trio.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from o2x.dongle.frames import EventFrame, Frame, FrameDecoder, InfoFrame
from o2x.dongle.profile import TELEMETRY_UUID
from o2x.sim import SimulatedVehicle, VirtualRadio


class Stream:
    """Telemetry of one client: raw notifications and decoded frames.

    ``on_notify`` runs on the radio's loop; ``wait_for`` on the test's loop, woken
    through the portal each time a notification arrives.
    """

    def __init__(self, radio: VirtualRadio) -> None:
        self._portal = radio.portal
        self.decoder = FrameDecoder()
        self.notifications: list[tuple[float, bytes]] = []
        self.frames: list[Frame] = []
        self.frame_times: list[float] = []
        self._changed = anyio.Event()

    def on_notify(self, _sender: object, data: bytearray) -> None:
        now = time.monotonic()
        self.notifications.append((now, bytes(data)))
        frames = self.decoder.feed(data)
        self.frames.extend(frames)
        self.frame_times.extend([now] * len(frames))
        self._portal.to_caller_soon(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def infos(self) -> list[InfoFrame]:
        return [f for f in self.frames if isinstance(f, InfoFrame)]

    @property
    def events(self) -> list[EventFrame]:
        return [f for f in self.frames if isinstance(f, EventFrame)]

    async def wait_for(self, predicate: Callable[[Stream], object], within: float = 3.0) -> None:
        """Wait until ``predicate(self)`` holds, failing after ``within`` seconds."""
        with anyio.fail_after(within):
            while not predicate(self):
                await self._changed.wait()

    async def next_info(self, within: float = 3.0) -> InfoFrame:
        """The first INFO frame that arrives from now on."""
        count = len(self.infos)
        await self.wait_for(lambda s: len(s.infos) > count, within)
        return self.infos[count]


class Ble:
    """bleak's public classes on a virtual radio, callable from asyncio or trio."""

    def __init__(self, radio: VirtualRadio) -> None:
        self.radio = radio

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self.radio.portal.run(fn, *args, **kwargs)

    async def discover(self, seconds: float = 0.3, **kwargs: Any) -> dict[str, Any]:
        return await self.run(  # type: ignore[no-any-return]
            functools.partial(
                BleakScanner.discover,
                seconds,
                return_adv=True,
                **kwargs,
                **self.radio.scanner_kwargs(),
            )
        )

    async def find(self, vehicle: SimulatedVehicle, seconds: float = 3.0) -> BLEDevice | None:
        return await self.run(  # type: ignore[no-any-return]
            functools.partial(
                BleakScanner.find_device_by_address,
                vehicle.address,
                timeout=seconds,
                **self.radio.scanner_kwargs(),
            )
        )

    async def find_vin(self, vin: str, seconds: float = 3.0) -> tuple[BLEDevice, AdvertisementData]:
        """Find the vehicle with ``vin`` by its manufacturer data, as an app would."""
        found: list[AdvertisementData] = []

        def matches(device: BLEDevice, ad: AdvertisementData) -> bool:
            data = ad.manufacturer_data.get(0xFFFF, b"")
            if data[1:] == vin.encode():
                found.append(ad)
                return True
            return False

        device = await self.run(
            functools.partial(
                BleakScanner.find_device_by_filter,
                matches,
                timeout=seconds,
                **self.radio.scanner_kwargs(),
            )
        )
        assert device is not None, f"{vin} not found"
        return device, found[-1]

    @asynccontextmanager
    async def connect(
        self,
        target: BLEDevice | str,
        *,
        on_disconnect: Callable[[BleakClient], None] | None = None,
        connect_within: float = 3.0,
    ) -> AsyncIterator[BleakClient]:
        client = BleakClient(
            target, on_disconnect, timeout=connect_within, **self.radio.client_kwargs()
        )
        await self.run(client.connect)
        try:
            yield client
        finally:
            await self.run(client.disconnect)

    def new_stream(self) -> Stream:
        return Stream(self.radio)

    async def stream(self, client: BleakClient) -> Stream:
        stream = Stream(self.radio)
        await self.run(client.start_notify, TELEMETRY_UUID, stream.on_notify)
        return stream


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as opened:
        yield opened


@pytest.fixture
def ble(radio: VirtualRadio) -> Ble:
    return Ble(radio)


@pytest.fixture
def ble_for() -> Callable[[VirtualRadio], Ble]:
    """For tests that open radios of their own (another MTU, for instance)."""
    return Ble
