"""The O2X dongle as a :class:`~o2x.source.Source`: bleak underneath, frames decoded here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from .._aio import AsyncioPortal
from ..errors import ConnectionFailed, FrameError
from ..model import VehicleInfo
from ..source import LinkCounters, Received, SourceSink, WallClock
from ..transport import DISCONNECT_TIMEOUT, BleakLink
from .frames import EventFrame, FrameDecoder, IdentityFrame, InfoFrame, decode_frame

if TYPE_CHECKING:
    from ..capture import _Recorder

__all__ = ["DongleSource"]


class DongleSource:
    """An O2X dongle over bleak (the system's Bluetooth or a virtual radio)."""

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
    ) -> None:
        self._portal = portal
        self._sink = sink
        self._vin = vin
        self._link = BleakLink(
            portal,
            self,
            scanner_kwargs=scanner_kwargs,
            client_kwargs=client_kwargs,
            system_bluetooth=system_bluetooth,
        )
        #: The wire-format decoder of the current link (its counters span every link).
        self.decoder = FrameDecoder()
        self._wall = WallClock()
        # The link whose notifications are ours; None between links.
        self._generation: int | None = None
        self._address = ""
        #: Sees every notification of the current link before it is decoded (capture).
        self.recorder: _Recorder | None = None

    # --- Source -------------------------------------------------------------------------

    def start(self, task_group: TaskGroup) -> None:
        """Nothing runs in the background: bleak's callbacks drive everything."""

    async def start_scan(self) -> None:
        await self._portal.run(self._link.start_scan)

    async def stop_scan(self) -> None:
        await self._portal.run(self._link.stop_scan)

    async def connect(self, address: str) -> None:
        self._generation = await self._portal.run(self._link.connect, address)
        self._address = address
        self.decoder.reset()

    async def read_identity(self) -> str:
        try:
            frame = decode_frame(await self._portal.run(self._link.read_identity))
        except FrameError as exc:
            raise ConnectionFailed(f"the dongle's identity is not readable: {exc}") from exc
        if not isinstance(frame, IdentityFrame):
            raise ConnectionFailed("the identity characteristic holds no identity")
        return frame.vin

    async def subscribe(self) -> None:
        await self._portal.run(self._link.subscribe)

    async def disconnect(self) -> None:
        self._generation = None
        await self._portal.run(self._link.disconnect)

    async def close(self) -> None:
        self._generation = None
        with anyio.move_on_after(DISCONNECT_TIMEOUT + 0.5):
            await self._portal.run(self._link.close)

    def counters(self) -> LinkCounters:
        d = self.decoder.stats
        return LinkCounters(
            frames=d.frames,
            crc_errors=d.crc_errors,
            invalid_frames=d.invalid_frames,
            bytes_discarded=d.bytes_discarded,
            seq_gaps=d.seq_gaps,
        )

    # --- what BleakLink reports (LinkSink), on the caller's loop -----------------------

    def advertisement(self, address: str, vin: str) -> None:
        self._sink.advertisement(address, vin)

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
