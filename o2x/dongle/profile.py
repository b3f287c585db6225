"""The O2X BLE profile: identifiers the dongle advertises and serves (``docs/protocol.md``).

Pure constants and advertisement parsing, shared by the BLE transport and the
simulator; nothing here touches a radio.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..model import normalize_vin

__all__ = [
    "COMPANY_ID",
    "IDENTITY_UUID",
    "LOCAL_NAME_PREFIX",
    "PROFILE_VERSION",
    "SERVICE_UUID",
    "TELEMETRY_UUID",
    "advertised_vin",
    "local_name_for",
    "manufacturer_data_for",
]

#: Bluetooth SIG company identifier used in the manufacturer-specific data.
COMPANY_ID = 0xFFFF
#: First byte of the manufacturer-specific data: the version of this profile.
PROFILE_VERSION = 0x01
#: The O2X GATT service.
SERVICE_UUID = "dc830001-1ef1-4e76-964e-1551f80d7eb3"
#: Notify characteristic carrying the telemetry byte stream (frames, split anywhere).
TELEMETRY_UUID = "dc830002-1ef1-4e76-964e-1551f80d7eb3"
#: Read characteristic holding one IDENTITY frame.
IDENTITY_UUID = "dc830003-1ef1-4e76-964e-1551f80d7eb3"
#: The scan response's local name is this prefix plus the last six VIN characters.
LOCAL_NAME_PREFIX = "O2X-"


def manufacturer_data_for(vin: str) -> bytes:
    """The manufacturer-specific data value a dongle advertises for ``vin``."""
    return bytes((PROFILE_VERSION,)) + normalize_vin(vin).encode("ascii")


def local_name_for(vin: str) -> str:
    """The local name a dongle puts in its scan response for ``vin``."""
    return LOCAL_NAME_PREFIX + normalize_vin(vin)[-6:]


def advertised_vin(manufacturer_data: Mapping[int, bytes]) -> str | None:
    """The VIN in an advertisement's manufacturer data, or ``None`` if it is not an O2X dongle.

    Anything malformed (another company id, another profile version, a value of the
    wrong size, characters that cannot be in a VIN) gives ``None``: an advertisement
    from a stranger is ignored, never an error.

    >>> advertised_vin({0xFFFF: b"\\x01VR1AB12C3D4567890"})
    'VR1AB12C3D4567890'
    >>> advertised_vin({0x004C: b"\\x02\\x15..."}) is None
    True
    """
    value = manufacturer_data.get(COMPANY_ID)
    if value is None or len(value) != 18 or value[0] != PROFILE_VERSION:
        return None
    try:
        return normalize_vin(bytes(value[1:]).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
