"""The vehicle's data as the SDK defines it: enums, value classes and status derivation.

Everything here is plain data: immutable attrs classes and str-valued enums whose
values are the SDK's own strings. Serialisation lives in :mod:`o2x.sdk`, the wire
format in :mod:`o2x.frames`; this module imports neither.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
import string
from typing import TYPE_CHECKING

import attrs

from .errors import InvalidVIN

if TYPE_CHECKING:
    from .frames import InfoFrame

__all__ = [
    "Alerts",
    "BatteryState",
    "Event",
    "EventKind",
    "Gear",
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


# ISO 3779: 17 characters, digits and capitals without I, O and Q.
_VIN_RE = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def normalize_vin(vin: str) -> str:
    """Return ``vin`` upper-cased and stripped, or raise :class:`InvalidVIN`.

    >>> normalize_vin(" vr1ab12c3d4567890 ")
    'VR1AB12C3D4567890'
    """
    if not isinstance(vin, str):
        raise InvalidVIN(f"a VIN is a string of 17 characters, not {type(vin).__name__}")
    # ASCII letters only are upper-cased: str.upper() would turn "ß" into "SS" and
    # the ligature "ﬀ" into "FF", making a VIN of a string that is not one.
    candidate = vin.strip().translate(_ASCII_UPPER)
    if _VIN_RE.fullmatch(candidate) is None:
        if len(candidate) != 17:
            raise InvalidVIN(f"{vin!r} is not a VIN: a VIN has 17 characters, not {len(candidate)}")
        bad = sorted({c for c in candidate if _VIN_RE.fullmatch(c * 17) is None})
        raise InvalidVIN(
            f"{vin!r} is not a VIN: {''.join(bad)!r} cannot appear in a VIN "
            "(only digits and capital letters other than I, O and Q)"
        )
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


@attrs.frozen
class Measure:
    """A number with its unit, as the SDK reports measures (``{"unit": "km", "value": 42}``)."""

    value: int | float
    unit: str


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


def _to_utc_seconds(value: _dt.datetime) -> _dt.datetime:
    if not isinstance(value, _dt.datetime):
        raise TypeError(f"received_at must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware (for example datetime.now(UTC))")
    try:
        return value.astimezone(_dt.UTC).replace(microsecond=0)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC datetime
        raise ValueError(f"received_at {value} is out of range in UTC") from None


@attrs.frozen
class VehicleInfo:
    """One reading of the vehicle: the SDK's ``pims.vehicle.informations`` result.

    ``received_at`` is kept in UTC at whole seconds, the SDK's resolution, so that
    a round trip through :func:`o2x.sdk.to_sdk` loses nothing.
    """

    vin: str = attrs.field(converter=normalize_vin)
    received_at: _dt.datetime = attrs.field(converter=_to_utc_seconds)
    status: VehicleStatus
    current_alert: Alerts
    previous_alert: Alerts
    data: VehicleData

    @classmethod
    def from_frame(cls, frame: InfoFrame, *, vin: str, received_at: _dt.datetime) -> VehicleInfo:
        """Build the SDK-shaped reading from a decoded INFO frame."""
        soc = frame.battery_soc
        autonomy = frame.remaining_autonomy
        delay = frame.charge_delay
        odometer = frame.total_odometer
        return cls(
            vin=vin,
            received_at=received_at,
            status=derive_status(frame.system_state, frame.rnd),
            current_alert=frame.current_alert,
            previous_alert=frame.previous_alert,
            data=VehicleData(
                battery_soc=None if soc is None else Measure(soc, "%"),
                system_state=frame.system_state,
                battery_state=frame.battery_state,
                remaining_autonomy=None if autonomy is None else Measure(autonomy, "km"),
                rnd=frame.rnd,
                charge_delay=None if delay is None else Measure(delay, "min"),
                park_brake_status=frame.park_brake_status,
                total_odometer=None if odometer is None else Measure(odometer, "km"),
            ),
        )


@attrs.frozen
class Event:
    """Something that happened on the connection or the vehicle (``pims.vehicle.event``)."""

    kind: EventKind
    at: _dt.datetime
