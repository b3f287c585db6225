"""The sans-I/O vehicle machine (``o2x.machine``), with plain numbers as the clock.

Example tests pin each rule of the product spec; a property test checks the
status filter against an oracle written from the spec (runs of frames); a
hypothesis state machine drives arbitrary interleavings of advertisements,
results, link losses, frames, time and close against a model of the link.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable
from typing import Literal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from o2x import ConnectionFailed, IdentityMismatch, O2XError, ScanTimeout, derive_status
from o2x.dongle.frames import (
    EventFrame,
    InfoFrame,
    decode_frame,
    encode_event,
    encode_info,
)
from o2x.machine import (
    CONNECT_GUARD,
    RETRY_BASE,
    RETRY_CAP,
    TRANSITIONS,
    Action,
    AdvertisementSeen,
    Close,
    Connect,
    Connected,
    ConnectFailed,
    DeliverEvent,
    DeliverSample,
    DeliverStatus,
    Disconnect,
    Fail,
    IdentityRead,
    Input,
    LinkLost,
    ReadIdentity,
    Ready,
    Start,
    StartScan,
    State,
    StopScan,
    Subscribe,
    Subscribed,
    Timeouts,
    VehicleMachine,
)
from o2x.model import EventKind, Gear, SystemState, VehicleInfo, VehicleStatus

VIN = "VR1AB12C3D4567890"
OTHER_VIN = "VXKUHZKXZL4123456"
ADDRESS = "AA:BB:CC:00:00:01"
ADDRESS_B = "AA:BB:CC:00:00:02"
INF = math.inf
DISCONNECTED = DeliverEvent(EventKind.DISCONNECTED)
LOST_WHILE_STREAMING = [Disconnect(), DISCONNECTED, StartScan()]
SETUP_FAILED = [Disconnect(), StartScan()]
SCANNING_STATES = (State.SCANNING, State.RECONNECTING)


# --- readings and events -------------------------------------------------------------
# The machine sees readings and events, not bytes. These are made from wire-format
# frames, as the O2X dongle source makes them, so that every status the wire can
# carry is covered; ``received`` feeds one to the machine as that source does.

RECEIVED_AT = dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=dt.UTC)
Item = VehicleInfo | EventKind | str | None


def received(m: VehicleMachine, item: Item, now: float) -> list[Action]:
    """A reading, an event, or data that is neither (``None``, an identity VIN)."""
    if isinstance(item, VehicleInfo):
        return m.reading_received(item, now)
    if isinstance(item, EventKind):
        return m.event_received(item, now)
    return m.data_received(now)


def info(
    system_state: SystemState | int = SystemState.OFF,
    rnd: Gear | int = Gear.NEUTRAL,
    *,
    seq: int = 0,
    battery_soc: int | None = None,
) -> VehicleInfo:
    frame = decode_frame(
        encode_info(seq=seq, system_state=system_state, rnd=rnd, battery_soc=battery_soc)
    )
    assert isinstance(frame, InfoFrame)
    return VehicleInfo.from_frame(frame, vin=VIN, received_at=RECEIVED_AT)


def identity(vin: str) -> str:
    return vin


def event(code: EventKind | int) -> EventKind | None:
    frame = decode_frame(encode_event(code))
    assert isinstance(frame, EventFrame)
    return frame.kind


PARKED = info(SystemState.OFF)
DRIVING = info(SystemState.READY, Gear.DRIVE)
CHARGING = info(SystemState.CHARGING)
UNKNOWN = info(SystemState.FAULT)
CANT_CHARGE = event(EventKind.CANT_CHARGE)
UNKNOWN_EVENT = event(0x7E)
IDENTITY_FRAME = identity(VIN)
ALL_FRAMES: tuple[Item, ...] = (PARKED, DRIVING, CHARGING, CANT_CHARGE, UNKNOWN_EVENT)
# Every combination the wire can carry, including codes this library does not know.
_SYSTEM_STATES: tuple[SystemState | int, ...] = (
    *(s for s in SystemState if s is not SystemState.UNKNOWN),
    0x7F,
)
_GEARS: tuple[Gear | int, ...] = (*(g for g in Gear if g is not Gear.UNKNOWN), 0x7F)
EVERY_INFO = tuple(
    info(system_state, rnd, seq=index)
    for index, (system_state, rnd) in enumerate(itertools.product(_SYSTEM_STATES, _GEARS))
)


def status_of(reading: VehicleInfo) -> VehicleStatus:
    return derive_status(reading.data.system_state, reading.data.rnd)


def statuses(actions: list[Action]) -> list[VehicleStatus]:
    return [action.status for action in actions if isinstance(action, DeliverStatus)]


def without_statuses(actions: list[Action]) -> list[Action]:
    return [action for action in actions if not isinstance(action, DeliverStatus)]


# --- driving the machine -----------------------------------------------------------


def streaming(
    *,
    first_time: bool = True,
    timeouts: Timeouts | None = None,
    at: float = 0.0,
    address: str = ADDRESS,
) -> VehicleMachine:
    """A machine that has just started streaming at time ``at``."""
    m = VehicleMachine(VIN, first_time=first_time, timeouts=timeouts)
    assert m.start(at) == [StartScan()]
    assert m.handle(AdvertisementSeen(address, VIN), at) == [StopScan(), Connect(address)]
    assert m.handle(Connected(), at) == [ReadIdentity()]
    assert m.handle(IdentityRead(IDENTITY_FRAME), at) == [Subscribe()]
    assert m.handle(Subscribed(), at) == [Ready(VIN, address)]
    assert m.state is State.STREAMING
    return m


def reconnect(m: VehicleMachine, now: float, address: str = ADDRESS) -> list[Action]:
    """Run one successful link set-up; return what ``Subscribed`` gave."""
    assert m.handle(AdvertisementSeen(address, VIN), now) == [StopScan(), Connect(address)]
    assert m.handle(Connected(), now) == [ReadIdentity()]
    assert m.handle(IdentityRead(IDENTITY_FRAME), now) == [Subscribe()]
    return m.handle(Subscribed(), now)


def machine_in(state: State, *, first_time: bool = True) -> VehicleMachine:
    """A machine brought to ``state`` at time 0 by the inputs the driver would feed."""
    if state is State.STREAMING:
        return streaming(first_time=first_time)
    if state is State.RECONNECTING:
        m = streaming(first_time=first_time)
        assert m.handle(LinkLost(), 0.0) == LOST_WHILE_STREAMING
        return m
    m = VehicleMachine(VIN, first_time=first_time)
    if state is State.IDLE:
        return m
    m.start(0.0)
    if state is State.CONNECTING:
        m.handle(AdvertisementSeen(ADDRESS, VIN), 0.0)
    elif state is State.CLOSED:
        m.handle(Close(), 0.0)
    assert m.state is state
    return m


def every_input() -> list[Input]:
    return [
        Start(),
        AdvertisementSeen(ADDRESS, VIN),
        AdvertisementSeen(ADDRESS_B, OTHER_VIN),
        Connected(),
        ConnectFailed(OSError("refused")),
        IdentityRead(IDENTITY_FRAME),
        IdentityRead(identity(OTHER_VIN)),
        Subscribed(),
        LinkLost(),
        Close(),
    ]


def assert_final(m: VehicleMachine, now: float) -> None:
    """CLOSED is final: nothing moves the machine or makes it act again."""
    assert m.state is State.CLOSED
    assert m.deadline == INF
    for later in (now, now + 1.0, now + 1e9):
        for item in every_input():
            assert m.handle(item, later) == []
        for frame in (*ALL_FRAMES, IDENTITY_FRAME):
            assert received(m, frame, later) == []
        assert m.tick(later) == []
        assert m.state is State.CLOSED
        assert m.deadline == INF


# --- Timeouts ----------------------------------------------------------------------


def test_timeouts_defaults_are_the_sdk_values() -> None:
    t = Timeouts()
    assert (t.scan, t.loose_connection, t.change_status) == (60.0, 5.0, 0.0)
    assert VehicleMachine(VIN, first_time=True).timeouts == t


def test_timeouts_accept_numbers_zero_change_status_and_infinity() -> None:
    t = Timeouts(scan=1, loose_connection=0.001, change_status=0)
    assert (t.scan, t.loose_connection, t.change_status) == (1, 0.001, 0)
    t = Timeouts(scan=INF, loose_connection=INF, change_status=INF)
    assert (t.scan, t.loose_connection, t.change_status) == (INF, INF, INF)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scan", 0),
        ("scan", 0.0),
        ("scan", -1),
        ("scan", -INF),
        ("scan", math.nan),
        ("loose_connection", 0),
        ("loose_connection", -0.5),
        ("loose_connection", math.nan),
        ("change_status", -1e-9),
        ("change_status", -INF),
        ("change_status", math.nan),
        ("scan", 10**400),  # an int no float can hold
        ("change_status", -(10**400)),
    ],
)
def test_timeouts_reject_bad_values_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"\bTimeouts\.{field}\b"):
        Timeouts(**{field: value})
    with pytest.raises(ValueError, match=rf"\bTimeouts\.{field}\b"):
        attrs.evolve(Timeouts(), **{field: value})


@pytest.mark.parametrize("field", ["scan", "loose_connection", "change_status"])
@pytest.mark.parametrize("value", ["5", None, b"5", [5], True])
def test_timeouts_reject_non_numbers_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=rf"\bTimeouts\.{field}\b"):
        Timeouts(**{field: value})


def test_timeouts_are_immutable() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Timeouts().scan = 1.0  # type: ignore[misc]


# --- the transition table ----------------------------------------------------------


def test_table_covers_every_state_and_closed_accepts_nothing() -> None:
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[State.CLOSED] == {}
    for row in TRANSITIONS.values():
        assert all(isinstance(target, State) for target in row.values())
        assert Close in row or row == {}


@pytest.mark.parametrize("state", list(State))
def test_inputs_missing_from_a_row_change_nothing(state: State) -> None:
    for item in every_input():
        if type(item) in TRANSITIONS[state]:
            continue
        m = machine_in(state)
        deadline = m.deadline
        assert m.handle(item, 1.0) == [], item
        assert m.state is state
        assert m.deadline == deadline


@pytest.mark.parametrize("state", [s for s in State if s is not State.STREAMING])
def test_frames_mean_nothing_unless_streaming(state: State) -> None:
    m = machine_in(state)
    for frame in (*ALL_FRAMES, IDENTITY_FRAME):
        assert received(m, frame, 1.0) == []
    assert m.state is state


def test_happy_path_actions_in_order() -> None:
    m = VehicleMachine(VIN, first_time=True)
    assert m.state is State.IDLE
    assert m.deadline == INF
    assert m.start(10.0) == [StartScan()]
    assert m.state is State.SCANNING
    assert m.handle(AdvertisementSeen(ADDRESS, OTHER_VIN), 11.0) == []
    assert m.state is State.SCANNING
    assert m.handle(AdvertisementSeen(ADDRESS, VIN), 12.0) == [StopScan(), Connect(ADDRESS)]
    assert m.state is State.CONNECTING
    assert m.address == ADDRESS
    assert m.handle(Connected(), 12.5) == [ReadIdentity()]
    assert m.handle(IdentityRead(IDENTITY_FRAME), 13.0) == [Subscribe()]
    assert m.state is State.CONNECTING
    assert m.handle(Subscribed(), 13.5) == [Ready(VIN, ADDRESS)]
    assert m.state is State.STREAMING
    assert m.has_streamed


# --- scan timeout ------------------------------------------------------------------


def test_first_time_scan_timeout_when_the_vin_is_never_seen() -> None:
    m = VehicleMachine(VIN, first_time=True, timeouts=Timeouts(scan=10))
    assert m.start(100.0) == [StartScan()]
    assert m.deadline == 110.0
    assert m.handle(AdvertisementSeen(ADDRESS, OTHER_VIN), 105.0) == []
    assert m.tick(109.999) == []
    actions = m.tick(110.0)
    assert actions[:-1] == [StopScan()]
    fail = actions[-1]
    assert isinstance(fail, Fail)
    assert isinstance(fail.error, ScanTimeout)
    assert isinstance(fail.error, O2XError)
    assert isinstance(fail.error, TimeoutError)
    assert VIN in str(fail.error)
    assert_final(m, 110.0)


def test_a_late_tick_still_times_the_scan_out() -> None:
    m = VehicleMachine(VIN, first_time=True, timeouts=Timeouts(scan=10))
    m.start(0.0)
    fail = m.tick(1e6)[-1]
    assert isinstance(fail, Fail)
    assert isinstance(fail.error, ScanTimeout)


def _connect_failed(m: VehicleMachine) -> None:
    m.handle(AdvertisementSeen(ADDRESS, VIN), 1.0)
    assert m.handle(ConnectFailed(OSError("refused")), 2.0) == SETUP_FAILED


def _identity_mismatch(m: VehicleMachine) -> None:
    m.handle(AdvertisementSeen(ADDRESS, VIN), 1.0)
    m.handle(Connected(), 1.5)
    assert m.handle(IdentityRead(identity(OTHER_VIN)), 2.0) == SETUP_FAILED


def _lost_while_connecting(m: VehicleMachine) -> None:
    m.handle(AdvertisementSeen(ADDRESS, VIN), 1.0)
    m.handle(Connected(), 1.5)
    assert m.handle(LinkLost(), 2.0) == SETUP_FAILED


def _seen_while_backing_off(m: VehicleMachine) -> None:
    _connect_failed(m)
    assert m.handle(AdvertisementSeen(ADDRESS, VIN), 2.1) == []


def _still_connecting(m: VehicleMachine) -> None:
    m.handle(AdvertisementSeen(ADDRESS, VIN), 8.0)
    m.handle(Connected(), 8.5)


@pytest.mark.parametrize(
    ("scenario", "first_action"),
    [
        (_connect_failed, StopScan()),
        (_identity_mismatch, StopScan()),
        (_lost_while_connecting, StopScan()),
        (_seen_while_backing_off, StopScan()),
        (_still_connecting, Disconnect()),
    ],
)
def test_first_time_connection_failed_when_seen_but_never_connected(
    scenario: Callable[[VehicleMachine], None], first_action: Action
) -> None:
    m = VehicleMachine(VIN, first_time=True, timeouts=Timeouts(scan=10))
    m.start(0.0)
    scenario(m)
    actions = m.tick(10.0)  # straight to the deadline: no retry comes first
    assert actions[:-1] == [first_action]
    fail = actions[-1]
    assert isinstance(fail, Fail)
    assert isinstance(fail.error, ConnectionFailed)
    assert not isinstance(fail.error, ScanTimeout)
    assert isinstance(fail.error, O2XError)
    # Only a wrong identity makes the failure an IdentityMismatch.
    assert isinstance(fail.error, IdentityMismatch) == (scenario is _identity_mismatch)
    assert_final(m, 10.0)


@pytest.mark.parametrize("first_time", [True, False])
def test_no_scan_timeout_once_streamed_however_long_reconnecting_takes(first_time: bool) -> None:
    m = streaming(first_time=first_time, timeouts=Timeouts(scan=10, loose_connection=INF))
    assert m.deadline == INF
    assert m.handle(LinkLost(), 5.0) == LOST_WHILE_STREAMING
    assert m.deadline == INF
    assert m.tick(1e9) == []
    # Failed reconnection attempts long after the scan timeout fail nothing either.
    m.handle(AdvertisementSeen(ADDRESS, VIN), 2e9)
    assert m.handle(ConnectFailed(), 2e9) == SETUP_FAILED
    assert not any(isinstance(a, Fail) for a in m.tick(3e9))
    assert m.state is not State.CLOSED


def test_first_time_with_infinite_scan_never_times_out() -> None:
    m = VehicleMachine(VIN, first_time=True, timeouts=Timeouts(scan=INF))
    m.start(0.0)
    assert m.deadline == INF
    assert m.tick(1e12) == []
    assert m.state is State.SCANNING


def test_previous_never_times_out_the_scan_unseen() -> None:
    m = VehicleMachine(VIN, first_time=False, timeouts=Timeouts(scan=1))
    assert m.start(0.0) == [StartScan()]
    assert m.deadline == INF
    assert m.tick(1.0) == []
    assert m.tick(1e12) == []
    assert m.state is State.SCANNING


def test_previous_never_times_out_the_scan_seen_and_failing_forever() -> None:
    m = VehicleMachine(VIN, first_time=False, timeouts=Timeouts(scan=1))
    m.start(0.0)
    now = 0.0
    assert m.handle(AdvertisementSeen(ADDRESS, VIN), now) == [StopScan(), Connect(ADDRESS)]
    attempts = 1
    while now < 100_000.0:
        assert m.handle(ConnectFailed(OSError("out of range")), now) == SETUP_FAILED
        assert now < m.deadline <= now + RETRY_CAP
        now = m.deadline
        assert m.tick(now) == [StopScan(), Connect(ADDRESS)]
        attempts += 1
    assert attempts > 3000
    assert m.state is State.CONNECTING


# --- Ready -------------------------------------------------------------------------


def test_ready_once_with_vin_and_address_never_again_after_reconnections() -> None:
    m = streaming(address=ADDRESS_B, timeouts=Timeouts(loose_connection=1))
    now = 0.0
    for _ in range(3):
        now += 1.0
        assert m.tick(now) == LOST_WHILE_STREAMING  # a silence
        assert reconnect(m, now, ADDRESS) == []
        assert m.state is State.STREAMING
        received(m, PARKED, now)
        assert m.handle(LinkLost(), now) == LOST_WHILE_STREAMING
        assert reconnect(m, now, ADDRESS_B) == []
        received(m, PARKED, now)
    assert m.has_streamed
    assert m.reconnects == 6


# --- identity, back-off, deferred retries -----------------------------------------


def test_wrong_identity_tears_the_link_down_and_scans_on_without_ready() -> None:
    m = VehicleMachine(VIN, first_time=True)
    m.start(0.0)
    m.handle(AdvertisementSeen(ADDRESS, VIN), 1.0)
    m.handle(Connected(), 1.5)
    assert m.handle(IdentityRead(identity(OTHER_VIN)), 2.0) == SETUP_FAILED
    assert m.state is State.SCANNING
    assert not m.has_streamed
    assert m.address is None
    # That address backs off; another one does not.
    assert m.handle(AdvertisementSeen(ADDRESS, VIN), 2.1) == []
    assert m.state is State.SCANNING
    assert m.handle(AdvertisementSeen(ADDRESS_B, VIN), 2.2) == [StopScan(), Connect(ADDRESS_B)]


def test_failed_address_is_retried_when_due_without_a_new_advertisement() -> None:
    m = VehicleMachine(VIN, first_time=True)
    m.start(0.0)
    m.handle(AdvertisementSeen(ADDRESS, VIN), 1.0)
    m.handle(Connected(), 1.5)
    assert m.handle(IdentityRead(identity(OTHER_VIN)), 2.0) == SETUP_FAILED
    assert m.deadline == 2.0 + RETRY_BASE
    assert m.tick(2.0 + RETRY_BASE / 2) == []
    assert m.tick(2.0 + RETRY_BASE) == [StopScan(), Connect(ADDRESS)]
    assert m.state is State.CONNECTING
    assert m.handle(Connected(), 3.0) == [ReadIdentity()]
    assert m.handle(IdentityRead(IDENTITY_FRAME), 3.0) == [Subscribe()]
    assert m.handle(Subscribed(), 3.0) == [Ready(VIN, ADDRESS)]


def test_advertisement_during_back_off_is_acted_on_when_due() -> None:
    m = VehicleMachine(VIN, first_time=False)
    m.start(0.0)
    m.handle(AdvertisementSeen(ADDRESS, VIN), 0.0)
    m.handle(ConnectFailed(), 1.0)
    assert m.handle(AdvertisementSeen(ADDRESS, VIN), 1.2) == []
    assert m.deadline == 1.0 + RETRY_BASE
    assert m.tick(1.0 + RETRY_BASE) == [StopScan(), Connect(ADDRESS)]
    # Once connecting, nothing else is due but the guard on the set-up.
    assert m.deadline == 1.0 + RETRY_BASE + CONNECT_GUARD


def test_back_off_doubles_then_is_capped_and_success_resets_it() -> None:
    assert 0 < RETRY_BASE < RETRY_CAP
    m = VehicleMachine(VIN, first_time=False, timeouts=Timeouts(loose_connection=INF))
    m.start(0.0)
    now = 0.0
    m.handle(AdvertisementSeen(ADDRESS, VIN), now)
    delays = []
    for _ in range(12):
        assert m.handle(ConnectFailed(), now) == SETUP_FAILED
        delay = m.deadline - now
        delays.append(delay)
        # Not before it is due, even when advertised again.
        assert m.handle(AdvertisementSeen(ADDRESS, VIN), now + delay / 2) == []
        assert m.tick(now + delay / 2) == []
        now += delay
        assert m.tick(now) == [StopScan(), Connect(ADDRESS)]
    assert delays == [min(RETRY_CAP, RETRY_BASE * 2**n) for n in range(12)]
    assert delays[-1] == RETRY_CAP
    assert delays[:4] == [RETRY_BASE, 2 * RETRY_BASE, 4 * RETRY_BASE, 8 * RETRY_BASE]
    # A link that streams resets the address's back-off ...
    m.handle(Connected(), now)
    m.handle(IdentityRead(IDENTITY_FRAME), now)
    assert m.handle(Subscribed(), now) == [Ready(VIN, ADDRESS)]
    # ... and losing a streaming link backs nothing off: reconnect at once.
    assert m.handle(LinkLost(), now) == LOST_WHILE_STREAMING
    assert m.deadline == INF
    assert m.handle(AdvertisementSeen(ADDRESS, VIN), now) == [StopScan(), Connect(ADDRESS)]
    assert m.handle(ConnectFailed(), now) == SETUP_FAILED
    assert m.deadline == now + RETRY_BASE


def test_back_off_survives_thousands_of_failures() -> None:
    # 2.0 ** 1024 overflows a float: the delay must stay at the cap, not crash.
    m = VehicleMachine(VIN, first_time=False)
    m.start(0.0)
    now = 0.0
    m.handle(AdvertisementSeen(ADDRESS, VIN), now)
    for _ in range(1100):
        assert m.handle(ConnectFailed(), now) == SETUP_FAILED
        now += RETRY_CAP
        assert m.handle(AdvertisementSeen(ADDRESS, VIN), now) == [StopScan(), Connect(ADDRESS)]
    assert m.handle(ConnectFailed(), now) == SETUP_FAILED
    assert m.handle(AdvertisementSeen(ADDRESS, VIN), now + RETRY_CAP - 0.01) == []
    assert m.deadline == now + RETRY_CAP


def test_every_failed_address_is_retried_even_after_trying_another() -> None:
    m = VehicleMachine(VIN, first_time=False)
    m.start(0.0)
    m.handle(AdvertisementSeen(ADDRESS, VIN), 0.0)
    assert m.handle(ConnectFailed(), 0.0) == SETUP_FAILED  # ADDRESS due at 0.5
    assert m.handle(AdvertisementSeen(ADDRESS_B, VIN), 0.1) == [StopScan(), Connect(ADDRESS_B)]
    # While a link is being set up, no retry is due (the driver must not spin).
    assert m.deadline == 0.1 + CONNECT_GUARD
    assert m.tick(0.5) == []
    assert m.handle(ConnectFailed(), 0.2) == SETUP_FAILED  # ADDRESS_B due at 0.7
    assert m.deadline == 0.5
    assert m.tick(0.5) == [StopScan(), Connect(ADDRESS)]
    assert m.handle(ConnectFailed(), 0.6) == SETUP_FAILED  # ADDRESS due at 1.6
    assert m.deadline == 0.7
    assert m.tick(0.7) == [StopScan(), Connect(ADDRESS_B)]


def test_streaming_forgets_pending_retries() -> None:
    m = VehicleMachine(VIN, first_time=False, timeouts=Timeouts(loose_connection=INF))
    m.start(0.0)
    m.handle(AdvertisementSeen(ADDRESS, VIN), 0.0)
    m.handle(ConnectFailed(), 0.0)
    assert reconnect(m, 0.1, ADDRESS_B) == [Ready(VIN, ADDRESS_B)]
    assert m.deadline == INF
    assert m.handle(LinkLost(), 1.0) == LOST_WHILE_STREAMING
    assert m.deadline == INF
    assert m.tick(100.0) == []


def test_setting_up_a_link_is_abandoned_after_the_guard() -> None:
    m = VehicleMachine(VIN, first_time=False)
    m.start(0.0)
    m.handle(AdvertisementSeen(ADDRESS, VIN), 1.0)
    assert m.deadline == 1.0 + CONNECT_GUARD
    m.handle(Connected(), 20.0)  # progress does not extend the guard
    assert m.deadline == 1.0 + CONNECT_GUARD
    assert m.tick(1.0 + CONNECT_GUARD - 0.01) == []
    assert m.tick(1.0 + CONNECT_GUARD) == SETUP_FAILED
    assert m.state is State.SCANNING


# --- losing the link ---------------------------------------------------------------


def test_link_lost_while_streaming_emits_one_disconnected_and_reconnects() -> None:
    m = streaming(first_time=True, timeouts=Timeouts(loose_connection=INF))
    assert m.handle(LinkLost(), 3.0) == LOST_WHILE_STREAMING
    assert m.state is State.RECONNECTING
    assert m.address is None
    # Nothing more about that loss: no second event, no timer.
    assert m.handle(LinkLost(), 3.1) == []
    assert m.deadline == INF
    assert m.tick(1e6) == []
    # No back-off after a link that streamed: the next advertisement connects.
    assert m.handle(AdvertisementSeen(ADDRESS, VIN), 1e6) == [StopScan(), Connect(ADDRESS)]
    m.handle(Connected(), 1e6)
    m.handle(IdentityRead(IDENTITY_FRAME), 1e6)
    assert m.handle(Subscribed(), 1e6) == []
    assert m.state is State.STREAMING
    assert m.reconnects == 0  # back once data flows
    received(m, PARKED, 1e6)
    assert m.reconnects == 1
    # Each later loss has its own single event.
    assert m.handle(LinkLost(), 2e6) == LOST_WHILE_STREAMING


@pytest.mark.parametrize("lose", ["silence", "link lost"])
def test_a_link_that_comes_back_silent_is_the_same_outage(lose: str) -> None:
    m = streaming(timeouts=Timeouts(loose_connection=5), at=0.0)
    received(m, PARKED, 1.0)
    assert m.tick(6.0) == LOST_WHILE_STREAMING
    now = 6.0
    for _ in range(3):  # connected again, and silent again: no new DISCONNECTED
        assert reconnect(m, now) == []
        if lose == "silence":
            now += 5.0
            assert m.tick(now) == SETUP_FAILED
        else:
            now += 1.0
            assert m.handle(LinkLost(), now) == SETUP_FAILED
        assert m.state is State.RECONNECTING
    assert m.reconnects == 0
    # Data flows on the next link: the outage is over, and the next loss is news.
    assert reconnect(m, now) == []
    assert received(m, PARKED, now) == [DeliverSample(PARKED)]
    assert m.reconnects == 1
    assert m.tick(now + 5.0) == LOST_WHILE_STREAMING


def test_silence_from_subscription_counts_as_a_lost_link() -> None:
    m = streaming(timeouts=Timeouts(loose_connection=5), at=10.0)
    assert m.deadline == 15.0
    assert m.tick(14.99) == []
    assert m.tick(15.0) == LOST_WHILE_STREAMING
    assert m.state is State.RECONNECTING
    assert m.deadline == INF
    assert m.tick(1e6) == []


@pytest.mark.parametrize("frame", [PARKED, DRIVING, CANT_CHARGE, UNKNOWN_EVENT])
def test_silence_is_measured_from_the_last_frame(frame: Item) -> None:
    m = streaming(timeouts=Timeouts(loose_connection=5))
    received(m, PARKED, 1.0)
    received(m, frame, 3.0)
    assert m.deadline == 8.0
    assert m.tick(7.99) == []
    assert m.tick(8.0) == LOST_WHILE_STREAMING


@pytest.mark.parametrize("stage", [0, 1, 2])
@pytest.mark.parametrize("streamed_before", [False, True])
def test_link_lost_while_connecting_emits_no_disconnected(
    stage: int, streamed_before: bool
) -> None:
    if streamed_before:
        m = streaming(timeouts=Timeouts(loose_connection=INF))
        assert m.handle(LinkLost(), 1.0) == LOST_WHILE_STREAMING
        expected_state = State.RECONNECTING
    else:
        m = VehicleMachine(VIN, first_time=True)
        m.start(0.0)
        expected_state = State.SCANNING
    m.handle(AdvertisementSeen(ADDRESS, VIN), 2.0)
    if stage >= 1:
        m.handle(Connected(), 2.0)
    if stage >= 2:
        m.handle(IdentityRead(IDENTITY_FRAME), 2.0)
    assert m.handle(LinkLost(), 2.5) == SETUP_FAILED
    assert m.state is expected_state


# --- frames while streaming --------------------------------------------------------


def test_cant_charge_is_delivered_and_unknown_events_ignored() -> None:
    m = streaming()
    assert received(m, CANT_CHARGE, 1.0) == [DeliverEvent(EventKind.CANT_CHARGE)]
    assert received(m, UNKNOWN_EVENT, 1.0) == []
    assert UNKNOWN_EVENT is None
    assert received(m, IDENTITY_FRAME, 1.0) == []
    assert received(m, CANT_CHARGE, 2.0) == [DeliverEvent(EventKind.CANT_CHARGE)]


def test_every_info_frame_while_streaming_is_a_sample() -> None:
    m = streaming(timeouts=Timeouts(change_status=1.0))
    samples: list[VehicleInfo] = []
    for n in range(30):
        frame = info(SystemState.OFF, battery_soc=n, seq=n)
        actions = received(m, frame, n * 0.1)
        delivered = [a.info for a in actions if isinstance(a, DeliverSample)]
        assert len(delivered) == 1
        assert delivered[0] is frame
        samples += delivered
    assert [f.data.battery_soc.value for f in samples if f.data.battery_soc] == list(range(30))


# --- status ------------------------------------------------------------------------


def test_frames_used_here_derive_the_statuses_they_are_named_after() -> None:
    assert status_of(PARKED) is VehicleStatus.PARKED
    assert status_of(DRIVING) is VehicleStatus.DRIVING
    assert status_of(CHARGING) is VehicleStatus.CHARGING
    assert status_of(UNKNOWN) is VehicleStatus.UNKNOWN
    assert {status_of(f) for f in EVERY_INFO} == set(VehicleStatus)


@pytest.mark.parametrize("change_status", [0.0, 10.0])
def test_first_known_status_is_delivered_at_once(change_status: float) -> None:
    m = streaming(timeouts=Timeouts(change_status=change_status))
    assert received(m, DRIVING, 1.0) == [
        DeliverSample(DRIVING),
        DeliverStatus(VehicleStatus.DRIVING, DRIVING),
    ]
    assert m.reported_status is VehicleStatus.DRIVING
    assert received(m, DRIVING, 2.0) == [DeliverSample(DRIVING)]


def test_without_change_status_every_change_is_delivered_immediately() -> None:
    m = streaming(timeouts=Timeouts(change_status=0))
    sequence = [PARKED, PARKED, DRIVING, PARKED, CHARGING, CHARGING, UNKNOWN, PARKED]
    delivered: list[VehicleStatus] = []
    for n, frame in enumerate(sequence):
        actions = received(m, frame, float(n))
        delivered += statuses(actions)
        for action in actions:
            if isinstance(action, DeliverStatus):
                assert action.info is frame
    assert delivered == [
        VehicleStatus.PARKED,
        VehicleStatus.DRIVING,
        VehicleStatus.PARKED,
        VehicleStatus.CHARGING,
        VehicleStatus.UNKNOWN,
        VehicleStatus.PARKED,
    ]
    assert m.deadline == 7.0 + 5.0  # only the loose-connection timer


def test_a_new_status_is_delivered_by_tick_once_it_has_held() -> None:
    m = streaming(timeouts=Timeouts(change_status=2.0, loose_connection=INF))
    received(m, PARKED, 0.0)
    driving_1, driving_2 = (
        info(SystemState.READY, Gear.DRIVE, seq=1),
        info(SystemState.READY, Gear.REVERSE, seq=2),
    )
    assert received(m, driving_1, 1.0) == [DeliverSample(driving_1)]
    assert m.deadline == 3.0
    assert m.tick(2.99) == []
    assert received(m, driving_2, 2.0) == [DeliverSample(driving_2)]
    assert m.deadline == 3.0  # held since its first frame, not its last
    assert m.tick(3.0) == [DeliverStatus(VehicleStatus.DRIVING, driving_2)]
    assert m.reported_status is VehicleStatus.DRIVING
    assert m.deadline == INF
    assert m.tick(100.0) == []


def test_a_new_status_is_delivered_by_a_frame_once_it_has_held() -> None:
    m = streaming(timeouts=Timeouts(change_status=2.0, loose_connection=INF))
    received(m, PARKED, 0.0)
    received(m, DRIVING, 1.0)
    later = info(SystemState.READY, Gear.DRIVE, seq=9)
    assert received(m, later, 3.0) == [
        DeliverSample(later),
        DeliverStatus(VehicleStatus.DRIVING, later),
    ]


def test_a_status_that_flips_back_sooner_is_never_delivered() -> None:
    m = streaming(timeouts=Timeouts(change_status=2.0, loose_connection=INF))
    received(m, PARKED, 0.0)
    assert received(m, DRIVING, 1.0) == [DeliverSample(DRIVING)]
    assert received(m, PARKED, 2.5) == [DeliverSample(PARKED)]
    assert m.deadline == INF
    assert m.tick(3.0) == []
    assert m.tick(1e6) == []
    assert m.reported_status is VehicleStatus.PARKED


def test_an_intermediate_status_that_did_not_hold_is_skipped() -> None:
    m = streaming(timeouts=Timeouts(change_status=2.0, loose_connection=INF))
    received(m, PARKED, 0.0)
    received(m, DRIVING, 1.0)
    assert received(m, CHARGING, 2.0) == [DeliverSample(CHARGING)]
    assert m.deadline == 4.0
    assert m.tick(3.5) == []
    assert m.tick(4.0) == [DeliverStatus(VehicleStatus.CHARGING, CHARGING)]


def test_a_status_that_held_is_not_lost_when_the_tick_comes_late() -> None:
    # The driver's tick can run after the next frame: the frame shows the waiting
    # status held long enough, so it is a transition and must be delivered.
    m = streaming(timeouts=Timeouts(change_status=2.0, loose_connection=INF))
    received(m, PARKED, 0.0)
    received(m, DRIVING, 1.0)
    assert statuses(received(m, PARKED, 3.5)) == [VehicleStatus.DRIVING]
    assert m.reported_status is VehicleStatus.DRIVING
    # ... and the flip back is itself a new status waiting to hold.
    assert m.deadline == 5.5
    assert m.tick(5.5) == [DeliverStatus(VehicleStatus.PARKED, PARKED)]


def test_a_status_that_held_is_delivered_before_the_lost_link() -> None:
    m = streaming(timeouts=Timeouts(change_status=2.0, loose_connection=INF))
    received(m, PARKED, 0.0)
    received(m, DRIVING, 1.0)
    assert m.handle(LinkLost(), 3.5) == [
        DeliverStatus(VehicleStatus.DRIVING, DRIVING),
        *LOST_WHILE_STREAMING,
    ]


def test_silence_with_a_status_waiting_delivers_it_then_the_loss() -> None:
    m = streaming(timeouts=Timeouts(change_status=2.0, loose_connection=5.0))
    received(m, PARKED, 0.0)
    received(m, DRIVING, 1.0)
    assert m.deadline == 3.0
    actions = m.tick(7.0)  # one late tick for both timers
    assert actions == [DeliverStatus(VehicleStatus.DRIVING, DRIVING), *LOST_WHILE_STREAMING]


def test_a_status_not_yet_held_dies_with_the_link_the_reported_one_survives() -> None:
    m = streaming(timeouts=Timeouts(change_status=2.0, loose_connection=INF))
    received(m, PARKED, 0.0)
    received(m, DRIVING, 1.0)
    assert m.handle(LinkLost(), 2.0) == LOST_WHILE_STREAMING
    assert m.deadline == INF
    assert reconnect(m, 10.0) == []
    # Still PARKED: the same status is no change ...
    assert received(m, PARKED, 10.0) == [DeliverSample(PARKED)]
    # ... and a different one is not "first", it has to hold.
    assert received(m, DRIVING, 11.0) == [DeliverSample(DRIVING)]
    assert m.tick(13.0) == [DeliverStatus(VehicleStatus.DRIVING, DRIVING)]


def _expected_deliveries(
    steps: list[tuple[str, float, InfoFrame]], change_status: float
) -> list[tuple[int, VehicleStatus]]:
    """The spec as an oracle over runs of frames with one status.

    The first run is delivered at its first frame. A later run is delivered iff
    its status differs from the last one delivered and it held ``change_status``
    (from its first frame): at the first observation (frame or tick) of at least
    that time, up to and including the frame that ends the run.
    """
    times = [when for _, when, _ in steps]
    runs: list[tuple[VehicleStatus, int]] = []  # (status, index of its first frame)
    for index, (kind, _, frame) in enumerate(steps):
        if kind == "frame" and (not runs or runs[-1][0] is not status_of(frame)):
            runs.append((status_of(frame), index))
    expected: list[tuple[int, VehicleStatus]] = []
    last: VehicleStatus | None = None
    for n, (status, start) in enumerate(runs):
        end = runs[n + 1][1] if n + 1 < len(runs) else len(steps) - 1
        if last is None:
            expected.append((start, status))
            last = status
            continue
        if status is last:
            continue
        due = times[start] + change_status
        for index in range(start, end + 1):
            if times[index] >= due:
                expected.append((index, status))
                last = status
                break
    return expected


@settings(max_examples=300, deadline=None)
@given(
    change_status=st.sampled_from([0.0, 0.5, 2.0]),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["frame", "frame", "tick"]),
            st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]),
            st.sampled_from(EVERY_INFO),
        ),
        max_size=40,
    ),
)
def test_status_changes_match_the_run_oracle(
    change_status: float, steps: list[tuple[str, float, InfoFrame]]
) -> None:
    m = streaming(timeouts=Timeouts(change_status=change_status, loose_connection=INF))
    now = 0.0
    timed: list[tuple[str, float, InfoFrame]] = []
    delivered: list[tuple[int, VehicleStatus]] = []
    for index, (kind, step, frame) in enumerate(steps):
        now += step
        timed.append((kind, now, frame))
        if kind == "frame":
            actions = received(m, frame, now)
            assert [a for a in actions if isinstance(a, DeliverSample)] == [DeliverSample(frame)]
        else:
            actions = m.tick(now)
            assert m.deadline > now
        for action in actions:
            if isinstance(action, DeliverStatus):
                assert status_of(action.info) is action.status
                delivered.append((index, action.status))
    assert delivered == _expected_deliveries(timed, change_status)
    # Never the same status twice in a row.
    assert all(a[1] is not b[1] for a, b in itertools.pairwise(delivered))


# --- close -------------------------------------------------------------------------

CLOSE_ACTIONS = {
    State.IDLE: [],
    State.SCANNING: [StopScan()],
    State.CONNECTING: [Disconnect()],
    State.STREAMING: [Disconnect()],
    State.RECONNECTING: [StopScan()],
    State.CLOSED: [],
}


@pytest.mark.parametrize("first_time", [True, False])
@pytest.mark.parametrize("state", list(State))
def test_close_from_any_state_is_final(state: State, first_time: bool) -> None:
    m = machine_in(state, first_time=first_time)
    assert m.handle(Close(), 1.0) == CLOSE_ACTIONS[state]
    assert_final(m, 1.0)


@pytest.mark.parametrize("stage", [1, 2])
def test_close_while_setting_up_tears_the_link_down(stage: int) -> None:
    m = machine_in(State.CONNECTING)
    m.handle(Connected(), 0.5)
    if stage == 2:
        m.handle(IdentityRead(IDENTITY_FRAME), 0.5)
    assert m.handle(Close(), 1.0) == [Disconnect()]
    assert_final(m, 1.0)


def test_close_with_timers_pending_cancels_them() -> None:
    m = streaming(timeouts=Timeouts(change_status=2.0, loose_connection=5.0))
    received(m, PARKED, 0.0)
    received(m, DRIVING, 1.0)
    assert m.handle(Close(), 1.5) == [Disconnect()]
    assert_final(m, 1.5)


def test_close_with_retries_pending_cancels_them() -> None:
    m = VehicleMachine(VIN, first_time=True)
    m.start(0.0)
    m.handle(AdvertisementSeen(ADDRESS, VIN), 0.0)
    m.handle(ConnectFailed(), 0.0)
    m.handle(AdvertisementSeen(ADDRESS, VIN), 0.1)
    assert m.deadline == RETRY_BASE
    assert m.handle(Close(), 0.2) == [StopScan()]
    assert_final(m, 0.2)


# --- discovery (no VIN given) ------------------------------------------------------


def test_without_a_vin_the_first_dongle_matching_its_advertisement_is_taken() -> None:
    m = VehicleMachine(None, first_time=False)
    m.start(0.0)
    assert m.handle(AdvertisementSeen(ADDRESS, OTHER_VIN), 1.0) == [StopScan(), Connect(ADDRESS)]
    m.handle(Connected(), 1.0)
    assert m.handle(IdentityRead(identity(OTHER_VIN)), 1.0) == [Subscribe()]
    assert m.handle(Subscribed(), 1.0) == [Ready(OTHER_VIN, ADDRESS)]
    assert m.vin == OTHER_VIN


def test_without_a_vin_an_identity_unlike_its_advertisement_is_refused() -> None:
    m = VehicleMachine(None, first_time=False)
    m.start(0.0)
    m.handle(AdvertisementSeen(ADDRESS, VIN), 1.0)
    m.handle(Connected(), 1.0)
    assert m.handle(IdentityRead(identity(OTHER_VIN)), 1.0) == SETUP_FAILED
    assert m.vin is None
    assert not m.has_streamed


def test_without_a_vin_deferred_retries_work() -> None:
    m = VehicleMachine(None, first_time=False)
    m.start(0.0)
    m.handle(AdvertisementSeen(ADDRESS, OTHER_VIN), 0.0)
    m.handle(ConnectFailed(), 0.0)
    assert m.handle(AdvertisementSeen(ADDRESS, OTHER_VIN), 0.1) == []
    assert m.tick(m.deadline) == [StopScan(), Connect(ADDRESS)]
    m.handle(Connected(), 1.0)
    assert m.handle(IdentityRead(identity(OTHER_VIN)), 1.0) == [Subscribe()]
    assert m.handle(Subscribed(), 1.0) == [Ready(OTHER_VIN, ADDRESS)]


# --- the state machine against a model ---------------------------------------------

ADDRESSES = ("AA:00:00:00:00:01", "AA:00:00:00:00:02", "AA:00:00:00:00:03")
STATUS_FRAMES = {status_of(f): f for f in (PARKED, DRIVING, CHARGING, UNKNOWN)}
LinkState = Literal["down", "connecting", "up"]
Pending = Literal["connect", "identity", "subscribe"]
# True four times in five: advertisements of the right VIN, results that succeed.
LIKELY = st.integers(0, 4).map(bool)


class MachineAgainstModel(RuleBasedStateMachine):
    """Arbitrary interleavings of everything the driver can feed, checked step by step.

    The model knows what the driver knows: whether a link is down, being set up or
    up, which action awaits its result, what was advertised, the back-off of each
    address, when the last frame came, and the statuses seen (an oracle of the
    status filter). Every step compares the actions to what the spec demands.
    """

    def __init__(self) -> None:
        super().__init__()
        self.m = VehicleMachine(VIN, first_time=True)
        self.timeouts = Timeouts()
        self.first_time = True
        self.now = 0.0
        self.phase = State.IDLE
        self.link: LinkState = "down"
        self.pending: Pending | None = None
        self.address: str | None = None
        self.scanning = False
        self.ready = 0
        self.seen = False
        self.advertised: set[str] = set()
        self.failures: dict[str, int] = {}
        self.backoff_until: dict[str, float] = {}
        self.retry_due: dict[str, float] = {}
        self.connect_at = 0.0
        self.last_activity = 0.0
        self.delivered: VehicleStatus | None = None
        self.run: tuple[VehicleStatus, float] | None = None
        # From a DISCONNECTED until a frame arrives: later losses are the same outage.
        self.outage = False
        self.reconnects = 0

    # --- bookkeeping ---------------------------------------------------------------

    def _track(self, actions: list[Action], was: State) -> None:
        """Check the actions one by one against the link model, and update it."""
        disconnected = 0
        for action in actions:
            if isinstance(action, StartScan):
                assert not self.scanning, "StartScan while scanning"
                self.scanning = True
            elif isinstance(action, StopScan):
                assert self.scanning, "StopScan while not scanning"
                self.scanning = False
            elif isinstance(action, Connect):
                assert self.link == "down", "Connect while a link is up or being set up"
                assert not self.scanning, "Connect while scanning"
                assert action.address in self.advertised
                assert self.now >= self.backoff_until.get(action.address, -INF)
                self.link, self.pending, self.address = "connecting", "connect", action.address
                self.connect_at = self.now
                self.retry_due.pop(action.address, None)
            elif isinstance(action, ReadIdentity | Subscribe):
                assert self.link == "up"
                assert self.pending is None
                self.pending = "identity" if isinstance(action, ReadIdentity) else "subscribe"
            elif isinstance(action, Disconnect):
                assert self.link != "down", "Disconnect without a link"
                self.link, self.pending, self.address = "down", None, None
            elif isinstance(action, Ready):
                assert self.ready == 0, "Ready twice"
                assert action == Ready(VIN, self.address or "")
                self.ready = 1
            elif isinstance(action, DeliverEvent):
                if action.kind is EventKind.DISCONNECTED:
                    assert was is State.STREAMING, "DISCONNECTED without having streamed"
                    disconnected += 1
            elif isinstance(action, Fail):
                assert self.first_time, "scan timeout with previous()"
                assert self.ready == 0, "scan timeout after Ready"
                assert isinstance(action.error, O2XError)
            elif isinstance(action, DeliverSample | DeliverStatus):
                assert was is State.STREAMING
                if isinstance(action, DeliverStatus):
                    assert status_of(action.info) is action.status
        assert disconnected <= 1

    def _setup_failed(self, actions: list[Action]) -> None:
        """A link that never streamed was torn down: scan on, back its address off."""
        assert actions == SETUP_FAILED
        assert self.address is not None
        failures = self.failures.get(self.address, 0) + 1
        self.failures[self.address] = failures
        due = self.now + min(RETRY_CAP, RETRY_BASE * 2.0 ** min(failures - 1, 64))
        self.backoff_until[self.address] = self.retry_due[self.address] = due
        self.phase = State.RECONNECTING if self.ready else State.SCANNING

    def _mature(self) -> list[VehicleStatus]:
        run = self.run
        if (
            run is not None
            and run[0] is not self.delivered
            and self.now >= run[1] + self.timeouts.change_status
        ):
            self.delivered = run[0]
            return [run[0]]
        return []

    def _observe(self, status: VehicleStatus) -> list[VehicleStatus]:
        expected: list[VehicleStatus] = []
        if self.run is not None and status is not self.run[0]:
            expected += self._mature()  # the run it ends lasted until now
            self.run = None
        if self.run is None:
            self.run = (status, self.now)
        if self.delivered is None:
            self.delivered = status
            expected.append(status)
        else:
            expected += self._mature()
        return expected

    def _lost_while_streaming(self, actions: list[Action]) -> None:
        # Statuses that held are checked by the caller, with _mature(), first.
        assert without_statuses(actions) == (SETUP_FAILED if self.outage else LOST_WHILE_STREAMING)
        self.outage = True
        self.run = None
        self.phase = State.RECONNECTING

    def _data_flowed(self) -> None:
        if self.outage:
            self.outage = False
            self.reconnects += 1

    # --- rules ---------------------------------------------------------------------

    @initialize(
        first_time=st.booleans(),
        timeouts=st.builds(
            Timeouts,
            scan=st.sampled_from([0.5, 5.0, 60.0, 60.0, INF]),
            loose_connection=st.sampled_from([0.5, 3.0, INF]),
            change_status=st.sampled_from([0.0, 0.5, 2.0]),
        ),
    )
    def start(self, first_time: bool, timeouts: Timeouts) -> None:
        self.first_time, self.timeouts = first_time, timeouts
        self.m = VehicleMachine(VIN, first_time=first_time, timeouts=timeouts)
        actions = self.m.start(0.0)
        assert actions == [StartScan()]
        self._track(actions, State.IDLE)
        self.phase = State.SCANNING

    @rule(address=st.sampled_from(ADDRESSES), right_vin=LIKELY)
    def advertisement(self, address: str, right_vin: bool) -> None:
        was = self.phase
        actions = self.m.handle(
            AdvertisementSeen(address, VIN if right_vin else OTHER_VIN), self.now
        )
        if was in SCANNING_STATES and right_vin:
            self.seen = True
            self.advertised.add(address)
            until = self.backoff_until.get(address, -INF)
            if self.now < until:
                assert actions == []
                self.retry_due[address] = until
            else:
                assert actions == [StopScan(), Connect(address)]
                self.phase = State.CONNECTING
        else:
            assert actions == []
        self._track(actions, was)

    @precondition(lambda self: self.pending is not None)
    @rule(ok=LIKELY, right_identity=LIKELY)
    def result(self, ok: bool, right_identity: bool) -> None:
        was, step, self.pending = self.phase, self.pending, None
        assert was is State.CONNECTING
        if not ok:
            actions = self.m.handle(ConnectFailed(OSError("refused")), self.now)
            self._setup_failed(actions)
        elif step == "connect":
            self.link = "up"
            actions = self.m.handle(Connected(), self.now)
            assert actions == [ReadIdentity()]
        elif step == "identity":
            vin = VIN if right_identity else OTHER_VIN
            actions = self.m.handle(IdentityRead(identity(vin)), self.now)
            if right_identity:
                assert actions == [Subscribe()]
            else:
                self._setup_failed(actions)
        else:
            actions = self.m.handle(Subscribed(), self.now)
            assert actions == ([] if self.ready else [Ready(VIN, self.address or "")])
            assert self.address is not None
            self.failures.pop(self.address, None)
            self.backoff_until.pop(self.address, None)
            self.retry_due.clear()
            self.last_activity = self.now
            self.phase = State.STREAMING
        self._track(actions, was)

    @precondition(lambda self: self.phase in SCANNING_STATES)
    @rule(address=st.sampled_from(ADDRESSES))
    def link_comes_up(self, address: str) -> None:
        # A whole set-up at once, as a quick driver does it: without this shortcut
        # few runs would get as far as streaming among all the other rules.
        self.advertisement(address, right_vin=True)
        while self.pending is not None:
            self.agrees_with_the_model()
            self.result(ok=True, right_identity=True)

    @precondition(lambda self: self.pending is None and self.phase is not State.CONNECTING)
    @rule(
        item=st.sampled_from(
            [Start(), Connected(), ConnectFailed(), IdentityRead(IDENTITY_FRAME), Subscribed()]
        )
    )
    def stale_result(self, item: Input) -> None:
        # Results for a link already torn down (and a second Start) change nothing.
        deadline = self.m.deadline
        assert self.m.handle(item, self.now) == []
        assert self.m.deadline == deadline

    @precondition(lambda self: self.link != "down")
    @rule()
    def link_lost(self) -> None:
        was = self.phase
        actions = self.m.handle(LinkLost(), self.now)
        if was is State.STREAMING:
            assert statuses(actions) == self._mature()
            self._lost_while_streaming(actions)
        else:
            assert was is State.CONNECTING
            self._setup_failed(actions)
        self._track(actions, was)

    @precondition(lambda self: self.link == "down")
    @rule()
    def link_lost_without_link(self) -> None:
        # The driver filters these, but the machine must shrug them off too.
        assert self.m.handle(LinkLost(), self.now) == []

    @rule(status=st.sampled_from(list(STATUS_FRAMES)))
    def info_frame(self, status: VehicleStatus) -> None:
        was = self.phase
        frame = STATUS_FRAMES[status]
        actions = received(self.m, frame, self.now)
        if was is State.STREAMING:
            samples = [a for a in actions if isinstance(a, DeliverSample)]
            assert len(samples) == 1
            assert samples[0].info is frame
            assert statuses(actions) == self._observe(status)
            assert len(actions) == 1 + len(statuses(actions))
            self.last_activity = self.now
            self._data_flowed()
        else:
            assert actions == []
        self._track(actions, was)

    @precondition(lambda self: self.phase is State.STREAMING)
    @rule(
        burst=st.lists(
            st.tuples(
                st.one_of(st.none(), st.sampled_from(list(STATUS_FRAMES))),
                st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]),
            ),
            min_size=1,
            max_size=6,
        )
    )
    def telemetry(self, burst: list[tuple[VehicleStatus | None, float]]) -> None:
        # A stretch of frames (None: a tick) in quick succession, so that statuses
        # flicker, hold, and are overtaken by frames before any tick comes.
        for status, step in burst:
            self.now += step
            if status is None:
                self._tick()
            else:
                self.info_frame(status)
            self.agrees_with_the_model()

    @rule(known=st.booleans())
    def event_frame(self, known: bool) -> None:
        actions = received(self.m, CANT_CHARGE if known else UNKNOWN_EVENT, self.now)
        if self.phase is State.STREAMING:
            assert actions == ([DeliverEvent(EventKind.CANT_CHARGE)] if known else [])
            self.last_activity = self.now
            self._data_flowed()
        else:
            assert actions == []

    def _tick(self, again: int = 0) -> None:
        was = self.phase
        actions = self.m.tick(self.now)
        if was is State.CLOSED:
            assert actions == []
            return
        expected_statuses = self._mature() if was is State.STREAMING else []
        assert statuses(actions) == expected_statuses
        rest = without_statuses(actions)
        due = [address for address, when in self.retry_due.items() if when <= self.now]
        if self.first_time and not self.ready and self.now >= self.timeouts.scan:
            assert rest[:-1] == [Disconnect() if was is State.CONNECTING else StopScan()]
            fail = rest[-1]
            assert isinstance(fail, Fail)
            assert isinstance(fail.error, ConnectionFailed if self.seen else ScanTimeout)
            if not self.seen:
                assert isinstance(fail.error, TimeoutError)
            self.phase = State.CLOSED
        elif was is State.STREAMING and self.now >= (
            self.last_activity + self.timeouts.loose_connection
        ):
            self._lost_while_streaming(actions)
        elif was is State.CONNECTING and self.now >= self.connect_at + CONNECT_GUARD:
            self._setup_failed(rest)
        elif was in SCANNING_STATES and due:
            assert len(rest) == 2
            assert rest[0] == StopScan()
            connect = rest[1]
            assert isinstance(connect, Connect)
            assert self.retry_due[connect.address] == min(self.retry_due.values())
            self.phase = State.CONNECTING
        else:
            assert rest == []
        self._track(actions, was)
        if self.m.deadline <= self.now:
            # A timer is still due (a retry that fell due while a link was being set
            # up): the driver ticks again at once, and that tick must make progress,
            # so that within a step or two its next wait is in the future.
            assert actions, "a tick left a timer due and did nothing"
            assert again < 2, "ticks keep leaving timers due"
            self._tick(again + 1)

    @rule(
        step=st.one_of(
            st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 2.0]),
            st.sampled_from([0.0, 0.5, 3.0, 5.0, 31.0]),
            st.floats(0.0, 100.0, allow_nan=False, allow_infinity=False),
        )
    )
    def time_passes(self, step: float) -> None:
        self.now += step
        self._tick()

    @precondition(lambda self: math.isfinite(self.m.deadline))
    @rule()
    def tick_at_deadline(self) -> None:
        deadline = self.m.deadline
        self.now = max(self.now, deadline)
        before = (self.m.state, deadline)
        self._tick()
        assert (self.m.state, self.m.deadline) != before, "a tick at the deadline did nothing"

    @rule(now=st.integers(0, 7))
    def close(self, now: int) -> None:
        if now:  # closing ends everything: only now and then
            return
        was = self.phase
        actions = self.m.handle(Close(), self.now)
        assert actions == CLOSE_ACTIONS[was]
        self._track(actions, was)
        self.run = None
        self.phase = State.CLOSED

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        m = self.m
        assert m.state in TRANSITIONS
        assert m.state is self.phase
        assert (self.link != "down") == (self.phase in (State.CONNECTING, State.STREAMING))
        assert self.scanning == (self.phase in SCANNING_STATES)
        assert m.has_streamed == bool(self.ready)
        assert m.reconnects == self.reconnects
        assert not math.isnan(m.deadline)
        if self.phase is State.STREAMING:
            assert self.link == "up"
            assert self.pending is None
        if self.phase is State.CONNECTING:
            assert self.pending is not None
        if self.phase is State.CLOSED:
            assert m.deadline == INF
            assert received(m, PARKED, self.now) == []


MachineAgainstModel.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None
)
test_machine_against_model = MachineAgainstModel.TestCase


# --- a source with a single peer (a CAN bus) ------------------------------------------


def single_peer_connecting(vin: str | None, advertised: str) -> VehicleMachine:
    m = VehicleMachine(vin, first_time=True, single_peer=True)
    m.start(0.0)
    assert m.handle(AdvertisementSeen("can:virtual", advertised), 0.0) == [
        StopScan(),
        Connect("can:virtual"),
    ]
    assert m.handle(Connected(), 0.0) == [ReadIdentity()]
    return m


def test_a_single_peer_with_a_foreign_identity_fails_at_once() -> None:
    m = single_peer_connecting(VIN, VIN)
    actions = m.handle(IdentityRead(OTHER_VIN), 0.5)
    assert actions[0] == Disconnect()
    assert isinstance(actions[-1], Fail)
    assert isinstance(actions[-1].error, IdentityMismatch)
    assert OTHER_VIN in str(actions[-1].error)
    assert m.state is State.CLOSED


def test_a_single_peer_that_cannot_be_set_up_fails_with_its_own_error() -> None:
    m = single_peer_connecting(None, "")
    error = ConnectionFailed("the bus broadcast no VIN")
    assert m.handle(ConnectFailed(error), 1.0) == [Disconnect(), Fail(error)]


def test_a_single_peer_is_retried_once_it_has_streamed() -> None:
    m = single_peer_connecting(VIN, VIN)
    m.handle(IdentityRead(VIN), 0.0)
    m.handle(Subscribed(), 0.0)
    assert m.handle(LinkLost(), 1.0) == LOST_WHILE_STREAMING
    m.handle(AdvertisementSeen("can:virtual", VIN), 2.0)
    assert m.handle(ConnectFailed(ConnectionFailed("x")), 2.0) == SETUP_FAILED
    assert m.state is State.RECONNECTING


def test_an_advertisement_without_a_vin_takes_the_identity_it_reads() -> None:
    m = single_peer_connecting(None, "")
    assert m.handle(IdentityRead(OTHER_VIN), 0.0) == [Subscribe()]
    assert m.handle(Subscribed(), 0.0) == [Ready(OTHER_VIN, "can:virtual")]
    assert m.vin == OTHER_VIN


def test_data_that_is_no_reading_keeps_the_link_alive_and_ends_an_outage() -> None:
    m = streaming(timeouts=Timeouts(loose_connection=2.0))
    assert m.data_received(1.5) == []
    assert m.deadline == 3.5
    assert m.tick(3.5) == LOST_WHILE_STREAMING
    m.handle(AdvertisementSeen(ADDRESS, VIN), 4.0)
    m.handle(Connected(), 4.0)
    m.handle(IdentityRead(VIN), 4.0)
    m.handle(Subscribed(), 4.0)
    assert m.reconnects == 0
    m.data_received(4.5)
    assert m.reconnects == 1


def test_a_source_cannot_emit_disconnected_itself() -> None:
    m = streaming()
    assert m.event_received(EventKind.DISCONNECTED, 1.0) == []
