"""``o2x demo``: the real client against a simulated car, in a scripted scenario.

The car is a :class:`~o2x.sim.SimulatedVehicle` on a :class:`~o2x.sim.VirtualRadio`;
everything between them and the screen is the library as an application uses it:
:meth:`O2XVehicle.first_time <o2x.O2XVehicle.first_time>` scans, connects and
subscribes, and the scenario only ever acts on the car. A step counts as seen
when the client *reports* what the car did (a status change, an event, a
reconnection), so the demo doubles as an end-to-end check: it fails if a step
is not seen.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Final

import anyio
import attrs
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ..machine import Timeouts
from ..model import Event, EventKind, ParkBrake, VehicleInfo, VehicleStatus
from ..vehicle import O2XVehicle, Stream
from ._common import (
    DEFAULT_VIN,
    EVENT_MEANING,
    ExitCode,
    Failure,
    event_json,
    open_simulation,
    reading_text,
    sample_json,
    status_text,
    write_line,
)
from ._screen import live_screen, vehicle_grid

if TYPE_CHECKING:
    from ..sim import SimulatedVehicle, VirtualRadio

#: How much faster than real time the simulated car lives, so that a few seconds
#: of driving or charging move the state of charge visibly.
SPEED: Final = 400.0
#: A step not seen within this many seconds is reported as missed.
STEP_LIMIT: Final = 15.0


@attrs.frozen
class Step:
    """One scene of the scenario."""

    #: What the client reports when the step is seen (a status, an event...).
    name: str
    title: str
    caption: str
    #: Seconds to leave the scene on screen once seen (times ``--pace``).
    hold: float


STEPS: Final = (
    Step(
        "connect",
        "Connecting",
        "The car's dongle advertises its VIN over Bluetooth LE. o2x scans for it, "
        "connects, checks the dongle's identity and subscribes to its telemetry.",
        1.0,
    ),
    Step(
        "parked",
        "Parked",
        "Switched off, parking brake on: o2x reports the status 'parked', "
        "and a fresh reading ten times a second.",
        2.5,
    ),
    Step(
        "driving",
        "Driving",
        "In drive with the brake released: the state of charge and the autonomy fall "
        "and the odometer turns.",
        3.5,
    ),
    Step(
        "parked",
        "Parked again",
        "Brake on, switched off: the status goes back to 'parked'.",
        1.5,
    ),
    Step(
        "cantCharge",
        "Plugged in, brake off",
        "Plugged in with the parking brake released: the car refuses to charge and "
        "o2x reports a 'cantCharge' event, so an app can ask the driver to apply the brake.",
        2.5,
    ),
    Step(
        "charging",
        "Charging",
        "Brake applied: charging starts, the status turns to 'charging' "
        "and the state of charge rises.",
        3.5,
    ),
    Step(
        "disconnected",
        "Link lost",
        "The Bluetooth link drops, as when the phone goes out of range: "
        "o2x reports a 'disconnected' event...",
        0.5,
    ),
    Step(
        "reconnected",
        "Reconnected",
        "...then finds the car, reconnects and subscribes again by itself: "
        "the readings resume without the app doing anything.",
        2.5,
    ),
)


#: The first step's caption when the car carries an OBD adapter instead.
_ADAPTER_CONNECT: Final = {
    "elm327": "An ELM327-compatible OBD adapter sits in the car's OBD port. o2x finds it "
    "over Bluetooth LE, sets it to monitor the car's CAN bus (AT commands, then ATMA), "
    "reads the VIN the bus broadcasts and decodes every reading from the car's frames.",
    "wican": "A WiCAN sits in the car's OBD port. o2x finds it over Bluetooth LE, opens "
    "its CAN channel (SLCAN at 500 kbit/s), reads the VIN the bus broadcasts and decodes "
    "every reading from the car's frames.",
}


@attrs.define
class _Seen:
    """Where the reports stood when a step began, to tell what came after."""

    statuses: int
    events: int


class Demo:
    """Runs the scenario and keeps what the client reported, for the screen and the summary."""

    def __init__(
        self, out: Console, err: Console, *, json_mode: bool, pace: float, dongle: str = "elm327"
    ) -> None:
        #: The dongle the simulated car carries: o2x, elm327 or wican.
        self.dongle = dongle
        self.steps: tuple[Step, ...] = (
            STEPS
            if dongle == "o2x"
            else (attrs.evolve(STEPS[0], caption=_ADAPTER_CONNECT[dongle]), *STEPS[1:])
        )
        self.out = out
        self.err = err
        self.json_mode = json_mode
        self.live_mode = out.is_terminal and not json_mode
        self.pace = pace
        self.vin = DEFAULT_VIN
        self.current = -1
        #: Per step: None (not yet), True (seen), False (missed).
        self.outcome: list[bool | None] = [None] * len(self.steps)
        self.latest: VehicleInfo | None = None
        self.statuses: list[VehicleStatus] = []
        self.events: list[EventKind] = []
        self.samples = 0
        self.reconnects = 0
        self.link = "scanning"
        self.car: O2XVehicle | None = None
        self.log: deque[tuple[float, Text]] = deque(maxlen=8)
        self._t0 = time.monotonic()
        self._changed: anyio.Event | None = None

    # --- running ----------------------------------------------------------------------

    async def run(self) -> None:
        """The whole demo: radio, car, client, scenario, summary."""
        self._t0 = time.monotonic()
        self._changed = anyio.Event()
        if not self.json_mode and not self.live_mode:
            self.out.print(
                f"o2x demo: a simulated Citroën AMI (VIN {self.vin}) on a virtual Bluetooth LE "
                f"radio, read by the real o2x client; simulated time runs {SPEED:g}x faster."
            )
        async with AsyncExitStack() as screen:
            if self.live_mode:
                await screen.enter_async_context(live_screen(self.out, self.render))
            async with open_simulation(
                self.vin, speed=SPEED, autopilot=False, dongle=self.dongle
            ) as (radio, sim):
                await self._with_client(radio, sim)
        self._summary()
        missed = [
            step.name for step, seen in zip(self.steps, self.outcome, strict=True) if not seen
        ]
        if missed:
            raise Failure(
                f"the demo did not see every step (missed: {', '.join(missed)})",
                ExitCode.UNEXPECTED,
            )

    async def _with_client(self, radio: VirtualRadio, sim: SimulatedVehicle) -> None:
        with tempfile.TemporaryDirectory(prefix="o2x-demo-") as state_dir:
            # A throwaway state directory: the demo must not replace the vehicle the
            # user's own runs remember.
            car = O2XVehicle.first_time(
                self.vin, radio=radio, state_dir=state_dir, timeouts=Timeouts(scan=STEP_LIMIT)
            )
            self.car = car
            self._begin(0)
            async with car:
                self.link = f"connected ({car.address})"
                self._log(Text(f"connected to {car.address}, subscribed"))
                self._finish(0, True)
                samples, statuses, events = car.samples(), car.status_changes(), car.events()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._take_samples, car, samples)
                    tg.start_soon(self._take_statuses, statuses)
                    tg.start_soon(self._take_events, events)
                    await self._hold(0)
                    await self._scenario(sim)
                    tg.cancel_scope.cancel()

    async def _scenario(self, sim: SimulatedVehicle) -> None:
        async def plug_in_brake_off() -> None:
            await sim.set(park_brake_status=ParkBrake.RELEASED)
            await sim.charge(delay_minutes=0)

        async def plug_in() -> None:
            await sim.set(park_brake_status=ParkBrake.ACTIVATED)
            await sim.charge(delay_minutes=0)

        async def drop() -> None:
            await sim.drop_link()

        def status(wanted: VehicleStatus) -> Callable[[_Seen], bool]:
            return lambda seen: wanted in self.statuses[seen.statuses :]

        def event(wanted: EventKind) -> Callable[[_Seen], bool]:
            return lambda seen: wanted in self.events[seen.events :]

        parked, driving, charging = (
            VehicleStatus.PARKED,
            VehicleStatus.DRIVING,
            VehicleStatus.CHARGING,
        )
        # The first status is the one reported on subscribing: it may precede step 1.
        await self._step(1, lambda _: parked in self.statuses)
        await self._step(2, status(driving), sim.drive)
        await self._step(3, status(parked), sim.park)
        await self._step(4, event(EventKind.CANT_CHARGE), plug_in_brake_off)
        await self._step(5, status(charging), plug_in)
        # The reconnection may well come while the loss is still on screen.
        before_drop = self.reconnects
        await self._step(6, event(EventKind.DISCONNECTED), drop)
        await self._step(7, lambda _: self.reconnects > before_drop)

    async def _step(
        self,
        index: int,
        seen_when: Callable[[_Seen], bool],
        action: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        mark = _Seen(len(self.statuses), len(self.events))
        self._begin(index)
        if action is not None:
            await action()
        try:
            with anyio.fail_after(STEP_LIMIT):
                while not seen_when(mark):
                    await self._wait_change()
        except TimeoutError:
            self._finish(index, False)
            return
        self._finish(index, True)
        await self._hold(index)

    async def _hold(self, index: int) -> None:
        # Time for the viewer to take the scene in; nothing depends on it.
        await anyio.sleep(self.steps[index].hold * self.pace)
        if not self.json_mode and not self.live_mode and self.latest is not None:
            self.out.print(Text("          now: ") + reading_text(self.latest))

    async def _wait_change(self) -> None:
        assert self._changed is not None
        await self._changed.wait()

    def _changed_now(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = anyio.Event()

    # --- what the client reports ---------------------------------------------------------

    async def _take_samples(self, car: O2XVehicle, samples: Stream[VehicleInfo]) -> None:
        async for info in samples:
            self.samples += 1
            self.latest = info
            if self.json_mode:
                write_line(sample_json(info, "information"))
            reconnects = car.stats.reconnects
            if reconnects > self.reconnects:
                self.reconnects = reconnects
                self.link = f"connected ({car.address})"
                self._log(Text(f"reconnected to {car.address}, readings resume", style="green"))
            self._changed_now()

    async def _take_statuses(self, statuses: Stream[VehicleInfo]) -> None:
        async for info in statuses:
            self.statuses.append(info.status)
            self.latest = self.latest or info
            if self.json_mode:
                write_line(sample_json(info, "status"))
            soc = info.data.battery_soc
            detail = f" (state of charge {soc.value} %)" if soc is not None else ""
            self._log(Text("status ") + status_text(info.status) + Text(detail, style="dim"))
            self._changed_now()

    async def _take_events(self, events: Stream[Event]) -> None:
        async for event in events:
            self.events.append(event.kind)
            if self.json_mode:
                write_line(event_json(event.kind))
            if event.kind is EventKind.DISCONNECTED:
                self.link = "lost, scanning again"
            self._log(
                Text.assemble(
                    ("event ", "bold"),
                    (event.kind.value, "bold red"),
                    f": {EVENT_MEANING[event.kind]}",
                )
            )
            self._changed_now()

    # --- telling the viewer ----------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _begin(self, index: int) -> None:
        self.current = index
        step = self.steps[index]
        if not self.json_mode and not self.live_mode:
            self.out.print(
                Text.assemble(
                    (f"[{index + 1}/{len(self.steps)}] {step.title}", "bold"), f": {step.caption}"
                )
            )

    def _finish(self, index: int, seen: bool) -> None:
        self.outcome[index] = seen
        if not seen:
            self._log(
                Text(f"step '{self.steps[index].name}' was not seen in time", style="bold red")
            )

    def _log(self, message: Text) -> None:
        at = self._elapsed()
        self.log.append((at, message))
        if not self.json_mode and not self.live_mode:
            self.out.print(Text(f"  {at:6.2f} s  ") + message)

    # --- the live screen -------------------------------------------------------------------

    def render(self) -> RenderableType:
        """The whole screen, drawn from the current state and fitted to the terminal."""
        width, height = self.out.size
        header = Text.assemble(
            ("o2x demo", "bold blue"),
            f"  A simulated Citroën AMI (VIN {self.vin}) on a virtual Bluetooth LE radio, "
            "read by the real o2x client. ",
            (f"Simulated time runs {SPEED:g}x faster.", "dim"),
        )
        parts: list[RenderableType] = [header]
        used = _lines(header.plain, width)
        if self.current >= 0:
            step = self.steps[self.current]
            parts.append(
                Panel(
                    Text(step.caption),
                    title=f"[bold]Step {self.current + 1} of {len(self.steps)}: {step.title}[/]",
                    title_align="left",
                    border_style="cyan",
                )
            )
            used += _lines(step.caption, width - 4) + 2
        top = Table.grid(expand=True, padding=(0, 1))
        top.add_column(ratio=2)
        top.add_column(ratio=1)
        top.add_row(
            Panel(self._vehicle(), title="Vehicle, as o2x reports it", title_align="left"),
            Panel(self._scenario_list(), title="Scenario", title_align="left"),
        )
        parts.append(top)
        footer = self._footer()
        used += 11 + _lines(footer.plain, width)
        # The log gets the rows left over (its borders take two), newest entries last.
        room = max(2, min(len(self.log) or 1, height - used - 3))
        lines = [Text(f"{at:6.1f} s  ") + message for at, message in list(self.log)[-room:]]
        for line in lines:  # one row per entry: cut, not wrapped
            line.no_wrap = True
            line.overflow = "ellipsis"
        parts.append(
            Panel(
                Group(*lines) if lines else Text("scanning...", style="dim"),
                title="What o2x reported",
                title_align="left",
                height=room + 2,
            )
        )
        parts.append(footer)
        return Group(*parts)

    def _vehicle(self) -> RenderableType:
        return vehicle_grid(self.latest, self.link)

    def _scenario_list(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=2)
        grid.add_column()
        for index, (step, outcome) in enumerate(zip(self.steps, self.outcome, strict=True)):
            if outcome is True:
                style = "bold" if index == self.current else ""
                grid.add_row(Text("✓", style="green"), Text(step.name, style=style))
            elif outcome is False:
                grid.add_row(Text("✗", style="bold red"), Text(step.name, style="red"))
            elif index == self.current:
                grid.add_row(Spinner("dots", style="cyan"), Text(step.name, style="bold cyan"))
            else:
                grid.add_row(Text("·", style="dim"), Text(step.name, style="dim"))
        return grid

    def _footer(self) -> Text:
        car = self.car
        if car is None or self.samples == 0:
            return Text(" waiting for the first reading", style="dim")
        stats = car.stats
        items = [
            f"readings {self.samples}",
            f"status changes {len(self.statuses)}",
            f"events {len(self.events)}",
            f"frames {stats.frames}",
            f"CRC errors {stats.crc_errors}",
            f"sequence gaps {stats.seq_gaps}",
            f"reconnects {stats.reconnects}",
        ]
        # Wrapped between items, never inside one.
        width = self.out.size.width - 1
        lines = [""]
        for item in items:
            joined = f"{lines[-1]} · {item}" if lines[-1] else f" {item}"
            if len(joined) > width and lines[-1]:
                lines.append(f" {item}")
            else:
                lines[-1] = joined
        return Text("\n".join(lines), style="dim")

    # --- the end ---------------------------------------------------------------------------

    def _summary(self) -> None:
        seen = [step.name for step, ok in zip(self.steps, self.outcome, strict=True) if ok]
        rows = [
            (
                "steps seen",
                f"{len(seen)} of {len(self.steps)} ({', '.join(seen) if seen else 'none'})",
            ),
            ("readings", f"{self.samples} samples, {len(self.statuses)} status changes"),
            (
                "events",
                f"{len(self.events)} ({', '.join(kind.value for kind in self.events) or 'none'})",
            ),
            ("reconnects", str(self.reconnects)),
        ]
        if self.car is not None:
            stats = self.car.stats
            if self.dongle == "o2x":
                rows.append(
                    (
                        "decoder",
                        f"{stats.frames} frames, {stats.crc_errors} CRC errors, "
                        f"{stats.invalid_frames} invalid frames, {stats.bytes_discarded} "
                        f"bytes discarded, {stats.seq_gaps} sequence gaps",
                    )
                )
            else:
                # What the adapter handed over from the car's bus (docs/obd.md).
                rows.append(
                    (
                        "CAN bus",
                        f"{stats.frames} frames read through the adapter, "
                        f"{stats.invalid_frames} refused, VIN "
                        f"{'read off the bus' if stats.identity_verified else 'taken on trust'}",
                    )
                )
        rows.append(("time", f"{self._elapsed():.1f} s"))
        console = self.err if self.json_mode else self.out
        if self.live_mode:
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold")
            table.add_column()
            for label, value in rows:
                table.add_row(label.capitalize(), value)
            console.print(Panel(table, title="Summary", title_align="left", border_style="green"))
            console.print(
                "Next: [bold]o2x scan[/] finds a real car's dongle, [bold]o2x watch VIN[/] "
                "follows it; [bold]o2x --help[/] lists everything."
            )
            return
        console.print("Summary")
        for label, value in rows:
            console.print(f"  {label + ':':<12} {value}")


def _lines(text: str, width: int) -> int:
    """Rows ``text`` takes when wrapped to ``width`` (about: words do not split)."""
    return max(1, math.ceil(len(text) / max(1, width - 2)))
