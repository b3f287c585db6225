"""Hostile BLE OBD adapters, end to end over the virtual radio on asyncio and trio.

Each hostile adapter is an emulated ELM327 with one of the hostile quirks of
:class:`~o2x.sim.adapters.Elm327Quirks`, in a simulated car's OBD port: random bytes
for ever instead of answers (``endless_garbage``), a monitor line that never ends
(``endless_line``), a monitor that shows many times what the link carries
(``flood``), an adapter that never prompts (``never_prompts``), and a car whose bus
broadcasts another VIN than its own (``SimulatedVehicle(bus_vin=...)``). Each is
either rejected (``first_time`` fails with an error that says what is wrong) or
survived (readings keep coming), with the library's memory bounded while it talks
to it; none keeps the real car from being found when it is in range too.

Memory is measured as in tests/test_hostile.py: tracemalloc, the simulated radio and
car left out, between two moments while the hostile adapter streams (or between two
of its rejections), with far more hostile bytes between them than the bound.

The first tests drive the ELM327 session against the emulator without I/O, on a
clock that is a number.
"""

from __future__ import annotations

import gc
import inspect
import random
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from memory_filters import NOT_THE_LIBRARY

import o2x.machine
import o2x.transport
from o2x import ConnectionFailed, O2XError, O2XVehicle, ScanTimeout, Timeouts
from o2x.obd.actions import Send, SessionFailed, SessionState
from o2x.obd.elm327 import Elm327Session
from o2x.sim import SimulatedVehicle, VirtualRadio
from o2x.sim.adapters import Elm327Emulator, Elm327Quirks
from o2x.sim.can import ami_frames, vin_frames
from o2x.sim.model import VehicleModel
from o2x.transport import BleakLink

pytestmark = pytest.mark.anyio

VIN = "VR1AB12C3D4567890"
OTHER_VIN = "VXKUHZKXZL4123456"
WAIT = 20.0
#: A link far faster than BLE's best (about 2.7 kB/s), so that a test sends many times
#: the memory bound in a second or two; with notifications of 200 bytes (MTU 247).
FAST = 100_000.0
FAST_NOTIFICATIONS = 200


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio(mtu=247) as r:
        yield r


def _hostile(
    vin: str = VIN, *, fast: bool = False, bus_vin: str | None = None, **quirks: Any
) -> SimulatedVehicle:
    """A car whose OBD port holds an ELM327 clone with the hostile ``quirks``, and whose
    bus broadcasts ``bus_vin`` (by default its own VIN)."""
    if fast:
        quirks["throughput"] = FAST
    sim = SimulatedVehicle(
        vin, rate_hz=10, dongle="elm327", quirks=Elm327Quirks(**quirks), bus_vin=bus_vin
    )
    if fast:
        assert sim.adapter is not None
        sim.adapter.notification_size = FAST_NOTIFICATIONS
    return sim


def _emulator(sim: SimulatedVehicle) -> Elm327Emulator:
    assert sim.adapter is not None
    emulator = sim.adapter.emulator
    assert isinstance(emulator, Elm327Emulator)
    return emulator


# --- the session against the emulator, without I/O -------------------------------------


@attrs.frozen
class _Run:
    session: Elm327Session
    #: Whether the session got to monitoring.
    monitored: bool
    #: Why it failed, if it did.
    error: str | None


def _run_session(quirks: Elm327Quirks, seed: int, seconds: float) -> _Run:
    """An Elm327Session set up and monitoring a car at 10 Hz through the emulator, for
    ``seconds`` of a clock that is a number, or until it fails."""
    adapter = Elm327Emulator(quirks=quirks, seed=seed)
    session = Elm327Session()
    model = VehicleModel(seed=1)
    now = 0.0
    monitored = False
    error: str | None = None

    def carry_out(actions: list[Any]) -> None:
        nonlocal error
        for action in actions:
            if isinstance(action, Send):
                adapter.write(action.data, now)
            elif isinstance(action, SessionFailed):
                error = str(action.error)

    carry_out(session.start(now))
    step = 0
    while now < seconds and session.state is not SessionState.FAILED:
        step += 1
        now = step * 0.005  # a notification's worth of link time
        if step % 20 == 0:
            frames = ami_frames(model) + (vin_frames(VIN) if step % 200 == 0 else [])
            for can_id, data in frames:
                adapter.bus_frame(can_id, data, now)
        out = adapter.read(now)
        for start in range(0, len(out), 20):
            carry_out(session.received(out[start : start + 20], now))
        if now >= session.deadline:
            carry_out(session.tick(now))
        monitored = monitored or session.state is SessionState.MONITORING
    return _Run(session, monitored, error)


