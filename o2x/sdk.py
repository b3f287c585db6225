"""JSON in the exact shape of the manufacturer SDK's O2X results, through a cattrs converter.

The value classes in :mod:`o2x.model` know nothing of JSON; this module maps them
to and from the SDK's camelCase dictionaries, so output of this library can be
consumed by code written against the SDK.

>>> import datetime as dt
>>> from o2x import Event, EventKind
>>> to_sdk(Event(EventKind.CANT_CHARGE, dt.datetime(2026, 11, 22, tzinfo=dt.UTC)))
{'event': 'cantCharge'}
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .errors import SDKFormatError
from .model import (
    Alerts,
    BatteryState,
    Event,
    Gear,
    Measure,
    ParkBrake,
    SystemState,
    VehicleData,
    VehicleInfo,
    VehicleStatus,
    _check_measure_value,
    _quote,
    normalize_vin,
)

__all__ = ["converter", "from_sdk", "to_sdk"]

#: The converter behind :func:`to_sdk` and :func:`from_sdk`, for composing with your own.
converter = cattrs.Converter(forbid_extra_keys=True)

# YYYY-MM-DDTHH:MM:SSZ exactly: strptime alone would take 2026-1-2T3:4:5Z and
# non-ASCII digits, which to_sdk would then not give back as they came.
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def _format_time(value: _dt.datetime) -> str:
    # Not strftime("%Y..."): the C library writes years before 1000 with fewer
    # than four digits.
    t = value.astimezone(_dt.UTC)
    return f"{t.year:04}-{t.month:02}-{t.day:02}T{t.hour:02}:{t.minute:02}:{t.second:02}Z"


def _parse_time(value: object, _: object) -> _dt.datetime:
    if not isinstance(value, str):
        raise TypeError(
            f"receivedAt must be a string like 2026-11-22T10:15:30Z, not {_quote(value)}"
        )
    problem = f"receivedAt {_quote(value)} is not of the form YYYY-MM-DDTHH:MM:SSZ"
    if _TIME_RE.fullmatch(value) is None:
        raise ValueError(problem)
    try:
        parsed = _dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:  # the right shape, but no such date or time (2026-02-30)
        raise ValueError(problem) from None
    return parsed.replace(tzinfo=_dt.UTC)


def _parse_number(value: object, _: object) -> int | float:
    # Measures keep the type they were sent with, so 42 stays an int and 1234.5 a float.
    # Checked here, not only by Measure, so that an error names $.data.batterySoc.value.
    return _check_measure_value(value)


def _parse_str(value: object, _: object) -> str:
    # cattrs would turn anything into a string with str(): 5 would become "5".
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {_quote(value)}")
    return value


def _parse_bool(value: object, _: object) -> bool:
    # cattrs would apply bool(): "false" would become True.
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, not {_quote(value)}")
    return value


def _parse_enum(value: object, cls: type[enum.Enum]) -> enum.Enum:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {_quote(value)}")
    try:
        return cls(value)
    except ValueError:  # enum's own message would quote all of a megabyte of input
        allowed = ", ".join(repr(member.value) for member in cls)
        raise ValueError(f"{_quote(value)} is not a valid {cls.__name__} ({allowed})") from None


def _parse_vin(value: object, _: object) -> str:
    # Checked here rather than only by VehicleInfo, so that an error names $.vin.
    return normalize_vin(_parse_str(value, None))


converter.register_structure_hook(int | float, _parse_number)
converter.register_structure_hook(str, _parse_str)
converter.register_structure_hook(bool, _parse_bool)
# The enums are str subclasses: without hooks of their own they would take the str one.
for _enum in (SystemState, BatteryState, Gear, ParkBrake, VehicleStatus):
    converter.register_structure_hook(_enum, _parse_enum)
converter.register_unstructure_hook(_dt.datetime, _format_time)
converter.register_structure_hook(_dt.datetime, _parse_time)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def _camel_names(cls: type[Any], **hooks: Any) -> dict[str, Any]:
    return {
        a.name: override(rename=_camel(a.name), struct_hook=hooks.get(a.name))
        for a in cls.__attrs_attrs__
    }


def _register_camel(cls: type[Any], **hooks: Any) -> None:
    names = _camel_names(cls, **hooks)
    converter.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, converter, **names))
    converter.register_structure_hook(
        cls, make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **names)
    )


# Leaf hooks first: the generated hooks of the classes that contain them capture them.
converter.register_unstructure_hook_func(
    lambda t: isinstance(t, type) and issubclass(t, enum.Enum), lambda member: member.value
)
# The SDK's pages write a measure's unit before its value.
converter.register_unstructure_hook(Measure, lambda m: {"unit": m.unit, "value": m.value})
# The SDK always sends the eight alerts: a missing one is an error, not False (the
# default Alerts has for Python callers). The structure hook is generated for a
# twin class whose fields have no default, so cattrs reports each missing key.
_RequiredAlerts = attrs.make_class(
    "Alerts", {a.name: attrs.field(type=bool) for a in Alerts.__attrs_attrs__}, frozen=True
)
converter.register_unstructure_hook(
    Alerts, make_dict_unstructure_fn(Alerts, converter, **_camel_names(Alerts))
)
_structure_required_alerts: Callable[[Any, Any], Any] = make_dict_structure_fn(
    _RequiredAlerts, converter, _cattrs_forbid_extra_keys=True, **_camel_names(_RequiredAlerts)
)


def _structure_alerts(value: Any, _: object) -> Alerts:
    return Alerts(*attrs.astuple(_structure_required_alerts(value, _RequiredAlerts)))


converter.register_structure_hook(Alerts, _structure_alerts)
_register_camel(VehicleData)
_register_camel(VehicleInfo, vin=_parse_vin)

# Key order as on the SDK's pages, so printed JSON reads like the documentation.
_INFO_KEYS = ("vin", "currentAlert", "previousAlert", "data", "receivedAt", "status")
_unstructure_info = converter.get_unstructure_hook(VehicleInfo)


def _unstructure_info_ordered(info: VehicleInfo) -> dict[str, Any]:
    plain = _unstructure_info(info)
    return {key: plain[key] for key in _INFO_KEYS}


converter.register_unstructure_hook(VehicleInfo, _unstructure_info_ordered)
converter.register_unstructure_hook(Event, lambda event: {"event": event.kind.value})


def to_sdk(obj: VehicleInfo | Event) -> dict[str, Any]:
    """The SDK's JSON object for a :class:`~o2x.VehicleInfo` or an :class:`~o2x.Event`.

    Keys are the SDK's (``currentAlert``, ``batterySoc``...), enums their SDK strings,
    ``receivedAt`` is ``YYYY-MM-DDTHH:MM:SSZ``; an event becomes ``{"event": ...}``.
    Raises :class:`TypeError` for anything else, and for one of them holding a
    value of the wrong type (``attrs.evolve(info, current_alert=3)``).
    """
    # cattrs would pass anything it has no hook for through unchanged: to_sdk(None)
    # would be None.
    if not isinstance(obj, VehicleInfo | Event):
        raise TypeError(f"to_sdk takes a VehicleInfo or an Event, not {_quote(obj)}")
    try:
        result: dict[str, Any] = converter.unstructure(obj)
    except Exception as exc:
        # The hooks follow the declared types; only a value of another type can fail.
        # Looked for only now, so that valid objects pay nothing for it.
        wrong = "; ".join(_wrong_types(obj, type(obj).__name__)) or str(exc)
        raise TypeError(
            f"cannot give this {type(obj).__name__} in the SDK's shape: {wrong}"
        ) from exc
    return result


# _wrong_types compares values with the declared types: classes, not strings.
for _cls in (VehicleInfo, VehicleData, Alerts, Measure, Event):
    attrs.resolve_types(_cls)


def _wrong_types(obj: attrs.AttrsInstance, path: str) -> list[str]:
    problems = []
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        expected = field.type
        if not isinstance(value, expected):
            name = " or ".join(_type_name(t) for t in getattr(expected, "__args__", (expected,)))
            problems.append(f"{path}.{field.name} is {_quote(value)}, not {name}")
        elif attrs.has(type(value)):
            problems.extend(_wrong_types(value, f"{path}.{field.name}"))
    return problems


def _type_name(cls: Any) -> str:
    return "None" if cls is type(None) else getattr(cls, "__name__", str(cls))


_SHOWN_KEYS = 10


def _describe(exc: BaseException, expected: type | None) -> str:
    # Paths name the SDK's keys ($.data.batterySoc), not the Python attributes.
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        # Sorted as quoted: keys of JSON are strings, but a dict's may be 1 and "zz".
        keys = sorted(_quote(key) for key in exc.extra_fields)
        more = f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else ""
        return f"unexpected keys [{', '.join(keys[:_SHOWN_KEYS])}]{more}"
    if isinstance(exc, ValueError | TypeError) and str(exc):
        return str(exc)
    name = getattr(expected, "__name__", str(expected))
    return f"invalid value, expected {name}"


_SNAKE_SEGMENT = re.compile(r"(?<=\.)[a-z]+(?:_[a-z]+)+")


def _sdk_path(problem: str) -> str:
    # cattrs ends each problem with " @ $.data.battery_soc": only that path is
    # renamed, never the quoted input before it ("v.some_value" stays as sent).
    description, at, path = problem.rpartition(" @ ")
    if not at:
        return problem
    return description + at + _SNAKE_SEGMENT.sub(lambda m: _camel(m.group()), path)


def from_sdk(data: dict[str, Any]) -> VehicleInfo:
    """Load a vehicle information object in the SDK's shape (the inverse of :func:`to_sdk`).

    Raises :class:`~o2x.errors.SDKFormatError` listing every problem with its
    path (``$.data.batterySoc.value: ...``) when ``data`` is not of that shape.
    """
    if not isinstance(data, dict):
        raise SDKFormatError(
            f"not an SDK vehicle information object: expected a JSON object, not {_quote(data)}"
        )
    try:
        return converter.structure(data, VehicleInfo)
    except cattrs.BaseValidationError as exc:
        messages = cattrs.transform_error(exc, format_exception=_describe)
        problems = "; ".join(_sdk_path(message) for message in messages)
        raise SDKFormatError(f"not an SDK vehicle information object: {problems}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise SDKFormatError(f"not an SDK vehicle information object: {exc}") from exc
