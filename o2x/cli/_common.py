"""What every ``o2x`` command shares: exit codes, error messages, running async code,
the simulated radio, and how readings are printed."""

from __future__ import annotations

import enum
import importlib.util
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import anyio
import attrs
import click
from rich.console import Console, RenderableType
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.progress_bar import ProgressBar
from rich.text import Text

from .. import _state
from ..capture import CaptureError
from ..errors import (
    BluetoothUnavailable,
    ConnectionFailed,
    InvalidVIN,
    NoPreviousVehicle,
    O2XError,
    ScanTimeout,
    StateFileDamaged,
    StateFileError,
)
from ..model import Event, EventKind, LiveData, VehicleInfo, VehicleStatus, normalize_vin
from ..sdk import to_sdk
from ..transport import SIMULATE_IN_PYTHON
from ..vehicle import Radio

if TYPE_CHECKING:
    from ..sim import SimulatedVehicle, VirtualRadio

#: The VIN of the SDK documentation's examples; the simulated car's when none is given.
DEFAULT_VIN: Final = "VR1AB12C3D4567890"
INFORMATIONS_API: Final = "pims.vehicle.informations"
EVENT_API: Final = "pims.vehicle.event"


class ExitCode(enum.IntEnum):
    """The exit statuses of ``o2x``; the same list is in ``o2x --help``."""

    OK = 0
    #: Anything else: a bug (the traceback is shown).
    UNEXPECTED = 1
    USAGE = 2
    BLUETOOTH = 3
    NOT_FOUND = 4
    NO_VEHICLE = 5
    CAPTURE = 6
    MISSING = 7
    BROKER_AUTH = 8
    BROKER_TLS = 9
    INTERRUPTED = 130
    #: Whatever read the output stopped reading (``o2x watch ... | head``): 128 +
    #: SIGPIPE, what a shell reports for a program that signal ended (the Unix
    #: number, spelt out as Windows has no SIGPIPE).
    PIPE_CLOSED = 128 + 13


EXIT_CODES_HELP: Final = """\b
Exit codes:
  0    success
  1    unexpected error
  2    invalid usage, or a VIN that is not one
  3    Bluetooth unavailable (no adapter, or the Bluetooth service is not running),
       or the CAN interface of --can cannot be opened
  4    vehicle not found within the scan timeout, or no connection could be made
  5    no remembered vehicle yet, or the file remembering it is damaged
  6    capture file missing, unreadable or damaged, or an output file not writable
  7    an optional part is not installed (o2x[sim] for --simulate, o2x[plot] for --plot,
       o2x[mqtt] for mqtt)
  8    mqtt: the broker refused the credentials (or the client is not authorised)
  9    mqtt: the TLS connection to the broker failed (certificate, CA file, not TLS)
  130  interrupted with Ctrl-C (143 for SIGTERM): the vehicle was disconnected cleanly
  141  whatever read the output stopped reading (o2x watch ... | head): the
       command stopped there, and the vehicle was disconnected cleanly
"""


