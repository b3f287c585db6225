"""The vehicle's data as the SDK defines it: enums, value classes and status derivation.

Everything here is plain data: immutable attrs classes and str-valued enums whose
values are the SDK's own strings. Serialisation lives in :mod:`o2x.sdk`, the wire
format in :mod:`o2x.dongle.frames`; this module imports neither.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
import operator
import re
import reprlib
import string
import sys
from typing import TYPE_CHECKING, Final

import attrs

from .errors import InvalidVIN

if TYPE_CHECKING:
    from .dongle.frames import InfoFrame

__all__ = [
    "Alerts",
    "BatteryState",
    "Event",
    "EventKind",
    "Gear",
    "LiveData",
    "Measure",
    "ParkBrake",
    "SystemState",
    "VehicleData",
    "VehicleInfo",
    "VehicleStatus",
    "derive_status",
    "normalize_vin",
]


class SystemState(enum.StrEnum):
    """State of the vehicle's system (the SDK's ``data.systemState``)."""

    OFF = "off"
    STANDBY = "standby"
    READY = "ready"
    CHARGING = "charging"
    FAULT = "fault"
    UNKNOWN = "unknown"


class BatteryState(enum.StrEnum):
    """State of the traction battery's management system (``data.batteryState``)."""

    BOOTLOADER = "bootloader"
    INIT = "init"
    IDLE = "idle"
    DISCHARGING = "discharging"
    CHARGING = "charging"
    BALANCING = "balancing"
    FAULT = "fault"
    UNKNOWN = "unknown"


class Gear(enum.StrEnum):
    """The selected gear: reverse, neutral or drive (the SDK's ``data.rnd``)."""

    NEUTRAL = "neutral"
    DRIVE = "drive"
    REVERSE = "reverse"
    UNKNOWN = "unknown"


class ParkBrake(enum.StrEnum):
    """Position of the parking brake (``data.parkBrakeStatus``)."""

    RELEASED = "released"
    ACTIVATED = "activated"
    UNKNOWN = "unknown"


class VehicleStatus(enum.StrEnum):
    """What the vehicle is doing, derived from its data (the SDK's ``status``)."""

    UNKNOWN = "unknown"
    DRIVING = "driving"
    PARKED = "parked"
    CHARGING = "charging"


class EventKind(enum.StrEnum):
    """The SDK's ``pims.vehicle.event`` values."""

    #: The Bluetooth connection with the vehicle was lost.
    DISCONNECTED = "disconnected"
    #: The vehicle should charge but its parking brake is off.
    CANT_CHARGE = "cantCharge"


_PARKED_STATES = frozenset({SystemState.OFF, SystemState.STANDBY})
_MOVING_GEARS = frozenset({Gear.DRIVE, Gear.REVERSE})


def derive_status(system_state: SystemState, rnd: Gear) -> VehicleStatus:
    """Derive the SDK's vehicle status from the system state and the gear.

    >>> derive_status(SystemState.READY, Gear.DRIVE)
    <VehicleStatus.DRIVING: 'driving'>
    >>> derive_status(SystemState.READY, Gear.NEUTRAL)
    <VehicleStatus.PARKED: 'parked'>
    >>> derive_status(SystemState.FAULT, Gear.NEUTRAL)
    <VehicleStatus.UNKNOWN: 'unknown'>
    """
    if system_state is SystemState.CHARGING:
        return VehicleStatus.CHARGING
    if system_state is SystemState.READY:
        if rnd in _MOVING_GEARS:
            return VehicleStatus.DRIVING
        if rnd is Gear.NEUTRAL:
            return VehicleStatus.PARKED
        return VehicleStatus.UNKNOWN
    if system_state in _PARKED_STATES:
        return VehicleStatus.PARKED
    return VehicleStatus.UNKNOWN


