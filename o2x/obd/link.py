"""One connected BLE OBD adapter: its session, the car's bus, and the readings.

:class:`AdapterLink` sits between the Bluetooth link (bytes in, bytes out) and the
vehicle (readings and events). It runs the adapter's sans-I/O session
(:class:`~o2x.obd.elm327.Elm327Session` or :class:`~o2x.obd.slcan.SlcanSession`,
by the adapter's :class:`~o2x.obd.layouts.Protocol`), feeds the CAN frames the
session hands over to an :class:`~o2x.can.AmiBus`, and takes readings from it as
the CAN source does: at most one every :data:`~o2x.can.bus.READING_INTERVAL`, a
reading held back taken as soon as the interval is over, a ``cantCharge`` event
when that heuristic starts to hold.

Its identity is the VIN the car's bus broadcasts (frames 0x710..0x712), waited for
at most ``vin_wait`` seconds once the monitor runs; ``""`` if none came.

The session's writes and timers need a task: :meth:`run`, started in the vehicle's
task group for the life of the link.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import anyio

from ..can.bus import AmiBus
from ..can.readings import ReadingPacer
from ..errors import AdapterSpeaksOther, ConnectionFailed, O2XError
from ..source import Received, WallClock
from .actions import Action, Frames, Monitoring, Send, SessionFailed
from .elm327 import Elm327Session
from .layouts import AdapterLayout, Protocol
from .slcan import SlcanSession

__all__ = ["AdapterLink"]

_log = logging.getLogger(__name__)


class AdapterLink:
    """The session with one connected adapter (see the module docstring)."""

    def __init__(
        self,
        layout: AdapterLayout,
        write: Callable[[bytes], Awaitable[None]],
        *,
        ami: AmiBus,
        vin: str,
        vin_wait: float,
        wall: WallClock,
        on_reading: Callable[[list[Received]], None],
        on_failed: Callable[[], None] = lambda: None,
    ) -> None:
        self.layout = layout
        self.session: Elm327Session | SlcanSession = (
            SlcanSession() if layout.protocol is Protocol.SLCAN else Elm327Session()
        )
        #: The car's bus as the adapter shows it (kept by the source across links).
        self.ami = ami
        self._write = write
        #: The vehicle's VIN, which readings carry (the bus's may be unknown).
        self.vin = vin
        self._vin_wait = vin_wait
        #: Where readings the task takes (those held back) are handed.
        self._on_reading = on_reading
        #: Told when the session fails once readings flowed: the link is then no use.
        self._on_failed = on_failed
        self._wall = wall
        #: Readings flow to the vehicle once it subscribed.
        self.subscribed = False
        #: Why the session ended, if it failed.
        self.error: O2XError | None = None
        self._outbox: list[bytes] = []
        # Set (and replaced) whenever the session moves: wakes the task and read_vin.
        self._progress = anyio.Event()
        self._monitor_since = math.inf
        self._pacer = ReadingPacer(ami, wall)
        self._frames_before = ami.frame_count  # the bus is kept across links

    @property
    def bus_heard(self) -> bool:
        """Whether this link has shown a frame of the car's bus (of ``ami.dbc``)."""
        return self.ami.frame_count > self._frames_before

    # --- driving the session ---------------------------------------------------------

    async def run(self) -> None:
        """The link's task: write what the session sends, tick it when it is due."""
        self._carry_out(self.session.start(anyio.current_time()))
        while self.error is None:
            while self._outbox:
                data = self._outbox.pop(0)
                try:
                    await self._write(data)
                except O2XError as exc:
                    self._failed(exc)
                    return
            now = anyio.current_time()
            deadline = min(self.session.deadline, self._pacer.due)
            if now >= deadline:
                self._carry_out(self.session.tick(now))
                if now >= self._pacer.due:
                    self._pending_reading(now)
                continue
            progress = self._progress
            with anyio.move_on_after(deadline - now):
                await progress.wait()

    def received(self, chunks: list[bytes]) -> list[Received]:
        """The adapter's output arrived: what it means for the vehicle, in order."""
        # The hot path (benchmarks/bench_adapter.py): once monitoring, a notification
        # usually holds frames and nothing else, and the link's task is not woken
        # for them (see _carry_out); only a new deadline of the session wakes it.
        now = anyio.current_time()
        ami, session = self.ami, self.session
        before, deadline = ami.frame_count, session.deadline
        for chunk in chunks:
            self._carry_out(session.received(chunk, now))
        if session.deadline != deadline:
            self._moved()
        if ami.frame_count == before or not self.subscribed:
            return []
        pacer = self._pacer
        due = pacer.due
        items = pacer.frames_arrived(now, self.vin)
        if not items and pacer.due != due:
            self._moved()  # a reading is held back now: the task takes it when due
        return items

    async def read_vin(self) -> str:
        """The VIN on the car's bus; ``""`` if the monitor ran ``vin_wait`` without one."""
        while True:
            if self.error is not None:
                raise self.error
            vin = self.ami.vin
            if vin is not None:
                return vin
            left = self._monitor_since + self._vin_wait - anyio.current_time()
            if left <= 0:
                return ""
            # Woken by the session's progress (frames, the monitor starting, failure);
            # before the monitor runs, the session's own timeouts bound the wait.
            progress = self._progress
            with anyio.move_on_after(left):
                await progress.wait()

    # --- the session's actions -----------------------------------------------------

    def _carry_out(self, actions: list[Action]) -> None:
        if not actions:
            return
        now = anyio.current_time()
        feed = self.ami.feed
        # Frames wake the task (and read_vin) only before the subscription, while the
        # VIN is awaited; once readings flow, the pacer says when the task is needed.
        moved = not self.subscribed
        for action in actions:
            if isinstance(action, Frames):
                # The adapter's own clock is not trusted: frames are stamped on receipt.
                for can_id, data in action.frames:
                    feed(can_id, data, now)
                continue
            moved = True
            if isinstance(action, Send):
                _log.debug("to the adapter: %r", action.data)
                self._outbox.append(action.data)
            elif isinstance(action, Monitoring):
                if math.isinf(self._monitor_since):
                    _log.info("the OBD adapter is set up (%s): reading the bus", self._describe())
                else:
                    _log.debug("the OBD adapter's monitor started again")
                self._monitor_since = min(self._monitor_since, now)
            elif isinstance(action, SessionFailed):
                if isinstance(action.error, AdapterSpeaksOther) and self._switch(action.error):
                    continue
                self._failed(action.error)
        if moved:
            self._moved()

    def _switch(self, error: AdapterSpeaksOther) -> bool:
        """Start again in the protocol the adapter speaks, once; whether it did."""
        if error.protocol != "elm327" or isinstance(self.session, Elm327Session):
            return False
        _log.info("%s; speaking ELM327 to it instead", error)
        self.session = Elm327Session()
        self._carry_out(self.session.start(anyio.current_time()))
        return True

    def _describe(self) -> str:
        session = self.session
        if isinstance(session, Elm327Session):
            filtered = "its filter set" if session.filter_active else "no filter"
            return f"ELM327, {session.banner or 'no banner'}, {filtered}"
        return "SLCAN"

    def _moved(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    def _failed(self, error: O2XError) -> None:
        if self.error is None:
            _log.info("the OBD adapter session ended: %s", error)
            self.error = (
                error
                if isinstance(error, ConnectionFailed)
                else ConnectionFailed(f"the OBD adapter failed: {error}")
            )
            if self.subscribed:
                self._on_failed()
        self._moved()

    # --- readings --------------------------------------------------------------------

    def _pending_reading(self, now: float) -> None:
        if self.subscribed:
            self._on_reading(self._pacer.take(now, self.vin))
        else:
            self._pacer.held_back = False
