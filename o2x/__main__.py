"""``python -m o2x``: decode a short telemetry stream and print it as the SDK would."""

from __future__ import annotations

import datetime as dt
import json

from . import EventKind, Gear, ParkBrake, SystemState, VehicleInfo, sdk
from .frames import EventFrame, FrameDecoder, InfoFrame, encode_event, encode_info

VIN = "VR1AB12C3D4567890"


def main() -> None:
    """Decode frames cut at arbitrary points, as BLE notifications cut them, and print them."""
    stream = b"".join(
        [
            encode_info(seq=0, battery_soc=81, system_state=SystemState.STANDBY,
                        remaining_autonomy=61, total_odometer=1234.5),
            encode_info(seq=1, battery_soc=80, system_state=SystemState.READY, rnd=Gear.DRIVE,
                        park_brake_status=ParkBrake.RELEASED, remaining_autonomy=60,
                        total_odometer=1236.1),
            b"\x00\x13\x37",  # radio noise between frames is skipped
            encode_event(EventKind.CANT_CHARGE, seq=2),
        ]
    )  # fmt: skip
    decoder = FrameDecoder()
    now = dt.datetime.now(dt.UTC)
    for start in range(0, len(stream), 20):  # 20-byte notifications
        for frame in decoder.feed(stream[start : start + 20]):
            if isinstance(frame, InfoFrame):
                info = VehicleInfo.from_frame(frame, vin=VIN, received_at=now)
                print(json.dumps({"api": "pims.vehicle.informations", "result": sdk.to_sdk(info)}))
            elif isinstance(frame, EventFrame) and frame.kind is not None:
                print(json.dumps({"api": "pims.vehicle.event", "result": {"event": frame.kind}}))
    print(f"decoder: {decoder.stats}")


if __name__ == "__main__":
    main()
