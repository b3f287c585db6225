"""The ``o2x`` command: try the library on a simulated car, find and follow a real one,
record its telemetry and decode recordings offline.

This module only parses the command line (click); the commands live in the
modules beside it. Expected failures end with one line on stderr and the exit
code listed in ``o2x --help`` (:class:`~o2x.cli._common.ExitCode`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import __version__, _state
from ._common import (
    EXIT_CODES_HELP,
    ExitCode,
    Interruption,
    check_vin,
    consoles,
    pipe_closed_quietly,
    remembered,
    run,
    simulation,
    state_dir,
)
from ._logging import configure_logging

__all__ = ["ExitCode", "cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

#: The fastest --sim-speed: o2x.sim.SimulatedVehicle's MAX_TIME_SCALE (not imported
#: here, as the simulator is an optional extra).
_MAX_SIM_SPEED = 10_000.0


class _Number(click.FloatRange):
    """A ``FloatRange`` that also refuses NaN, which no bound can catch."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number.", param, ctx)
        return number


_DONGLES = ["o2x", "elm327", "wican"]


def _dongle_option(default: str) -> Callable[[F], F]:
    return click.option(
        "--dongle",
        type=click.Choice(_DONGLES),
        default=default,
        show_default=True,
        help="With --simulate: the dongle the simulated car carries (an O2X dongle, an "
        "ELM327-compatible BLE OBD adapter, or a WiCAN).",
    )


def _adapter_option(f: F) -> F:
    f = click.option(
        "--passkey",
        default="123456",
        show_default=True,
        metavar="DIGITS",
        help="The passkey of an adapter that pairs with one (a WiCAN), if it was changed.",
    )(f)
    return click.option(
        "--adapter",
        metavar="ADDRESS",
        help="Use the BLE OBD adapter at this address (see `o2x scan`) and no other; "
        "it is used even if the car's bus names no VIN.",
    )(f)


def _simulate_options(f: F) -> F:
    f = _dongle_option("o2x")(f)
    f = click.option(
        "--sim-speed",
        type=_Number(min=0, min_open=True, max=_MAX_SIM_SPEED),
        default=10.0,
        show_default=True,
        metavar="FACTOR",
        help="With --simulate: how many times faster than real time the simulated car lives.",
    )(f)
    f = click.option(
        "--sim-vin",
        metavar="VIN",
        help="With --simulate: the VIN the simulated car advertises "
        "(default: the VIN asked for, else VR1AB12C3D4567890).",
    )(f)
    f = click.option(
        "--simulate",
        is_flag=True,
        help="Use a simulated car on a virtual Bluetooth radio instead of the system's Bluetooth.",
    )(f)
    return f


def _backend_option(f: F) -> F:
    return click.option(
        "--backend",
        type=click.Choice(["asyncio", "trio"]),
        default="asyncio",
        show_default=True,
        help="The async library to run the client on.",
    )(f)


def _json_option(help_text: str) -> Callable[[F], F]:
    return click.option("--json", "json_mode", is_flag=True, help=help_text)


def _timeout_option(f: F) -> F:
    return click.option(
        "--timeout",
        type=_Number(min=0, min_open=True),
        metavar="SECONDS",
        help="Give up scanning for the car after this long "
        "[default: 60 for a VIN, no limit with --previous].",
    )(f)


def _can_options(f: F) -> F:
    f = click.option(
        "--bitrate",
        type=click.IntRange(min=1),
        default=500_000,
        show_default=True,
        help="The CAN bit rate, with --can.",
    )(f)
    return click.option(
        "--can",
        "can_interface",
        metavar="INTERFACE:CHANNEL",
        help="Read the car's own CAN bus through python-can (socketcan:can0, "
        "virtual:demo...) instead of a Bluetooth dongle; the VIN is then optional.",
    )(f)


def _vehicle_arguments(f: F) -> F:
    f = click.option(
        "--previous",
        is_flag=True,
        help="The vehicle connected to last (see `o2x vin`), instead of a VIN.",
    )(f)
    return click.argument("vin", required=False)(f)


