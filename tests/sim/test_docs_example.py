"""The plain-bleak script in VirtualRadio's docstring runs as written and streams frames."""

from __future__ import annotations

import re
import textwrap

import pytest

from o2x.sim import VirtualRadio


def test_plain_bleak_script_from_the_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    doc = VirtualRadio.__doc__
    assert doc is not None
    match = re.search(r"simulated AMI::\n\n(.*?asyncio\.run\(main\(\)\)\n)", doc, re.DOTALL)
    assert match is not None, "the docstring lost its plain-bleak example"
    script = textwrap.dedent(match.group(1))
    assert "from bleak import BleakClient, BleakScanner" in script  # bleak's own classes
    exec(compile(script, "VirtualRadio docstring", "exec"), {"__name__": "example"})
    frames = re.findall(r"^InfoFrame\(seq=(\d+)", capsys.readouterr().out, re.MULTILINE)
    # One second at the default 10 Hz, consecutive sequence numbers.
    assert len(frames) >= 5
    seqs = [int(s) for s in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
