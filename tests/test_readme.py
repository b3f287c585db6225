"""The README's library example runs as written, on asyncio and on trio."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

from o2x._state import RememberedVehicle, load, save

README = Path(__file__).resolve().parent.parent / "README.md"


def _example(heading: str) -> str:
    """The first Python block after ``heading`` in the README."""
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"the README lost its example under {heading!r}"
    return match.group(1)


def _run_example(heading: str, backend: str, limit: float) -> None:
    """Run the example under ``heading`` as written, its ``anyio.run`` on ``backend``."""
    code = _example(heading)
    runner = "anyio.run(main)  # or"
    assert runner in code
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code.replace(runner, "pass  #"), str(README), "exec"), namespace)
    main = namespace["main"]
    assert callable(main)

    async def bounded() -> None:
        with anyio.fail_after(limit):  # a broken example fails instead of hanging
            await main()

    anyio.run(bounded, backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_example_runs(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("O2X_STATE_DIR", str(tmp_path))
    # A machine that remembers a real car: the simulated run must leave it so.
    real = tmp_path / "vehicle.json"
    save(real, RememberedVehicle("VXKUHZKXZL4123456", "C1:11:11:11:11:11"))
    before = real.read_bytes()
    _run_example("## Using the library", backend, 60)
    out = capsys.readouterr().out
    statuses = re.findall(r"^status: (\w+)", out, re.MULTILINE)
    assert len(statuses) == 4
    assert {"parked", "driving"} <= set(statuses)
    assert len(re.findall(r"^sample: ", out, re.MULTILINE)) == 5
    assert re.search(r"^battery: \d+ %$", out, re.MULTILINE)
    assert "VehicleStats(" in out
    assert real.read_bytes() == before
    simulated = load(tmp_path / "simulated" / "vehicle.json")
    assert simulated is not None
    assert simulated.vin == "VR1AB12C3D4567890"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_can_example_runs(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    _run_example("## Reading the car's own CAN bus", backend, 30)
    out = capsys.readouterr().out
    statuses = re.findall(r"^status: (\w+)", out, re.MULTILINE)
    assert statuses[0] == "parked"
    assert statuses[-1] == "driving"
    assert "soc: 80 %" in out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_adapter_example_runs(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("O2X_STATE_DIR", str(tmp_path))
    _run_example("## Reading the car through a BLE OBD adapter", backend, 30)
    assert not (tmp_path / "vehicle.json").exists()  # the simulated car is remembered apart
    simulated = load(tmp_path / "simulated" / "vehicle.json")
    assert simulated is not None
    assert simulated.dongle == "adapter"
    out = capsys.readouterr().out
    assert re.search(r"^adapter: [0-9A-F:]{17} verified: True$", out, re.MULTILINE)
    assert "status: parked soc: 80 %" in out
    assert re.search(r"^pack: \d+\.\d+ V -?\d+\.\d A$", out, re.MULTILINE)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_discover_example_runs(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    _run_example("### What is in range, and which Bluetooth adapter", backend, 30)
    lines = capsys.readouterr().out.splitlines()
    kinds = sorted(line.split()[:2] for line in lines)
    assert kinds == [["adapter", "None"], ["o2x", "VR1AB12C3D4567890"]]
