"""``o2x.discover()``, bleak's platform options, and radios that are not the simulator's.

On the virtual radio, on asyncio and trio; the system's Bluetooth only where this
machine has none (it must say so, in a Python caller's words).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import platform
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZScannerArgs

import o2x
from o2x import BluetoothUnavailable, DiscoveredDongle, O2XVehicle, Timeouts
from o2x.sim import SimulatedVehicle, VirtualRadio
from o2x.vehicle import _bleak_options

pytestmark = pytest.mark.anyio

VIN = "VR1AB12C3D4567890"
OTHER_VIN = "VXKUHZKXZL4123456"
WAIT = 10.0
_NO_SYSTEM_BUS = not any(
    os.path.exists(socket)
    for socket in ("/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket")
)


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as r:
        yield r


async def test_discover_lists_o2x_dongles_and_adapters_strongest_first(
    radio: VirtualRadio,
) -> None:
    dongle = await radio.add(SimulatedVehicle(VIN, rssi=-70))
    adapter = await radio.add(SimulatedVehicle(OTHER_VIN, dongle="elm327", rssi=-50))
    with anyio.fail_after(WAIT):
        found = await o2x.discover(0.5, radio=radio)
    assert [d.address for d in found] == [adapter.address, dongle.address]
    near, far = found
    assert (near.vin, near.kind, near.rssi) == (None, "adapter", -50)  # read on connecting
    assert near.name  # what it advertises as its name
    assert (far.vin, far.kind, far.rssi, far.name) == (VIN, "o2x", -70, "O2X-567890")
    assert far.device.address == dongle.address  # bleak's own, to connect to
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        far.rssi = 0  # type: ignore[misc]


async def test_discover_hearing_nothing_is_an_empty_list(radio: VirtualRadio) -> None:
    with anyio.fail_after(WAIT):
        assert await o2x.discover(0.2, radio=radio) == []


async def test_on_found_tells_what_was_heard_before_a_cancellation(radio: VirtualRadio) -> None:
    sim = await radio.add(SimulatedVehicle(VIN))
    heard: list[DiscoveredDongle] = []
    started = anyio.current_time()
    with anyio.move_on_after(0.5) as scope:
        await o2x.discover(30, radio=radio, on_found=heard.append)
    assert scope.cancelled_caught
    assert anyio.current_time() - started < WAIT
    assert [d.address for d in heard] == [sim.address]  # once: nothing new since
    # The scan was stopped: the radio still scans for the next caller, from scratch.
    with anyio.fail_after(WAIT):
        assert [d.vin for d in await o2x.discover(0.3, radio=radio)] == [VIN]


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf])
async def test_discover_refuses_a_timeout_that_is_no_time_to_listen(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds to listen, more than 0"):
        await o2x.discover(seconds)


@pytest.mark.parametrize("seconds", ["5", None, True])
async def test_discover_refuses_a_timeout_that_is_not_a_number(seconds: Any) -> None:
    with pytest.raises(TypeError, match="timeout is a number of seconds"):
        await o2x.discover(seconds)


@pytest.mark.skipif(not _NO_SYSTEM_BUS, reason="this machine has a D-Bus system bus")
async def test_discover_without_bluetooth_speaks_to_a_python_caller() -> None:
    with anyio.fail_after(WAIT), pytest.raises(BluetoothUnavailable) as caught:
        await o2x.discover(0.2, bluez={"adapter": "hci1"})
    message = str(caught.value)
    assert "Bluetooth is not available" in message
    assert "--" not in message  # no command-line flag for a Python caller
    if platform.system() == "Linux":
        assert "radio=o2x.sim.VirtualRadio()" in message


@pytest.mark.skipif(not _NO_SYSTEM_BUS, reason="this machine has a D-Bus system bus")
async def test_a_vehicle_without_bluetooth_speaks_to_a_python_caller(tmp_path: Path) -> None:
    with anyio.fail_after(WAIT), pytest.raises(BluetoothUnavailable) as caught:
        async with O2XVehicle.first_time(VIN, state_dir=tmp_path, bluez={"adapter": "hci1"}):
            pytest.fail("scanned without Bluetooth")
    assert "--simulate" not in str(caught.value)


# --- bleak's options ------------------------------------------------------------------


def test_bleak_options_go_where_bleak_takes_them() -> None:
    scanner, client = _bleak_options(
        bluez={"adapter": "hci1", "or_patterns": []},
        cb={"use_bdaddr": True},
        winrt={"address_type": "random"},
    )
    assert scanner == {"bluez": {"adapter": "hci1", "or_patterns": []}, "cb": {"use_bdaddr": True}}
    # The car is connected to through the adapter that found it.
    assert client == {"bluez": {"adapter": "hci1"}, "winrt": {"address_type": "random"}}
    # Keywords of bleak's own classes, as installed.
    inspect.signature(BleakScanner).bind(**scanner)
    inspect.signature(BleakClient).bind("AA:BB:CC:DD:EE:FF", **client)
    assert set(client["bluez"]) <= set(BlueZScannerArgs.__annotations__)
    assert _bleak_options() == ({}, {})


@pytest.mark.parametrize("keyword", ["bluez", "cb", "winrt"])
def test_bleak_options_must_be_dictionaries(keyword: str) -> None:
    with pytest.raises(TypeError, match=f"{keyword}= takes a dictionary of bleak's"):
        O2XVehicle.first_time(VIN, **{keyword: "hci1"})


async def test_bleak_options_with_a_radio_are_refused(radio: VirtualRadio) -> None:
    with pytest.raises(ValueError, match="bluez= is an option of the system's Bluetooth"):
        await o2x.discover(0.2, radio=radio, bluez={"adapter": "hci1"})
    with pytest.raises(ValueError, match="bluez= and winrt= are options"):
        O2XVehicle.first_time(VIN, radio=radio, bluez={"adapter": "hci1"}, winrt={})
    with pytest.raises(ValueError, match="cb= is an option"):
        O2XVehicle.previous(radio=radio, cb={"use_bdaddr": True})


# --- an adapter chosen from a scan ---------------------------------------------------------


async def test_first_time_connects_to_the_ble_device_discover_found(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    # A bus that names no VIN: the adapter is used only because it is named.
    sim = await radio.add(SimulatedVehicle(VIN, rate_hz=20, dongle="elm327", broadcast_vin=False))
    with anyio.fail_after(WAIT):
        (found,) = await o2x.discover(0.3, radio=radio)
        assert found.kind == "adapter"
        async with O2XVehicle.first_time(
            VIN,
            radio=radio,
            state_dir=tmp_path,
            adapter=found.device,
            timeouts=Timeouts(loose_connection=0.5),
        ) as car:
            assert car.address == sim.address
            assert (await car.get()).vin == VIN
            assert not car.stats.identity_verified


def test_adapter_is_an_address_or_a_ble_device() -> None:
    with pytest.raises(TypeError, match="adapter= takes the adapter's address, or the bleak"):
        O2XVehicle.first_time(VIN, adapter=42)  # type: ignore[arg-type]


# --- a radio of one's own ------------------------------------------------------------------


@attrs.frozen
class _OwnRadio:
    """A radio written against the public protocol only: bleak's keywords and a loop."""

    inner: VirtualRadio

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.inner.portal.loop

    def scanner_kwargs(self) -> dict[str, Any]:
        return self.inner.scanner_kwargs()

    def client_kwargs(self) -> dict[str, Any]:
        return self.inner.client_kwargs()


async def test_a_radio_needs_only_bleaks_keywords_and_its_loop(
    radio: VirtualRadio, tmp_path: Path
) -> None:
    await radio.add(SimulatedVehicle(VIN, rate_hz=20))
    own: o2x.Radio = _OwnRadio(radio)
    assert not hasattr(own, "portal")
    with anyio.fail_after(WAIT):
        assert [d.vin for d in await o2x.discover(0.3, radio=own)] == [VIN]
        async with O2XVehicle.first_time(VIN, radio=own, state_dir=tmp_path) as car:
            assert (await car.get()).vin == VIN
