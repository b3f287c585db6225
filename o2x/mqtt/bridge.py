"""The bridge: an entered :class:`~o2x.O2XVehicle` published to an aiomqtt client.

Two halves that never wait for each other. Inside ``async with MqttBridge(car)``, tasks
read the car's streams into the latest state (a reading, the status, the last trip and
charge); :meth:`MqttBridge.publish_to` publishes that state to one connected client
until the connection fails, sending what a :class:`~o2x.mqtt.publication.Publication`
(sans-I/O) says is due; :meth:`MqttBridge.serve` reconnects a client with back-off
and publishes again. A broker that is away therefore costs the car nothing, and a
broker that comes back gets the latest state, not a backlog. asyncio only (aiomqtt).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Final, Self

import aiomqtt
import anyio
from anyio.abc import TaskGroup

from .. import __version__
from ..errors import O2XError
from ..model import Event, EventKind, VehicleInfo
from ..trips import ChargingSession, Trip, TripTracker
from ..vehicle import O2XVehicle
from . import messages
from ._aiomqtt import register_writes_in_order
from .messages import OFFLINE, Topics
from .publication import Latest, Message, Publication, check_interval

__all__ = ["BrokerRefused", "BrokerTLSError", "MqttBridge"]

_log = logging.getLogger(__name__)

#: How long leaving may take to say ``offline`` and disconnect.
_GOODBYE: Final = 2.0


class BrokerRefused(O2XError):
    """The broker refused the connection: wrong credentials, or not authorised."""


class BrokerTLSError(O2XError):
    """The TLS connection to the broker could not be set up (certificate, CA, protocol)."""


# CONNACK codes that retrying cannot cure: MQTT 3.1.1's 4 and 5, MQTT 5's 0x86, 0x87.
_REFUSED_CODES: Final = {4, 5, 134, 135}


def classify(error: aiomqtt.MqttError) -> O2XError | None:
    """The error to stop on for ``error``, or ``None`` if trying again may help."""
    if isinstance(error, aiomqtt.MqttCodeError):
        code = getattr(error.rc, "value", error.rc)
        if code in _REFUSED_CODES:
            return BrokerRefused(
                f"the broker refused the connection ({error}): check --username and the "
                "password (--password-file or $O2X_MQTT_PASSWORD), and the broker's ACL"
            )
    cause = error.__cause__ or error.__context__
    text = str(error)
    if isinstance(cause, ssl.SSLError) or "SSL" in text or "certificate" in text.lower():
        return BrokerTLSError(
            f"the TLS connection to the broker failed ({text}): check the broker's "
            "certificate, --ca-file, and that the port speaks TLS"
        )
    return None


class MqttBridge:
    """Publish an entered vehicle to MQTT brokers (asyncio only: aiomqtt is).

    Enter it inside the vehicle's block, then publish to a client you own::

        async with O2XVehicle.first_time(VIN) as car, MqttBridge(car) as bridge:
            client = aiomqtt.Client("localhost", will=bridge.will)
            await bridge.serve(client)   # reconnects with back-off, until cancelled

    ``interval`` is the longest time between two ``state`` messages while readings
    come (a status change is published at once). ``tracker`` decides trips and
    charging sessions (:class:`~o2x.trips.TripTracker`'s defaults otherwise).
    """

    def __init__(
        self,
        car: O2XVehicle,
        *,
        topic_prefix: str = "o2x",
        discovery: bool = True,
        discovery_prefix: str = "homeassistant",
        interval: float = 5.0,
        tracker: TripTracker | None = None,
        model: str = "AMI / Rocks-e",
        manufacturer: str = "Citroën / Opel",
    ) -> None:
        if not isinstance(car, O2XVehicle):
            raise TypeError(f"MqttBridge publishes an O2XVehicle, not {type(car).__name__}")
        if car.vin is None:
            raise RuntimeError("enter the vehicle first: its VIN names the topics")
        self.car = car
        self.topics = Topics(car.vin, topic_prefix)
        self.interval = check_interval(interval)
        self._discovery = (
            messages.discovery_messages(
                self.topics,
                discovery_prefix=discovery_prefix,
                model=model,
                manufacturer=manufacturer,
                sw_version=f"o2x {__version__}",
            )
            if discovery
            else []
        )
        self.tracker = tracker if tracker is not None else TripTracker()
        self._task_group: TaskGroup | None = None
        self._changed = anyio.Event()
        self._latest = Latest(info=car.latest)
        #: The publication of the connection being served, if one is.
        self._publication: Publication | None = None
        #: Called with each trip or charging session as it ends (for logging).
        self.on_record: Callable[[Trip | ChargingSession], object] | None = None

    @property
    def will(self) -> aiomqtt.Will:
        """The will to give the client (``aiomqtt.Client(..., will=bridge.will)``):
        ``offline`` on the availability topic, retained, when the connection dies."""
        return aiomqtt.Will(self.topics.availability, OFFLINE, qos=1, retain=True)

    # --- the vehicle's side ------------------------------------------------------------

    async def __aenter__(self) -> Self:
        samples = self.car.samples()
        statuses = self.car.status_changes()
        events = self.car.events()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._follow_samples, samples)
        self._task_group.start_soon(self._follow_statuses, statuses)
        self._task_group.start_soon(self._follow_events, events)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc, tb)

    def _wake(self) -> None:
        self._changed.set()

    def _records(self, done: list[Trip | ChargingSession]) -> None:
        for record in done:
            if isinstance(record, Trip):
                self._latest.trip = record
            else:
                self._latest.charge = record
            if self.on_record is not None:
                self.on_record(record)

    async def _follow_samples(self, samples: AsyncIterator[VehicleInfo]) -> None:
        async for info in samples:
            self._latest.info = info
            self._latest.connected = True
            self._records(self.tracker.reading(info))
            self._wake()

    async def _follow_statuses(self, statuses: AsyncIterator[VehicleInfo]) -> None:
        async for info in statuses:
            self._latest.status = info.status
            self._latest.info = info
            self._latest.connected = True
            self._wake()

    async def _follow_events(self, events: AsyncIterator[Event]) -> None:
        async for event in events:
            if event.kind is EventKind.DISCONNECTED:
                self._latest.connected = False
            if self._publication is not None:  # not retained: for those listening now
                self._publication.event(event.kind)
            self._records(self.tracker.event(event))
            self._wake()

    # --- the broker's side -------------------------------------------------------------

    async def publish_to(self, client: aiomqtt.Client) -> None:
        """Publish to ``client``, connected, until its connection fails (raising
        :class:`aiomqtt.MqttError`) or this is cancelled (then ``offline`` is
        published first). Starts with everything retained, the latest state after.

        The bridge reads the client's messages to hear at once of a lost connection:
        give it a client of its own (it subscribes to nothing).
        """
        if self._task_group is None:
            raise RuntimeError("use the bridge inside 'async with MqttBridge(car)' first")
        register_writes_in_order(client)
        publication = Publication(self.topics, interval=self.interval, discovery=self._discovery)
        self._publication = publication
        lost: list[aiomqtt.MqttError] = []
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_watch, client, tasks.cancel_scope, lost)
                try:
                    await self._publish(client, publication)
                except aiomqtt.MqttError as exc:
                    lost.append(exc)
                    tasks.cancel_scope.cancel()
        finally:
            self._publication = None
            if not lost:
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(_GOODBYE),
                    contextlib.suppress(aiomqtt.MqttError),  # the will says it then
                ):
                    await _send(client, publication.goodbye())
        raise lost[0]

    async def _publish(self, client: aiomqtt.Client, publication: Publication) -> None:
        # The I/O half of the cadence: o2x.mqtt.publication decides, this sends and waits.
        for message in publication.start():
            await _send(client, message)
        while True:
            self._changed = anyio.Event()
            for message in publication.news(anyio.current_time(), self._latest):
                await _send(client, message)
            until = publication.wake_at(self._latest)
            with anyio.move_on_after(max(0.0, until - anyio.current_time())):
                await self._changed.wait()

    async def serve(
        self,
        client: aiomqtt.Client,
        *,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        on_connect: Callable[[], object] | None = None,
        on_lost: Callable[[aiomqtt.MqttError, float], object] | None = None,
    ) -> None:
        """Connect ``client``, publish, and connect again whenever the connection fails,
        after ``backoff`` seconds doubling to ``max_backoff`` (reset once connected),
        until cancelled. ``on_lost(error, delay)`` hears each failure.

        Raises :class:`BrokerRefused` or :class:`BrokerTLSError` when trying again
        cannot help. Give the client ``will=self.will``.
        """
        register_writes_in_order(client)  # o2x.mqtt._aiomqtt: reconnections need it
        delay = backoff
        while True:
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                fatal = classify(exc)
                if fatal is not None:
                    raise fatal from exc
                _log.info("cannot reach the broker (%s); trying again in %g s", exc, delay)
                if on_lost is not None:
                    on_lost(exc, delay)
                await anyio.sleep(delay)
                delay = min(max_backoff, delay * 2)
                continue
            delay = backoff
            if on_connect is not None:
                on_connect()
            try:
                await self.publish_to(client)
            except aiomqtt.MqttError as exc:
                _log.info("lost the broker (%s); connecting again in %g s", exc, delay)
                if on_lost is not None:
                    on_lost(exc, delay)
            finally:
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(_GOODBYE),
                    contextlib.suppress(aiomqtt.MqttError),
                ):
                    await client.__aexit__(None, None, None)
            await anyio.sleep(delay)
            delay = min(max_backoff, delay * 2)


async def _watch(
    client: aiomqtt.Client, scope: anyio.CancelScope, lost: list[aiomqtt.MqttError]
) -> None:
    # The client's messages end with an MqttError the moment its connection does: the
    # way to hear of a lost broker at once, rather than at the next publication.
    try:
        async for _ in client.messages:
            pass  # the bridge subscribes to nothing: a message is someone else's
    except aiomqtt.MqttError as exc:
        lost.append(exc)
        scope.cancel()


async def _send(client: aiomqtt.Client, message: Message) -> None:
    await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
