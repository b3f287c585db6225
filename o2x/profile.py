"""The O2X BLE profile: :mod:`o2x.dongle.profile`, importable here too.

The O2X dongle is one way of reaching the car among others, so its code lives in
:mod:`o2x.dongle`; this module keeps ``o2x.profile`` working.
"""

from .dongle.profile import (
    COMPANY_ID,
    IDENTITY_UUID,
    LOCAL_NAME_PREFIX,
    PROFILE_VERSION,
    SERVICE_UUID,
    TELEMETRY_UUID,
    advertised_vin,
    local_name_for,
    manufacturer_data_for,
)

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
