"""The car's CAN bus as a :class:`~o2x.source.Source`, read with python-can.

A bus has one peer and nothing to scan: "scanning" waits for the first frame of a
message o2x reads, "connecting" is free, and the identity is the VIN the bus
broadcasts (0x710..0x712), waited for a while. Frames are read in a worker thread,
a batch at a time (whatever the bus holds, up to :data:`BATCH`), so that the
thread hop is paid per batch and not per frame. A batch that carried a frame o2x
reads gives a reading, taken from :class:`~o2x.can.AmiBus`, but at most one every
:data:`READING_INTERVAL`: a busy bus hands over a batch of a few frames thousands
of times a second, and a reading each time would cost the vehicle's pipeline far
more than the decoding (``benchmarks/README.md``, "CAN"). A reading held back is
taken as soon as the interval is over, whether or not more frames come.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import anyio
from anyio.abc import TaskGroup

from ..errors import ConnectionFailed, IdentityMismatch
from ..source import LinkCounters, SourceSink, WallClock
from .bus import READING_INTERVAL, AmiBus
from .readings import ReadingPacer

if TYPE_CHECKING:
    import can

__all__ = ["READING_INTERVAL", "CanSource"]

_log = logging.getLogger(__name__)

#: Frames taken from the bus per trip to the worker thread, at most.
BATCH: Final = 512
#: How long one read in the worker thread waits for a first frame, in seconds: the
#: longest a cancellation (leaving the vehicle) waits for the thread.
POLL: Final = 0.1


class CanSource:
    """A python-can bus carrying the AMI's broadcast (the bus is the caller's)."""

    single_peer = True
    not_found_hint = (
        "check that the car is switched on and the CAN interface is connected to its "
        "OBD-II port (pins 6 and 14) at 500 kbit/s"
    )

    def __init__(
        self, bus: can.BusABC, sink: SourceSink, *, vin: str | None, vin_wait: float
    ) -> None:
        self._bus = bus
        self._sink = sink
        self._expected_vin = vin
        self._vin_wait = vin_wait
        #: The decoded state of the bus (kept across links: a bus that sleeps and
        #: wakes is the same car).
        self.ami = AmiBus()
        self.address = f"can:{bus.channel_info}"
        self._wall = WallClock()
        self._scanning = False
        self._subscribed = False
        self._vin: str | None = vin
        self._verified = True
        self._vin_seen = anyio.Event()
        self._read_error: BaseException | None = None
        #: When readings are taken (anyio's clock).
        self._pacer = ReadingPacer(self.ami, self._wall)
        #: Sees every message read, before it is decoded (``o2x record --can``: a
        #: python-can writer such as ``can.Logger``). A failing recorder is dropped.
        self.recorder: Callable[[can.Message], object] | None = None
        #: Why recording stopped, if it did.
        self.recording_error: BaseException | None = None

    # --- Source -------------------------------------------------------------------------

    def start(self, task_group: TaskGroup) -> None:
        task_group.start_soon(self._read_loop)

    async def start_scan(self) -> None:
        self._scanning = True

    async def stop_scan(self) -> None:
        self._scanning = False

    async def connect(self, address: str) -> None:
        if self._read_error is not None:
            raise ConnectionFailed(f"the CAN bus cannot be read: {self._read_error}")

    async def read_identity(self) -> str:
        bus_vin = self.ami.vin
        if bus_vin is None and math.isfinite(self._vin_wait):
            with anyio.move_on_after(self._vin_wait):
                await self._vin_seen.wait()
            bus_vin = self.ami.vin
        expected = self._expected_vin
        if bus_vin is None:
            if expected is None:
                raise ConnectionFailed(
                    f"the bus on {self.address} broadcast no VIN within {self._vin_wait:g} s "
                    "(frames 0x710..0x712); give the car's VIN: O2XVehicle.over_can(bus, vin=...)"
                )
            self._verified = False
            _log.info("the bus broadcast no VIN; taking %s on trust", expected)
            return expected
        if expected is not None and bus_vin != expected:
            raise IdentityMismatch(
                f"the car on {self.address} broadcasts the VIN {bus_vin}, not {expected}"
            )
        self._verified = True
        self._vin = bus_vin
        return bus_vin

    async def subscribe(self) -> None:
        self._subscribed = True

    async def disconnect(self) -> None:
        self._subscribed = False

    async def close(self) -> None:
        self._scanning = self._subscribed = False

    #: A silent bus costs nothing to "reconnect": the machine's usual path is kept.
    keeps_quiet_link = False
    #: Only an OBD adapter can be connected and show nothing of a bus.
    bus_heard = True

    def counters(self) -> LinkCounters:
        s = self.ami.stats
        return LinkCounters(
            frames=s.frames,
            invalid_frames=s.bad_lengths + s.extended_ids + s.out_of_range,
            identity_verified=self._verified,
        )

    # --- reading the bus ----------------------------------------------------------------

    async def _read_loop(self) -> None:
        recv_batch = self._recv_batch
        while True:
            wait = min(POLL, max(0.0, self._pacer.due - anyio.current_time()))
            try:
                # Not abandoned on cancellation: the thread is waited for (at most
                # POLL seconds), so that nothing outlives the vehicle's block.
                batch = await anyio.to_thread.run_sync(recv_batch, wait)
            except Exception as exc:  # python-can raises CanError and OSError
                # A bus that fails to read (an unplugged USB adapter) is a silent
                # bus: the loose-connection timer reports it, and reading is tried
                # again, slowly.
                if self._read_error is None:
                    _log.warning("reading %s failed: %s", self.address, exc)
                self._read_error = exc
                await anyio.sleep(1.0)
                continue
            self._read_error = None
            if batch:
                self._frames(batch)
            now = anyio.current_time()
            if self._subscribed and now >= self._pacer.due:
                self._sink.received(self._pacer.take(now, self._vin or ""))

    def _recv_batch(self, wait: float) -> list[can.Message]:
        # In the worker thread: the first frame waits up to ``wait`` seconds, the
        # rest are whatever the bus already holds.
        recv = self._bus.recv
        message = recv(wait)
        batch: list[can.Message] = []
        while message is not None:
            batch.append(message)
            if len(batch) >= BATCH:
                break
            message = recv(0)
        return batch

    def _frames(self, batch: list[can.Message]) -> None:
        if self.recorder is not None:
            try:
                for message in batch:
                    self.recorder(message)
            except Exception as exc:  # a full disk must not stop the readings
                _log.warning("recording stopped: %s", exc)
                self.recording_error = exc
                self.recorder = None
        ami = self.ami
        feed = ami.feed
        before = ami.frame_count
        for message in batch:
            if message.is_error_frame or message.is_remote_frame:
                continue
            feed(
                message.arbitration_id,
                message.data,
                message.timestamp,
                is_extended_id=message.is_extended_id,
            )
        if ami.frame_count == before:
            return  # nothing o2x reads: other traffic, not a sign of the car
        if not self._vin_seen.is_set() and ami.vin is not None:
            self._vin_seen.set()
        if self._scanning:
            self._sink.advertisement(self.address, self._expected_vin or ami.vin or "")
        if not self._subscribed:
            return
        items = self._pacer.frames_arrived(anyio.current_time(), self._vin or "")
        if items:
            self._sink.received(items)