# derive_status for every (system state, gear), for the per-reading hot path.
_STATUS: dict[tuple[SystemState, Gear], VehicleStatus] = {
    (system_state, rnd): derive_status(system_state, rnd)
    for system_state in SystemState
    for rnd in Gear
}


# Input quoted in error messages is cut short: a message must stay readable (and
# small) whatever it quotes, and quoting must not fail on what repr() cannot show.
_SHOWN_CHARS = 60
_QUOTER = reprlib.Repr()
_QUOTER.maxlevel = 3
_QUOTER.maxstring = _QUOTER.maxother = _SHOWN_CHARS


def _quote(value: object) -> str:
    """A short repr of ``value`` for an error message; never raises (bar MemoryError)."""
    if isinstance(value, str):
        if len(value) <= _SHOWN_CHARS:
            return repr(value)
        return f"{value[:_SHOWN_CHARS]!r}... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        # repr() refuses integers of more than 4300 digits (sys.int_info).
        digits = int((value.bit_length() - 1) * math.log10(2)) + 1
        return f"an integer of at least {digits} digits"
    try:
        text = _QUOTER.repr(value)
    except Exception:  # an int too long for repr() inside a list, say
        text = f"an object of type {type(value).__name__}"
    return text if len(text) <= 2 * _SHOWN_CHARS else text[: 2 * _SHOWN_CHARS] + "..."


# ISO 3779: 17 characters, digits and capitals without I, O and Q.
_VIN_RE = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)

# Strings already checked, mapped to their normalised VIN: every reading carries the
# vehicle's VIN through the converter below, so it is checked once, not per reading.
# Only valid VINs are cached; the cache is bounded (cleared when full).
_VIN_CACHE: dict[str, str] = {}
_VIN_CACHE_SIZE = 64


def normalize_vin(vin: str) -> str:
    """Return ``vin`` upper-cased and stripped, or raise :class:`InvalidVIN`.

    >>> normalize_vin(" vr1ab12c3d4567890 ")
    'VR1AB12C3D4567890'
    """
    if type(vin) is str:
        known = _VIN_CACHE.get(vin)
        if known is not None:
            return known
    if not isinstance(vin, str):
        raise InvalidVIN(f"a VIN is a string of 17 characters, not {type(vin).__name__}")
    # ASCII letters only are upper-cased: str.upper() would turn "ß" into "SS" and
    # the ligature "ﬀ" into "FF", making a VIN of a string that is not one.
    candidate = vin.strip().translate(_ASCII_UPPER)
    if _VIN_RE.fullmatch(candidate) is None:
        if len(candidate) != 17:
            raise InvalidVIN(
                f"{_quote(vin)} is not a VIN: a VIN has 17 characters, not {len(candidate)}"
            )
        bad = sorted({c for c in candidate if _VIN_RE.fullmatch(c * 17) is None})
        raise InvalidVIN(
            f"{_quote(vin)} is not a VIN: {''.join(bad)!r} cannot appear in a VIN "
            "(only digits and capital letters other than I, O and Q)"
        )
    if type(vin) is str:
        if len(_VIN_CACHE) >= _VIN_CACHE_SIZE:
            _VIN_CACHE.clear()
        _VIN_CACHE[vin] = candidate
    return candidate


_ALERT_NAMES = (
    "parking_brake",
    "cluster_issue",
    "stop",
    "battery_charge",
    "brake_system_problem",
    "service",
    "battery_temperature",
    "turtle_mode",
)


