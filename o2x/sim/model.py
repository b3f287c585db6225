"""A pure, deterministic model of a Citroën AMI / Opel Rocks-e for the simulator.

It knows how a small electric car's telemetry evolves while parked, driving and
charging, and nothing about radios or clocks: time only moves when :meth:`VehicleModel.step`
is called, and every random draw comes from a generator seeded at construction.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ..model import Alerts, BatteryState, EventKind, Gear, ParkBrake, SystemState

__all__ = [
    "ALERT_BIT",
    "AUTONOMY_KM_AT_FULL",
    "LOW_SOC_ALERT",
    "TURTLE_SOC",
    "InfoValues",
    "Phase",
    "VehicleModel",
]

#: Range of a full battery in km (the AMI's rated range); autonomy is proportional to SoC.
AUTONOMY_KM_AT_FULL: Final = 75.0
#: Below this state of charge (percent) the battery-charge lamp is on.
LOW_SOC_ALERT: Final = 15
#: Below this state of charge (percent) the car limits its speed ("turtle mode").
TURTLE_SOC: Final = 5

#: Bit number of each alert in the wire format's 8-bit masks.
ALERT_BIT: Final[Mapping[str, int]] = {
    "parking_brake": 0,
    "cluster_issue": 1,
    "stop": 2,
    "battery_charge": 3,
    "brake_system_problem": 4,
    "service": 5,
    "battery_temperature": 6,
    "turtle_mode": 7,
}

_MAX_SPEED_KMH: Final = 45.0  # a licence-free quadricycle is limited to 45 km/h
_TURTLE_SPEED_KMH: Final = 20.0
_CRUISE_KMH: Final = 32.0  # mean speed in town traffic
_SPEED_TAU_S: Final = 20.0  # how fast the speed returns towards the cruise speed
_SPEED_SIGMA: Final = 6.0  # km/h of speed noise per sqrt(second)
# A full charge on a household socket takes about three hours.
_CHARGE_PCT_PER_S: Final = 100.0 / (3 * 3600)
_BALANCING_FROM: Final = 97.0  # the last percents charge slowly while cells balance
_MAX_CHARGE_DELAY_MIN: Final = 5  # autopilot: deferred charging of up to 5 minutes
_IGNITION_S: Final = 4.0  # autopilot: seconds on READY with the brake on before moving off


class Phase(enum.Enum):
    """What the car is doing, as the model drives its values."""

    PARKED = "parked"
    DRIVING = "driving"
    CHARGING = "charging"


@attrs.frozen
class InfoValues:
    """The fields of one INFO frame, without the sequence number.

    ``encode_info(seq=n, **values.as_kwargs())`` turns it into wire bytes.
    """

    current_alert: int
    previous_alert: int
    battery_soc: int | None
    system_state: SystemState
    battery_state: BatteryState
    remaining_autonomy: int | None
    rnd: Gear
    charge_delay: int | None
    park_brake_status: ParkBrake
    total_odometer: float | None

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as keyword arguments for :func:`o2x.dongle.frames.encode_info`."""
        return attrs.asdict(self, recurse=False)


# Fields of the INFO frame the caller may set.
_SETTABLE: Final = frozenset(attrs.fields_dict(InfoValues))

# The autopilot's cycle: phase and (mean, spread) of its duration in model seconds.
# Driving ends early when the battery runs low, charging when the battery is full.
_CYCLE: Final[tuple[tuple[Phase, float, float], ...]] = (
    (Phase.PARKED, 120.0, 60.0),
    (Phase.DRIVING, 900.0, 600.0),
    (Phase.PARKED, 60.0, 30.0),
    (Phase.CHARGING, 4 * 3600.0, 0.0),
)


def _mask(value: Alerts | int | None, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, Alerts):
        return value.mask
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"{field} is an Alerts value or an 8-bit mask (0..255), not {value!r}")
    return value


