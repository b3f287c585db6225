"""The live view on a terminal, shared by ``o2x demo`` and ``o2x watch``: the vehicle's
last reading as a grid, and a rich ``Live`` redrawn from the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import anyio
from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ..model import VehicleInfo
from ._common import live_text, status_text

#: How often the live view is redrawn, in seconds.
REDRAW_EVERY: Final = 0.1


@asynccontextmanager
async def live_screen(
    console: Console, render: Callable[[], RenderableType]
) -> AsyncIterator[Live]:
    """``render()`` shown on ``console`` and redrawn in place for the block; what is
    printed on ``console`` meanwhile scrolls above it. The last drawing stays.

    It is redrawn by a task on the loop that changes what it shows, never by rich's
    own thread, which would read the state half-way through a change.
    """
    live = Live(
        get_renderable=render,
        console=console,
        auto_refresh=False,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    live.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_redraw, live)
            yield live
            tg.cancel_scope.cancel()
    finally:
        live.refresh()
        live.stop()


async def _redraw(live: Live) -> None:
    while True:
        live.refresh()
        await anyio.sleep(REDRAW_EVERY)


def vehicle_grid(info: VehicleInfo | None, link: str, *, with_live: bool = False) -> RenderableType:
    """The last reading, a value a row, and the state of the link; ``with_live`` adds
    a row for what only some sources report (speed, pack voltage and current...)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(no_wrap=True)
    if info is None:
        grid.add_row("Link", Spinner("dots", text=link))
        return grid
    data = info.data
    soc = data.battery_soc.value if data.battery_soc is not None else None
    grid.add_row("State of charge", _soc_bar(soc))
    grid.add_row("Status", status_text(info.status, upper=True))
    grid.add_row("Gear", data.rnd.value)
    grid.add_row("Parking brake", data.park_brake_status.value)
    grid.add_row("Autonomy", _fmt(data.remaining_autonomy, "km"))
    grid.add_row("Odometer", _fmt(data.total_odometer, "km", 1))
    grid.add_row("System, battery", f"{data.system_state.value}, {data.battery_state.value}")
    if with_live and info.live is not None:
        grid.add_row("Live", live_text(info.live).strip() or "not reported")
    if info.current_alert is None:
        grid.add_row("Alerts", Text("not reported"))
    else:
        alerts = info.current_alert.active()
        grid.add_row("Alerts", Text(", ".join(alerts), style="red") if alerts else Text("none"))
    link_style = "green" if link.startswith("connected") else "bold red"
    grid.add_row("Link", Text(link, style=link_style))
    return grid


def _soc_bar(soc: int | float | None) -> Text:
    if soc is None:
        return Text("not reported", style="dim")
    width = 20
    filled = round(width * soc / 100)
    color = "green" if soc >= 50 else "yellow" if soc >= 20 else "red"
    return Text.assemble(
        ("█" * filled, color), ("░" * (width - filled), "dim"), (f" {soc:3.0f} %", "bold")
    )


def _fmt(measure: object, unit: str, digits: int = 0) -> str:
    value = getattr(measure, "value", None)
    if value is None:
        return "not reported"
    return f"{value:.{digits}f} {unit}"
