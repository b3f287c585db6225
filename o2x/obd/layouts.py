"""The GATT layouts of BLE OBD adapters: which service, which characteristics.

A BLE OBD adapter is a serial port over Bluetooth LE: one characteristic notifies
the adapter's output, one takes what the host writes (sometimes the same one).
Vendors document none of this; the layouts below come from community code that
talks to these adapters (sources in each entry, and ``docs/obd.md``), so they are
**uncertain** as a whole, and an adapter not listed may use another.

Finding an adapter is a guess too: it is recognised in a scan by a service UUID it
advertises or by its name; once connected, its layout is chosen from the services
it really offers (:func:`choose_layout`). Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Set
from typing import Final

import attrs

__all__ = [
    "DEFAULT_PASSKEY",
    "LAYOUTS",
    "AdapterLayout",
    "Protocol",
    "choose_layout",
    "looks_like_adapter",
    "uuid16",
]


#: The passkey a WiCAN pairs with unless its owner changed it (meatpiHQ/wican-fw:
#: the ``ble_pass`` setting, "123456" by default).
DEFAULT_PASSKEY: Final = "123456"


def uuid16(short: int) -> str:
    """The 128-bit form of a 16-bit Bluetooth UUID, lower case, as bleak reports it."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


class Protocol(enum.StrEnum):
    """What an adapter speaks over its serial pipe."""

    ELM327 = "elm327"
    """AT commands and ``ATMA`` monitor output (:mod:`o2x.obd.elm327`)."""
    SLCAN = "slcan"
    """The SLCAN (Lawicel) text protocol (:mod:`o2x.obd.slcan`): WiCAN's default."""


@attrs.frozen
class AdapterLayout:
    """One GATT layout: the service and the two characteristics of the serial pipe."""

    #: A short name, for messages and the remembered vehicle.
    name: str
    #: What the adapter speaks by default.
    protocol: Protocol
    service: str
    #: The characteristic that notifies the adapter's output.
    notify: str
    #: The characteristic the host writes to (may be ``notify`` itself).
    write: str
    #: Where the layout comes from.
    source: str
    #: Local-name prefixes that identify the adapter when no service is advertised.
    names: tuple[str, ...] = ()
    #: Whether the adapter asks for a passkey when it is paired (WiCAN: 123456).
    passkey: bool = False
    #: A Device Information model string that tells this layout from another on the
    #: same service (the WiCAN Pro's ``WiCAN-PRO`` on FFF0).
    model: str | None = None


_VGATE_SERVICE: Final = "e7810a71-73ae-499d-8c15-faa9aef0c3f2"
_VGATE_PIPE: Final = "bef8d6c9-9c21-4c9e-b632-bd58c1009f9f"
_NORDIC_UART: Final = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
_NORDIC_RX: Final = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"  # the host writes here
_NORDIC_TX: Final = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"  # the adapter notifies here