def _target(
    *,
    vin: str | None,
    previous: bool,
    timeout: float | None,
    simulate: bool,
    sim_vin: str | None,
    sim_speed: float,
    backend: str,
    can_interface: str | None = None,
    bitrate: int = 500_000,
    dongle: str = "o2x",
    adapter: str | None = None,
    passkey: str = "123456",
) -> Any:
    from ._live import Target

    if can_interface is not None:
        if previous:
            raise click.UsageError("--previous finds a Bluetooth dongle; with --can give the VIN")
        interface, colon, channel = can_interface.partition(":")
        if not colon or not interface or not channel:
            raise click.UsageError(
                "--can takes INTERFACE:CHANNEL (socketcan:can0, virtual:demo), "
                f"not {can_interface!r}"
            )
        if adapter is not None:
            raise click.UsageError("--adapter is a Bluetooth OBD adapter; --can reads a bus")
        if dongle != "o2x":
            raise click.UsageError("--dongle is the simulated car's Bluetooth dongle, not --can")
        wanted = "" if vin is None else check_vin(vin)
        sim = simulation(simulate, sim_vin, wanted or None, sim_speed)
        return Target(wanted, False, timeout, sim, backend, (interface, channel), bitrate)
    if vin is not None and previous:
        raise click.UsageError("give a VIN or --previous, not both")
    if vin is None and not previous:
        raise click.UsageError("give the car's VIN, or --previous for the one connected to last")
    pinned = adapter
    if previous:
        if adapter is not None:
            raise click.UsageError("--previous uses the remembered dongle; --adapter needs a VIN")
        vehicle = remembered(simulate)
        wanted = vehicle.vin
        # With --timeout the remembered vehicle is looked for with first_time(): its
        # adapter, if it was one, is the one to use.
        pinned = vehicle.address if vehicle.dongle == "adapter" else None
    else:
        assert vin is not None
        wanted = check_vin(vin)
    sim = simulation(simulate, sim_vin, wanted, sim_speed, dongle)
    if adapter is not None and sim is not None:
        # The simulated adapter's address is the simulator's to choose: pin that one.
        raise click.UsageError("--adapter names a real adapter; with --simulate use --dongle")
    if not (len(passkey) == 6 and passkey.isdigit()):
        raise click.UsageError(f"--passkey is six digits, not {passkey!r}")
    return Target(wanted, previous, timeout, sim, backend, adapter=pinned, passkey=passkey)


class _Commands(click.Group):
    """The command group: every command ends quietly when its output's reader stops
    reading (``o2x watch ... | head -1``), as a program killed by SIGPIPE would."""

    def invoke(self, ctx: click.Context) -> Any:
        with pipe_closed_quietly():
            return super().invoke(ctx)


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, prog_name="o2x")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Say on stderr what happens: -v what the connection does (dongles heard, "
    "attempts, identities, losses), -vv each step and each command to an adapter, "
    "with bleak's own logging, -vvv the virtual radio's too.",
)
@click.option("-q", "--quiet", is_flag=True, help="Say only errors on stderr.")
def cli(verbose: int, quiet: bool) -> None:
    """Live telemetry from a Citroën AMI or Opel Rocks-e, over Bluetooth LE.

    Start with `o2x demo`: the real client following a simulated car. The
    commands that talk to a car take --simulate to use a simulated one instead
    of the system's Bluetooth.
    """
    if verbose and quiet:
        raise click.UsageError("-v and -q say opposite things: give one of them")
    configure_logging(-1 if quiet else verbose)