def test_garbage_in_monitor_lines_never_ends_the_session() -> None:
    # The clone quirk of test_over_adapters.py::test_clone_quirks_are_survived: 1-3 junk
    # bytes in one line in twenty, NUL or with the high bit set.
    quirks = Elm327Quirks(garbage=0.05, answer_delay=0.03)
    runs = [_run_session(quirks, seed, seconds=30.0) for seed in range(8)]
    assert [run.error for run in runs if run.monitored and run.error] == []


def test_the_same_garbage_without_prompt_like_bytes_is_survived() -> None:
    # The control of the test above: what ends those sessions is the prompt-like bytes.
    # A garbled OK in the set-up fails it, quoting it (the vehicle connects again).
    quirks = Elm327Quirks(garbage=0.05, answer_delay=0.03, garbage_prompts=False)
    runs = [_run_session(quirks, seed, seconds=30.0) for seed in range(8)]
    for run in runs:
        if run.monitored:
            assert run.error is None
            assert run.session.parser.stats.frames > 1500  # 30 s of the car's 60 a second
        else:
            assert run.error is not None
            assert "instead of 'OK'" in run.error
    assert sum(run.monitored for run in runs) >= 4


# --- memory -------------------------------------------------------------------------------


def _line_of(function: Callable[..., object], text: str) -> int:
    """The number of the first line of ``function`` that holds ``text``."""
    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(lines) if text in line)


# The simulated radio and the hostile adapter live in the process: their allocations
# (Bumble's queues, the emulator's output) are not the library's (memory_filters).
_NOT_THE_LIBRARY = [
    *NOT_THE_LIBRARY,
    # The emulator's random bytes, made in random.py's own frames (on the radio's
    # thread, under way at either moment); the library draws no random number.
    tracemalloc.Filter(False, random.__file__),
    # The notifications on their way from the radio's thread to trio's: a queue
    # bounded by its length (transport._MAX_PENDING), whose fill at either moment
    # depends on how far behind the trio thread happens to be, not on what it keeps.
    tracemalloc.Filter(
        False, o2x.transport.__file__, lineno=_line_of(BleakLink._received, "append")
    ),
]
#: Bytes the library may hold more at the second moment than at the first.
MAX_GROWTH = 32 * 1024
#: Hostile bytes between the two moments: a leak of a fraction of them would show.
VOLUME = 128 * 1024


def _snapshot() -> tracemalloc.Snapshot:
    gc.collect()  # garbage in reference cycles is not memory held
    return tracemalloc.take_snapshot().filter_traces(_NOT_THE_LIBRARY)


def _growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> tuple[int, list[str]]:
    stats = after.compare_to(before, "lineno")
    return sum(stat.size_diff for stat in stats), [str(stat) for stat in stats[:5]]


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition``, which the radio's thread changes (polled)."""
    with anyio.move_on_after(WAIT) as waited:
        while not condition():  # noqa: ASYNC110 - nothing to wait on across threads
            await anyio.sleep(0.01)
    if waited.cancelled_caught:
        pytest.fail(f"no {what} within {WAIT:g} s")


def _sent(sim: SimulatedVehicle) -> int:
    """Bytes the hostile adapter has sent so far (notified, while a central listens)."""
    return _emulator(sim).stats.bytes_queued


