"""When to publish what: the bridge's cadence as a sans-I/O state machine.

:class:`Publication` knows what one connection to a broker has been sent and, given
the bridge's :class:`Latest` knowledge and the time, which :class:`Message`\\ s are due
now and when to look again. It holds no client and reads no clock (the caller passes
``now``, in seconds of any monotonic clock), so its rules are tested against a virtual
clock; :class:`~o2x.mqtt.MqttBridge` only sends what it returns. The rules (also in
``docs/mqtt.md``):

- ``state`` goes out when there is something new (a reading, or the link to the car
  lost or found again) and either ``interval`` seconds have passed since the last one,
  or the status changed, or the link did: those are published at once;
- ``status`` at once when it changes, before the ``state`` that carries it; events,
  trips and charges at once;
- an evcc value with the ``state`` it comes from, only when it changed;
- nothing new for ``max(interval, min_heartbeat)`` seconds: ``online`` again on the
  availability topic (a heartbeat: a connection that died silently shows even while
  the car is silent), never more often than that, so that ``interval=0`` does not spin.

>>> import datetime as dt
>>> from o2x import VehicleInfo
>>> from o2x.frames import decode_frame, encode_info
>>> publication = Publication(Topics("VR1AB12C3D4567890"), interval=5.0)
>>> [m.payload for m in publication.start()]
['online']
>>> info = VehicleInfo.from_frame(decode_frame(encode_info(seq=1, battery_soc=80)),
...     vin="VR1AB12C3D4567890", received_at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
>>> latest = Latest(info=info)
>>> [m.topic.removeprefix(publication.topics.base) for m in publication.news(100.0, latest)]
['/state', '/evcc/soc', '/evcc/status']
>>> publication.news(101.0, latest), publication.wake_at(latest)
([], 105.0)
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any, Final

import attrs

from ..model import EventKind, VehicleInfo, VehicleStatus
from ..trips import ChargingSession, Trip
from . import messages
from .messages import OFFLINE, ONLINE, Topics

__all__ = ["Latest", "Message", "Publication"]

#: Events kept for a connection between two publications; older ones are dropped.
MAX_EVENTS: Final = 64
#: The shortest time between two heartbeats (``online`` again), whatever the interval.
MIN_HEARTBEAT: Final = 1.0


@attrs.frozen
class Message:
    """One MQTT publication: what the bridge hands to the client."""

    topic: str
    payload: str
    qos: int
    retain: bool


@attrs.define
class Latest:
    """What the bridge knows of the car now (it updates this; a publication reads it)."""

    #: The last reading, ``None`` before the first.
    info: VehicleInfo | None = None
    #: The last status change's status, ``None`` before the first.
    status: VehicleStatus | None = None
    #: Whether the link to the car is up (``False`` after ``disconnected``).
    connected: bool = True
    #: The last finished trip and charging session.
    trip: Trip | None = None
    charge: ChargingSession | None = None


def check_interval(interval: object) -> float:
    """``interval`` as seconds, or ``ValueError`` if it is not a finite number >= 0."""
    if not (
        isinstance(interval, int | float)
        and not isinstance(interval, bool)
        and math.isfinite(interval)
        and interval >= 0
    ):
        raise ValueError(f"interval is a number of seconds >= 0, not {interval!r}")
    return float(interval)


def _json(value: object) -> str:
    return json.dumps(value)


class Publication:
    """What one connection to a broker has been sent, and what to send it next.

    ``discovery`` is the Home Assistant configs to publish first (``(topic, config)``
    pairs from :func:`o2x.mqtt.messages.discovery_messages`), ``interval`` the
    shortest time between two ``state`` messages that nothing urges.
    """

    def __init__(
        self,
        topics: Topics,
        *,
        interval: float,
        discovery: list[tuple[str, dict[str, Any]]] | None = None,
        min_heartbeat: float = MIN_HEARTBEAT,
    ) -> None:
        self.topics = topics
        self.interval = check_interval(interval)
        self.heartbeat = max(self.interval, min_heartbeat)
        self._discovery = list(discovery or ())
        self._events: deque[EventKind] = deque(maxlen=MAX_EVENTS)
        self._status: VehicleStatus | None = None
        self._info: VehicleInfo | None = None
        self._connected = True
        self._trip: Trip | None = None
        self._charge: ChargingSession | None = None
        self._evcc: dict[str, str] = {}
        self._state_at = -math.inf
        #: When the last state or heartbeat went out.
        self._quiet_since = -math.inf

    def start(self) -> list[Message]:
        """What a new connection gets first: the discovery configs and ``online``."""
        sent = [Message(topic, _json(config), 1, True) for topic, config in self._discovery]
        sent.append(Message(self.topics.availability, ONLINE, 1, True))
        return sent

    def goodbye(self) -> Message:
        """``offline``, for a bridge that leaves (the will says it for one that dies)."""
        return Message(self.topics.availability, OFFLINE, 1, True)

    def event(self, kind: EventKind) -> None:
        """An event to publish at the next :meth:`news` (not retained: only those
        subscribed now hear it; the oldest are dropped beyond ``MAX_EVENTS``)."""
        self._events.append(kind)

    def news(self, now: float, latest: Latest) -> list[Message]:
        """What is due at ``now``: call it whenever ``latest`` changed, and at
        :meth:`wake_at`. Each message returned counts as sent."""
        topics = self.topics
        sent: list[Message] = []
        status_changed = latest.status is not None and latest.status is not self._status
        if status_changed:
            assert latest.status is not None
            sent.append(Message(topics.status, latest.status.value, 1, True))
            self._status = latest.status
        while self._events:
            kind = self._events.popleft()
            sent.append(Message(topics.event, _json({"event": kind.value}), 0, False))
        if latest.trip is not None and latest.trip is not self._trip:
            sent.append(Message(topics.trip, messages.trip_payload(latest.trip), 1, True))
            self._trip = latest.trip
        if latest.charge is not None and latest.charge is not self._charge:
            sent.append(Message(topics.charge, messages.charge_payload(latest.charge), 1, True))
            self._charge = latest.charge
        info = latest.info
        link_changed = latest.connected is not self._connected
        news = info is not None and (info is not self._info or link_changed)
        if news and (status_changed or link_changed or now >= self._state_at + self.interval):
            assert info is not None
            sent += self._state(info, latest.connected)
            self._state_at = self._quiet_since = now
            return sent
        if now >= self._quiet_since + self.heartbeat:
            sent.append(Message(topics.availability, ONLINE, 0, True))
            self._quiet_since = now
        return sent

    def _state(self, info: VehicleInfo, connected: bool) -> list[Message]:
        sent = [
            Message(self.topics.state, messages.state_payload(info, connected=connected), 0, True)
        ]
        for topic, value in messages.evcc_values(self.topics, info).items():
            if value is not None and self._evcc.get(topic) != value:
                sent.append(Message(topic, value, 1, True))
                self._evcc[topic] = value
        self._info, self._connected = info, connected
        return sent

    def wake_at(self, latest: Latest) -> float:
        """When :meth:`news` has something again if ``latest`` does not change before:
        the next turn of a reading that waits, or else the next heartbeat."""
        if latest.info is not None and latest.info is not self._info:
            return self._state_at + self.interval
        return self._quiet_since + self.heartbeat
