"""What the bridge publishes, on which topic: payloads built from readings, sans-I/O.

Every function here is pure (no broker, no clock); :mod:`o2x.mqtt.bridge` decides when
to publish. The topics and payloads are listed in ``docs/mqtt.md``.

>>> topics = Topics("VR1AB12C3D4567890")
>>> topics.state, topics.evcc_soc
('o2x/VR1AB12C3D4567890/state', 'o2x/VR1AB12C3D4567890/evcc/soc')
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs

from ..model import VehicleInfo, VehicleStatus, normalize_vin
from ..sdk import _format_time as _time
from ..sdk import to_sdk
from ..trips import ChargingSession, Trip

__all__ = [
    "Topics",
    "charge_payload",
    "discovery_messages",
    "evcc_status",
    "evcc_values",
    "state_payload",
    "trip_payload",
]

#: The payloads of the availability topic (Home Assistant's defaults).
ONLINE: Final = "online"
OFFLINE: Final = "offline"


def _check_prefix(name: str, value: str) -> str:
    # MQTT: topic names carry no wildcards and no NUL; a prefix is one or more levels.
    if not isinstance(value, str) or not value or value.startswith("/") or value.endswith("/"):
        raise ValueError(
            f"{name} is one or more topic levels (like 'o2x' or 'home/cars'), not {value!r}"
        )
    if any(char in value for char in "#+\0"):
        raise ValueError(f"{name} {value!r} may not contain '#', '+' or NUL")
    return value


@attrs.frozen
class Topics:
    """The bridge's topics for one car: ``<prefix>/<VIN>/...``."""

    vin: str = attrs.field(converter=normalize_vin)
    prefix: str = attrs.field(default="o2x")

    @prefix.validator
    def _check(self, _: object, value: str) -> None:
        _check_prefix("the topic prefix", value)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.vin}"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def trip(self) -> str:
        return f"{self.base}/trip"

    @property
    def charge(self) -> str:
        return f"{self.base}/charge"

    @property
    def evcc_soc(self) -> str:
        return f"{self.base}/evcc/soc"

    @property
    def evcc_range(self) -> str:
        return f"{self.base}/evcc/range"

    @property
    def evcc_odometer(self) -> str:
        return f"{self.base}/evcc/odometer"

    @property
    def evcc_status(self) -> str:
        return f"{self.base}/evcc/status"


def _live(info: VehicleInfo) -> dict[str, Any] | None:
    live = info.live
    if live is None:
        return None
    return {
        "speed": live.speed,
        "packVoltage": live.pack_voltage,
        "packCurrent": live.pack_current,
        "packPower": live.pack_power,
        "packTemperatures": None
        if live.pack_temperatures is None
        else list(live.pack_temperatures),
        "ready": live.ready,
    }


def state_payload(info: VehicleInfo, *, connected: bool = True) -> str:
    """The ``state`` message: the SDK's result, plus ``live`` (``null`` for the O2X
    dongle) and ``connected`` (``false`` once the link to the car is lost; the
    reading is then the last one received).

    >>> import json, datetime as dt
    >>> from o2x import VehicleInfo
    >>> from o2x.frames import decode_frame, encode_info
    >>> info = VehicleInfo.from_frame(decode_frame(encode_info(seq=1, battery_soc=80)),
    ...     vin="VR1AB12C3D4567890", received_at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    >>> message = json.loads(state_payload(info))
    >>> message["data"]["batterySoc"], message["live"], message["connected"]
    ({'unit': '%', 'value': 80}, None, True)
    """
    message = to_sdk(info)
    message["live"] = _live(info)
    message["connected"] = connected
    return json.dumps(message)


def evcc_status(info: VehicleInfo) -> str:
    """evcc's charge status: ``C`` charging, ``B`` plugged in and not charging, ``A``
    otherwise (not plugged in, or not known to be: no source reports the plug).

    ``B`` is inferred: over the CAN bus (a reading with ``live``), a charger
    remaining time while not charging and not moving (the sign ``docs/can.md``
    section 5 takes for a connected charger; the charger may keep its last estimate
    while driving, so a car driving or with a speed above 0 is ``A``); from the O2X
    dongle, a charge delay above 0 (a deferred charge waiting to start).
    """
    delay = info.data.charge_delay
    live = info.live
    if info.status is VehicleStatus.CHARGING:
        if live is None and delay is not None and delay.value > 0:
            return "B"
        return "C"
    moving = info.status is VehicleStatus.DRIVING or (
        live is not None and live.speed is not None and live.speed > 0
    )
    if live is not None and delay is not None and not moving:
        return "B"
    return "A"


