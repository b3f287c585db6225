"""AdapterLink against the ELM327 emulator, without Bluetooth: session, frames, failure."""

from __future__ import annotations

import anyio
import pytest

from o2x import VehicleInfo
from o2x.can import AmiBus
from o2x.errors import AdapterError
from o2x.obd.layouts import LAYOUTS
from o2x.obd.link import AdapterLink
from o2x.sim.adapters import Elm327Emulator, Elm327Quirks
from o2x.source import Received, WallClock

pytestmark = pytest.mark.anyio

VIN = "VR1AB12C3D4567890"
FFF0 = next(layout for layout in LAYOUTS if layout.name == "fff0")
# 0x580: 0.0 A (bytes 0-1), 50.20 V = 5020 = 0x139C (bytes 2-3), SoC 64 % = 0x40 (byte 5)
BATTERY = (0x580, bytes.fromhex("00009c1300400000"))


class Wire:
    """The emulator on one side, the link on the other, bytes pumped between them."""

    def __init__(self, emulator: Elm327Emulator) -> None:
        self.emulator = emulator
        self.readings: list[list[Received]] = []
        self.got_reading = anyio.Event()
        self.failed = anyio.Event()
        self.link = AdapterLink(
            FFF0,
            self.write,
            ami=AmiBus(),
            vin=VIN,
            vin_wait=0.2,
            wall=WallClock(),
            on_reading=self.reading,
            on_failed=self.failed.set,
        )

    def reading(self, items: list[Received]) -> None:
        self.readings.append(items)
        self.got_reading.set()

    async def write(self, data: bytes) -> None:
        self.emulator.write(data, anyio.current_time())

    async def pump(self, frames: list[tuple[int, bytes]] | None = None) -> None:
        while True:
            now = anyio.current_time()
            for can_id, data in frames or ():
                self.emulator.bus_frame(can_id, data, now)
            out = self.emulator.read(now)
            if out:
                for i in range(0, len(out), 20):  # 20-byte notifications
                    items = self.link.received([out[i : i + 20]])
                    if items:
                        self.reading(items)
            await anyio.sleep(0.005)


async def test_frames_reach_the_bus_and_readings_come_out() -> None:
    wire = Wire(Elm327Emulator())
    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.link.run)
        tg.start_soon(wire.pump, [BATTERY])
        with anyio.fail_after(5):
            assert await wire.link.read_vin() == ""  # no VIN frames on this bus
            wire.link.subscribed = True
            await wire.got_reading.wait()
        tg.cancel_scope.cancel()
    info = wire.readings[0][0]
    assert isinstance(info, VehicleInfo)
    assert info.data.battery_soc is not None
    assert info.data.battery_soc.value == 64
    assert wire.link.error is None


async def test_a_session_that_fails_while_streaming_is_reported() -> None:
    # A transmit buffer of one byte: every monitor line ends in BUFFER FULL before a
    # frame is whole, so the monitor is restarted again and again without a frame,
    # until the session gives up.
    wire = Wire(Elm327Emulator(quirks=Elm327Quirks(buffer_size=1)))
    wire.link.subscribed = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.link.run)
        tg.start_soon(wire.pump, [BATTERY])
        with anyio.fail_after(10):
            await wire.failed.wait()
        tg.cancel_scope.cancel()
    assert isinstance(wire.link.error, AdapterError)
    with pytest.raises(AdapterError):
        await wire.link.read_vin()
