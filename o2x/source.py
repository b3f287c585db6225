"""What the vehicle driver asks of a way of reaching the car, and what it is told back.

:class:`~o2x.O2XVehicle` runs the sans-I/O :class:`~o2x.machine.VehicleMachine`
over a :class:`Source`: the O2X dongle (:mod:`o2x.dongle`), the car's CAN bus
(:mod:`o2x.can.source`) and, in time, OBD adapters. A source turns what it
receives into readings and events — the machine never sees bytes — and reports
them, on the caller's event loop, to a :class:`SourceSink`.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Protocol

import attrs
from anyio.abc import TaskGroup

from .model import EventKind, VehicleInfo

__all__ = ["LinkCounters", "Received", "Source", "SourceSink", "WallClock"]

#: What a source reports from its peer, in order: a reading, an event, or ``None``
#: for data that is neither (it still shows that the link is alive).
Received = VehicleInfo | EventKind | None


@attrs.frozen
class LinkCounters:
    """A source's counters of what it received, for :class:`~o2x.VehicleStats`."""

    frames: int = 0
    crc_errors: int = 0
    invalid_frames: int = 0
    bytes_discarded: int = 0
    seq_gaps: int = 0
    #: Whether the peer proved the vehicle's VIN (see ``VehicleStats``).
    identity_verified: bool = True
    #: Unexpected exceptions of the Bluetooth backend, each a failed attempt.
    backend_errors: int = 0
    #: Times an OBD adapter's monitor was started again after it ended by itself.
    adapter_restarts: int = 0
    #: Of those, after the adapter's buffer overflowed (``BUFFER FULL``).
    adapter_buffer_fulls: int = 0


class SourceSink(Protocol):
    """What a source reports, always on the caller's event loop."""

    def advertisement(self, address: str, vin: str | None) -> None:
        """A peer serving ``vin`` was found at ``address``: ``""`` for one that will
        name it once connected, ``None`` for an OBD adapter (see
        :class:`~o2x.machine.AdvertisementSeen`)."""

    def received(self, items: list[Received]) -> None:
        """Readings and events arrived on the current link, in order."""

    def link_lost(self) -> None:
        """The current link went down without being asked to."""


class Source(Protocol):
    """A way of reaching the car, driven by the vehicle's connection machine.

    Each step raises an :class:`~o2x.errors.O2XError` when it fails
    (:class:`~o2x.errors.ConnectionFailed`, :class:`~o2x.errors.BluetoothUnavailable`...);
    :meth:`disconnect` and :meth:`close` never raise and are bounded in time.
    """

    #: The peer has no other to replace it (a CAN bus): setup failures are final.
    single_peer: bool
    #: What to check when no vehicle was found, for the error that says so.
    not_found_hint: str

    @property
    def keeps_quiet_link(self) -> bool:
        """Whether the current link stays up while the car is silent (an OBD adapter
        on a sleeping car's bus): silence is then waited out rather than the link
        torn down (see :class:`~o2x.machine.Subscribed`)."""

    @property
    def bus_heard(self) -> bool:
        """Whether the current link has shown any frame of the car's bus (an OBD
        adapter that shows none may be in no car; every other source: True)."""

    def start(self, task_group: TaskGroup) -> None:
        """Start what the source runs in the background, in the vehicle's task group."""

    async def start_scan(self) -> None:
        """Report peers to the sink as advertisements until :meth:`stop_scan`."""

    async def stop_scan(self) -> None:
        """Stop reporting peers."""

    async def connect(self, address: str) -> None:
        """Set up the link to ``address``."""

    async def read_identity(self) -> str:
        """The VIN of the vehicle the peer serves."""

    async def subscribe(self) -> None:
        """Start the flow of readings to the sink."""

    async def disconnect(self) -> None:
        """Tear the current link down, if any."""

    async def close(self) -> None:
        """Stop scanning and disconnect: the vehicle is being left."""

    def counters(self) -> LinkCounters:
        """What the source has received and refused so far."""


class WallClock:
    """The time a reading is stamped with: UTC, at whole seconds (the SDK's resolution).

    One datetime is made per second, not per reading.
    """

    def __init__(self) -> None:
        self._second = -1
        self._now = _dt.datetime.now(_dt.UTC)

    def __call__(self) -> _dt.datetime:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._now = _dt.datetime.fromtimestamp(second, _dt.UTC)
        return self._now
