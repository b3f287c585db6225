"""The bridge's cadence and payload rules without a broker: o2x.mqtt.publication on a
virtual clock, and evcc's status from readings decoded from hand-written CAN frames.

The clock here is a number passed to ``Publication.news``: the timelines of the
hypothesis tests run the way ``MqttBridge`` does (news at every change and at every
``wake_at``), so that the rules of docs/mqtt.md are checked on thousands of timelines
in a second, with no sleeping and no broker.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x import SystemState, VehicleInfo
from o2x.can import AmiBus
from o2x.dongle.frames import decode_frame, encode_info
from o2x.model import EventKind, VehicleStatus
from o2x.mqtt.messages import Topics, discovery_messages, evcc_status
from o2x.mqtt.publication import MAX_EVENTS, Latest, Message, Publication
from o2x.trips import ChargingSession, Trip

VIN = "VR1AB12C3D4567890"
TOPICS = Topics(VIN)
T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)


def reading(n: int, **fields: object) -> VehicleInfo:
    """Reading number ``n`` from the O2X dongle, received ``n`` seconds after T0."""
    frame = decode_frame(encode_info(seq=n % 65536, **fields))  # type: ignore[arg-type]
    return VehicleInfo.from_frame(frame, vin=VIN, received_at=T0 + dt.timedelta(seconds=n))


def topics_of(sent: list[Message]) -> list[str]:
    return [m.topic.removeprefix(TOPICS.base + "/") for m in sent]


# --- evcc's status over CAN, from frames written by hand -------------------------------
# Layouts from docs/can.md section 2 (little-endian; byte n = bits 8n..8n+7):
# 0x580 current 0.1 A signed bytes 0-1, voltage 0.01 V bytes 2-3, SoC byte 5;
# 0x581 odometer 0.1 km bytes 4-6, speed km/h byte 7; 0x582 remaining charge time, s,
# bytes 0-1 (FFFF no estimate); 0x713 range byte 0 & 0x7F, gear bit 7 of byte 0 + bit 0
# of byte 1 (0 R, 1 N, 2 D), ready byte 2 bit 2, brake byte 3 bit 5; 0x714 brake byte 0.

# +1.6 A = 0x0010 | 52.60 V = 5260 = 0x148C | SoC 85 % = 0x55
BATTERY_CHARGING = "10 00 8c 14 00 55 00 00"
# 0.0 A | 50.20 V = 5020 = 0x139C | SoC 64 % = 0x40
BATTERY_ZERO = "00 00 9c 13 00 40 00 00"
# -41.5 A = 0xFE61 | 50.20 V | SoC 64 %
BATTERY_DRIVING = "61 fe 9c 13 00 40 00 00"
# 4696.2 km = 46962 = 0x00B772 | speed 0
STANDING = "00 00 00 00 72 b7 00 00"
# same | speed 32 km/h = 0x20
AT_32 = "00 00 00 00 72 b7 00 20"
# 9000 s = 0x2328 (150 min to full)
CHARGE_9000_S = "28 23 00 00 00 00 00 00"
CHARGE_NO_ESTIMATE = "ff ff 00 00 00 00 00 00"
# N (bit 7 of byte 0 set), range 40 (0x80 | 0x28 = 0xA8), not ready (0x03), brake on (0xA0)
N_OFF_BRAKE = "a8 00 03 a0 00 00 00"
# D (byte 1 bit 0), range 45 = 0x2D, ready (0x05), released (0x80)
D_READY = "2d 01 05 80 00 00 00"


def can_reading(*frames: tuple[int, str]) -> VehicleInfo:
    bus = AmiBus()
    for t, (can_id, text) in enumerate(frames):
        bus.feed(can_id, bytes.fromhex(text), t / 100)
    return bus.snapshot(vin=VIN, received_at=T0)


def test_evcc_status_charging_over_can_is_c() -> None:
    info = can_reading((0x580, BATTERY_CHARGING), (0x581, STANDING), (0x582, CHARGE_9000_S))
    assert info.status is VehicleStatus.CHARGING
    assert evcc_status(info) == "C"


def test_evcc_status_a_charger_estimate_without_current_is_b() -> None:
    info = can_reading(
        (0x580, BATTERY_ZERO), (0x581, STANDING), (0x582, CHARGE_9000_S), (0x713, N_OFF_BRAKE)
    )
    assert info.status is VehicleStatus.PARKED
    assert evcc_status(info) == "B"


def test_evcc_status_no_estimate_is_a() -> None:
    info = can_reading((0x580, BATTERY_ZERO), (0x581, STANDING), (0x582, CHARGE_NO_ESTIMATE))
    assert evcc_status(info) == "A"
    # 0x582 never seen: nothing says a charger is there.
    assert evcc_status(can_reading((0x580, BATTERY_ZERO), (0x581, STANDING))) == "A"


@pytest.mark.parametrize(
    "frames",
    [
        # ready in D: driving, though the charger keeps its last estimate
        [(0x580, BATTERY_DRIVING), (0x581, STANDING), (0x582, CHARGE_9000_S), (0x713, D_READY)],
        # a speed above 0, gear unknown
        [(0x580, BATTERY_ZERO), (0x581, AT_32), (0x582, CHARGE_9000_S)],
    ],
    ids=["ready-in-d", "speed-32"],
)
def test_evcc_status_a_moving_car_is_not_plugged_in(frames: list[tuple[int, str]]) -> None:
    info = can_reading(*frames)
    assert info.data.charge_delay is not None  # the estimate is there...
    assert evcc_status(info) == "A"  # ...but a car on the move is not plugged in


def test_evcc_status_from_the_o2x_dongle() -> None:
    charging = SystemState.CHARGING
    assert evcc_status(reading(1, system_state=charging, charge_delay=0)) == "C"
    # A deferred charge waiting to start: plugged in, not charging.
    assert evcc_status(reading(1, system_state=charging, charge_delay=30)) == "B"
    # The O2X dongle says nothing of the plug otherwise.
    assert evcc_status(reading(1, system_state=SystemState.OFF, charge_delay=0)) == "A"


# --- Publication: one connection's messages ----------------------------------------------


def test_a_connection_starts_with_discovery_then_online() -> None:
    configs = discovery_messages(TOPICS)
    sent = Publication(TOPICS, interval=5, discovery=configs).start()
    assert [m.topic for m in sent[:-1]] == [topic for topic, _ in configs]
    assert all(m.retain and m.qos == 1 for m in sent)
    assert json.loads(sent[0].payload) == configs[0][1]
    assert sent[-1] == Message(TOPICS.availability, "online", 1, True)
    assert Publication(TOPICS, interval=5).goodbye() == Message(
        TOPICS.availability, "offline", 1, True
    )


def test_states_wait_for_their_turn_and_a_status_change_does_not() -> None:
    publication = Publication(TOPICS, interval=5)
    latest = Latest(info=reading(1, battery_soc=80))
    assert topics_of(publication.news(0.0, latest)) == ["state", "evcc/soc", "evcc/status"]
    latest.info = reading(2, battery_soc=80)
    assert publication.news(1.0, latest) == []  # not due: waits until 5.0
    assert publication.wake_at(latest) == 5.0
    latest.info = reading(3, battery_soc=79)
    latest.status = VehicleStatus.DRIVING
    sent = publication.news(2.0, latest)  # a status change: at once, with its state
    assert topics_of(sent) == ["status", "state", "evcc/soc"]
    assert sent[0] == Message(TOPICS.status, "driving", 1, True)
    assert json.loads(sent[1].payload)["receivedAt"] == "2026-05-01T08:00:03Z"
    assert (sent[1].qos, sent[1].retain) == (0, True)
    assert sent[2].payload == "79"  # evcc values only when they change
    latest.info = reading(4, battery_soc=79)
    assert publication.news(6.9, latest) == []
    assert topics_of(publication.news(7.0, latest)) == ["state"]


def test_a_lost_link_is_published_at_once() -> None:
    publication = Publication(TOPICS, interval=60)
    latest = Latest(info=reading(1))
    publication.news(0.0, latest)
    latest.connected = False
    sent = publication.news(0.5, latest)
    assert topics_of(sent) == ["state"]
    assert json.loads(sent[0].payload)["connected"] is False
    assert publication.news(0.6, latest) == []  # said once
    latest.connected = True  # found again: said at once too
    assert json.loads(publication.news(0.7, latest)[0].payload)["connected"] is True


def test_the_heartbeat_fills_silences_and_never_spins() -> None:
    publication = Publication(TOPICS, interval=0)  # every reading at once...
    latest = Latest(info=reading(1))
    assert topics_of(publication.news(10.0, latest))[0] == "state"
    assert publication.wake_at(latest) == 11.0  # ...but a heartbeat at most once a second
    assert publication.news(10.5, latest) == []
    assert publication.news(11.0, latest) == [Message(TOPICS.availability, "online", 0, True)]
    assert publication.wake_at(latest) == 12.0
    # Before the first reading, the heartbeat alone.
    empty = Publication(TOPICS, interval=5)
    assert topics_of(empty.news(0.0, Latest())) == ["availability"]
    assert empty.wake_at(Latest()) == 5.0


def test_events_trips_and_charges_go_out_at_once() -> None:
    publication = Publication(TOPICS, interval=5)
    latest = Latest(info=reading(1))
    publication.news(0.0, latest)
    for _ in range(MAX_EVENTS + 3):
        publication.event(EventKind.CANT_CHARGE)
    publication.event(EventKind.DISCONNECTED)
    trip = Trip(VIN, T0, T0 + dt.timedelta(minutes=12), 100.0, 106.5, 6.5, 80, 77, 3, None, 45, 0)
    charge = ChargingSession(VIN, T0, T0 + dt.timedelta(hours=1), 40, 60, 20, 1.1, 1)
    latest.trip, latest.charge = trip, charge
    sent = publication.news(0.1, latest)
    events = [m for m in sent if m.topic == TOPICS.event]
    assert len(events) == MAX_EVENTS  # the oldest were dropped, the last kept
    assert json.loads(events[-1].payload) == {"event": "disconnected"}
    assert all((m.qos, m.retain) == (0, False) for m in events)
    records = {m.topic: m for m in sent if m.topic in (TOPICS.trip, TOPICS.charge)}
    assert json.loads(records[TOPICS.trip].payload)["distance"] == {"unit": "km", "value": 6.5}
    assert json.loads(records[TOPICS.charge].payload)["socAdded"] == {"unit": "%", "value": 20}
    assert all((m.qos, m.retain) == (1, True) for m in records.values())
    assert publication.news(0.2, latest) == []  # each once


def test_the_interval_is_checked() -> None:
    for bad in (-1.0, math.inf, math.nan, True, "5"):
        with pytest.raises(ValueError, match="interval"):
            Publication(TOPICS, interval=bad)  # type: ignore[arg-type]
    assert Publication(TOPICS, interval=2).interval == 2.0


# --- timelines on a virtual clock ------------------------------------------------------


@dataclass
class Run:
    """The messages of one timeline, each with its time, as MqttBridge would send them."""

    interval: float
    heartbeat: float
    sent: list[tuple[float, Message]] = field(default_factory=list)
    #: (time, reading number) of each reading
    readings: list[tuple[float, int]] = field(default_factory=list)
    #: (time, status) of each status change; times of each link change
    statuses: list[tuple[float, VehicleStatus]] = field(default_factory=list)
    links: list[float] = field(default_factory=list)


ACTIONS = st.sampled_from(["reading", "reading", "reading", "status", "link", "quiet"])
STEP = st.tuples(st.floats(min_value=0, max_value=12, allow_nan=False), ACTIONS)


def run_timeline(interval: float, steps: list[tuple[float, str]]) -> Run:
    publication = Publication(TOPICS, interval=interval)
    run = Run(interval, publication.heartbeat)
    latest = Latest()
    statuses = [VehicleStatus.PARKED, VehicleStatus.DRIVING, VehicleStatus.CHARGING]
    now = 0.0
    count = 0

    def wake_until(target: float) -> None:
        nonlocal now
        for _ in range(10_000):
            wake = max(now, publication.wake_at(latest))
            if wake > target:
                return
            now = wake
            run.sent.extend((now, m) for m in publication.news(now, latest))
        raise AssertionError("the publication keeps waking without publishing")

    for delay, action in steps:
        target = now + delay
        wake_until(target)
        now = target
        if action in {"reading", "status"}:
            count += 1
            latest.info = reading(count, battery_soc=50 + count % 3)
            if not latest.connected:  # a reading: the link is back (as in MqttBridge)
                latest.connected = True
                run.links.append(now)
            run.readings.append((now, count))
        if action == "status":
            latest.status = statuses[count % 3]
            if run.statuses and run.statuses[-1][1] is latest.status:
                latest.status = statuses[(count + 1) % 3]
            run.statuses.append((now, latest.status))
        if action == "link":
            latest.connected = not latest.connected
            if latest.info is not None:
                run.links.append(now)
        run.sent.extend((now, m) for m in publication.news(now, latest))
    wake_until(now + 3 * run.heartbeat)
    return run


def states(run: Run) -> list[tuple[float, int]]:
    """(time, reading number) of each state message."""
    return [(t, _number(m)) for t, m in run.sent if m.topic == TOPICS.state]


def _number(message: Message) -> int:
    # Reading n was received n seconds after T0 (see reading()).
    received = json.loads(message.payload)["receivedAt"]
    at = dt.datetime.strptime(received, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return int((at - T0).total_seconds())


INTERVALS = st.sampled_from([0.0, 0.2, 1.0, 5.0])


@settings(max_examples=300, deadline=None)
@given(INTERVALS, st.lists(STEP, max_size=40))
def test_states_are_never_closer_than_the_interval_unless_urgent(
    interval: float, steps: list[tuple[float, str]]
) -> None:
    run = run_timeline(interval, steps)
    urgent = {t for t, _ in run.statuses} | set(run.links)
    times = [t for t, _ in states(run)]
    for before, after in itertools.pairwise(times):
        assert after >= before + interval or after in urgent


@settings(max_examples=300, deadline=None)
@given(INTERVALS, st.lists(STEP, max_size=40))
def test_every_reading_is_published_within_the_interval(
    interval: float, steps: list[tuple[float, str]]
) -> None:
    run = run_timeline(interval, steps)
    published = states(run)
    for at, number in run.readings:
        # The first state at or after the reading carries it or a newer one, in time.
        following = [(t, n) for t, n in published if t >= at and n >= number]
        assert following, f"reading {number} at {at} never published"
        assert following[0][0] <= at + interval
    # And never one older than a state already sent: the latest, not a backlog.
    numbers = [n for _, n in published]
    assert numbers == sorted(numbers)


@settings(max_examples=300, deadline=None)
@given(INTERVALS, st.lists(STEP, max_size=40))
def test_a_status_change_is_published_at_once_with_its_state(
    interval: float, steps: list[tuple[float, str]]
) -> None:
    run = run_timeline(interval, steps)
    for at, status in run.statuses:
        now = [m for t, m in run.sent if t == at]
        assert Message(TOPICS.status, status.value, 1, True) in now
        assert any(m.topic == TOPICS.state for m in now)
    status_messages = [m.payload for _, m in run.sent if m.topic == TOPICS.status]
    assert status_messages == [s.value for _, s in run.statuses]


@settings(max_examples=300, deadline=None)
@given(INTERVALS, st.lists(STEP, max_size=40))
def test_the_heartbeat_is_never_too_often_and_silence_never_too_long(
    interval: float, steps: list[tuple[float, str]]
) -> None:
    run = run_timeline(interval, steps)
    marks = [
        (t, m.topic == TOPICS.availability)
        for t, m in run.sent
        if m.topic == TOPICS.state or (m.topic == TOPICS.availability and m.qos == 0)
    ]
    assert marks, "nothing was published"
    assert marks[0][0] == 0.0  # the first news at once
    for (before, _), (after, heartbeat) in itertools.pairwise(marks):
        assert after - before <= run.heartbeat + 1e-9  # never silent longer
        if heartbeat:
            assert after - before >= run.heartbeat - 1e-9  # never more often


@settings(max_examples=200, deadline=None)
@given(INTERVALS, st.lists(STEP, max_size=40))
def test_evcc_values_are_published_only_when_they_change(
    interval: float, steps: list[tuple[float, str]]
) -> None:
    run = run_timeline(interval, steps)
    by_topic: dict[str, list[str]] = {}
    for _, m in run.sent:
        if "/evcc/" in m.topic:
            by_topic.setdefault(m.topic, []).append(m.payload)
    for payloads in by_topic.values():
        assert all(a != b for a, b in itertools.pairwise(payloads))
    # And the last evcc/soc is the last published state's.
    last_states = [m for _, m in run.sent if m.topic == TOPICS.state]
    if last_states:
        soc = json.loads(last_states[-1].payload)["data"]["batterySoc"]["value"]
        assert by_topic[TOPICS.evcc_soc][-1] == str(soc)
