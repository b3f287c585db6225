"""``O2XVehicle``: subscribe to a Citroën AMI or Opel Rocks-e and stream what it reports.

This is the driver: it runs the sans-I/O :class:`~o2x.machine.VehicleMachine` over
a :class:`~o2x.source.Source` — the O2X dongle over bleak, or the car's CAN bus over
python-can — with anyio, so the same code serves asyncio and trio. One task carries
out the machine's actions; readings are delivered synchronously as the source
reports them, so the hot path never waits on a queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import math
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

import anyio
import attrs
import sniffio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _state
from ._aio import open_portal
from .errors import (
    AlreadySubscribed,
    NoPreviousVehicle,
    O2XError,
)
from .machine import (
    MAX_VIN_WAIT,
    Action,
    AdvertisementSeen,
    Close,
    Connect,
    Connected,
    ConnectFailed,
    DeliverEvent,
    DeliverSample,
    DeliverStatus,
    Disconnect,
    Fail,
    IdentityRead,
    Input,
    LinkLost,
    ReadIdentity,
    Ready,
    StartScan,
    State,
    StopScan,
    Subscribe,
    Subscribed,
    Timeouts,
    VehicleMachine,
)
from .model import Event, EventKind, VehicleInfo, normalize_vin
from .obd.layouts import DEFAULT_PASSKEY
from .source import Received, Source

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import can
    from bleak.args.bluez import BlueZScannerArgs
    from bleak.args.corebluetooth import CBScannerArgs
    from bleak.args.winrt import WinRTClientArgs
    from bleak.backends.device import BLEDevice

_DELIVERIES = (DeliverSample, DeliverStatus, DeliverEvent)
#: Readings kept while the subscription's confirmation is being handled, at most.
_MAX_EARLY = 64

__all__ = ["O2XVehicle", "Radio", "VehicleStats", "current_vin"]

T = TypeVar("T")

# Only one VIN is subscribed at a time in a process, as in the SDK.
_registry_lock = threading.Lock()
_active_vin: str | None = None


_STREAMING = State.STREAMING  # an enum member lookup costs as much as a dict lookup


def _loop_clock() -> Callable[[], float]:
    """The clock ``anyio.current_time()`` reads on the running loop, without its dispatch.

    Called in a task: from a bare loop callback (where notifications arrive), sniffio
    cannot tell asyncio under a plain ``asyncio.run``.
    """
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time
    return asyncio.get_running_loop().time


def current_vin() -> str | None:
    """The VIN subscribed in this process right now, or ``None`` (the SDK's ``vin-O2X``)."""
    return _active_vin


class Radio(Protocol):
    """Something standing in for the system's Bluetooth (``radio=``), such as
    :class:`o2x.sim.VirtualRadio`: a bleak backend, and the loop it runs on.

    o2x makes bleak's ``BleakScanner(**radio.scanner_kwargs())`` and
    ``BleakClient(device, **radio.client_kwargs())`` and calls them on
    ``radio.loop``, from asyncio or trio. A vehicle on a radio is remembered apart
    from real ones (see :meth:`O2XVehicle.first_time`).
    """

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running asyncio loop the radio's BLE stack lives on: the caller's own
        under asyncio, or one in another thread."""

    def scanner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``bleak.BleakScanner``."""

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``bleak.BleakClient``."""


def _check_radio_options(radio: Radio | None, **options: object) -> None:
    """ValueError if bleak's options for the system's Bluetooth come with a ``radio``."""
    given = [f"{name}=" for name, value in options.items() if value is not None]
    if radio is not None and given:
        raise ValueError(
            f"{' and '.join(given)} {'is an option' if len(given) == 1 else 'are options'} "
            "of the system's Bluetooth, and a radio= stands in for it with its own "
            "scanner_kwargs() and client_kwargs(): give one or the other"
        )


def _adapter_choice(adapter: str | BLEDevice | None) -> tuple[str | None, BLEDevice | None]:
    """The address ``adapter=`` names and the BLEDevice it is, if it is one; TypeError
    if it is neither that nor an address."""
    if adapter is None or isinstance(adapter, str):
        return adapter, None
    # Imported here: bleak takes a while to import, and a CAN bus needs none of it.
    from bleak.backends.device import BLEDevice

    if isinstance(adapter, BLEDevice):
        return adapter.address, adapter
    raise TypeError(
        "adapter= takes the adapter's address, or the bleak BLEDevice a scan found "
        f"(o2x.discover()'s .device), not {type(adapter).__name__}"
    )


def _bleak_options(
    *,
    bluez: BlueZScannerArgs | None = None,
    cb: CBScannerArgs | None = None,
    winrt: WinRTClientArgs | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """bleak's platform options, as keyword arguments for its scanner and its client.

    ``bluez`` is ``BleakScanner``'s (``adapter``, ``filters``, ``or_patterns``); its
    ``adapter`` is also the client's, so that the car is connected to through the
    adapter that found it. ``cb`` is the scanner's on macOS, ``winrt`` the client's
    on Windows. TypeError for anything that is not a dictionary.
    """
    scanner: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for keyword, value in (("bluez", bluez), ("cb", cb), ("winrt", winrt)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(
                f"{keyword}= takes a dictionary of bleak's {keyword} options "
                f"(such as {_EXAMPLES[keyword]}), not {type(value).__name__}"
            )
    if bluez:
        scanner["bluez"] = dict(bluez)
        if "adapter" in bluez:
            client["bluez"] = {"adapter": bluez["adapter"]}
    if cb:
        scanner["cb"] = dict(cb)
    if winrt:
        client["winrt"] = dict(winrt)
    return scanner, client


_EXAMPLES = {
    "bluez": '{"adapter": "hci1"}',
    "cb": '{"use_bdaddr": True}',
    "winrt": '{"address_type": "random"}',
}


@attrs.frozen
class VehicleStats:
    """Counters of an :class:`O2XVehicle` since it was entered.

    The frame counters are the source's: the O2X decoder's for a dongle; for a CAN
    bus, ``frames`` counts the frames of the messages o2x reads and
    ``invalid_frames`` those refused (wrong length, extended ID, a value out of
    range), the others being 0.
    """

    frames: int
    crc_errors: int
    invalid_frames: int
    bytes_discarded: int
    seq_gaps: int
    #: Samples a slow ``samples()`` consumer lost (the oldest ones go first).
    samples_dropped: int
    #: ``DISCONNECTED`` events: link losses and silences longer than loose_connection,
    #: one per outage however many links it takes to end it.
    disconnections: int
    #: Times data flowed again after a disconnection.
    reconnects: int
    #: Whether the peer proved the vehicle's VIN (a CAN bus that broadcasts no VIN
    #: cannot: the ``vin=`` given is then taken on trust).
    identity_verified: bool = True
    #: Exceptions the Bluetooth backend raised that bleak does not document, during a
    #: link's set-up or teardown: each is logged with its traceback (logger
    #: ``o2x.transport``) and taken as a failed attempt.
    backend_errors: int = 0
    #: Times an OBD adapter's monitor (``ATMA``) was started again after it ended by
    #: itself, over every link; and of those, after ``BUFFER FULL`` (the adapter could
    #: not get the bus's frames out as fast as they came: docs/obd.md, section 4.3).
    adapter_restarts: int = 0
    adapter_buffer_fulls: int = 0


class _Closed:
    """Marks the end of a stream; carries the error that ended it, if any."""

    def __init__(self, error: BaseException | None, traceback: TracebackType | None) -> None:
        self.error = error
        # Where the error arose. Every raise of the same object adds the raising
        # frames to its traceback (and keeps their locals alive), so each raise
        # starts again from this one.
        self.traceback = traceback


class Stream(Generic[T]):
    """One consumer's subscription: an async iterator over what the vehicle reports.

    Made by :meth:`O2XVehicle.samples`, :meth:`~O2XVehicle.status_changes` and
    :meth:`~O2XVehicle.events`. It receives everything from the moment it was made
    until it is closed (``aclose()``, leaving ``async with stream``, or being
    dropped). A bounded stream drops its oldest items when its consumer falls
    behind, and counts them in :attr:`dropped`; an unbounded one drops nothing.
    """

    def __init__(self, maxlen: int | None, on_drop: Callable[[], None] | None = None) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._maxlen = maxlen
        self._on_drop = on_drop
        self._waiter: anyio.Event | None = None
        self._end: _Closed | None = None
        #: Items lost because the consumer fell behind.
        self.dropped = 0

    def _push(self, item: T) -> None:
        if self._end is not None:  # closed: aclose() means nothing more arrives
            return
        items = self._items
        if self._maxlen is not None and len(items) == self._maxlen:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
        items.append(item)
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def _close(
        self, error: BaseException | None = None, traceback: TracebackType | None = None
    ) -> None:
        if self._end is None:
            self._end = _Closed(error, traceback)
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._end is not None:
                if self._end.error is not None:
                    raise self._end.error.with_traceback(self._end.traceback)
                raise StopAsyncIteration
            # Shared by every task waiting on this stream, so that all of them wake
            # (one takes the item; the others wait again) and all see the end.
            if self._waiter is None:
                self._waiter = anyio.Event()
            await self._waiter.wait()
        return self._items.popleft()

    async def aclose(self) -> None:
        """Stop receiving; the iteration ends."""
        self._close()
        self._items.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class O2XVehicle:
    """A subscription to one vehicle, kept connected for as long as the block lasts.

    Make one with :meth:`first_time` (a new vehicle, by VIN) or :meth:`previous`
    (the vehicle subscribed last), then enter it::

        async with O2XVehicle.first_time("VR1AB12C3D4567890") as car:
            async for info in car.status_changes():
                print(info.status, info.data.battery_soc)

    Entering scans, connects, verifies the dongle's identity and subscribes to
    telemetry; it returns once the vehicle is streaming. Inside the block the
    connection is maintained: a lost link (or no data for
    ``timeouts.loose_connection``) emits a ``DISCONNECTED`` event, and the vehicle
    is found and connected again without the user doing anything. Leaving the block
    disconnects and leaves nothing running.

    If the vehicle stops for good inside the block (the system's Bluetooth went
    away while the vehicle was being found again), every stream ends with that
    error, :meth:`get` raises it, and leaving the block raises it, unless the block
    is already raising an exception of its own.

    To run without a car, pass ``radio=`` a :class:`o2x.sim.VirtualRadio` holding a
    :class:`o2x.sim.SimulatedVehicle`; its vehicle is remembered apart from the
    real one (see :meth:`first_time`).
    """

    def __init__(
        self,
        vin: str | None,
        *,
        first_time: bool,
        timeouts: Timeouts | None = None,
        radio: Radio | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        can_bus: can.BusABC | None = None,
        adapter: str | BLEDevice | None = None,
        passkey: str = DEFAULT_PASSKEY,
        bluez: BlueZScannerArgs | None = None,
        cb: CBScannerArgs | None = None,
        winrt: WinRTClientArgs | None = None,
    ) -> None:
        # Use first_time(), previous() or over_can(); this signature is not part of the API.
        self._vin = vin
        self._adapter, self._device = _adapter_choice(adapter)
        _check_radio_options(radio, bluez=bluez, cb=cb, winrt=winrt)
        self._system_kwargs = _bleak_options(bluez=bluez, cb=cb, winrt=winrt)
        if not (isinstance(passkey, str) and len(passkey) == 6 and passkey.isdigit()):
            raise ValueError(f"a BLE passkey is six digits, not {passkey!r}")
        self._passkey = passkey
        self._can_bus = can_bus
        # Sees every CAN message read (o2x record --can); set before entering.
        self._can_recorder: Callable[[can.Message], object] | None = None
        self._first_time = first_time
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        if not isinstance(self.timeouts, Timeouts):
            raise TypeError(f"timeouts must be an o2x.Timeouts, not {type(timeouts).__name__}")
        self._radio = radio
        # A vehicle on a virtual radio is remembered apart from the real one (unless
        # state_dir says where): a simulated run must not replace the user's car.
        self._state_path = _state.state_file(state_dir, virtual=radio is not None)
        self._entered = False
        self._closed = False
        self._claimed = False
        self._portal_cm: Any = None
        self._task_group: TaskGroup | None = None
        self._source: Source | None = None
        self._machine: VehicleMachine | None = None
        # Readings that raced the subscription's confirmation; the newest are kept.
        self._early: deque[Received] = deque(maxlen=_MAX_EARLY)
        self._inputs_send: MemoryObjectSendStream[Input | None] | None = None
        self._inputs_receive: MemoryObjectReceiveStream[Input | None] | None = None
        self._waiting_until = -math.inf
        # The cancel scope of the link's set-up step under way (_set_up), if any.
        self._setup_scope: anyio.CancelScope | None = None
        self._clock: Callable[[], float] | None = None
        self._ready = anyio.Event()
        self._failure: O2XError | None = None
        self._failure_traceback: TracebackType | None = None
        self._address: str | None = None
        self._samples: weakref.WeakSet[Stream[VehicleInfo]] = weakref.WeakSet()
        self._statuses: weakref.WeakSet[Stream[VehicleInfo]] = weakref.WeakSet()
        self._events: weakref.WeakSet[Stream[Event]] = weakref.WeakSet()
        self._latest_info: VehicleInfo | None = None
        self._status_info: VehicleInfo | None = None
        self._first_info = anyio.Event()
        self._samples_dropped = 0
        self._disconnections = 0

    # --- construction -----------------------------------------------------------------

    @classmethod
    def first_time(
        cls,
        vin: str,
        *,
        timeouts: Timeouts | None = None,
        radio: Radio | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        adapter: str | BLEDevice | None = None,
        passkey: str = DEFAULT_PASSKEY,
        bluez: BlueZScannerArgs | None = None,
        cb: CBScannerArgs | None = None,
        winrt: WinRTClientArgs | None = None,
    ) -> Self:
        """Subscribe to a new vehicle: scan for ``vin``, for at most ``timeouts.scan`` s.

        Whichever dongle the car carries: an O2X dongle is found by the VIN it
        advertises; a BLE OBD adapter in the car's OBD port (ELM327-compatible, or
        a WiCAN) is connected to, and its car's VIN read off the bus; an adapter
        in another car is left alone and the scan goes on. ``adapter=`` names the
        adapter's address, or is the bleak ``BLEDevice`` a scan found
        (:func:`o2x.discover`'s ``.device``): others are ignored, and it is used even
        if its car's bus broadcasts no VIN (``stats.identity_verified`` then says the
        VIN was taken on trust; ``docs/obd.md`` has the whole rule). An adapter that
        pairs with a passkey (a WiCAN) is paired with ``passkey``, its factory one by
        default.

        ``bluez``, ``cb`` and ``winrt`` are bleak's own options for the system's
        Bluetooth, as ``BleakScanner`` and ``BleakClient`` take them: the
        ``bluez`` dictionary goes to the scanner, and its ``adapter`` to the client
        too (``bluez={"adapter": "hci1"}`` uses the second Bluetooth adapter on
        Linux), ``cb`` to the scanner on macOS, ``winrt`` to the client on Windows.
        With a ``radio=`` they are a ValueError: it brings its own.

        ``vin`` is checked here (17 characters of ``[A-HJ-NPR-Z0-9]``, any case):
        :class:`~o2x.errors.InvalidVIN` otherwise. Once connected, the vehicle is
        remembered (in ``state_dir``, ``$O2X_STATE_DIR`` or the user's state
        directory), with the kind of its dongle, for :meth:`previous`. A vehicle
        on a virtual ``radio=`` is remembered apart, in the ``simulated``
        directory inside that one, unless ``state_dir`` is given: a simulated run
        never replaces the real car. A remembered-vehicle file that is damaged is
        never replaced: entering raises :class:`~o2x.errors.StateFileDamaged`,
        before any radio is touched. Entering raises
        :class:`~o2x.errors.ScanTimeout` if nothing is found in time.
        """
        return cls(
            normalize_vin(vin),
            first_time=True,
            timeouts=timeouts,
            radio=radio,
            state_dir=state_dir,
            adapter=adapter,
            passkey=passkey,
            bluez=bluez,
            cb=cb,
            winrt=winrt,
        )

    @classmethod
    def previous(
        cls,
        *,
        timeouts: Timeouts | None = None,
        radio: Radio | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        passkey: str = DEFAULT_PASSKEY,
        bluez: BlueZScannerArgs | None = None,
        cb: CBScannerArgs | None = None,
        winrt: WinRTClientArgs | None = None,
    ) -> Self:
        """Subscribe to the vehicle subscribed last; scan for it without a time limit.

        Through the same kind of dongle as the last time: an O2X dongle is found by
        its VIN again, an OBD adapter at its address (``passkey``, ``bluez``,
        ``cb`` and ``winrt`` as for :meth:`first_time`). The vehicle is the one remembered where
        :meth:`first_time` remembers it: with a virtual ``radio=`` and no
        ``state_dir``, the last simulated one. Entering raises
        :class:`~o2x.errors.NoPreviousVehicle` if no vehicle has been remembered,
        and :class:`~o2x.errors.StateFileDamaged` if the file is damaged, before
        any radio is touched. Bound the wait with your own cancel scope
        (``anyio.fail_after``) if you need one.
        """
        return cls(
            None,
            first_time=False,
            timeouts=timeouts,
            radio=radio,
            state_dir=state_dir,
            passkey=passkey,
            bluez=bluez,
            cb=cb,
            winrt=winrt,
        )

    @classmethod
    def over_can(
        cls,
        bus: can.BusABC,
        *,
        vin: str | None = None,
        timeouts: Timeouts | None = None,
    ) -> Self:
        """Read the vehicle from its own CAN bus, through a python-can ``bus`` you opened.

        Any python-can interface will do (socketcan, slcan, gs_usb, pcan, virtual...)
        at 500 kbit/s on the OBD-II port's pins 6 and 14; the bus stays yours and is
        not shut down on leaving. The VIN comes from the bus when it broadcasts one
        (frames 0x710..0x712, waited for up to ``timeouts.loose_connection``) and must
        then equal ``vin`` (:class:`~o2x.errors.IdentityMismatch` otherwise); a bus
        that broadcasts none needs ``vin``, which is then taken on trust
        (``stats.identity_verified`` is False), or entering fails with
        :class:`~o2x.errors.ConnectionFailed`. No frame for
        ``timeouts.loose_connection`` (the car went to sleep, the adapter was
        unplugged) is one ``disconnected`` event; readings resume when the bus
        wakes. The car is not remembered for :meth:`previous`, which finds a
        Bluetooth dongle. See ``docs/can.md``::

            import can
            with can.Bus(interface="socketcan", channel="can0", bitrate=500_000) as bus:
                async with O2XVehicle.over_can(bus) as car:
                    print(await car.get())
        """
        import can  # here: python-can takes a while to import, and most users never need it

        if not isinstance(bus, can.BusABC):
            raise TypeError(f"bus must be a python-can BusABC, not {type(bus).__name__}")
        return cls(
            None if vin is None else normalize_vin(vin),
            first_time=True,
            timeouts=timeouts,
            can_bus=bus,
        )

    # --- the public view --------------------------------------------------------------

    @property
    def vin(self) -> str | None:
        """The VIN of this vehicle (for ``previous()``, known once entered)."""
        return self._vin

    @property
    def address(self) -> str | None:
        """The dongle's BLE address (``can:`` and the channel for a bus), while connected."""
        return self._address

    @property
    def latest(self) -> VehicleInfo | None:
        """The last reading received, or ``None`` before the first."""
        return self._latest_info

    async def get(self) -> VehicleInfo:
        """The last reading received, waiting for the first one if needed
        (the SDK's ``get`` of ``pims.vehicle.informations``).

        Raises the vehicle's error if it stopped for good, and ``RuntimeError`` if
        it was left before any reading arrived.
        """
        self._require_entered()
        while True:
            if self._failure is not None:  # stopped for good: the last reading is stale
                raise self._failure.with_traceback(self._failure_traceback)  # see _Closed
            if self._latest_info is not None:
                return self._latest_info
            if self._closed:  # left (or leaving) before any reading: none will come
                raise RuntimeError("the vehicle was left before any reading arrived")
            await self._first_info.wait()

    @property
    def stats(self) -> VehicleStats:
        """A snapshot of the counters."""
        counters = self._source.counters() if self._source is not None else None
        return VehicleStats(
            frames=counters.frames if counters else 0,
            crc_errors=counters.crc_errors if counters else 0,
            invalid_frames=counters.invalid_frames if counters else 0,
            bytes_discarded=counters.bytes_discarded if counters else 0,
            seq_gaps=counters.seq_gaps if counters else 0,
            samples_dropped=self._samples_dropped,
            disconnections=self._disconnections,
            reconnects=self._machine.reconnects if self._machine is not None else 0,
            identity_verified=(counters.identity_verified if counters else True)
            and (self._machine.identity_verified if self._machine is not None else True),
            backend_errors=counters.backend_errors if counters else 0,
            adapter_restarts=counters.adapter_restarts if counters else 0,
            adapter_buffer_fulls=counters.adapter_buffer_fulls if counters else 0,
        )

    def samples(self, *, buffer: int = 256) -> Stream[VehicleInfo]:
        """Every reading, as it arrives (the SDK's ``reception: information``).

        Never slows the vehicle down: if this consumer falls more than ``buffer``
        readings behind, the oldest are dropped and counted in
        ``stats.samples_dropped``.
        """
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, not {buffer}")
        self._require_entered()
        stream: Stream[VehicleInfo] = Stream(buffer, self._sample_dropped)
        self._register(self._samples, stream)
        return stream

    def status_changes(self) -> Stream[VehicleInfo]:
        """The current status, then a reading each time the status changes
        (the SDK's ``reception: status``). Nothing is ever dropped."""
        self._require_entered()
        stream: Stream[VehicleInfo] = Stream(None)
        if self._status_info is not None:
            stream._push(self._status_info)
        self._register(self._statuses, stream)
        return stream

    def events(self) -> Stream[Event]:
        """``disconnected`` and ``cantCharge`` events (``pims.vehicle.event``). Never drops."""
        self._require_entered()
        stream: Stream[Event] = Stream(None)
        self._register(self._events, stream)
        return stream

    def _register(self, streams: weakref.WeakSet[Any], stream: Stream[Any]) -> None:
        # A WeakSet: a stream its consumer dropped (a broken-off ``async for``)
        # stops receiving by itself.
        if self._closed or self._failure is not None:  # nothing more will come
            stream._close(self._failure, self._failure_traceback)
        else:
            streams.add(stream)

    def _sample_dropped(self) -> None:
        self._samples_dropped += 1

    def _require_entered(self) -> None:
        if not self._entered:
            raise RuntimeError("use the vehicle inside 'async with' first")

    # --- entering and leaving -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered or self._closed:
            raise RuntimeError("an O2XVehicle can be entered only once; make a new one")
        if not self._first_time:
            remembered = await anyio.to_thread.run_sync(_state.load, self._state_path)
            if remembered is None:
                raise NoPreviousVehicle(
                    f"no vehicle has been remembered yet (looked in {self._state_path}); "
                    "connect once with O2XVehicle.first_time(vin)"
                )
            self._vin = remembered.vin
            if remembered.dongle == "adapter":
                self._adapter = remembered.address
        elif self._can_bus is None:
            # The vehicle will be remembered once it streams; a damaged file is never
            # replaced, so say so now rather than after the scan and the connection.
            await anyio.to_thread.run_sync(_state.refuse_damaged, self._state_path)
        self._clock = _loop_clock()
        if self._vin is not None:  # else (a CAN bus naming its VIN) once it is known
            self._claim(self._vin)
        self._entered = True
        self._inputs_send, self._inputs_receive = anyio.create_memory_object_stream[Input | None](
            max_buffer_size=math.inf
        )
        try:
            source = self._source = await self._open_source()
            self._machine = VehicleMachine(
                self._vin,
                first_time=self._first_time,
                timeouts=self.timeouts,
                single_peer=source.single_peer,
                not_found_hint=source.not_found_hint,
                adapter=self._adapter,
            )
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            source.start(self._task_group)
            self._task_group.start_soon(self._drive)
            await self._ready.wait()
        except BaseException:
            await self._shutdown()
            raise
        if self._failure is not None:
            await self._shutdown()
            raise self._failure
        return self

    async def _open_source(self) -> Source:
        if self._can_bus is not None:
            from .can.source import CanSource

            source = CanSource(
                self._can_bus,
                self,
                vin=self._vin,
                vin_wait=min(self.timeouts.loose_connection, MAX_VIN_WAIT),
            )
            source.recorder = self._can_recorder
            return source
        from .dongle import DongleSource

        assert self._vin is not None
        if self._radio is not None:
            scanner_kwargs, client_kwargs = (
                self._radio.scanner_kwargs(),
                self._radio.client_kwargs(),
            )
            portal_cm = open_portal(self._radio.loop)
        else:
            scanner_kwargs, client_kwargs = self._system_kwargs
            portal_cm = open_portal()
        portal = await portal_cm.__aenter__()
        self._portal_cm = portal_cm
        dongle = DongleSource(
            portal,
            self,
            vin=self._vin,
            scanner_kwargs=scanner_kwargs,
            client_kwargs=client_kwargs,
            system_bluetooth=self._radio is None,
            vin_wait=min(self.timeouts.loose_connection, MAX_VIN_WAIT),
            passkey=self._passkey,
        )
        if self._device is not None:
            dongle.remember_device(self._device)
        return dongle

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()
        if exc is None and self._failure is not None:
            # The vehicle stopped for good inside the block (its streams ended with
            # this error); a block that ended quietly must not hide it.
            raise self._failure.with_traceback(self._failure_traceback)

    async def _shutdown(self) -> None:
        self._closed = True
        try:
            # The task group is exited first and outside any other scope: cancel
            # scopes must nest. Its only task has just been cancelled, so this waits
            # for nothing but that task's own cleanup.
            # The body's own exception is not handed to the task group: it must reach
            # the caller unchanged, not wrapped in an exception group. The group
            # raises only if its own task failed.
            if self._task_group is not None:
                task_group, self._task_group = self._task_group, None
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    if self._machine is not None:
                        self._machine.handle(Close(), anyio.current_time())
                    if self._source is not None:
                        await self._source.close()
                    if self._portal_cm is not None:
                        portal_cm, self._portal_cm = self._portal_cm, None
                        await portal_cm.__aexit__(None, None, None)
                finally:
                    if self._inputs_send is not None and self._inputs_receive is not None:
                        self._inputs_send.close()
                        self._inputs_receive.close()
                    self._end_streams()
                    self._release()

    def _end_streams(self) -> None:
        streams: list[Stream[Any]] = [*self._samples, *self._statuses, *self._events]
        for stream in streams:
            stream._close(self._failure, self._failure_traceback)
        self._first_info.set()

    def _claim(self, vin: str) -> None:
        global _active_vin  # noqa: PLW0603 - the one-VIN rule is process-wide
        with _registry_lock:
            if _active_vin is not None:
                raise AlreadySubscribed(_active_vin)
            _active_vin = vin
            self._claimed = True

    def _release(self) -> None:
        global _active_vin  # noqa: PLW0603
        if self._claimed:
            with _registry_lock:
                _active_vin = None
            self._claimed = False

    # --- the driver task ------------------------------------------------------------------

    async def _drive(self) -> None:
        machine = self._machine
        assert machine is not None
        self._waiting_until = -math.inf
        await self._execute(machine.start(anyio.current_time()))
        receive = self._inputs_receive
        assert receive is not None
        while machine.state is not State.CLOSED:
            deadline = machine.deadline
            self._waiting_until = deadline
            event: Input | None = None
            timed_out = True
            with anyio.move_on_after(deadline - anyio.current_time()):
                event = await receive.receive()
                timed_out = False
            # Busy until it waits again, when it reads the deadline afresh: frames
            # arriving meanwhile need not wake it.
            self._waiting_until = -math.inf
            now = anyio.current_time()
            if timed_out or event is None:
                actions = machine.tick(now)
            else:
                actions = machine.handle(event, now)
            await self._execute(actions)

    async def _execute(self, actions: list[Action]) -> None:
        machine = self._machine
        source = self._source
        assert machine is not None
        assert source is not None
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            result: Input | None = None
            if isinstance(action, _DELIVERIES):
                self._deliver(action)
                continue
            if queue and not isinstance(action, Fail):
                # The actions below await. A reading or event the machine has
                # already produced must not wait behind them: readings arriving
                # meanwhile are delivered as they come and would overtake it.
                queue = self._deliver_ahead(queue)
            try:
                if isinstance(action, StartScan):
                    _log.info("scanning for %s", self._vin or "the vehicle")
                    try:
                        await source.start_scan()
                    except O2XError as exc:
                        self._fail(exc)
                        return
                elif isinstance(action, StopScan):
                    await source.stop_scan()
                elif isinstance(action, Connect | ReadIdentity | Subscribe):
                    result = await self._set_up(action)
                    if result is None:  # cut short by a deadline, or the link was lost
                        _log.info(
                            "setting up the link was cut short (a time limit, or the link went)"
                        )
                        queue.extend(machine.tick(anyio.current_time()))
                        continue
                    _log_step(action, result, self._address)
                elif isinstance(action, Disconnect):
                    _log.debug("disconnecting from %s", self._address)
                    self._address = None
                    await source.disconnect()
                elif isinstance(action, Ready):
                    try:
                        await self._remember(action)
                    except O2XError as exc:  # StateFileError, AlreadySubscribed
                        self._fail(exc)
                        return
                elif isinstance(action, Fail):
                    self._fail(action.error)
                    return
            except O2XError as exc:  # a step of the link's set-up failed
                _log.info("setting up the link failed: %s", exc)
                result = ConnectFailed(exc)
            if result is not None:
                now = anyio.current_time()
                address = machine.address
                queue.extend(machine.handle(result, now))
                if isinstance(result, ConnectFailed) and address is not None:
                    retry = machine.retry_at(address) - now
                    if retry > 0:
                        _log.info("next attempt at %s in %.1f s at the earliest", address, retry)
                if isinstance(result, Subscribed):
                    early, self._early = self._early, deque(maxlen=_MAX_EARLY)
                    for item in early:
                        queue.extend(self._machine_input(item, now))

    async def _set_up(self, action: Connect | ReadIdentity | Subscribe) -> Input | None:
        """One step of a link's set-up, bounded by the machine's deadline (the scan's
        time limit, the set-up's guard) and cut short when the link is lost meanwhile.

        None if it was cut short: the machine's ``tick`` then says what follows, or
        the ``LinkLost`` already sent does. A failure raises :class:`O2XError`.
        """
        machine, source = self._machine, self._source
        assert machine is not None
        assert source is not None
        # The driver waits here, not on its inputs: without the scope, a step that
        # hangs (an adapter that never prompts, a link gone mid-discovery) would hold
        # the vehicle past every deadline the machine keeps.
        with anyio.CancelScope(deadline=machine.deadline) as scope:
            self._setup_scope = scope
            try:
                if isinstance(action, Connect):
                    _log.info("connecting to %s", action.address)
                    self._early.clear()
                    await source.connect(action.address)
                    self._address = action.address
                    return Connected()
                if isinstance(action, ReadIdentity):
                    vin = await source.read_identity()
                    return IdentityRead(vin, bus_heard=source.bus_heard)
                await source.subscribe()
                return Subscribed(keep_when_quiet=source.keeps_quiet_link)
            finally:
                self._setup_scope = None
        return None

    def _deliver_ahead(self, queue: deque[Action]) -> deque[Action]:
        """Deliver the deliveries in ``queue`` (up to a ``Fail``); return the rest, in order."""
        rest: deque[Action] = deque()
        for i, action in enumerate(queue):
            if isinstance(action, Fail):
                rest.extend(itertools.islice(queue, i, None))
                break
            if isinstance(action, _DELIVERIES):
                self._deliver(action)
            else:
                rest.append(action)
        return rest

    async def _remember(self, ready: Ready) -> None:
        self._vin = ready.vin
        if not self._claimed:  # a CAN bus that named its VIN only now
            self._claim(ready.vin)
        if self._can_bus is None:  # previous() finds Bluetooth dongles, not a bus
            source = self._source
            dongle = "adapter" if getattr(source, "layout", None) is not None else "o2x"
            remembered = _state.RememberedVehicle(ready.vin, ready.address, dongle)
            await anyio.to_thread.run_sync(_state.save, self._state_path, remembered)
        self._ready.set()

    def _fail(self, error: O2XError) -> None:
        self._failure = error
        self._failure_traceback = error.__traceback__
        if self._machine is not None and self._machine.state is not State.CLOSED:
            self._machine.handle(Close(), anyio.current_time())
        self._ready.set()
        self._end_streams()

    # --- what the source reports (SourceSink), on the caller's loop ---------------------

    def advertisement(self, address: str, vin: str | None) -> None:
        """A peer was found; only interesting while looking for the vehicle."""
        machine = self._machine
        if machine is not None and machine.state in (State.SCANNING, State.RECONNECTING):
            self._send(AdvertisementSeen(address, vin))

    def link_lost(self) -> None:
        """The link went down by itself."""
        _log.info("the link to %s went down", self._address or "the dongle")
        self._send(LinkLost())
        if self._setup_scope is not None:  # a set-up step waits on a link that is gone
            self._setup_scope.cancel()

    def received(self, items: list[Received]) -> None:
        """Readings and events arrived: deliver them now."""
        machine = self._machine
        assert machine is not None
        if machine.state is not _STREAMING:
            self._early.extend(items)  # the subscription is being confirmed
            return
        clock = self._clock
        assert clock is not None  # set on entry
        now = clock()
        reading_received = machine.reading_received
        deliver = self._deliver
        for item in items:
            if type(item) is VehicleInfo:
                for action in reading_received(item, now):
                    deliver(action)
            else:
                for action in self._machine_input(item, now):
                    deliver(action)
        if machine.deadline < self._waiting_until:
            self._send(None)  # a sooner timer: wake the driver

    def _machine_input(self, item: Received, now: float) -> list[Action]:
        machine = self._machine
        assert machine is not None
        if isinstance(item, VehicleInfo):
            return machine.reading_received(item, now)
        if item is None:
            return machine.data_received(now)
        return machine.event_received(item, now)

    def _send(self, event: Input | None) -> None:
        if self._inputs_send is not None and not self._closed:
            self._inputs_send.send_nowait(event)

    def _deliver(self, action: Action) -> None:
        if isinstance(action, DeliverSample):
            info = action.info
            if self._latest_info is None:
                self._first_info.set()
            self._latest_info = info
            # A snapshot of the WeakSet's references (its ``data``, a set of weakrefs):
            # iterating the WeakSet itself, a generator behind an iteration guard,
            # costs more than the rest of a push.
            for ref in tuple(self._samples.data):  # type: ignore[attr-defined]
                stream = ref()
                if stream is not None:
                    stream._push(info)
        elif isinstance(action, DeliverStatus):
            self._status_info = action.info
            for status_stream in self._statuses:
                status_stream._push(action.info)
        elif isinstance(action, DeliverEvent):
            if action.kind is EventKind.DISCONNECTED:
                self._disconnections += 1
            event = Event(action.kind, dt.datetime.now(dt.UTC))
            for event_stream in self._events:
                event_stream._push(event)

    def __repr__(self) -> str:
        state = self._machine.state.value if self._machine else "new"
        return f"<O2XVehicle vin={self._vin} {state}>"


def _log_step(
    action: Connect | ReadIdentity | Subscribe, result: Input, address: str | None
) -> None:
    """Say at INFO what a step of a link's set-up gave (``o2x -v``)."""
    if isinstance(action, Connect):
        _log.debug("connected to %s", action.address)
    elif isinstance(result, IdentityRead):
        if result.vin:
            _log.info("%s serves VIN %s", address, result.vin)
        else:
            _log.info(
                "%s reads no VIN off its car's bus%s",
                address,
                "" if result.bus_heard else ", and shows no frame of it",
            )
    else:
        _log.info("subscribed to %s: readings flow", address)
