"""``AmiBus``: the car's CAN broadcast turned into readings, without I/O.

Feed it every frame seen on the bus, with its timestamp; ask it for the reading as
of now. Like :class:`~o2x.machine.VehicleMachine` it owns no socket, thread or
clock, so the python-can source, the BLE OBD adapters and the tests drive the same
object.

The bus is a set of last values: a frame replaces the one before it with the same
ID. :meth:`AmiBus.feed` therefore only files the payload away (after checking its ID
and length); it is decoded, with the compiled decoders of :mod:`o2x.can.dbc`, when a
reading needs it and only if it changed since it was last decoded. On a bus that
carries thousands of frames a second this keeps the cost per frame to a dictionary
look-up and a store, while a reading still sees the newest value of every signal.

A message that stops coming is forgotten: its values are unknown once the bus has
carried other frames for :data:`STALE_AFTER` seconds without it (a charger that
stops reporting when the cable is pulled must not keep its last remaining time).
The VIN is never forgotten.

How each SDK field is derived from the signals, and how sure that is, is written
down in ``docs/can.md``; the rules are in :meth:`AmiBus.snapshot`.

>>> import datetime as dt
>>> bus = AmiBus()
>>> bus.feed(0x580, bytes.fromhex("10008c1400550000"), 0.0)   # 1.6 A, 52.6 V, 85 %
>>> info = bus.snapshot(vin="VR1AB12C3D4567890", received_at=dt.datetime.now(dt.UTC))
>>> info.data.battery_soc.value, info.live.pack_current, info.status.value
(85, 1.6, 'charging')
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Final

import attrs

from ..errors import InvalidVIN
from ..model import (
    BatteryState,
    Gear,
    LiveData,
    Measure,
    ParkBrake,
    SystemState,
    VehicleData,
    VehicleInfo,
    VehicleStatus,
    normalize_vin,
)
from .dbc import CompiledMessage, SignalSpec, Value, compiled

__all__ = ["AmiBus", "AmiBusStats"]

#: The largest standard (11-bit) identifier; anything above is an extended ID.
MAX_STANDARD_ID: Final = 0x7FF
#: The most bytes a classic CAN frame carries.
MAX_LENGTH: Final = 8
#: Seconds of bus time after which a message not seen again is unknown. The rates
#: are unmeasured (docs/can.md): the sources imply a few frames a second, and the VIN
#: once a second or so; 5 s is well above any period seen, and short enough that a
#: message which stopped is not shown for long.
STALE_AFTER: Final = 5.0
#: Seconds between two readings taken from a stream of frames, at least: 20 a
#: second at most, already more than a display or a broker wants.
READING_INTERVAL: Final = 0.05
#: Remaining charge times above this many seconds (600 min) mean "not charging",
#: as servicemensch/TopolinoInfoDisplay reads them: no charge of a 5.5 kWh pack
#: takes 10 hours.
LONGEST_CHARGE: Final = 600 * 60

# The messages o2x reads, by their names in ami.dbc. Positions come from there.
_BATTERY: Final = "BMS_Battery"
_ODOMETER: Final = "ECU_Odometer"
_CHARGER: Final = "OBC_Charge"
_TEMPERATURES: Final = "BMS_Temperatures"
_DISPLAY: Final = "Display"
_BRAKE: Final = "ParkBrakeStatus"
# The VIN's three frames, in the order their characters make the VIN.
_VIN_PARTS: Final = ("VIN_1to3", "VIN_4to9", "VIN_10to17")

#: The DBC's gear names -> the SDK's gears ("Null" is the car's own "no gear").
_GEARS: Final = {"R": Gear.REVERSE, "N": Gear.NEUTRAL, "D": Gear.DRIVE, "Null": Gear.UNKNOWN}
_MOVING: Final = frozenset({Gear.DRIVE, Gear.REVERSE})
#: RemainingChargeTime's "no estimate" value, by its name in the DBC.
_NO_ESTIMATE: Final = "NoEstimate"


@attrs.frozen
class AmiBusStats:
    """Counters of an :class:`AmiBus`: what it used and what it refused."""

    #: Frames of a message o2x reads, with the right length.
    frames: int
    #: Frames whose ID ami.dbc does not list (most of a busy bus), ignored.
    unknown_ids: int
    #: Frames with a 29-bit identifier (the AMI's are all 11-bit), ignored.
    extended_ids: int
    #: Frames of a known ID shorter than the DBC's length or longer than 8 bytes, ignored.
    bad_lengths: int
    #: Decoded payloads holding a value outside its signal's range (that value is unknown).
    out_of_range: int
    #: VINs assembled from 0x710..0x712 that are not VINs, ignored.
    invalid_vins: int
    #: Times 0x714 and 0x713's parking brake bit came to disagree (0x714 was used).
    brake_disagreements: int


class _Slot:
    """One message's last payload and, once needed, its decoded values."""

    __slots__ = ("decoded", "length", "message", "payload", "ranges", "seen", "stales")

    def __init__(self, message: CompiledMessage, *, stales: bool) -> None:
        self.message = message
        self.length = message.length
        #: Whether the values are forgotten after STALE_AFTER (all but the VIN's).
        self.stales = stales
        self.payload: bytes | None = None
        #: Bus time of the newest frame when this one was last seen (see _catch_up).
        self.seen = -math.inf
        #: The values of ``payload`` (``None`` for one out of range), or ``None`` if stale.
        self.decoded: tuple[Value | None, ...] | None = None
        #: Each signal's limits, widened by half a step: a raw value at the DBC's limit
        #: scales to a float a rounding error past it (32767 * 0.1 > 3276.7).
        self.ranges = tuple(_limits(s) for s in message.signals)


