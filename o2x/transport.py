"""Everything o2x does with bleak: scan, connect, read the identity, subscribe, disconnect.

Two kinds of peer are found by one scan: an O2X dongle, by the VIN in its
manufacturer data, and what looks like a BLE OBD adapter (:mod:`o2x.obd.layouts`),
whose serial pipe :meth:`BleakLink.open_pipe` opens once connected.

:class:`BleakLink` lives on the BLE stack's asyncio loop (see :mod:`o2x._aio`); the
vehicle driver calls its coroutines through the portal and receives what the radio
reports through a :class:`LinkSink`, on its own loop. Notifications cross loops in
batches: one hop per burst, not one per notification. The same code drives the
system's Bluetooth and the virtual radio: only the bleak backend differs.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from ._aio import AsyncioPortal
from .dongle.profile import IDENTITY_UUID, TELEMETRY_UUID, advertised_vin
from .errors import BluetoothUnavailable, ConnectionFailed
from .obd.layouts import (
    DEFAULT_PASSKEY,
    AdapterLayout,
    choose_layout,
    looks_like_adapter,
    uuid16,
)

__all__ = ["BleakLink", "DongleScan", "LinkSink", "bluetooth_hint", "classify"]

_log = logging.getLogger(__name__)

#: Seconds allowed for connecting (bleak's own timeout) and for each GATT step.
CONNECT_TIMEOUT = 10.0
GATT_TIMEOUT = 10.0
#: Seconds allowed for a clean disconnection when leaving.
DISCONNECT_TIMEOUT = 1.0
#: Seconds allowed for pairing with an adapter that asks for a passkey.
PAIR_TIMEOUT = 20.0
#: Device Information's model number string: it tells a WiCAN Pro from a clone.
_MODEL_NUMBER = uuid16(0x2A24)
#: Notifications waiting to cross to the caller's thread, at most (about 1 MB).
_MAX_PENDING = 4096
#: Notifications handed to the sink per callback on the caller's loop, at most. A
#: backlog is worked through in slices, with the loop's other work between them,
#: rather than in one callback that could hold the loop for a long time.
_MAX_BATCH = 256


class LinkSink(Protocol):
    """What the radio reports, delivered on the caller's loop."""

    def advertisement(self, address: str, vin: str) -> None:
        """An O2X dongle advertising ``vin`` was seen at ``address``."""

    def adapter_seen(self, address: str) -> None:
        """What looks like a BLE OBD adapter was seen at ``address``."""

    def notifications(self, generation: int, chunks: list[bytes]) -> None:
        """Telemetry bytes arrived on link ``generation``, in order."""

    def link_lost(self, generation: int) -> None:
        """Link ``generation`` went down without being asked to."""


#: What the library offers instead of the system's Bluetooth, in a Python caller's
#: words; the command line says ``--simulate`` (``bluetooth_hint(simulate=...)``).
SIMULATE_IN_PYTHON = "pass radio=o2x.sim.VirtualRadio() to use a simulated vehicle"


def bluetooth_hint(*, simulate: str = SIMULATE_IN_PYTHON) -> str:
    """One line saying what to check when the system's Bluetooth cannot be used;
    ``simulate`` says how to do without it."""
    system = platform.system()
    if system == "Linux":
        return (
            "check that a Bluetooth adapter is present and the BlueZ service is running "
            f"(`bluetoothctl show`), or {simulate}"
        )
    if system == "Darwin":
        return (
            "check that Bluetooth is on and that this terminal may use it "
            "(System Settings > Privacy & Security > Bluetooth)"
        )
    return "check that Bluetooth is switched on and an adapter is present"


def classify(device: BLEDevice, advertisement: AdvertisementData) -> tuple[str | None, str] | None:
    """What a scan heard: ``(vin, name)`` for an O2X dongle, ``(None, name)`` for
    what looks like a BLE OBD adapter, ``None`` for anything else."""
    vin = advertised_vin(advertisement.manufacturer_data)
    name = advertisement.local_name or device.name or ""
    if vin is None and not looks_like_adapter(advertisement.service_uuids, name):
        return None
    return vin, name