@attrs.frozen
class Alerts:
    """The eight warning lamps the SDK reports, one bool each.

    Used for both the alerts active now (``current_alert``) and the ones that were
    active before (``previous_alert``). On the wire they are a bit mask, bit 0 first:

    >>> Alerts.from_mask(0b1001)
    Alerts(parking_brake=True, cluster_issue=False, stop=False, battery_charge=True, \
brake_system_problem=False, service=False, battery_temperature=False, turtle_mode=False)
    >>> Alerts(stop=True).mask
    4
    """

    parking_brake: bool = False
    cluster_issue: bool = False
    stop: bool = False
    battery_charge: bool = False
    brake_system_problem: bool = False
    service: bool = False
    battery_temperature: bool = False
    turtle_mode: bool = False

    @classmethod
    def from_mask(cls, mask: int) -> Alerts:
        """The alerts whose bits are set in the 8-bit ``mask``."""
        if mask.__class__ is not int:
            # True is an int to Python, and 1.0 compares equal to 1, but neither is a
            # mask; an IntFlag or a NumPy integer is (operator.index takes those).
            if isinstance(mask, bool):
                raise TypeError(f"an alert mask is an int (0..255), not {mask!r}")
            try:
                mask = operator.index(mask)
            except TypeError:
                raise TypeError(f"an alert mask is an int (0..255), not {_quote(mask)}") from None
        if not 0 <= mask <= 0xFF:
            raise ValueError(f"an alert mask is 8 bits (0..255), not {mask}")
        return _ALERTS_BY_MASK[mask]

    @property
    def mask(self) -> int:
        """These alerts as the wire format's 8-bit mask."""
        return sum(1 << bit for bit, name in enumerate(_ALERT_NAMES) if getattr(self, name))

    def active(self) -> tuple[str, ...]:
        """Names of the alerts that are on, in bit order (``("stop", "service")``)."""
        return tuple(name for name in _ALERT_NAMES if getattr(self, name))


# Alerts are immutable, so the 256 possible values are built once and shared.
_ALERTS_BY_MASK: tuple[Alerts, ...] = tuple(
    Alerts(*(bool(mask >> bit & 1) for bit in range(8))) for mask in range(256)
)
NO_ALERTS = _ALERTS_BY_MASK[0]


# RFC 8259, section 6: integers beyond +-(2**53 - 1) are not interoperable in JSON,
# as many parsers (JavaScript's among them) read every number as an IEEE double.
_MAX_MEASURE_INT: Final = 2**53 - 1
_MAX_FLOAT: Final = sys.float_info.max


def _check_measure_value(value: object) -> int | float:
    """Return ``value`` if it can be a measure's value, else raise TypeError or ValueError.

    That is a finite int or float (not a bool), an int no larger in magnitude than
    ``2**53 - 1``: what JSON carries faithfully.
    """
    # Exact types first: from_sdk checks every measure of every object it loads.
    if (type(value) is int and -_MAX_MEASURE_INT <= value <= _MAX_MEASURE_INT) or (
        type(value) is float and -_MAX_FLOAT <= value <= _MAX_FLOAT  # False for NaN
    ):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"a measure's value must be an int or a float, not {_quote(value)} "
            f"({type(value).__name__})"
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a measure's value must be a finite number, not {value!r}")
    elif not -_MAX_MEASURE_INT <= value <= _MAX_MEASURE_INT:
        raise ValueError(
            f"a measure's value must be an integer within +-(2**53 - 1), not {_quote(value)}"
        )
    return value


@attrs.frozen
class Measure:
    """A number with its unit, as the SDK reports measures (``{"unit": "km", "value": 42}``).

    ``value`` is a finite int or float (an int within ``+-(2**53 - 1)``, what JSON
    carries faithfully), ``unit`` a string: TypeError or ValueError otherwise.

    >>> print(Measure(1234.5, "km"))
    1234.5 km
    """

    value: int | float
    unit: str

    def __attrs_post_init__(self) -> None:
        # One hook, not two attrs validators, with the common case first: the
        # measure caches of VehicleInfo.from_frame build a Measure whenever a value
        # changes (the odometer, every 100 m), so this costs as little as it can.
        value = self.value
        cls = value.__class__
        if self.unit.__class__ is str and (
            (cls is int and -_MAX_MEASURE_INT <= value <= _MAX_MEASURE_INT)
            or (cls is float and -_MAX_FLOAT <= value <= _MAX_FLOAT)  # False for NaN
        ):
            return
        _check_measure_value(value)
        if not isinstance(self.unit, str):
            raise TypeError(
                f"a measure's unit must be a string such as 'km', not {_quote(self.unit)}"
            )

    def __str__(self) -> str:
        return f"{self.value} {self.unit}"


