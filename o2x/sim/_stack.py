"""The virtual air: a Bumble ``LocalLink`` with one controller per device, and the central.

Bumble's emulated controller is close to a real one but leaves out a few things the
simulator needs (scan responses, RSSI, cancelling a pending connection, refusing a
connection); :class:`SimController` adds them. Everything here runs on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason
from bumble import hci, ll, pairing
from bumble.controller import Controller
from bumble.device import Device, DeviceConfiguration
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

__all__ = [
    "CENTRAL_ADDRESS",
    "Air",
    "SimController",
    "address_for",
    "build_ad",
    "parse_ad",
    "uninterruptible",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Random static address of the radio's central (the "phone").
CENTRAL_ADDRESS: Final = "F0:0D:00:00:00:01"

# AD types (Bluetooth Core Supplement, part A) used by the O2X profile.
AD_FLAGS: Final = 0x01
AD_INCOMPLETE_UUID16: Final = 0x02
AD_COMPLETE_UUID16: Final = 0x03
AD_INCOMPLETE_UUID128: Final = 0x06
AD_COMPLETE_UUID128: Final = 0x07
AD_SHORT_NAME: Final = 0x08
AD_COMPLETE_NAME: Final = 0x09
AD_TX_POWER: Final = 0x0A
AD_SERVICE_DATA16: Final = 0x16
AD_SERVICE_DATA128: Final = 0x21
AD_MANUFACTURER: Final = 0xFF
# LE General Discoverable, BR/EDR not supported.
FLAGS_LE_ONLY_GENERAL: Final = 0x06

_BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"


async def uninterruptible(operation: Awaitable[_T]) -> _T:
    """Await a Bumble operation that must not be torn in the middle.

    Bumble's host and GATT client match each response to the one command or
    request in flight; cancelling a coroutine while it waits leaves the late
    response to be taken for the next one's. So the operation runs as its own task:
    a cancellation of the caller is honoured once that task has finished.
    """
    task = asyncio.ensure_future(operation)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the caller's cancellation is what propagates
        raise


def address_for(key: str) -> str:
    """A random static Bluetooth address derived from ``key`` (stable across runs)."""
    digest = bytearray(hashlib.sha256(b"o2x-sim:" + key.encode()).digest()[:6])
    digest[0] |= 0xC0  # the two top bits of a random static address are 1
    return ":".join(f"{b:02X}" for b in digest)


def build_ad(structures: Iterable[tuple[int, bytes]]) -> bytes:
    """Serialise (AD type, value) pairs into advertising data (at most 31 bytes)."""
    data = b"".join(bytes((len(value) + 1, ad_type)) + value for ad_type, value in structures)
    if len(data) > 31:
        raise ValueError(f"legacy advertising data holds 31 bytes, not {len(data)}")
    return data


def uuid128_le(value: str) -> bytes:
    """A 128-bit UUID string as the little-endian bytes advertising data carries."""
    return uuid.UUID(value).bytes[::-1]


def _uuid16_str(value: bytes) -> str:
    return f"0000{int.from_bytes(value, 'little'):04x}{_BASE_UUID_SUFFIX}"


@dataclasses.dataclass
class ParsedAd:
    """The fields of advertising data (plus scan response) that bleak reports."""

    local_name: str | None = None
    manufacturer_data: dict[int, bytes] = dataclasses.field(default_factory=dict)
    service_data: dict[str, bytes] = dataclasses.field(default_factory=dict)
    service_uuids: list[str] = dataclasses.field(default_factory=list)
    tx_power: int | None = None


def parse_ad(structures: Iterable[tuple[int, bytes]]) -> ParsedAd:
    """Collect (AD type, value) pairs into what bleak's ``AdvertisementData`` holds."""
    parsed = ParsedAd()
    for ad_type, value in structures:
        if ad_type == AD_COMPLETE_NAME or (ad_type == AD_SHORT_NAME and parsed.local_name is None):
            parsed.local_name = value.decode("utf-8", errors="replace")
        elif ad_type == AD_MANUFACTURER and len(value) >= 2:
            parsed.manufacturer_data[int.from_bytes(value[:2], "little")] = value[2:]
        elif ad_type in (AD_COMPLETE_UUID16, AD_INCOMPLETE_UUID16):
            for i in range(0, len(value) - 1, 2):
                _add_unique(parsed.service_uuids, _uuid16_str(value[i : i + 2]))
        elif ad_type in (AD_COMPLETE_UUID128, AD_INCOMPLETE_UUID128):
            for i in range(0, len(value) - 15, 16):
                _add_unique(parsed.service_uuids, str(uuid.UUID(bytes=value[i : i + 16][::-1])))
        elif ad_type == AD_SERVICE_DATA16 and len(value) >= 2:
            parsed.service_data[_uuid16_str(value[:2])] = value[2:]
        elif ad_type == AD_SERVICE_DATA128 and len(value) >= 16:
            parsed.service_data[str(uuid.UUID(bytes=value[:16][::-1]))] = value[16:]
        elif ad_type == AD_TX_POWER and len(value) == 1:
            parsed.tx_power = int.from_bytes(value, "little", signed=True)
    return parsed


