"""The virtual radio: an in-process Bluetooth LE environment that bleak can use.

It owns a Bumble ``LocalLink``, the central ("the phone") that bleak drives through
the backend in :mod:`o2x.sim._bleak_backend`, and the simulated vehicles on the air.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, ParamSpec

import anyio

from .._aio import AsyncioPortal, open_portal
from ._bleak_backend import VirtualBleakClient, VirtualBleakScanner
from ._portal import call_async
from ._stack import CENTRAL_ADDRESS, Air, uninterruptible
from .vehicle import SimulatedVehicle

__all__ = ["VirtualRadio"]

_P = ParamSpec("_P")


class VirtualRadio:
    """A Bluetooth LE radio in the process: simulated vehicles on the air, bleak as the phone.

    Enter it with ``async with`` (asyncio or trio), add vehicles, and hand
    :meth:`scanner_kwargs` / :meth:`client_kwargs` to bleak's own classes. Under
    asyncio everything lives on the running loop; under trio on a private asyncio
    loop reached through :attr:`portal`, which is where bleak calls must run.
    Leaving the block disconnects every client, switches every vehicle off and
    stops that loop: no task or thread is left behind.

    Plain bleak, finding and streaming from a simulated AMI::

        import asyncio
        from bleak import BleakClient, BleakScanner
        from o2x.dongle.frames import FrameDecoder
        from o2x.sim import SimulatedVehicle, VirtualRadio

        async def main():
            async with VirtualRadio() as radio:
                await radio.add(SimulatedVehicle("VR7ABCDEF12345678"))
                device = await BleakScanner.find_device_by_filter(
                    lambda d, ad: 0xFFFF in ad.manufacturer_data, **radio.scanner_kwargs()
                )
                decoder = FrameDecoder()
                async with BleakClient(device, **radio.client_kwargs()) as client:
                    await client.start_notify(
                        "dc830002-1ef1-4e76-964e-1551f80d7eb3",
                        lambda _char, data: [print(frame) for frame in decoder.feed(data)],
                    )
                    await asyncio.sleep(1)

        asyncio.run(main())

    Under trio, run such a coroutine with ``await radio.portal.run(main_part)``.

    Args:
        mtu: ATT MTU the central asks for when connecting (phones ask for 247 or more).
        advertising_interval: Seconds between a vehicle's advertisements; short so
            that scans in tests are quick.
    """

    def __init__(self, *, mtu: int = 247, advertising_interval: float = 0.02) -> None:
        if not 23 <= mtu <= 517:
            raise ValueError(f"an ATT MTU is 23..517, not {mtu}")
        if not 0.02 <= advertising_interval <= 10.24:
            raise ValueError(
                f"the advertising interval is 0.02..10.24 s, not {advertising_interval}"
            )
        self.mtu = mtu
        self.advertising_interval = advertising_interval
        self._portal: AsyncioPortal | None = None
        self._portal_cm: AbstractAsyncContextManager[AsyncioPortal] | None = None
        self._air: Air | None = None
        self._vehicles: list[SimulatedVehicle] = []

    # --- lifetime -------------------------------------------------------------------

    async def __aenter__(self) -> VirtualRadio:
        if self._portal_cm is not None:
            raise RuntimeError("a VirtualRadio can be entered only once")
        self._portal_cm = open_portal()
        portal = await self._portal_cm.__aenter__()
        try:
            self._air = await portal.run(self._open_air)
        except BaseException as exc:
            await self._portal_cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._portal = portal
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        portal, cm = self._portal, self._portal_cm
        if portal is None or cm is None:
            return
        try:
            with anyio.CancelScope(shield=True):
                await portal.run(self._shutdown)
        finally:
            self._portal = None
            await cm.__aexit__(exc_type, exc, tb)

    async def _open_air(self) -> Air:
        air = Air(mtu=self.mtu, scan_interval_ms=10.0)
        await air.open()
        return air

    async def _shutdown(self) -> None:
        air = self._air
        if air is None:
            return
        await air.release_users()
        for vehicle in list(self._vehicles):
            await vehicle._detach()
        self._vehicles.clear()
        await air.close()

    # --- access ---------------------------------------------------------------------

    @property
    def portal(self) -> AsyncioPortal:
        """The asyncio loop the radio lives on; run bleak calls with ``portal.run``."""
        if self._portal is None:
            raise RuntimeError("the VirtualRadio is not open (use 'async with VirtualRadio()')")
        return self._portal

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio loop the radio's BLE stack runs on (``o2x.Radio``'s)."""
        return self.portal.loop

    @property
    def air(self) -> Air:
        """The radio's internals, as the bleak backend classes reach them."""
        if self._air is None or self._portal is None:
            raise RuntimeError("the VirtualRadio is not open (use 'async with VirtualRadio()')")
        return self._air

    @property
    def central_address(self) -> str:
        """Bluetooth address of the radio's central (what the vehicles see connecting)."""
        return CENTRAL_ADDRESS

    @property
    def vehicles(self) -> tuple[SimulatedVehicle, ...]:
        """The vehicles on the air."""
        return tuple(self._vehicles)

    def scanner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments making ``BleakScanner(**kwargs)`` scan this radio."""
        return {"backend": VirtualBleakScanner, "virtual_radio": self}

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments making ``BleakClient(device, **kwargs)`` connect on this radio."""
        return {"backend": VirtualBleakClient, "virtual_radio": self}

    # --- vehicles -------------------------------------------------------------------

    async def add(self, vehicle: SimulatedVehicle) -> SimulatedVehicle:
        """Switch ``vehicle`` on within range of the radio; returns it."""
        air, portal = self.air, self.portal
        if vehicle in self._vehicles:
            raise ValueError(f"{vehicle!r} is already on this radio")
        for other in self._vehicles:
            if other.address == vehicle.address:
                raise ValueError(f"{vehicle!r} has the address of {other!r} (same VIN?)")
        await call_async(
            portal, _uninterrupted, vehicle._attach, air, portal, self.advertising_interval * 1000.0
        )
        self._vehicles.append(vehicle)
        return vehicle

    async def remove(self, vehicle: SimulatedVehicle) -> None:
        """Switch ``vehicle`` off and take it off the air (its link drops)."""
        if vehicle not in self._vehicles:
            raise ValueError(f"{vehicle!r} is not on this radio")
        self._vehicles.remove(vehicle)
        await call_async(self.portal, _uninterrupted, vehicle._detach)


async def _uninterrupted(
    fn: Callable[_P, Coroutine[Any, Any, None]], *args: _P.args, **kwargs: _P.kwargs
) -> None:
    # Attaching and detaching are sequences of Bumble commands: finish them even
    # if the caller is cancelled meanwhile, so the stack stays consistent.
    await uninterruptible(fn(*args, **kwargs))
