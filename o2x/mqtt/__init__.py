"""The car on an MQTT broker: Home Assistant discovery, evcc's topics, trips and charges.

:class:`MqttBridge` publishes an entered :class:`~o2x.O2XVehicle` to an
``aiomqtt.Client`` the caller owns (asyncio only, as aiomqtt is); the topics and
payloads are in ``docs/mqtt.md``, and built by :mod:`o2x.mqtt.messages`. Needs the
``mqtt`` extra (``pip install 'o2x[mqtt]'``).

>>> from o2x.mqtt import Topics
>>> Topics("VR1AB12C3D4567890", "home/cars").availability
'home/cars/VR1AB12C3D4567890/availability'
"""

from __future__ import annotations

from .bridge import BrokerRefused, BrokerTLSError, MqttBridge
from .messages import Topics

__all__ = ["BrokerRefused", "BrokerTLSError", "MqttBridge", "Topics"]
