"""A bleak backend on Bumble: bleak's public classes drive a Bumble central on the virtual air.

``BleakScanner(backend=VirtualBleakScanner, virtual_radio=radio)`` and
``BleakClient(device, backend=VirtualBleakClient, virtual_radio=radio)`` behave like
bleak on a real adapter (BlueZ flavoured), with the simulated vehicles as peripherals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
)
from bleak.uuids import normalize_uuid_str
from bumble import att, core, hci
from bumble.device import Peer

from ._adapter import _NO_PASSKEY_WHY, NO_PASSKEY
from ._stack import Air, advertisement_structures, parse_ad, uninterruptible

__all__ = ["VirtualBleakClient", "VirtualBleakScanner"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# ATT's default MTU, what a link has before the MTU exchange.
_DEFAULT_MTU = 23


class _HasAir(Protocol):
    @property
    def air(self) -> Air: ...


def _air_of(virtual_radio: object) -> Air:
    if isinstance(virtual_radio, Air):
        return virtual_radio
    try:
        air = getattr(virtual_radio, "air", None)
    except RuntimeError as exc:  # a VirtualRadio that is not open: the adapter is off
        raise BleakBluetoothNotAvailableError(
            str(exc), BleakBluetoothNotAvailableReason.POWERED_OFF
        ) from exc
    if isinstance(air, Air):
        return air
    raise BleakError(
        "the virtual bleak backend needs virtual_radio=<an open o2x.sim.VirtualRadio>; "
        "use BleakScanner(**radio.scanner_kwargs()) / BleakClient(..., **radio.client_kwargs())"
    )


def _uuid_str(bumble_uuid: Any) -> str:
    return normalize_uuid_str(bumble_uuid.to_hex_str("-"))


class VirtualBleakScanner(BaseBleakScanner):
    """Scanner backend listening to advertisements on a :class:`~o2x.sim.VirtualRadio`.

    Active scanning (bleak's default) merges each advertisement with its scan
    response, as BlueZ reports it; passive scanning sees advertising data only.
    """

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        virtual_radio: object = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._air = _air_of(virtual_radio)
        self._active = scanning_mode != "passive"
        self._scanning = False
        self._unregister_close: Callable[[], None] | None = None

    async def start(self) -> None:
        self._air.check_loop()
        if self._scanning:
            return
        self.seen_devices = {}
        # Scanning from here on, so that stop() undoes a start cut short by a
        # cancellation (the listener is added before the scan mode is applied).
        self._scanning = True
        self._unregister_close = self._air.on_close(self.stop)
        await self._air.add_scan_listener(self._on_advertisement, active=self._active)

    async def stop(self) -> None:
        if not self._scanning:
            return
        self._scanning = False
        if self._unregister_close is not None:
            self._unregister_close()
            self._unregister_close = None
        await self._air.remove_scan_listener(self._on_advertisement)

    def _on_advertisement(self, advertisement: Any) -> None:
        if not self._scanning:
            return
        parsed = parse_ad(advertisement_structures(advertisement))
        if not self.is_allowed_uuid(parsed.service_uuids):
            return
        address = advertisement.address.to_string(False)
        data = AdvertisementData(
            local_name=parsed.local_name,
            manufacturer_data=parsed.manufacturer_data,
            service_data=parsed.service_data,
            service_uuids=parsed.service_uuids,
            tx_power=parsed.tx_power,
            rssi=advertisement.rssi,
            platform_data=(advertisement,),
        )
        # Like BlueZ, the device keeps the name it was once seen with even when a
        # later advertisement (passive scanning) does not carry it.
        name = parsed.local_name or self._air.names.get(address)
        device = self.create_or_update_device(address, address, name, advertisement, data)
        self.call_detection_callbacks(device, data)


class VirtualBleakClient(BaseBleakClient):
    """Client backend connecting through the central of a :class:`~o2x.sim.VirtualRadio`.

    ``connect`` waits for the peripheral's advertisement (like a real controller's
    create-connection), exchanges the MTU (247 by default, as phones do) and
    discovers the services. A connection that cannot be made within the timeout
    raises :class:`~bleak.exc.BleakDeviceNotFoundError` for an address string and
    :class:`TimeoutError` for a :class:`~bleak.backends.device.BLEDevice`. As with
    BlueZ, the disconnected callback runs on every disconnection, including one
    asked for with :meth:`disconnect`.
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        services: set[str] | None = None,
        virtual_radio: object = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._air = _air_of(virtual_radio)
        self._wanted_services = services
        self._given_as_device = isinstance(address_or_ble_device, BLEDevice)
        self._device_name = (
            address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._connection: Any = None
        self._peer: Any = None
        # Done when the current connection goes: a GATT operation in flight then
        # fails at once (see _gatt).
        self._gone: asyncio.Future[None] | None = None
        self._subscribers: dict[int, Callable[[bytes], None]] = {}
        self._unregister_close: Callable[[], None] | None = None

    # --- properties ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return (
            self._device_name
            or self._air.names.get(self.address.upper())
            or self.address.replace(":", "-")
        )

    @property
    def mtu_size(self) -> int:
        if self._connection is None:
            return _DEFAULT_MTU
        return int(self._connection.att_mtu)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    # --- connection ------------------------------------------------------------------

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        self._air.check_loop()
        if self.is_connected:
            raise BleakError("Client is already connected")
        if pair:
            logger.info("the virtual radio has no pairing; connecting without it")
        timeout = float(kwargs.get("timeout", self._timeout))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            peer_address = hci.Address(self.address.upper())
        except (core.InvalidArgumentError, ValueError) as exc:
            raise BleakDeviceNotFoundError(
                self.address, f"{self.address!r} is not an address"
            ) from exc

        connection = await self._create_connection(peer_address, deadline)
        if connection.handle not in self._air.central.connections:
            # Refused by the peripheral (it had just gone out of range): the link
            # was terminated before we could even watch it.
            raise BleakError(f"{self.address} terminated the connection at once")
        self._connection = connection
        self._peer = peer = Peer(connection)
        self._gone = asyncio.get_running_loop().create_future()
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        self._unregister_close = self._air.on_close(self.disconnect)
        try:
            async with asyncio.timeout_at(deadline):
                await self._gatt("MTU exchange", peer.request_mtu(self._air.mtu))
                self.services = await self._discover(peer)
        except BaseException:
            await asyncio.shield(self._drop_quietly())
            raise

    async def _create_connection(self, peer_address: Any, deadline: float) -> Any:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(deadline):
            await self._air.connect_lock.acquire()
        try:
            remaining = max(0.0, deadline - loop.time())
            # Bumble cancels the controller's pending connection itself when its own
            # timeout expires; a cancellation of the caller is handled below.
            attempt = asyncio.ensure_future(
                self._air.central.connect(peer_address, timeout=remaining)
            )
            try:
                return await asyncio.shield(attempt)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    await asyncio.shield(self._abort_connect(attempt))
                raise
            except core.TimeoutError:
                if self._given_as_device:
                    raise TimeoutError(
                        f"connection to {self.address} not established in time"
                    ) from None
                raise BleakDeviceNotFoundError(
                    self.address, f"Device with address {self.address} was not found."
                ) from None
            except core.ConnectionError as exc:
                raise BleakError(f"connection to {self.address} failed: {exc}") from exc
        finally:
            self._air.connect_lock.release()

    async def _abort_connect(self, attempt: asyncio.Future[Any]) -> None:
        # A cancelled connect must neither leave the controller trying to connect nor
        # a connection that completed meanwhile with nobody owning it.
        if not attempt.done():
            command = hci.HCI_LE_Create_Connection_Cancel_Command()
            await uninterruptible(self._air.central.send_sync_command(command))
            await asyncio.wait([attempt])
        if attempt.cancelled() or attempt.exception() is not None:
            return
        try:
            await uninterruptible(attempt.result().disconnect())
        except core.BaseBumbleError:
            logger.debug("dropping a connection nobody owns failed", exc_info=True)

    async def _discover(self, peer: Any) -> BleakGATTServiceCollection:
        # ``peer`` is the connection's, passed in: self._peer is cleared the moment
        # the link drops, which may be between two of these steps.
        collection = BleakGATTServiceCollection()
        for service in await self._gatt("service discovery", peer.discover_services()):
            service_uuid = _uuid_str(service.uuid)
            if self._wanted_services and service_uuid not in self._wanted_services:
                continue
            bleak_service = BleakGATTService(service, service.handle, service_uuid)
            collection.add_service(bleak_service)
            characteristics = await self._gatt(
                "characteristic discovery", peer.discover_characteristics(service=service)
            )
            for characteristic in characteristics:
                properties: list[CharacteristicPropertyName] = [
                    name
                    for bit, name in CHARACTERISTIC_PROPERTIES.items()
                    if int(characteristic.properties) & bit
                ]
                bleak_char = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    _uuid_str(characteristic.uuid),
                    properties,
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                descriptors = await self._gatt(
                    "descriptor discovery", peer.discover_descriptors(characteristic)
                )
                for descriptor in descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor, descriptor.handle, _uuid_str(descriptor.type), bleak_char
                        )
                    )
        return collection

    def _on_disconnection(self, reason: int) -> None:
        logger.debug("disconnected from %s, reason 0x%02X", self.address, reason)
        self._connection = None
        self._peer = None
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        self._subscribers.clear()
        self.services = None
        if self._unregister_close is not None:
            self._unregister_close()
            self._unregister_close = None
        callback = self._disconnected_callback
        if callback is not None:
            asyncio.get_running_loop().call_soon(callback)

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            await uninterruptible(connection.disconnect())
        except core.BaseBumbleError as exc:
            if self._connection is not None:
                raise BleakError(f"disconnecting from {self.address} failed: {exc}") from exc

    async def _drop_quietly(self) -> None:
        try:
            await self.disconnect()
        except Exception:
            logger.debug("dropping the link after a failed connect failed", exc_info=True)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Pair (LE Secure Connections, passkey entry); ``passkey=`` is the one entered.

        The virtual radio's own keyword: real backends pair through the system,
        which asks the user (or an agent) for the passkey.
        """
        self._air.check_loop()
        connection = self._connection
        if connection is None:
            raise BleakError("Not connected")
        if connection.is_encrypted and connection.authenticated:
            return
        if kwargs.get("passkey") == NO_PASSKEY:
            raise BleakError(f"pairing with {self.address} failed: {_NO_PASSKEY_WHY}")
        self._air.passkeys[connection.handle] = kwargs.get("passkey")
        try:
            await uninterruptible(connection.pair())
        except Exception as exc:  # Bumble's SMP errors (a wrong passkey) and others
            raise BleakError(f"pairing with {self.address} failed: {exc}") from exc
        finally:
            self._air.passkeys.pop(connection.handle, None)

    async def unpair(self) -> None:
        raise NotImplementedError("the virtual radio does not simulate pairing")

    # --- GATT ------------------------------------------------------------------------

    async def _gatt(self, what: str, operation: Awaitable[_T]) -> _T:
        """Await a Bumble GATT operation, translating its failures into bleak's errors.

        A link that drops meanwhile fails it at once: Bumble may have sent the
        request to a connection already gone ("connection ... not found") and would
        wait for its response until its 30 s GATT timeout. The operation is then
        abandoned; its client belonged to the connection that went, so no later
        response can be taken for another request's.
        """
        gone = self._gone
        task = asyncio.ensure_future(operation)
        if gone is None or gone.done():
            _abandon(task)
            raise BleakError(f"{what} failed: {self.address} is not connected")
        try:
            # Not cut short by the caller's cancellation (see uninterruptible).
            await _first_of(task, gone)
        except asyncio.CancelledError:
            if not task.done() and not gone.done():
                await _first_of(task, gone)
            _abandon(task)
            raise
        if not task.done():
            _abandon(task)
            raise BleakError(f"{what} failed: {self.address} disconnected")
        try:
            return task.result()
        except asyncio.CancelledError:
            # The operation's, not ours (that one was caught above): Bumble cancels
            # the pending ATT response when the link drops.
            raise BleakError(f"{what} failed: {self.address} disconnected") from None
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc
        except core.BaseBumbleError as exc:
            raise BleakError(f"{what} failed: {exc}") from exc

    def _require_peer(self) -> Any:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        if use_cached:
            cached = peer.gatt_client.cached_values.get(characteristic.handle)
            if cached is not None:
                return bytearray(cached[1])
        value = await self._gatt("read", peer.read_value(characteristic.obj))
        return bytearray(value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        value = await self._gatt("descriptor read", peer.read_value(descriptor.handle))
        return bytearray(value)

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        peer = self._require_peer()
        await self._gatt(
            "write", peer.write_value(characteristic.obj, bytes(data), with_response=response)
        )

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        peer = self._require_peer()
        await self._gatt(
            "descriptor write", peer.write_value(descriptor.handle, bytes(data), with_response=True)
        )

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        peer = self._require_peer()
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakError(f"characteristic {characteristic.uuid} does not notify")
        if characteristic.handle in self._subscribers:
            raise BleakError(f"notifications already started on {characteristic.uuid}")

        def subscriber(value: bytes) -> None:
            try:
                callback(bytearray(value))
            except Exception:
                # Bumble would abort delivering this notification to anyone else
                # and report it as its own error; it is the application's.
                logger.exception("notification callback for %s raised", characteristic.uuid)

        self._subscribers[characteristic.handle] = subscriber
        try:
            await self._gatt("subscribe", peer.subscribe(characteristic.obj, subscriber))
        except BaseException:
            self._subscribers.pop(characteristic.handle, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._require_peer()
        subscriber = self._subscribers.pop(characteristic.handle, None)
        if subscriber is None:
            return
        await self._gatt("unsubscribe", peer.unsubscribe(characteristic.obj, subscriber))


async def _first_of(task: asyncio.Future[Any], gone: asyncio.Future[None]) -> None:
    """Wait until ``task`` is done or the link ``gone``; neither is cancelled."""
    futures: set[asyncio.Future[Any]] = {task, gone}
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


def _abandon(task: asyncio.Future[Any]) -> None:
    """Let ``task`` go: cancelled if still running, its outcome retrieved once done."""

    def retrieve(done: asyncio.Future[Any]) -> None:
        if not done.cancelled():
            done.exception()

    task.cancel()
    task.add_done_callback(retrieve)
