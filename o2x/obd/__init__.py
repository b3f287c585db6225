"""Pure protocol code for BLE OBD adapters: ELM327-compatible ones and the WiCAN (SLCAN).

Nothing here does I/O: no Bluetooth, no event loop, no clock. Bytes and ``now``
(seconds) go in; CAN frames and actions come out, as in h11 — but for
:mod:`o2x.obd.link`, the one connected adapter's task (anyio), which the BLE source
(:mod:`o2x.dongle.source`) runs for each link to an adapter.

* :class:`MonitorParser`: an ELM327's ``AT MA`` output back to ``(can_id, data)``.
* :class:`SlcanParser`: SLCAN lines (as a WiCAN sends them) back to the same.
* :class:`Elm327Session`, :class:`SlcanSession`: the exchange that sets an adapter up
  and keeps it monitoring, returning :data:`Action` values (:class:`Send`,
  :class:`Frames`, :class:`Monitoring`, :class:`SessionFailed`).
* :func:`can_filter`, :func:`ami_filter`: the adapter's CAN filter, computed from the
  IDs of ``ami.dbc``.

>>> parser = MonitorParser()
>>> parser.feed(b"58010008C1400550000\\r")   # 0x580: 1.6 A, 52.60 V, SoC 85 %
[(1408, b'\\x10\\x00\\x8c\\x14\\x00U\\x00\\x00')]
"""

from __future__ import annotations

from .actions import Action, Frames, Monitoring, Send, SessionFailed, SessionState
from .elm327 import Elm327Session, Elm327Stats
from .filters import CanFilter, ami_filter, ami_ids, can_filter
from .monitor import MonitorParser, MonitorStats
from .slcan import SlcanParser, SlcanSession, SlcanSessionStats, SlcanStats

__all__ = [
    "Action",
    "CanFilter",
    "Elm327Session",
    "Elm327Stats",
    "Frames",
    "MonitorParser",
    "MonitorStats",
    "Monitoring",
    "Send",
    "SessionFailed",
    "SessionState",
    "SlcanParser",
    "SlcanSession",
    "SlcanSessionStats",
    "SlcanStats",
    "ami_filter",
    "ami_ids",
    "can_filter",
]
