"""What an adapter session asks its driver to do, and the states it goes through.

Both sessions (:class:`~o2x.obd.elm327.Elm327Session`,
:class:`~o2x.obd.slcan.SlcanSession`) return lists of these actions from every call;
the driver (the BLE source) carries them out in order: writes :class:`Send`'s bytes,
hands :class:`Frames` to the bus, notes :class:`Monitoring`, and raises the error of
:class:`SessionFailed`.
"""

from __future__ import annotations

import enum

import attrs

from ..errors import O2XError

__all__ = ["Action", "Frames", "Monitoring", "Send", "SessionFailed", "SessionState"]


@attrs.frozen
class Send:
    """Write ``data`` to the adapter (one command, with its terminator)."""

    data: bytes


@attrs.frozen
class Frames:
    """CAN frames read from the car, oldest first: ``(can_id, payload)`` pairs, 11-bit IDs."""

    frames: list[tuple[int, bytes]]


@attrs.frozen
class Monitoring:
    """The command starting the monitor was sent: frames follow.

    Given the first time and after every restart (an ELM327's ``BUFFER FULL``).
    """


@attrs.frozen
class SessionFailed:
    """The adapter cannot be used; ``error`` says why. The session is over (FAILED)."""

    error: O2XError


#: Any of the actions a session returns.
Action = Send | Frames | Monitoring | SessionFailed


class SessionState(enum.Enum):
    """Where a session is. Its table of transitions is in each session's module docstring."""

    IDLE = "idle"  # nothing sent yet
    INITIALISING = "initialising"  # the set-up commands, one at a time
    MONITORING = "monitoring"  # frames flow
    RESTARTING = "restarting"  # the monitor ended by itself; waiting to start it again
    STOPPING = "stopping"  # stop() asked it to end; waiting for the adapter to confirm
    STOPPED = "stopped"  # stopped on request: final
    FAILED = "failed"  # SessionFailed was returned: final
