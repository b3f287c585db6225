"""The dongle in the car, over Bluetooth LE, as a :class:`~o2x.source.Source`.

Whichever dongle the car carries: an O2X dongle (its frames are decoded here, with
:mod:`o2x.dongle.frames`), found by the VIN it advertises, or a BLE OBD adapter
plugged into the OBD port (:mod:`o2x.obd`), found by its looks and connected to
learn its car's VIN off the bus. One scan finds both; each link speaks the
protocol of the peer it goes to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import attrs
from anyio import CancelScope
from anyio.abc import TaskGroup

from .._aio import AsyncioPortal
from ..can.bus import AmiBus
from ..errors import ConnectionFailed, FrameError
from ..model import VehicleInfo
from ..obd.elm327 import Elm327Stats
from ..obd.layouts import DEFAULT_PASSKEY, AdapterLayout
from ..obd.link import AdapterLink
from ..source import LinkCounters, Received, SourceSink, WallClock
from ..transport import DISCONNECT_TIMEOUT, BleakLink
from .frames import EventFrame, FrameDecoder, IdentityFrame, InfoFrame, decode_frame

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice

    from ..capture import _Recorder

__all__ = ["DongleSource"]


class DongleSource:
    """The car's dongle over bleak (the system's Bluetooth or a virtual radio)."""

    single_peer = False
    not_found_hint = "check that the car is switched on and within Bluetooth range (a few metres)"

    def __init__(
        self,
        portal: AsyncioPortal,
        sink: SourceSink,
        *,
        vin: str,
        scanner_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        system_bluetooth: bool = True,
        vin_wait: float = 5.0,
        passkey: str = DEFAULT_PASSKEY,
    ) -> None:
        self._portal = portal
        self._sink = sink
        self._vin = vin
        self._vin_wait = vin_wait
        self._link = BleakLink(
            portal,
            self,
            scanner_kwargs=scanner_kwargs,
            client_kwargs=client_kwargs,
            system_bluetooth=system_bluetooth,
            passkey=passkey,
        )
        #: The wire-format decoder of the current link (its counters span every link).
        self.decoder = FrameDecoder()
        self._wall = WallClock()
        # The link whose notifications are ours; None between links.
        self._generation: int | None = None
        self._address = ""
        #: Sees every notification of the current link before it is decoded (capture).
        self.recorder: _Recorder | None = None
        # OBD adapters seen, and the car's bus as the current adapter shows it (kept
        # across links to the same adapter: a car that sleeps and wakes is the same).
        self._adapters: set[str] = set()
        self._ami: tuple[str, AmiBus] | None = None
        self._adapter: AdapterLink | None = None
        self._adapter_scope: CancelScope | None = None
        self._task_group: TaskGroup | None = None
        #: The layout of the adapter of the current link (None for an O2X dongle).
        self.layout: AdapterLayout | None = None
        # The adapter sessions' restarts and BUFFER FULLs, of the links that ended.
        self._restarts = self._buffer_fulls = 0

    def remember_device(self, device: BLEDevice) -> None:
        """Connect to ``device`` itself when its address is chosen (see BleakLink)."""
        self._link.remember_device(device)

    # --- Source -------------------------------------------------------------------------

    def start(self, task_group: TaskGroup) -> None:
        """Bleak's callbacks drive an O2X dongle; an adapter's session gets a task per link."""
        self._task_group = task_group

    async def start_scan(self) -> None:
        await self._portal.run(self._link.start_scan)

    async def stop_scan(self) -> None:
        await self._portal.run(self._link.stop_scan)

    async def connect(self, address: str) -> None:
        self._stop_adapter()
        self._generation = await self._portal.run(self._link.connect, address)
        self._address = address
        self.decoder.reset()
        if address in self._adapters:
            await self._open_adapter(address)

    async def _open_adapter(self, address: str) -> None:
        layout = self.layout = await self._portal.run(self._link.open_pipe, address)
        if self._ami is None or self._ami[0] != address:
            self._ami = (address, AmiBus())
        link = self._adapter = AdapterLink(
            layout,
            self._write,
            ami=self._ami[1],
            vin=self._vin,
            vin_wait=self._vin_wait,
            wall=self._wall,
            on_reading=self._adapter_reading,
            on_failed=self._adapter_failed,
        )
        assert self._task_group is not None, "start() comes first"
        scope = self._adapter_scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await link.run()

        self._task_group.start_soon(run)

    async def _write(self, data: bytes) -> None:
        await self._portal.run(self._link.write, data)

    def _stop_adapter(self) -> None:
        restarts, buffer_fulls = _session_counts(self._adapter)  # join the totals
        self._restarts += restarts
        self._buffer_fulls += buffer_fulls
        if self._adapter_scope is not None:
            self._adapter_scope.cancel()
        self._adapter = self._adapter_scope = self.layout = None

    @property
    def keeps_quiet_link(self) -> bool:
        """An adapter stays connected while the car's bus sleeps; an O2X dongle that
        falls silent is reconnected."""
        return self._adapter is not None

    @property
    def bus_heard(self) -> bool:
        """Whether the adapter has shown frames of the car's bus on this link (an O2X
        dongle: True)."""
        return self._adapter is None or self._adapter.bus_heard

    def _adapter_failed(self) -> None:
        # A session that failed while streaming leaves a link that carries nothing:
        # a lost link, so that the vehicle connects and sets the adapter up again.
        if self._adapter is not None and self._generation is not None:
            self._generation = None
            self._sink.link_lost()

    def _adapter_reading(self, items: list[Received]) -> None:
        if self._adapter is not None and self._generation is not None:
            self._sink.received(items)

    async def read_identity(self) -> str:
        if self._adapter is not None:
            return await self._adapter.read_vin()
        try:
            frame = decode_frame(await self._portal.run(self._link.read_identity))
        except FrameError as exc:
            raise ConnectionFailed(f"the dongle's identity is not readable: {exc}") from exc
        if not isinstance(frame, IdentityFrame):
            raise ConnectionFailed("the identity characteristic holds no identity")
        return frame.vin

    async def subscribe(self) -> None:
        if self._adapter is not None:
            self._adapter.subscribed = True
            return
        await self._portal.run(self._link.subscribe)

    async def disconnect(self) -> None:
        self._generation = None
        self._stop_adapter()
        await self._portal.run(self._link.disconnect)

    async def close(self) -> None:
        self._generation = None
        self._stop_adapter()
        with anyio.move_on_after(DISCONNECT_TIMEOUT + 0.5):
            await self._portal.run(self._link.close)

    def counters(self) -> LinkCounters:
        restarts, buffer_fulls = _session_counts(self._adapter)  # the current link's
        restarts += self._restarts
        buffer_fulls += self._buffer_fulls
        common = attrs.evolve(
            LinkCounters(),
            backend_errors=self._link.backend_errors,
            adapter_restarts=restarts,
            adapter_buffer_fulls=buffer_fulls,
        )
        if self._ami is not None:
            a = self._ami[1].stats
            return attrs.evolve(
                common,
                frames=a.frames,
                invalid_frames=a.bad_lengths + a.extended_ids + a.out_of_range,
            )
        d = self.decoder.stats
        return attrs.evolve(
            common,
            frames=d.frames,
            crc_errors=d.crc_errors,
            invalid_frames=d.invalid_frames,
            bytes_discarded=d.bytes_discarded,
            seq_gaps=d.seq_gaps,
        )

    # --- what BleakLink reports (LinkSink), on the caller's loop -----------------------

    def advertisement(self, address: str, vin: str) -> None:
        self._adapters.discard(address)
        self._sink.advertisement(address, vin)

    def adapter_seen(self, address: str) -> None:
        if len(self._adapters) < 256:  # a crowded car park must not grow this forever
            self._adapters.add(address)
        if address in self._adapters:
            self._sink.advertisement(address, None)

    def link_lost(self, generation: int) -> None:
        if generation == self._generation:
            if self.recorder is not None:
                self.recorder.link_lost(generation)
            self._sink.link_lost()

    def notifications(self, generation: int, chunks: list[bytes]) -> None:
        """Telemetry bytes arrived: decode them and report the readings now."""
        if generation != self._generation:
            return
        if self.recorder is not None:
            self.recorder.notifications(generation, self._address, chunks)
        if self._adapter is not None:
            adapter_items = self._adapter.received(chunks)
            if adapter_items:
                self._sink.received(adapter_items)
            return
        feed = self.decoder.feed
        vin = self._vin
        received_at = self._wall()
        from_frame = VehicleInfo.from_frame
        items: list[Received] = []
        append = items.append
        for chunk in chunks:
            for frame in feed(chunk):
                if type(frame) is InfoFrame:
                    append(from_frame(frame, vin=vin, received_at=received_at))
                elif type(frame) is EventFrame and frame.kind is not None:
                    append(frame.kind)
                else:  # unknown event codes, stray identity frames: alive, nothing more
                    append(None)
        if items:
            self._sink.received(items)


def _session_counts(link: AdapterLink | None) -> tuple[int, int]:
    """An adapter session's restarts of its monitor, and of those after BUFFER FULL
    (an ELM327's; a WiCAN's SLCAN channel is opened once)."""
    if link is None:
        return 0, 0
    stats = link.session.stats
    if isinstance(stats, Elm327Stats):
        return stats.restarts, stats.buffer_fulls
    return 0, 0
