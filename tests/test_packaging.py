"""The distributions carry what the project declares: the MIT licence, in the wheel
and in the sdist, built here by the project's own build backend."""

from __future__ import annotations

import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_licence_file_is_the_mit_licence_the_metadata_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the o2x authors\n")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


@pytest.mark.parametrize("target", ["wheel", "sdist"])
def test_the_distributions_carry_the_licence(tmp_path, target):
    pytest.importorskip("hatchling")
    from hatchling.builders.sdist import SdistBuilder
    from hatchling.builders.wheel import WheelBuilder

    builder = (WheelBuilder if target == "wheel" else SdistBuilder)(str(ROOT))
    [built] = builder.build(directory=str(tmp_path), versions=["standard"])
    licence = (ROOT / "LICENSE").read_bytes()
    if target == "wheel":
        with zipfile.ZipFile(built) as wheel:
            names = wheel.namelist()
            [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
            dist_info = metadata.rsplit("/", 1)[0]
            assert wheel.read(f"{dist_info}/licenses/LICENSE") == licence
            fields = wheel.read(metadata).decode().splitlines()
        assert "License-Expression: MIT" in fields
        assert "License-File: LICENSE" in fields
    else:
        with tarfile.open(built) as sdist:
            [member] = [m for m in sdist.getmembers() if m.name.endswith("/LICENSE")]
            extracted = sdist.extractfile(member)
            assert extracted is not None
            assert extracted.read() == licence
            assert member.name.count("/") == 1  # at the top, beside pyproject.toml
