"""``o2x replay --plot``: a capture's state of charge, speed, autonomy and status over time.

matplotlib is optional (the ``plot`` extra) and imported only here, only when a
plot is asked for. It is used through its object-oriented API with the Agg
canvas: no pyplot, no global state, no display needed.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs

from ..model import VehicleStatus
from ._common import ExitCode, Failure

#: Speed is measured over at least this many km of odometer: three of its 0.1 km
#: steps keep the error of one step within a third.
MIN_DISTANCE_KM: Final = 0.3
#: The status axis, bottom to top.
_STATUS_ORDER: Final = (
    VehicleStatus.UNKNOWN,
    VehicleStatus.PARKED,
    VehicleStatus.DRIVING,
    VehicleStatus.CHARGING,
)


def require_matplotlib() -> None:
    """Fail with a clear message, before any work is done, if matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise Failure(
            "--plot needs matplotlib; install it with pip install 'o2x[plot]'", ExitCode.MISSING
        )


@attrs.define
class Series:
    """What a plot shows, collected while a capture is decoded. Times in seconds."""

    times: list[float] = attrs.Factory(list)
    soc: list[float] = attrs.Factory(list)
    autonomy: list[float] = attrs.Factory(list)
    odometer: list[float] = attrs.Factory(list)
    status: list[VehicleStatus] = attrs.Factory(list)
    #: (time, event name) of the events reported.
    events: list[tuple[float, str]] = attrs.Factory(list)
    #: Times at which the link was lost.
    link_losses: list[float] = attrs.Factory(list)

    def add(
        self,
        t: float,
        soc: float | None,
        autonomy: float | None,
        odometer: float | None,
        status: VehicleStatus,
    ) -> None:
        """Add one reading; values the car did not report are NaN (gaps in the lines)."""
        self.times.append(t)
        self.soc.append(math.nan if soc is None else soc)
        self.autonomy.append(math.nan if autonomy is None else autonomy)
        self.odometer.append(math.nan if odometer is None else odometer)
        self.status.append(status)


def odometer_speed(
    times: Sequence[float], odometers: Sequence[float], moving: Sequence[bool]
) -> list[float]:
    """Speed in km/h from how fast the odometer turns (NaN where it cannot be told).

    The odometer counts tenths of a kilometre, so a difference between two
    readings a tenth of a second apart is either 0 or a wild 3600 km/h. Speed is
    measured instead between readings at which the odometer has just moved on, at
    least :data:`MIN_DISTANCE_KM` apart (or when the car stops), and applies to
    every reading in between; a car that is not driving stands still.

    >>> times = [0, 10, 20, 30, 40]
    >>> speeds = odometer_speed(times, [1.0, 1.1, 1.2, 1.3, 1.3], [True] * 4 + [False])
    >>> [round(v, 1) for v in speeds]
    [36.0, 36.0, 36.0, 36.0, 0.0]
    >>> odometer_speed([0, 10, 20], [1.0, 1.0, 1.0], [False] * 3)
    [0.0, 0.0, 0.0]
    """
    speeds = [math.nan] * len(times)
    anchor: tuple[float, float] | None = None  # where the current measurement starts
    pending: list[int] = []  # readings since the anchor, waiting for the next tick

    def settle(t: float, odometer: float) -> None:
        if anchor is not None and pending and t > anchor[0]:
            speed = (odometer - anchor[1]) / (t - anchor[0]) * 3600.0
            for j in pending:
                speeds[j] = speed
        pending.clear()

    for i, (t, odometer, driving) in enumerate(zip(times, odometers, moving, strict=True)):
        if math.isnan(odometer):
            continue
        if not driving:
            settle(t, odometer)
            speeds[i] = 0.0
            anchor = (t, odometer)
            continue
        if anchor is None:
            anchor = (t, odometer)
        pending.append(i)
        if odometer - anchor[1] >= MIN_DISTANCE_KM - 1e-9:
            settle(t, odometer)
            anchor = (t, odometer)
    # Readings after the last tick keep NaN: the speed there cannot be told.
    return speeds


def draw(path: Path, series: Series, *, title: str, time_scale: float = 1.0) -> None:
    """Write the plot of ``series`` to ``path`` (PNG). ``time_scale`` > 1 marks a
    sped-up simulation: its clock is stretched back to the car's own time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scaled = [t * time_scale for t in series.times]
    span = scaled[-1] - scaled[0] if scaled else 0.0
    in_minutes = span > 300
    divisor = 60.0 if in_minutes else 1.0
    x = [t / divisor for t in scaled]
    moving = [status is VehicleStatus.DRIVING for status in series.status]
    speed = odometer_speed(scaled, series.odometer, moving)

    figure = Figure(figsize=(10, 9), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    soc_ax, speed_ax, autonomy_ax, status_ax = figure.subplots(4, 1, sharex=True)
    figure.suptitle(title)

    soc_ax.plot(x, series.soc, color="tab:green")
    soc_ax.set_ylabel("state of charge (%)")
    soc_ax.set_ylim(0, 100)

    speed_ax.plot(x, speed, color="tab:blue", drawstyle="steps-pre")
    speed_ax.set_ylabel("speed (km/h)\nfrom the odometer")
    speed_ax.set_ylim(bottom=0)

    autonomy_ax.plot(x, series.autonomy, color="tab:purple")
    autonomy_ax.set_ylabel("autonomy (km)")
    autonomy_ax.set_ylim(bottom=0)

    levels = [_STATUS_ORDER.index(status) for status in series.status]
    status_ax.step(x, levels, where="post", color="tab:orange")
    status_ax.set_yticks(range(len(_STATUS_ORDER)), [s.value for s in _STATUS_ORDER])
    status_ax.set_ylim(-0.5, len(_STATUS_ORDER) - 0.5)
    status_ax.set_ylabel("status")
    axis = f"{'minutes' if in_minutes else 'seconds'} since the start of the capture"
    if time_scale != 1:
        axis += f" (the simulated car's own time: it ran {time_scale:g}x faster than the clock)"
    status_ax.set_xlabel(axis)

    marks = [(t, "link lost", "tab:red", "--") for t in series.link_losses] + [
        (t, name, "tab:brown", ":") for t, name in series.events
    ]
    labelled: set[str] = set()
    for t, name, color, style in marks:
        for ax in (soc_ax, speed_ax, autonomy_ax, status_ax):
            label = name if ax is soc_ax and name not in labelled else None
            ax.axvline(t * time_scale / divisor, color=color, linestyle=style, label=label)
        labelled.add(name)
    if labelled:
        soc_ax.legend(loc="lower left", fontsize="small")
    if not series.times:
        soc_ax.text(
            0.5, 0.5, "no readings in this capture", ha="center", transform=soc_ax.transAxes
        )
    for ax in (soc_ax, speed_ax, autonomy_ax, status_ax):
        ax.grid(True, alpha=0.3)
    figure.savefig(path, format="png")