@attrs.frozen
class VehicleData:
    """The SDK's ``data`` object. Measures the car did not report are ``None``."""

    battery_soc: Measure | None
    system_state: SystemState
    battery_state: BatteryState
    remaining_autonomy: Measure | None
    rnd: Gear
    charge_delay: Measure | None
    park_brake_status: ParkBrake
    total_odometer: Measure | None


# Measures are immutable: the readings of a session share them. One cache per unit,
# keyed by value (an int or a float; the type is checked as 1 == 1.0), bounded.
_PERCENT: dict[int | float, Measure] = {}
_KILOMETRES: dict[int | float, Measure] = {}
_MINUTES: dict[int | float, Measure] = {}
_MEASURE_CACHE_SIZE = 512


def _measure(value: int | float, unit: str, cache: dict[int | float, Measure]) -> Measure:
    cls = value.__class__
    if cls is not int and cls is not float:
        return Measure(value, unit)
    measure = cache.get(value)
    if measure is None or measure.value.__class__ is not cls:
        measure = Measure(value, unit)
        if len(cache) >= _MEASURE_CACHE_SIZE:
            cache.clear()
        cache[value] = measure
    return measure


def _to_utc_seconds(value: _dt.datetime) -> _dt.datetime:
    # Fast path: already UTC at whole seconds, as o2x makes every received_at.
    if value.__class__ is _dt.datetime and value.tzinfo is _dt.UTC and not value.microsecond:
        return value
    if not isinstance(value, _dt.datetime):
        raise TypeError(f"received_at must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware (for example datetime.now(UTC))")
    try:
        return value.astimezone(_dt.UTC).replace(microsecond=0)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC datetime
        raise ValueError(f"received_at {value} is out of range in UTC") from None


@attrs.frozen
class LiveData:
    """What a reading can carry beyond the SDK's shape; ``None`` where its source has nothing.

    The car's CAN bus gives these (see ``docs/can.md``); the O2X wire format gives
    none of them, so its readings have no ``live`` at all.

    >>> LiveData(speed=32, pack_voltage=50.2, pack_current=-41.5).pack_current
    -41.5
    """

    #: Road speed, km/h.
    speed: int | float | None = None
    #: Traction battery voltage, V.
    pack_voltage: float | None = None
    #: Traction battery current, A: positive while charging, negative while driving.
    pack_current: float | None = None
    #: ``pack_voltage * pack_current``, kW (positive while charging).
    pack_power: float | None = None
    #: Traction battery temperatures, °C, one per sensor reported.
    pack_temperatures: tuple[int | float, ...] | None = None
    #: Whether the car is ready to drive.
    ready: bool | None = None


