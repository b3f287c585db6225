"""Every module of the package imports on its own, first, in a fresh interpreter (an
import cycle shows only in the order that meets it); the pure cores import no I/O."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import o2x

MODULES = sorted(info.name for info in pkgutil.walk_packages(o2x.__path__, prefix="o2x."))


def test_the_modules_are_all_found() -> None:
    assert {"o2x.transport", "o2x.dongle.source", "o2x.obd.link", "o2x.cli"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_first(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


# --- the sans-I/O cores ------------------------------------------------------------------

#: The modules that see bytes, readings and times, never a socket, a radio or a loop.
PURE = [
    "o2x.model",
    "o2x.errors",
    "o2x.machine",
    "o2x.sdk",
    "o2x.trips",
    "o2x.dongle.frames",
    "o2x.can.bus",
    "o2x.can.dbc",
    "o2x.obd.elm327",
    "o2x.obd.slcan",
    "o2x.obd.filters",
    "o2x.obd.layouts",
    "o2x.obd.actions",
    "o2x.mqtt.messages",
    "o2x.mqtt.publication",
]
IO = {"aiomqtt", "anyio", "asyncio", "bleak", "bumble", "can", "click", "paho"}
IO |= {"rich", "serial", "sniffio", "socket", "ssl", "trio"}
PACKAGE = Path(o2x.__file__).parent.parent


def _source(module: str) -> Path | None:
    path = PACKAGE.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str) -> set[str]:
    """What ``module``'s own source imports (its package's ``__init__`` aside: the
    package, not the core, gathers the I/O around it)."""
    path = _source(module)
    assert path is not None, module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                levels = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*levels, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names = {f"{base}.{alias.name}" for alias in node.names}
            submodules = {name for name in names if _source(name) is not None}
            found |= submodules if submodules == names else submodules | {base}
    return found


def _io_reached(module: str) -> dict[str, str]:
    """Each I/O module reached from ``module`` through o2x's own imports, with the o2x
    module that imports it."""
    reached: dict[str, str] = {}
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in _imports(current):
            root = name.split(".")[0]
            if root in IO:
                reached.setdefault(name, current)
            elif root == "o2x" and _source(name) is not None:
                todo.append(name)
    return reached


def test_the_check_sees_io() -> None:
    assert "anyio.abc" in _io_reached("o2x.can.readings")  # through o2x.source
    assert "aiomqtt" in _io_reached("o2x.mqtt.bridge")


@pytest.mark.parametrize("module", PURE)
def test_a_pure_core_imports_no_io(module: str) -> None:
    assert _io_reached(module) == {}