def _add_unique(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


@dataclasses.dataclass
class _AirAdvInd(ll.AdvInd):
    """An ADV_IND as it travels through the virtual air.

    Bumble's link carries only the advertising data; a real scanner in active mode
    also gets the advertiser's scan response, and measures a signal strength.
    """

    scan_response_data: bytes = b""
    rssi: int = -60


_LEGACY_LE_FEATURES = Controller.le_features & ~(
    hci.LeFeatureMask.LE_EXTENDED_ADVERTISING | hci.LeFeatureMask.LE_PERIODIC_ADVERTISING
)


class SimController(Controller):
    """Bumble's emulated controller with what a simulated car and phone need on top.

    - Legacy advertising only (the O2X dongle uses ADV_IND plus a scan response),
      with the scan response actually delivered to active scanners.
    - A per-controller ``rssi`` for the advertisements it sends.
    - ``LE Create Connection Cancel`` really cancels and completes the pending
      connection with an error, so that a connection attempt to a silent address
      ends at its timeout instead of hanging.
    - A peripheral that is no longer advertising, or ``accepting = False``,
      terminates a connection request at once instead of ignoring it.
    - 251-byte LE ACL buffers (data length extension), so a notification of a
      247-byte MTU travels in one or two packets.
    """

    le_features = _LEGACY_LE_FEATURES
    le_acl_data_packet_length = 251
    supported_max_tx_octets = 251
    supported_max_rx_octets = 251
    suggested_max_tx_octets = 251

    def __init__(self, name: str, *, link: LocalLink, rssi: int = -60) -> None:
        super().__init__(name, link=link)
        self.rssi = rssi
        self.accepting = True

    # --- advertising ---------------------------------------------------------------

    def send_advertising_pdu(self, packet: ll.AdvertisingPdu) -> None:
        if type(packet) is ll.AdvInd:
            packet = _AirAdvInd(
                advertiser_address=packet.advertiser_address,
                data=packet.data,
                scan_response_data=bytes(self.le_legacy_advertiser.scan_response_data),
                rssi=self.rssi,
            )
        super().send_advertising_pdu(packet)

    def on_advertising_pdu(self, pdu: Any) -> None:
        if not isinstance(pdu, ll.AdvInd):
            super().on_advertising_pdu(pdu)
            return
        if self.le_scan_enable:
            rssi = pdu.rssi if isinstance(pdu, _AirAdvInd) else -60
            report_type = hci.HCI_LE_Advertising_Report_Event.EventType
            reports = [(report_type.ADV_IND, pdu.data)]
            active = self.le_scan_type == hci.HCI_LE_Set_Scan_Parameters_Command.ACTIVE_SCANNING
            if active and isinstance(pdu, _AirAdvInd):
                reports.append((report_type.SCAN_RSP, pdu.scan_response_data))
            for event_type, data in reports:
                report = hci.HCI_LE_Advertising_Report_Event.Report(
                    event_type=event_type,
                    address_type=pdu.advertiser_address.address_type,
                    address=pdu.advertiser_address,
                    data=data,
                    rssi=rssi,
                )
                self.send_hci_packet(hci.HCI_LE_Advertising_Report_Event([report]))
        pending = self.pending_le_connection
        if pending is not None and pending.peer_address == pdu.advertiser_address:
            self.create_le_connection(pdu.advertiser_address)

    # --- connections ---------------------------------------------------------------

    def on_le_connect_ind(self, packet: ll.ConnectInd) -> None:
        advertiser = self.le_legacy_advertiser
        if packet.advertiser_address != advertiser.address:
            return  # addressed to another device on the link
        if advertiser.enabled and self.accepting:
            super().on_le_connect_ind(packet)
            return
        # The central already counts itself connected: tell it the link failed.
        self.link.send_ll_control_pdu(
            sender_address=packet.advertiser_address,
            receiver_address=packet.initiator_address,
            packet=ll.TerminateInd(
                error_code=hci.HCI_ErrorCode.CONNECTION_FAILED_TO_BE_ESTABLISHED_ERROR
            ),
        )

    def on_hci_le_create_connection_cancel_command(self, _command: Any) -> Any:
        pending = self.pending_le_connection
        self.pending_le_connection = None
        if pending is not None:
            self.send_hci_packet(
                hci.HCI_LE_Connection_Complete_Event(
                    status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                    connection_handle=0,
                    role=hci.Role.CENTRAL,
                    peer_address_type=pending.peer_address.address_type,
                    peer_address=pending.peer_address,
                    connection_interval=0,
                    peripheral_latency=0,
                    supervision_timeout=0,
                    central_clock_accuracy=0,
                )
            )
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)