#: Every layout o2x knows, most specific first: :func:`choose_layout` takes the first
#: whose service and characteristics the adapter has.
LAYOUTS: Final[tuple[AdapterLayout, ...]] = (
    AdapterLayout(
        "wican",
        Protocol.SLCAN,
        uuid16(0xFEE0),
        uuid16(0xFEE1),
        uuid16(0xFEE1),
        "meatpiHQ/wican-fw main/ble.c (branch main): 0xFEE1 is write/read/notify",
        names=("WiC_",),
        passkey=True,
    ),
    AdapterLayout(
        "wican-pro",
        Protocol.SLCAN,
        uuid16(0xFFF0),
        uuid16(0xFFF1),
        uuid16(0xFFF2),
        "meatpiHQ/wican-fw branch wican-pro: FFF1 notify/indicate, FFF2 write; "
        "Device Information model WiCAN-PRO",
        names=("WiC_",),
        passkey=True,
        model="WiCAN-PRO",
    ),
    AdapterLayout(
        "vgate",
        Protocol.ELM327,
        _VGATE_SERVICE,
        _VGATE_PIPE,
        _VGATE_PIPE,
        "Tuoris/niro-spy web-bluetooth-serial constants (Vgate iCar2 BLE, 'IOS-Vlink')",
        names=("IOS-Vlink",),
    ),
    AdapterLayout(
        "nordic-uart",
        Protocol.ELM327,
        _NORDIC_UART,
        _NORDIC_TX,
        _NORDIC_RX,
        "the Nordic UART Service: RX 6E400002 (write), TX 6E400003 (notify)",
    ),
    AdapterLayout(
        "ffe0-ffe2",
        Protocol.ELM327,
        uuid16(0xFFE0),
        uuid16(0xFFE1),
        uuid16(0xFFE2),
        "some iCar2 Pro adapters (unattributed community code): notify FFE1, write FFE2",
    ),
    AdapterLayout(
        "hm10",
        Protocol.ELM327,
        uuid16(0xFFE0),
        uuid16(0xFFE1),
        uuid16(0xFFE1),
        "HM-10 style modules, e.g. LELink 'OBDBLE' (AndrOBD #342; Jakeler/ble-serial)",
        names=("OBDBLE",),
    ),
    AdapterLayout(
        "fff0",
        Protocol.ELM327,
        uuid16(0xFFF0),
        uuid16(0xFFF1),
        uuid16(0xFFF2),
        "generic clones, Veepeak (augusto-salto/obd2Voyage; Tuoris/niro-spy)",
        names=("OBDII", "OBD2", "VEEPEAK", "V-LINK"),
    ),
)

#: Advertised services that mark an OBD adapter: every layout's, and the 0x18F0
#: the Vgate iCar2 advertises (ELMduino #190).
_ADVERTISED: Final = frozenset({layout.service for layout in LAYOUTS} | {uuid16(0x18F0)})


def looks_like_adapter(service_uuids: Iterable[str], local_name: str | None) -> bool:
    """Whether an advertisement may be a BLE OBD adapter's (a guess: see the module).

    True for an advertised service of a known layout, or a local name a layout
    lists (``WiC_...``, ``OBDBLE``, ``IOS-Vlink``...).

    >>> looks_like_adapter(["0000fff0-0000-1000-8000-00805f9b34fb"], None)
    True
    >>> looks_like_adapter([], "WiC_a1b2c3d4e5f6")
    True
    >>> looks_like_adapter([], "Kitchen scale")
    False
    """
    if any(uuid.lower() in _ADVERTISED for uuid in service_uuids):
        return True
    if local_name:
        return any(local_name.startswith(n) for layout in LAYOUTS for n in layout.names)
    return False


def choose_layout(
    services: Mapping[str, Set[str]], *, local_name: str | None = None, model: str | None = None
) -> AdapterLayout | None:
    """The layout of a connected adapter, from the services it offers.

    ``services`` maps each service UUID to the UUIDs of its characteristics (lower
    case); ``local_name`` and ``model`` (Device Information's model number) tell
    apart layouts on the same service. ``None`` if no layout fits.

    >>> fff0 = {uuid16(0xFFF0): {uuid16(0xFFF1), uuid16(0xFFF2)}}
    >>> choose_layout(fff0).name
    'fff0'
    >>> choose_layout(fff0, local_name="WiC_a1b2c3d4e5f6", model="WiCAN-PRO").name
    'wican-pro'
    """
    offered = {service.lower(): {c.lower() for c in chars} for service, chars in services.items()}
    for layout in LAYOUTS:
        characteristics = offered.get(layout.service)
        if characteristics is None or not {layout.notify, layout.write} <= characteristics:
            continue
        # The WiCAN Pro's FFF0 is the generic clones' FFF0: only its model (or,
        # lacking it, its name) tells it apart.
        named = model is None and local_name is not None and local_name.startswith(layout.names)
        if layout.model is not None and model != layout.model and not named:
            continue
        return layout
    return None
