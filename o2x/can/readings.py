"""When a live source takes a reading of an :class:`~o2x.can.AmiBus`, and the reading.

The python-can source and a BLE OBD adapter's link both hand frames to an
``AmiBus`` far more often than readings are wanted: :class:`ReadingPacer` takes one
when frames o2x reads arrived, at most one every
:data:`~o2x.can.bus.READING_INTERVAL`; a reading held back is due as soon as the
interval is over (:attr:`ReadingPacer.due`), whether or not more frames come; and
a ``cantCharge`` event goes with the reading in which that heuristic starts to hold.
Time is passed in, as ``now`` seconds of the caller's clock.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..model import EventKind
from .bus import READING_INTERVAL, AmiBus

if TYPE_CHECKING:
    from ..source import Received, WallClock

__all__ = ["ReadingPacer"]


class ReadingPacer:
    """Readings of one ``AmiBus`` for one source (see the module docstring)."""

    def __init__(self, ami: AmiBus, wall: WallClock) -> None:
        self.ami = ami
        self._wall = wall
        self._last = -math.inf
        #: Frames came within the interval of the last reading: one is owed.
        self.held_back = False
        self._cant_charge = False

    @property
    def due(self) -> float:
        """When the reading held back is to be taken (``math.inf``: none is)."""
        return self._last + READING_INTERVAL if self.held_back else math.inf

    def frames_arrived(self, now: float, vin: str) -> list[Received]:
        """Frames o2x reads were fed: the reading, or ``[]`` with one held back."""
        if now - self._last < READING_INTERVAL:
            self.held_back = True
            return []
        return self.take(now, vin)

    def take(self, now: float, vin: str) -> list[Received]:
        """The reading as of now, and ``cantCharge`` if it has just started to hold."""
        self.held_back = False
        self._last = now
        ami = self.ami
        items: list[Received] = [ami.snapshot(vin=vin, received_at=self._wall())]
        cant_charge = ami.cant_charge
        if cant_charge and not self._cant_charge:
            items.append(EventKind.CANT_CHARGE)
        self._cant_charge = cant_charge
        return items
