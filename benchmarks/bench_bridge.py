"""Trio bridge: two ways for a trio program to use the asyncio-only BLE stack, measured.

(a) ``loop thread``: ``o2x._aio.open_portal()`` under trio, the bridge o2x ships: a
    private asyncio loop in a dedicated thread; calls cross with
    ``run_coroutine_threadsafe``, results and notifications come back with
    ``TrioToken.run_sync_soon`` (notifications batched by ``BleakLink``).
(b) ``trio-asyncio``: ``trio_asyncio.open_loop()``, an asyncio loop running *inside*
    trio, in its thread; calls cross with ``aio_as_trio``. The minimal portal for it
    is :class:`TrioAsyncioPortal` below (this script only). Notifications are
    measured both ways: handed to the sink directly from the asyncio callback
    (``direct``: natural here, as both loops share the thread) and batched through
    ``run_sync_soon`` exactly as in (a) (``batched``).
``asyncio`` is the reference without any bridge (the portal is the caller's loop).

Measured, best of interleaved repeats:

* ``portal.run(coro)`` round trip from trio (p50/p99 of one call, and calls/s);
* notifications: the real ``BleakLink._received`` called on the BLE loop in bursts
  of 64, into a sink that only counts (so this is the bridge's cost alone):
  notifications/s, and CPU time per notification (process, all threads);
* latency of a single notification, BLE loop callback to trio sink (p50/p99);
* CPU burnt while idle (portal open, nothing happening).

Then checks, untimed: whether each bridge runs the whole o2x stack (``O2XVehicle``
on the Bumble-based virtual radio), and bleak's real BlueZ backend as far as it
can go without BlueZ (a private D-Bus daemon with no ``org.bluez`` on it).

Run: ``python benchmarks/bench_bridge.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, TypeVar
from unittest import mock

import anyio
import sniffio
import trio

from o2x._aio import AsyncioPortal, open_portal
from o2x.transport import BleakLink

T = TypeVar("T")
perf_ns = time.perf_counter_ns
BURST = 64


# --- bridge (b): a minimal portal on trio-asyncio -------------------------------------


class TrioAsyncioPortal(AsyncioPortal):
    """The BLE stack on a trio-asyncio loop, in the trio thread.

    ``direct=True``: ``BleakLink`` hands notifications to the sink from inside the
    asyncio callback (``same_loop``); ``False``: batched through ``run_sync_soon``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, direct: bool) -> None:
        token = trio.lowlevel.current_trio_token()
        super().__init__(loop, token.run_sync_soon, same_loop=direct)

    async def run(
        self, fn: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any
    ) -> T:
        import trio_asyncio

        result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
        return result

    def run_sync_soon(self, fn: Callable[..., object], /, *args: object) -> None:
        self.loop.call_soon_threadsafe(fn, *args)


@asynccontextmanager
async def open_trio_asyncio_portal(*, direct: bool = True) -> AsyncIterator[AsyncioPortal]:
    import trio_asyncio

    async with trio_asyncio.open_loop() as loop:
        yield TrioAsyncioPortal(loop, direct=direct)


BRIDGES: dict[str, tuple[str, Callable[[], AbstractAsyncContextManager[AsyncioPortal]]]] = {
    # name: (library to run on, portal factory)
    "asyncio (no bridge)": ("asyncio", open_portal),
    "(a) loop thread": ("trio", open_portal),
    "(b) trio-asyncio direct": ("trio", lambda: open_trio_asyncio_portal(direct=True)),
    "(b) trio-asyncio batched": ("trio", lambda: open_trio_asyncio_portal(direct=False)),
}
# Importing trio_asyncio patches asyncio process-wide (its loop policy and
# asyncio.new_event_loop), which breaks (a): each runs in its own worker process.
WORKER_OF = {bridge: "trio-asyncio" if "(b)" in bridge else "plain" for bridge in BRIDGES}


# --- measurements -------------------------------------------------------------------


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] / 1e3


async def _noop() -> int:
    return 1


async def round_trips(portal: AsyncioPortal, calls: int) -> tuple[float, float, float]:
    """p50 and p99 of one ``portal.run`` round trip (us), and calls per second."""
    times = [0] * calls
    start = perf_ns()
    for i in range(calls):
        t = perf_ns()
        await portal.run(_noop)
        times[i] = perf_ns() - t
    elapsed = (perf_ns() - start) / 1e9
    return percentile(times, 0.5), percentile(times, 0.99), calls / elapsed


