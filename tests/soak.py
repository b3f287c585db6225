"""Soak test of the connection life cycle: a simulated car under random faults, checked
against the simulator's ground-truth log.

A :class:`~o2x.sim.SimulatedVehicle` goes through scripted drive / park / charge phases
(and the odd fault state) while it is made to drop its link, go silent for longer than
``loose_connection``, corrupt frames, go out of range and come back, and cut its
notifications at every size from 1 byte to MTU - 3. An :class:`~o2x.O2XVehicle` on the
same virtual radio follows it. At the end, what the library reported is compared with
the vehicle's log. The scenario, the comparison rules and the recorded figures are in
``docs/reliability.md``, section "Soak".

The same code runs the short version in the normal suite (``tests/test_soak.py``, a few
faults of each kind on both backends) and the long one, as a script::

    python tests/soak.py --minutes 15 --backend both     # or: nox -s soak -- --minutes 15

With ``dongle="elm327"`` (``--dongle elm327``) the car carries an emulated ELM327 clone
in its OBD port instead, with the clone's faults (``quirks``: garbage in its lines, slow
answers; :class:`~o2x.sim.adapters.Elm327Quirks`), and the library reads the car's bus
through it. The link faults are the same (drops, silences: the car asleep, its bus
quiet, the adapter still connected; out of range), as are the notification sizes, cut by
the adapter's bridge; garbage in the adapter's lines stands in for ``corrupt_next``,
which is the O2X dongle's. The adapter's log records the statuses the bus carried, link
up or not, and the bus has no events: see :class:`SoakConfig` for what changes.

``--backend both`` runs each backend in its own process (one after the other, or at the
same time with ``--parallel``) and prints one table with a column per backend. The exit
status is 0 only if every check passed on every backend.

The rule that makes the comparison exact: a link fault (drop, silence, out of range) is
only injected, and the run only ends, once the library has caught up, that is, it has
received as many status changes as the log holds, a CRC error for every corrupted frame
logged, and the status the dongle is in now. So every status the log holds was carried
by an intact frame that reached the library, and ``status_changes()`` must equal the
log's STATUS records, one for one and in order.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs

from o2x import (
    EventKind,
    O2XVehicle,
    SystemState,
    Timeouts,
    VehicleStats,
    VehicleStatus,
    derive_status,
)
from o2x.sim import Fault, LogKind, LogRecord, SetupStep, SimulatedVehicle, VirtualRadio
from o2x.sim.adapters import Elm327Quirks, Elm327Stats

__all__ = ["SoakConfig", "SoakReport", "format_table", "main", "run_soak"]

VIN = "VR7SAKTEST1234567"
#: How often a wait re-checks its condition.
POLL = 0.01
#: Memory growth allowed between the end of the warm-up and the end of the run.
MEMORY_LIMIT = 10 * 1024 * 1024

# The kinds of link fault; the notification size changes before every one of them.
DROP, SILENCE, PAUSE, CORRUPT = "drop", "silence", "pause", "corrupt"
#: A link dropped, and the next one dropped again at a step of its set-up.
SETUP = "setup_drop"
STEP_KINDS = (DROP, SILENCE, PAUSE, CORRUPT, SETUP)
#: Through an OBD adapter: corrupt_next is the O2X dongle's (its frames have a CRC); the
#: adapter's own faults (Elm327Quirks) corrupt its lines all along instead.
ADAPTER_STEP_KINDS = (DROP, SILENCE, PAUSE, SETUP)
#: The set-up steps a SETUP fault drops the next link at, by dongle.
SETUP_STEPS = {
    "o2x": (SetupStep.CONNECT, SetupStep.IDENTITY, SetupStep.SUBSCRIBE),
    "adapter": (SetupStep.CONNECT, SetupStep.SUBSCRIBE, SetupStep.COMMAND),
}
SIZE = "notification_size"
#: The notification sizes of an OBD adapter's bridge: 20 bytes is what they send (an MTU of 23).
ADAPTER_SIZES = (1, 2, 3, 5, 8, 13, 19, 20)


@dataclasses.dataclass(frozen=True)
class SoakConfig:
    """What a soak run does. The defaults are the long run's."""

    #: Seconds of fault injection (rounds are started until it has passed); ``None``: ``rounds``.
    duration: float | None = None
    #: Rounds to run when ``duration`` is ``None``. A round is one fault of each kind.
    rounds: int = 3
    #: The run fails if it injected fewer faults than this of any kind.
    min_per_kind: int = 0
    seed: int = 1
    rate_hz: float = 20.0
    #: Model seconds per wall-clock second: the battery charges and drains visibly.
    time_scale: float = 30.0
    loose_connection: float = 2.0
    #: Each silence lasts this many times ``loose_connection`` (between 1 and 2: one loss).
    silence_factor: float = 1.5
    #: End each silence as soon as the library has reported the loss instead of after
    #: ``silence_factor * loose_connection``: exactly one loss whatever the machine's load.
    end_silence_on_loss: bool = False
    #: Seconds out of range (uniform in this interval) for an advertising pause.
    pause: tuple[float, float] = (0.2, 1.0)
    #: Notification sizes to cycle through; ``None``: 1, 2, ..., MTU - 3, 1, 2, ...
    sizes: tuple[int, ...] | None = None
    #: Probability of a phase change while streaming after each step.
    p_phase: float = 0.6
    #: Probability of a phase change while the link is down, after a link fault.
    p_gap_phase: float = 0.4
    #: Probability that a phase change made while the link is down is undone at once.
    p_flicker: float = 0.3
    #: Probability that a corrupt_next is followed at once by a phase change (so the
    #: frame carrying the new status is likely the corrupted one).
    p_corrupt_phase: float = 0.5
    #: Seconds of plain streaming (uniform in this interval) after each step.
    dwell: tuple[float, float] = (0.0, 0.5)
    #: Bound on each wait for the library to catch up; passing it is an anomaly.
    settle_timeout: float = 30.0
    #: Memory is first measured at the end of the first round that ends after this long.
    warmup: float = 0.0
    #: Measure traced Python memory too (slower).
    tracemalloc: bool = False
    #: Print a progress line this often (seconds); ``None``: never.
    progress: float | None = None
    mtu: int = 247
    #: The car's dongle: ``"o2x"``, or an OBD adapter, ``"elm327"`` or ``"wican"``. Through
    #: an adapter the kinds of fault are :data:`ADAPTER_STEP_KINDS`, the sizes
    #: :data:`ADAPTER_SIZES` unless ``sizes`` is given, and the phases drive, park and
    #: charge at once: the bus shows no fault state (the log's UNKNOWN is PARKED there)
    #: and a deferred charge is PARKED until the current flows. A charging car is
    #: unplugged (parked) before it drives: from CHARGING to DRIVING the bus's messages
    #: change one by one, and the library may see it parked between them, as a real car
    #: is between the two. Nothing is flicked back
    #: while the link is down (``p_flicker`` is not used): the log records what the bus
    #: carried, link up or not, and that status never reaches the library. The bus has
    #: no events: cantCharge is not checked.
    dongle: str = "o2x"
    #: The ELM327's quirks and faults (``dongle="elm327"``), e.g. ``garbage``, ``answer_delay``.
    quirks: Elm327Quirks | None = None

    @property
    def adapter(self) -> bool:
        """The car carries an OBD adapter, not an O2X dongle."""
        return self.dongle != "o2x"

    @property
    def step_kinds(self) -> tuple[str, ...]:
        """The kinds of link fault injected, one of each a round."""
        return ADAPTER_STEP_KINDS if self.adapter else STEP_KINDS


