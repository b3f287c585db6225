"""o2x: live telemetry from a Citroën AMI or Opel Rocks-e over Bluetooth Low Energy.

    async with O2XVehicle.first_time("VR1AB12C3D4567890") as car:
        async for info in car.status_changes():
            print(info.status, info.data.battery_soc)

>>> from o2x import derive_status, SystemState, Gear
>>> derive_status(SystemState.CHARGING, Gear.NEUTRAL).value
'charging'
"""

from __future__ import annotations

from .discovery import DiscoveredDongle, discover
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
    StateFileDamaged,
    StateFileError,
)
from .machine import Timeouts
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
from .vehicle import O2XVehicle, Radio, Stream, VehicleStats, current_vin

__version__ = "0.1.0.dev0"

__all__ = [
    "Alerts",
    "AlreadySubscribed",
    "BatteryState",
    "BluetoothUnavailable",
    "ConnectionFailed",
    "DiscoveredDongle",
    "Event",
    "EventKind",
    "FrameError",
    "Gear",
    "IdentityMismatch",
    "InvalidVIN",
    "Measure",
    "NoPreviousVehicle",
    "O2XError",
    "O2XVehicle",
    "ParkBrake",
    "Radio",
    "ScanTimeout",
    "StateFileDamaged",
    "StateFileError",
    "Stream",
    "SystemState",
    "Timeouts",
    "VehicleData",
    "VehicleInfo",
    "VehicleStats",
    "VehicleStatus",
    "current_vin",
    "derive_status",
    "discover",
    "normalize_vin",
]
