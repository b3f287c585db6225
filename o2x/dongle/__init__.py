"""The O2X dongle: our documented wire format (:mod:`o2x.dongle.frames`) over Bluetooth LE.

:class:`DongleSource` finds the dongle by the VIN it advertises, checks its identity
characteristic and turns its telemetry notifications into readings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .source import DongleSource

__all__ = ["DongleSource"]


def __getattr__(name: str) -> object:
    # Loaded on first use: o2x.transport imports o2x.dongle.profile, and importing
    # .source here at once (it imports o2x.transport) made ``import o2x.transport``
    # fail when it came before any other o2x module.
    if name == "DongleSource":
        from .source import DongleSource

        return DongleSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