def _limits(signal: SignalSpec) -> tuple[float | None, float | None]:
    slack = abs(signal.scale) / 2
    low = None if signal.minimum is None else signal.minimum - slack
    high = None if signal.maximum is None else signal.maximum + slack
    return low, high


class AmiBus:
    """The AMI's broadcast as readings; see the module docstring.

    ``feed`` never raises for what a bus can carry: unknown or extended IDs, wrong
    lengths and out-of-range values are counted in :attr:`stats` and ignored.
    """

    def __init__(self) -> None:
        messages = {m.name: m for m in compiled().values()}
        self._slots: dict[int, _Slot] = {
            m.frame_id: _Slot(m, stales=m.name not in _VIN_PARTS) for m in messages.values()
        }
        #: The length of each message o2x reads, by ID: the check of the hot path.
        self._length_of = {can_id: slot.length for can_id, slot in self._slots.items()}.get
        #: Payloads fed since the last reading, by ID, not yet filed into the slots.
        self._fresh: dict[int, bytes] = {}
        #: Bus time of the last _catch_up that filed anything.
        self._caught_up_at = -math.inf
        self._changes = 0
        by_name = {slot.message.name: slot for slot in self._slots.values()}
        self._battery = by_name[_BATTERY]
        self._odometer = by_name[_ODOMETER]
        self._charger = by_name[_CHARGER]
        self._temperatures = by_name[_TEMPERATURES]
        self._display = by_name[_DISPLAY]
        self._brake = by_name[_BRAKE]
        self._vin_slots = tuple(by_name[name] for name in _VIN_PARTS)
        index = {name: slot.message.index for name, slot in by_name.items()}
        self._i_current = index[_BATTERY]("PackCurrent")
        self._i_voltage = index[_BATTERY]("PackVoltage")
        self._i_soc = index[_BATTERY]("StateOfCharge")
        self._i_odometer = index[_ODOMETER]("Odometer")
        self._i_speed = index[_ODOMETER]("Speed")
        self._i_charge_time = index[_CHARGER]("RemainingChargeTime")
        self._i_range = index[_DISPLAY]("RemainingRange")
        self._i_gear = index[_DISPLAY]("Gear")
        self._i_ready = index[_DISPLAY]("Ready")
        self._i_display_brake = index[_DISPLAY]("ParkBrake")
        self._i_brake = index[_BRAKE]("ParkBrake")
        charge_time = messages[_CHARGER].signals[self._i_charge_time]
        self._no_estimate = next(k for k, v in charge_time.choices.items() if v == _NO_ESTIMATE)
        gear = messages[_DISPLAY].signals[self._i_gear]
        self._gears = {raw: _GEARS[name] for raw, name in gear.choices.items()}
        #: Timestamp of the last frame used, or ``None`` before the first.
        self.last_timestamp: float | None = None
        self._frames = 0
        self._unknown = 0
        self._extended = 0
        self._bad_length = 0
        self._out_of_range = 0
        self._invalid_vins = 0
        self._disagreements = 0
        self._disagreeing = False
        self._vin: str | None = None
        self._vin_payloads: tuple[bytes | None, ...] = (None, None, None)

    # --- input --------------------------------------------------------------------

    def feed(
        self,
        can_id: int,
        data: bytes | bytearray | memoryview,
        timestamp: float,
        is_extended_id: bool = False,
    ) -> None:
        """One frame seen on the bus, at ``timestamp`` (seconds, any monotonic origin).

        The hot path of the CAN sources: it checks and files the payload away and
        decodes nothing (see the module docstring). A frame shorter than its
        message's DBC length, or longer than 8 bytes, is refused; a longer one is
        taken (padding: where only one source gives a length), its extra bytes
        ignored. ``data`` is copied unless it is ``bytes``.
        """
        # Tuned (benchmarks/bench_can.py, target 10x cantools' decode_message): the
        # common frame, bytes of the exact length, costs one look-up and one store;
        # counting the rest and filing it into its slot wait for _feed_other and for
        # the next reading (_catch_up). ``is_extended_id`` is not keyword-only
        # because CPython 3.11 does not specialise calls to functions with
        # keyword-only defaults: that alone was a fifth of the time of a call.
        if data.__class__ is bytes and len(data) == self._length_of(can_id) and not is_extended_id:
            self._fresh[can_id] = data  # bytes: checked above
            self._frames += 1
            self.last_timestamp = timestamp
            return
        self._feed_other(can_id, data, timestamp, is_extended_id)

    def _feed_other(
        self, can_id: int, data: bytes | bytearray | memoryview, timestamp: float, extended: bool
    ) -> None:
        slot = self._slots.get(can_id)
        if slot is None or extended:
            if extended or can_id > MAX_STANDARD_ID:
                self._extended += 1
            else:
                self._unknown += 1
            return
        if not slot.length <= len(data) <= MAX_LENGTH:
            self._bad_length += 1
            return
        # A copy: python-can hands over bytearrays, which a caller may reuse.
        self._fresh[can_id] = bytes(data)
        self._frames += 1
        self.last_timestamp = timestamp

    def _catch_up(self) -> None:
        """File the payloads fed since the last reading into their slots."""
        fresh = self._fresh
        if not fresh:
            return
        now = self.last_timestamp if self.last_timestamp is not None else -math.inf
        slots = self._slots
        if now - self._caught_up_at > STALE_AFTER:
            # No reading for longer than a message may be missed: the bus was silent
            # (the car slept) or nobody asked. That time does not count against the
            # messages that have not come back yet: their clocks start again now,
            # rather than every one of them going unknown as the car wakes.
            for slot in slots.values():
                slot.seen = now
        self._caught_up_at = now
        for can_id, payload in fresh.items():
            slot = slots[can_id]
            # The time of the newest frame stands for when this one came: at most a
            # reading's interval off, much less than STALE_AFTER.
            slot.seen = now
            if payload != slot.payload:
                slot.payload = payload
                slot.decoded = None
                self._changes += 1
        fresh.clear()

    @property
    def changes(self) -> int:
        """Bumped whenever a payload differs from the one before it with its ID."""
        self._catch_up()
        return self._changes

    # --- output -------------------------------------------------------------------

    @property
    def stats(self) -> AmiBusStats:
        """A snapshot of the counters."""
        return AmiBusStats(
            frames=self._frames,
            unknown_ids=self._unknown,
            extended_ids=self._extended,
            bad_lengths=self._bad_length,
            out_of_range=self._out_of_range,
            invalid_vins=self._invalid_vins,
            brake_disagreements=self._disagreements,
        )

    @property
    def frame_count(self) -> int:
        """``stats.frames``, without making the snapshot: the sources read it for every
        batch of frames, to know whether the batch held any frame o2x reads."""
        return self._frames

    @property
    def vin(self) -> str | None:
        """The VIN the bus broadcasts (frames 0x710..0x712), once all three were seen."""
        self._catch_up()
        payloads = tuple(slot.payload for slot in self._vin_slots)
        if payloads != self._vin_payloads:
            self._vin_payloads = payloads
            self._vin = self._assemble_vin(payloads)
        return self._vin

    @property
    def charging(self) -> bool:
        """Charge current flows into a car standing still (see ``docs/can.md``)."""
        self._catch_up()
        current = self._value(self._battery, self._i_current)
        if current is None or current <= 0:
            return False
        speed = self._value(self._odometer, self._i_speed)
        if speed is not None and speed > 0:
            return False  # regenerative braking: positive current, while moving
        return not (self._ready() and self._gear() in _MOVING)

    @property
    def cant_charge(self) -> bool:
        """The charger reports a remaining time, but the parking brake is released
        and no charge current flows: the SDK's ``cantCharge`` (a heuristic, see
        ``docs/can.md``)."""
        self._catch_up()
        if self._charge_seconds() is None or self._park_brake() is not ParkBrake.RELEASED:
            return False
        current = self._value(self._battery, self._i_current)
        if current is None or current > 0:
            return False
        # A car on the move is not plugged in (the charger may well keep its last
        # estimate while driving).
        return not self._moving()

    def _moving(self) -> bool:
        speed = self._value(self._odometer, self._i_speed)
        return (speed is not None and speed > 0) or (
            self._ready() is True and self._gear() in _MOVING
        )

    def snapshot(self, *, vin: str, received_at: _dt.datetime) -> VehicleInfo:
        """The reading as of the last frame fed; what was never seen is ``None``/unknown."""
        self._catch_up()
        battery, odometer = self._battery, self._odometer
        current = self._value(battery, self._i_current)
        voltage = self._value(battery, self._i_voltage)
        # Shown at the signals' resolution (0.1 A, 0.01 V): 5080 * 0.01 is 50.800000000000004.
        if current is not None:
            current = round(current, 1)
        if voltage is not None:
            voltage = round(voltage, 2)
        soc = self._value(battery, self._i_soc)
        speed = self._value(odometer, self._i_speed)
        km = self._value(odometer, self._i_odometer)
        ready = self._ready()
        gear = self._gear()
        charging = self.charging
        driving = not charging and (
            (speed is not None and speed > 0) or (ready is True and gear in _MOVING)
        )
        if charging:
            status = VehicleStatus.CHARGING
            system_state = SystemState.CHARGING
        else:
            if driving:
                status = VehicleStatus.DRIVING
            elif ready is not None or current is not None or speed is not None:
                status = VehicleStatus.PARKED
            else:
                status = VehicleStatus.UNKNOWN
            system_state = (
                SystemState.UNKNOWN
                if ready is None
                else SystemState.READY
                if ready
                else SystemState.STANDBY
            )
        autonomy = self._value(self._display, self._i_range)
        if autonomy == 0 and (charging or ready is not True):
            # The car sends 0 while charging and while switching off; 0 is a real
            # range only with an empty battery, on a car ready to drive.
            autonomy = None
        seconds = self._charge_seconds()
        temperatures = tuple(t for t in self._decoded(self._temperatures) or () if t is not None)
        power = (
            round(voltage * current / 1000, 3)
            if voltage is not None and current is not None
            else None
        )
        data = VehicleData(
            battery_soc=None if soc is None else Measure(soc, "%"),
            system_state=system_state,
            battery_state=BatteryState.UNKNOWN,
            remaining_autonomy=None if autonomy is None else Measure(autonomy, "km"),
            rnd=gear,
            charge_delay=None if seconds is None else Measure(math.ceil(seconds / 60), "min"),
            park_brake_status=self._park_brake(count=True),
            total_odometer=None if km is None else Measure(round(km, 1), "km"),
        )
        live = LiveData(
            speed=speed,
            pack_voltage=voltage,
            pack_current=current,
            pack_power=power,
            pack_temperatures=temperatures if self._decoded(self._temperatures) else None,
            ready=ready,
        )
        return VehicleInfo(vin, received_at, status, None, None, data, live)

    # --- helpers ----------------------------------------------------------------------

    def _decoded(self, slot: _Slot) -> tuple[Value | None, ...] | None:
        now = self.last_timestamp
        if slot.stales and now is not None and now - slot.seen >= STALE_AFTER:
            return None  # not seen for STALE_AFTER: unknown, as if never seen
        decoded = slot.decoded
        if decoded is None:
            payload = slot.payload
            if payload is None:
                return None
            values = slot.message.decode(payload)
            checked = tuple(
                value if (low is None or value >= low) and (high is None or value <= high) else None
                for value, (low, high) in zip(values, slot.ranges, strict=True)
            )
            if None in checked:
                self._out_of_range += 1
            slot.decoded = decoded = checked
        return decoded

    def _value(self, slot: _Slot, index: int) -> Value | None:
        decoded = self._decoded(slot)
        return None if decoded is None else decoded[index]

    def _ready(self) -> bool | None:
        ready = self._value(self._display, self._i_ready)
        return None if ready is None else ready == 1

    def _gear(self) -> Gear:
        gear = self._value(self._display, self._i_gear)
        return Gear.UNKNOWN if gear is None else self._gears.get(int(gear), Gear.UNKNOWN)

    def _park_brake(self, *, count: bool = False) -> ParkBrake:
        # 0x714 first; 0x713's bit when 0x714 has not been seen (or is out of range).
        brake = self._value(self._brake, self._i_brake)
        cross_check = self._value(self._display, self._i_display_brake)
        if brake is None:
            brake = cross_check
        elif count and cross_check is not None:
            # Counted when they come to disagree, not once per reading.
            disagreeing = cross_check != brake
            if disagreeing and not self._disagreeing:
                self._disagreements += 1
            self._disagreeing = disagreeing
        if brake is None:
            return ParkBrake.UNKNOWN
        return ParkBrake.ACTIVATED if brake == 1 else ParkBrake.RELEASED

    def _charge_seconds(self) -> Value | None:
        seconds = self._value(self._charger, self._i_charge_time)
        if seconds is None or seconds == self._no_estimate or seconds > LONGEST_CHARGE:
            return None
        return seconds

    def _assemble_vin(self, payloads: tuple[bytes | None, ...]) -> str | None:
        if any(p is None for p in payloads):
            return None
        chars: list[int] = []
        for slot in self._vin_slots:
            decoded = slot.message.decode(slot.payload or b"")
            chars.extend(int(c) for c in decoded)
        try:
            return normalize_vin(bytes(chars).decode("ascii"))
        except (UnicodeDecodeError, InvalidVIN):
            self._invalid_vins += 1
            return None
