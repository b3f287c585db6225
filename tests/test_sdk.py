"""SDK JSON: to_sdk and from_sdk against the SDK's own example and every value."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from o2x.errors import O2XError, SDKFormatError
from o2x.model import (
    Alerts,
    BatteryState,
    Event,
    EventKind,
    Gear,
    Measure,
    ParkBrake,
    SystemState,
    VehicleData,
    VehicleInfo,
    VehicleStatus,
)
from o2x.sdk import from_sdk, to_sdk

# The "result" object of pims.vehicle.informations as the SDK's page prints it
# (sdk-ami-rocks-e.txt, "Subscribe to Vehicle Information"), with two changes: the
# page's typo `"vin", "VR1AB12C3D4567890"` reads `"vin": ...`, and its placeholder
# receivedAt "YYYY-MM-DDTHH:MM:SSZ" is a real time.
SDK_EXAMPLE = """
{
    "vin": "VR1AB12C3D4567890",
    "currentAlert": {
      "parkingBrake": true, "clusterIssue": true, "stop": true,
      "batteryCharge": true, "brakeSystemProblem": true,
      "service": true, "batteryTemperature": true, "turtleMode": true
    },
    "previousAlert": {
      "parkingBrake": true, "clusterIssue": true, "stop": true,
      "batteryCharge": true, "brakeSystemProblem": true,
      "service": true, "batteryTemperature": true, "turtleMode": true
    },
    "data": {
      "batterySoc": { "unit": "unit_name", "value": 42 },
      "systemState": "charging",
      "batteryState": "bootloader",
      "remainingAutonomy": { "unit": "unit_name", "value": 42 },
      "rnd": "drive",
      "chargeDelay": { "unit": "unit_name", "value": 42 },
      "parkBrakeStatus": "activated",
      "totalOdometer": { "unit": "unit_name", "value": 42 }
    },
    "receivedAt": "2026-11-22T10:15:30Z",
    "status": "charging"
}
"""

ALERT_KEYS = [
    "parkingBrake",
    "clusterIssue",
    "stop",
    "batteryCharge",
    "brakeSystemProblem",
    "service",
    "batteryTemperature",
    "turtleMode",
]
DATA_KEYS = [
    "batterySoc",
    "systemState",
    "batteryState",
    "remainingAutonomy",
    "rnd",
    "chargeDelay",
    "parkBrakeStatus",
    "totalOdometer",
]


def example() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(SDK_EXAMPLE)
    return result


# --- the SDK's example ------------------------------------------------------------------


def test_the_sdk_example_loads() -> None:
    info = from_sdk(example())
    every = Alerts.from_mask(0xFF)
    unit = Measure(42, "unit_name")
    assert info == VehicleInfo(
        vin="VR1AB12C3D4567890",
        received_at=dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=dt.UTC),
        status=VehicleStatus.CHARGING,
        current_alert=every,
        previous_alert=every,
        data=VehicleData(
            battery_soc=unit,
            system_state=SystemState.CHARGING,
            battery_state=BatteryState.BOOTLOADER,
            remaining_autonomy=unit,
            rnd=Gear.DRIVE,
            charge_delay=unit,
            park_brake_status=ParkBrake.ACTIVATED,
            total_odometer=unit,
        ),
    )


def test_the_sdk_example_comes_back_unchanged() -> None:
    original = example()
    produced = to_sdk(from_sdk(example()))
    assert produced == original
    # Key order included: printed JSON reads like the SDK's page.
    assert json.dumps(produced) == json.dumps(original)
    assert json.dumps(produced, indent=2) == json.dumps(original, indent=2)


def test_key_order() -> None:
    produced = to_sdk(from_sdk(example()))
    assert list(produced) == [
        "vin",
        "currentAlert",
        "previousAlert",
        "data",
        "receivedAt",
        "status",
    ]
    assert list(produced["currentAlert"]) == ALERT_KEYS
    assert list(produced["previousAlert"]) == ALERT_KEYS
    assert list(produced["data"]) == DATA_KEYS
    assert list(produced["data"]["batterySoc"]) == ["unit", "value"]


def test_events() -> None:
    at = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    assert to_sdk(Event(EventKind.CANT_CHARGE, at)) == {"event": "cantCharge"}
    assert to_sdk(Event(EventKind.DISCONNECTED, at)) == {"event": "disconnected"}
    assert json.dumps(to_sdk(Event(EventKind.CANT_CHARGE, at))) == '{"event": "cantCharge"}'


def test_measures_not_reported_are_null() -> None:
    data = example()
    data["data"]["batterySoc"] = None
    data["data"]["chargeDelay"] = None
    info = from_sdk(data)
    assert info.data.battery_soc is None
    assert info.data.charge_delay is None
    assert to_sdk(info) == data


def test_a_lower_case_vin_is_normalised() -> None:
    data = example()
    data["vin"] = "vr1ab12c3d4567890"
    assert to_sdk(from_sdk(data))["vin"] == "VR1AB12C3D4567890"


def test_years_before_1000_keep_four_digits() -> None:
    data = example()
    data["receivedAt"] = "0999-01-02T03:04:05Z"
    info = from_sdk(data)
    assert info.received_at == dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert to_sdk(info)["receivedAt"] == "0999-01-02T03:04:05Z"


# --- round trip over every value ----------------------------------------------------------

numbers = st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False)
measures = st.none() | st.builds(Measure, numbers, st.text(max_size=8))
vehicle_infos = st.builds(
    VehicleInfo,
    vin=st.text(alphabet="0123456789ABCDEFGHJKLMNPRSTUVWXYZ", min_size=17, max_size=17),
    received_at=st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.builds(
            dt.timezone, st.timedeltas(dt.timedelta(hours=-23), dt.timedelta(hours=23))
        ),
    ),
    status=st.sampled_from(VehicleStatus),
    current_alert=st.integers(0, 255).map(Alerts.from_mask),
    previous_alert=st.integers(0, 255).map(Alerts.from_mask),
    data=st.builds(
        VehicleData,
        battery_soc=measures,
        system_state=st.sampled_from(SystemState),
        battery_state=st.sampled_from(BatteryState),
        remaining_autonomy=measures,
        rnd=st.sampled_from(Gear),
        charge_delay=measures,
        park_brake_status=st.sampled_from(ParkBrake),
        total_odometer=measures,
    ),
)


@given(vehicle_infos)
def test_round_trip(info: VehicleInfo) -> None:
    sdk = to_sdk(info)
    assert from_sdk(sdk) == info
    # Through JSON text too: nothing to_sdk produces is beyond JSON.
    text = json.dumps(sdk, allow_nan=False)
    again = from_sdk(json.loads(text))
    assert again == info
    for name in ("battery_soc", "remaining_autonomy", "charge_delay", "total_odometer"):
        original, loaded = getattr(info.data, name), getattr(again.data, name)
        assert type(getattr(original, "value", None)) is type(getattr(loaded, "value", None))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", sdk["receivedAt"], re.ASCII)


# --- malformed input: SDKFormatError naming the SDK key path ------------------------------


def at(*path: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The object at ``path`` inside the example."""

    def get(data: dict[str, Any]) -> dict[str, Any]:
        for key in path:
            data = data[key]
        return data

    return get


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("vin missing", lambda d: d.pop("vin"), "$.vin", "required key missing"),
    ("vin not a VIN", lambda d: d.update(vin="VR1AB12C3D456789O"), "$.vin", "cannot appear"),
    ("vin too short", lambda d: d.update(vin="VR1"), "$.vin", "17 characters, not 3"),
    ("vin a number", lambda d: d.update(vin=17), "$.vin", "expected a string, not 17"),
    ("time shape", lambda d: d.update(receivedAt="2026-1-2T3:04:05Z"), "$.receivedAt", "form"),
    ("time zone", lambda d: d.update(receivedAt="2026-11-22T10:15:30+01:00"), "$.receivedAt", ""),
    ("no such day", lambda d: d.update(receivedAt="2026-02-30T10:15:30Z"), "$.receivedAt", ""),
    ("time a number", lambda d: d.update(receivedAt=0), "$.receivedAt", "must be a string"),
    ("status", lambda d: d.update(status="flying"), "$.status", "not a valid VehicleStatus"),
    ("extra key", lambda d: d.update(speed=3), "@ $", "unexpected keys ['speed']"),
    ("alert text", lambda d: at("currentAlert")(d).update(stop="false"), "$.currentAlert.stop", ""),
    ("alert 1", lambda d: at("previousAlert")(d).update(service=1), "$.previousAlert.service", ""),
    (
        "alert missing",
        lambda d: at("currentAlert")(d).pop("turtleMode"),
        "$.currentAlert.turtleMode",
        "required key missing",
    ),
    ("alert extra", lambda d: at("currentAlert")(d).update(x=True), "$.currentAlert", "['x']"),
    ("soc text", lambda d: at("data", "batterySoc")(d).update(value="42"), "batterySoc.value", ""),
    ("soc bool", lambda d: at("data", "batterySoc")(d).update(value=True), "batterySoc.value", ""),
    (
        "soc nan",
        lambda d: at("data", "batterySoc")(d).update(value=float("nan")),
        "$.data.batterySoc.value",
        "finite",
    ),
    ("unit number", lambda d: at("data", "chargeDelay")(d).update(unit=1), "chargeDelay.unit", ""),
    (
        "unit missing",
        lambda d: at("data", "totalOdometer")(d).pop("unit"),
        "$.data.totalOdometer.unit",
        "required key missing",
    ),
    ("state", lambda d: at("data")(d).update(systemState="on"), "$.data.systemState", "valid"),
    ("gear code", lambda d: at("data")(d).update(rnd=1), "$.data.rnd", "expected a string"),
    (
        "brake missing",
        lambda d: at("data")(d).pop("parkBrakeStatus"),
        "$.data.parkBrakeStatus",
        "required key missing",
    ),
    ("data a list", lambda d: d.update(data=[]), "$.data", ""),
    # Keys no JSON text has, but a dict may: sorting them must not fail.
    ("keys of two types", lambda d: d.update({1: "x", "zz": 1}), "@ $", "keys ['zz', 1]"),
    ("data keys", lambda d: at("data")(d).update({None: 1, "zz": 1}), "$.data", "None"),
    ("alert keys", lambda d: at("currentAlert")(d).update({(1,): 1, "a": 1}), "$.currentAlert", ""),
    # Only the path is put in the SDK's camelCase, never the input quoted.
    ("dotted status", lambda d: d.update(status="v.some_value"), "$.status", "'v.some_value'"),
    ("dotted time", lambda d: d.update(receivedAt="a.b_c"), "$.receivedAt", "'a.b_c'"),
    # Beyond 2**53 - 1, JSON integers are not read back exactly everywhere (RFC 8259).
    ("soc 2**53", lambda d: at("data", "batterySoc")(d).update(value=2**53), "Soc.value", "2**53"),
    (
        "soc of 5000 digits",
        lambda d: at("data", "totalOdometer")(d).update(value=-(10**5000)),
        "$.data.totalOdometer.value",
        "an integer of at least 5000 digits",
    ),
    ("status a huge int", lambda d: d.update(status=10**5000), "$.status", "expected a string"),
]


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [pytest.param(change, path, message, id=name) for name, change, path, message in MALFORMED],
)
def test_malformed_input_names_the_sdk_key_path(
    change: Callable[[dict[str, Any]], None], path: str, message: str
) -> None:
    data = example()
    change(data)
    with pytest.raises(SDKFormatError) as caught:
        from_sdk(data)
    text = str(caught.value)
    assert text.startswith("not an SDK vehicle information object: ")
    assert path in text
    assert message in text
    # Paths are the SDK's keys, never the Python attribute names.
    assert not re.search(r"[a-z]_[a-z]", text.rsplit(" @ ", maxsplit=1)[-1])
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, O2XError)


