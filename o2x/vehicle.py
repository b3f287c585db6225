"""``O2XVehicle``: subscribe to a Citroën AMI or Opel Rocks-e and stream what it reports.

This is the driver: it runs the sans-I/O :class:`~o2x.machine.VehicleMachine` on
top of the bleak transport, with anyio, so the same code serves asyncio and trio.
One task carries out the machine's actions; telemetry is decoded and delivered
synchronously as notifications arrive, so the hot path never waits on a queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import anyio
import attrs
import sniffio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _state
from ._aio import AsyncioPortal, open_portal
from .errors import (
    AlreadySubscribed,
    ConnectionFailed,
    FrameError,
    NoPreviousVehicle,
    O2XError,
    StateFileError,
)
from .frames import Frame, FrameDecoder, IdentityFrame, decode_frame
from .machine import (
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
from .transport import DISCONNECT_TIMEOUT, BleakLink

_DELIVERIES = (DeliverSample, DeliverStatus, DeliverEvent)
#: Frames kept while the subscription's confirmation is being handled, at most.
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
    """Something standing in for the system's Bluetooth, such as :class:`o2x.sim.VirtualRadio`."""

    @property
    def portal(self) -> AsyncioPortal:
        """The portal to the asyncio loop the radio's BLE stack lives on."""

    def scanner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``bleak.BleakScanner``."""

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``bleak.BleakClient``."""


