"""Trips and charging sessions from readings: the rules of o2x.trips, by hand and by hypothesis."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x.model import (
    BatteryState,
    Event,
    EventKind,
    Gear,
    LiveData,
    Measure,
    ParkBrake,
    SystemState,
    VehicleData,
    VehicleInfo,
    VehicleStatus,
)
from o2x.trips import ChargingSession, Trip, TripTracker

VIN = "VR1AB12C3D4567890"
T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
P, D, C, U = (
    VehicleStatus.PARKED,
    VehicleStatus.DRIVING,
    VehicleStatus.CHARGING,
    VehicleStatus.UNKNOWN,
)


def reading(
    second: float,
    status: VehicleStatus,
    *,
    odometer: float | None = 1000.0,
    soc: int | None = 80,
    speed: float | None = None,
    power: float | None = None,
) -> VehicleInfo:
    live = None if speed is None and power is None else LiveData(speed=speed, pack_power=power)
    return VehicleInfo(
        vin=VIN,
        received_at=T0 + dt.timedelta(seconds=second),
        status=status,
        current_alert=None,
        previous_alert=None,
        data=VehicleData(
            battery_soc=None if soc is None else Measure(soc, "%"),
            system_state=SystemState.UNKNOWN,
            battery_state=BatteryState.UNKNOWN,
            remaining_autonomy=None,
            rnd=Gear.UNKNOWN,
            charge_delay=None,
            park_brake_status=ParkBrake.UNKNOWN,
            total_odometer=None if odometer is None else Measure(odometer, "km"),
        ),
        live=live,
    )


def feed(tracker: TripTracker, readings: list[VehicleInfo]) -> list[Trip | ChargingSession]:
    done: list[Trip | ChargingSession] = []
    for info in readings:
        done.extend(tracker.reading(info))
    return done


LOST = Event(EventKind.DISCONNECTED, T0)


# --- by hand ------------------------------------------------------------------------


def test_a_trip_from_parked_to_parked_with_its_values() -> None:
    tracker = TripTracker(settle=0)
    done = feed(
        tracker,
        [
            reading(0, P, odometer=1000.0, soc=80),
            reading(10, D, odometer=1000.0, soc=80, speed=0, power=0.0),
            reading(70, D, odometer=1001.0, soc=79, speed=45, power=-3.6),
            reading(130, D, odometer=1002.5, soc=78, speed=38, power=-3.6),
            reading(131, P, odometer=1002.5, soc=78, speed=0, power=0.0),
        ],
    )
    assert len(done) == 1
    trip = done[0]
    assert isinstance(trip, Trip)
    assert (trip.started_at, trip.ended_at) == (
        T0 + dt.timedelta(seconds=10),
        T0 + dt.timedelta(seconds=131),
    )
    assert (trip.start_odometer, trip.end_odometer, trip.distance) == (1000.0, 1002.5, 2.5)
    assert (trip.start_soc, trip.end_soc, trip.soc_used) == (80, 78, 2)
    assert trip.max_speed == 45
    # Trapezoids: 60 s from 0 to -3.6 kW, 60 s at -3.6 kW, 1 s from -3.6 to 0.
    assert trip.energy_used == pytest.approx((1.8 * 60 + 3.6 * 60 + 1.8 * 1) / 3600, abs=1e-3)
    assert trip.link_losses == 0
    assert tracker.current is None


def test_a_drive_seen_from_its_middle_is_not_reported() -> None:
    tracker = TripTracker(settle=0)
    done = feed(
        tracker, [reading(0, D), reading(100, D, odometer=1005.0), reading(101, P, odometer=1005.0)]
    )
    assert done == []


def test_a_short_stop_in_neutral_does_not_end_the_trip() -> None:
    tracker = TripTracker(settle=30)
    done = feed(
        tracker,
        [
            reading(0, P),
            reading(1, D),
            reading(100, D, odometer=1002.0),
            reading(101, P, odometer=1002.0),  # a red light
            reading(120, P, odometer=1002.0),
            reading(121, D, odometer=1002.0),  # off again before 30 s
            reading(300, D, odometer=1005.0),
            reading(301, P, odometer=1005.0),
            reading(320, P, odometer=1005.0),
        ],
    )
    assert done == []
    assert isinstance(tracker.current, Trip)
    [trip] = tracker.reading(reading(331, P, odometer=1005.0))
    assert isinstance(trip, Trip)
    # It ends where the car stopped, not where the stop had lasted long enough.
    assert trip.ended_at == T0 + dt.timedelta(seconds=301)
    assert trip.distance == 5.0


def test_trips_below_the_minimum_are_dropped() -> None:
    tracker = TripTracker(settle=0, min_distance=0.2)
    moved = feed(
        tracker,
        [
            reading(0, P),
            reading(1, D),
            reading(200, D, odometer=1000.1),
            reading(201, P, odometer=1000.1),
        ],
    )
    assert moved == []
    # Without an odometer, the duration decides.
    short = feed(tracker, [reading(300, D, odometer=None), reading(330, P, odometer=None)])
    assert short == []
    long = feed(tracker, [reading(400, D, odometer=None), reading(500, P, odometer=None)])
    assert len(long) == 1
    assert long[0].distance is None  # type: ignore[union-attr]


def test_a_charging_session() -> None:
    tracker = TripTracker(settle=0)
    done = feed(
        tracker,
        [
            reading(0, P, soc=40),
            *(reading(10 + 300 * step, C, soc=40 + step, power=1.2) for step in range(13)),
            reading(3611, P, soc=52, power=0.0),
        ],
    )
    [session] = done
    assert isinstance(session, ChargingSession)
    assert (session.start_soc, session.end_soc, session.soc_added) == (40, 52, 12)
    assert session.duration == 3601
    assert session.energy_in == pytest.approx(1.2 + 0.6 / 3600, abs=1e-3)
    # The O2X dongle gives no pack power: no energy rather than a made-up one.
    tracker = TripTracker(settle=0)
    [session] = feed(tracker, [reading(0, P), reading(10, C), reading(200, C), reading(201, P)])
    assert isinstance(session, ChargingSession)
    assert session.energy_in is None


def test_a_link_loss_mid_trip_is_counted_and_the_trip_goes_on() -> None:
    tracker = TripTracker(settle=0)
    feed(tracker, [reading(0, P), reading(1, D), reading(60, D, odometer=1001.0)])
    assert tracker.event(LOST) == []
    [trip] = feed(tracker, [reading(120, D, odometer=1002.0), reading(180, P, odometer=1003.0)])
    assert isinstance(trip, Trip)
    assert trip.link_losses == 1
    assert trip.distance == 3.0


def test_a_link_loss_while_the_end_settles_ends_the_trip_there() -> None:
    tracker = TripTracker(settle=30)
    feed(
        tracker,
        [
            reading(0, P),
            reading(1, D),
            reading(100, D, odometer=1002.0),
            reading(101, P, odometer=1002.0),
        ],
    )
    [trip] = tracker.event(LOST)
    assert isinstance(trip, Trip)
    assert trip.ended_at == T0 + dt.timedelta(seconds=101)
    assert trip.link_losses == 0
    # The tracker saw the car parked: the next drive is a trip.
    [after] = feed(
        tracker,
        [
            reading(5000, D, odometer=1002.0),
            reading(5100, P, odometer=1004.0),
            reading(5140, P, odometer=1004.0),
        ],
    )
    assert isinstance(after, Trip)
    assert after.distance == 2.0


def test_a_gap_ends_what_was_under_way_at_the_last_reading_before_it() -> None:
    tracker = TripTracker(settle=0, max_gap=600)
    feed(tracker, [reading(0, P), reading(1, D), reading(100, D, odometer=1003.0)])
    [trip] = tracker.reading(reading(10_000, D, odometer=1050.0))
    assert isinstance(trip, Trip)
    assert trip.ended_at == T0 + dt.timedelta(seconds=100)
    assert trip.distance == 3.0
    # The drive after the gap was not seen to start.
    assert tracker.current is None


def test_a_night_parked_and_asleep_then_a_drive_is_a_trip() -> None:
    tracker = TripTracker(settle=0, max_gap=600)
    feed(tracker, [reading(0, P), reading(1, P)])
    assert tracker.event(LOST) == []
    [trip] = feed(
        tracker,
        [
            reading(40_000, D),
            reading(40_300, D, odometer=1004.0),
            reading(40_301, P, odometer=1004.0),
        ],
    )
    assert isinstance(trip, Trip)
    assert trip.started_at == T0 + dt.timedelta(seconds=40_000)


def test_unknown_readings_neither_end_nor_start_anything() -> None:
    tracker = TripTracker(settle=0)
    done = feed(
        tracker,
        [
            reading(0, P),
            reading(1, D),
            reading(50, U, odometer=1001.0, speed=99),
            reading(100, D, odometer=1002.0),
        ],
    )
    assert done == []
    [trip] = tracker.reading(reading(101, P, odometer=1002.0))
    assert trip.max_speed == 99  # type: ignore[union-attr]
    assert (
        feed(
            TripTracker(settle=0), [reading(0, U), reading(1, D), reading(500, P, odometer=1009.0)]
        )
        == []
    )


def test_straight_from_driving_to_charging() -> None:
    tracker = TripTracker(settle=0)
    done = feed(
        tracker,
        [
            reading(0, P),
            reading(1, D),
            reading(100, D, odometer=1002.0),
            reading(101, C, odometer=1002.0, soc=50),
            reading(500, C, soc=55),
            reading(501, P, soc=55),
        ],
    )
    assert [type(record) for record in done] == [Trip, ChargingSession]
    assert done[1].start_soc == 50  # type: ignore[union-attr]


def test_bad_input_is_refused_with_a_type_error() -> None:
    tracker = TripTracker()
    with pytest.raises(TypeError, match="VehicleInfo"):
        tracker.reading({"status": "parked"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Event"):
        tracker.event("disconnected")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="settle"):
        TripTracker(settle=-1)
    with pytest.raises(ValueError, match="max_gap"):
        TripTracker(max_gap=float("nan"))


# --- by hypothesis --------------------------------------------------------------------

STATUSES = st.sampled_from([P, D, C, U])


@st.composite
def drives(draw: st.DrawFn) -> list[VehicleInfo | Event]:
    """Readings of any statuses, a second or more apart, the odometer only growing, and
    link losses anywhere."""
    items: list[VehicleInfo | Event] = []
    second = 0.0
    odometer = 1000.0
    soc = 50
    for _ in range(draw(st.integers(0, 60))):
        if draw(st.integers(0, 9)) == 0:
            items.append(LOST)
            continue
        second += draw(st.sampled_from([0, 1, 1, 5, 40, 700]))
        status = draw(STATUSES)
        if status is D:
            odometer += draw(st.sampled_from([0.0, 0.1, 0.5, 2.0]))
        soc = max(0, min(100, soc + draw(st.integers(-2, 2))))
        items.append(
            reading(
                second, status, odometer=odometer, soc=soc, power=draw(st.none() | st.floats(-5, 5))
            )
        )
    return items


@settings(max_examples=300, deadline=None)
@given(drives(), st.sampled_from([0, 1, 30]))
def test_records_are_consistent_with_the_readings(
    items: list[VehicleInfo | Event], settle: int
) -> None:
    tracker = TripTracker(settle=settle)
    done: list[Trip | ChargingSession] = []
    for item in items:
        result = tracker.reading(item) if isinstance(item, VehicleInfo) else tracker.event(item)
        assert len(result) <= 1
        done.extend(result)
    times = [item.received_at for item in items if isinstance(item, VehicleInfo)]
    previous_end = None
    for record in done:
        assert record.started_at <= record.ended_at
        assert record.started_at in times
        assert record.ended_at in times
        if previous_end is not None:
            assert record.started_at >= previous_end  # one at a time, in order
        previous_end = record.ended_at
        if isinstance(record, Trip):
            assert record.distance is not None
            assert record.distance >= 0.2
            assert record.distance == pytest.approx(record.end_odometer - record.start_odometer)  # type: ignore[operator]
        else:
            assert record.duration >= 60
        assert record.duration <= 600 * len(times)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([P, C]), st.integers(1, 5), st.integers(0, 30)), max_size=12)
)
def test_every_drive_seen_to_start_and_end_is_one_trip(
    phases: list[tuple[VehicleStatus, int, int]],
) -> None:
    """Standing phases with drives between them, a second apart: each drive of 2 km or
    more between two standing phases is exactly one trip of that distance."""
    tracker = TripTracker(settle=0)
    second, odometer = 0, 1000.0
    expected: list[float] = []
    done: list[Trip | ChargingSession] = []
    for index, (standing, length, tenths) in enumerate(phases):
        for _ in range(length):
            done.extend(tracker.reading(reading(second, standing, odometer=odometer)))
            second += 1
        if index == len(phases) - 1:
            break
        distance = 2 + tenths / 10
        for step in range(61):
            done.extend(
                tracker.reading(reading(second, D, odometer=odometer + distance * step / 60))
            )
            second += 1
        odometer += distance
        expected.append(distance)
    trips = [record for record in done if isinstance(record, Trip)]
    assert [trip.distance for trip in trips] == pytest.approx(expected)


def test_the_tracker_imports_no_io_library() -> None:
    """Sans-I/O: the module's own imports are the standard library's pure parts, attrs
    and the model."""
    import ast
    from pathlib import Path

    import o2x.trips

    tree = ast.parse(Path(o2x.trips.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported == {"__future__", "datetime", "math", "typing", "attrs", "model"}