class DongleScan:
    """A scan for dongles, on the portal's loop, each heard reported to ``seen`` on
    the caller's: ``seen(device, vin, name, rssi)``, ``vin`` ``None`` for an adapter."""

    def __init__(
        self,
        portal: AsyncioPortal,
        seen: Callable[[BLEDevice, str | None, str, int], object],
        *,
        scanner_kwargs: dict[str, Any] | None = None,
        system_bluetooth: bool = True,
    ) -> None:
        self._portal = portal
        self._seen = seen
        self._scanner_kwargs = scanner_kwargs or {}
        self._system = system_bluetooth
        self._scanner: BleakScanner | None = None

    async def start(self) -> None:
        """Start scanning: BluetoothUnavailable (the system's) or ConnectionFailed."""
        scanner = BleakScanner(detection_callback=self._detected, **self._scanner_kwargs)
        self._scanner = scanner  # first: a start cut short may have started the scan
        try:
            await scanner.start()
        except (OSError, BleakError) as exc:
            self._scanner = None
            raise _unavailable(self._system, "scan", exc) from exc

    async def stop(self) -> None:
        """Stop scanning (nothing happens if not scanning)."""
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        try:
            await scanner.stop()
        except (OSError, BleakError) as exc:
            _log.debug("stopping the scan failed: %s", exc)

    def _detected(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        heard = classify(device, advertisement)
        if heard is not None:
            vin, name = heard
            self._portal.to_caller_soon(self._seen, device, vin, name, advertisement.rssi)


class BleakLink:
    """One vehicle's link over bleak. Every coroutine runs on the portal's loop."""

    def __init__(
        self,
        portal: AsyncioPortal,
        sink: LinkSink,
        *,
        scanner_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        system_bluetooth: bool = True,
        passkey: str = DEFAULT_PASSKEY,
    ) -> None:
        self._portal = portal
        self._sink = sink
        self._passkey = passkey
        self._scanner_kwargs = scanner_kwargs or {}
        self._client_kwargs = client_kwargs or {}
        self._system = system_bluetooth
        self._scanner: BleakScanner | None = None
        self._scanning = False
        self._devices: dict[str, BLEDevice] = {}
        self._names: dict[str, str] = {}
        self._client: BleakClient | None = None
        # The open serial pipe of an OBD adapter: where to write, and how.
        self._pipe: tuple[Any, bool] | None = None
        #: Bumped for every new link and on every disconnection we ask for, so that
        #: late callbacks of an old link are recognised and ignored.
        self.generation = 0
        # Bounded: if the caller's thread stalls, the oldest notifications go (the
        # decoder resynchronises and counts the damage) rather than memory.
        self._pending: deque[tuple[int, bytes]] = deque(maxlen=_MAX_PENDING)
        self._flush_scheduled = False
        #: Unexpected exceptions the backend raised during a link's steps (_failed).
        self.backend_errors = 0

    # --- scanning --------------------------------------------------------------------

    async def start_scan(self) -> None:
        """Report O2X advertisements to the sink until :meth:`stop_scan`."""
        if self._scanning:
            return
        if self._scanner is None:
            self._scanner = BleakScanner(detection_callback=self._detected, **self._scanner_kwargs)
        # Set first: a start cut short by a cancellation may have started the scan,
        # and must be stopped like any other.
        self._scanning = True
        try:
            await self._scanner.start()
        except (OSError, BleakError) as exc:
            self._scanning = False
            raise self._unavailable("scan", exc) from exc

    async def stop_scan(self) -> None:
        """Stop scanning (nothing happens if not scanning)."""
        if not self._scanning or self._scanner is None:
            return
        self._scanning = False
        try:
            await self._scanner.stop()
        except (OSError, BleakError) as exc:
            _log.debug("stopping the scan failed: %s", exc)

    def remember_device(self, device: BLEDevice) -> None:
        """Connect to ``device`` itself, not only its address, when asked for it
        (bleak's ``BLEDevice`` carries what some backends need to connect)."""
        self._devices[device.address] = device

    def _detected(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        heard = classify(device, advertisement)
        if heard is None:
            return
        vin, name = heard
        if device.address not in self._devices:  # each peer once a link: -v
            _log.info(
                "heard %s (%s, RSSI %s dBm)",
                device.address,
                "an OBD adapter" if vin is None else f"an O2X dongle advertising {vin or 'no VIN'}",
                advertisement.rssi,
            )
        else:
            _log.debug("advertisement from %s, RSSI %s dBm", device.address, advertisement.rssi)
        self._devices[device.address] = device
        if name:
            self._names[device.address] = name
        if len(self._devices) > 256:  # a crowded car park must not grow this forever
            gone = next(iter(self._devices))
            self._devices.pop(gone)
            self._names.pop(gone, None)
        if vin is None:
            self._portal.to_caller_soon(self._sink.adapter_seen, device.address)
        else:
            self._portal.to_caller_soon(self._sink.advertisement, device.address, vin)

    # --- the link ----------------------------------------------------------------------

    async def connect(self, address: str) -> int:
        """Connect to ``address``; return the new link's generation."""
        await self.disconnect()
        self.generation += 1
        generation = self.generation
        target: BLEDevice | str = self._devices.get(address, address)
        client = BleakClient(
            target,
            disconnected_callback=lambda _: self._disconnected(generation),
            timeout=CONNECT_TIMEOUT,
            **self._client_kwargs,
        )
        self._client = client
        try:
            await client.connect()
        except Exception as exc:
            self._client = None
            if self._system and isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise self._unavailable("connect", exc) from exc
            raise self._failed(f"could not connect to {address}", exc) from exc
        _log.debug(
            "connected to %s: MTU %d, %d services",
            address,
            client.mtu_size,
            len(client.services.services),
        )
        return generation

    async def read_identity(self) -> bytes:
        """The identity characteristic's value (one IDENTITY frame)."""
        client = self._require_client()
        try:
            async with asyncio.timeout(GATT_TIMEOUT):
                return bytes(await client.read_gatt_char(IDENTITY_UUID))
        except Exception as exc:
            raise self._failed("could not read the dongle's identity", exc) from exc

    async def subscribe(self) -> None:
        """Enable telemetry notifications; bytes go to the sink from now on."""
        client = self._require_client()
        generation = self.generation
        try:
            async with asyncio.timeout(GATT_TIMEOUT):
                await client.start_notify(
                    TELEMETRY_UUID, lambda _, data: self._received(generation, data)
                )
        except Exception as exc:
            raise self._failed("could not subscribe to telemetry", exc) from exc

    async def open_pipe(self, address: str) -> AdapterLayout:
        """Open a connected OBD adapter's serial pipe: its output goes to the sink as
        notifications from now on, and :meth:`write` sends to it."""
        client = self._require_client()
        services = {
            service.uuid: {c.uuid for c in service.characteristics} for service in client.services
        }
        model: str | None = None
        if client.services.get_characteristic(_MODEL_NUMBER) is not None:
            try:
                async with asyncio.timeout(GATT_TIMEOUT):
                    raw = await client.read_gatt_char(_MODEL_NUMBER)
                model = bytes(raw).decode("utf-8", "replace").strip("\x00 ")
            except Exception as exc:  # the layout is then chosen without it
                self._failed(f"reading the model number of {address}", exc)
                _log.debug("reading the model number of %s failed: %s", address, exc)
        layout = choose_layout(services, local_name=self._names.get(address), model=model)
        _log.debug(
            "%s: services %s, model %r: %s",
            address,
            ", ".join(sorted(services)),
            model,
            "no adapter layout" if layout is None else f"the {layout.name} layout",
        )
        if layout is None:
            raise ConnectionFailed(
                f"{address} offers none of the serial services of the OBD adapters o2x "
                f"knows (it has {', '.join(sorted(services)) or 'no services'})"
            )
        if layout.passkey:
            _log.info("pairing with %s", address)
            await self._pair(client, address)
        write = client.services.get_characteristic(layout.write)
        assert write is not None  # choose_layout saw it
        # Without response where the characteristic allows it: the adapter's answer
        # is the acknowledgement that matters, and a round trip per write is slow.
        self._pipe = (write, "write-without-response" not in write.properties)
        generation = self.generation
        try:
            async with asyncio.timeout(GATT_TIMEOUT):
                await client.start_notify(
                    layout.notify, lambda _, data: self._received(generation, data)
                )
        except Exception as exc:
            raise self._failed("could not subscribe to the adapter's output", exc) from exc
        return layout

    async def _pair(self, client: BleakClient, address: str) -> None:
        passkey = self._passkey
        try:
            async with asyncio.timeout(PAIR_TIMEOUT):
                # ``passkey`` is the virtual radio's keyword; the system's backends
                # ignore it and pair through the system (BlueZ's agent asks for it,
                # or a bond made once beforehand is used).
                await client.pair(passkey=passkey)
        except NotImplementedError:
            return  # macOS pairs by itself at the first access that needs it
        except Exception as exc:
            self._failed(f"pairing with {address}", exc)  # logged if unexpected
            raise ConnectionFailed(
                f"could not pair with the adapter at {address} ({_describe(exc)}): its "
                f"passkey is {passkey} unless it was changed in the adapter's settings; "
                "pair it once through the system's Bluetooth settings (on Linux: "
                f"bluetoothctl, then `pair {address}`) and try again"
            ) from exc

    async def write(self, data: bytes) -> None:
        """Write ``data`` to the open pipe, in pieces the link carries."""
        client = self._require_client()
        if self._pipe is None:
            raise ConnectionFailed("the adapter's pipe is not open")
        characteristic, response = self._pipe
        size = max(20, client.mtu_size - 3)
        try:
            async with asyncio.timeout(GATT_TIMEOUT):
                for start in range(0, len(data), size):
                    await client.write_gatt_char(
                        characteristic, data[start : start + size], response=response
                    )
        except Exception as exc:
            raise self._failed("could not write to the adapter", exc) from exc

    async def disconnect(self) -> None:
        """Tear the current link down, if any. Never raises; bounded in time."""
        self._pipe = None
        client, self._client = self._client, None
        if client is None:
            return
        self.generation += 1  # its disconnected callback is ours, not a loss
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT):
                await client.disconnect()
        except Exception as exc:  # it never raises: the link is given up either way
            self._failed("disconnecting", exc)  # logged if unexpected
            _log.debug("disconnecting failed: %s", exc)

    async def close(self) -> None:
        """Stop scanning and disconnect."""
        await self.stop_scan()
        await self.disconnect()

    def _require_client(self) -> BleakClient:
        if self._client is None:
            raise ConnectionFailed("the link went down")
        return self._client

    # --- callbacks from bleak, on the BLE loop ------------------------------------------

    def _received(self, generation: int, data: bytearray) -> None:
        if self._portal.same_loop:
            self._sink.notifications(generation, [bytes(data)])
            return
        self._pending.append((generation, bytes(data)))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._portal.to_caller_soon(self._flush)

    def _flush(self) -> None:
        # Runs on the caller's loop. The flag is cleared before the batch is taken,
        # so anything the BLE thread appends later schedules another flush; popleft
        # is atomic, so appending while the batch is taken is safe. What is left
        # over a batch gets a flush of its own (if the BLE thread schedules one at
        # the same moment, the second finds less, or nothing, to do).
        self._flush_scheduled = False
        pending = self._pending
        batch = [pending.popleft() for _ in range(min(len(pending), _MAX_BATCH))]
        if pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self._portal.to_caller_soon(self._flush)
        start = 0
        for i in range(1, len(batch) + 1):
            if i == len(batch) or batch[i][0] != batch[start][0]:
                self._sink.notifications(batch[start][0], [data for _, data in batch[start:i]])
                start = i

    def _disconnected(self, generation: int) -> None:
        if generation == self.generation:
            self._client = None
            self._portal.to_caller_soon(self._lost, generation)

    def _lost(self, generation: int) -> None:
        # On the caller's loop. What arrived before the link went down is handed
        # over before the loss is, none of it behind the news; a slice per
        # callback, as _flush does, and the loss once nothing is left.
        if self._pending:
            self._flush()
            if self._pending:
                self._portal.to_caller_soon(self._lost, generation)
                return
        self._sink.link_lost(generation)

    def _failed(self, what: str, exc: Exception) -> ConnectionFailed:
        """``exc``, raised by the backend while it did ``what``, as a failed attempt.

        bleak's documented failures (``BleakError``, ``OSError``, ``TimeoutError``)
        are plain failed attempts. Anything else is a backend's bug, or a failure no
        one has met yet: it is logged with its traceback and counted
        (``backend_errors``), and it too fails only the attempt, so that the vehicle
        tries again rather than the user's ``async with`` ending with it.
        """
        if not isinstance(exc, OSError | BleakError | TimeoutError):
            self.backend_errors += 1
            _log.error(
                "the Bluetooth backend raised an unexpected error (%s): %s",
                what,
                _describe(exc),
                exc_info=exc,
            )
        return ConnectionFailed(f"{what}: {_describe(exc)}")

    def _unavailable(self, what: str, exc: BaseException) -> Exception:
        return _unavailable(self._system, what, exc)


def _unavailable(system: bool, what: str, exc: BaseException) -> Exception:
    if not system:
        return ConnectionFailed(f"the radio failed to {what}: {_describe(exc)}")
    hint = bluetooth_hint()
    return BluetoothUnavailable(f"Bluetooth is not available ({_describe(exc)}): {hint}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