def test_every_problem_is_reported() -> None:
    data = example()
    data["vin"] = "nope"
    data["data"]["rnd"] = "sideways"
    del data["status"]
    with pytest.raises(SDKFormatError) as caught:
        from_sdk(data)
    text = str(caught.value)
    for path in ("$.vin", "$.data.rnd", "$.status"):
        assert path in text


@pytest.mark.parametrize("value", [None, [], "{}", 42, [example()]])
def test_not_an_object(value: Any) -> None:
    with pytest.raises(SDKFormatError, match="expected a JSON object"):
        from_sdk(value)


def _nested(depth: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(depth):
        nested = [nested]
    return nested


@pytest.mark.parametrize(
    "value",
    [10**5000, _nested(100_000), [10**5000], "x" * 1_000_000],
    ids=["5000-digit int", "100000-deep list", "5000-digit int in a list", "1 MB string"],
)
def test_what_repr_cannot_show_is_still_an_sdk_format_error(value: Any) -> None:
    # repr() fails on the first two (int string limit, recursion) and runs to a
    # megabyte on the last; messages quote input cut short, and never fail to.
    for data in (value, {**example(), "status": value}, {**example(), "receivedAt": value}):
        with pytest.raises(SDKFormatError) as caught:
            from_sdk(data)
        assert len(str(caught.value)) < 500


@pytest.mark.parametrize("key", ["vin", "status", "receivedAt"])
def test_a_megabyte_of_input_is_quoted_cut_short(key: str) -> None:
    data = example()
    data[key] = "x" * 1_000_000
    with pytest.raises(SDKFormatError) as caught:
        from_sdk(data)
    text = str(caught.value)
    assert len(text) < 500
    assert f"'{'x' * 60}'... (1000000 characters)" in text
    assert f"$.{key}" in text


def test_a_thousand_unexpected_keys_are_counted_not_listed() -> None:
    data = example()
    data.update({f"key{i:04}": i for i in range(1000)})
    with pytest.raises(SDKFormatError) as caught:
        from_sdk(data)
    text = str(caught.value)
    assert "['key0000', 'key0001'," in text
    assert "'key0009'] and 990 more @ $" in text
    assert "key0010" not in text


# --- to_sdk takes what it can give in the SDK's shape, and nothing else ---------------------

_INFO = from_sdk(example())


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (None, "to_sdk takes a VehicleInfo or an Event, not None"),
        ({"a": 1}, "to_sdk takes a VehicleInfo or an Event, not {'a': 1}"),
        (_INFO.data, "to_sdk takes a VehicleInfo or an Event, not VehicleData("),
        (attrs.evolve(_INFO, current_alert=3), "VehicleInfo.current_alert is 3, not Alerts"),
        (attrs.evolve(_INFO, data=None), "VehicleInfo.data is None, not VehicleData"),
        (
            attrs.evolve(_INFO, data=attrs.evolve(_INFO.data, battery_soc=42)),
            "VehicleInfo.data.battery_soc is 42, not Measure or None",
        ),
        (
            Event("cantCharge", dt.datetime(2026, 11, 22, tzinfo=dt.UTC)),  # type: ignore[arg-type]
            "Event.kind is 'cantCharge', not EventKind",
        ),
    ],
    ids=["None", "dict", "VehicleData", "alerts an int", "no data", "soc an int", "event text"],
)
def test_to_sdk_rejects_what_it_cannot_give(obj: Any, message: str) -> None:
    with pytest.raises(TypeError) as caught:
        to_sdk(obj)
    assert message in str(caught.value)


@given(
    st.floats()
    | st.integers()
    | st.integers(2**53 - 3, 2**53 + 3)
    | st.booleans()
    | st.none()
    | st.text(max_size=3)
    | st.sampled_from([math.inf, -math.inf, math.nan, 10**5000])
)
def test_a_measure_to_sdk_gives_is_one_from_sdk_takes(value: Any) -> None:
    # Measure refuses what JSON cannot carry, so to_sdk never gives NaN, a bool or
    # text as a number, nor an integer beyond 2**53 - 1 (or beyond repr()'s limit).
    try:
        measure = Measure(value, "%")
    except (TypeError, ValueError):
        fits = (type(value) is int and abs(value) <= 2**53 - 1) or (
            type(value) is float and math.isfinite(value)
        )
        assert not fits, f"{value!r} was refused"
        return
    info = attrs.evolve(_INFO, data=attrs.evolve(_INFO.data, battery_soc=measure))
    text = json.dumps(to_sdk(info), allow_nan=False)
    assert from_sdk(json.loads(text)) == info


def test_from_sdk_does_not_change_its_input() -> None:
    data = example()
    kept = copy.deepcopy(data)
    from_sdk(data)
    assert data == kept