def make_device(
    link: LocalLink, name: str, address: str, *, rssi: int = -60
) -> tuple[SimController, Device]:
    """A Bumble host ``Device`` wired to its own :class:`SimController` on ``link``."""
    controller = SimController(name, link=link, rssi=rssi)
    host = Host(controller, AsyncPipeSink(controller))
    config = DeviceConfiguration(name=name, address=hci.Address(address))
    return controller, Device(config=config, host=host)


AdvertisementListener = Callable[[Any], None]


class EnterPasskey(pairing.PairingDelegate):
    """A central with a keyboard: it enters ``passkey`` (``None``: it has none to give)."""

    def __init__(self, passkey: str | None) -> None:
        super().__init__(io_capability=pairing.PairingDelegate.KEYBOARD_INPUT_ONLY)
        self.passkey = passkey

    async def get_number(self) -> int | None:
        return None if self.passkey is None or not self.passkey.isdigit() else int(self.passkey)


class ShowPasskey(pairing.PairingDelegate):
    """A peripheral with a fixed passkey (the WiCAN's ``ble_pass``), shown for the entering."""

    def __init__(self, passkey: str) -> None:
        super().__init__(io_capability=pairing.PairingDelegate.DISPLAY_OUTPUT_ONLY)
        self.passkey = passkey

    async def generate_passkey(self) -> int:
        return int(self.passkey)