class CountingSink:
    """A ``LinkSink`` that only timestamps what arrives, on the caller's side."""

    def __init__(self, n: int) -> None:
        self.t_out = [0] * n
        self.count = 0
        self.target = 0
        self.reached: Callable[[], None] = lambda: None

    def advertisement(self, address: str, vin: str) -> None:
        pass

    def link_lost(self, generation: int) -> None:
        pass

    def notifications(self, generation: int, chunks: list[bytes]) -> None:
        t_out, count, now = self.t_out, self.count, perf_ns()
        for _ in chunks:
            t_out[count] = now
            count += 1
        self.count = count
        if count >= self.target:
            self.reached()


async def notifications(
    portal: AsyncioPortal, n: int, burst: int
) -> tuple[float, float, float, float]:
    """Notifications from BLE-loop callbacks to a trio (or asyncio) sink.

    Returns (per second, CPU us per notification, p50 us, p99 us).
    """
    sink = CountingSink(n)
    link = BleakLink(portal, sink)
    data = bytearray(23)
    t_in = [0] * n
    received = link._received

    async def produce() -> None:
        drained = asyncio.Event()
        sink.reached = lambda: portal.run_sync_soon(drained.set)
        for start in range(0, n, burst):
            end = min(start + burst, n)
            sink.target = end
            drained.clear()
            for i in range(start, end):
                t_in[i] = perf_ns()
                received(0, data)
            await drained.wait()

    cpu = time.process_time()
    await portal.run(produce)
    cpu = time.process_time() - cpu
    assert sink.count == n
    latencies = [sink.t_out[i] - t_in[i] for i in range(n)]
    rate = n / ((sink.t_out[-1] - t_in[0]) / 1e9)
    return rate, cpu / n * 1e6, percentile(latencies, 0.5), percentile(latencies, 0.99)


async def idle_cpu(portal: AsyncioPortal, seconds: float) -> float:
    """CPU milliseconds per second burnt with the portal open and nothing to do."""
    cpu = time.process_time()
    await anyio.sleep(seconds)
    return (time.process_time() - cpu) / seconds * 1e3


def measure(bridge: str, what: str, n: int) -> Any:
    library, factory = BRIDGES[bridge]

    async def main() -> Any:
        async with factory() as portal:
            await portal.run(_noop)  # warm
            if what == "round_trip":
                return await round_trips(portal, n)
            if what == "throughput":
                return await notifications(portal, n, BURST)
            if what == "latency":
                return await notifications(portal, n, 1)
            return await idle_cpu(portal, 0.5)

    return anyio.run(main, backend=library)


# --- checks -------------------------------------------------------------------------


async def o2x_on_virtual_radio(factory: Callable[[], Any], *, fix: bool = False) -> str:
    """Enter an O2XVehicle on the virtual radio (Bumble) through ``factory``'s portal.

    ``fix``: o2x.sim runs BLE code directly when ``asyncio.get_running_loop()`` is
    the portal's loop. Under trio-asyncio that also holds in trio context, where
    asyncio code cannot run; the fix also requires asyncio context.
    """
    from o2x import O2XVehicle
    from o2x.sim import SimulatedVehicle, VirtualRadio

    vin = "VR7ABCDEF12345678"
    on_loop = mock.patch("o2x.sim._portal.on_loop", _on_loop_in_asyncio_context)
    with (
        mock.patch("o2x.sim.radio.open_portal", factory),
        on_loop if fix else contextlib.nullcontext(),
        tempfile.TemporaryDirectory() as state_dir,
    ):
        with anyio.fail_after(20):
            async with VirtualRadio() as radio:
                await radio.add(SimulatedVehicle(vin, rate_hz=50.0))
                async with O2XVehicle.first_time(vin, radio=radio, state_dir=state_dir) as car:
                    count = 0
                    async for _ in car.samples():
                        count += 1
                        if count == 20:
                            break
    return f"OK: 20 samples from a simulated vehicle over Bumble ({car.stats.frames} frames)"


