"""A simulated AMI on a CAN bus: the simulator's car model, broadcast as the real car does.

:class:`SimulatedCanCar` steps a :class:`~o2x.sim.model.VehicleModel` and puts its
state on a python-can bus (by default the in-process ``virtual`` interface),
every frame encoded from ``ami.dbc`` with cantools, so that
:meth:`o2x.O2XVehicle.over_can`, ``o2x watch --can`` and the tests run the whole
CAN path without a car::

    async with SimulatedCanCar("VR1AB12C3D4567890", channel="demo") as sim:
        with can.Bus(interface="virtual", channel="demo") as bus:
            async with O2XVehicle.over_can(bus) as car:
                await sim.drive()
                ...

The bus carries what the model knows, plus values the O2X wire format has no
field for (pack current and voltage, temperatures, speed), which are made up
here from the model's phase: they are plausible, not measured. Rates are
unmeasured on the real car too (``docs/can.md``); every message goes out
``rate_hz`` times a second, the VIN once a second.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

import anyio
from anyio.abc import TaskGroup

from ..can.dbc import Value, compiled, encode
from ..model import BatteryState, Gear, ParkBrake, SystemState, normalize_vin
from .model import VehicleModel

if TYPE_CHECKING:
    import can

__all__ = ["SimulatedCanCar", "ami_frames", "vin_frames"]

# The messages by their names in ami.dbc: IDs and layouts are the DBC's.
_IDS: Final = {m.name: m.frame_id for m in compiled().values()}
_VIN_PARTS: Final = ("VIN_1to3", "VIN_4to9", "VIN_10to17")  # in the VIN's order


def _vin_frames() -> tuple[tuple[int, int, int], ...]:
    # (ID, first character, end) of each VIN frame: one character per signal.
    spans, start = [], 0
    for name in _VIN_PARTS:
        message = next(m for m in compiled().values() if m.name == name)
        spans.append((message.frame_id, start, start + len(message.signals)))
        start += len(message.signals)
    return tuple(spans)


_VIN_FRAMES: Final = _vin_frames()
_GEAR_RAW: Final = {Gear.REVERSE: 0, Gear.NEUTRAL: 1, Gear.DRIVE: 2, Gear.UNKNOWN: 3}
_NO_ESTIMATE: Final = 0xFFFF

# Made-up but plausible values for what the model does not have (see the docstring).
_CHARGE_CURRENT_A: Final = 25.0  # about 1.3 kW at 50 V, a household socket
_BALANCING_CURRENT_A: Final = 5.0
_IDLE_CURRENT_A: Final = -0.5  # the 12 V converter
_AMPS_PER_KMH: Final = 2.5
_CHARGE_SECONDS_PER_PERCENT: Final = 3 * 3600 / 100  # the model's three-hour charge


class SimulatedCanCar:
    """The simulator's car on a python-can bus; an async context manager.

    Controls, awaitable from asyncio or trio like :class:`~o2x.sim.SimulatedVehicle`'s:
    :meth:`drive`, :meth:`park`, :meth:`charge` (refused with the brake released:
    the charger then reports a remaining time while no current flows, the bus's
    ``cantCharge``), :meth:`go_silent` (the car asleep). ``broadcast_vin=False``
    makes a car whose bus carries no VIN frames.
    """

    def __init__(
        self,
        vin: str,
        *,
        channel: str = "demo",
        interface: str = "virtual",
        rate_hz: float = 10.0,
        time_scale: float = 1.0,
        seed: int = 0,
        autopilot: bool = False,
        battery_soc: float = 80.0,
        total_odometer: float = 1234.5,
        broadcast_vin: bool = True,
    ) -> None:
        if not 0 < rate_hz <= 1000:
            raise ValueError(f"rate_hz must be above 0 and at most 1000, not {rate_hz}")
        if not 0 <= time_scale <= 10_000:
            raise ValueError(f"time_scale must be 0 to 10,000, not {time_scale}")
        self.vin: Final = normalize_vin(vin)
        self.channel = channel
        self.interface = interface
        self.rate_hz = rate_hz
        self.time_scale = time_scale
        self.broadcast_vin = broadcast_vin
        #: The model the frames come from.
        self.model: Final = VehicleModel(
            seed=seed, autopilot=autopilot, battery_soc=battery_soc, total_odometer=total_odometer
        )
        #: Frames sent so far.
        self.frames_sent = 0
        self._bus: can.BusABC | None = None
        self._task_group: TaskGroup | None = None
        self._silent_until = -math.inf
        self._since_vin = math.inf

    # --- controls -----------------------------------------------------------------------

    @property
    def plugged(self) -> bool:
        """Plugged in (after :meth:`charge`, until :meth:`drive` or :meth:`park`)."""
        return self.model.plugged

    async def drive(self) -> None:
        """Switch on, release the brake, select drive."""
        self.model.drive()

    async def park(self) -> None:
        """Stop, apply the brake, switch off."""
        self.model.park()

    async def charge(self, delay_minutes: float | None = 0.0) -> None:
        """Plug in and charge (refused if the parking brake is released)."""
        self.model.charge(delay_minutes)

    async def go_silent(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the car asleep, the adapter unplugged)."""
        self._silent_until = anyio.current_time() + seconds

    # --- the bus ------------------------------------------------------------------------

    def frames(self) -> list[tuple[int, bytes]]:
        """The frames the car broadcasts now, as ``(id, payload)``, encoded from the DBC."""
        return ami_frames(self.model)

    def vin_frames(self) -> list[tuple[int, bytes]]:
        """The three VIN frames (0x712: characters 1-3, 0x710: 4-9, 0x711: 10-17)."""
        return vin_frames(self.vin)

    async def __aenter__(self) -> Self:
        import can

        self._bus = can.Bus(interface=self.interface, channel=self.channel)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._broadcast)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
                await self._task_group.__aexit__(None, None, None)
        finally:
            self._task_group = None
            if self._bus is not None:
                self._bus.shutdown()
                self._bus = None

    async def _broadcast(self) -> None:
        import can

        period = 1.0 / self.rate_hz
        bus = self._bus
        assert bus is not None
        next_at = anyio.current_time()
        while True:
            self.model.step(period * self.time_scale)
            self._since_vin += period
            if anyio.current_time() >= self._silent_until:
                frames = self.frames()
                if self.broadcast_vin and self._since_vin >= 1.0:
                    self._since_vin = 0.0
                    frames += self.vin_frames()
                for frame_id, payload in frames:
                    bus.send(
                        can.Message(arbitration_id=frame_id, data=payload, is_extended_id=False)
                    )
                    self.frames_sent += 1
            next_at += period
            await anyio.sleep(max(0.0, next_at - anyio.current_time()))

    def __repr__(self) -> str:
        return f"<SimulatedCanCar {self.vin} on {self.interface}:{self.channel}>"


