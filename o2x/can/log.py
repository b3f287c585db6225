"""Readings from a recorded CAN log (``candump -l`` ``.log``, ``.asc``, ``.blf``...).

Pure apart from python-can's log readers: the messages go through the same
:class:`~o2x.can.AmiBus` as live frames. Offline there are no read batches to take a
reading per, so a reading is taken whenever a frame changed the bus's state, at most
once per :data:`READING_INTERVAL` of log time, and at the end of the log; a
``cantCharge`` event when the heuristic starts to hold (``docs/can.md``).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

from ..model import EventKind, VehicleInfo
from .bus import READING_INTERVAL, AmiBus

if TYPE_CHECKING:
    import can

__all__ = ["LOG_SUFFIXES", "READING_INTERVAL", "find_vin", "log_messages", "log_readings"]

#: File name suffixes python-can reads as CAN logs.
LOG_SUFFIXES: Final = (".log", ".asc", ".blf", ".trc", ".mf4")


def log_messages(path: str | os.PathLike[str]) -> Iterator[can.Message]:
    """The messages of the log at ``path``, in order (python-can picks the reader by suffix)."""
    import can

    with can.LogReader(os.fspath(path)) as reader:
        yield from reader


def find_vin(messages: Iterable[can.Message]) -> str | None:
    """The VIN the bus broadcasts in ``messages`` (frames 0x710..0x712), if any."""
    bus = AmiBus()
    for message in messages:
        bus.feed(
            message.arbitration_id,
            message.data,
            message.timestamp,
            is_extended_id=message.is_extended_id,
        )
        if bus.vin is not None:
            return bus.vin
    return None


def log_readings(
    messages: Iterable[can.Message], *, vin: str, bus: AmiBus | None = None
) -> Iterator[tuple[float, VehicleInfo | EventKind]]:
    """``(log time, reading or event)`` for the messages of a log, in order.

    ``received_at`` is the log's own (absolute) timestamp; error and remote frames
    are skipped.
    """
    bus = bus if bus is not None else AmiBus()
    last_reading = -float("inf")
    changes_seen = bus.changes
    cant_charge = False
    timestamp = 0.0
    for message in messages:
        if message.is_error_frame or message.is_remote_frame:
            continue
        timestamp = message.timestamp
        bus.feed(
            message.arbitration_id, message.data, timestamp, is_extended_id=message.is_extended_id
        )
        if bus.changes == changes_seen or timestamp - last_reading < READING_INTERVAL:
            continue
        changes_seen = bus.changes
        last_reading = timestamp
        yield from _reading(bus, vin, timestamp)
        now = bus.cant_charge
        if now and not cant_charge:
            yield timestamp, EventKind.CANT_CHARGE
        cant_charge = now
    if bus.changes != changes_seen:
        yield from _reading(bus, vin, timestamp)
        if bus.cant_charge and not cant_charge:
            yield timestamp, EventKind.CANT_CHARGE


def _reading(bus: AmiBus, vin: str, timestamp: float) -> Iterator[tuple[float, VehicleInfo]]:
    try:
        at = _dt.datetime.fromtimestamp(timestamp, _dt.UTC)
    except (OverflowError, OSError, ValueError):  # a log with relative or absurd times
        at = _dt.datetime.fromtimestamp(0, _dt.UTC)
    yield timestamp, bus.snapshot(vin=vin, received_at=at)