class Failure(click.ClickException):
    """An expected failure: one line on stderr (``Error: ...``) and a distinct exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code

    # click declares exit_code on the class; each failure here carries its own.
    @property
    def exit_code(self) -> int:
        """The exit status (click exits with it after printing the message)."""
        return int(self.code)

    @exit_code.setter
    def exit_code(self, value: int) -> None:
        self.code = ExitCode(value)


def consoles() -> tuple[Console, Console]:
    """Rich consoles for stdout and stderr, made per command so that they follow the
    streams in use (the test runner swaps them)."""
    return _console(sys.stdout), _console(sys.stderr)


def _console(file: IO[str]) -> Console:
    console = Console(file=file, highlight=False)
    # rich's default, which its documentation invites changing, is to exit with
    # status 1, which o2x keeps for bugs: the error goes to pipe_closed_quietly().
    console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]
    # Piped output keeps one record per line whatever its length; on a terminal,
    # text wraps (and panels lay out) to the window's width.
    console.soft_wrap = not console.is_terminal
    return console


# --- errors --------------------------------------------------------------------------


def translate(exc: BaseException) -> BaseException:
    """The :class:`Failure` (or interruption) an exception stands for, or ``exc`` itself.

    Errors raised inside task groups arrive wrapped in exception groups; the first
    expected error found inside decides.
    """
    if isinstance(exc, BaseExceptionGroup):
        for leaf in _leaves(exc):
            translated = translate(leaf)
            if translated is not leaf or isinstance(leaf, click.ClickException):
                return translated
        return exc
    if isinstance(exc, click.ClickException | click.exceptions.Exit):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return click.exceptions.Exit(ExitCode.INTERRUPTED)
    if isinstance(exc, InvalidVIN):
        return Failure(f"{exc}; give the 17-character VIN of the car", ExitCode.USAGE)
    if isinstance(exc, BluetoothUnavailable):
        # The library's hint speaks to a Python caller; the command's, to its user.
        message = str(exc).replace(SIMULATE_IN_PYTHON, "use a simulated vehicle (--simulate)")
        return Failure(message, ExitCode.BLUETOOTH)
    if isinstance(exc, ScanTimeout | ConnectionFailed):
        return Failure(str(exc), ExitCode.NOT_FOUND)
    if isinstance(exc, StateFileDamaged):
        return Failure(
            f"the remembered-vehicle file {exc.path} is damaged ({exc.problem}) and is "
            f"left as it is; delete it (or move it away) and run the command again",
            ExitCode.NO_VEHICLE,
        )
    if isinstance(exc, StateFileError):
        return Failure(
            f"{exc}; set {_state.STATE_DIR_ENV} to a writable directory if needed",
            ExitCode.NO_VEHICLE,
        )
    if isinstance(exc, NoPreviousVehicle):
        return Failure(str(exc), ExitCode.NO_VEHICLE)
    if isinstance(exc, CaptureError):
        return Failure(str(exc), ExitCode.CAPTURE)
    if isinstance(exc, O2XError):
        return Failure(str(exc), ExitCode.UNEXPECTED)
    return exc


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def check_vin(vin: str) -> str:
    """``vin`` normalised, or a usage failure saying what is wrong with it."""
    try:
        return normalize_vin(vin)
    except InvalidVIN as exc:
        raise translate(exc) from None


def need_backend(backend: str) -> None:
    """Fail clearly if the async library asked for is not installed."""
    if importlib.util.find_spec(backend) is None:
        raise Failure(
            f"{backend} is not installed; install it (pip install {backend}) "
            "or use --backend asyncio",
            ExitCode.MISSING,
        )


# --- a closed output pipe -------------------------------------------------------------


@contextmanager
def pipe_closed_quietly() -> Iterator[None]:
    """End the command quietly, with :attr:`ExitCode.PIPE_CLOSED`, when whatever reads
    its output stops reading (``o2x watch ... | head -1``).

    The error reaches here after unwinding the command, so a vehicle it had
    entered was left (and disconnected) and a capture file closed on the way.
    """
    try:
        yield
    except BaseException as exc:
        if not pipe_closed(exc):
            raise
        _silence_broken_streams()
        raise click.exceptions.Exit(ExitCode.PIPE_CLOSED) from None


def pipe_closed(exc: BaseException) -> bool:
    """Whether ``exc`` is a closed output pipe, or a task group's error holding one."""
    if isinstance(exc, BaseExceptionGroup):
        return any(isinstance(leaf, BrokenPipeError) for leaf in _leaves(exc))
    return isinstance(exc, BrokenPipeError)


def _broken_pipe() -> None:
    raise BrokenPipeError


def _silence_broken_streams() -> None:
    # Python flushes stdout and stderr on exit; what is still buffered for a closed
    # pipe would fail again there, and be reported. The null device takes it instead.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except ValueError:
            continue  # closed
        except OSError:
            with suppress(OSError, ValueError):  # no file descriptor (a test's stream)
                fd = stream.fileno()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)


# --- running -------------------------------------------------------------------------


class Interruption:
    """The line a command leaves on stderr when Ctrl-C stops it. The command changes
    it as it goes, so that it says what had been done by then (a vehicle connected
    to, or only looked for); a callable is read at that moment."""

    def __init__(self, message: str | Callable[[], str]) -> None:
        self.message = message

    def __str__(self) -> str:
        return self.message() if callable(self.message) else self.message


def run(
    fn: Callable[[], Awaitable[None]],
    *,
    backend: str = "asyncio",
    on_interrupt: str | Interruption | None = None,
    err: Console | None = None,
) -> None:
    """Run ``fn`` on ``backend``, turning library errors into :class:`Failure`.

    Ctrl-C (or SIGTERM) cancels ``fn``, so that whatever it has entered — a vehicle,
    a capture file — is left properly; then ``on_interrupt`` is printed on stderr
    and the command exits with 128 + the signal number.
    """
    need_backend(backend)
    received: list[int] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, tg.cancel_scope, received)
            await fn()
            tg.cancel_scope.cancel()

    try:
        anyio.run(main, backend=backend)
    except BaseException as exc:
        if pipe_closed(exc):
            raise  # for pipe_closed_quietly(), whatever else went wrong as it unwound
        translated = translate(exc)
        if translated is exc:
            raise
        if isinstance(translated, click.exceptions.Exit) and on_interrupt and err:
            err.print(str(on_interrupt))
        raise translated from None
    if received:
        if on_interrupt and err:
            err.print(str(on_interrupt))
        raise click.exceptions.Exit(128 + received[0])