@attrs.frozen
class VehicleStats:
    """Counters of an :class:`O2XVehicle` since it was entered."""

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
    :class:`o2x.sim.SimulatedVehicle`.
    """

    def __init__(
        self,
        vin: str | None,
        *,
        first_time: bool,
        timeouts: Timeouts | None = None,
        radio: Radio | None = None,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        # Use first_time() or previous(); this signature is not part of the API.
        self._vin = vin
        self._first_time = first_time
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        if not isinstance(self.timeouts, Timeouts):
            raise TypeError(f"timeouts must be an o2x.Timeouts, not {type(timeouts).__name__}")
        self._radio = radio
        self._state_path = _state.state_file(state_dir)
        self._entered = False
        self._closed = False
        self._claimed = False
        self._portal_cm: Any = None
        self._task_group: TaskGroup | None = None
        self._link: BleakLink | None = None
        self._portal: AsyncioPortal | None = None
        self._machine: VehicleMachine | None = None
        self._decoder = FrameDecoder()
        self._generation: int | None = None
        # Frames that raced the subscription's confirmation; the newest are kept.
        self._early: deque[Frame] = deque(maxlen=_MAX_EARLY)
        self._inputs_send: MemoryObjectSendStream[Input | None] | None = None
        self._inputs_receive: MemoryObjectReceiveStream[Input | None] | None = None
        self._waiting_until = -math.inf
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
        self._latest_frame: Frame | None = None
        self._disconnections = 0
        self._second = -1
        self._second_dt = dt.datetime.now(dt.UTC)

    # --- construction -----------------------------------------------------------------

    @classmethod
    def first_time(
        cls,
        vin: str,
        *,
        timeouts: Timeouts | None = None,
        radio: Radio | None = None,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Subscribe to a new vehicle: scan for ``vin``, for at most ``timeouts.scan`` s.

        ``vin`` is checked here (17 characters of ``[A-HJ-NPR-Z0-9]``, any case):
        :class:`~o2x.errors.InvalidVIN` otherwise. Once connected, the vehicle is
        remembered (in ``state_dir``, ``$O2X_STATE_DIR`` or the user's state
        directory) for :meth:`previous`. Entering raises
        :class:`~o2x.errors.ScanTimeout` if nothing is found in time.
        """
        return cls(
            normalize_vin(vin),
            first_time=True,
            timeouts=timeouts,
            radio=radio,
            state_dir=state_dir,
        )

    @classmethod
    def previous(
        cls,
        *,
        timeouts: Timeouts | None = None,
        radio: Radio | None = None,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Subscribe to the vehicle subscribed last; scan for it without a time limit.

        Entering raises :class:`~o2x.errors.NoPreviousVehicle` if no vehicle has been
        remembered, before any radio is touched. Bound the wait with your own
        cancel scope (``anyio.fail_after``) if you need one.
        """
        return cls(None, first_time=False, timeouts=timeouts, radio=radio, state_dir=state_dir)

    # --- the public view --------------------------------------------------------------

    @property
    def vin(self) -> str | None:
        """The VIN of this vehicle (for ``previous()``, known once entered)."""
        return self._vin

    @property
    def address(self) -> str | None:
        """The BLE address of the dongle while connected."""
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
        d = self._decoder.stats
        return VehicleStats(
            frames=d.frames,
            crc_errors=d.crc_errors,
            invalid_frames=d.invalid_frames,
            bytes_discarded=d.bytes_discarded,
            seq_gaps=d.seq_gaps,
            samples_dropped=self._samples_dropped,
            disconnections=self._disconnections,
            reconnects=self._machine.reconnects if self._machine is not None else 0,
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
        assert self._vin is not None
        self._clock = _loop_clock()
        self._claim(self._vin)
        self._entered = True
        self._inputs_send, self._inputs_receive = anyio.create_memory_object_stream[Input | None](
            max_buffer_size=math.inf
        )
        try:
            if self._radio is not None:
                portal = self._radio.portal
                scanner_kwargs, client_kwargs = (
                    self._radio.scanner_kwargs(),
                    self._radio.client_kwargs(),
                )
            else:
                self._portal_cm = open_portal()
                portal = await self._portal_cm.__aenter__()
                scanner_kwargs, client_kwargs = {}, {}
            self._portal = portal
            self._link = BleakLink(
                portal,
                self,
                scanner_kwargs=scanner_kwargs,
                client_kwargs=client_kwargs,
                system_bluetooth=self._radio is None,
            )
            self._machine = VehicleMachine(
                self._vin, first_time=self._first_time, timeouts=self.timeouts
            )
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            self._task_group.start_soon(self._drive)
            await self._ready.wait()
        except BaseException:
            await self._shutdown()
            raise
        if self._failure is not None:
            await self._shutdown()
            raise self._failure
        return self

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
                    if self._link is not None and self._portal is not None:
                        self._generation = None
                        link, portal = self._link, self._portal
                        with anyio.move_on_after(DISCONNECT_TIMEOUT + 0.5):
                            await portal.run(link.close)
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
        link = self._link
        assert machine is not None
        assert link is not None
        portal = self._portal
        assert portal is not None
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            result: Input | None = None
            if isinstance(action, _DELIVERIES):
                self._deliver(action)
                continue
            if queue and not isinstance(action, Fail):
                # The actions below await. A reading or event the machine has
                # already produced must not wait behind them: frames arriving
                # meanwhile are delivered as they come and would overtake it.
                queue = self._deliver_ahead(queue)
            if isinstance(action, StartScan):
                try:
                    await portal.run(link.start_scan)
                except O2XError as exc:
                    self._fail(exc)
                    return
            elif isinstance(action, StopScan):
                await portal.run(link.stop_scan)
            elif isinstance(action, Connect):
                try:
                    self._generation = await portal.run(link.connect, action.address)
                except O2XError as exc:
                    result = ConnectFailed(exc)
                else:
                    self._decoder.reset()
                    self._early.clear()
                    self._address = action.address
                    result = Connected()
            elif isinstance(action, ReadIdentity):
                result = await self._read_identity(link, portal)
            elif isinstance(action, Subscribe):
                try:
                    await portal.run(link.subscribe)
                except O2XError as exc:
                    result = ConnectFailed(exc)
                else:
                    result = Subscribed()
            elif isinstance(action, Disconnect):
                self._generation = None
                self._address = None
                await portal.run(link.disconnect)
            elif isinstance(action, Ready):
                try:
                    await self._remember(action)
                except StateFileError as exc:
                    self._fail(exc)
                    return
            elif isinstance(action, Fail):
                self._fail(action.error)
                return
            if result is not None:
                now = anyio.current_time()
                queue.extend(machine.handle(result, now))
                if isinstance(result, Subscribed):
                    early, self._early = self._early, deque(maxlen=_MAX_EARLY)
                    for frame in early:
                        queue.extend(machine.frame_received(frame, now))

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

    async def _read_identity(self, link: BleakLink, portal: AsyncioPortal) -> Input:
        try:
            raw = await portal.run(link.read_identity)
            frame = decode_frame(raw)
        except (O2XError, FrameError) as exc:
            return ConnectFailed(exc)
        if not isinstance(frame, IdentityFrame):
            return ConnectFailed(ConnectionFailed("the identity characteristic holds no identity"))
        return IdentityRead(frame)

    async def _remember(self, ready: Ready) -> None:
        self._vin = ready.vin
        remembered = _state.RememberedVehicle(ready.vin, ready.address)
        await anyio.to_thread.run_sync(_state.save, self._state_path, remembered)
        self._ready.set()

    def _fail(self, error: O2XError) -> None:
        self._failure = error
        self._failure_traceback = error.__traceback__
        if self._machine is not None and self._machine.state is not State.CLOSED:
            self._machine.handle(Close(), anyio.current_time())
        self._ready.set()
        self._end_streams()

    # --- what the radio reports (LinkSink), on the caller's loop -------------------------

    def advertisement(self, address: str, vin: str) -> None:
        """An O2X dongle advertised; only interesting while looking for the vehicle."""
        machine = self._machine
        if machine is not None and machine.state in (State.SCANNING, State.RECONNECTING):
            self._send(AdvertisementSeen(address, vin))

    def link_lost(self, generation: int) -> None:
        """The link went down by itself."""
        if generation == self._generation:
            self._send(LinkLost())

    def notifications(self, generation: int, chunks: list[bytes]) -> None:
        """Telemetry bytes arrived: decode and deliver them now."""
        if generation != self._generation:
            return
        machine = self._machine
        assert machine is not None
        clock = self._clock
        assert clock is not None  # set on entry
        now = clock()
        feed = self._decoder.feed
        frame_received = machine.frame_received
        deliver = self._deliver
        streaming = machine.state is _STREAMING
        for chunk in chunks:
            for frame in feed(chunk):
                if not streaming:
                    self._early.append(frame)
                    continue
                for action in frame_received(frame, now):
                    deliver(action)
        if machine.deadline < self._waiting_until:
            self._send(None)  # a sooner timer: wake the driver

    def _send(self, event: Input | None) -> None:
        if self._inputs_send is not None and not self._closed:
            self._inputs_send.send_nowait(event)

    def _deliver(self, action: Action) -> None:
        if isinstance(action, DeliverSample):
            frame = action.frame
            info = VehicleInfo.from_frame(frame, vin=self._vin or "", received_at=self._now())
            if self._latest_info is None:
                self._first_info.set()
            self._latest_info = info
            self._latest_frame = frame
            # A snapshot of the WeakSet's references (its ``data``, a set of weakrefs):
            # iterating the WeakSet itself, a generator behind an iteration guard,
            # costs more than the rest of a push.
            for ref in tuple(self._samples.data):  # type: ignore[attr-defined]
                stream = ref()
                if stream is not None:
                    stream._push(info)
        elif isinstance(action, DeliverStatus):
            shown = self._latest_info
            if shown is None or action.frame is not self._latest_frame:
                shown = VehicleInfo.from_frame(
                    action.frame, vin=self._vin or "", received_at=self._now()
                )
            self._status_info = shown
            for status_stream in self._statuses:
                status_stream._push(shown)
        elif isinstance(action, DeliverEvent):
            if action.kind is EventKind.DISCONNECTED:
                self._disconnections += 1
            event = Event(action.kind, dt.datetime.now(dt.UTC))
            for event_stream in self._events:
                event_stream._push(event)

    def _now(self) -> dt.datetime:
        # Readings carry whole seconds (the SDK's resolution): one datetime per second.
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._second_dt = dt.datetime.fromtimestamp(second, dt.UTC)
        return self._second_dt

    def __repr__(self) -> str:
        state = self._machine.state.value if self._machine else "new"
        return f"<O2XVehicle vin={self._vin} {state}>"