@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclasses.dataclass
class SoakReport:
    """The figures of one run and the verdict of each check."""

    backend: str
    config: dict[str, Any]
    wall_time: float = 0.0
    injection_time: float = 0.0
    rounds: int = 0
    injected: dict[str, int] = dataclasses.field(default_factory=dict)
    corrupted_frames: int = 0
    sizes_covered: int = 0
    size_cycles: int = 0
    phase_changes: dict[str, int] = dataclasses.field(default_factory=dict)
    #: SETUP faults by the set-up step they dropped the next link at.
    setup_steps: dict[str, int] = dataclasses.field(default_factory=dict)
    statuses_expected: int = 0
    statuses_seen: int = 0
    statuses_mismatch: str | None = None
    status_latency_ms: tuple[float, float] | None = None  # median, max
    status_slowest: str | None = None
    disconnections_expected: int = 0
    disconnected_events: int = 0
    cant_charge_expected: int = 0
    cant_charge_events: int = 0
    stats: dict[str, int] = dataclasses.field(default_factory=dict)
    frames_sent: int = 0
    notifications_sent: int = 0
    samples: int = 0
    samples_out_of_order: int = 0
    log_records: int = 0
    #: The ELM327 emulator's counters at the end (``dongle="elm327"``).
    adapter_stats: dict[str, int] | None = None
    rss_growth: int | None = None
    rss_baseline: int | None = None
    rss_peak: int | None = None
    traced_growth: int | None = None
    errors_logged: list[str] = dataclasses.field(default_factory=list)
    warnings_logged: int = 0
    #: Each distinct warning (logger: message) and how often it was logged.
    warnings: dict[str, int] = dataclasses.field(default_factory=dict)
    anomalies: list[str] = dataclasses.field(default_factory=list)
    checks: list[Check] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def table(self) -> str:
        return format_table([self])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SoakReport:
        data = dict(data)
        data["checks"] = [Check(**c) for c in data["checks"]]
        if data.get("status_latency_ms") is not None:
            data["status_latency_ms"] = tuple(data["status_latency_ms"])
        return cls(**data)


# --- measuring ----------------------------------------------------------------------------