async def _stop_on_signal(scope: anyio.CancelScope, received: list[int]) -> None:
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                received.append(int(signum))
                scope.cancel()
                return
    except (NotImplementedError, RuntimeError, ValueError):
        # No signal handling here (Windows' asyncio, or not the main thread):
        # Ctrl-C then raises KeyboardInterrupt, which run() turns into exit 130.
        await anyio.sleep_forever()


# --- the simulated vehicle -----------------------------------------------------------


@attrs.frozen
class Simulation:
    """``--simulate``: a simulated vehicle on a virtual radio, instead of the system's Bluetooth."""

    vin: str
    speed: float
    autopilot: bool = True
    #: The dongle the simulated car carries: o2x, elm327 or wican.
    dongle: str = "o2x"


def simulation(
    simulate: bool, sim_vin: str | None, vin: str | None, speed: float, dongle: str = "o2x"
) -> Simulation | None:
    """The simulation the options ask for (``None``: use the system's Bluetooth)."""
    if not simulate:
        if sim_vin is not None:
            raise click.UsageError("--sim-vin only makes sense with --simulate")
        if dongle != "o2x":
            raise click.UsageError("--dongle chooses the simulated car's dongle: use --simulate")
        return None
    return Simulation(check_vin(sim_vin or vin or DEFAULT_VIN), speed, dongle=dongle)


def state_dir(simulated: bool) -> Path:
    """Where the remembered vehicle lives. Simulated runs keep their own (the
    library's, for a vehicle on a virtual radio), so that trying ``--simulate``
    never replaces the real car the user connected to."""
    return _state.state_file(virtual=simulated).parent


def remembered(simulated: bool) -> _state.RememberedVehicle:
    """The remembered vehicle (of simulated runs, or real ones), or a failure saying
    how to get one."""
    path = _state.state_file(state_dir(simulated))
    how = "`o2x watch --simulate VIN`" if simulated else "`o2x watch VIN`"
    try:
        vehicle = _state.load(path)
    except StateFileDamaged as exc:
        message = f"the remembered-vehicle file {path} is damaged ({exc.problem})"
        raise Failure(
            f"{message}; delete it and connect once with {how}", ExitCode.NO_VEHICLE
        ) from None
    except StateFileError as exc:
        cause = exc.__cause__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause
        message = f"cannot read the remembered vehicle from {path} ({reason})"
        raise Failure(
            f"{message}; delete it and connect once with {how}", ExitCode.NO_VEHICLE
        ) from None
    if vehicle is None:
        raise Failure(
            f"no vehicle remembered yet (looked in {path}); connect once with {how}",
            ExitCode.NO_VEHICLE,
        )
    return vehicle


@asynccontextmanager
async def open_radio(sim: Simulation | None) -> AsyncIterator[Radio | None]:
    """A virtual radio with the simulated vehicle on it, or ``None`` for the system's Bluetooth."""
    if sim is None:
        yield None
        return
    async with open_simulation(
        sim.vin, speed=sim.speed, autopilot=sim.autopilot, dongle=sim.dongle
    ) as (radio, _):
        yield radio


@asynccontextmanager
async def open_simulation(
    vin: str, *, speed: float, autopilot: bool, dongle: str = "o2x"
) -> AsyncIterator[tuple[VirtualRadio, SimulatedVehicle]]:
    """A virtual radio with a simulated vehicle on it (Bumble is an optional dependency)."""
    try:
        from ..sim import SimulatedVehicle, VirtualRadio
    except ImportError as exc:
        raise Failure(
            f"the simulator needs Bumble ({exc}); install it with pip install 'o2x[sim]'",
            ExitCode.MISSING,
        ) from None
    async with VirtualRadio() as radio:
        vehicle = await radio.add(
            SimulatedVehicle(vin, autopilot=autopilot, time_scale=speed, dongle=dongle)
        )
        yield radio, vehicle


# --- scanning spinner ----------------------------------------------------------------


class _Bar(ProgressColumn):
    """Time spent against the limit, or a pulse with no limit."""

    def render(self, task: Task) -> RenderableType:
        limit = task.fields.get("limit")
        if limit is None:
            return ProgressBar(total=None, pulse=True, width=20)
        return ProgressBar(total=limit, completed=min(task.elapsed or 0.0, limit), width=20)


class _Elapsed(ProgressColumn):
    """Seconds spent, and the limit."""

    def render(self, task: Task) -> RenderableType:
        elapsed = task.elapsed or 0.0
        limit = task.fields.get("limit")
        text = f"{elapsed:5.1f} s" + (" (no time limit)" if limit is None else f" / {limit:g} s")
        return Text(text, style="progress.elapsed")