@attrs.frozen
class VehicleInfo:
    """One reading of the vehicle: the SDK's ``pims.vehicle.informations`` result.

    ``received_at`` is kept in UTC at whole seconds, the SDK's resolution, so that
    a round trip through :func:`o2x.sdk.to_sdk` loses nothing. The alerts are
    ``None`` where the source does not report them (the car's CAN bus does not);
    ``live`` holds what the SDK's shape has no field for (``None`` for the O2X link).
    """

    vin: str = attrs.field(converter=normalize_vin)
    received_at: _dt.datetime = attrs.field(converter=_to_utc_seconds)
    status: VehicleStatus
    current_alert: Alerts | None
    previous_alert: Alerts | None
    data: VehicleData
    live: LiveData | None = None

    @classmethod
    def from_frame(cls, frame: InfoFrame, *, vin: str, received_at: _dt.datetime) -> VehicleInfo:
        """Build the SDK-shaped reading from a decoded INFO frame."""
        # The hot path of every reading. Measures, immutable and slowly changing, come
        # from small caches; the converters take their fast paths; and the two objects
        # are filled slot by slot, which costs half of their attrs __init__ (see
        # _DIRECT_INIT for when that is valid).
        soc = frame.battery_soc
        autonomy = frame.remaining_autonomy
        delay = frame.charge_delay
        odometer = frame.total_odometer
        system_state = frame.system_state
        rnd = frame.rnd
        status = (
            _STATUS[system_state, rnd]
            if system_state.__class__ is SystemState and rnd.__class__ is Gear
            else derive_status(system_state, rnd)
        )
        soc_measure = None if soc is None else _measure(soc, "%", _PERCENT)
        autonomy_measure = None if autonomy is None else _measure(autonomy, "km", _KILOMETRES)
        delay_measure = None if delay is None else _measure(delay, "min", _MINUTES)
        odometer_measure = None if odometer is None else _measure(odometer, "km", _KILOMETRES)
        if cls is not VehicleInfo or not _DIRECT_INIT:
            return cls(
                vin,
                received_at,
                status,
                frame.current_alert,
                frame.previous_alert,
                VehicleData(
                    soc_measure,
                    system_state,
                    frame.battery_state,
                    autonomy_measure,
                    rnd,
                    delay_measure,
                    frame.park_brake_status,
                    odometer_measure,
                ),
            )
        data = _new_object(VehicleData)
        _set_battery_soc(data, soc_measure)
        _set_system_state(data, system_state)
        _set_battery_state(data, frame.battery_state)
        _set_remaining_autonomy(data, autonomy_measure)
        _set_rnd(data, rnd)
        _set_charge_delay(data, delay_measure)
        _set_park_brake_status(data, frame.park_brake_status)
        _set_total_odometer(data, odometer_measure)
        info = _new_object(VehicleInfo)
        _set_vin(info, normalize_vin(vin))
        _set_received_at(info, _to_utc_seconds(received_at))
        _set_status(info, status)
        _set_current_alert(info, frame.current_alert)
        _set_previous_alert(info, frame.previous_alert)
        _set_data(info, data)
        _set_live(info, None)
        return info


# VehicleInfo.from_frame fills VehicleData and VehicleInfo through their slots,
# bypassing the attrs __init__: valid only while neither class has validators, a
# post-init hook or converters other than VehicleInfo's two (which from_frame calls
# itself). Should that change, from_frame falls back to the constructors.
_DIRECT_INIT: Final = (
    all(f.validator is None and f.converter is None for f in attrs.fields(VehicleData))
    and [(f.name, f.converter, f.validator) for f in attrs.fields(VehicleInfo)]
    == [
        ("vin", normalize_vin, None),
        ("received_at", _to_utc_seconds, None),
        ("status", None, None),
        ("current_alert", None, None),
        ("previous_alert", None, None),
        ("data", None, None),
        ("live", None, None),
    ]
    and not hasattr(VehicleData, "__attrs_post_init__")
    and not hasattr(VehicleInfo, "__attrs_post_init__")
)
_new_object = object.__new__
(
    _set_battery_soc,
    _set_system_state,
    _set_battery_state,
    _set_remaining_autonomy,
    _set_rnd,
    _set_charge_delay,
    _set_park_brake_status,
    _set_total_odometer,
) = (VehicleData.__dict__[f.name].__set__ for f in attrs.fields(VehicleData))
(
    _set_vin,
    _set_received_at,
    _set_status,
    _set_current_alert,
    _set_previous_alert,
    _set_data,
    _set_live,
) = (VehicleInfo.__dict__[f.name].__set__ for f in attrs.fields(VehicleInfo))


@attrs.frozen
class Event:
    """Something that happened on the connection or the vehicle (``pims.vehicle.event``)."""

    kind: EventKind
    at: _dt.datetime
