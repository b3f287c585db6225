"""The GATT layouts of BLE OBD adapters: recognition in a scan, choice once connected.

The UUIDs are written out here as the sources give them (the reference table of
``docs/obd.md``), not taken from ``o2x.obd.layouts``, so a typo there fails here.
"""

from __future__ import annotations

import pytest

from o2x.obd.layouts import LAYOUTS, Protocol, choose_layout, looks_like_adapter


def u16(short: str) -> str:
    return f"0000{short.lower()}-0000-1000-8000-00805f9b34fb"


FFF0 = {u16("FFF0"): {u16("FFF1"), u16("FFF2")}}
FFE0_SHARED = {u16("FFE0"): {u16("FFE1")}}
FFE0_SPLIT = {u16("FFE0"): {u16("FFE1"), u16("FFE2")}}
VGATE = {
    "E7810A71-73AE-499D-8C15-FAA9AEF0C3F2": {"BEF8D6C9-9C21-4C9E-B632-BD58C1009F9F"},
}
NORDIC = {
    "6E400001-B5A3-F393-E0A9-E50E24DCCA9E": {
        "6E400002-B5A3-F393-E0A9-E50E24DCCA9E",
        "6E400003-B5A3-F393-E0A9-E50E24DCCA9E",
    }
}
WICAN = {u16("FEE0"): {u16("FEE1"), u16("FEE3")}}
GENERIC_ACCESS = {u16("1800"): {u16("2A00")}}


@pytest.mark.parametrize(
    ("services", "name", "model", "layout", "notify", "write", "protocol"),
    [
        (FFF0, None, None, "fff0", u16("FFF1"), u16("FFF2"), Protocol.ELM327),
        (FFE0_SHARED, "OBDBLE", None, "hm10", u16("FFE1"), u16("FFE1"), Protocol.ELM327),
        (FFE0_SPLIT, None, None, "ffe0-ffe2", u16("FFE1"), u16("FFE2"), Protocol.ELM327),
        (
            VGATE,
            "IOS-Vlink",
            None,
            "vgate",
            "bef8d6c9-9c21-4c9e-b632-bd58c1009f9f",
            "bef8d6c9-9c21-4c9e-b632-bd58c1009f9f",
            Protocol.ELM327,
        ),
        (
            NORDIC,
            None,
            None,
            "nordic-uart",
            "6e400003-b5a3-f393-e0a9-e50e24dcca9e",  # TX: the adapter notifies
            "6e400002-b5a3-f393-e0a9-e50e24dcca9e",  # RX: the host writes
            Protocol.ELM327,
        ),
        (WICAN, "WiC_a1b2c3d4e5f6", None, "wican", u16("FEE1"), u16("FEE1"), Protocol.SLCAN),
        # The WiCAN Pro's FFF0 is the clones' FFF0: told apart by its model, or name.
        (FFF0, None, "WiCAN-PRO", "wican-pro", u16("FFF1"), u16("FFF2"), Protocol.SLCAN),
        (FFF0, "WiC_a1b2c3d4e5f6", None, "wican-pro", u16("FFF1"), u16("FFF2"), Protocol.SLCAN),
        (FFF0, "WiC_a1b2c3d4e5f6", "OBDII", "fff0", u16("FFF1"), u16("FFF2"), Protocol.ELM327),
    ],
)
def test_the_layout_is_chosen_from_the_services(  # noqa: PLR0917 - one per column
    services: dict[str, set[str]],
    name: str | None,
    model: str | None,
    layout: str,
    notify: str,
    write: str,
    protocol: Protocol,
) -> None:
    chosen = choose_layout({**GENERIC_ACCESS, **services}, local_name=name, model=model)
    assert chosen is not None
    assert (chosen.name, chosen.notify, chosen.write, chosen.protocol) == (
        layout,
        notify,
        write,
        protocol,
    )


def test_a_service_without_its_characteristics_is_no_layout() -> None:
    assert choose_layout({u16("FFF0"): {u16("FFF1")}}) is None  # no write characteristic
    assert choose_layout(GENERIC_ACCESS) is None
    assert choose_layout({}) is None


def test_only_the_wican_layouts_ask_for_a_passkey() -> None:
    assert {layout.name for layout in LAYOUTS if layout.passkey} == {"wican", "wican-pro"}


def test_every_layout_names_its_source() -> None:
    for layout in LAYOUTS:
        assert layout.source, layout.name


@pytest.mark.parametrize(
    ("services", "name", "expected"),
    [
        ([u16("FFF0")], None, True),
        ([u16("FFE0")], None, True),
        ([u16("FEE0")], None, True),
        ([u16("18F0")], None, True),  # the Vgate iCar2's advertised service
        (["6E400001-B5A3-F393-E0A9-E50E24DCCA9E"], None, True),
        ([], "WiC_0123456789ab", True),
        ([], "OBDBLE", True),
        ([], "IOS-Vlink", True),
        ([], "OBDII", True),
        ([u16("180F")], "Heart rate", False),
        ([], None, False),
        ([], "", False),
    ],
)
def test_looks_like_adapter(services: list[str], name: str | None, expected: bool) -> None:
    assert looks_like_adapter(services, name) is expected
