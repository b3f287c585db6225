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
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .errors import SDKFormatError
from .model import Alerts, Event, Measure, VehicleData, VehicleInfo

__all__ = ["converter", "from_sdk", "to_sdk"]

#: The converter behind :func:`to_sdk` and :func:`from_sdk`, for composing with your own.
converter = cattrs.Converter(forbid_extra_keys=True)

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _format_time(value: _dt.datetime) -> str:
    return value.astimezone(_dt.UTC).strftime(_TIME_FORMAT)


def _parse_time(value: object, _: object) -> _dt.datetime:
    if not isinstance(value, str):
        raise TypeError(f"receivedAt must be a string like 2026-11-22T10:15:30Z, not {value!r}")
    try:
        parsed = _dt.datetime.strptime(value, _TIME_FORMAT)
    except ValueError:
        raise ValueError(f"receivedAt {value!r} is not of the form YYYY-MM-DDTHH:MM:SSZ") from None
    return parsed.replace(tzinfo=_dt.UTC)


def _parse_number(value: object, _: object) -> int | float:
    # Measures keep the type they were sent with, so 42 stays an int and 1234.5 a float.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a measure's value must be a number, not {value!r}")
    return value


converter.register_structure_hook(int | float, _parse_number)
converter.register_unstructure_hook(_dt.datetime, _format_time)
converter.register_structure_hook(_dt.datetime, _parse_time)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def _register_camel(cls: type[Any]) -> None:
    names: dict[str, Any] = {a.name: override(rename=_camel(a.name)) for a in cls.__attrs_attrs__}
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
for _cls in (Alerts, VehicleData, VehicleInfo):
    _register_camel(_cls)

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
    """
    result: dict[str, Any] = converter.unstructure(obj)
    return result


def _describe(exc: BaseException, expected: type | None) -> str:
    # Paths name the SDK's keys ($.data.batterySoc), not the Python attributes.
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unexpected keys {sorted(exc.extra_fields)}"
    if isinstance(exc, ValueError | TypeError) and str(exc):
        return str(exc)
    name = getattr(expected, "__name__", str(expected))
    return f"invalid value, expected {name}"


_SNAKE_SEGMENT = re.compile(r"(?<=\.)[a-z]+(?:_[a-z]+)+")


def from_sdk(data: dict[str, Any]) -> VehicleInfo:
    """Load a vehicle information object in the SDK's shape (the inverse of :func:`to_sdk`).

    Raises :class:`~o2x.errors.SDKFormatError` listing every problem with its
    path (``$.data.batterySoc.value: ...``) when ``data`` is not of that shape.
    """
    try:
        return converter.structure(data, VehicleInfo)
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc, format_exception=_describe))
        problems = _SNAKE_SEGMENT.sub(lambda m: _camel(m.group()), problems)
        raise SDKFormatError(f"not an SDK vehicle information object: {problems}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise SDKFormatError(f"not an SDK vehicle information object: {exc}") from exc