class Air:
    """The radio environment on one asyncio loop: link, central device, scan sharing.

    The bleak backend classes and the simulated vehicles reach each other only
    through this object.
    """

    def __init__(self, *, mtu: int, scan_interval_ms: float) -> None:
        self.mtu = mtu
        self.scan_interval_ms = scan_interval_ms
        self.loop = asyncio.get_running_loop()
        self.link = LocalLink()  # type: ignore[no-untyped-call]
        self.central_controller, self.central = make_device(
            self.link, "o2x-virtual-central", CENTRAL_ADDRESS
        )
        self.connect_lock = asyncio.Lock()
        self.closed = False
        #: Local names seen in advertisements, by address (for ``BleakClient.name``).
        self.names: dict[str, str] = {}
        #: The passkey the central enters when pairing each connection (by handle),
        #: as a user types the one the peripheral shows (``BleakClient.pair``).
        self.passkeys: dict[int, str | None] = {}
        self.central.pairing_config_factory = self._central_pairing
        self._listeners: list[tuple[AdvertisementListener, bool]] = []
        self._scan_lock = asyncio.Lock()
        self._scanning_active: bool | None = None
        self._closers: list[Callable[[], Any]] = []
        self.central.on("advertisement", self._on_advertisement)

    async def open(self) -> None:
        await self.central.power_on()

    def _central_pairing(self, connection: Any) -> pairing.PairingConfig:
        passkey = self.passkeys.get(connection.handle)
        return pairing.PairingConfig(
            sc=True, mitm=True, bonding=True, delegate=EnterPasskey(passkey)
        )

    def check_loop(self) -> None:
        """Raise unless the radio is open and called on the loop it lives on."""
        if self.closed:
            # What bleak raises when the adapter has been switched off.
            raise BleakBluetoothNotAvailableError(
                "the virtual radio is closed", BleakBluetoothNotAvailableReason.POWERED_OFF
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop:
            raise RuntimeError(
                "the virtual radio lives on another event loop: run bleak calls "
                "through radio.portal.run(...)"
            )

    # --- scanning -------------------------------------------------------------------

    def _on_advertisement(self, advertisement: Any) -> None:
        address = advertisement.address.to_string(False)
        for ad_type, value in advertisement.data.ad_structures:
            if ad_type in (AD_COMPLETE_NAME, AD_SHORT_NAME):
                self.names[address] = value.decode("utf-8", errors="replace")
        for listener, _ in list(self._listeners):
            listener(advertisement)

    async def add_scan_listener(self, listener: AdvertisementListener, *, active: bool) -> None:
        """Start delivering advertisements to ``listener``; scanning runs while any listens."""
        self._listeners.append((listener, active))
        await uninterruptible(self._apply_scan_mode())

    async def remove_scan_listener(self, listener: AdvertisementListener) -> None:
        # Bound methods are new objects at each access: compare with ==.
        self._listeners = [(f, a) for f, a in self._listeners if f != listener]
        await uninterruptible(self._apply_scan_mode())

    async def _apply_scan_mode(self) -> None:
        # One controller scans for every scanner: actively if any of them wants
        # scan responses.
        async with self._scan_lock:
            wanted = any(active for _, active in self._listeners) if self._listeners else None
            if wanted == self._scanning_active or self.closed:
                return
            if self._scanning_active is not None:
                await self.central.stop_scanning()
                self._scanning_active = None
            if wanted is not None:
                await self.central.start_scanning(
                    active=wanted,
                    scan_interval=self.scan_interval_ms,
                    scan_window=self.scan_interval_ms,
                )
            self._scanning_active = wanted

    # --- lifetime -------------------------------------------------------------------

    def on_close(self, closer: Callable[[], Any]) -> Callable[[], None]:
        """Run ``closer`` (sync or async) when the air closes; returns an unregister function."""
        self._closers.append(closer)

        def unregister() -> None:
            if closer in self._closers:
                self._closers.remove(closer)

        return unregister

    async def release_users(self) -> None:
        """Disconnect the clients and stop the scanners that use this air."""
        while self._closers:
            result = self._closers.pop()()
            if asyncio.iscoroutine(result):
                await result

    async def close(self) -> None:
        """Release the users, then switch the central off and take it off the link."""
        if self.closed:
            return
        await self.release_users()
        self.closed = True
        self._listeners.clear()
        async with self._scan_lock:
            if self._scanning_active is not None:
                await self.central.stop_scanning()
                self._scanning_active = None
        for connection in list(self.central.connections.values()):
            await connection.disconnect()
        await self.central.power_off()
        if self.central_controller in self.link.controllers:
            self.link.remove_controller(self.central_controller)


def advertisement_structures(advertisement: Any) -> list[tuple[int, bytes]]:
    """The (AD type, value) pairs of a Bumble advertisement (data plus scan response)."""
    return [(int(ad_type), bytes(value)) for ad_type, value in advertisement.data.ad_structures]
