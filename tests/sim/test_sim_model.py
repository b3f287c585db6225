"""The simulator's pure vehicle model: determinism, physics of each phase, alerts, events."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x import Alerts, BatteryState, EventKind, Gear, ParkBrake, SystemState
from o2x.sim import Phase, VehicleModel
from o2x.sim.model import AUTONOMY_KM_AT_FULL, LOW_SOC_ALERT

BATTERY_CHARGE = Alerts(battery_charge=True).mask
PARKING_BRAKE = Alerts(parking_brake=True).mask


def run(model: VehicleModel, seconds: float, dt: float = 1.0) -> list:
    return [model.step(dt) for _ in range(round(seconds / dt))]


def autonomy_consistent(values) -> bool:
    expected = values.battery_soc * AUTONOMY_KM_AT_FULL / 100
    return abs(values.remaining_autonomy - expected) <= 1


def test_same_seed_same_trajectory():
    a = VehicleModel(seed=7, autopilot=True)
    b = VehicleModel(seed=7, autopilot=True)
    assert run(a, 3600, dt=5) == run(b, 3600, dt=5)


def test_different_seeds_differ():
    a = VehicleModel(seed=1, autopilot=True)
    b = VehicleModel(seed=2, autopilot=True)
    assert run(a, 3600, dt=5) != run(b, 3600, dt=5)


def test_a_new_model_is_parked():
    values = VehicleModel().snapshot()
    assert values.system_state is SystemState.OFF
    assert values.rnd is Gear.NEUTRAL
    assert values.park_brake_status is ParkBrake.ACTIVATED
    assert values.battery_soc == 80
    assert values.current_alert == 0


def test_driving_drains_the_battery_and_turns_the_odometer():
    model = VehicleModel(seed=3, battery_soc=70.0, total_odometer=100.0)
    model.drive()
    history = [model.snapshot(), *run(model, 1800)]
    socs = [v.battery_soc for v in history]
    odometers = [v.total_odometer for v in history]
    assert socs[-1] < socs[0] - 5
    assert all(later <= earlier for earlier, later in itertools.pairwise(socs))
    assert odometers[-1] > odometers[0] + 5
    assert all(later >= earlier for earlier, later in itertools.pairwise(odometers))
    assert all(autonomy_consistent(v) for v in history)
    assert all(v.system_state is SystemState.READY and v.rnd is Gear.DRIVE for v in history)
    assert all(v.battery_state is BatteryState.DISCHARGING for v in history)
    # Half an hour in town: somewhere between a crawl and the 45 km/h limit.
    assert 5 < odometers[-1] - odometers[0] < 22.5


def test_consumption_matches_the_range():
    model = VehicleModel(seed=4, battery_soc=90.0, total_odometer=0.0)
    model.drive()
    end = run(model, 3600)[-1]
    driven = end.total_odometer
    used = 90.0 - end.battery_soc
    assert used == pytest.approx(driven * 100 / AUTONOMY_KM_AT_FULL, abs=1.0)


def test_parked_values_do_not_move():
    model = VehicleModel(seed=5)
    before = model.snapshot()
    assert run(model, 7200, dt=10)[-1] == before


def test_charging_waits_for_the_delay_then_fills_the_battery():
    model = VehicleModel(seed=6, battery_soc=40.0)
    model.charge(delay_minutes=3)
    start = model.snapshot()
    assert start.system_state is SystemState.CHARGING
    assert start.charge_delay == 3
    assert start.battery_state is BatteryState.IDLE
    waiting = run(model, 179)
    delays = [v.charge_delay for v in waiting]
    assert delays == sorted(delays, reverse=True)
    assert delays[-1] == 1
    assert all(v.battery_soc == 40 for v in waiting)
    charging = run(model, 3600)
    assert charging[0].charge_delay == 0
    assert charging[-1].battery_state is BatteryState.CHARGING
    assert charging[-1].battery_soc > 40 + 25
    socs = [v.battery_soc for v in charging]
    assert all(later >= earlier for earlier, later in itertools.pairwise(socs))
    assert all(autonomy_consistent(v) for v in charging)


def test_charging_balances_then_stops_when_full():
    model = VehicleModel(seed=8, battery_soc=95.0)
    model.charge(delay_minutes=0)
    states = [v.battery_state for v in run(model, 3 * 3600, dt=10)]
    assert BatteryState.BALANCING in states
    assert states[-1] is BatteryState.IDLE
    assert model.snapshot().battery_soc == 100


def test_charging_with_the_brake_released_is_refused():
    model = VehicleModel(seed=9, battery_soc=30.0)
    model.apply(park_brake_status=ParkBrake.RELEASED)
    model.charge(delay_minutes=0)
    assert model.drain_events() == [EventKind.CANT_CHARGE]
    assert model.drain_events() == []
    later = run(model, 600)[-1]
    assert later.system_state is not SystemState.CHARGING
    assert later.battery_soc == 30


def test_setting_charging_state_with_the_brake_released_is_refused():
    model = VehicleModel(seed=9)
    model.apply(system_state=SystemState.CHARGING, park_brake_status=ParkBrake.RELEASED)
    assert model.drain_events() == [EventKind.CANT_CHARGE]
    assert model.snapshot().system_state is SystemState.STANDBY


def test_releasing_the_brake_while_charging_stops_the_charge():
    model = VehicleModel(seed=10, battery_soc=50.0)
    model.charge(delay_minutes=0)
    run(model, 60)
    model.apply(park_brake_status=ParkBrake.RELEASED)
    assert model.drain_events() == [EventKind.CANT_CHARGE]
    soc = model.snapshot().battery_soc
    assert run(model, 1200)[-1].battery_soc == soc


def test_battery_charge_alert_below_15_percent():
    model = VehicleModel(battery_soc=float(LOW_SOC_ALERT))
    assert not model.snapshot().current_alert & BATTERY_CHARGE
    model.apply(battery_soc=LOW_SOC_ALERT - 1)
    assert model.snapshot().current_alert & BATTERY_CHARGE


def test_driving_down_to_empty_raises_low_battery_alerts():
    model = VehicleModel(seed=11, battery_soc=16.0)
    model.drive()
    values = run(model, 3600)
    alerts = [Alerts.from_mask(v.current_alert) for v in values]
    first_low = next(i for i, v in enumerate(values) if v.battery_soc < LOW_SOC_ALERT)
    assert not any(a.battery_charge for a in alerts[:first_low])
    assert all(a.battery_charge for a in alerts[first_low:])
    assert any(a.turtle_mode for a in alerts)
    assert values[-1].battery_soc == 0
    odometer = values[-1].total_odometer
    assert run(model, 600)[-1].total_odometer == odometer  # an empty battery goes nowhere


def test_parking_brake_alert_and_previous_alert():
    model = VehicleModel(seed=12)
    model.apply(system_state=SystemState.READY)  # switched on, brake still applied
    on = model.snapshot()
    assert on.current_alert == PARKING_BRAKE
    assert on.previous_alert == 0
    model.apply(park_brake_status=ParkBrake.RELEASED, rnd=Gear.DRIVE)
    moving = model.snapshot()
    assert moving.current_alert == 0
    assert moving.previous_alert == PARKING_BRAKE  # was active, is not any more
    model.apply(park_brake_status=ParkBrake.ACTIVATED)
    braked = model.snapshot()
    assert braked.current_alert == PARKING_BRAKE
    assert braked.previous_alert == 0  # active again, so not "previous"


def test_alert_masks_can_be_pinned_and_released():
    model = VehicleModel(battery_soc=10.0)
    model.apply(current_alert=Alerts(service=True), previous_alert=0b1000_0000)
    values = model.step(60)
    assert values.current_alert == Alerts(service=True).mask
    assert values.previous_alert == 0b1000_0000
    model.apply(current_alert=None, previous_alert=None)
    values = model.snapshot()
    assert values.current_alert == BATTERY_CHARGE
    # The pinned service alert was seen and is gone: it is now a previous alert.
    assert values.previous_alert & Alerts(service=True).mask


def test_fault_state_lights_the_stop_lamp():
    model = VehicleModel()
    model.apply(system_state=SystemState.FAULT)
    assert Alerts.from_mask(model.snapshot().current_alert).stop


def test_measures_can_be_unreported_and_reported_again():
    model = VehicleModel(battery_soc=55.0)
    model.apply(battery_soc=None, total_odometer=None, charge_delay=None, remaining_autonomy=None)
    values = model.snapshot()
    assert (values.battery_soc, values.total_odometer) == (None, None)
    assert (values.charge_delay, values.remaining_autonomy) == (None, None)
    model.apply(battery_soc=50)
    assert model.snapshot().battery_soc == 50


def test_setting_autonomy_sets_the_range_estimate():
    model = VehicleModel(battery_soc=50.0, seed=13)
    model.apply(remaining_autonomy=30)
    assert model.snapshot().remaining_autonomy == 30
    model.drive()
    later = run(model, 600)[-1]
    assert abs(later.remaining_autonomy - later.battery_soc * 60 / 100) <= 1


def test_apply_checks_its_arguments():
    model = VehicleModel()
    with pytest.raises(TypeError, match="unknown INFO field"):
        model.apply(speed=30)
    with pytest.raises(ValueError, match="battery_soc"):
        model.apply(battery_soc=101)
    with pytest.raises(ValueError, match="8-bit"):
        model.apply(current_alert=256)
    with pytest.raises(ValueError, match="sideways"):
        model.apply(rnd="sideways")
    with pytest.raises(ValueError, match="forward"):
        model.step(-1)


def test_a_refused_apply_changes_nothing():
    model = VehicleModel(battery_soc=50.0)
    before = model.snapshot()
    with pytest.raises(ValueError, match="total_odometer"):
        model.apply(battery_soc=20, rnd=Gear.DRIVE, total_odometer=-1)
    with pytest.raises(ValueError, match="0 % state of charge"):
        model.apply(battery_soc=0, remaining_autonomy=10)
    assert model.snapshot() == before


def test_manual_phases_stay_put_without_autopilot():
    model = VehicleModel(seed=14)
    model.drive()
    run(model, 4 * 3600, dt=30)
    assert model.phase is Phase.DRIVING
    model.charge(delay_minutes=0)  # plugging in with the brake released: refused
    assert model.drain_events() == [EventKind.CANT_CHARGE]
    model.park()
    model.charge(delay_minutes=0)
    run(model, 10 * 3600, dt=60)
    assert model.phase is Phase.CHARGING
    model.park()
    run(model, 3600, dt=60)
    assert model.phase is Phase.PARKED


def test_autopilot_cycles_parked_driving_parked_charging():
    model = VehicleModel(seed=15, autopilot=True, battery_soc=60.0)
    phases = [model.phase]
    states = []
    for _ in range(6 * 3600):
        values = model.step(2.0)
        states.append(values)
        if model.phase is not phases[-1]:
            phases.append(model.phase)
    cycle = [Phase.PARKED, Phase.DRIVING, Phase.PARKED, Phase.CHARGING]
    assert phases[:5] == [*cycle, Phase.PARKED]
    # Moving off, the parking brake lamp lights for a moment and is then "previous".
    assert any(v.current_alert & PARKING_BRAKE for v in states)
    assert any(v.previous_alert & PARKING_BRAKE and not v.current_alert for v in states)
    assert all(autonomy_consistent(v) for v in states)


def test_autopilot_runs_the_same_with_big_or_small_steps():
    small = VehicleModel(seed=16, autopilot=True)
    big = VehicleModel(seed=16, autopilot=True)
    run(small, 2000, dt=0.5)
    run(big, 2000, dt=100)
    assert small.phase is big.phase


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    soc=st.floats(0, 100),
    steps=st.lists(
        st.tuples(st.sampled_from(["step", "drive", "park", "charge"]), st.floats(0, 900)),
        max_size=40,
    ),
)
def test_invariants_hold_whatever_happens(seed, soc, steps):
    model = VehicleModel(seed=seed, battery_soc=soc, autopilot=seed % 2 == 0)
    odometer = model.snapshot().total_odometer
    for action, amount in steps:
        if action == "drive":
            model.drive()
        elif action == "park":
            model.park()
        elif action == "charge":
            model.charge(amount / 300)
        values = model.step(amount)
        assert 0 <= values.battery_soc <= 100
        assert values.total_odometer >= odometer
        odometer = values.total_odometer
        assert autonomy_consistent(values)
        assert values.charge_delay >= 0
        assert values.current_alert & values.previous_alert == 0
        assert bool(values.current_alert & BATTERY_CHARGE) == (values.battery_soc < 15)


def test_plugged_from_a_charge_even_a_refused_one_until_driving_or_parking() -> None:
    model = VehicleModel(seed=1)
    assert not model.plugged
    model.charge(0)  # parked with the brake applied: it charges
    assert model.plugged
    assert model.snapshot().system_state is SystemState.CHARGING
    model.drive()
    assert not model.plugged
    model.charge(0)  # the brake is released: refused, but the cable is in
    assert model.plugged
    assert model.drain_events() == [EventKind.CANT_CHARGE]
    assert model.snapshot().system_state is SystemState.STANDBY
    model.park()
    assert not model.plugged
