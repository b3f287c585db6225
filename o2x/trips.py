"""Trips and charging sessions, from a stream of readings: sans-I/O.

A :class:`TripTracker` takes each :class:`~o2x.VehicleInfo` (and the ``disconnected``
event) and returns the :class:`Trip` or :class:`ChargingSession` that input ended, if
any. It has no clock of its own: time is the readings' ``received_at``. The rules are
in ``docs/mqtt.md`` ("Trips and charging sessions") and on :class:`TripTracker`.

>>> import datetime as dt
>>> from o2x.trips import TripTracker
>>> from o2x.frames import decode_frame, encode_info
>>> from o2x import Gear, SystemState, VehicleInfo
>>> def reading(second, odometer, **fields):
...     frame = decode_frame(encode_info(seq=second % 256, total_odometer=odometer, **fields))
...     at = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=second)
...     return VehicleInfo.from_frame(frame, vin="VR1AB12C3D4567890", received_at=at)
>>> tracker = TripTracker(settle=0)
>>> tracker.reading(reading(0, 1000.0))                      # parked
[]
>>> drive = {"system_state": SystemState.READY, "rnd": Gear.DRIVE}
>>> tracker.reading(reading(1, 1000.0, battery_soc=80, **drive))  # leaves
[]
>>> tracker.reading(reading(481, 1012.4, battery_soc=74, **drive))
[]
>>> [trip] = tracker.reading(reading(482, 1012.4, battery_soc=74))  # parked again
>>> trip.distance, trip.soc_used, trip.duration
(12.4, 6, 481.0)
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Final

import attrs

from .model import Event, EventKind, VehicleInfo, VehicleStatus

__all__ = ["ChargingSession", "Trip", "TripTracker"]

#: A trip shorter than this (km) is not reported, unless the odometer is unknown.
MIN_TRIP_DISTANCE: Final = 0.2
#: A trip or a charging session shorter than this (s) is not reported.
MIN_DURATION: Final = 60.0
#: How long (s) a new status must hold before it ends a trip or a charging session.
SETTLE: Final = 30.0
#: Readings further apart than this (s) end what was under way, at the last one.
MAX_GAP: Final = 600.0


@attrs.frozen
class Trip:
    """A drive: from leaving ``parked`` (or ``charging``) to standing again.

    Values the source did not give are ``None``: ``energy_used`` needs the pack's
    power on every reading of the trip (the car's CAN bus gives it, the O2X dongle
    does not), ``max_speed`` the speed (likewise).
    """

    vin: str
    started_at: _dt.datetime
    ended_at: _dt.datetime
    #: Odometer at the start and at the end, km.
    start_odometer: float | None
    end_odometer: float | None
    #: ``end_odometer - start_odometer``, km.
    distance: float | None
    #: State of charge at the start and at the end, %.
    start_soc: int | float | None
    end_soc: int | float | None
    #: ``start_soc - end_soc``, percentage points.
    soc_used: int | float | None
    #: Energy taken out of the pack, kWh (regeneration counted back), from its power.
    energy_used: float | None
    #: The highest speed read, km/h.
    max_speed: int | float | None
    #: How many times the link to the car was lost during the trip.
    link_losses: int

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return (self.ended_at - self.started_at).total_seconds()


@attrs.frozen
class ChargingSession:
    """A charge: from the first ``charging`` reading to the car not charging any more."""

    vin: str
    started_at: _dt.datetime
    ended_at: _dt.datetime
    #: State of charge at the start and at the end, %.
    start_soc: int | float | None
    end_soc: int | float | None
    #: ``end_soc - start_soc``, percentage points.
    soc_added: int | float | None
    #: Energy into the pack, kWh, from its power (``None`` where the source lacks it).
    energy_in: float | None
    #: How many times the link to the car was lost during the session.
    link_losses: int

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return (self.ended_at - self.started_at).total_seconds()


def _odometer(info: VehicleInfo) -> float | None:
    measure = info.data.total_odometer
    return None if measure is None else float(measure.value)


def _soc(info: VehicleInfo) -> int | float | None:
    measure = info.data.battery_soc
    return None if measure is None else measure.value


def _power(info: VehicleInfo) -> float | None:
    return None if info.live is None else info.live.pack_power


def _difference(a: int | float | None, b: int | float | None) -> int | float | None:
    if a is None or b is None:
        return None
    value = a - b
    return value if isinstance(value, int) else round(value, 3)


# The statuses a record is made of.
_RECORDED: Final = frozenset({VehicleStatus.DRIVING, VehicleStatus.CHARGING})


class _Record:
    """What is under way: a trip or a charging session, and its running totals."""

    def __init__(self, kind: VehicleStatus, first: VehicleInfo) -> None:
        self.kind = kind
        self.first = first
        self.last = first
        # The first reading of another status (None: no end pending), and the first
        # of the status now settling, whose clock decides and which starts what follows.
        self.ending: VehicleInfo | None = None
        self.settling: VehicleInfo | None = None
        self.max_speed: int | float | None = None
        # kWh, positive into the pack; None once a reading lacks the pack's power.
        self.energy: float | None = 0.0
        self.link_losses = 0
        self.add(first)

    def add(self, info: VehicleInfo) -> None:
        live = info.live
        if live is not None and live.speed is not None:
            self.max_speed = (
                live.speed if self.max_speed is None else max(self.max_speed, live.speed)
            )
        power = _power(info)
        if power is None:
            self.energy = None
        elif self.energy is not None and info is not self.first:
            previous = _power(self.last)
            if previous is not None:
                hours = (info.received_at - self.last.received_at).total_seconds() / 3600
                self.energy += (previous + power) / 2 * hours
        self.last = info

    def finish(self, end: VehicleInfo) -> Trip | ChargingSession:
        first = self.first
        energy = None if self.energy is None else round(self.energy, 3)
        if self.kind is VehicleStatus.DRIVING:
            start_odometer, end_odometer = _odometer(first), _odometer(end)
            return Trip(
                vin=first.vin,
                started_at=first.received_at,
                ended_at=end.received_at,
                start_odometer=start_odometer,
                end_odometer=end_odometer,
                distance=None
                if start_odometer is None or end_odometer is None
                else round(end_odometer - start_odometer, 3),
                start_soc=_soc(first),
                end_soc=_soc(end),
                soc_used=_difference(_soc(first), _soc(end)),
                energy_used=None if energy is None else -energy + 0.0,
                max_speed=self.max_speed,
                link_losses=self.link_losses,
            )
        return ChargingSession(
            vin=first.vin,
            started_at=first.received_at,
            ended_at=end.received_at,
            start_soc=_soc(first),
            end_soc=_soc(end),
            soc_added=_difference(_soc(end), _soc(first)),
            energy_in=energy,
            link_losses=self.link_losses,
        )


class TripTracker:
    """Trips and charging sessions from readings, as they come (sans-I/O).

    Feed it every reading (:meth:`reading`, ``car.samples()``) and every event
    (:meth:`event`); each returns what that input ended. The rules:

    * **Start.** A trip starts at the first ``driving`` reading after the tracker has
      seen the car ``parked`` or ``charging``; a charging session at the first
      ``charging`` reading after a reading of another status. A tracker started in the
      middle of a drive or a charge does not report that one: its start is unknown.
    * **End.** It ends at the first reading of another known status (``parked``,
      ``charging``, ``driving``) that then holds for ``settle`` seconds: a stop in
      neutral at a red light shorter than that does not end a trip. Its end values are
      that first reading's. ``unknown`` readings neither end nor interrupt anything.
    * **Minimum.** A trip is reported if it covered at least ``min_distance`` km (or,
      when the odometer is unknown at either end, lasted ``min_duration`` s); a
      session if it lasted ``min_duration`` s. Shorter ones are dropped.
    * **Link loss.** A lost link does not end anything by itself: the record goes on
      when readings resume, and counts the loss (``link_losses``). A loss while an end
      is settling ends the record there (the car parked, then went to sleep). Readings
      more than ``max_gap`` seconds apart end what was under way, at its settling end
      if it had one, else at the last reading before the gap: nothing is known of what
      happened in it. The status seen last before the gap still counts, so a car
      parked, asleep for the night and driven in the morning makes a trip.
    """

    def __init__(
        self,
        *,
        settle: float = SETTLE,
        min_distance: float = MIN_TRIP_DISTANCE,
        min_duration: float = MIN_DURATION,
        max_gap: float = MAX_GAP,
    ) -> None:
        for name, value in (
            ("settle", settle),
            ("min_distance", min_distance),
            ("min_duration", min_duration),
            ("max_gap", max_gap),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"TripTracker's {name} is a number >= 0, not {value!r}")
        self.settle = float(settle)
        self.min_distance = float(min_distance)
        self.min_duration = float(min_duration)
        self.max_gap = float(max_gap)
        self._record: _Record | None = None
        # The last reading of a known status (None before the first).
        self._previous: VehicleInfo | None = None
        self._last_at: _dt.datetime | None = None

    @property
    def current(self) -> Trip | ChargingSession | None:
        """What is under way, as if it ended at the last reading (``None``: nothing)."""
        record = self._record
        return None if record is None else record.finish(record.last)

    def reading(self, info: VehicleInfo) -> list[Trip | ChargingSession]:
        """Take one reading; return what it ended (a list of none or one)."""
        if not isinstance(info, VehicleInfo):
            raise TypeError(f"TripTracker.reading takes a VehicleInfo, not {type(info).__name__}")
        done: list[Trip | ChargingSession] = []
        last_at, record = self._last_at, self._record
        if (
            record is not None
            and last_at is not None
            and (
                (info.received_at - last_at).total_seconds() > self.max_gap
                or info.received_at < last_at
            )
        ):
            # A gap (or time going back: another source): what was under way ends
            # where it was last seen; the status last seen is kept.
            self._finish(record.ending or record.last, done)
        self._last_at = info.received_at
        status = info.status
        if status is VehicleStatus.UNKNOWN:
            if self._record is not None:
                self._record.add(info)
            return done
        record = self._record
        start: VehicleInfo | None = None
        if record is not None:
            record.add(info)
            if status is record.kind:
                record.ending = record.settling = None
            else:
                if record.ending is None:
                    record.ending = info
                if record.settling is None or record.settling.status is not status:
                    record.settling = info
                waited = (info.received_at - record.settling.received_at).total_seconds()
                if waited >= self.settle:
                    self._finish(record.ending, done)
                    start = record.settling
        elif self._previous is not None and self._previous.status is not status:
            start = info
        if start is not None and status in _RECORDED:
            self._record = _Record(status, start)
            if start is not info:
                self._record.add(info)
        self._previous = info
        return done

    def event(self, event: Event) -> list[Trip | ChargingSession]:
        """Take an event: ``disconnected`` may end a record whose end was settling."""
        if not isinstance(event, Event):
            raise TypeError(f"TripTracker.event takes an Event, not {type(event).__name__}")
        done: list[Trip | ChargingSession] = []
        record = self._record
        if event.kind is EventKind.DISCONNECTED and record is not None:
            if record.ending is not None:
                self._finish(record.ending, done)
            else:
                record.link_losses += 1
        return done

    def _finish(self, end: VehicleInfo | None, done: list[Trip | ChargingSession]) -> None:
        record, self._record = self._record, None
        if record is None or end is None:
            return
        result = record.finish(end)
        if isinstance(result, Trip) and result.distance is not None:
            long_enough = result.distance >= self.min_distance
        else:
            long_enough = result.duration >= self.min_duration
        if long_enough:
            done.append(result)