def ami_frames(model: VehicleModel) -> list[tuple[int, bytes]]:
    """The frames a car in ``model``'s state broadcasts, as ``(id, payload)``.

    Encoded from ``ami.dbc``; what the model has no value for (currents, voltage,
    temperatures) is made up from its phase (see the module docstring).
    """
    v = model.snapshot()
    charging = v.system_state is SystemState.CHARGING and v.battery_state in (
        BatteryState.CHARGING,
        BatteryState.BALANCING,
    )
    speed = round(model.speed_kmh)
    if charging:
        current = (
            _BALANCING_CURRENT_A if v.battery_state is BatteryState.BALANCING else _CHARGE_CURRENT_A
        )
    elif speed > 0:
        current = -(3.0 + _AMPS_PER_KMH * speed)
    else:
        current = _IDLE_CURRENT_A
    soc = v.battery_soc if v.battery_soc is not None else 0
    voltage = round(44.0 + 0.1 * soc + 0.01 * current, 2)
    if model.plugged and soc < 100:
        remaining = round((100 - soc) * _CHARGE_SECONDS_PER_PERCENT)
    else:
        remaining = _NO_ESTIMATE
    # The car sends a range of 0 while charging and switching off (docs/can.md).
    ready = v.system_state is SystemState.READY
    autonomy = v.remaining_autonomy if ready and v.remaining_autonomy is not None else 0
    brake = 1 if v.park_brake_status is ParkBrake.ACTIVATED else 0
    values: dict[str, dict[str, Value]] = {
        "BMS_Battery": {
            "PackCurrent": round(current, 1),
            "PackVoltage": voltage,
            "StateOfCharge": soc,
        },
        "ECU_Odometer": {"Odometer": v.total_odometer or 0.0, "Speed": speed},
        "OBC_Charge": {"RemainingChargeTime": remaining},
        "BMS_Temperatures": {"PackTemperature1": 21, "PackTemperature2": 22},
        "Display": {
            "RemainingRange": min(127, autonomy),
            "Gear": _GEAR_RAW[v.rnd],
            "Ready": int(ready),
            "ParkBrake": brake,
        },
        "ParkBrakeStatus": {"ParkBrake": brake},
    }
    return [(_IDS[name], encode(_IDS[name], signals)) for name, signals in values.items()]


def vin_frames(vin: str) -> list[tuple[int, bytes]]:
    """The three VIN frames of ``vin`` (0x712: characters 1-3, 0x710: 4-9, 0x711: 10-17)."""
    chars = vin.encode("ascii")
    return [(frame_id, chars[start:end]) for frame_id, start, end in _VIN_FRAMES]
