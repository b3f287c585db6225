"""A BLE OBD adapter in the simulated car's OBD port: the GATT side of the emulators.

:class:`AdapterDongle` puts an :class:`~o2x.sim.adapters.Elm327Emulator` (a clone
with the FFF0 layout) or an :class:`~o2x.sim.adapters.SlcanEmulator` (a WiCAN, FEE0)
behind a Bumble GATT service, as a UART-to-BLE bridge does: what the host writes
goes to the emulator, what the emulator sends goes out as notifications of
``notification_size`` bytes (20 by default: an MTU of 23, which is what these
adapters and the apps that use them negotiate). The car's frames come in from
:class:`~o2x.sim.SimulatedVehicle`'s ticker. Everything runs on the radio's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from bumble import att, gatt, pairing

from ..obd.layouts import LAYOUTS, AdapterLayout
from ._stack import (
    AD_COMPLETE_NAME,
    AD_COMPLETE_UUID16,
    AD_FLAGS,
    FLAGS_LE_ONLY_GENERAL,
    ShowPasskey,
    build_ad,
)
from .adapters import Elm327Emulator, Elm327Quirks, SlcanEmulator

__all__ = ["DONGLES", "AdapterDongle"]

#: The dongles a simulated car can carry.
DONGLES: Final = ("o2x", "elm327", "wican")
#: Each adapter's GATT layout, by its name in o2x.obd.layouts.
_LAYOUT_OF: Final = {"elm327": "fff0", "wican": "wican"}
#: How often the bridge looks for the emulator's output, in seconds.
PUMP_PERIOD: Final = 0.005


#: A passkey the virtual radio cannot pair with: Bumble's pairing takes 0 for "no
#: passkey" (and fails an assertion in a task of its own), where a real adapter may
#: use it.
NO_PASSKEY = "000000"
_NO_PASSKEY_WHY = (
    "the virtual radio cannot pair with the passkey 000000 (Bumble's pairing takes 0 "
    "for no passkey): simulate another"
)


def _layout(name: str) -> AdapterLayout:
    return next(layout for layout in LAYOUTS if layout.name == name)


def _short_uuid(uuid: str) -> bytes:
    return int(uuid[4:8], 16).to_bytes(2, "little")


class AdapterDongle:
    """One adapter: its emulator, its GATT service and its advertising data."""

    def __init__(
        self,
        kind: str,
        *,
        address: str,
        quirks: Elm327Quirks | None = None,
        notification_size: int = 20,
        seed: int = 0,
        passkey: str | None = None,
        protocol: str | None = None,
    ) -> None:
        if kind not in _LAYOUT_OF:
            raise ValueError(f"no simulated OBD adapter {kind!r}: elm327 or wican")
        #: What the adapter speaks: an ELM327 clone ELM327; a WiCAN slcan, unless set
        #: to its elm327 protocol ([W]: the protocol setting applies to BLE too).
        self.protocol = protocol or ("elm327" if kind == "elm327" else "slcan")
        if self.protocol not in ("elm327", "slcan") or (
            kind == "elm327" and self.protocol != "elm327"
        ):
            raise ValueError(f"a simulated {kind} cannot speak {self.protocol!r}")
        self.kind = kind
        self.layout: Final = _layout(_LAYOUT_OF[kind])
        self.emulator: Elm327Emulator | SlcanEmulator = (
            Elm327Emulator(quirks=quirks or Elm327Quirks(), seed=seed)
            if self.protocol == "elm327"
            else SlcanEmulator()
        )
        #: The local name: a clone's generic one, or WiCAN's ``WiC_`` and its address.
        self.local_name: Final = (
            "OBDII" if kind == "elm327" else "WiC_" + address.replace(":", "").lower()
        )
        #: The static passkey pairing needs (WiCAN's ``ble_pass``, 123456 by default),
        #: or ``None``: no pairing. Without it the pipe refuses writes.
        self.passkey = passkey if self.layout.passkey else None
        if self.passkey is not None and not (len(self.passkey) == 6 and self.passkey.isdigit()):
            raise ValueError(f"a BLE passkey is six digits, not {self.passkey!r}")
        if self.passkey == NO_PASSKEY:
            raise ValueError(_NO_PASSKEY_WHY)
        self.notification_size = notification_size
        self.notifications_sent = 0
        self.bytes_written = 0
        #: Called at each write to the pipe; True drops it (the link is going).
        self.on_write: Callable[[], bool] = lambda: False
        self._pipe: Any = None
        self._notify: Callable[[bytes], None] | None = None

    # --- GATT -----------------------------------------------------------------------------

    def service(self) -> gatt.Service:
        """The adapter's serial service: one notifying and one writable characteristic."""
        layout = self.layout
        value: gatt.CharacteristicValue[bytes] = gatt.CharacteristicValue(
            read=lambda _connection: b"", write=self._written
        )
        props = gatt.Characteristic.Properties
        if layout.notify == layout.write:
            pipe: gatt.Characteristic[bytes] = gatt.Characteristic(
                layout.notify,
                props.READ | props.WRITE | props.WRITE_WITHOUT_RESPONSE | props.NOTIFY,
                gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE,
                value,
            )
            characteristics: list[gatt.Characteristic[bytes]] = [pipe]
        else:
            pipe = gatt.Characteristic(
                layout.notify, props.NOTIFY, gatt.Characteristic.READABLE, b""
            )
            writable: gatt.Characteristic[bytes] = gatt.Characteristic(
                layout.write,
                props.WRITE | props.WRITE_WITHOUT_RESPONSE,
                gatt.Characteristic.WRITEABLE,
                value,
            )
            characteristics = [pipe, writable]
        self._pipe = pipe
        return gatt.Service(layout.service, characteristics)

    @property
    def notifying(self) -> Any:
        """The characteristic whose subscription opens the pipe."""
        return self._pipe

    def advertising(self) -> tuple[bytes, bytes]:
        """(advertising data, scan response): the service UUID, then the name."""
        adv = build_ad(
            [
                (AD_FLAGS, bytes((FLAGS_LE_ONLY_GENERAL,))),
                (AD_COMPLETE_UUID16, _short_uuid(self.layout.service)),
            ]
        )
        return adv, build_ad([(AD_COMPLETE_NAME, self.local_name.encode("ascii"))])

    def pairing_config(self, _connection: object) -> pairing.PairingConfig:
        """How the adapter pairs: secure connections, MITM, with its static passkey."""
        assert self.passkey is not None
        return pairing.PairingConfig(
            sc=True, mitm=True, bonding=True, delegate=ShowPasskey(self.passkey)
        )

    def _written(self, connection: Any, value: bytes) -> None:
        if self.passkey is not None and not (connection.is_encrypted and connection.authenticated):
            # [W]: the pipe's permissions ask for an authenticated (MITM) link.
            raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_AUTHENTICATION)
        if self.on_write():
            return  # the link is being dropped: the adapter never sees it
        self.bytes_written += len(value)
        self.emulator.write(bytes(value), asyncio.get_running_loop().time())
        self.pump()

    # --- the bytes --------------------------------------------------------------------------

    def open(self, notify: Callable[[bytes], None]) -> None:
        """A central subscribed: output goes to ``notify`` from now on."""
        self._notify = notify

    def close(self) -> None:
        """No central listens: output is lost, as a bridge drops it with no link."""
        self._notify = None

    def bus_frames(self, frames: list[tuple[int, bytes]]) -> None:
        """Frames on the car's bus, now."""
        now = asyncio.get_running_loop().time()
        for can_id, data in frames:
            self.emulator.bus_frame(can_id, data, now)
        self.pump()

    def pump(self) -> None:
        """Send what the emulator has got out by now."""
        data = self.emulator.read(asyncio.get_running_loop().time())
        notify = self._notify
        if not data or notify is None:
            return
        size = self.notification_size
        for start in range(0, len(data), size):
            notify(data[start : start + size])
            self.notifications_sent += 1

    async def run(self) -> None:
        """Pump the emulator's output for as long as the adapter is powered."""
        while True:
            await asyncio.sleep(PUMP_PERIOD)
            self.pump()


def notification_pdu(handle: int, chunk: bytes) -> bytes:
    """A notification straight onto the ATT bearer, as the GATT server would send it."""
    return bytes(att.ATT_Handle_Value_Notification(attribute_handle=handle, attribute_value=chunk))
