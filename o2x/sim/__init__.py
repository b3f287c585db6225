"""Simulated vehicles on a virtual Bluetooth LE radio, for tests and demos without hardware.

A :class:`VirtualRadio` is a real in-process BLE stack (Bumble) plugged into bleak
as a custom backend; :class:`SimulatedVehicle` is a car with an O2X dongle on it.
Needs the ``sim`` extra (``pip install o2x[sim]``). See ``docs/simulator.md``.
"""

from __future__ import annotations

from ._bleak_backend import VirtualBleakClient, VirtualBleakScanner
from .model import InfoValues, Phase, VehicleModel
from .radio import VirtualRadio
from .vehicle import Fault, LogKind, LogRecord, SetupStep, SimulatedVehicle

__all__ = [
    "Fault",
    "InfoValues",
    "LogKind",
    "LogRecord",
    "Phase",
    "SetupStep",
    "SimulatedVehicle",
    "VehicleModel",
    "VirtualBleakClient",
    "VirtualBleakScanner",
    "VirtualRadio",
]