def _rss() -> int | None:
    """Resident set size of this process, in bytes (Linux), or ``None``."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _Problems(logging.Handler):
    """Collects what went wrong without raising: error log records, exceptions in
    threads, unraisable exceptions (asyncio's "exception never retrieved" is logged)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            text = f"{record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({record.exc_info[1]!r})"
            self.errors.append(text)
        else:
            self.warnings[f"{record.name}: {record.getMessage()[:100]}"] += 1

    @contextmanager
    def installed(self) -> Iterator[None]:
        root = logging.getLogger()
        root.addHandler(self)
        old_thread_hook, old_unraisable = threading.excepthook, sys.unraisablehook

        def thread_hook(args: threading.ExceptHookArgs) -> None:
            self.errors.append(f"thread {args.thread and args.thread.name}: {args.exc_value!r}")
            old_thread_hook(args)

        def unraisable(args: Any) -> None:
            self.errors.append(f"unraisable: {args.exc_value!r} in {args.object!r}")
            old_unraisable(args)

        threading.excepthook, sys.unraisablehook = thread_hook, unraisable
        try:
            yield
        finally:
            threading.excepthook, sys.unraisablehook = old_thread_hook, old_unraisable
            root.removeHandler(self)


# --- the run ------------------------------------------------------------------------------


class _Soak:
    def __init__(
        self, config: SoakConfig, sim: SimulatedVehicle, car: O2XVehicle, report: SoakReport
    ) -> None:
        self.config = config
        self.sim = sim
        self.car = car
        self.report = report
        self.rng = random.Random(f"soak:{config.seed}")
        self.started = time.monotonic()
        self.injected: Counter[str] = Counter()
        self.phase_changes: Counter[str] = Counter()
        #: SETUP faults by the step of the set-up they dropped the next link at.
        self.setup_steps: Counter[str] = Counter()
        self.anomalies: list[str] = []
        # Link losses injected while streaming, and losses nobody injected.
        self.expected_disconnections = 0
        self.spurious_disconnections = 0
        self.corrupt_requested = 0
        # What the library reported, as its consumers received it.
        self.seen: list[VehicleStatus] = []
        self.seen_at: list[float] = []
        self.events: list[EventKind] = []
        self.samples = 0
        self.samples_out_of_order = 0
        self._last_odometer = -math.inf
        # The log, read incrementally.
        self._log_read = 0
        self.log_statuses = 0
        self.log_corrupted = 0
        self.adapter = config.adapter
        sizes = config.sizes or (ADAPTER_SIZES if self.adapter else tuple(range(1, config.mtu - 2)))
        self.sizes = sizes
        self._size_index = 0
        self.sizes_used: set[int] = set()

    # --- consumers (tasks) -------------------------------------------------------------

    async def consume_statuses(self) -> None:
        async for info in self.car.status_changes():
            self.seen.append(info.status)
            self.seen_at.append(time.monotonic())

    async def consume_events(self) -> None:
        async for event in self.car.events():
            self.events.append(event.kind)

    async def consume_samples(self) -> None:
        async for info in self.car.samples():
            self.samples += 1
            odometer = info.data.total_odometer
            if odometer is not None:
                if odometer.value < self._last_odometer:
                    self.samples_out_of_order += 1
                self._last_odometer = odometer.value

    # --- waiting ----------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _read_log(self) -> None:
        log = self.sim.log
        for record in log[self._log_read :]:
            if record.kind is LogKind.STATUS:
                self.log_statuses += 1
            elif record.fault is Fault.CORRUPTED_FRAME:
                self.log_corrupted += 1
        self._log_read = len(log)

    def _where(self) -> str:
        s = self.car.stats
        return (
            f"library: {len(self.seen)} statuses, {s.disconnections} disconnections, "
            f"{s.reconnects} reconnects, {s.frames} frames, {s.crc_errors} CRC errors; "
            f"dongle: {self.log_statuses} statuses, {self.log_corrupted} corrupted frames, "
            f"subscribed={self.sim.subscribed}; expected {self.expected_disconnections} "
            "disconnections"
        )

    async def until(self, what: str, condition: Callable[[], bool], bound: float = 0.0) -> bool:
        """Wait for ``condition``; past the bound, record an anomaly and go on.

        Polled: the conditions read state that changes on the radio's thread too.
        """
        with anyio.move_on_after(bound or self.config.settle_timeout):
            while not condition():  # noqa: ASYNC110 - nothing to wait on across threads
                await anyio.sleep(POLL)
            return True
        self.anomalies.append(f"at {self.elapsed():.1f} s, no {what} ({self._where()})")
        return False

    def _losses(self) -> int:
        return self.expected_disconnections + self.spurious_disconnections

    def _lost(self) -> bool:
        return self.car.stats.disconnections >= self._losses()

    def _check_no_extra_loss(self) -> None:
        extra = self.car.stats.disconnections - self._losses()
        if extra > 0:
            self.spurious_disconnections += extra
            self.anomalies.append(
                f"at {self.elapsed():.1f} s, {extra} DISCONNECTED not caused by a fault"
            )

    def _caught_up(self) -> bool:
        self._read_log()
        return (
            len(self.seen) >= self.log_statuses
            and self.car.stats.crc_errors >= self.log_corrupted
            # A change whose frame was corrupted is logged with the next intact frame,
            # which may not have been sent yet: wait until the library shows the status
            # the dongle is in now, so that no change is still on its way.
            and bool(self.seen)
            and self.seen[-1] is self._status()
        )

    async def catch_up(self) -> None:
        """Wait until the library has received every status and corrupted frame the
        dongle logged, and the status the dongle is in now. Link faults are only
        injected after this: it is the rule that makes every logged status observable
        (docs/reliability.md, "Soak")."""
        await self.until("catch-up of statuses and CRC errors", self._caught_up)

    async def settle(self) -> None:
        """Wait until the library streams again on a link that carries frames."""

        def reconnected() -> bool:
            s = self.car.stats
            return s.reconnects >= s.disconnections and self.sim.subscribed

        await self.until("reconnection", reconnected)
        mark = self.car.stats.frames
        await self.until("frames on the new link", lambda: self.car.stats.frames >= mark + 2)
        self._check_no_extra_loss()
        await self.catch_up()

    # --- the scenario -----------------------------------------------------------------

    async def change_phase(self, where: str) -> None:
        # Through an adapter, only the phases whose status the bus shows as the log
        # says (SoakConfig.dongle).
        phases = (
            ("drive", "park", "charge") if self.adapter else ("drive", "park", "charge", "fault")
        )
        choice = self.rng.choice(phases)
        if choice == "drive" and self.adapter and self._status() is VehicleStatus.CHARGING:
            choice = "park"  # unplugged first (SoakConfig.dongle)
        if choice == "drive":
            await self.sim.drive()
        elif choice == "park":
            await self.sim.park()
        elif choice == "charge":  # refused with cantCharge while the brake is released
            delays = (0,) if self.adapter else (0, 0, 1, 3)
            await self.sim.charge(delay_minutes=self.rng.choice(delays))
        else:
            await self.sim.set(system_state=SystemState.FAULT)
        self.phase_changes[where] += 1

    async def gap_phase(self) -> None:
        """Maybe change phase while the link is down, and maybe go back at once to the
        status it had. While the link is still down no frame carries the short-lived
        status, and then neither the log nor the library shows it."""
        if self.rng.random() >= self.config.p_gap_phase:
            return
        before = self._status()
        await self.change_phase("link down")
        flicker = 0.0 if self.adapter else self.config.p_flicker  # SoakConfig.dongle
        if self.rng.random() < flicker and self._status() is not before:
            if before is VehicleStatus.DRIVING:
                await self.sim.drive()
            elif before is VehicleStatus.CHARGING:
                await self.sim.park()
                await self.sim.charge(delay_minutes=0)
            elif before is VehicleStatus.UNKNOWN:
                await self.sim.set(system_state=SystemState.FAULT)
            else:
                await self.sim.park()
            self.phase_changes["flicked back"] += 1

    def _status(self) -> VehicleStatus:
        info = self.sim.info
        return derive_status(info.system_state, info.rnd)

    async def next_size(self) -> None:
        size = self.sizes[self._size_index % len(self.sizes)]
        self._size_index += 1
        await self.sim.set_notification_size(size)  # the O2X stream's (and logged)
        if self.sim.adapter is not None:
            # The adapter's bridge cuts its output on its own; an int, read by the
            # radio's thread at its next notification.
            self.sim.adapter.notification_size = size
        self.sizes_used.add(size)
        self.injected[SIZE] += 1

    async def drop(self) -> None:
        self.expected_disconnections += 1
        if not await self.sim.drop_link():
            self.expected_disconnections -= 1
            self.anomalies.append(f"at {self.elapsed():.1f} s, drop_link found no link")
            return
        self.injected[DROP] += 1
        await self.until("DISCONNECTED after a link drop", self._lost)
        await self.gap_phase()
        await self.settle()

    async def setup_drop(self) -> None:
        """A drop, and the link after it dropped again at a step of its set-up (the
        next attempt, after the back-off, is let be)."""
        step = self.rng.choice(SETUP_STEPS["adapter" if self.adapter else "o2x"])
        await self.sim.drop_during_setup(step)
        self.expected_disconnections += 1
        if not await self.sim.drop_link():
            self.expected_disconnections -= 1
            self.anomalies.append(f"at {self.elapsed():.1f} s, drop_link found no link")
            return
        self.injected[SETUP] += 1
        self.setup_steps[step.value] += 1
        await self.until("DISCONNECTED after a link drop", self._lost)
        await self.gap_phase()
        await self.settle()  # through the link dropped mid-set-up, to the one after

    async def silence(self) -> None:
        loose = self.config.loose_connection
        seconds = (
            1000 * loose
            if self.config.end_silence_on_loss
            else (self.config.silence_factor * loose)
        )
        self.expected_disconnections += 1
        await self.sim.go_silent(seconds)
        self.injected[SILENCE] += 1
        await self.until("DISCONNECTED after a silence", self._lost, bound=4 * loose + 30)
        if self.config.end_silence_on_loss:
            await self.sim.go_silent(0)
        await self.gap_phase()
        await self.settle()

    async def pause(self) -> None:
        self.expected_disconnections += 1
        await self.sim.advertise(False)  # drops the link, as a supervision timeout
        self.injected[PAUSE] += 1
        await self.until("DISCONNECTED after going out of range", self._lost)
        await self.gap_phase()
        await anyio.sleep(self.rng.uniform(*self.config.pause))  # out of range a while
        await self.sim.advertise(True)
        await self.settle()

    async def corrupt(self) -> None:
        n = self.rng.randint(1, 3)
        self.corrupt_requested += n
        await self.sim.corrupt_next(n)
        self.injected[CORRUPT] += 1
        if self.rng.random() < self.config.p_corrupt_phase:
            await self.change_phase("into a corrupted frame")

        def sent() -> bool:
            self._read_log()
            return self.log_corrupted >= self.corrupt_requested

        await self.until("corrupted frames sent", sent)
        await self.catch_up()

    async def step(self, kind: str) -> None:
        await self.next_size()
        inject = {
            DROP: self.drop,
            SILENCE: self.silence,
            PAUSE: self.pause,
            CORRUPT: self.corrupt,
            SETUP: self.setup_drop,
        }
        await inject[kind]()
        if self.rng.random() < self.config.p_phase:
            await self.change_phase("streaming")
            await self.catch_up()
        await anyio.sleep(self.rng.uniform(*self.config.dwell))  # frames flow a while

    def progress_line(self) -> str:
        s = self.car.stats
        kinds = ", ".join(f"{k} {self.injected[k]}" for k in (*self.config.step_kinds, SIZE))
        return (
            f"[{self.report.backend}] {self.elapsed():6.0f} s  {kinds}; statuses "
            f"{len(self.seen)}/{self.log_statuses}; disconnections {s.disconnections}/"
            f"{self.expected_disconnections}; reconnects {s.reconnects}; crc {s.crc_errors}"
            f"/{self.log_corrupted}; anomalies {len(self.anomalies)}"
        )


def _memory(traced: bool) -> tuple[int | None, int | None]:
    gc.collect()
    return _rss(), (tracemalloc.get_traced_memory()[0] if traced else None)


async def run_soak(
    config: SoakConfig, *, state_dir: str | os.PathLike[str] | None = None
) -> SoakReport:
    """Run the soak scenario on the current event loop (asyncio or trio) and check it."""
    import sniffio

    settings = dataclasses.asdict(config)
    if config.quirks is not None:  # JSON for the script's reports
        settings["quirks"] = attrs.asdict(config.quirks)
    report = SoakReport(sniffio.current_async_library(), settings)
    problems = _Problems()
    started_tracing = config.tracemalloc and not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start()
    wall_start = time.monotonic()
    try:
        with problems.installed(), tempfile.TemporaryDirectory() as default_dir:
            await _run(config, report, state_dir if state_dir is not None else default_dir)
    finally:
        if started_tracing:
            tracemalloc.stop()
        report.wall_time = time.monotonic() - wall_start
        report.errors_logged = problems.errors
        report.warnings_logged = problems.warnings.total()
        report.warnings = dict(problems.warnings.most_common())
    _judge(config, report)
    return report


async def _run(config: SoakConfig, report: SoakReport, state_dir: str | os.PathLike[str]) -> None:
    timeouts = Timeouts(scan=60, loose_connection=config.loose_connection)
    async with VirtualRadio(mtu=config.mtu) as radio:
        sim = await radio.add(
            SimulatedVehicle(
                VIN,
                seed=config.seed,
                rate_hz=config.rate_hz,
                time_scale=config.time_scale,
                dongle=config.dongle,
                quirks=config.quirks,
            )
        )
        async with (
            O2XVehicle.first_time(VIN, radio=radio, state_dir=state_dir, timeouts=timeouts) as car,
            anyio.create_task_group() as consumers,
        ):
            soak = _Soak(config, sim, car, report)
            consumers.start_soon(soak.consume_statuses)
            consumers.start_soon(soak.consume_events)
            consumers.start_soon(soak.consume_samples)
            await soak.settle()
            await _inject(config, soak, report)
            # The end: every reconnection completed, everything logged was received.
            await soak.settle()
            log = sim.log
            stats = car.stats
            consumers.cancel_scope.cancel()
        _collect(config, soak=soak, report=report, log=log, stats=stats, sim=sim)


async def _inject(config: SoakConfig, soak: _Soak, report: SoakReport) -> None:
    traced = config.tracemalloc and tracemalloc.is_tracing()
    baseline: tuple[int | None, int | None] | None = None
    peak = 0
    injection_start = time.monotonic()
    next_progress = config.progress
    rounds = 0
    while True:
        elapsed = time.monotonic() - injection_start
        if config.duration is None and rounds >= config.rounds:
            break
        if config.duration is not None and elapsed >= config.duration:
            break
        kinds = list(config.step_kinds)
        soak.rng.shuffle(kinds)
        for kind in kinds:
            await soak.step(kind)
        rounds += 1
        elapsed = time.monotonic() - injection_start
        if baseline is None and elapsed >= config.warmup:
            baseline = _memory(traced)
        rss, _ = _memory(traced) if baseline is not None else (None, None)
        peak = max(peak, rss or 0)
        if next_progress is not None and elapsed >= next_progress:
            print(soak.progress_line(), flush=True)
            next_progress += config.progress or 0
    report.injection_time = time.monotonic() - injection_start
    report.rounds = rounds
    end = _memory(traced)
    if baseline is not None:
        if baseline[0] is not None and end[0] is not None:
            report.rss_baseline = baseline[0]
            report.rss_growth = end[0] - baseline[0]
            report.rss_peak = max(peak, end[0])
        if baseline[1] is not None and end[1] is not None:
            report.traced_growth = end[1] - baseline[1]


def _collect(
    config: SoakConfig,
    *,
    soak: _Soak,
    report: SoakReport,
    log: list[LogRecord],
    stats: VehicleStats,
    sim: SimulatedVehicle,
) -> None:
    expected = [r for r in log if r.kind is LogKind.STATUS]
    report.injected = {k: soak.injected[k] for k in (*STEP_KINDS, SIZE)}
    report.corrupted_frames = sum(1 for r in log if r.fault is Fault.CORRUPTED_FRAME)
    report.sizes_covered = len(soak.sizes_used)
    report.size_cycles = soak.injected[SIZE] // len(soak.sizes)
    report.phase_changes = dict(soak.phase_changes)
    report.setup_steps = dict(soak.setup_steps)
    report.statuses_expected = len(expected)
    report.statuses_seen = len(soak.seen)
    truth = [r.status for r in expected]
    if truth != soak.seen:
        index = next(
            (i for i, (a, b) in enumerate(zip(truth, soak.seen, strict=False)) if a != b),
            min(len(truth), len(soak.seen)),
        )
        report.statuses_mismatch = (
            f"first difference at #{index}: log {truth[index : index + 3]} "
            f"library {soak.seen[index : index + 3]}"
        )
    else:
        latencies = [1000 * (at - r.at) for r, at in zip(expected, soak.seen_at, strict=True)]
        if latencies:
            report.status_latency_ms = (statistics.median(latencies), max(latencies))
            slowest = max(range(len(latencies)), key=latencies.__getitem__)
            record = expected[slowest]
            before = [r for r in log if r.kind is LogKind.FAULT and r.at <= record.at][-3:]
            report.status_slowest = (
                f"#{slowest} {record.status} seq {record.seq} logged at "
                f"{record.at - soak.started:.2f} s, received after {latencies[slowest]:.0f} ms; "
                "faults before: "
                + ", ".join(
                    f"{r.fault} {dict(r.details)} at {r.at - soak.started:.2f} s" for r in before
                )
            )
    report.disconnections_expected = soak.expected_disconnections
    report.disconnected_events = soak.events.count(EventKind.DISCONNECTED)
    report.cant_charge_expected = sum(
        1 for r in log if r.kind is LogKind.EVENT and r.event is EventKind.CANT_CHARGE
    )
    report.cant_charge_events = soak.events.count(EventKind.CANT_CHARGE)
    report.stats = attrs.asdict(stats)
    report.frames_sent = sim.frames_sent
    report.notifications_sent = sim.notifications_sent
    if sim.adapter is not None:
        report.notifications_sent = sim.adapter.notifications_sent
        emulator_stats = sim.adapter.emulator.stats
        if isinstance(emulator_stats, Elm327Stats):
            report.adapter_stats = attrs.asdict(emulator_stats)
    report.samples = soak.samples
    report.samples_out_of_order = soak.samples_out_of_order
    report.log_records = len(log)
    report.anomalies = soak.anomalies
    # The harness's own bookkeeping against the log: every fault it counted happened.
    faults = Counter(r.fault for r in log if r.kind is LogKind.FAULT)
    # A go_silent(0) only ends a silence early (end_silence_on_loss).
    silences = sum(1 for r in log if r.fault is Fault.GO_SILENT and r.details.get("seconds"))
    report.config["log_faults"] = {
        "drop_link": faults[Fault.DROP_LINK],
        "drop_during_setup": faults[Fault.DROP_DURING_SETUP],
        "go_silent": silences,
        "out_of_range": faults[Fault.OUT_OF_RANGE],
        "back_in_range": faults[Fault.BACK_IN_RANGE],
        "corrupt_next": faults[Fault.CORRUPT_NEXT],
        "notification_size": faults[Fault.NOTIFICATION_SIZE],
    }


def _judge(config: SoakConfig, report: SoakReport) -> None:
    s = report.stats
    checks = report.checks
    if not s:  # the run did not get to the end
        checks.append(Check("completed", False, "the run stopped before its end"))
        return
    log_faults = report.config["log_faults"]
    inj = report.injected
    checks.append(
        Check(
            "faults logged as injected",
            log_faults["drop_link"] == inj[DROP] + inj[SETUP]
            and log_faults["drop_during_setup"] == inj[SETUP]
            and log_faults["go_silent"] == inj[SILENCE]
            and log_faults["out_of_range"] == log_faults["back_in_range"] == inj[PAUSE]
            and log_faults["corrupt_next"] == inj[CORRUPT]
            and log_faults["notification_size"] == inj[SIZE],
            f"log {log_faults}, harness {inj}",
        )
    )
    fewest = min(inj[kind] for kind in (*config.step_kinds, SIZE))
    if config.adapter:
        # The adapter's garbage stands in for corrupted frames, if it has any.
        garbled = (report.adapter_stats or {}).get("lines_garbled", 0)
        corrupted = (
            config.quirks is None or config.quirks.garbage == 0 or (garbled >= config.min_per_kind)
        )
        detail = f"fewest {fewest}, lines garbled {garbled}"
    else:
        corrupted = report.corrupted_frames >= config.min_per_kind
        detail = f"fewest {fewest}, corrupted frames {report.corrupted_frames}"
    checks.append(
        Check(
            f"at least {config.min_per_kind} of each kind",
            fewest >= config.min_per_kind and corrupted,
            detail,
        )
    )
    checks.append(
        Check(
            "status transitions: none lost, none extra, none reordered",
            report.statuses_mismatch is None,
            report.statuses_mismatch
            or f"{report.statuses_seen} seen = {report.statuses_expected} logged",
        )
    )
    expected = report.disconnections_expected
    checks.append(
        Check(
            "one DISCONNECTED per injected loss",
            report.disconnected_events == s["disconnections"] == expected,
            f"events {report.disconnected_events}, stats {s['disconnections']}, "
            f"injected {expected}",
        )
    )
    checks.append(
        Check(
            "every reconnection completed",
            s["reconnects"] == s["disconnections"],
            f"reconnects {s['reconnects']}, disconnections {s['disconnections']}",
        )
    )
    if not config.adapter:  # a bus has no events and no CRC (SoakConfig.dongle)
        checks.append(
            Check(
                "cantCharge events as logged",
                report.cant_charge_events == report.cant_charge_expected,
                f"{report.cant_charge_events} seen, {report.cant_charge_expected} logged",
            )
        )
        checks.append(
            Check(
                "CRC errors >= corrupted frames delivered",
                s["crc_errors"] >= report.corrupted_frames,
                f"{s['crc_errors']} CRC errors, {report.corrupted_frames} corrupted frames",
            )
        )
    checks.append(
        Check(
            "samples in order",
            report.samples_out_of_order == 0,
            f"{report.samples_out_of_order} went back",
        )
    )
    growth = [g for g in (report.rss_growth, report.traced_growth) if g is not None]
    checks.append(
        Check(
            "memory growth < 10 MB",
            all(g < MEMORY_LIMIT for g in growth),
            f"RSS {_mb(report.rss_growth)}, traced {_mb(report.traced_growth)}",
        )
    )
    checks.append(
        Check(
            "no unhandled exception or error logged",
            not report.errors_logged,
            "; ".join(report.errors_logged[:5]) or "none",
        )
    )
    checks.append(
        Check(
            "no anomaly (wait bound passed, unexplained loss)",
            not report.anomalies,
            "; ".join(report.anomalies[:5]) or "none",
        )
    )


# --- reporting ----------------------------------------------------------------------------


def _mb(n: int | None, sign: str = "+") -> str:
    return "n/a" if n is None else f"{n / 1024 / 1024:{sign}.2f} MB"


def _rows(r: SoakReport) -> list[tuple[str, str]]:
    s = r.stats or {}
    inj = r.injected
    c = r.config
    adapter = c.get("dongle", "o2x") != "o2x"
    latency = (
        f"{r.status_latency_ms[0]:.0f} / {r.status_latency_ms[1]:.0f} ms"
        if r.status_latency_ms
        else "n/a"
    )
    silence = (
        "until the loss is reported"
        if c["end_silence_on_loss"]
        else f"{c['silence_factor'] * c['loose_connection']:g} s"
    )
    return [
        ("wall time (fault injection)", f"{r.wall_time:.0f} s ({r.injection_time:.0f} s)"),
        ("rounds", str(r.rounds)),
        ("dongle", str(c.get("dongle", "o2x"))),
        ("link drops (drop_link)", str(inj.get(DROP, 0))),
        (
            "drops during set-up (at connect / identity / subscribe / command)",
            f"{inj.get(SETUP, 0)} ("
            + " / ".join(str(r.setup_steps.get(step.value, 0)) for step in SetupStep)
            + ")",
        ),
        (
            f"silences ({silence}, loose_connection {c['loose_connection']:g} s)",
            str(inj.get(SILENCE, 0)),
        ),
        ("advertising pauses (out of range, back)", str(inj.get(PAUSE, 0))),
        ("corrupt_next calls / corrupted frames", f"{inj.get(CORRUPT, 0)} / {r.corrupted_frames}"),
        (
            "ELM327: lines garbled / BUFFER FULLs / commands answered",
            " / ".join(str(a[k]) for k in ("lines_garbled", "buffer_full", "commands"))
            if (a := r.adapter_stats)
            else "n/a",
        ),
        (
            f"notification size changes (sizes covered of 1..{c['mtu'] - 3})",
            f"{inj.get(SIZE, 0)} ({r.sizes_covered})",
        ),
        (
            "phase changes (streaming / link down / into corrupted / flicked back)",
            " / ".join(
                str(r.phase_changes.get(k, 0))
                for k in ("streaming", "link down", "into a corrupted frame", "flicked back")
            ),
        ),
        ("status transitions seen / logged", f"{r.statuses_seen} / {r.statuses_expected}"),
        ("status delivery latency, median / max", latency),
        (
            "DISCONNECTED events / stats.disconnections / injected losses",
            f"{r.disconnected_events} / {s.get('disconnections')} / {r.disconnections_expected}",
        ),
        ("stats.reconnects", str(s.get("reconnects"))),
        (
            "cantCharge events seen / logged",
            f"{r.cant_charge_events} / {r.cant_charge_expected}"
            + (" (the bus logs no events: not checked)" if adapter else ""),
        ),
        (
            "stats.crc_errors / corrupted frames delivered",
            f"{s.get('crc_errors')} / {r.corrupted_frames}",
        ),
        (
            "frames sent / received intact (stats.frames)",
            f"{r.frames_sent} / {s.get('frames')}",
        ),
        (
            "frames cut off by link faults (sent - intact - corrupted)",
            "n/a (the bus goes on while the link is down)"
            if adapter
            else str(r.frames_sent - s.get("frames", 0) - r.corrupted_frames),
        ),
        ("notifications sent", str(r.notifications_sent)),
        (
            "seq gaps / invalid frames / bytes discarded",
            f"{s.get('seq_gaps')} / {s.get('invalid_frames')} / {s.get('bytes_discarded')}",
        ),
        ("samples received (dropped)", f"{r.samples} ({s.get('samples_dropped')})"),
        (
            "memory growth after warm-up: RSS (traced); RSS at warm-up, peak",
            f"{_mb(r.rss_growth)} ({_mb(r.traced_growth)}); "
            f"{_mb(r.rss_baseline, sign='')}, {_mb(r.rss_peak, sign='')}",
        ),
        ("errors logged / warnings logged", f"{len(r.errors_logged)} / {r.warnings_logged}"),
        ("anomalies", str(len(r.anomalies))),
        ("result", "PASS" if r.passed else "FAIL"),
    ]


def format_table(reports: Sequence[SoakReport]) -> str:
    """A Markdown table, one column per run."""
    header = "| | " + " | ".join(r.backend for r in reports) + " |"
    lines = [header, "|---" * (len(reports) + 1) + "|"]
    columns = [_rows(r) for r in reports]
    for i, (label, _) in enumerate(columns[0]):
        lines.append(f"| {label} | " + " | ".join(col[i][1] for col in columns) + " |")
    lines.extend(f"\n{r.backend}: FAILED {failure}" for r in reports for failure in r.failures())
    lines.extend(
        f"\n{r.backend}: warning logged {count} times: {text}"
        for r in reports
        for text, count in r.warnings.items()
    )
    return "\n".join(lines)


# --- the script ---------------------------------------------------------------------------


#: An ELM327 clone's faults for the soak: garbage in one line in twenty, slow answers.
ELM327_FAULTS = Elm327Quirks(garbage=0.05, answer_delay=0.03)


def long_config(minutes: float, seed: int, *, traced: bool, dongle: str = "o2x") -> SoakConfig:
    """The long run: ``minutes`` of faults, at least 50 of each kind per 15 minutes."""
    return SoakConfig(
        duration=minutes * 60,
        min_per_kind=math.ceil(50 * minutes / 15),
        seed=seed,
        warmup=min(60.0, minutes * 60 / 10),
        tracemalloc=traced,
        progress=60.0,
        dongle=dongle,
        quirks=ELM327_FAULTS if dongle == "elm327" else None,
    )


def _run_one(args: argparse.Namespace) -> SoakReport:
    config = long_config(args.minutes, args.seed, traced=args.tracemalloc, dongle=args.dongle)

    async def main() -> SoakReport:
        with anyio.fail_after(config.duration + 600 if config.duration else 600):
            return await run_soak(config)

    return anyio.run(main, backend=args.backend)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="of fault injection")
    parser.add_argument("--backend", choices=("asyncio", "trio", "both"), default="both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dongle",
        choices=("o2x", "elm327", "wican"),
        default="o2x",
        help="the car's dongle: an O2X dongle, or an OBD adapter (elm327 with ELM327_FAULTS)",
    )
    parser.add_argument("--parallel", action="store_true", help="both backends at once")
    parser.add_argument(
        "--tracemalloc",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure traced Python memory (besides RSS)",
    )
    parser.add_argument("--json", type=Path, help="write the report(s) here")
    args = parser.parse_args(argv)
    # Taken before running: the library's files may change while a long run goes on.
    revision = _revision()
    if args.backend != "both":
        report = _run_one(args)
        report.config["revision"] = revision
        reports = [report]
    else:
        reports = _run_children(args)
    revisions = sorted({r.config.get("revision", revision) for r in reports})
    print(f"\no2x {' / '.join(revisions)}, Python {sys.version.split()[0]}\n", flush=True)
    print(format_table(reports), flush=True)
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in reports], indent=1))
    return 0 if reports and all(r.passed for r in reports) else 1


def _revision() -> str:
    """The commit the library was run from, and whether its files had changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "o2x")
    except OSError:
        return "(no git)"
    return f"{head}{' with uncommitted changes in o2x/' if dirty else ''}"


def _run_children(args: argparse.Namespace) -> list[SoakReport]:
    reports: list[SoakReport] = []
    with tempfile.TemporaryDirectory() as tmp:
        children = []
        for backend in ("asyncio", "trio"):
            out = Path(tmp) / f"{backend}.json"
            command = [
                sys.executable,
                __file__,
                "--backend",
                backend,
                "--minutes",
                str(args.minutes),
                "--seed",
                str(args.seed),
                "--dongle",
                args.dongle,
                "--json",
                str(out),
                "--tracemalloc" if args.tracemalloc else "--no-tracemalloc",
            ]
            child = subprocess.Popen(command)
            if not args.parallel:
                child.wait()
            children.append((child, out))
        for child, out in children:
            child.wait()
            if out.exists():
                reports.extend(SoakReport.from_json(d) for d in json.loads(out.read_text()))
            else:
                print(f"a soak run exited with {child.returncode} and no report", flush=True)
                return []
    return reports


if __name__ == "__main__":
    sys.exit(main())
