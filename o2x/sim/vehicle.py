"""A simulated car with a dongle: a Bumble peripheral on the virtual radio.

By default the dongle is an O2X dongle: it advertises and serves the profile
exactly as one does and streams INFO frames from a
:class:`~o2x.sim.model.VehicleModel`. With ``dongle="elm327"`` or ``"wican"`` the
same car carries a BLE OBD adapter in its OBD port instead: the model's state goes
on the car's CAN bus (:func:`o2x.sim.can.ami_frames`) and the adapter, an emulator
of the real thing (:mod:`o2x.sim.adapters`), hands it over Bluetooth LE as such an
adapter does. Fault injection and a ground-truth log are there for tests.
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final

import attrs
from bumble import att, gatt, hci

from .._aio import AsyncioPortal
from ..dongle.frames import encode_event, encode_identity, encode_info
from ..dongle.profile import (
    COMPANY_ID,
    IDENTITY_UUID,
    SERVICE_UUID,
    TELEMETRY_UUID,
    local_name_for,
    manufacturer_data_for,
)
from ..model import EventKind, VehicleStatus, derive_status, normalize_vin
from ._adapter import DONGLES, AdapterDongle, notification_pdu
from ._portal import call_async, call_sync
from ._stack import (
    AD_COMPLETE_NAME,
    AD_COMPLETE_UUID128,
    AD_FLAGS,
    AD_MANUFACTURER,
    AD_TX_POWER,
    FLAGS_LE_ONLY_GENERAL,
    Air,
    SimController,
    address_for,
    build_ad,
    make_device,
    uninterruptible,
    uuid128_le,
)
from .adapters import Elm327Quirks
from .can import ami_frames, vin_frames
from .model import InfoValues, Phase, VehicleModel

__all__ = ["Fault", "LogKind", "LogRecord", "SimulatedVehicle"]

# Reasons the dongle gives when it ends a link (HCI error codes).
_REASON_USER: Final = hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR
_REASON_OUT_OF_RANGE: Final = hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR
_REASON_POWER_OFF: Final = (
    hci.HCI_ErrorCode.REMOTE_DEVICE_TERMINATED_CONNECTION_DUE_TO_POWER_OFF_ERROR
)
_HEADER_SIZE: Final = 5  # start, version, type, seq, length: bits after it are fair game


def _refuse_read(_connection: object) -> bytes:
    raise att.ATT_Error(att.ErrorCode.READ_NOT_PERMITTED)


def _refuse_write(_connection: object, _value: bytes) -> None:
    raise att.ATT_Error(att.ErrorCode.WRITE_NOT_PERMITTED)


class LogKind(enum.StrEnum):
    """What a :class:`LogRecord` is about."""

    STATUS = "status"
    """The status derived from the values sent changed (or was sent for the first time)."""
    EVENT = "event"
    """An EVENT frame was sent intact."""
    FAULT = "fault"
    """A fault was injected, or applied to a frame."""


class Fault(enum.StrEnum):
    """The faults a :class:`SimulatedVehicle` can be told to commit."""

    DROP_LINK = "drop_link"
    GO_SILENT = "go_silent"
    CORRUPT_NEXT = "corrupt_next"
    CORRUPTED_FRAME = "corrupted_frame"
    """One frame was sent with a flipped bit (one record per frame, with its ``seq``)."""
    OUT_OF_RANGE = "out_of_range"
    BACK_IN_RANGE = "back_in_range"
    NOTIFICATION_SIZE = "notification_size"
    DROP_DURING_SETUP = "drop_during_setup"
    """A link dropped at a step of its set-up (``details["step"]``, a :class:`SetupStep`)."""


class SetupStep(enum.StrEnum):
    """Where :meth:`SimulatedVehicle.drop_during_setup` drops the next link."""

    CONNECT = "connect"
    """The moment the central connects: its MTU exchange and service discovery fail."""
    IDENTITY = "identity"
    """When the central reads the identity characteristic (an O2X dongle's)."""
    SUBSCRIBE = "subscribe"
    """When the central turns notifications on, before any data flows."""
    COMMAND = "command"
    """When the central next writes to the pipe (an OBD adapter's): armed between
    links, its first command (the ELM327's ``ATZ``, the WiCAN's ``C``)."""


@attrs.frozen
class LogRecord:
    """One entry of a vehicle's ground-truth log.

    ``at`` is :func:`time.monotonic` when it happened. ``STATUS`` records carry
    ``status``, ``previous_status`` and the ``seq`` of the INFO frame; ``EVENT``
    records ``event`` (``None`` for a raw code, see ``details["code"]``) and ``seq``;
    ``FAULT`` records ``fault`` and, for frames, ``seq``. Frames are logged only when
    they were sent, and STATUS / EVENT only when sent intact: the log is what a
    perfect receiver would have decoded.
    """

    kind: LogKind
    at: float
    status: VehicleStatus | None = None
    previous_status: VehicleStatus | None = None
    event: EventKind | None = None
    fault: Fault | None = None
    seq: int | None = None
    details: Mapping[str, object] = attrs.field(factory=dict)


#: The fastest a simulated vehicle's model time may run, in times real time.
MAX_TIME_SCALE: Final = 10_000.0
#: The most frames a second a simulated dongle may be asked to send.
MAX_RATE_HZ: Final = 1_000.0


class SimulatedVehicle:
    """A car with an O2X dongle, as a Bumble peripheral on a :class:`~o2x.sim.VirtualRadio`.

    It advertises (manufacturer data ``0xFFFF`` = profile version + VIN; scan
    response ``O2X-`` + last six VIN characters and the O2X service UUID), serves
    the identity characteristic, and while a central is subscribed to telemetry
    sends an INFO frame ``rate_hz`` times per second, each advancing the model by
    ``time_scale / rate_hz`` model seconds. Every control method is a coroutine
    that can be awaited from asyncio or trio::

        vehicle = SimulatedVehicle("VR7ABCDEF12345678", seed=3)
        await radio.add(vehicle)
        await vehicle.set(system_state=SystemState.READY, rnd=Gear.DRIVE,
                          park_brake_status=ParkBrake.RELEASED, battery_soc=80)
        await vehicle.emit_event(EventKind.CANT_CHARGE)
        await vehicle.corrupt_next(2)
        await vehicle.drop_link()

    With ``dongle="elm327"`` or ``"wican"`` the car carries a BLE OBD adapter
    instead (see the module docstring): ``broadcast_vin=False`` makes a car whose
    bus names no VIN, ``quirks`` an ELM327 clone's departures from the datasheet,
    and ``passkey`` the WiCAN's pairing passkey (``None``: no pairing). The
    O2X-only faults (:meth:`emit_event`, :meth:`corrupt_next`) raise ``TypeError``
    there: the bus shows the car's state, not events.

    The frame stream is cut into notifications of the notification size (by
    default the link's MTU - 3) like a UART-to-BLE bridge does: full notifications
    go out at once, a shorter tail waits up to ``flush_timeout`` seconds for the next
    frame, so a notification may hold the end of one frame and the start of the next.
    """

    def __init__(
        self,
        vin: str,
        *,
        seed: int = 0,
        rate_hz: float = 10.0,
        time_scale: float = 1.0,
        autopilot: bool = False,
        battery_soc: float = 80.0,
        total_odometer: float = 1234.5,
        firmware: tuple[int, int] = (1, 0),
        rssi: int = -60,
        tx_power: int = 0,
        flush_timeout: float = 0.01,
        identity_vin: str | None = None,
        dongle: str = "o2x",
        broadcast_vin: bool = True,
        quirks: Elm327Quirks | None = None,
        passkey: str | None = "123456",
        bus_vin: str | None = None,
        wican_protocol: str = "slcan",
        address: str | None = None,
    ) -> None:
        if not 0 < rate_hz <= MAX_RATE_HZ:
            raise ValueError(f"rate_hz must be above 0 and at most {MAX_RATE_HZ}, not {rate_hz}")
        # The model advances in steps of at most a model second, so each frame costs
        # time_scale / rate_hz steps: a bound keeps one frame from blocking the loop.
        if not 0 <= time_scale <= MAX_TIME_SCALE:
            raise ValueError(f"time_scale must be 0 to {MAX_TIME_SCALE:,}, not {time_scale}")
        if not -127 <= rssi <= 20 or not -127 <= tx_power <= 127:
            raise ValueError("rssi is -127..20 dBm and tx_power -127..127 dBm")
        if not 0 <= flush_timeout <= 60:
            raise ValueError(f"flush_timeout must be 0 to 60 s, not {flush_timeout}")
        if dongle not in DONGLES:
            raise ValueError(f"dongle must be one of {', '.join(DONGLES)}, not {dongle!r}")
        if quirks is not None and dongle != "elm327":
            raise ValueError("quirks are an ELM327 adapter's (dongle='elm327')")
        self.vin: Final = normalize_vin(vin)
        #: The dongle the car carries: ``"o2x"``, ``"elm327"`` or ``"wican"``.
        self.dongle: Final = dongle
        #: Whether the car's bus carries its VIN (frames 0x710..0x712), for adapters.
        self.broadcast_vin = broadcast_vin
        #: The VIN those frames carry: the car's own, or another (a spoofed VIN).
        self.bus_vin = self.vin if bus_vin is None else normalize_vin(bus_vin)
        self.seed: Final = seed
        self.rate_hz: Final = rate_hz
        self.time_scale: Final = time_scale
        self.firmware: Final = firmware
        #: The model the frames come from (read it, or drive it through the methods here).
        self.model: Final = VehicleModel(
            seed=seed,
            autopilot=autopilot,
            battery_soc=battery_soc,
            total_odometer=total_odometer,
        )
        #: Bluetooth address of the dongle (random static; by default derived from the
        #: VIN, so that an impostor beside the real car needs one of its own).
        self.address: Final = (
            address_for(self.vin if dongle == "o2x" else f"{self.vin}/{dongle}")
            if address is None
            else _random_static(address)
        )
        #: The OBD adapter in the car's port, if that is the dongle.
        self.adapter: Final = (
            None
            if dongle == "o2x"
            else AdapterDongle(
                dongle,
                address=self.address,
                quirks=quirks,
                seed=seed,
                passkey=passkey,
                protocol=wican_protocol if dongle == "wican" else None,
            )
        )
        if self.adapter is not None:
            self.adapter.on_write = lambda: self._setup_step(SetupStep.COMMAND)
        #: The local name in the scan response.
        self.local_name: Final = (
            local_name_for(self.vin) if self.adapter is None else self.adapter.local_name
        )
        self._since_vin = math.inf
        self.flush_timeout = flush_timeout
        self._rssi = rssi
        self._tx_power = tx_power
        # An impostor advertises one VIN and serves another's identity (hostile-peer tests).
        self._identity: Final = encode_identity(
            self.vin if identity_vin is None else normalize_vin(identity_vin), firmware
        )
        self._fault_rng = random.Random(f"faults:{seed}")

        self._log: list[LogRecord] = []
        self._values = self.model.snapshot()
        self._seq = -1
        self._frames_sent = 0
        self._notifications_sent = 0
        self._last_status: VehicleStatus | None = None
        self._advertising_wanted = True
        self._silent_until = 0.0
        self._corrupt_pending = 0
        self._notification_size: int | None = None

        # Set while attached to a radio (all of it lives on the radio's loop).
        self._portal: AsyncioPortal | None = None
        self._air: Air | None = None
        self._controller: SimController | None = None
        self._device: Any = None
        self._telemetry: Any = None
        self._connection: Any = None
        self._subscribed = False
        self._tx = bytearray()
        # Stream offsets, for logging a frame only once all of it has been notified.
        self._queued_bytes = 0
        self._sent_bytes = 0
        self._on_sent: deque[tuple[int, Callable[[], None]]] = deque()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._advertising_lock: asyncio.Lock | None = None
        self._detaching = False
        self._link_changed: asyncio.Event | None = None
        # The set-up step at which the next link is dropped (drop_during_setup).
        self._drop_at: SetupStep | None = None

    def __repr__(self) -> str:
        return f"<SimulatedVehicle {self.vin} at {self.address}>"

    # --- state, read from anywhere -----------------------------------------------------

    @property
    def log(self) -> list[LogRecord]:
        """A copy of the ground-truth log, oldest first."""
        return list(self._log)

    @property
    def attached(self) -> bool:
        """Whether the vehicle is on a radio."""
        return self._air is not None

    @property
    def connected(self) -> bool:
        """Whether a central is connected to the dongle."""
        return self._connection is not None

    @property
    def subscribed(self) -> bool:
        """Whether the connected central has notifications on for telemetry."""
        return self._subscribed

    @property
    def advertising(self) -> bool:
        """Whether the dongle is in range (it advertises whenever it is not connected)."""
        return self._advertising_wanted

    @property
    def phase(self) -> Phase:
        """The model's phase."""
        return self.model.phase

    @property
    def info(self) -> InfoValues:
        """The INFO values the car would send now (as of its last tick or control call)."""
        # Under trio the model changes on the radio's thread: hand out the last
        # complete snapshot made there rather than read it mid-step.
        return self._values if self._air is not None else self.model.snapshot()

    @property
    def frames_sent(self) -> int:
        """INFO and EVENT frames sent on the telemetry stream (intact or not)."""
        return self._frames_sent

    @property
    def notifications_sent(self) -> int:
        """Telemetry notifications sent."""
        return self._notifications_sent

    @property
    def last_seq(self) -> int | None:
        """Sequence number of the last frame sent, or ``None`` before the first."""
        return None if self._seq < 0 else self._seq

    @property
    def notification_size(self) -> int | None:
        """Bytes per notification as set, or ``None`` for the link's MTU - 3."""
        return self._notification_size

    # --- control --------------------------------------------------------------------

    async def set(self, **fields: Any) -> None:
        """Set INFO fields (``battery_soc=80``, ``rnd=Gear.DRIVE``...) and send a frame now.

        Takes the names of the INFO frame's fields; values evolve from there as the
        phase they imply goes on. See :meth:`VehicleModel.apply
        <o2x.sim.model.VehicleModel.apply>` for ``None`` and the alert masks.
        Asking to charge with the parking brake released sends ``CANT_CHARGE``
        and does not charge.
        """
        await call_sync(self._portal, self._apply, fields)

    async def drive(self) -> None:
        """Switch on, release the parking brake, select drive; send a frame now."""
        await call_sync(self._portal, self._phase_change, Phase.DRIVING, None)

    async def park(self) -> None:
        """Stop, apply the parking brake, switch off; send a frame now."""
        await call_sync(self._portal, self._phase_change, Phase.PARKED, None)

    async def charge(self, delay_minutes: float | None = None) -> None:
        """Plug in; charging starts after ``delay_minutes`` (drawn from the seed if omitted).

        With the parking brake released the car sends ``CANT_CHARGE`` instead.
        """
        await call_sync(self._portal, self._phase_change, Phase.CHARGING, delay_minutes)

    async def emit_event(self, event: EventKind | int) -> bool:
        """Send an EVENT frame now; returns whether it was sent (a central listening)."""
        self._o2x_only("emit_event")
        encode_event(event)  # refuse what has no wire code before going anywhere
        return await call_sync(self._portal, self._send_event, event)

    async def drop_link(self) -> bool:
        """End the connection from the dongle's side; returns whether there was one.

        The dongle advertises again right after (if in range).
        """
        return await call_async(self._portal, self._drop_link)

    async def go_silent(self, seconds: float) -> None:
        """Stay connected but send no notification for ``seconds`` (wall-clock) seconds.

        Frames are not generated meanwhile (sequence numbers do not advance); the
        model goes on.
        """
        if seconds < 0:
            raise ValueError(f"seconds cannot be negative, not {seconds}")
        await call_sync(self._portal, self._go_silent, seconds)

    async def corrupt_next(self, n: int = 1) -> None:
        """Flip one bit in each of the next ``n`` frames sent, so that their CRC fails.

        The bit is drawn (from the seed) among the payload and CRC bytes, so the
        frame's header still frames it correctly.
        """
        if n < 0:
            raise ValueError(f"n cannot be negative, not {n}")
        self._o2x_only("corrupt_next")
        await call_sync(self._portal, self._corrupt_next, n)

    async def advertise(self, enabled: bool) -> None:
        """Come in range (``True``) or go out of range (``False``).

        Out of range, the dongle stops advertising, drops its connection as a
        supervision timeout would (reason 0x08) and refuses new ones.
        """
        await call_async(self._portal, self._set_in_range, enabled)

    async def set_notification_size(self, size: int | None) -> None:
        """Bytes per telemetry notification; ``None`` for the link's MTU - 3 (the default).

        A size larger than the MTU allows is capped to MTU - 3 when sending.
        """
        if size is not None and size < 1:
            raise ValueError(f"a notification holds at least 1 byte, not {size}")
        await call_sync(self._portal, self._set_notification_size, size)

    async def drop_during_setup(self, step: SetupStep | str) -> None:
        """Drop the next link when the central reaches ``step`` of setting it up.

        Once: the link after it is left alone. ``identity`` is an O2X dongle's step
        and ``command`` an OBD adapter's (``ValueError`` otherwise). Logged as a
        ``DROP_DURING_SETUP`` fault when it happens, with the step.
        """
        step = SetupStep(step)
        if step is SetupStep.IDENTITY and self.adapter is not None:
            raise ValueError("an OBD adapter has no identity characteristic: no identity step")
        if step is SetupStep.COMMAND and self.adapter is None:
            raise ValueError("an O2X dongle takes no commands: no command step")
        await call_sync(self._portal, self._arm_drop, step)

    async def wait_connected(self) -> None:
        """Wait until a central is connected (wrap in a timeout)."""
        await call_async(self._portal, self._wait_connected)

    async def wait_subscribed(self) -> None:
        """Wait until a central has subscribed to telemetry (wrap in a timeout)."""
        await call_async(self._portal, self._wait_link, True)

    async def wait_disconnected(self) -> None:
        """Wait until no central is connected (wrap in a timeout)."""
        await call_async(self._portal, self._wait_link, False)

    def _o2x_only(self, what: str) -> None:
        if self.adapter is not None:
            raise TypeError(
                f"{what} is the O2X dongle's: an OBD adapter carries the car's bus, where "
                "events and values come from the car's state (drive, park, charge, set)"
            )

    # --- implementation: everything below runs on the radio's loop --------------------

    def _record(self, kind: LogKind, **fields: Any) -> None:
        self._log.append(LogRecord(kind, time.monotonic(), **fields))

    def _fault(self, fault: Fault, seq: int | None = None, **details: object) -> None:
        self._record(LogKind.FAULT, fault=fault, seq=seq, details=details)

    def _apply(self, fields: dict[str, Any]) -> None:
        self.model.apply(**fields)
        self._send_current()

    def _phase_change(self, phase: Phase, delay_minutes: float | None) -> None:
        if phase is Phase.DRIVING:
            self.model.drive()
        elif phase is Phase.PARKED:
            self.model.park()
        else:
            self.model.charge(delay_minutes)
        self._send_current()

    def _send_current(self) -> None:
        self._values = values = self.model.snapshot()
        if self.adapter is not None:
            self._bus_frames(0.0)
            return
        for event in self.model.drain_events():
            self._send_event(event)
        self._send_info(values)

    def _tick(self, dt: float) -> None:
        self._values = values = self.model.step(dt)
        if self.adapter is not None:
            self._bus_frames(1.0 / self.rate_hz)
            return
        for event in self.model.drain_events():
            self._send_event(event)
        self._send_info(values)

    def _bus_frames(self, elapsed: float) -> None:
        # The car's bus, as an OBD adapter in its port hears it: every message, the
        # VIN about once a second. Events have no frame: the bus shows the state.
        adapter = self.adapter
        assert adapter is not None
        self.model.drain_events()
        if time.monotonic() < self._silent_until:
            return  # the car asleep: its bus is quiet, the adapter still connected
        frames = ami_frames(self.model)
        self._since_vin += elapsed
        if self.broadcast_vin and self._since_vin >= 1.0:
            self._since_vin = 0.0
            frames += vin_frames(self.bus_vin)
        self._frames_sent += len(frames)
        status = derive_status(self._values.system_state, self._values.rnd)
        if status is not self._last_status:
            self._record(LogKind.STATUS, status=status, previous_status=self._last_status)
            self._last_status = status
        adapter.bus_frames(frames)

    def _stream_open(self) -> bool:
        return (
            self._connection is not None
            and self._subscribed
            and time.monotonic() >= self._silent_until
        )

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _maybe_corrupt(self, frame: bytes, seq: int, what: str) -> tuple[bytes, bool]:
        if self._corrupt_pending <= 0:
            return frame, True
        self._corrupt_pending -= 1
        bit = self._fault_rng.randrange(_HEADER_SIZE * 8, len(frame) * 8)
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        self._fault(Fault.CORRUPTED_FRAME, seq, frame=what, bit=bit)
        return bytes(damaged), False

    def _send_info(self, values: InfoValues) -> None:
        if not self._stream_open():
            return
        seq = self._next_seq()
        frame, intact = self._maybe_corrupt(encode_info(seq=seq, **values.as_kwargs()), seq, "info")
        status = derive_status(values.system_state, values.rnd)
        self._queue(frame, partial(self._log_status, status, seq) if intact else None)

    def _log_status(self, status: VehicleStatus, seq: int) -> None:
        # Called once the frame has left whole: a frame lost with a discarded tail is
        # no transition, and the next frame that does get out carries it instead.
        if status is not self._last_status:
            self._record(LogKind.STATUS, status=status, previous_status=self._last_status, seq=seq)
            self._last_status = status

    def _send_event(self, event: EventKind | int) -> bool:
        if not self._stream_open():
            return False
        seq = self._next_seq()
        frame, intact = self._maybe_corrupt(encode_event(event, seq=seq), seq, "event")
        kind = event if isinstance(event, EventKind) else None
        details = {"code": frame[_HEADER_SIZE]}
        log = partial(self._record, LogKind.EVENT, event=kind, seq=seq, details=details)
        self._queue(frame, log if intact else None)
        return True

    # --- the byte stream ------------------------------------------------------------------

    def _chunk_size(self) -> int:
        mtu = int(self._connection.att_mtu) if self._connection is not None else 23
        limit = mtu - 3
        return limit if self._notification_size is None else min(self._notification_size, limit)

    def _queue(self, frame: bytes, on_sent: Callable[[], None] | None = None) -> None:
        """Append ``frame`` to the byte stream; ``on_sent`` runs once its last byte is out."""
        self._frames_sent += 1
        self._tx += frame
        self._queued_bytes += len(frame)
        if on_sent is not None:
            self._on_sent.append((self._queued_bytes, on_sent))
        size = self._chunk_size()
        while len(self._tx) >= size:
            self._notify(bytes(self._tx[:size]))
            del self._tx[:size]
        if self._tx and self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.flush_timeout, self._flush_tail)

    def _flush_tail(self) -> None:
        self._flush_handle = None
        if self._tx and self._connection is not None and self._subscribed:
            self._notify(bytes(self._tx))
            self._tx.clear()
        else:
            self._reset_stream()

    def _notify(self, chunk: bytes) -> None:
        # Straight onto the ATT bearer, as the GATT server would, without a task
        # per notification.
        pdu = att.ATT_Handle_Value_Notification(
            attribute_handle=self._telemetry.handle, attribute_value=chunk
        )
        self._connection.send_l2cap_pdu(att.ATT_CID, bytes(pdu))
        self._notifications_sent += 1
        self._sent_bytes += len(chunk)
        on_sent = self._on_sent
        while on_sent and on_sent[0][0] <= self._sent_bytes:
            on_sent.popleft()[1]()

    def _reset_stream(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        # The bytes still waiting never leave: neither do the frames they belong to.
        self._tx.clear()
        self._queued_bytes = self._sent_bytes
        self._on_sent.clear()

    # --- faults ---------------------------------------------------------------------------

    async def _drop_link(self) -> bool:
        connection = self._connection
        if connection is None:
            return False
        self._fault(Fault.DROP_LINK, reason=int(_REASON_USER))
        await uninterruptible(connection.disconnect(_REASON_USER))
        return True

    def _arm_drop(self, step: SetupStep) -> None:
        self._drop_at = step

    def _setup_step(self, step: SetupStep) -> bool:
        """The central reached ``step``: drop the link if that was asked for (then True)."""
        if self._drop_at is not step or self._connection is None:
            return False
        self._drop_at = None
        connection = self._connection
        self._fault(Fault.DROP_DURING_SETUP, step=step.value)
        task = asyncio.get_running_loop().create_task(
            uninterruptible(connection.disconnect(_REASON_USER))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _go_silent(self, seconds: float) -> None:
        self._silent_until = time.monotonic() + seconds
        if self.adapter is None:
            self._reset_stream()
        self._fault(Fault.GO_SILENT, seconds=seconds)

    def _corrupt_next(self, n: int) -> None:
        self._corrupt_pending += n
        self._fault(Fault.CORRUPT_NEXT, frames=n)

    async def _set_in_range(self, enabled: bool) -> None:
        if enabled == self._advertising_wanted:
            return
        self._advertising_wanted = enabled
        self._fault(Fault.BACK_IN_RANGE if enabled else Fault.OUT_OF_RANGE)
        if self._controller is not None:
            self._controller.accepting = enabled
        if not enabled and self._connection is not None:
            await uninterruptible(self._connection.disconnect(_REASON_OUT_OF_RANGE))
        await uninterruptible(self._sync_advertising())

    def _set_notification_size(self, size: int | None) -> None:
        self._notification_size = size
        self._fault(Fault.NOTIFICATION_SIZE, size=size)

    async def _wait_connected(self) -> None:
        while self._connection is None:
            event = self._link_changed
            if event is None:
                raise RuntimeError(f"{self!r} is not on a radio")
            await event.wait()

    async def _wait_link(self, want_subscribed: bool) -> None:
        def reached() -> bool:
            return self._subscribed if want_subscribed else self._connection is None

        while not reached():
            event = self._link_changed
            if event is None:
                raise RuntimeError(f"{self!r} is not on a radio")
            await event.wait()

    def _signal_link_change(self) -> None:
        if self._link_changed is not None:
            self._link_changed.set()
            self._link_changed = asyncio.Event()

    # --- attachment -----------------------------------------------------------------------

    async def _attach(
        self, air: Air, portal: AsyncioPortal, advertising_interval_ms: float
    ) -> None:
        if self._air is not None:
            raise RuntimeError(f"{self!r} is already on a radio")
        controller, device = make_device(air.link, self.local_name, self.address, rssi=self._rssi)
        controller.accepting = self._advertising_wanted
        if self.adapter is not None:
            device.add_service(self.adapter.service())
            device.advertising_data, device.scan_response_data = self.adapter.advertising()
            self._telemetry = self.adapter.notifying
            if self.adapter.passkey is not None:
                device.pairing_config_factory = self.adapter.pairing_config
        else:
            self._serve_o2x(device)
        device.advertising_interval_min = advertising_interval_ms
        device.advertising_interval_max = advertising_interval_ms
        device.on(device.EVENT_CONNECTION, self._on_connection)
        device.on("characteristic_subscription", self._on_subscription)
        await device.power_on()

        self._values = self.model.snapshot()
        self._air, self._portal = air, portal
        self._controller, self._device = controller, device
        self._advertising_lock = asyncio.Lock()
        self._link_changed = asyncio.Event()
        await self._sync_advertising()
        loop = asyncio.get_running_loop()
        self._ticker = loop.create_task(self._run(), name=f"{self!r} ticker")
        if self.adapter is not None:
            self._pump = loop.create_task(self.adapter.run(), name=f"{self!r} adapter")

    def _serve_o2x(self, device: Any) -> None:
        # Bumble's server does not enforce permissions; a dongle refuses what its
        # characteristics do not offer.
        self._telemetry = gatt.Characteristic(
            TELEMETRY_UUID,
            gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.READABLE,
            gatt.CharacteristicValue(read=_refuse_read, write=_refuse_write),
        )
        identity_value: gatt.CharacteristicValue[bytes] = gatt.CharacteristicValue(
            read=self._read_identity, write=_refuse_write
        )
        identity: gatt.Characteristic[bytes] = gatt.Characteristic(
            IDENTITY_UUID,
            gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE,
            identity_value,
        )
        device.add_service(gatt.Service(SERVICE_UUID, [self._telemetry, identity]))
        device.advertising_data = build_ad(
            [
                (AD_FLAGS, bytes((FLAGS_LE_ONLY_GENERAL,))),
                (
                    AD_MANUFACTURER,
                    COMPANY_ID.to_bytes(2, "little") + manufacturer_data_for(self.vin),
                ),
                (AD_TX_POWER, self._tx_power.to_bytes(1, "little", signed=True)),
            ]
        )
        device.scan_response_data = build_ad(
            [
                (AD_COMPLETE_NAME, self.local_name.encode("ascii")),
                (AD_COMPLETE_UUID128, uuid128_le(SERVICE_UUID)),
            ]
        )

    def _read_identity(self, _connection: object) -> bytes:
        self._setup_step(SetupStep.IDENTITY)  # answered all the same: the drop races it
        return self._identity

    async def _detach(self) -> None:
        air, device = self._air, self._device
        if air is None:
            return
        self._detaching = True
        for task in (self._ticker, self._pump):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._ticker = self._pump = None
        # Advertising changes in flight are let finish: Bumble must not be cut
        # in the middle of a command.
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connection is not None:
            await self._connection.disconnect(_REASON_POWER_OFF)
        await self._sync_advertising()
        await device.power_off()
        if self._controller in air.link.controllers:
            air.link.remove_controller(self._controller)
        self._reset_stream()
        self._signal_link_change()
        self._air = self._portal = self._controller = self._device = None
        self._advertising_lock = self._link_changed = None
        self._connection = None
        self._subscribed = False
        self._detaching = False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate_hz
        dt = period * self.time_scale
        next_tick = loop.time()
        while True:
            next_tick += period
            delay = next_tick - loop.time()
            if delay < -period:
                # The loop fell behind: carry on from now rather than burst.
                next_tick = loop.time()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
            self._tick(dt)

    async def _sync_advertising(self) -> None:
        # Advertise exactly while attached, in range and not connected.
        lock, device = self._advertising_lock, self._device
        if lock is None or device is None:
            return
        async with lock:
            wanted = self._advertising_wanted and self._connection is None and not self._detaching
            if wanted and not device.is_advertising:
                await device.start_advertising(auto_restart=False)
            elif not wanted and device.is_advertising:
                await device.stop_advertising()

    def _spawn_sync_advertising(self) -> None:
        task = asyncio.get_running_loop().create_task(self._sync_advertising())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_connection(self, connection: Any) -> None:
        if connection.role != hci.Role.PERIPHERAL:
            return
        self._connection = connection
        self._subscribed = False
        self._reset_stream()
        connection.on(
            connection.EVENT_DISCONNECTION,
            lambda reason: self._on_disconnection(connection, reason),
        )
        self._signal_link_change()
        self._setup_step(SetupStep.CONNECT)

    def _on_disconnection(self, connection: Any, reason: int) -> None:
        if self._connection is not connection:
            return
        self._connection = None
        self._subscribed = False
        if self.adapter is not None:
            self.adapter.close()
        self._reset_stream()
        self._signal_link_change()
        if self._device is not None and not self._detaching:
            self._spawn_sync_advertising()

    def _on_subscription(
        self, connection: Any, characteristic: Any, notify: bool, indicate: bool
    ) -> None:
        if characteristic is not self._telemetry or connection is not self._connection:
            return
        if notify and self._setup_step(SetupStep.SUBSCRIBE):
            return  # dropped before any data flows
        was_subscribed, self._subscribed = self._subscribed, bool(notify)
        self._signal_link_change()
        if self.adapter is not None:
            if self._subscribed:
                handle = self._telemetry.handle
                self.adapter.open(
                    lambda chunk: connection.send_l2cap_pdu(
                        att.ATT_CID, notification_pdu(handle, chunk)
                    )
                )
            else:
                self.adapter.close()
            return
        if self._subscribed and not was_subscribed:
            # A dongle starts streaming with the current values at once.
            self._reset_stream()
            self._send_current()


def _random_static(address: str) -> str:
    """``address`` checked to be a random static Bluetooth address, in upper case."""
    text = address.upper()
    parts = text.split(":")
    if len(parts) != 6 or not all(
        len(p) == 2 and all(c in "0123456789ABCDEF" for c in p) for p in parts
    ):
        raise ValueError(f"address must be six hex bytes as AA:BB:CC:DD:EE:FF, not {address!r}")
    if int(parts[0], 16) & 0xC0 != 0xC0:
        raise ValueError(
            f"a simulated dongle's address is random static: its first byte is C0 to FF, "
            f"not {parts[0]} ({address})"
        )
    return text