def _check_measure(field: str, value: object, upper: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{field} is a number or None, not {value!r}")
    if value < 0 or (upper is not None and value > upper):
        limit = f"0..{upper}" if upper is not None else "0 or more"
        raise ValueError(f"{field} must be {limit}, not {value}")


def _bit(name: str) -> int:
    return 1 << ALERT_BIT[name]


class VehicleModel:
    """The car's state and how it evolves; stepping is the only way time passes.

    With ``autopilot=False`` the model stays in the phase it is put in (by
    :meth:`drive`, :meth:`park`, :meth:`charge` or :meth:`apply`) while the values
    of that phase evolve: the battery drains and the odometer turns while driving,
    the charge delay counts down and then the battery fills while charging. With
    ``autopilot=True`` it also cycles by itself: parked, driving, parked, charging,
    and again, with durations drawn from the seeded generator.

    >>> model = VehicleModel(seed=1, battery_soc=60.0)
    >>> model.drive()
    >>> before = model.snapshot()
    >>> after = model.step(600.0)  # ten minutes of driving
    >>> after.battery_soc < before.battery_soc, after.total_odometer > before.total_odometer
    (True, True)
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        autopilot: bool = False,
        battery_soc: float = 80.0,
        total_odometer: float = 1234.5,
    ) -> None:
        if not 0.0 <= battery_soc <= 100.0:
            raise ValueError(f"battery_soc is a percentage (0..100), not {battery_soc}")
        if total_odometer < 0:
            raise ValueError(f"total_odometer cannot be negative, not {total_odometer}")
        self._rng = random.Random(seed)
        self.autopilot = autopilot
        self.time = 0.0
        """Model seconds elapsed since construction."""
        self.plugged = False
        """Whether the charging cable is in: from :meth:`charge` (also when the car
        refuses to charge, so that a refused charge stays visible) until the car
        drives or parks."""

        self._soc = float(battery_soc)
        self._odometer = float(total_odometer)
        self._range_km = AUTONOMY_KM_AT_FULL
        self._speed = 0.0
        self._delay_min = 0.0
        self._system = SystemState.OFF
        self._battery = BatteryState.IDLE
        self._gear = Gear.NEUTRAL
        self._brake = ParkBrake.ACTIVATED
        self._phase = Phase.PARKED

        # Fields the car currently does not report (sent as "not available").
        self._unreported: set[str] = set()
        # Alerts: automatic unless pinned with apply(current_alert=...).
        self._alert_override: int | None = None
        self._previous_override: int | None = None
        self._seen_alerts = 0
        self._events: list[EventKind] = []

        # Autopilot bookkeeping: index in _CYCLE and model time left in the phase.
        self._cycle_index = 0
        self._phase_left = self._draw_duration(0)
        self._ignition_left = 0.0
        self._charge_target = 100.0

        self._seen_alerts |= self._current_alert()

    # --- reading ----------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """The phase the model is in."""
        return self._phase

    @property
    def speed_kmh(self) -> float:
        """Current speed (not part of the INFO frame; useful to check the odometer)."""
        return self._speed

    def snapshot(self) -> InfoValues:
        """The INFO values as they are now, without advancing time."""
        current = self._current_alert()
        previous = (
            self._previous_override
            if self._previous_override is not None
            else self._seen_alerts & ~current & 0xFF
        )
        soc = min(100, max(0, round(self._soc)))
        autonomy = max(0, round(self._soc * self._range_km / 100.0))
        delay = math.ceil(self._delay_min - 1e-9) if self._delay_min > 0 else 0
        return InfoValues(
            current_alert=current,
            previous_alert=previous,
            battery_soc=None if "battery_soc" in self._unreported else soc,
            system_state=self._system,
            battery_state=self._battery,
            remaining_autonomy=None if "remaining_autonomy" in self._unreported else autonomy,
            rnd=self._gear,
            charge_delay=None if "charge_delay" in self._unreported else delay,
            park_brake_status=self._brake,
            total_odometer=(
                None
                if "total_odometer" in self._unreported
                else math.floor(self._odometer * 10 + 1e-6) / 10
            ),
        )

    def drain_events(self) -> list[EventKind]:
        """Events the car raised since the last call (for example ``CANT_CHARGE``)."""
        events, self._events = self._events, []
        return events

    # --- phase changes ----------------------------------------------------------------

    def drive(self) -> None:
        """Switch on, release the parking brake and select drive."""
        self._enter(Phase.DRIVING)

    def park(self) -> None:
        """Stop, select neutral, apply the parking brake and switch off."""
        self._enter(Phase.PARKED)

    def charge(self, delay_minutes: float | None = None) -> None:
        """Plug in; charging starts after ``delay_minutes`` (deferred charging).

        If the parking brake is released the car refuses: it raises a
        ``CANT_CHARGE`` event and does not charge.
        """
        if delay_minutes is not None and delay_minutes < 0:
            raise ValueError(f"delay_minutes cannot be negative, not {delay_minutes}")
        self._enter(Phase.CHARGING, delay_minutes=delay_minutes)

    def _enter(self, phase: Phase, *, delay_minutes: float | None = None) -> None:
        self._ignition_left = 0.0
        # Plugged in from a charge (even a refused one) until the car drives or parks.
        self.plugged = phase is Phase.CHARGING
        if phase is Phase.DRIVING:
            self._system = SystemState.READY
            self._gear = Gear.DRIVE
            self._brake = ParkBrake.RELEASED
            self._battery = BatteryState.DISCHARGING
            self._delay_min = 0.0
            self._speed = 0.0
        elif phase is Phase.PARKED:
            self._system = SystemState.OFF
            self._gear = Gear.NEUTRAL
            self._brake = ParkBrake.ACTIVATED
            self._battery = BatteryState.IDLE
            self._delay_min = 0.0
            self._speed = 0.0
        else:
            self._speed = 0.0
            self._gear = Gear.NEUTRAL
            if self._brake is not ParkBrake.ACTIVATED:
                self._refuse_charge()
                return
            self._system = SystemState.CHARGING
            if delay_minutes is None:
                delay_minutes = float(self._rng.randint(0, _MAX_CHARGE_DELAY_MIN))
            self._delay_min = delay_minutes
            self._battery = BatteryState.IDLE if delay_minutes > 0 else self._charging_state()
            self._charge_target = 100.0
        self._phase = phase
        self._sync_cycle(phase)
        self._seen_alerts |= self._current_alert()

    def _refuse_charge(self) -> None:
        # The car only charges with the parking brake on; otherwise it stays
        # plugged in on standby and says so with an event.
        self._events.append(EventKind.CANT_CHARGE)
        self._system = SystemState.STANDBY
        self._battery = BatteryState.IDLE
        self._delay_min = 0.0
        self._phase = Phase.PARKED
        self._sync_cycle(Phase.PARKED)

    def _sync_cycle(self, phase: Phase) -> None:
        # A manual phase change moves the autopilot to that phase of its cycle.
        if self._cycle_index < len(_CYCLE) and _CYCLE[self._cycle_index][0] is phase:
            return
        for index, (cycle_phase, _, _) in enumerate(_CYCLE):
            if cycle_phase is phase:
                self._cycle_index = index
                self._phase_left = self._draw_duration(index)
                return

    # --- explicit values --------------------------------------------------------------

    def apply(self, **changes: Any) -> None:
        """Set INFO fields to the given values; they evolve from there.

        Takes the keyword names of :class:`InfoValues`. ``None`` for a measure
        (``battery_soc``, ``remaining_autonomy``, ``charge_delay``,
        ``total_odometer``) makes the car stop reporting it until a number is set
        again. ``current_alert`` / ``previous_alert`` (an :class:`~o2x.Alerts` or a
        mask) pin the alert masks; ``None`` returns them to the automatic logic.
        The phase follows the resulting state; asking for ``CHARGING`` with the
        parking brake released is refused like :meth:`charge`.
        """
        unknown = set(changes) - _SETTABLE
        if unknown:
            raise TypeError(f"unknown INFO field(s): {', '.join(sorted(unknown))}")
        system = changes.get("system_state", self._system)
        battery = changes.get("battery_state", self._battery)
        gear = changes.get("rnd", self._gear)
        brake = changes.get("park_brake_status", self._brake)
        system = SystemState(system)
        battery = BatteryState(battery)
        gear = Gear(gear)
        brake = ParkBrake(brake)
        # Check everything before changing anything: a refused call changes nothing.
        limits = {
            "battery_soc": 100,
            "total_odometer": None,
            "charge_delay": 0xFFFE,
            "remaining_autonomy": 0xFFFE,
        }
        for field, upper in limits.items():
            if field in changes:
                _check_measure(field, changes[field], upper)
        masks = {
            field: _mask(changes[field], field)
            for field in ("current_alert", "previous_alert")
            if field in changes
        }
        soc = changes.get("battery_soc")
        soc_after = self._soc if soc is None else float(soc)
        autonomy = changes.get("remaining_autonomy")
        if autonomy is not None and soc_after <= 0 and autonomy != 0:
            raise ValueError("remaining_autonomy must be 0 at 0 % state of charge")

        for field in limits:
            if field in changes:
                if changes[field] is None:
                    self._unreported.add(field)
                else:
                    self._unreported.discard(field)
        if soc is not None:
            self._soc = soc_after
        if changes.get("total_odometer") is not None:
            self._odometer = float(changes["total_odometer"])
        if changes.get("charge_delay") is not None:
            self._delay_min = float(changes["charge_delay"])
        if autonomy is not None and soc_after > 0:
            # Autonomy stays proportional to SoC: a new value is a new estimate of
            # the range of a full battery (as a car's estimate adapts to how it is
            # driven).
            self._range_km = float(autonomy) * 100.0 / soc_after
        if "current_alert" in masks:
            self._alert_override = masks["current_alert"]
        if "previous_alert" in masks:
            self._previous_override = masks["previous_alert"]

        was_charging = self._system is SystemState.CHARGING
        previous_phase = self._phase
        self._system, self._battery, self._gear, self._brake = system, battery, gear, brake
        if system is SystemState.CHARGING and brake is not ParkBrake.ACTIVATED:
            self._refuse_charge()
            self._seen_alerts |= self._current_alert()
            return
        if system is SystemState.CHARGING:
            if not was_charging and "charge_delay" not in changes:
                self._delay_min = 0.0
            phase = Phase.CHARGING
        elif system is SystemState.READY and gear in (Gear.DRIVE, Gear.REVERSE):
            phase = Phase.DRIVING
        else:
            phase = Phase.PARKED
            self._speed = 0.0
        self._phase = phase
        self._sync_cycle(phase)
        if phase is not previous_phase and "battery_state" not in changes:
            # The battery management follows what the car does unless told otherwise.
            self._battery = self._natural_battery_state(phase)
        self._seen_alerts |= self._current_alert()

    def _natural_battery_state(self, phase: Phase) -> BatteryState:
        if phase is Phase.DRIVING:
            return BatteryState.DISCHARGING
        if phase is Phase.CHARGING and self._delay_min <= 0:
            return self._charging_state()
        return BatteryState.IDLE

    # --- time -------------------------------------------------------------------------

    def step(self, dt: float) -> InfoValues:
        """Advance the model by ``dt`` seconds and return the INFO values after it."""
        if dt < 0:
            raise ValueError(f"time only moves forward (dt={dt})")
        remaining = dt
        # Long steps are cut so that phase changes and charge milestones happen at
        # the right time and a large time scale gives the same shape of curves.
        while remaining > 0:
            chunk = min(remaining, 1.0)
            if self.autopilot:
                chunk = min(chunk, max(self._phase_left, 1e-6))
                if self._ignition_left > 0:
                    chunk = min(chunk, self._ignition_left)
            self._advance(chunk)
            remaining -= chunk
            self.time += chunk
        self._seen_alerts |= self._current_alert()
        return self.snapshot()

    def _advance(self, dt: float) -> None:
        if self._phase is Phase.DRIVING:
            self._drive_for(dt)
        elif self._phase is Phase.CHARGING:
            self._charge_for(dt)
        if self.autopilot:
            self._autopilot(dt)

    def _drive_for(self, dt: float) -> None:
        moving = (
            self._system is SystemState.READY
            and self._gear in (Gear.DRIVE, Gear.REVERSE)
            and self._brake is ParkBrake.RELEASED
            and self._soc > 0
        )
        if not moving:
            self._speed = 0.0
            return
        limit = _TURTLE_SPEED_KMH if self._soc < TURTLE_SOC else _MAX_SPEED_KMH
        # Mean-reverting speed around the cruise speed, with seeded noise.
        pull = 1.0 - math.exp(-dt / _SPEED_TAU_S)
        noise = self._rng.gauss(0.0, _SPEED_SIGMA * math.sqrt(dt))
        self._speed = min(limit, max(0.0, self._speed + (_CRUISE_KMH - self._speed) * pull + noise))
        km = self._speed * dt / 3600.0
        self._odometer += km
        self._soc = max(0.0, self._soc - km * 100.0 / self._range_km)

    def _charge_for(self, dt: float) -> None:
        if self._system is not SystemState.CHARGING:
            return
        if self._delay_min > 0:
            self._delay_min = max(0.0, self._delay_min - dt / 60.0)
            if self._delay_min > 0:
                self._battery = BatteryState.IDLE
                return
        if self._soc >= 100.0:
            self._soc = 100.0
            self._battery = BatteryState.IDLE
            return
        rate = _CHARGE_PCT_PER_S / (2 if self._soc >= _BALANCING_FROM else 1)
        self._soc = min(100.0, self._soc + rate * dt)
        self._battery = self._charging_state()

    def _charging_state(self) -> BatteryState:
        if self._soc >= 100.0:
            return BatteryState.IDLE
        return BatteryState.BALANCING if self._soc >= _BALANCING_FROM else BatteryState.CHARGING

    def _autopilot(self, dt: float) -> None:
        if self._ignition_left > 0:
            self._ignition_left = max(0.0, self._ignition_left - dt)
            if self._ignition_left == 0:
                # Brake released, drive selected: moving off.
                self._enter(Phase.DRIVING)
            return
        self._phase_left -= dt
        ending = self._phase_left <= 1e-9
        if self._phase is Phase.DRIVING and self._soc < LOW_SOC_ALERT - 3:
            ending = True
        if self._phase is Phase.CHARGING and self._soc >= self._charge_target:
            ending = True
        if not ending:
            return
        self._cycle_index = (self._cycle_index + 1) % len(_CYCLE)
        self._phase_left = self._draw_duration(self._cycle_index)
        following = _CYCLE[self._cycle_index][0]
        if following is Phase.DRIVING:
            # Switch on first, parking brake still applied (its lamp lights up),
            # then release it and move off.
            self._system = SystemState.READY
            self._gear = Gear.NEUTRAL
            self._brake = ParkBrake.ACTIVATED
            self._battery = BatteryState.IDLE
            self._ignition_left = _IGNITION_S
            self._phase = Phase.DRIVING
        elif following is Phase.CHARGING:
            self._enter(Phase.CHARGING)
            self._charge_target = self._rng.uniform(90.0, 100.0)
        else:
            self._enter(following)

    def _draw_duration(self, index: int) -> float:
        _, mean, spread = _CYCLE[index]
        return max(1.0, mean + self._rng.uniform(-spread / 2, spread / 2))

    # --- alerts -----------------------------------------------------------------------

    def _current_alert(self) -> int:
        if self._alert_override is not None:
            return self._alert_override
        mask = 0
        if self._system is SystemState.READY and self._brake is ParkBrake.ACTIVATED:
            mask |= _bit("parking_brake")  # reminder: switched on with the brake applied
        if self._system is SystemState.FAULT:
            mask |= _bit("stop")
        if self._battery is BatteryState.FAULT:
            mask |= _bit("stop")
        if round(self._soc) < LOW_SOC_ALERT:
            mask |= _bit("battery_charge")
        if round(self._soc) < TURTLE_SOC and self._system is SystemState.READY:
            mask |= _bit("turtle_mode")
        return mask
