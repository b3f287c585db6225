"""Every error o2x raises on purpose, in one place.

All derive from :class:`O2XError`, so ``except o2x.O2XError`` catches anything the
library means to raise; each also derives from the built-in it resembles
(``ValueError``, ``TimeoutError``...) so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "AlreadySubscribed",
    "BadCRC",
    "BadStartOfFrame",
    "BluetoothUnavailable",
    "ConnectionFailed",
    "FrameError",
    "IdentityMismatch",
    "InvalidVIN",
    "NoPreviousVehicle",
    "O2XError",
    "SDKFormatError",
    "ScanTimeout",
    "StateFileDamaged",
    "StateFileError",
    "TruncatedFrame",
    "UnknownFrameType",
    "UnsupportedVersion",
    "ValueOutOfRange",
]


class O2XError(Exception):
    """Base class of every error raised on purpose by o2x."""


# --- wire format -------------------------------------------------------------


class FrameError(O2XError, ValueError):
    """Bytes that are not a valid O2X frame (see ``docs/protocol.md``)."""


class TruncatedFrame(FrameError):
    """The bytes end before the frame (or one of its payload fields) does."""


class BadStartOfFrame(FrameError):
    """The first byte is not the start-of-frame marker ``0xA5``."""


class BadCRC(FrameError):
    """The CRC-16 at the end of the frame does not match its contents."""


class UnsupportedVersion(FrameError):
    """The frame declares a wire-format version this library does not speak."""


class UnknownFrameType(FrameError):
    """The frame's type byte is none of INFO, EVENT or IDENTITY."""


class ValueOutOfRange(FrameError):
    """A payload field holds a value its definition does not allow."""


# --- vehicle and connection --------------------------------------------------


class InvalidVIN(O2XError, ValueError):
    """A VIN that is not 17 characters of ``[A-HJ-NPR-Z0-9]``."""


class ScanTimeout(O2XError, TimeoutError):
    """No vehicle with the wanted VIN was found within the scan timeout."""


class NoPreviousVehicle(O2XError, LookupError):
    """``O2XVehicle.previous()`` was used but no vehicle has been remembered yet."""


class AlreadySubscribed(O2XError, RuntimeError):
    """Another vehicle is already subscribed in this process (one VIN at a time)."""

    def __init__(self, active_vin: str) -> None:
        super().__init__(
            f"vehicle {active_vin} is already subscribed in this process; "
            "leave its 'async with' block before subscribing to another one"
        )
        self.active_vin = active_vin


class BluetoothUnavailable(O2XError, OSError):
    """There is no usable Bluetooth adapter or Bluetooth service on this machine."""


class ConnectionFailed(O2XError, ConnectionError):
    """A connection to the vehicle's dongle could not be set up."""


class IdentityMismatch(ConnectionFailed):
    """The dongle advertising the vehicle's VIN serves another vehicle's identity.

    Raised on entry when that is why no connection could be set up; it is a
    :class:`ConnectionFailed`, and its message names both VINs.
    """


class SDKFormatError(O2XError, ValueError):
    """A JSON object that is not in the SDK's shape."""


class StateFileError(O2XError, OSError):
    """The file remembering the previous vehicle cannot be read or written."""


class StateFileDamaged(StateFileError):
    """The file remembering the previous vehicle holds something o2x cannot read back.

    o2x never replaces such a file: ``previous()`` and ``first_time()`` raise this on
    entry, before any radio is touched. ``path`` is the file, ``problem`` says what is
    wrong with it; deleting (or moving) the file lets the next connection remember
    the vehicle again.
    """

    def __init__(self, message: str, *, path: str, problem: str) -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem


# --- OBD adapters ------------------------------------------------------------

__all__ += ["AdapterError", "AdapterSpeaksOther", "AdapterTimeout", "AdapterUnsupported"]


class AdapterError(ConnectionFailed):
    """The OBD adapter cannot read the car's CAN bus.

    Raised (or handed over in ``o2x.obd.SessionFailed``) when an ELM327-compatible
    or SLCAN adapter answers in a way that rules monitoring out; the message names
    the command and the answer.
    """


class AdapterUnsupported(AdapterError):
    """The adapter does not do what reading the car needs (e.g. it cannot show raw CAN frames)."""


class AdapterSpeaksOther(AdapterError):
    """The adapter answers in another of the protocols o2x speaks (a WiCAN set to its
    ``elm327`` protocol prompts ``>`` where SLCAN acknowledges): ``protocol`` names it."""

    def __init__(self, message: str, *, protocol: str) -> None:
        super().__init__(message)
        self.protocol = protocol


class AdapterTimeout(AdapterError, TimeoutError):
    """The adapter did not answer a command in time (no ``>`` prompt, no acknowledgement)."""