@cli.command()
@_json_option(
    "One JSON object per line, as the SDK delivers them, instead of the live view: "
    "every reading and status change of pims.vehicle.informations, and the events."
)
@_backend_option
# Tests run the scenario without its pauses; the pauses are only there for the viewer.
@click.option("--pace", type=_Number(min=0), default=1.0, hidden=True)
@click.option(
    "--dongle",
    type=click.Choice(_DONGLES),
    default="elm327",
    show_default=True,
    help="The dongle the simulated car carries: an ELM327-compatible BLE OBD adapter "
    "(what a user can buy today), a WiCAN, or an O2X dongle.",
)
def demo(json_mode: bool, backend: str, pace: float, dongle: str) -> None:
    """Watch the real client follow a simulated car through a short scenario (~20 s).

    A simulated AMI on a virtual Bluetooth LE radio, with a BLE OBD adapter in
    its OBD port (--dongle chooses), is parked, driven, parked again, plugged in
    with its parking brake off (cantCharge), charged, and loses its Bluetooth
    link; o2x reports each step as an application receives it, reconnects by
    itself, and a summary ends the run. Needs the sim extra (pip install 'o2x[sim]').
    """
    from ._demo import Demo

    out, err = consoles()
    show = Demo(out, err, json_mode=json_mode, pace=pace, dongle=dongle)
    run(show.run, backend=backend, on_interrupt="Demo interrupted.", err=err)


@cli.command()
@click.option(
    "--timeout",
    type=_Number(min=0, min_open=True),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to listen.",
)
@_json_option("One JSON object per dongle and line.")
@_simulate_options
def scan(
    *,
    timeout: float,
    json_mode: bool,
    simulate: bool,
    sim_vin: str | None,
    sim_speed: float,
    dongle: str,
) -> None:
    """List the dongles nearby: O2X dongles (with the VIN they advertise) and what looks
    like a BLE OBD adapter (its car's VIN is only known once connected), with their
    address, signal strength (RSSI) and name.

    Exits with 4 if none is heard. Ctrl-C stops the scan early and lists what was
    heard until then (exit 130).
    """
    from ._live import scan as scan_for

    out, err = consoles()
    sim = simulation(simulate, sim_vin, None, sim_speed, dongle)
    stopped = Interruption("Stopped.")
    run(
        partial(scan_for, out, err, seconds=timeout, sim=sim, json_mode=json_mode, stopped=stopped),
        on_interrupt=stopped,
        err=err,
    )


