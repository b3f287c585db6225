"""The scan/connect/stream state machine of one subscribed vehicle, without I/O.

Theory of operation
-------------------
:class:`VehicleMachine` knows what should happen next, never how. The driver
(:mod:`o2x.vehicle`) feeds it *inputs* — an advertisement was seen, the link came
up, the identity was read, a reading or an event arrived, the link was lost, time
passed, the user left — each with the current time from a monotonic clock, and carries out the
*actions* it returns, in order: start or stop scanning, connect, disconnect, hand a
sample or a status change or an event to the consumers, report that the vehicle is
ready, or fail.

It never sees bytes. Whatever reaches the car — the O2X dongle's frames, the car's
CAN bus, an OBD adapter — is a *source* that turns what it receives into readings
(:class:`~o2x.model.VehicleInfo`, whose ``status`` the source derived) and events;
the machine only decides what they mean for the connection and the consumers.

Because time is an input, every timeout is a comparison: the driver sleeps until
:attr:`VehicleMachine.deadline` and then calls :meth:`~VehicleMachine.tick`. Tests
drive the machine with a number as the clock and never sleep.

The connection life cycle is the table :data:`TRANSITIONS` (state -> input ->
next state); inputs not in a state's row change nothing (a late advertisement
while streaming, a reading after close). On top of the table, three timers:

* **scan** (``first_time`` only): not streaming within ``timeouts.scan`` of the
  start fails with :class:`~o2x.errors.ScanTimeout` (or ``ConnectionFailed`` if
  the vehicle was seen but never connected). ``previous()`` waits forever.
* **loose connection**: while streaming, no data for ``timeouts.loose_connection``
  counts as a lost link.
* **change status**: a derived status must hold for ``timeouts.change_status``
  before it is reported; a status that flickers back sooner is not a transition.
  Whatever input shows that a waiting status has held long enough (a tick, the
  next reading, the lost link) reports it, so a late tick loses nothing.

A link that fails while being set up makes its address back off (exponentially,
up to ``RETRY_CAP``); when the back-off is over the machine connects to that
address again by itself, as a scanner may not report the same advertisement again.

A lost link after the vehicle was streaming emits exactly one ``DISCONNECTED``
event, tears the link down and scans again without a time limit. ``CLOSED`` is
final. At most one link exists at any time: ``Connect`` is only ever issued when
the previous link has been told to ``Disconnect``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Final

import attrs

from .errors import ConnectionFailed, IdentityMismatch, O2XError, ScanTimeout
from .model import EventKind, VehicleInfo, VehicleStatus

__all__ = [
    "TRANSITIONS",
    "Action",
    "AdvertisementSeen",
    "Close",
    "Connect",
    "ConnectFailed",
    "Connected",
    "DeliverEvent",
    "DeliverSample",
    "DeliverStatus",
    "Disconnect",
    "Fail",
    "IdentityRead",
    "Input",
    "LinkLost",
    "ReadIdentity",
    "Ready",
    "Start",
    "StartScan",
    "State",
    "StopScan",
    "Subscribe",
    "Subscribed",
    "Timeouts",
    "VehicleMachine",
]


def _seconds(*, allow_zero: bool) -> Callable[[object, attrs.Attribute[float], float], None]:
    def check(_: object, attribute: attrs.Attribute[float], value: float) -> None:
        name = f"Timeouts.{attribute.name}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a number of seconds, not {value!r}")
        try:
            nan = math.isnan(value)
        except OverflowError:  # an int beyond any float: no use as a number of seconds
            raise ValueError(
                f"{name} is too large to be a number of seconds (math.inf means no limit)"
            ) from None
        if nan or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be a number of seconds {bound}, not {value!r}")

    return check


@attrs.frozen
class Timeouts:
    """How long to wait, in seconds — the SDK's ``pims.vehicle.timeout`` values, which
    the SDK gives in milliseconds (its ``looseConnection: 5000`` is ``loose_connection=5``).

    >>> Timeouts(scan=10)
    Timeouts(scan=10, loose_connection=5.0, change_status=0.0)
    >>> Timeouts(loose_connection=-1)
    Traceback (most recent call last):
    ...
    ValueError: Timeouts.loose_connection must be a number of seconds > 0, not -1
    """

    #: Give up a first-time scan after this long (``math.inf``: never).
    scan: float = attrs.field(default=60.0, validator=_seconds(allow_zero=False))
    #: Consider the link lost when no data arrives for this long.
    loose_connection: float = attrs.field(default=5.0, validator=_seconds(allow_zero=False))
    #: Report a new status only once it has held this long.
    change_status: float = attrs.field(default=0.0, validator=_seconds(allow_zero=True))


class State(enum.Enum):
    """Where the machine is in the connection life cycle."""

    IDLE = "idle"
    #: Looking for the vehicle for the first time (with the scan timeout if first_time).
    SCANNING = "scanning"
    #: A link is being set up: connect, read identity, subscribe.
    CONNECTING = "connecting"
    #: Subscribed; readings flow.
    STREAMING = "streaming"
    #: The link was lost after streaming; scanning again, with no time limit.
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


# --- inputs ------------------------------------------------------------------------


@attrs.frozen
class Start:
    """Begin: scan for the vehicle."""


@attrs.frozen
class AdvertisementSeen:
    """A peer advertised ``vin`` from ``address``.

    ``vin`` is ``None`` for a peer that does not advertise one, a BLE OBD adapter:
    its VIN is learned by connecting and reading the car's bus (``IdentityRead``).
    ``""`` is a peer that will name its VIN once connected and cannot be anything
    else (a CAN bus).
    """

    address: str
    vin: str | None


@attrs.frozen
class Connected:
    """The link requested by ``Connect`` is up."""


@attrs.frozen
class ConnectFailed:
    """The link requested by ``Connect`` could not be set up (or broke while setting up)."""

    error: BaseException | None = None


@attrs.frozen
class IdentityRead:
    """The peer's identity was read: the VIN of the vehicle it serves.

    ``""``: the peer could not tell in time (an OBD adapter on a bus that broadcasts
    no VIN); see :class:`VehicleMachine` for when that is accepted. ``bus_heard``:
    whether the peer showed any frame of the car's bus meanwhile (an OBD adapter that
    showed none may be in no car at all, and is never taken on trust).
    """

    vin: str
    bus_heard: bool = True


@attrs.frozen
class Subscribed:
    """Telemetry notifications are enabled.

    ``keep_when_quiet``: the link outlives silence (an OBD adapter stays connected
    while the car's bus sleeps): no data for ``loose_connection`` is then still one
    ``DISCONNECTED``, but the link is kept, and waited on, instead of torn down.
    """

    keep_when_quiet: bool = False


@attrs.frozen
class LinkLost:
    """The link went down without being asked to."""


@attrs.frozen
class Close:
    """The user is leaving: tear everything down."""


Input = (
    Start
    | AdvertisementSeen
    | Connected
    | ConnectFailed
    | IdentityRead
    | Subscribed
    | LinkLost
    | Close
)


# --- actions -----------------------------------------------------------------------


@attrs.frozen
class StartScan:
    """Start scanning for O2X advertisements and report them as ``AdvertisementSeen``."""


@attrs.frozen
class StopScan:
    """Stop scanning."""


@attrs.frozen
class Connect:
    """Connect to ``address``; report ``Connected`` or ``ConnectFailed``."""

    address: str


@attrs.frozen
class ReadIdentity:
    """Read the peer's identity; report ``IdentityRead`` or ``ConnectFailed``."""


@attrs.frozen
class Subscribe:
    """Start the flow of readings; report ``Subscribed`` or ``ConnectFailed``."""


@attrs.frozen
class Disconnect:
    """Tear the current link down (whatever stage it reached). Report nothing."""


@attrs.frozen
class Ready:
    """The vehicle is streaming for the first time: ``__aenter__`` may return."""

    vin: str
    address: str


@attrs.frozen
class DeliverSample:
    """Hand a reading to the consumers of samples."""

    info: VehicleInfo


@attrs.frozen
class DeliverStatus:
    """The status changed (and held long enough); ``info`` is the reading that shows it."""

    status: VehicleStatus
    info: VehicleInfo


@attrs.frozen
class DeliverEvent:
    """Hand an event to the consumers of events."""

    kind: EventKind


@attrs.frozen
class Fail:
    """Give up: raise ``error`` to the user. The machine is closed."""

    error: O2XError


Action = (
    StartScan
    | StopScan
    | Connect
    | ReadIdentity
    | Subscribe
    | Disconnect
    | Ready
    | DeliverSample
    | DeliverStatus
    | DeliverEvent
    | Fail
)

#: state -> input type -> next state. Inputs missing from a row are ignored in that
#: state. Guards inside the handlers may keep the state (an advertisement of another
#: VIN, for instance); they never pick a state this table does not list.
TRANSITIONS: Final[dict[State, dict[type, State]]] = {
    State.IDLE: {Start: State.SCANNING, Close: State.CLOSED},
    State.SCANNING: {AdvertisementSeen: State.CONNECTING, Close: State.CLOSED},
    State.CONNECTING: {
        Connected: State.CONNECTING,
        IdentityRead: State.CONNECTING,
        Subscribed: State.STREAMING,
        ConnectFailed: State.SCANNING,  # or RECONNECTING, if the vehicle streamed before
        LinkLost: State.SCANNING,  # likewise
        Close: State.CLOSED,
    },
    State.STREAMING: {LinkLost: State.RECONNECTING, Close: State.CLOSED},
    State.RECONNECTING: {AdvertisementSeen: State.CONNECTING, Close: State.CLOSED},
    State.CLOSED: {},
}

#: How long setting up one link (connect, identity, subscribe) may take before it
#: is abandoned and scanning resumes; the transport's own timeouts are shorter.
CONNECT_GUARD: Final = 30.0
#: The longest a link's set-up waits for the VIN on a bus (an OBD adapter's, a CAN
#: bus): ``timeouts.loose_connection``, at most this, so that it ends within the guard.
MAX_VIN_WAIT: Final = 20.0
#: An OBD adapter that read another car's VIN is not tried again for this long.
FOREIGN_BACKOFF: Final = 300.0
#: An adapter that cannot tell its car's VIN is taken as the vehicle's only once the
#: scan has run this long, added up over the attempts (it stops while a link is set
#: up), and seen no other adapter (unless it was named).
SURVEY: Final = 5.0
#: After a failed link to an address, ignore that address for this long at first,
#: doubling on each further failure up to ``RETRY_CAP``.
RETRY_BASE: Final = 0.5
RETRY_CAP: Final = 30.0
# Doublings past this many failures change nothing (and 2.0 ** 1024 overflows).
_MAX_DOUBLINGS: Final = 32


class VehicleMachine:
    """The life cycle of one subscribed vehicle; see the module docstring.

    >>> m = VehicleMachine("VR1AB12C3D4567890", first_time=True)
    >>> m.start(now=0.0)
    [StartScan()]
    >>> m.handle(AdvertisementSeen("AA:BB", "VR1AB12C3D4567890"), now=1.0)
    [StopScan(), Connect(address='AA:BB')]
    >>> m.state
    <State.CONNECTING: 'connecting'>
    """

    def __init__(
        self,
        vin: str | None,
        *,
        first_time: bool,
        timeouts: Timeouts | None = None,
        single_peer: bool = False,
        not_found_hint: str = "check that the car is switched on and within range",
        adapter: str | None = None,
    ) -> None:
        #: The VIN looked for; ``None`` accepts the first peer whose identity
        #: matches its advertisement (a CAN bus that names its own VIN; tests).
        self.vin = vin
        self.first_time = first_time
        #: The source has one peer and no other to try (a CAN bus): a link that
        #: cannot be set up before the vehicle first streamed fails at once, with
        #: the error that stopped it, instead of being retried until the scan ends.
        self.single_peer = single_peer
        #: The advice of the error raised when no vehicle was found (the source's).
        self.not_found_hint = not_found_hint
        #: The one OBD adapter to use (``first_time(vin, adapter=...)``, or the
        #: remembered one); others are ignored, and it is trusted without a VIN.
        self.adapter = adapter
        #: Whether the vehicle's VIN was proven by the peer it streams from.
        self.identity_verified = True
        # OBD adapters seen -> when they were first seen; those that read another
        # car's VIN -> (until when they are ignored, that VIN).
        self._adapters: dict[str, float] = {}
        self._foreign: dict[str, tuple[float, str]] = {}
        # Seconds spent scanning so far, and since when the scan runs (inf: stopped):
        # the survey counts scanning time, not time since the start, since the scan
        # stops while a link is set up.
        self._scanned = 0.0
        self._scanning_since = math.inf
        self._keep_when_quiet = False
        self.timeouts = timeouts or Timeouts()
        self.state = State.IDLE
        #: Address of the link being set up or streaming.
        self.address: str | None = None
        # The VIN that address advertised: what its identity must say.
        self._advertised_vin: str | None = None
        #: Whether the vehicle has streamed at least once (then the user has it).
        self.has_streamed = False
        #: Times data flowed again after a DISCONNECTED.
        self.reconnects = 0
        # True from a DISCONNECTED until data arrives on a new link: a link that
        # comes back but stays silent, and is lost again, is the same outage.
        self._outage = False
        self.reported_status: VehicleStatus | None = None
        self._pending_status: VehicleStatus | None = None
        self._pending_info: VehicleInfo | None = None
        self._pending_since = 0.0
        self._scan_deadline = math.inf
        self._loose_deadline = math.inf
        self._connect_deadline = math.inf
        self._seen_vehicle = False
        self._last_error: BaseException | None = None
        self._failures: dict[str, int] = {}
        self._retry_after: dict[str, float] = {}
        # Addresses that advertised the wanted VIN and are backing off (after a failed
        # link, or seen again meanwhile) -> (when to connect, the VIN advertised).
        # Connect when due, as a scanner may not report the same advertisement again.
        # Only a scanning machine acts on them; streaming clears them.
        self._deferred: dict[str, tuple[float, str | None]] = {}

    # --- public driving interface --------------------------------------------------

    @property
    def deadline(self) -> float:
        """When :meth:`tick` must next be called (``math.inf``: no timer pending)."""
        status_deadline = (
            self._pending_since + self.timeouts.change_status
            if self._pending_status is not None
            else math.inf
        )
        retry = (
            min(when for when, _ in self._deferred.values())
            if self._deferred and self.state in (State.SCANNING, State.RECONNECTING)
            else math.inf
        )
        return min(
            self._scan_deadline,
            self._loose_deadline,
            self._connect_deadline,
            status_deadline,
            retry,
        )

    def retry_at(self, address: str) -> float:
        """When ``address`` may be connected to again after a failed link (its back-off;
        ``-math.inf``: at once)."""
        return self._retry_after.get(address, -math.inf)

    def start(self, now: float) -> list[Action]:
        """Shorthand for ``handle(Start(), now)``."""
        return self.handle(Start(), now)

    def handle(self, event: Input, now: float) -> list[Action]:
        """Feed one input; return the actions to carry out, in order."""
        next_state = TRANSITIONS[self.state].get(type(event))
        if next_state is None:
            return []
        handler = getattr(self, "_on_" + type(event).__name__)
        actions: list[Action] = handler(event, next_state, now)
        return actions

    def reading_received(self, info: VehicleInfo, now: float) -> list[Action]:
        """A reading arrived from the source. The hot path: kept short."""
        if self.state is not State.STREAMING:
            return []
        self._loose_deadline = now + self.timeouts.loose_connection
        if self._outage:
            self._outage = False
            self.reconnects += 1
        actions: list[Action] = [DeliverSample(info)]
        status = info.status
        if status is not self.reported_status or self._pending_status is not None:
            self._status_seen(status, info, now, actions)
        return actions

    def event_received(self, kind: EventKind, now: float) -> list[Action]:
        """The vehicle reported an event (``cantCharge``)."""
        self.data_received(now)
        if self.state is not State.STREAMING or kind is EventKind.DISCONNECTED:
            return []  # DISCONNECTED is the machine's own to emit
        return [DeliverEvent(kind)]

    def data_received(self, now: float) -> list[Action]:
        """Data arrived that is neither a reading nor an event: the link is alive."""
        if self.state is State.STREAMING:
            self._loose_deadline = now + self.timeouts.loose_connection
            if self._outage:
                self._outage = False
                self.reconnects += 1
        return []

    def tick(self, now: float) -> list[Action]:
        """Time has passed: fire whichever timers are due."""
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = []
        if self._pending_status is not None and now >= (
            self._pending_since + self.timeouts.change_status
        ):
            self._report_pending(actions)
        if now >= self._scan_deadline:
            return actions + self._fail_initial(now)
        if self.state is State.STREAMING and now >= self._loose_deadline:
            if self._keep_when_quiet:
                return actions + self._quiet(now)
            return actions + self._link_down(now, State.RECONNECTING)
        if self.state is State.CONNECTING and now >= self._connect_deadline:
            self._last_error = TimeoutError("setting up the link took too long")
            return actions + self._link_down(now, self._scanning_state())
        if self.state in (State.SCANNING, State.RECONNECTING) and self._deferred:
            address, (when, vin) = min(self._deferred.items(), key=lambda item: item[1][0])
            if when <= now:
                return actions + self._on_AdvertisementSeen(
                    AdvertisementSeen(address, vin),
                    TRANSITIONS[self.state][AdvertisementSeen],
                    now,
                )
        return actions

    # --- transitions --------------------------------------------------------------

    def _on_Start(self, event: Start, next_state: State, now: float) -> list[Action]:
        self.state = next_state
        self._scanning_since = now
        if self.first_time and math.isfinite(self.timeouts.scan):
            self._scan_deadline = now + self.timeouts.scan
        return [StartScan()]

    def _on_AdvertisementSeen(
        self, event: AdvertisementSeen, next_state: State, now: float
    ) -> list[Action]:
        if event.vin is None:
            # An OBD adapter: it may be the vehicle's, or another car's.
            if self.adapter is not None and event.address != self.adapter:
                return []
            foreign = self._foreign.get(event.address)
            if foreign is not None and now < foreign[0]:
                return []
            self._adapters.setdefault(event.address, now)
        elif self.vin is not None and event.vin != self.vin:
            return []
        else:
            self._seen_vehicle = True
        retry_at = self._retry_after.get(event.address, -math.inf)
        if now < retry_at:
            self._deferred[event.address] = (retry_at, event.vin)
            return []
        self._deferred.pop(event.address, None)
        self.state = next_state
        self.address = event.address
        self._advertised_vin = event.vin
        self._connect_deadline = now + CONNECT_GUARD
        self._scan_stopped(now)
        return [StopScan(), Connect(event.address)]

    def _on_Connected(self, event: Connected, next_state: State, now: float) -> list[Action]:
        return [ReadIdentity()]

    def _on_IdentityRead(self, event: IdentityRead, next_state: State, now: float) -> list[Action]:
        if self._advertised_vin is None:
            return self._adapter_identity(event.vin, event.bus_heard, now)
        # An advertisement may not name the VIN ("": a CAN bus before its VIN
        # frames); then only the VIN looked for, if any, is checked.
        wanted = self.vin if self.vin is not None else self._advertised_vin
        if wanted and event.vin != wanted:
            self._last_error = IdentityMismatch(
                f"the dongle at {self.address} advertised {wanted} but its identity is {event.vin}"
            )
            return self._setup_failed(now)
        if self.vin is None:
            self.vin = event.vin
        return [Subscribe()]

    def _on_Subscribed(self, event: Subscribed, next_state: State, now: float) -> list[Action]:
        assert self.address is not None
        assert self.vin is not None
        self.state = next_state
        self._connect_deadline = math.inf
        self._scan_deadline = math.inf
        self._loose_deadline = now + self.timeouts.loose_connection
        self._failures.pop(self.address, None)
        self._retry_after.pop(self.address, None)
        self._deferred.clear()
        self._keep_when_quiet = event.keep_when_quiet
        if self._advertised_vin is None:
            # Streaming from an OBD adapter: after a loss, only that one is the car's.
            self.adapter = self.address
        if self.has_streamed:
            return []
        self.has_streamed = True
        return [Ready(self.vin, self.address)]

    def _on_ConnectFailed(
        self, event: ConnectFailed, next_state: State, now: float
    ) -> list[Action]:
        self._last_error = event.error
        return self._setup_failed(now)

    def _on_LinkLost(self, event: LinkLost, next_state: State, now: float) -> list[Action]:
        if self.state is State.CONNECTING:
            self._last_error = ConnectionError("the link dropped while it was being set up")
            return self._link_down(now, self._scanning_state())
        return self._link_down(now, next_state)

    def _on_Close(self, event: Close, next_state: State, now: float) -> list[Action]:
        previous = self.state
        self._enter_closed()
        if previous in (State.CONNECTING, State.STREAMING):
            return [Disconnect()]
        if previous in (State.SCANNING, State.RECONNECTING):
            return [StopScan()]
        return []

    # --- helpers -------------------------------------------------------------------

    def _adapter_identity(self, vin: str, bus_heard: bool, now: float) -> list[Action]:
        """An OBD adapter read ``vin`` off its car's bus (``""``: none in time), having
        shown frames of that bus (``bus_heard``) or not."""
        address = self.address
        assert address is not None
        if vin and (self.vin is None or vin == self.vin):
            self._seen_vehicle = True
            self.identity_verified = True
            if self.vin is None:
                self.vin = vin
            return [Subscribe()]
        if vin:
            # Another car's adapter (a neighbour's AMI): leave it alone for a while,
            # without counting it as the vehicle found.
            self._foreign[address] = (now + FOREIGN_BACKOFF, vin)
            self._adapters.pop(address, None)
            self._last_error = None
            actions: list[Action] = [Disconnect(), StartScan()]
            self._scanning_since = now
            self.state = self._scanning_state()
            self.address = self._advertised_vin = None
            self._connect_deadline = math.inf
            return actions
        # No VIN on the bus in time: trusted only if it was named, or if it has been
        # the only adapter in range for the whole survey and shows a car's bus
        # (docs/obd.md).
        alone = len(self._adapters) == 1 and self._scanned >= SURVEY and bus_heard
        if self.vin is not None and (address == self.adapter or alone):
            self._seen_vehicle = True
            self.identity_verified = False
            return [Subscribe()]
        if len(self._adapters) > 1:
            why = (
                f"the OBD adapter at {address} reads no VIN off its car's bus, and it is "
                "not the only adapter in range: name it (adapter=ADDRESS) to use it anyway"
            )
        elif not bus_heard:
            why = (
                f"the OBD adapter at {address} shows no frame of a car's bus: is it "
                "plugged into the car's OBD port, and the car switched on? (name it, "
                "adapter=ADDRESS, to use it anyway)"
            )
        else:
            why = f"the OBD adapter at {address} reads no VIN off its car's bus yet"
        self._last_error = ConnectionFailed(why)
        return self._setup_failed(now)

    def _quiet(self, now: float) -> list[Action]:
        """No data on a link that outlives silence: one DISCONNECTED, the link kept."""
        actions: list[Action] = []
        if self._pending_status is not None and now >= (
            self._pending_since + self.timeouts.change_status
        ):
            self._report_pending(actions)
        self._pending_status = self._pending_info = None
        self._loose_deadline = math.inf  # the next data ends the outage
        if not self._outage:
            self._outage = True
            actions.append(DeliverEvent(EventKind.DISCONNECTED))
        return actions

    def _scan_stopped(self, now: float) -> None:
        if math.isfinite(self._scanning_since):
            self._scanned += max(0.0, now - self._scanning_since)
        self._scanning_since = math.inf

    def _scanning_state(self) -> State:
        return State.RECONNECTING if self.has_streamed else State.SCANNING

    def _setup_failed(self, now: float) -> list[Action]:
        """Setting up a link failed (``_last_error`` says why): retry, or give up."""
        error = self._last_error
        if self.single_peer and not self.has_streamed and isinstance(error, O2XError):
            actions: list[Action] = [Disconnect()]
            self._enter_closed()
            actions.append(Fail(error))
            return actions
        return self._link_down(now, self._scanning_state())

    def _link_down(self, now: float, next_state: State) -> list[Action]:
        """Tear the link down and scan again; emit DISCONNECTED if it was streaming."""
        actions: list[Action] = []
        if self.state is State.STREAMING:
            if self._pending_status is not None and now >= (
                self._pending_since + self.timeouts.change_status
            ):
                self._report_pending(actions)  # it held until the link went
            # A status still waiting to hold cannot be confirmed across a gap.
            self._pending_status = self._pending_info = None
            actions.append(Disconnect())
            if not self._outage:  # once per outage, however many links it takes
                self._outage = True
                actions.append(DeliverEvent(EventKind.DISCONNECTED))
        else:
            actions.append(Disconnect())
            if self.address is not None:
                failures = self._failures.get(self.address, 0) + 1
                self._failures[self.address] = failures
                delay = min(RETRY_CAP, RETRY_BASE * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
                self._retry_after[self.address] = now + delay
                self._deferred[self.address] = (now + delay, self._advertised_vin)
        self.state = next_state
        self.address = self._advertised_vin = None
        self._loose_deadline = self._connect_deadline = math.inf
        actions.append(StartScan())
        self._scanning_since = now
        return actions

    def _fail_initial(self, now: float) -> list[Action]:
        seconds = self.timeouts.scan
        error: O2XError
        if self._seen_vehicle:
            reason = f": {self._last_error}" if self._last_error else ""
            # An impostor (the last attempt met a wrong identity) keeps its own type.
            kind = (
                IdentityMismatch
                if isinstance(self._last_error, IdentityMismatch)
                else ConnectionFailed
            )
            error = kind(
                f"vehicle {self.vin} was found but no connection could be set up "
                f"within {seconds:g} s{reason}"
            )
        else:
            which = "no vehicle" if self.vin is None else f"no vehicle {self.vin}"
            extra = ""
            if self._foreign:
                seen = ", ".join(f"{a} reads {vin}" for a, (_, vin) in self._foreign.items())
                extra = f" (the OBD adapters in range are other cars': {seen})"
            elif self._adapters and self._last_error is not None:
                extra = f" ({self._last_error})"
            error = ScanTimeout(f"{which} found within {seconds:g} s{extra}; {self.not_found_hint}")
        actions: list[Action] = [Disconnect() if self.state is State.CONNECTING else StopScan()]
        self._enter_closed()
        actions.append(Fail(error))
        return actions

    def _enter_closed(self) -> None:
        self.state = State.CLOSED
        self._deferred.clear()
        self.address = self._advertised_vin = None
        self._scan_deadline = self._loose_deadline = self._connect_deadline = math.inf
        self._pending_status = self._pending_info = None

    def _status_seen(
        self, status: VehicleStatus, info: VehicleInfo, now: float, actions: list[Action]
    ) -> None:
        pending = self._pending_status
        if (
            pending is not None
            and status is not pending
            and now >= self._pending_since + self.timeouts.change_status
        ):
            # The waiting status held until this reading replaced it: a transition,
            # even though no tick came in time to report it.
            self._report_pending(actions)
        if status is self.reported_status:
            self._pending_status = self._pending_info = None  # a flicker, not a change
            return
        if self.reported_status is None or self.timeouts.change_status == 0:
            self.reported_status = status
            self._pending_status = self._pending_info = None
            actions.append(DeliverStatus(status, info))
            return
        if status is not self._pending_status:
            self._pending_status = status
            self._pending_since = now
        self._pending_info = info
        if now >= self._pending_since + self.timeouts.change_status:
            self._report_pending(actions)

    def _report_pending(self, actions: list[Action]) -> None:
        assert self._pending_status is not None
        assert self._pending_info is not None
        self.reported_status = self._pending_status
        actions.append(DeliverStatus(self._pending_status, self._pending_info))
        self._pending_status = self._pending_info = None