@contextmanager
def spinner(err: Console, description: str, limit: float | None) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr with the time spent against ``limit``, while the block runs
    (shown only on a terminal; rich redraws it from its own thread). The block
    receives a function that changes the description."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        _Bar(),
        _Elapsed(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with progress:
        task = progress.add_task(description, total=None, limit=limit)
        yield lambda text: progress.update(task, description=text)


# --- printing readings ---------------------------------------------------------------

_STATUS_STYLE: Final = {
    VehicleStatus.DRIVING: "bold green",
    VehicleStatus.PARKED: "bold blue",
    VehicleStatus.CHARGING: "bold yellow",
    VehicleStatus.UNKNOWN: "bold magenta",
}
EVENT_MEANING: Final = {
    EventKind.DISCONNECTED: "nothing from the car (link lost, or the car asleep); waiting for it",
    EventKind.CANT_CHARGE: "the car should charge but its parking brake is off",
}


def status_text(status: VehicleStatus, *, upper: bool = False) -> Text:
    """The status, styled by what it is."""
    name = status.value.upper() if upper else status.value
    return Text(name, style=_STATUS_STYLE[status])


def _measure(measure: Any, digits: int = 0) -> str:
    if measure is None:
        return "-"
    return f"{measure.value:.{digits}f} {measure.unit}"


def reading_text(info: VehicleInfo) -> Text:
    """One reading on one line: status, state of charge, autonomy, odometer, gear, brake, alerts."""
    data = info.data
    text = status_text(info.status)
    text.pad_right(9 - len(info.status.value))
    text.append(
        f" SoC {_measure(data.battery_soc):>5}"
        f"  autonomy {_measure(data.remaining_autonomy):>6}"
        f"  odometer {_measure(data.total_odometer, 1):>10}"
        f"  gear {data.rnd.value:<7}"
        f"  brake {data.park_brake_status.value:<9}"
    )
    live = info.live
    if data.charge_delay is not None and data.charge_delay.value:
        # Over CAN the charger's remaining time (docs/can.md); the SDK's delay otherwise.
        when = "full in" if live is not None else "charging in"
        text.append(f"  {when} {_measure(data.charge_delay)}")
    if live is not None:
        text.append(live_text(live))
    alerts = None if info.current_alert is None else info.current_alert.active()
    text.append("  alerts: ")
    if alerts is None:
        text.append("not reported")
    elif alerts:
        text.append(", ".join(alerts), "red")
    else:
        text.append("none")
    return text


def live_text(live: LiveData) -> str:
    """What the SDK's shape has no field for (CAN sources), known parts only."""
    parts = []
    if live.speed is not None:
        parts.append(f"{live.speed:g} km/h")
    if live.pack_voltage is not None:
        parts.append(f"{live.pack_voltage:.2f} V")
    if live.pack_current is not None:
        parts.append(f"{live.pack_current:+.1f} A")
    if live.pack_power is not None:
        parts.append(f"{live.pack_power:+.2f} kW")
    if live.pack_temperatures:
        parts.append("/".join(f"{t:g}" for t in live.pack_temperatures) + " °C")
    if live.ready is not None:
        parts.append("ready" if live.ready else "not ready")
    return "".join(f"  {part}" for part in parts)


def sample_json(info: VehicleInfo, reception: str) -> str:
    """One reading as a JSON line: the SDK's message, plus ``live`` where the source has it."""
    message: dict[str, Any] = {
        "api": INFORMATIONS_API,
        "reception": reception,
        "result": to_sdk(info),
    }
    if info.live is not None:
        live = attrs.asdict(info.live)
        message["live"] = {_camel(key): value for key, value in live.items()}
    return json.dumps(message)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def event_json(kind: EventKind) -> str:
    """The JSON line for an event."""
    return json.dumps({"api": EVENT_API, "result": {"event": kind.value}})


def write_line(line: str) -> None:
    """Write a line to stdout and flush it: a pipe must see each reading as it comes."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def describe_size(size: int) -> str:
    """Bytes for humans: 812 bytes, 2.8 kB, 4.1 MB."""
    if size < 1000:
        return f"{size} bytes"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


def path_exists(path: str | os.PathLike[str]) -> bool:
    """Whether anything is at ``path``, a dangling symbolic link included."""
    return os.path.lexists(path)


def remove_quietly(path: str | os.PathLike[str]) -> None:
    """Delete ``path`` if it is a regular file (never a device, a FIFO or a link to
    one); a failure to do so is not worth reporting."""
    with suppress(OSError):
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)


def event_text(event: Event) -> Text:
    """An event with what it means."""
    return Text.assemble((event.kind.value, "bold red"), f"  {EVENT_MEANING[event.kind]}")