async def _growth_while_streaming(sim: SimulatedVehicle, same_link: Callable[[], bool]) -> int:
    """Library memory growth between two moments VOLUME hostile bytes apart, on one link
    (``same_link`` says it stayed up: all that was sent reached the library)."""
    tracemalloc.start()
    try:
        mark = _sent(sim)
        await _until(lambda: _sent(sim) >= mark + 16 * 1024, "stream under way")
        before = _snapshot()
        mark = _sent(sim)
        await _until(lambda: _sent(sim) >= mark + VOLUME, "hostile bytes")
        after = _snapshot()
        assert same_link()
    finally:
        tracemalloc.stop()
    growth, largest = _growth(before, after)
    assert growth < MAX_GROWTH, largest
    return growth


# --- rejected -------------------------------------------------------------------------------


def _first_time(radio: VirtualRadio, tmp_path: Path, **timeouts: float) -> O2XVehicle:
    return O2XVehicle.first_time(
        VIN, radio=radio, state_dir=tmp_path, timeouts=Timeouts(**timeouts)
    )


async def _rejected(vehicle: O2XVehicle) -> O2XError:
    with anyio.fail_after(WAIT), pytest.raises(O2XError) as raised:
        async with vehicle:
            pytest.fail("entered a hostile adapter as the car")
    return raised.value


