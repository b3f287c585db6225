"""Benchmark the virtual radio: notification throughput and scan-to-first-frame latency.

Everything goes through bleak's public classes and the Bumble stack, as in the
tests; the numbers say how much simulated traffic a test or a demo can expect.

    python benchmarks/bench_radio.py [--seconds 2] [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import trio
from bleak import BleakClient, BleakScanner

from o2x.dongle.frames import FrameDecoder
from o2x.dongle.profile import COMPANY_ID, TELEMETRY_UUID
from o2x.sim import SimulatedVehicle, VirtualRadio

VIN = "VR7ABCDEF12345678"
BATCH = 50  # frames sent back to back before waiting for them to arrive


async def throughput(size: int | None, mtu: int, seconds: float) -> tuple[float, float, float]:
    """Frames, notifications and bytes per second for one notification size."""
    async with VirtualRadio(mtu=mtu) as radio:
        # A slow ticker: the frames measured are the ones pushed with set().
        vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=0.5, flush_timeout=0.0))
        await vehicle.set_notification_size(size)
        decoder = FrameDecoder()
        received = {"frames": 0, "notifications": 0, "bytes": 0}
        arrived = asyncio.Event()
        target = 0

        def on_notify(_sender: object, data: bytearray) -> None:
            received["notifications"] += 1
            received["bytes"] += len(data)
            received["frames"] += len(decoder.feed(data))
            if received["frames"] >= target:
                arrived.set()

        async with BleakClient(vehicle.address, **radio.client_kwargs()) as client:
            await client.start_notify(TELEMETRY_UUID, on_notify)
            target = 1
            await arrived.wait()  # the frame sent on subscription
            for key in received:
                received[key] = 0
            started = time.perf_counter()
            soc = 0
            while time.perf_counter() - started < seconds:
                arrived.clear()
                target = received["frames"] + BATCH
                for _ in range(BATCH):
                    soc = (soc + 1) % 101
                    await vehicle.set(battery_soc=soc)
                await asyncio.wait_for(arrived.wait(), 10)
            elapsed = time.perf_counter() - started
        if decoder.stats.crc_errors:
            raise RuntimeError("frames were damaged in transit")
    return (
        received["frames"] / elapsed,
        received["notifications"] / elapsed,
        received["bytes"] / elapsed,
    )


async def first_frame_latency(runs: int) -> dict[str, list[float]]:
    """Seconds from starting a scan to the first decoded INFO frame, by stage."""
    stages: dict[str, list[float]] = {"scan": [], "connect": [], "first frame": [], "total": []}
    async with VirtualRadio() as radio:
        await radio.add(SimulatedVehicle(VIN))
        for _ in range(runs):
            decoder = FrameDecoder()
            got_frame = asyncio.Event()

            def on_notify(
                _sender: object,
                data: bytearray,
                decoder: FrameDecoder = decoder,
                got: asyncio.Event = got_frame,
            ) -> None:
                if decoder.feed(data):
                    got.set()

            t0 = time.perf_counter()
            device = await BleakScanner.find_device_by_filter(
                lambda _d, ad: ad.manufacturer_data.get(COMPANY_ID, b"")[1:] == VIN.encode(),
                timeout=5,
                **radio.scanner_kwargs(),
            )
            assert device is not None
            t1 = time.perf_counter()
            async with BleakClient(device, **radio.client_kwargs()) as client:
                t2 = time.perf_counter()
                await client.start_notify(TELEMETRY_UUID, on_notify)
                await asyncio.wait_for(got_frame.wait(), 5)
                t3 = time.perf_counter()
            stages["scan"].append(t1 - t0)
            stages["connect"].append(t2 - t1)
            stages["first frame"].append(t3 - t2)
            stages["total"].append(t3 - t0)
    return stages


def control_call_cost(calls: int) -> dict[str, float]:
    """Microseconds per ``await vehicle.set()`` from asyncio (same loop) and trio (portal)."""

    async def measure() -> float:
        async with VirtualRadio() as radio:
            vehicle = await radio.add(SimulatedVehicle(VIN, rate_hz=1))
            started = time.perf_counter()
            for i in range(calls):
                await vehicle.set(battery_soc=i % 101)
            return (time.perf_counter() - started) / calls * 1e6

    return {"asyncio": asyncio.run(measure()), "trio": trio.run(measure)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput row")
    parser.add_argument("--runs", type=int, default=10, help="scan-to-first-frame runs")
    parser.add_argument("--calls", type=int, default=2000, help="control calls timed")
    args = parser.parse_args()

    print("Notification throughput (asyncio, bleak -> Bumble central <- Bumble peripheral)")
    print(f"{'MTU':>5} {'bytes/notif':>12} {'frames/s':>10} {'notifs/s':>10} {'KiB/s':>8}")
    for mtu, size, label in ((247, None, "244"), (23, None, "20"), (247, 7, "7")):
        frames, notifications, rate = asyncio.run(throughput(size, mtu, args.seconds))
        print(f"{mtu:>5} {label:>12} {frames:>10.0f} {notifications:>10.0f} {rate / 1024:>8.1f}")

    print()
    print(f"Scan to first frame, {args.runs} runs (ms)")
    print(f"{'stage':<12} {'min':>8} {'median':>8} {'max':>8}")
    for stage, values in asyncio.run(first_frame_latency(args.runs)).items():
        ms = [v * 1000 for v in values]
        print(f"{stage:<12} {min(ms):>8.1f} {statistics.median(ms):>8.1f} {max(ms):>8.1f}")

    print()
    print(f"Cost of one 'await vehicle.set()' ({args.calls} calls)")
    for library, micros in control_call_cost(args.calls).items():
        print(f"{library:<12} {micros:>8.1f} us")


if __name__ == "__main__":
    main()
