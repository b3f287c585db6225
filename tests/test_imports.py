"""Every module of the package imports on its own, first, in a fresh interpreter (an
import cycle shows only in the order that meets it)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

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
