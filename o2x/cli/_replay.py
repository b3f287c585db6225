"""``o2x replay``: decode a capture file offline, as text, SDK JSON lines or CSV, and plot it."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from ..capture import (
    AdapterDecoder,
    AdapterOpened,
    CaptureError,
    CaptureHeader,
    CaptureReader,
    LinkChange,
    replay,
)
from ..dongle.frames import EventFrame, FrameDecoder, IdentityFrame, InfoFrame
from ..model import Alerts, EventKind, VehicleInfo, VehicleStatus
from ._common import (
    EVENT_MEANING,
    ExitCode,
    Failure,
    describe_size,
    event_json,
    reading_text,
    sample_json,
    translate,
    write_line,
)

#: Files at least this big get a progress bar (on a terminal).
PROGRESS_FROM: Final = 1 << 20

#: How many damaged spans of a capture are listed, one a line.
_DAMAGE_LINES: Final = 5

#: How a link's protocol is named in the text output.
_PROTOCOL_NAMES: Final = {"elm327": "ELM327", "slcan": "SLCAN"}

CSV_COLUMNS: Final = (
    "time",
    "t_s",
    "kind",
    "seq",
    "status",
    "batterySoc",
    "systemState",
    "batteryState",
    "remainingAutonomy",
    "rnd",
    "chargeDelay",
    "parkBrakeStatus",
    "totalOdometer",
    "currentAlert",
    "previousAlert",
    "event",
)


def _iso_ms(at: dt.datetime) -> str:
    # Not strftime("%Y"): the C library may write years before 1000 with fewer digits.
    return f"{at.year:04d}-{at:%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z"


def _local(at: dt.datetime) -> dt.datetime:
    """``at`` in the local time zone, or left in UTC where the platform cannot say."""
    try:
        return at.astimezone()
    except (OverflowError, OSError, ValueError):
        # A capture's start is a day inside datetime's range, so this is the C
        # library's limit (Windows refuses times before 1970): a time in UTC,
        # shown as such, is still right, where failing would hide the records.
        return at


class _Printer:
    """Writes decoded records in one of the output formats."""

    def __init__(self, out: Console, fmt: str, reception: str) -> None:
        self.out = out
        self.fmt = fmt
        self.reception = reception
        self._csv = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)

    def reading(self, at: dt.datetime, t: float, info: VehicleInfo, seq: int) -> None:
        if self.fmt == "json":
            write_line(sample_json(info, self.reception))
        elif self._csv is not None:
            data = info.data
            self._csv.writerow(
                (
                    _iso_ms(at),
                    f"{t:.3f}",
                    self.reception,
                    seq,
                    info.status.value,
                    _value(data.battery_soc),
                    data.system_state.value,
                    data.battery_state.value,
                    _value(data.remaining_autonomy),
                    data.rnd.value,
                    _value(data.charge_delay),
                    data.park_brake_status.value,
                    _value(data.total_odometer),
                    _alerts(info.current_alert),
                    _alerts(info.previous_alert),
                    "",
                )
            )
        elif self.fmt == "text":
            self.out.print(Text(f"{t:10.3f} s  ") + reading_text(info))

    def event(self, at: dt.datetime, t: float, kind: EventKind | None, code: int, seq: int) -> None:
        if kind is None:
            if self.fmt == "text":
                self.out.print(Text(f"{t:10.3f} s  ") + Text(f"event code 0x{code:02X} (unknown)"))
            return
        if self.fmt == "json":
            write_line(event_json(kind))
        elif self._csv is not None:
            self._csv.writerow((_iso_ms(at), f"{t:.3f}", "event", seq, *[""] * 11, kind.value))
        elif self.fmt == "text":
            self.out.print(
                Text(f"{t:10.3f} s  ")
                + Text.assemble((kind.value, "bold red"), f"  {EVENT_MEANING[kind]}")
            )

    def link(self, at: dt.datetime, t: float, change: LinkChange) -> None:
        if change.up:
            if self.fmt == "text":
                where = f" to {change.address}" if change.address else ""
                self.out.print(Text(f"{t:10.3f} s  ") + Text(f"link up{where}", style="green"))
            return
        # The live client reports a lost link as a 'disconnected' event: so does replay.
        self.event(at, t, EventKind.DISCONNECTED, 0, -1)

    def adapter(self, t: float, opened: AdapterOpened) -> None:
        if self.fmt == "text":
            if opened.readable:
                what = f"an {_PROTOCOL_NAMES.get(opened.protocol, opened.protocol)} adapter"
                layout = f" ({opened.layout} layout)" if opened.layout else ""
                line = Text(f"through {what}{layout}", style="green")
            else:
                line = Text(
                    f"through an adapter speaking {opened.protocol or 'an unnamed protocol'}, "
                    "which this o2x cannot read: its notifications are skipped",
                    style="yellow",
                )
            self.out.print(Text(f"{t:10.3f} s  ") + line)

    def identity(self, t: float, frame: IdentityFrame) -> None:
        if self.fmt == "text":
            major, minor = frame.firmware
            self.out.print(
                Text(f"{t:10.3f} s  identity {frame.vin}, dongle firmware {major}.{minor}")
            )


def _decoding(decoder: FrameDecoder, adapters: AdapterDecoder) -> str:
    """What the decoders read: the O2X dongle's frames, the adapters' lines, or both."""
    stats = decoder.stats
    parts = []
    a = adapters.stats
    if not a.links or stats.frames or stats.bytes_discarded:
        parts.append(
            f"decoder: {stats.frames} frames, {stats.crc_errors} CRC errors, "
            f"{stats.invalid_frames} invalid frames, {stats.bytes_discarded} bytes discarded, "
            f"{stats.seq_gaps} sequence gaps"
        )
    if a.links:
        full = f", {a.buffer_fulls} BUFFER FULL" if a.buffer_fulls else ""
        parts.append(
            f"adapters: {a.frames} CAN frames read ({a.bus_frames} of the car's messages), "
            f"{a.lines_ignored} other lines{full}"
        )
    return "; ".join(parts)


def _alerts(alerts: Alerts | None) -> str:
    # Empty when the source reports no alerts (CAN), as for every unknown value.
    return "" if alerts is None else "|".join(alerts.active())


def _value(measure: object) -> str:
    value = getattr(measure, "value", None)
    return "" if value is None else str(value)


@contextmanager
def _progress(err: Console, size: int) -> Iterator[Callable[[int], None]]:
    if size < PROGRESS_FROM or not err.is_terminal:
        yield lambda _: None
        return
    progress = Progress(
        TextColumn("Decoding"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with progress:
        task = progress.add_task("decode", total=size)
        yield lambda position: progress.update(task, completed=position)


def describe_header(path: Path, header: CaptureHeader, size: int) -> str:
    """One line saying what a capture is."""
    source = header.metadata.get("source")
    how = f", {source}" if isinstance(source, str) else ""
    if header.time_scale != 1:
        how += f" at {header.time_scale:g}x speed"
    local = _local(header.started_at)
    started = f"{local.year:04d}-{local:%m-%d %H:%M:%S %Z}"
    return f"{path}: capture of {header.vin}, started {started}{how}, {describe_size(size)}"


def replay_file(
    out: Console,
    err: Console,
    path: Path,
    *,
    fmt: str | None,
    reception: str,
    plot: Path | None,
    vin: str | None = None,
) -> None:
    """Decode ``path`` and print it as ``fmt`` (``None``: nothing), plotting it if asked.

    A CAN log (``.log`` from ``candump -l``, ``.asc``, ``.blf``...) is read with
    python-can and decoded with ``ami.dbc``; ``vin`` is for a log without VIN frames.

    When the output's reader stops reading (``o2x replay ... | head``), the
    ``BrokenPipeError`` ends decoding, and the command ends quietly
    (:func:`~o2x.cli._common.pipe_closed_quietly`).

    A capture with damaged records (a version-3 capture's records that fail their
    checksum) is replayed whole, every intact record of it, and the plot drawn; then
    a :class:`Failure` says what was skipped, with the status ``ExitCode.CAPTURE``
    (6), so that a script sees that the output lacks records. A recording that was
    interrupted (a last record cut short, zeros at the end) is no damage: a warning,
    and the status 0.
    """
    from ..can.log import LOG_SUFFIXES

    if path.suffix.lower() in LOG_SUFFIXES:
        _replay_can_log(out, err, path, fmt=fmt, reception=reception, plot=plot, vin=vin)
    else:
        _replay_file(out, err, path, fmt=fmt, reception=reception, plot=plot)


def _replay_can_log(
    out: Console,
    err: Console,
    path: Path,
    *,
    fmt: str | None,
    reception: str,
    plot: Path | None,
    vin: str | None,
) -> None:
    import can

    from ..can.log import find_vin, log_messages, log_readings

    series = None
    if plot is not None:
        from ._plot import Series, require_matplotlib

        require_matplotlib()
        series = Series()
    notes = err if fmt in ("json", "csv") else out
    problem = (OSError, ValueError, can.CanError, IndexError)
    try:
        bus_vin = find_vin(log_messages(path))
    except BrokenPipeError:
        raise
    except problem as exc:
        raise Failure(f"cannot read the CAN log {path}: {exc}", ExitCode.CAPTURE) from None
    if vin is not None and bus_vin is not None and vin != bus_vin:
        raise Failure(f"{path} is a log of {bus_vin}, not {vin}", ExitCode.USAGE)
    wanted = vin or bus_vin
    if wanted is None:
        raise Failure(
            f"{path} holds no VIN frames (0x710..0x712): give the car's VIN with --vin",
            ExitCode.USAGE,
        )
    notes.print(f"{path}: CAN log of {wanted}, {describe_size(path.stat().st_size)}")
    printer = _Printer(out, fmt or "none", reception)
    readings = events = 0
    start: float | None = None
    last_status: VehicleStatus | None = None
    try:
        for timestamp, item in log_readings(log_messages(path), vin=wanted):
            if start is None:
                start = timestamp
            t = timestamp - start
            if isinstance(item, EventKind):
                events += 1
                if series is not None:
                    series.events.append((t, item.value))
                printer.event(_log_time(timestamp), t, item, 0, -1)
                continue
            readings += 1
            if series is not None:
                data = item.data
                series.add(
                    t,
                    None if data.battery_soc is None else data.battery_soc.value,
                    None if data.remaining_autonomy is None else data.remaining_autonomy.value,
                    None if data.total_odometer is None else data.total_odometer.value,
                    item.status,
                )
            if reception == "information" or item.status is not last_status:
                printer.reading(item.received_at, t, item, -1)
            last_status = item.status
    except BrokenPipeError:
        raise
    except problem as exc:
        # What was decoded before the damage has been printed; say where it stopped.
        raise Failure(
            f"the CAN log {path} is damaged after {readings} readings: {exc}", ExitCode.CAPTURE
        ) from None
    notes.print(f"{readings} readings, {events} events")
    if series is not None and plot is not None:
        from ._plot import draw

        try:
            draw(plot, series, title=f"{wanted} ({path.name})")
        except OSError as exc:
            raise Failure(
                f"cannot write the plot {plot}: {exc.strerror or exc}", ExitCode.CAPTURE
            ) from None
        notes.print(f"Plot written to {plot}")


def _damage_notes(path: Path, reader: CaptureReader) -> list[str]:
    """A warning line per damaged span of ``reader`` (the first few), when the error
    that ends the replay, which names the first, does not say it all."""
    if len(reader.damage) < 2:
        return []
    lines = [
        f"Warning: {path}: bytes {span.start} to {span.end} ({span.size}) hold no intact "
        "record; skipped"
        for span in reader.damage[:_DAMAGE_LINES]
    ]
    if len(reader.damage) > _DAMAGE_LINES:
        lines.append(
            f"Warning: {path}: and {len(reader.damage) - _DAMAGE_LINES} more damaged spans"
        )
    return lines


def _log_time(timestamp: float) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return dt.datetime.fromtimestamp(0, dt.UTC)


def _replay_file(
    out: Console,
    err: Console,
    path: Path,
    *,
    fmt: str | None,
    reception: str,
    plot: Path | None,
) -> None:
    series = None
    if plot is not None:
        from ._plot import Series, require_matplotlib

        require_matplotlib()
        series = Series()
    try:
        reader = CaptureReader.open(path)
        size = path.stat().st_size
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}", ExitCode.CAPTURE) from None
    except CaptureError as exc:
        raise translate(exc) from None
    # Notes go where they do not mix with machine-readable records.
    notes = err if fmt in ("json", "csv") else out
    printer = _Printer(out, fmt or "none", reception)
    decoder = FrameDecoder()
    readings = events = losses = 0
    last_status: VehicleStatus | None = None
    duration = 0.0
    with reader:
        header = reader.header
        adapters = AdapterDecoder(header)
        notes.print(describe_header(path, header, size))

        def reading(at: dt.datetime, t: float, info: VehicleInfo, seq: int) -> None:
            nonlocal readings, last_status
            readings += 1
            if series is not None:
                data = info.data
                series.add(
                    t,
                    None if data.battery_soc is None else data.battery_soc.value,
                    None if data.remaining_autonomy is None else data.remaining_autonomy.value,
                    None if data.total_odometer is None else data.total_odometer.value,
                    info.status,
                )
            # Statuses are reported as the live client does with no change-status
            # delay: the first one, then every change.
            if reception == "information" or info.status is not last_status:
                printer.reading(at, t, info, seq)
            last_status = info.status

        try:
            with _progress(err, size) as advance:
                items = replay(reader, decoder, adapters=adapters)
                for count, (offset_ns, item) in enumerate(items):
                    t = offset_ns / 1e9
                    # The latest, not the last: offsets may go back (see below).
                    duration = max(duration, t)
                    if count % 4096 == 0:
                        advance(reader.position)
                    at = header.at(offset_ns)
                    if isinstance(item, InfoFrame):
                        info = VehicleInfo.from_frame(item, vin=header.vin, received_at=at)
                        reading(at, t, info, item.seq)
                    elif isinstance(item, VehicleInfo):  # read off an adapter's bus
                        reading(at, t, item, -1)
                    elif isinstance(item, EventFrame):
                        events += 1
                        if series is not None and item.kind is not None:
                            series.events.append((t, item.kind.value))
                        printer.event(at, t, item.kind, item.code, item.seq)
                    elif isinstance(item, EventKind):  # cantCharge, from an adapter's bus
                        events += 1
                        if series is not None:
                            series.events.append((t, item.value))
                        printer.event(at, t, item, 0, -1)
                    elif isinstance(item, LinkChange):
                        if not item.up:
                            losses += 1
                            if series is not None:
                                series.link_losses.append(t)
                        printer.link(at, t, item)
                    elif isinstance(item, AdapterOpened):
                        printer.adapter(t, item)
                    else:
                        printer.identity(t, item)
        except CaptureError as exc:
            raise translate(exc) from None
    notes.print(
        f"{reader.records} records over {duration:.1f} s: {readings} readings, {events} events, "
        f"{losses} link losses; " + _decoding(decoder, adapters)
    )
    skipped = adapters.stats.skipped
    if skipped:
        err.print(
            f"Warning: {path}: {skipped} notifications of an adapter whose protocol this o2x "
            "cannot read were skipped"
        )
    for line in _damage_notes(path, reader):
        err.print(line)
    if reader.problem is not None:
        err.print(f"Warning: {path}: {reader.problem}; the records before it were read")
    if reader.backwards:
        # Not damage that stops the replay: records keep the times they were given,
        # in the order of the file, and the user is told not to trust that order.
        err.print(
            f"Warning: {path}: the time goes back between records ({reader.backwards} in all, "
            f"first at byte {reader.backwards_at}); o2x never writes that, so the file is "
            "damaged or was not made by o2x; the records were replayed in the file's order"
        )
    if series is not None and plot is not None:
        from ._plot import draw

        local = _local(header.started_at)
        title = f"{header.vin}, {local.year:04d}-{local:%m-%d %H:%M}"
        try:
            draw(plot, series, title=title, time_scale=header.time_scale)
        except OSError as exc:
            raise Failure(
                f"cannot write the plot {plot}: {exc.strerror or exc}", ExitCode.CAPTURE
            ) from None
        notes.print(f"Plot written to {plot}")
    damaged = reader.damaged
    if damaged is not None:
        # After everything that was read: the records around the damage are all out.
        raise Failure(str(damaged), ExitCode.CAPTURE)
