"""The O2X dongle: our documented wire format (:mod:`o2x.dongle.frames`) over Bluetooth LE.

:class:`DongleSource` finds the dongle by the VIN it advertises, checks its identity
characteristic and turns its telemetry notifications into readings.
"""

from .source import DongleSource

__all__ = ["DongleSource"]