def _plain(value: int | float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 2**53 else repr(value)
    return str(value)


def evcc_values(topics: Topics, info: VehicleInfo) -> dict[str, str | None]:
    """The evcc topics and their plain values; ``None`` where the reading lacks the value
    (nothing is published for it). The range is an integer, as evcc reads it."""
    data = info.data
    soc = None if data.battery_soc is None else data.battery_soc.value
    autonomy = data.remaining_autonomy
    odometer = data.total_odometer
    return {
        topics.evcc_soc: _plain(soc),
        topics.evcc_range: None if autonomy is None else str(round(autonomy.value)),
        topics.evcc_odometer: None if odometer is None else _plain(odometer.value),
        topics.evcc_status: evcc_status(info),
    }


def _measure(value: int | float | None, unit: str) -> dict[str, Any] | None:
    return None if value is None else {"unit": unit, "value": value}


def trip_payload(trip: Trip) -> str:
    """The ``trip`` message: one finished trip, measures as the SDK writes them."""
    return json.dumps(
        {
            "vin": trip.vin,
            "startedAt": _time(trip.started_at),
            "endedAt": _time(trip.ended_at),
            "duration": _measure(trip.duration, "s"),
            "startOdometer": _measure(trip.start_odometer, "km"),
            "endOdometer": _measure(trip.end_odometer, "km"),
            "distance": _measure(trip.distance, "km"),
            "startSoc": _measure(trip.start_soc, "%"),
            "endSoc": _measure(trip.end_soc, "%"),
            "socUsed": _measure(trip.soc_used, "%"),
            "energyUsed": _measure(trip.energy_used, "kWh"),
            "maxSpeed": _measure(trip.max_speed, "km/h"),
            "linkLosses": trip.link_losses,
        }
    )


def charge_payload(session: ChargingSession) -> str:
    """The ``charge`` message: one finished charging session."""
    return json.dumps(
        {
            "vin": session.vin,
            "startedAt": _time(session.started_at),
            "endedAt": _time(session.ended_at),
            "duration": _measure(session.duration, "s"),
            "startSoc": _measure(session.start_soc, "%"),
            "endSoc": _measure(session.end_soc, "%"),
            "socAdded": _measure(session.soc_added, "%"),
            "energyIn": _measure(session.energy_in, "kWh"),
            "linkLosses": session.link_losses,
        }
    )


# --- Home Assistant discovery ----------------------------------------------------------

# A value of the state message, or None (HA shows "unknown") where the source lacks it.
_DATA = (
    "{{% if value_json.data.{key} is not none %}}{{{{ value_json.data.{key}.value }}}}"
    "{{% else %}}None{{% endif %}}"
)
_LIVE = (
    "{{% if value_json.live is not none and value_json.live.{key} is not none %}}"
    "{{{{ value_json.live.{key} }}}}{{% else %}}None{{% endif %}}"
)


@attrs.frozen
class _Entity:
    component: str
    key: str
    name: str
    config: dict[str, Any]


def _entities(topics: Topics) -> list[_Entity]:
    state, status = topics.state, topics.status
    enum_template = (
        "{{{{ value_json.data.{key} if value_json.data.{key} != 'unknown' else None }}}}"
    )
    return [
        _Entity(
            "sensor",
            "battery_soc",
            "State of charge",
            {
                "state_topic": state,
                "value_template": _DATA.format(key="batterySoc"),
                "device_class": "battery",
                "unit_of_measurement": "%",
                "state_class": "measurement",
            },
        ),
        _Entity(
            "sensor",
            "range",
            "Range",
            {
                "state_topic": state,
                "value_template": _DATA.format(key="remainingAutonomy"),
                "device_class": "distance",
                "unit_of_measurement": "km",
                "state_class": "measurement",
            },
        ),
        _Entity(
            "sensor",
            "odometer",
            "Odometer",
            {
                "state_topic": state,
                "value_template": _DATA.format(key="totalOdometer"),
                "device_class": "distance",
                "unit_of_measurement": "km",
                "state_class": "total_increasing",
            },
        ),
        _Entity(
            "sensor",
            "status",
            "Status",
            {
                "state_topic": status,
                "device_class": "enum",
                "options": [s.value for s in VehicleStatus if s is not VehicleStatus.UNKNOWN],
                "value_template": "{{ value if value != 'unknown' else None }}",
            },
        ),
        _Entity(
            "sensor",
            "gear",
            "Gear",
            {
                "state_topic": state,
                "device_class": "enum",
                "options": ["neutral", "drive", "reverse"],
                "value_template": enum_template.format(key="rnd"),
            },
        ),
        _Entity(
            "binary_sensor",
            "parking_brake",
            "Parking brake",
            {
                "state_topic": state,
                "value_template": "{{ {'activated': 'ON', 'released': 'OFF'}"
                ".get(value_json.data.parkBrakeStatus, 'None') }}",
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        ),
        # Only a CAN source's chargeDelay is the time until full (docs/can.md); the O2X
        # dongle's is the time until a deferred charge starts: None for it. None too for
        # a car on the move, as for evcc's B: the charger may keep its last estimate.
        _Entity(
            "sensor",
            "charge_time_remaining",
            "Charge time remaining",
            {
                "state_topic": state,
                "value_template": "{% if value_json.live is defined and "
                "value_json.live is not none and value_json.data.chargeDelay is not none "
                "and value_json.status != 'driving' and not "
                "(value_json.live.speed is not none and value_json.live.speed > 0) %}"
                "{{ value_json.data.chargeDelay.value }}{% else %}None{% endif %}",
                "device_class": "duration",
                "unit_of_measurement": "min",
            },
        ),
        _Entity(
            "sensor",
            "speed",
            "Speed",
            {
                "state_topic": state,
                "value_template": _LIVE.format(key="speed"),
                "device_class": "speed",
                "unit_of_measurement": "km/h",
                "state_class": "measurement",
            },
        ),
        _Entity(
            "sensor",
            "pack_power",
            "Pack power",
            {
                "state_topic": state,
                "value_template": _LIVE.format(key="packPower"),
                "device_class": "power",
                "unit_of_measurement": "kW",
                "state_class": "measurement",
            },
        ),
        _Entity(
            "sensor",
            "pack_temperature",
            "Pack temperature",
            {
                "state_topic": state,
                "value_template": "{% if value_json.live is not none and "
                "value_json.live.packTemperatures %}"
                "{{ value_json.live.packTemperatures | max }}{% else %}None{% endif %}",
                "device_class": "temperature",
                "unit_of_measurement": "°C",
                "state_class": "measurement",
            },
        ),
        _Entity(
            "binary_sensor",
            "connectivity",
            "Connection to the car",
            {
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.connected else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
            },
        ),
    ]


def discovery_messages(
    topics: Topics,
    *,
    discovery_prefix: str = "homeassistant",
    model: str = "AMI / Rocks-e",
    manufacturer: str = "Citroën / Opel",
    name: str | None = None,
    sw_version: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Home Assistant's MQTT discovery messages for the car: ``(topic, config)`` pairs.

    One device per VIN; each entity has a ``unique_id``, the bridge's availability
    topic, and its units and classes. Published retained.

    >>> topic, config = discovery_messages(Topics("VR1AB12C3D4567890"))[0]
    >>> topic
    'homeassistant/sensor/o2x_VR1AB12C3D4567890/battery_soc/config'
    >>> config["unique_id"], config["device"]["identifiers"]
    ('o2x_VR1AB12C3D4567890_battery_soc', ['o2x_VR1AB12C3D4567890', 'VR1AB12C3D4567890'])
    """
    _check_prefix("the discovery prefix", discovery_prefix)
    node = f"o2x_{topics.vin}"
    device: dict[str, Any] = {
        "identifiers": [node, topics.vin],
        "name": name if name is not None else f"{model} {topics.vin}",
        "model": model,
        "manufacturer": manufacturer,
        "serial_number": topics.vin,
    }
    if sw_version is not None:
        device["sw_version"] = sw_version
    messages = []
    for entity in _entities(topics):
        config = {
            "name": entity.name,
            "unique_id": f"{node}_{entity.key}",
            "availability_topic": topics.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
            "origin": {"name": "o2x"},
            **entity.config,
        }
        messages.append(
            (f"{discovery_prefix}/{entity.component}/{node}/{entity.key}/config", config)
        )
    return messages