async def test_endless_garbage_is_rejected_and_each_rejection_holds_nothing(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    sim = await radio.add(_hostile(endless_garbage=True))
    vehicle = _first_time(radio, tmp_path, scan=4)
    growth: list[int] = []

    async def rejections() -> None:
        # Memory after the first rejection and after the third (0.5 s and 1 s of back-off).
        tracemalloc.start()
        try:
            for attempt in range(3):
                await sim.wait_subscribed()
                await sim.wait_disconnected()
                if attempt == 0:
                    before = _snapshot()
            growth.append(_growth(before, _snapshot())[0])
        finally:
            tracemalloc.stop()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(rejections)
            error = await _rejected(vehicle)
    assert isinstance(error, ScanTimeout)
    # What it said, quoted, and to which command: not an ELM327 that works.
    assert "the OBD adapter answered" in str(error)
    assert "instead of 'OK'" in str(error)
    assert _emulator(sim).stats.input_dropped > 3 * len(b"ATZ\r")  # three sessions tried
    assert growth
    assert growth[0] < MAX_GROWTH


async def test_a_line_that_never_ends_is_rejected_with_memory_bounded(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    sim = await radio.add(_hostile(endless_line=True, fast=True))
    # loose_connection is how long the monitor is watched for the car's VIN: 3 s.
    vehicle = _first_time(radio, tmp_path, scan=3.5, loose_connection=3)
    assert sim.adapter is not None
    written = 0

    def same_link() -> bool:
        return sim.subscribed and sim.adapter is not None and sim.adapter.bytes_written == written

    async def measure() -> None:
        nonlocal written
        await sim.wait_subscribed()
        await _until(lambda: _emulator(sim).monitoring, "the monitor")
        written = sim.adapter.bytes_written if sim.adapter is not None else 0
        await _growth_while_streaming(sim, same_link)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(measure)
            error = await _rejected(vehicle)
    assert isinstance(error, ScanTimeout)
    assert f"the OBD adapter at {sim.address} shows no frame of a car's bus" in str(error)


async def test_an_adapter_that_never_prompts_is_rejected(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    await radio.add(_hostile(never_prompts=True))
    # The session gives ATZ 5 s for its prompt: a scan shorter than that ends before any
    # attempt has failed, and says nothing of the adapter.
    error = await _rejected(_first_time(radio, tmp_path, scan=5.5))
    assert isinstance(error, ScanTimeout)
    assert "the OBD adapter gave no prompt within 5 s of ATZ" in str(error)
    assert "ELM327-compatible" in str(error)


async def test_a_car_whose_bus_broadcasts_another_vin_is_rejected_naming_it(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    sim = await radio.add(_hostile(bus_vin=OTHER_VIN))
    error = await _rejected(_first_time(radio, tmp_path, scan=2.5))
    assert isinstance(error, ScanTimeout)
    assert f"{sim.address} reads {OTHER_VIN}" in str(error)
    assert "other cars'" in str(error)


async def test_a_bus_that_broadcasts_the_vin_looked_for_is_taken_for_the_car(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    # The limit of what an adapter can prove: the VIN on the bus is the only identity
    # it has. A car spoofing the VIN looked for is that car, as far as anyone can tell.
    sim = await radio.add(_hostile(OTHER_VIN, bus_vin=VIN))
    with anyio.fail_after(WAIT):
        async with _first_time(radio, tmp_path) as car:
            assert car.address == sim.address
            assert (await car.get()).vin == VIN
            assert car.stats.identity_verified


# --- survived ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flood", "fast"),
    [(500.0, False), (5_000.0, True)],
    ids=["4x what BLE carries", "5,000 frames a second on a fast link"],
)
async def test_a_flooding_monitor_is_survived_with_memory_bounded(
    radio: VirtualRadio, tmp_path: Path, flood: float, fast: bool
) -> None:
    sim = await radio.add(_hostile(flood=flood, fast=fast))
    with anyio.fail_after(WAIT):
        async with _first_time(radio, tmp_path) as car:
            assert car.stats.identity_verified  # the VIN got through the flood
            readings = 0

            async def read() -> None:
                nonlocal readings
                async for info in car.samples():
                    assert info.data.battery_soc is not None
                    readings += 1

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await _until(lambda: readings >= 10, "readings")
                if fast:
                    await _growth_while_streaming(sim, lambda: car.stats.disconnections == 0)
                mark = readings
                await _until(lambda: readings >= mark + 10, "more readings")  # they keep coming
                tg.cancel_scope.cancel()
            assert car.stats.disconnections == 0
    stats = _emulator(sim).stats
    if not fast:
        assert stats.buffer_full >= 1  # it overflowed the adapter, and monitoring went on
    assert stats.frames_flooded > 3 * stats.frames_shown  # mostly flood


# --- next to the real car -----------------------------------------------------------------

NEIGHBOURS = {
    "endless garbage": {"endless_garbage": True},
    "a line that never ends": {"endless_line": True},
    "a flood": {"flood": 500.0},
    "never prompts": {"never_prompts": True},
    "a spoofed VIN": {"bus_vin": "VF7ABCDEFGH123456"},
}


@pytest.mark.parametrize("quirks", NEIGHBOURS.values(), ids=NEIGHBOURS.keys())
async def test_a_hostile_adapter_does_not_keep_the_real_car_from_being_found(
    radio: VirtualRadio, tmp_path: Path, quirks: dict[str, Any]
) -> None:
    hostile = await radio.add(_hostile(OTHER_VIN, **quirks))
    found = anyio.Event()
    address = ""

    async def first_time() -> None:
        nonlocal address
        async with _first_time(radio, tmp_path, loose_connection=1) as car:
            assert car.address is not None
            address = car.address
            assert (await car.get()).vin == VIN
            found.set()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_time)
            await hostile.wait_subscribed()  # the library is at the hostile one first
            real = await radio.add(SimulatedVehicle(VIN, rate_hz=10, dongle="elm327"))
            await found.wait()
    assert address == real.address != hostile.address


# --- time limits and the identity rule -----------------------------------------------------


async def test_first_time_gives_up_when_its_scan_timeout_says_even_mid_set_up(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    await radio.add(_hostile(never_prompts=True))
    started = anyio.current_time()
    error = await _rejected(_first_time(radio, tmp_path, scan=2))
    assert isinstance(error, ScanTimeout | ConnectionFailed)
    # Not the session's 5 s reset timeout on top of the scan's 2 s: the set-up is cut.
    assert anyio.current_time() - started < 2 + 3


async def test_an_adapter_that_shows_no_frame_is_never_entered_as_the_car(
    radio: VirtualRadio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the defaults (loose_connection 5 s, SURVEY 5 s) the first connection's wait
    # for the VIN ends as the survey does; here both are shorter.
    monkeypatch.setattr(o2x.machine, "SURVEY", 1.0)
    await radio.add(_hostile(endless_line=True))
    error = await _rejected(_first_time(radio, tmp_path, scan=3, loose_connection=1.5))
    assert isinstance(error, ScanTimeout)
    assert "shows no frame of a car's bus" in str(error)
    assert not (tmp_path / "vehicle.json").exists()
