"""Every Python block of the README runs as written (the library examples on asyncio
and on trio), and the shell completion it documents works."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from o2x._state import RememberedVehicle, load, save

README = Path(__file__).resolve().parent.parent / "README.md"
#: The examples that run a session (``anyio.run(main)``), each run below by a test of
#: its own, on both backends and with checks of what it prints.
SESSION_EXAMPLES = (
    "## Using the library",
    "## Reading the car's own CAN bus",
    "## Reading the car through a BLE OBD adapter",
)
#: A block that cannot run as written says why, on the line before it.
NOT_RUN = re.compile(r"<!-- not run: (?P<why>[^>]+) -->\n$")


def _python_blocks() -> list[tuple[str, str | None, str]]:
    """Every Python block of the README: the heading it is under, why it is not run
    (``None``: it is run), its code."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        before = text[: match.start()]
        headings = re.findall(r"^## .*$", before, re.MULTILINE)
        mark = NOT_RUN.search(before)
        blocks.append((headings[-1] if headings else "", mark and mark["why"], match.group(1)))
    return blocks


@pytest.mark.parametrize(
    ("heading", "why", "code"),
    [
        pytest.param(*block, id=f"{n}: {block[0].lstrip('# ')}")
        for n, block in enumerate(_python_blocks(), 1)
    ],
)
def test_every_python_block_of_the_readme_runs_as_written(
    heading: str, why: str | None, code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if why is not None:
        assert len(why.split()) >= 3, f"say why the block under {heading!r} cannot run"
        pytest.skip(f"not run: {why}")
    if "anyio.run(main)  # or" in code:
        assert heading in SESSION_EXAMPLES, f"give the example under {heading!r} a test"
        return  # run by its own test below
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out, "an example shows what it does"


def test_readme_decoding_example_prints_the_frames(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(_example("## Decoding frames"), str(README), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["80 off neutral", "79 off neutral"]
    assert lines[2].startswith("DecoderStats(frames=2, crc_errors=0,")


def test_readme_sdk_example_prints_the_sdk_shape(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(_example("## SDK-shaped JSON"), str(README), "exec"), {})
    assert capsys.readouterr().out == "{'unit': '%', 'value': 80}\n"


def _o2x(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    o2x = shutil.which("o2x", path=os.path.dirname(sys.executable)) or shutil.which("o2x")
    if o2x is None:
        pytest.skip("the o2x command is not installed")
    return subprocess.run(
        [o2x], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_shell_completion_the_readme_documents_is_given() -> None:
    text = README.read_text(encoding="utf-8")
    shells = re.findall(r"_O2X_COMPLETE=(\w+)_source o2x", text)
    assert shells == ["bash", "zsh", "fish"]
    for shell in shells:
        result = _o2x({"_O2X_COMPLETE": f"{shell}_source"})
        assert result.returncode == 0, result.stderr
        assert "_o2x_completion" in result.stdout
        assert f"_O2X_COMPLETE={shell}_complete" in result.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_bash_completes_o2x_with_the_readmes_line() -> None:
    o2x = shutil.which("o2x", path=os.path.dirname(sys.executable)) or shutil.which("o2x")
    if o2x is None:
        pytest.skip("the o2x command is not installed")
    script = (
        f'PATH="{os.path.dirname(o2x)}:$PATH"\n'
        'eval "$(_O2X_COMPLETE=bash_source o2x)"\n'
        "COMP_WORDS=(o2x rep); COMP_CWORD=1; _o2x_completion o2x\n"
        'echo "${COMPREPLY[@]}"\n'
        "COMPREPLY=(); COMP_WORDS=(o2x replay --cs); COMP_CWORD=2; _o2x_completion o2x\n"
        'echo "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["replay", "--csv"]


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
    _run_example(SESSION_EXAMPLES[0], backend, 60)
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
    _run_example(SESSION_EXAMPLES[1], backend, 30)
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
    _run_example(SESSION_EXAMPLES[2], backend, 30)
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