def _on_loop_in_asyncio_context(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return running is loop and sniffio.current_async_library() == "asyncio"


ADAPTER = "/org/bluez/hci0"
DONGLE = "F0:0D:00:00:00:01"
DONGLE_VIN = "VR7ABCDEF12345678"


class FakeBlueZ:
    """Just enough of ``org.bluez`` for bleak's BlueZ backend to scan: one powered
    adapter, which reports one O2X dongle once discovery starts. It runs on its own
    plain asyncio loop in its own thread, whatever the bridge under test."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.loop = asyncio.SelectorEventLoop()  # not the policy's: trio_asyncio patches it
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._bus: Any = None

    def __enter__(self) -> FakeBlueZ:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), self.loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self._bus.disconnect)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    async def _connect(self) -> None:
        from dbus_fast.aio import MessageBus

        self._bus = await MessageBus(bus_address=self.address).connect()
        self._bus.add_message_handler(self._handle)
        await self._bus.request_name("org.bluez")

    def _handle(self, msg: Any) -> Any:
        from dbus_fast import Message, MessageType, Variant

        from o2x.dongle.profile import COMPANY_ID, manufacturer_data_for

        if msg.message_type is not MessageType.METHOD_CALL:
            return None
        if msg.member == "GetManagedObjects":
            adapter = {
                "Address": Variant("s", "00:00:5E:00:53:01"),
                "Powered": Variant("b", True),
                "Discovering": Variant("b", False),
                "Roles": Variant("as", ["central", "peripheral"]),
            }
            body = [{ADAPTER: {"org.bluez.Adapter1": adapter}}]
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", body)
        if msg.member in ("SetDiscoveryFilter", "StopDiscovery"):
            return Message.new_method_return(msg)
        if msg.member == "StartDiscovery":
            device = {
                "Address": Variant("s", DONGLE),
                "AddressType": Variant("s", "public"),
                "Alias": Variant("s", "O2X-345678"),
                "Name": Variant("s", "O2X-345678"),
                "Adapter": Variant("o", ADAPTER),
                "Paired": Variant("b", False),
                "Connected": Variant("b", False),
                "ServicesResolved": Variant("b", False),
                "RSSI": Variant("n", -60),
                "UUIDs": Variant("as", []),
                "ManufacturerData": Variant(
                    "a{qv}", {COMPANY_ID: Variant("ay", manufacturer_data_for(DONGLE_VIN))}
                ),
            }
            path = f"{ADAPTER}/dev_{DONGLE.replace(':', '_')}"
            self.loop.call_soon(
                self._bus.send,
                Message.new_signal(
                    "/",
                    "org.freedesktop.DBus.ObjectManager",
                    "InterfacesAdded",
                    "oa{sa{sv}}",
                    [path, {"org.bluez.Device1": device}],
                ),
            )
            return Message.new_method_return(msg)
        return None


@contextmanager
def private_system_bus() -> Iterator[str | None]:
    """A throw-away D-Bus daemon posing as the system bus."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        yield None
        return
    directory = tempfile.mkdtemp()
    address = f"unix:path={directory}/bus"
    process = subprocess.Popen(
        [daemon, "--session", "--nofork", "--nopidfile", f"--address={address}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(250):
            if os.path.exists(f"{directory}/bus"):
                break
            time.sleep(0.02)
        with mock.patch.dict(os.environ, {"DBUS_SYSTEM_BUS_ADDRESS": address}):
            yield address
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)


async def bluez_scan(factory: Callable[[], Any]) -> str:
    """A scan with bleak's real BlueZ backend (D-Bus, dbus-fast), through the portal,
    against :class:`FakeBlueZ` on a private bus: does the advertisement come back?"""
    from bleak import BleakScanner

    from o2x.dongle.profile import advertised_vin

    with private_system_bus() as address:
        if address is None:
            return "not checked: no dbus-daemon"
        with FakeBlueZ(address):
            async with factory() as portal:
                seen: list[str] = []

                async def scan() -> None:
                    found = asyncio.Event()

                    def detected(device: Any, advertisement: Any) -> None:
                        vin = advertised_vin(advertisement.manufacturer_data)
                        if vin is not None:
                            seen.append(f"{device.address} {vin}")
                            found.set()

                    scanner = BleakScanner(detection_callback=detected)
                    await scanner.start()
                    try:
                        async with asyncio.timeout(5):
                            await found.wait()
                    finally:
                        await scanner.stop()

                with anyio.fail_after(15):
                    await portal.run(scan)
    return f"OK: BleakScanner (BlueZ backend, D-Bus) saw {seen[0]}"


CHECKS: dict[str, Callable[[Callable[[], Any]], Awaitable[str]]] = {
    "o2x on Bumble": o2x_on_virtual_radio,
    "+ on_loop fix": functools.partial(o2x_on_virtual_radio, fix=True),
    "bleak BlueZ": bluez_scan,
}


def check(bridge: str, name: str) -> str:
    library, factory = BRIDGES[bridge]
    check_fn = CHECKS[name]

    async def main() -> str:
        try:
            return await check_fn(factory)
        except Exception as exc:  # the outcome is what is reported
            while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            return f"FAILED: {type(exc).__name__}: {' '.join(str(exc).split())[:90]}"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = anyio.run(main, backend=library)
    notes = sorted({w.category.__name__ for w in caught})
    return outcome + (f" [warnings: {', '.join(notes)}]" if notes else "")


def loop_thread_beside_trio_asyncio() -> str:
    """Does (a) still work in a process that has imported trio_asyncio?"""
    import trio_asyncio  # noqa: F401 - importing it is the point

    async def main() -> str:
        try:
            async with open_portal() as portal:
                await portal.run(_noop)
                return f"OK, but its loop is a {type(portal.loop).__name__}"
        except Exception as exc:
            return f"FAILED: {type(exc).__name__}: {' '.join(str(exc).split())[:90]}"

    return anyio.run(main, backend="trio")


# --- worker processes and the table --------------------------------------------------


def worker() -> None:
    """Serve requests (one JSON list per line on stdin) until stdin closes."""
    for line in sys.stdin:
        request = json.loads(line)
        kind, args = request[0], request[1:]
        if kind == "measure":
            result: Any = measure(*args)
        elif kind == "check":
            result = check(*args)
        else:
            result = loop_thread_beside_trio_asyncio()
        print(json.dumps(result), flush=True)


class Worker:
    def __init__(self) -> None:
        # The checks that fail leave the BLE stack's own complaints on stderr: kept
        # aside, and shown only if the worker dies.
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def ask(self, *request: Any) -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.stderr.seek(0)
            sys.stderr.write(self.stderr.read()[-4000:])
            raise RuntimeError(f"the worker died while running {request}")
        return json.loads(line)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()
        self.stderr.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return 0
    repeats = 1 if args.quick else args.repeats
    calls, n, single = (300, 3_000, 300) if args.quick else (2_000, 30_000, 2_000)

    print("trio bridge for the asyncio-only BLE stack")
    print(
        f"python {sys.version.split()[0]}, trio {version('trio')}, anyio {version('anyio')}, "
        f"trio-asyncio {version('trio-asyncio')}, bleak {version('bleak')}, "
        f"bumble {version('bumble')}; best of {repeats} interleaved repeats"
    )
    have_trio_asyncio = importlib.util.find_spec("trio_asyncio") is not None
    bridges = [b for b in BRIDGES if have_trio_asyncio or WORKER_OF[b] == "plain"]
    if not have_trio_asyncio:
        print("trio-asyncio is not installed (pip install trio-asyncio): (b) is left out")
    workers = {"plain": Worker(), "trio-asyncio": Worker()}
    beside = "not checked: trio-asyncio is not installed"
    try:
        results: dict[tuple[str, str], list[Any]] = {}
        for _ in range(repeats):
            for bridge in bridges:
                for what, size in (
                    ("round_trip", calls),
                    ("throughput", n),
                    ("latency", single),
                    ("idle", 0),
                ):
                    result = workers[WORKER_OF[bridge]].ask("measure", bridge, what, size)
                    results.setdefault((bridge, what), []).append(result)
        checks = {
            (bridge, name): workers[WORKER_OF[bridge]].ask("check", bridge, name)
            for bridge in bridges
            if not bridge.endswith("batched")
            for name in CHECKS
            if "fix" not in name or "(b)" in bridge
        }
        if have_trio_asyncio:
            beside = workers["trio-asyncio"].ask("beside")
    finally:
        for w in workers.values():
            w.close()

    print()
    print(
        f"{'':<26}{'portal.run round trip':>28}   {'notifications, bursts of 64':>25}"
        f"   {'one notification':>16}{'idle':>9}"
    )
    print(
        f"{'bridge':<26}{'p50 us':>9}{'p99 us':>9}{'calls/s':>10}   {'per s':>12}{'CPU us':>9}"
        f"{'':>4}   {'p50 us':>8}{'p99 us':>8}{'CPU ms/s':>9}"
    )
    for bridge in bridges:
        rt = results[bridge, "round_trip"]
        tp = results[bridge, "throughput"]
        lat = results[bridge, "latency"]
        idle = results[bridge, "idle"]
        print(
            f"{bridge:<26}{min(r[0] for r in rt):>9.1f}{min(r[1] for r in rt):>9.1f}"
            f"{max(r[2] for r in rt):>10,.0f}   {max(r[0] for r in tp):>12,.0f}"
            f"{min(r[1] for r in tp):>9.2f}{'':>4}   {min(r[2] for r in lat):>8.1f}"
            f"{min(r[3] for r in lat):>8.1f}{min(idle):>9.2f}"
        )
    if repeats > 1:
        spread = max(
            statistics.pstdev(r[0] for r in results[b, "throughput"])
            / statistics.mean(r[0] for r in results[b, "throughput"])
            for b in bridges
        )
        print(f"(largest run-to-run spread of notifications/s: {spread:.0%})")
    print(
        "round trip: await portal.run(<coroutine returning at once>) from the caller; "
        "notifications: BleakLink._received on the BLE loop -> a sink that counts; "
        "CPU: process time, all threads."
    )

    print()
    print("checks (untimed)")
    for (bridge, name), outcome in checks.items():
        print(f"  {bridge:<26}{name + ':':<16}{outcome}")
    print(f"  {'(a) beside trio_asyncio':<26}{'import:':<16}{beside}")
    return 0


def version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(distribution)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