@cli.command()
@_vehicle_arguments
@click.option(
    "--reception",
    type=click.Choice(["status", "information"]),
    default="status",
    show_default=True,
    help="status: the status, then each change of it; information: every reading "
    "(about ten a second).",
)
@_json_option(
    "One JSON object per line, as the SDK delivers them (pims.vehicle.informations "
    "and pims.vehicle.event)."
)
@_timeout_option
@click.option(
    "--count",
    type=click.IntRange(min=1),
    metavar="N",
    help="Stop after N messages of the reception (exit 0): N readings with information; "
    "with status, N statuses: the first, then each change (a parked car may make none "
    "for hours). Events are not counted.",
)
@click.option(
    "--duration",
    type=_Number(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after streaming this long (exit 0).",
)
@_can_options
@_adapter_option
@_backend_option
@_simulate_options
def watch(
    *,
    vin: str | None,
    previous: bool,
    reception: str,
    json_mode: bool,
    timeout: float | None,
    count: int | None,
    duration: float | None,
    can_interface: str | None,
    bitrate: int,
    adapter: str | None,
    passkey: str,
    backend: str,
    simulate: bool,
    sim_vin: str | None,
    sim_speed: float,
    dongle: str,
) -> None:
    """Follow a vehicle: its status changes (or every reading) and events, until Ctrl-C.

    Scans for the car (a spinner shows the time against the scan timeout),
    connects, and keeps the connection: a lost link is reported as the
    'disconnected' event and the car is found again by itself. Ctrl-C
    disconnects cleanly and exits with 130. The first connection to a VIN
    remembers it for --previous.
    """
    from ._live import watch as follow

    out, err = consoles()
    stopped = Interruption("Stopped.")
    target = _target(
        vin=vin,
        previous=previous,
        timeout=timeout,
        simulate=simulate,
        sim_vin=sim_vin,
        sim_speed=sim_speed,
        backend=backend,
        can_interface=can_interface,
        bitrate=bitrate,
        dongle=dongle,
        adapter=adapter,
        passkey=passkey,
    )
    run(
        partial(
            follow,
            out,
            err,
            target,
            reception=reception,
            json_mode=json_mode,
            count=count,
            duration=duration,
            stopped=stopped,
        ),
        backend=backend,
        on_interrupt=stopped,
        err=err,
    )


@cli.command()
@_vehicle_arguments
@click.option(
    "--broker",
    required=True,
    metavar="URL",
    help="The MQTT broker: mqtt://HOST[:PORT] (1883 by default) or mqtts://HOST[:PORT] "
    "(TLS, 8883 by default).",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="With mqtts://: the CA certificates (PEM) to check the broker's certificate "
    "with [default: the system's].",
)
@click.option("--username", metavar="NAME", help="The user name to connect to the broker as.")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="A file whose first line is the password (else $O2X_MQTT_PASSWORD; never on "
    "the command line).",
)
@click.option(
    "--topic-prefix",
    default="o2x",
    show_default=True,
    metavar="PREFIX",
    help="Topics are PREFIX/VIN/state, .../status, ...",
)
@click.option(
    "--discovery-prefix",
    default="homeassistant",
    show_default=True,
    metavar="PREFIX",
    help="Home Assistant's discovery prefix.",
)
@click.option("--no-discovery", is_flag=True, help="Publish no Home Assistant discovery messages.")
@click.option(
    "--interval",
    type=_Number(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="At most this long between two state messages while readings come; a status "
    "change is published at once.",
)
@_timeout_option
@_can_options
@_adapter_option
@_simulate_options
def mqtt(
    *,
    vin: str | None,
    previous: bool,
    broker: str,
    ca_file: Path | None,
    username: str | None,
    password_file: Path | None,
    topic_prefix: str,
    discovery_prefix: str,
    no_discovery: bool,
    interval: float,
    timeout: float | None,
    can_interface: str | None,
    bitrate: int,
    adapter: str | None,
    passkey: str,
    simulate: bool,
    sim_vin: str | None,
    sim_speed: float,
    dongle: str,
) -> None:
    """Publish a vehicle to an MQTT broker: its state, status and events, Home Assistant
    discovery, evcc's topics, and each trip and charging session as it ends.

    Connects to the car as `watch` does, then to the broker. The bridge keeps going
    when the broker goes away: it connects again with back-off and publishes the
    latest state and every retained value again. Ctrl-C publishes offline and exits
    with 130. Topics and payloads: docs/mqtt.md. Needs the mqtt extra
    (pip install 'o2x[mqtt]'); runs on asyncio.
    """
    from ._mqtt import bridge, parse_broker

    _, err = consoles()
    target = _target(
        vin=vin,
        previous=previous,
        timeout=timeout,
        simulate=simulate,
        sim_vin=sim_vin,
        sim_speed=sim_speed,
        backend="asyncio",
        can_interface=can_interface,
        bitrate=bitrate,
        dongle=dongle,
        adapter=adapter,
        passkey=passkey,
    )
    where = parse_broker(broker, ca_file=ca_file, username=username, password_file=password_file)
    stopped = Interruption("Stopped.")
    run(
        partial(
            bridge,
            err,
            target,
            where,
            interval=interval,
            topic_prefix=topic_prefix,
            discovery=not no_discovery,
            discovery_prefix=discovery_prefix,
            stopped=stopped,
        ),
        on_interrupt=stopped,
        err=err,
    )


@cli.command("vin")
@click.option("--simulate", is_flag=True, help="The vehicle remembered by simulated runs.")
def vin_command(simulate: bool) -> None:
    """Print the VIN of the vehicle connected to last (the one --previous uses)."""
    out, err = consoles()
    vehicle = remembered(simulate)
    out.print(vehicle.vin)
    if err.is_terminal:
        where = _state.state_file(state_dir(simulate))
        err.print(f"[dim]dongle {vehicle.address}, remembered in {where}[/]")


@cli.command()
@_vehicle_arguments
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    metavar="FILE",
    help="The capture file to write (replaced if it exists); .o2xcap by convention.",
)
@click.option(
    "--duration",
    type=_Number(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after recording this long (exit 0) [default: until Ctrl-C].",
)
@_timeout_option
@_json_option("Also print each reading and event, decoded live, as JSON lines.")
@_can_options
@_adapter_option
@_backend_option
@_simulate_options
def record(
    *,
    vin: str | None,
    previous: bool,
    output: Path,
    duration: float | None,
    timeout: float | None,
    json_mode: bool,
    can_interface: str | None,
    bitrate: int,
    adapter: str | None,
    passkey: str,
    backend: str,
    simulate: bool,
    sim_vin: str | None,
    sim_speed: float,
    dongle: str,
) -> None:
    """Record a vehicle's raw telemetry notifications to a capture file.

    The file keeps every notification with the time it was received, flushed
    as it comes: if the recording is killed, at most the last record is lost.
    Decode it with `o2x replay`. Ctrl-C stops the recording cleanly (exit 130).
    With --can, every frame read off the bus goes to a python-can log instead,
    chosen by the file's suffix: .log (candump -l), .asc or .blf.
    """
    from ._live import record as record_to

    out, err = consoles()
    target = _target(
        vin=vin,
        previous=previous,
        timeout=timeout,
        simulate=simulate,
        sim_vin=sim_vin,
        sim_speed=sim_speed,
        backend=backend,
        can_interface=can_interface,
        bitrate=bitrate,
        dongle=dongle,
        adapter=adapter,
        passkey=passkey,
    )
    stopped = Interruption("Stopped.")
    run(
        partial(
            record_to,
            out,
            err,
            target,
            path=output,
            duration=duration,
            json_mode=json_mode,
            stopped=stopped,
        ),
        backend=backend,
        on_interrupt=stopped,
        err=err,
    )


@cli.command()
# A directory is not refused here: replay_file says it cannot be read (exit 6),
# like any other file that is not a capture.
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--json", "json_mode", is_flag=True, help="SDK-shaped JSON lines, as `o2x watch --json`."
)
@click.option("--csv", "csv_mode", is_flag=True, help="CSV with a header row.")
@click.option(
    "--reception",
    type=click.Choice(["information", "status"]),
    default="information",
    show_default=True,
    help="information: every reading; status: the first status and each change.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Also draw state of charge, speed, autonomy and status over time into a PNG "
    "(needs matplotlib: pip install 'o2x[plot]'). Alone, it lists no records.",
)
@click.option(
    "--vin",
    help="The car's VIN, for a CAN log that holds no VIN frames (checked against those it has).",
)
def replay(
    *,
    file: Path,
    json_mode: bool,
    csv_mode: bool,
    reception: str,
    plot: Path | None,
    vin: str | None,
) -> None:
    """Decode a capture file made by `o2x record`, or a CAN log, offline.

    The notifications go through the same decoder as live data; a record cut
    short at the end of the file (an interrupted recording) is reported and
    everything before it is read. A CAN log (`candump -l` .log, .asc, .blf...)
    is decoded with the AMI's signals, as `o2x watch --can` decodes a live bus.
    """
    from ._replay import replay_file

    if json_mode and csv_mode:
        raise click.UsageError("choose one of --json and --csv")
    fmt = "json" if json_mode else "csv" if csv_mode else None if plot is not None else "text"
    out, err = consoles()
    replay_file(
        out,
        err,
        file,
        fmt=fmt,
        reception=reception,
        plot=plot,
        vin=None if vin is None else check_vin(vin),
    )


def main() -> None:
    """Run the ``o2x`` command."""
    cli(prog_name="o2x")
