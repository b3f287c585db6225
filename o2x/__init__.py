"""o2x: live telemetry from a Citroën AMI or Opel Rocks-e over Bluetooth Low Energy.

>>> from o2x import derive_status, SystemState, Gear
>>> derive_status(SystemState.CHARGING, Gear.NEUTRAL).value
'charging'
"""

from __future__ import annotations

from .errors import (
    AlreadySubscribed,
    BluetoothUnavailable,
    ConnectionFailed,
    FrameError,
    IdentityMismatch,
    InvalidVIN,
    NoPreviousVehicle,
    O2XError,
    ScanTimeout,
    StateFileError,
)
from .model import (
    Alerts,
    BatteryState,
    Event,
    EventKind,
    Gear,
    Measure,
    ParkBrake,
    SystemState,
    VehicleData,
    VehicleInfo,
    VehicleStatus,
    derive_status,
    normalize_vin,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "Alerts",
    "AlreadySubscribed",
    "BatteryState",
    "BluetoothUnavailable",
    "ConnectionFailed",
    "Event",
    "EventKind",
    "FrameError",
    "Gear",
    "IdentityMismatch",
    "InvalidVIN",
    "Measure",
    "NoPreviousVehicle",
    "O2XError",
    "ParkBrake",
    "ScanTimeout",
    "StateFileError",
    "SystemState",
    "VehicleData",
    "VehicleInfo",
    "VehicleStatus",
    "derive_status",
    "normalize_vin",
]
