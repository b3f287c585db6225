"""``o2x.discover()``: which dongles are in range, the counterpart of ``BleakScanner.discover()``.

One scan hears both kinds of dongle a car can carry, as ``O2XVehicle.first_time``
does: O2X dongles by the VIN they advertise, and what looks like a BLE OBD adapter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import anyio
import attrs

from ._aio import open_portal
from .vehicle import Radio, _bleak_options, _check_radio_options

if TYPE_CHECKING:
    from bleak.args.bluez import BlueZScannerArgs
    from bleak.args.corebluetooth import CBScannerArgs
    from bleak.backends.device import BLEDevice

__all__ = ["DiscoveredDongle", "discover"]


@attrs.frozen
class DiscoveredDongle:
    """A dongle heard while scanning: an O2X dongle, or what looks like a BLE OBD adapter.

    ``vin`` is what an O2X dongle advertises; an adapter's is known only once
    connected (``None`` here). ``rssi`` is the signal strength of the last
    advertisement heard, in dBm; ``name`` the advertised name (``""`` if none).
    ``device`` is bleak's ``BLEDevice``, to connect to it: for an adapter,
    ``O2XVehicle.first_time(vin, adapter=found.device)``.
    """

    vin: str | None
    address: str
    rssi: int
    name: str
    #: ``"o2x"`` (an O2X dongle) or ``"adapter"`` (a BLE OBD adapter).
    kind: Literal["o2x", "adapter"]
    device: BLEDevice = attrs.field(eq=False, repr=False)


# ``timeout`` is how long to listen, as in bleak's BleakScanner.discover(), not a
# deadline the caller could set with a cancel scope instead.
async def discover(
    timeout: float = 5.0,  # noqa: ASYNC109
    *,
    radio: Radio | None = None,
    bluez: BlueZScannerArgs | None = None,
    cb: CBScannerArgs | None = None,
    on_found: Callable[[DiscoveredDongle], object] | None = None,
) -> list[DiscoveredDongle]:
    """Scan for ``timeout`` seconds; the dongles heard, strongest first.

    On the system's Bluetooth, or on ``radio`` (an :class:`o2x.sim.VirtualRadio`),
    from asyncio or trio. ``bluez`` and ``cb`` are bleak's own scanner options
    (``bluez={"adapter": "hci1"}``: scan with the second Bluetooth adapter on
    Linux), as for :meth:`o2x.O2XVehicle.first_time`. ``on_found`` is called with
    each dongle as it is heard, and again when it is heard with something new (its
    signal strength changes): a caller that cancels the scan keeps what it was told.

    Raises :class:`~o2x.errors.BluetoothUnavailable` when the system's Bluetooth
    cannot scan; ``ValueError`` for a ``timeout`` that is not a positive number of
    seconds. Hearing nothing is an empty list, not an error::

        from o2x.sim import SimulatedVehicle, VirtualRadio

        async with VirtualRadio() as radio:
            await radio.add(SimulatedVehicle("VR1AB12C3D4567890"))
            for dongle in await o2x.discover(0.5, radio=radio):
                print(dongle.vin, dongle.kind, dongle.address, dongle.rssi, dongle.name)
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout is a number of seconds, not {type(timeout).__name__}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout is how many seconds to listen, more than 0, not {timeout!r}")
    _check_radio_options(radio, bluez=bluez, cb=cb)
    from .transport import DongleScan  # here: bleak takes a while to import

    found: dict[str, DiscoveredDongle] = {}
    listening = True

    def seen(device: BLEDevice, vin: str | None, name: str, rssi: int) -> None:
        if not listening:  # reported by the radio as the scan stopped
            return
        dongle = DiscoveredDongle(
            vin, device.address, rssi, name, "adapter" if vin is None else "o2x", device
        )
        if found.get(device.address) == dongle:
            return
        found[device.address] = dongle
        if on_found is not None:
            on_found(dongle)

    if radio is not None:
        scanner_kwargs, system = radio.scanner_kwargs(), False
    else:
        scanner_kwargs, system = _bleak_options(bluez=bluez, cb=cb)[0], True
    async with open_portal(None if radio is None else radio.loop) as portal:
        scan = DongleScan(portal, seen, scanner_kwargs=scanner_kwargs, system_bluetooth=system)
        await portal.run(scan.start)
        try:
            await anyio.sleep(timeout)
        finally:
            # Also when cancelled: a scan left running is the radio's.
            listening = False
            with anyio.CancelScope(shield=True):
                await portal.run(scan.stop)
    return sorted(found.values(), key=lambda d: (-d.rssi, d.vin or "", d.address))
