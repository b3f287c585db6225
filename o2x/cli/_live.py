"""``o2x scan``, ``o2x watch`` and ``o2x record``: the commands that talk to a vehicle."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio
import attrs
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .. import __version__
from ..capture import CaptureWriter, RecordingVehicle
from ..discovery import DiscoveredDongle, discover
from ..machine import Timeouts
from ..model import Event, EventKind, VehicleInfo
from ..vehicle import O2XVehicle, Radio, Stream
from ._common import (
    ExitCode,
    Failure,
    Interruption,
    Simulation,
    describe_size,
    event_json,
    event_text,
    open_radio,
    path_exists,
    reading_text,
    remove_quietly,
    sample_json,
    spinner,
    state_dir,
    write_line,
)
from ._screen import live_screen, vehicle_grid

#: The SDK's default scan timeout, in seconds.
DEFAULT_SCAN_TIMEOUT: Final = 60.0

V = TypeVar("V", bound=O2XVehicle)


# --- scan ----------------------------------------------------------------------------


async def scan(
    out: Console,
    err: Console,
    *,
    seconds: float,
    sim: Simulation | None,
    json_mode: bool,
    stopped: Interruption | None = None,
) -> None:
    """List the dongles heard within ``seconds`` (:func:`o2x.discover`), strongest first.

    Stopped early (Ctrl-C), it lists those heard until then, and ``stopped`` says so.
    """
    found: dict[str, DiscoveredDongle] = {}
    started = time.monotonic()

    def heard(dongle: DiscoveredDongle) -> None:
        found[dongle.address] = dongle
        describe(f"Scanning for dongles: {len(found)} found")

    try:
        async with open_radio(sim) as radio:
            with spinner(err, "Scanning for dongles", seconds) as describe:
                await discover(seconds, radio=radio, on_found=heard)
    except anyio.get_cancelled_exc_class():
        # Ctrl-C: what was heard until then is still worth having.
        elapsed = time.monotonic() - started
        if stopped is not None:
            stopped.message = f"Stopped after {elapsed:.1f} s of {seconds:g} s: " + (
                f"{_heard(len(found))} heard until then (listed)." if found else "no dongle heard."
            )
        if found:
            _list_dongles(out, found, f"Dongles heard in {elapsed:.1f} s (stopped)", json_mode)
        raise
    if not found:
        raise Failure(
            f"no dongle found within {seconds:g} s; check that the car is switched on "
            "and within Bluetooth range (a few metres), or scan longer with --timeout",
            ExitCode.NOT_FOUND,
        )
    _list_dongles(out, found, f"Dongles heard in {seconds:g} s", json_mode)


def _heard(count: int) -> str:
    return f"{count} dongle" + ("" if count == 1 else "s")


#: What ``scan --json`` writes of each dongle (bleak's device object is not JSON).
_JSON_FIELDS = ("vin", "address", "rssi", "name", "kind")


def _list_dongles(
    out: Console, found: dict[str, DiscoveredDongle], title: str, json_mode: bool
) -> None:
    dongles = sorted(found.values(), key=lambda d: (-d.rssi, d.vin or "", d.address))
    if json_mode:
        for dongle in dongles:
            write_line(json.dumps({key: getattr(dongle, key) for key in _JSON_FIELDS}))
    elif out.is_terminal:
        table = Table(title=title, title_justify="left")
        table.add_column("VIN", style="bold")
        table.add_column("Kind")
        table.add_column("Address")
        table.add_column("RSSI", justify="right")
        table.add_column("Name")
        for dongle in dongles:
            table.add_row(
                dongle.vin or "(read on connecting)",
                "O2X dongle" if dongle.kind == "o2x" else "OBD adapter",
                dongle.address,
                f"{dongle.rssi} dBm",
                dongle.name,
            )
        out.print(table)
    else:
        for dongle in dongles:
            write_line(
                f"{dongle.vin or '-'}\t{dongle.address}\t{dongle.rssi}\t{dongle.name}"
                f"\t{dongle.kind}"
            )


# --- connecting ----------------------------------------------------------------------


@attrs.frozen
class Target:
    """Which vehicle to connect to, and how."""

    #: The VIN asked for, or the remembered one with ``previous``.
    vin: str
    previous: bool
    #: Give up scanning after this long; ``None``: the default (60 s, or no limit
    #: for the previous vehicle, as in the SDK).
    timeout: float | None
    sim: Simulation | None
    backend: str = "asyncio"
    #: ``--can INTERFACE:CHANNEL``: read the car's CAN bus instead of a dongle.
    can: tuple[str, str] | None = None
    bitrate: int = 500_000
    #: ``--adapter ADDRESS``: the one BLE OBD adapter to use.
    adapter: str | None = None
    #: ``--passkey``: what to pair an adapter that asks for one with.
    passkey: str = "123456"

    @property
    def scan_limit(self) -> float | None:
        if self.timeout is not None:
            return self.timeout
        return None if self.previous else DEFAULT_SCAN_TIMEOUT


def make_vehicle(cls: type[V], target: Target, radio: Radio | None) -> V:
    """The vehicle object for ``target`` (not entered yet)."""
    directory = state_dir(target.sim is not None)
    limit = target.scan_limit
    if limit is None:
        return cls.previous(radio=radio, state_dir=directory, passkey=target.passkey)
    # The remembered vehicle with a time limit is a first-time subscription to its
    # VIN: only first_time() scans with a timeout.
    return cls.first_time(
        target.vin,
        timeouts=Timeouts(scan=limit),
        radio=radio,
        state_dir=directory,
        adapter=target.adapter,
        passkey=target.passkey,
    )


@asynccontextmanager
async def connected(
    cls: type[V],
    target: Target,
    err: Console,
    *,
    prepare: Callable[[V], None] | None = None,
    stopped: Interruption | None = None,
    nothing: str = "",
) -> AsyncIterator[V]:
    """The vehicle, scanned for (with a spinner) and connected, for the block.

    Until it is connected, ``stopped`` says that Ctrl-C stopped the search, and
    how long it had gone on, followed by ``nothing`` (what was therefore not done);
    the caller says what is done once it is.
    """
    if stopped is not None:
        started = time.monotonic()
        looked_for = (
            f"for {target.vin} on {':'.join(target.can)}"
            if target.can is not None and target.vin
            else f"for the car on {':'.join(target.can)}"
            if target.can is not None
            else f"for {target.vin}"
        )
        stopped.message = lambda: (
            f"Stopped after {time.monotonic() - started:.1f} s of looking {looked_for}, "
            f"before it was connected.{nothing}"
        )
    if target.can is not None:
        async with _connected_over_can(cls, target, err, prepare=prepare) as car:
            yield car
        return
    async with AsyncExitStack() as stack:
        radio = await stack.enter_async_context(open_radio(target.sim))
        car = make_vehicle(cls, target, radio)
        if prepare is not None:
            prepare(car)
        where = "simulated radio" if target.sim is not None else "Bluetooth"
        with spinner(err, f"Scanning for {target.vin} ({where})", target.scan_limit):
            await stack.enter_async_context(car)
        yield car


@asynccontextmanager
async def _connected_over_can(
    cls: type[V], target: Target, err: Console, *, prepare: Callable[[V], None] | None = None
) -> AsyncIterator[V]:
    import can

    from ..sim.can import SimulatedCanCar

    assert target.can is not None
    interface, channel = target.can
    async with AsyncExitStack() as stack:
        if target.sim is not None:
            if interface != "virtual":
                raise Failure(
                    "--simulate with --can needs python-can's virtual interface "
                    "(--can virtual:CHANNEL)",
                    ExitCode.USAGE,
                )
            await stack.enter_async_context(
                SimulatedCanCar(
                    target.sim.vin,
                    channel=channel,
                    time_scale=target.sim.speed,
                    autopilot=target.sim.autopilot,
                )
            )
        try:
            bus = stack.enter_context(
                can.Bus(interface=interface, channel=channel, bitrate=target.bitrate)
            )
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise Failure(
                f"cannot open the CAN interface {interface}:{channel}: {exc}",
                ExitCode.BLUETOOTH,
            ) from exc
        timeouts = Timeouts(scan=target.scan_limit or DEFAULT_SCAN_TIMEOUT)
        car = cls.over_can(bus, vin=target.vin or None, timeouts=timeouts)
        if prepare is not None:
            prepare(car)
        with spinner(err, f"Waiting for the car on {interface}:{channel}", target.scan_limit):
            await stack.enter_async_context(car)
        yield car


def _clock(info: VehicleInfo) -> str:
    return info.received_at.astimezone().strftime("%H:%M:%S")


async def _report_events(
    car: O2XVehicle,
    events: Stream[Event],
    out: Console,
    json_mode: bool,
    screen: _WatchScreen | None = None,
) -> None:
    async for event in events:
        if json_mode:
            write_line(event_json(event.kind))
            continue
        stamp = event.at.astimezone().strftime("%H:%M:%S")
        out.print(Text(f"{stamp}  ") + event_text(event))
        if screen is not None:
            screen.events += 1
        if event.kind is EventKind.DISCONNECTED:
            if screen is not None:
                screen.link = "lost, waiting for the car"
            # The first reading after a loss comes from the new link.
            async with car.samples(buffer=1) as after:
                async for _ in after:
                    out.print(
                        Text(f"{time.strftime('%H:%M:%S')}  ")
                        + Text("reconnected", style="bold green")
                        + Text(f"  to {car.address}; readings resume")
                    )
                    if screen is not None:
                        screen.link = f"connected ({car.address})"
                    break


# --- watch ---------------------------------------------------------------------------


def _until(reception: str, count: int | None, duration: float | None) -> str:
    """When ``watch`` stops, as said on connecting."""
    limits = []
    if count is not None:
        what = "reading" if reception == "information" else "status"
        plural = "" if count == 1 else "es" if what == "status" else "s"
        more = count - 1
        changes = (
            f" (the status, then {more} change{'' if more == 1 else 's'} of it)"
            if what == "status"
            else ""
        )
        limits.append(f"{count} {what}{plural}{changes if count > 1 else ''}")
    if duration is not None:
        limits.append(f"{duration:g} s")
    if not limits:
        return "press Ctrl-C to stop"
    return "stopping after " + " or ".join(limits)


class _WatchScreen:
    """``watch`` on a terminal: the last reading, updated in place below what scrolls."""

    def __init__(self, car: O2XVehicle, reception: str) -> None:
        self.car = car
        self.reception = reception
        self.link = f"connected ({car.address})"
        self.shown = 0
        self.events = 0

    def render(self) -> RenderableType:
        car = self.car
        info = car.latest
        stats = car.stats
        shown = "readings" if self.reception == "information" else "statuses"
        footer = (
            f"{shown} shown {self.shown} · events {self.events} · frames {stats.frames}"
            f" · reconnects {stats.reconnects}"
        )
        title = f"{car.vin}, as o2x reports it" + ("" if info is None else f" at {_clock(info)}")
        panel = Panel(
            vehicle_grid(info, self.link, with_live=True),
            title=title,
            title_align="left",
            expand=False,
        )
        return Group(panel, Text(f" {footer}", style="dim"))


async def watch(
    out: Console,
    err: Console,
    target: Target,
    *,
    reception: str,
    json_mode: bool,
    count: int | None,
    duration: float | None,
    stopped: Interruption | None = None,
) -> None:
    """Print readings (every one, or status changes) and events until told to stop.

    On a terminal, the last reading is also shown below them, updated in place.
    """
    async with connected(O2XVehicle, target, err, stopped=stopped) as car:
        if stopped is not None:
            stopped.message = "Stopped; the vehicle was disconnected."
        if not json_mode:
            until = _until(reception, count, duration)
            err.print(f"Connected to {car.vin} at {car.address}; {until}.")
            if not car.stats.identity_verified:
                err.print(
                    f"[yellow]The dongle's car names no VIN on its bus: {car.vin} is taken "
                    "on trust.[/]"
                )
        readings = car.samples() if reception == "information" else car.status_changes()
        events = car.events()
        screen = _WatchScreen(car, reception) if out.is_terminal and not json_mode else None
        async with AsyncExitStack() as stack:
            if screen is not None:
                await stack.enter_async_context(live_screen(out, screen.render))
            async with anyio.create_task_group() as tg:
                tg.start_soon(_report_events, car, events, out, json_mode, screen)
                with anyio.move_on_after(duration if duration is not None else math.inf):
                    shown = 0
                    async for info in readings:
                        if json_mode:
                            write_line(sample_json(info, reception))
                        else:
                            out.print(Text(f"{_clock(info)}  ") + reading_text(info))
                        shown += 1
                        if screen is not None:
                            screen.shown = shown
                        if count is not None and shown >= count:
                            break
                tg.cancel_scope.cancel()


# --- record --------------------------------------------------------------------------

#: What Ctrl-C leaves said: before the vehicle was connected, then once it was.
_NOTHING: Final = " Nothing was recorded."
_RECORDED: Final = "Stopped; the capture is complete up to now."


async def _record_can(
    out: Console,
    err: Console,
    target: Target,
    *,
    path: Path,
    duration: float | None,
    json_mode: bool,
    stopped: Interruption | None = None,
) -> None:
    """``record --can``: every frame read off the bus into a python-can log (by suffix)."""
    import can

    from ..can.log import LOG_SUFFIXES

    if path.suffix.lower() not in LOG_SUFFIXES[:3]:
        raise Failure(
            f"with --can, record writes a CAN log: name it .log (candump), .asc or .blf, "
            f"not {path.name}",
            ExitCode.USAGE,
        )
    created = not path_exists(path)
    try:
        writer = can.Logger(os.fspath(path))
    except (OSError, ValueError) as exc:
        raise Failure(f"cannot write the CAN log {path}: {exc}", ExitCode.CAPTURE) from None
    frames = 0
    started = time.monotonic()
    failed: list[Exception] = []

    def write(message: can.Message) -> None:
        nonlocal frames
        try:
            writer(message)
        except Exception as exc:  # a full disk: the source stops calling, we report it
            failed.append(exc)
            raise
        frames += 1

    def attach(car: O2XVehicle) -> None:
        car._can_recorder = write

    def check() -> None:
        if failed:
            error = failed[0]
            reason = error.strerror if isinstance(error, OSError) else None
            raise Failure(
                f"cannot write the CAN log {path} after {frames} frames: {reason or error}",
                ExitCode.CAPTURE,
            )

    try:
        async with connected(
            O2XVehicle, target, err, prepare=attach, stopped=stopped, nothing=_NOTHING
        ) as car:
            if stopped is not None:
                stopped.message = _RECORDED
            err.print(f"Recording {car.vin} on {car.address} to {path}.")
            with anyio.move_on_after(duration if duration is not None else math.inf):
                async for info in car.samples():
                    check()
                    if json_mode:
                        write_line(sample_json(info, "information"))
    finally:
        try:
            writer.stop()
        except Exception as exc:  # the last lines' flush: the same full disk
            failed.append(exc)
        if frames == 0 and created:
            remove_quietly(path)
    check()
    (err if json_mode else out).print(
        f"Recorded {time.monotonic() - started:.1f} s to {path}: {frames} frames"
    )


class _RecordingStatus:
    """The one-line status shown on stderr while recording (redrawn by rich's thread)."""

    def __init__(self, capture: CaptureWriter, path: Path, duration: float | None) -> None:
        self.capture = capture
        self.path = path
        self.duration = duration
        self.latest: VehicleInfo | None = None
        self.started = time.monotonic()
        self._spinner = Spinner("dots", style="red")

    def __rich__(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        clock = f"{elapsed:.1f} s" + (f" of {self.duration:g} s" if self.duration else "")
        text = Text.assemble(
            ("Recording ", "bold red"),
            f"{self.capture.vin} to {self.path}  {clock}  ·  {self.capture.records} records, "
            f"{describe_size(self.capture.size)}",
        )
        if self.latest is not None:
            soc = self.latest.data.battery_soc
            text.append(f"  ·  {self.latest.status.value}")
            if soc is not None:
                text.append(f", SoC {soc.value} %")
        self._spinner.update(text=text)
        return self._spinner


async def record(
    out: Console,
    err: Console,
    target: Target,
    *,
    path: Path,
    duration: float | None,
    json_mode: bool,
    stopped: Interruption | None = None,
) -> None:
    """Record the vehicle's raw notifications to ``path`` for ``duration`` s (or until stopped)."""
    if target.can is not None:
        await _record_can(
            out, err, target, path=path, duration=duration, json_mode=json_mode, stopped=stopped
        )
        return
    # Only a file this command creates may be deleted again: the path could be a
    # device or a file the user already had.
    created = not path_exists(path)
    metadata: dict[str, Any] = {"recorder": f"o2x {__version__}"}
    if target.sim is not None:
        metadata.update(source="simulated", time_scale=target.sim.speed)
    else:
        metadata["source"] = "bluetooth"
    try:
        capture = CaptureWriter(path, vin=target.vin, metadata=metadata)
    except OSError as exc:
        raise Failure(
            f"cannot write the capture file {path}: {exc.strerror or exc}", ExitCode.CAPTURE
        ) from None
    started = time.monotonic()
    recorder: RecordingVehicle | None = None
    try:
        with capture:

            def attach(car: RecordingVehicle) -> None:
                car.capture = capture

            async with connected(
                RecordingVehicle, target, err, prepare=attach, stopped=stopped, nothing=_NOTHING
            ) as car:
                if stopped is not None:
                    stopped.message = _RECORDED
                recorder = car
                status = _RecordingStatus(capture, path, duration)
                started = status.started
                live = Live(
                    status,
                    console=err,
                    transient=True,
                    refresh_per_second=8,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                samples, events = car.samples(), car.events()
                try:
                    if err.is_terminal:
                        live.start()
                    async with anyio.create_task_group() as tg:
                        if json_mode:
                            tg.start_soon(_report_events, car, events, out, True)
                        with anyio.move_on_after(duration if duration is not None else math.inf):
                            async for info in samples:
                                status.latest = info
                                if json_mode:
                                    write_line(sample_json(info, "information"))
                                if capture.error is not None:
                                    raise Failure(
                                        f"cannot write the capture file {path}: "
                                        f"{capture.error.strerror or capture.error}",
                                        ExitCode.CAPTURE,
                                    )
                        tg.cancel_scope.cancel()
                finally:
                    live.stop()
    finally:
        if capture.records == 0:
            # Nothing was received (the car was not found): no empty capture left behind.
            if created:
                remove_quietly(path)
        elif recorder is not None:
            # Counted once the vehicle is left: what was decoded while it disconnected too.
            stats = recorder.stats
            layout = recorder.adapter_layout
            decoded = (
                f"{stats.frames} frames decoded, {stats.crc_errors} CRC errors"
                if layout is None
                # The adapter's output is recorded whole; what counts is what reached the bus.
                else f"through an {layout.protocol.value.upper()} adapter ({layout.name} "
                f"layout), {stats.frames} CAN frames read"
            )
            summary = (
                f"Recorded {time.monotonic() - started:.1f} s from {target.vin} to {path}: "
                f"{capture.records} records ({describe_size(capture.size)}); "
                f"{decoded}, {stats.reconnects} reconnects"
            )
            (err if json_mode else out).print(summary)
