"""The remembered-vehicle file: atomic under SIGKILL, private, and never silently replaced."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from o2x import O2XVehicle, StateFileDamaged, StateFileError
from o2x._state import RememberedVehicle, load, save, state_file

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes and signals")

A = RememberedVehicle("VR1AB12C3D4567890", "C1:11:11:11:11:11")
# Of another length, so that a torn write could not look like the other content.
B = RememberedVehicle("VXKUHZKXZL4123456", "/org/bluez/hci0/dev_C2_22_22_22_22_22")

# A server process that imports o2x once, then for each line on stdin forks a child
# that saves A and B alternately, for ever, until the test SIGKILLs it. Forking
# keeps each kill cheap: no interpreter start-up per kill.
_WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from o2x._state import RememberedVehicle, save

    path = Path(sys.argv[1])
    contents = [RememberedVehicle(*sys.argv[2:4]), RememberedVehicle(*sys.argv[4:6])]
    print("ready", flush=True)
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            i = 0
            while True:
                save(path, contents[i % 2])
                i += 1
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)
    """
)


def _temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".vehicle-*.tmp"))


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    path = tmp_path / "state" / "vehicle.json"
    args = [sys.executable, "-c", _WRITER, str(path), A.vin, A.address, B.vin, B.address]
    with subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            yield process
        finally:
            process.kill()


def test_sigkill_mid_write_leaves_the_old_file_or_the_new_one(
    writer: subprocess.Popen[str], tmp_path: Path
) -> None:
    assert writer.stdin is not None
    assert writer.stdout is not None
    directory = tmp_path / "state"
    path = directory / "vehicle.json"
    rng = random.Random(20240611)
    kills = 0
    torn_writes = 0  # kills that landed between creating the temp file and renaming it
    seen = set()
    # At least 30 kills; more if none has yet landed inside a write (bounded).
    while kills < 30 or (torn_writes == 0 and kills < 300):
        before = len(_temp_files(directory)) if directory.exists() else 0
        writer.stdin.write("go\n")
        pid = int(writer.stdout.readline())
        # Random points: from before the first write to well into the loop.
        # (Sleeping is the point here: the delay is where the kill lands.)
        delay = rng.choice([0.0, rng.uniform(0, 0.002), rng.uniform(0, 0.03)])
        if delay:
            time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        status = int(writer.stdout.readline())
        # It died of the kill: it was still saving, and no save() ever raised.
        assert os.WIFSIGNALED(status), f"the writer exited by itself (status {status})"
        assert os.WTERMSIG(status) == signal.SIGKILL
        kills += 1

        loaded = load(path)  # the file is absent (no save completed yet) or whole
        if loaded is None:
            assert not path.exists()
        else:
            assert loaded in (A, B)
            seen.add(loaded)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        leftovers = _temp_files(directory) if directory.exists() else []
        # One interrupted write leaves at most its own temp file, private like the file.
        assert len(leftovers) <= before + 1
        torn_writes += len(leftovers) - before
        for leftover in leftovers:
            assert stat.S_IMODE(leftover.stat().st_mode) == 0o600
    print(f"\n{kills} kills, {torn_writes} inside a write")  # shown with pytest -s
    assert torn_writes >= 1, "no kill landed inside a write; the test proved nothing"
    assert seen == {A, B}, "the writer never got through both contents"
    # Leftover temp files are ignored: loading reads vehicle.json only, and saving
    # neither reads nor trips over them.
    save(path, A)
    assert load(path) == A
    assert len(_temp_files(directory)) == torn_writes
    # Once they are stale (no save takes minutes), the next save removes them.
    for leftover in _temp_files(directory):
        then = time.time() - 11 * 60
        os.utime(leftover, (then, then))
    save(path, B)
    assert load(path) == B
    assert _temp_files(directory) == []


# A permissive umask, the usual one, and one that takes the owner's own bits away.
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_created_private_in_private_directories(tmp_path: Path, umask: int) -> None:
    old_umask = os.umask(umask)
    try:
        path = state_file(tmp_path / "new" / "state" / "o2x")
        save(path, A)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Every directory save created, parents included (mkdir -p would leave those
    # with the umask's default, 0777 under umask 0).
    for directory in (path.parent, path.parent.parent, path.parent.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert load(path) == A
    assert _temp_files(path.parent) == []


def test_replacing_a_readable_file_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.json"
    path.write_text(json.dumps({"format": 1, "vin": A.vin, "address": A.address}))
    path.chmod(0o644)
    save(path, B)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load(path) == B


def test_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    save(tmp_path / "vehicle.json", A)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def _doc(**fields: object) -> bytes:
    return json.dumps(fields).encode()


_VALID = _doc(format=1, vin=A.vin, address=A.address)

DAMAGED = {
    "empty": b"",
    "truncated": _VALID[: len(_VALID) // 2],
    "one byte short": _VALID[:-1],
    "format 2": _doc(format=2, vin=A.vin, address=A.address),
    "format 0": _doc(format=0, vin=A.vin, address=A.address),
    "format as text": _doc(format="1", vin=A.vin, address=A.address),
    "format true": _doc(format=True, vin=A.vin, address=A.address),
    "format 1.0": _doc(format=1.0, vin=A.vin, address=A.address),
    "no format": _doc(vin=A.vin, address=A.address),
    "bad VIN letter": _doc(format=1, vin="VR1AB12C3D456789O", address=A.address),
    "short VIN": _doc(format=1, vin="VR1AB12", address=A.address),
    "VIN a number": _doc(format=1, vin=12345678901234567, address=A.address),
    "no address": _doc(format=1, vin=A.vin),
    "empty address": _doc(format=1, vin=A.vin, address=""),
    "address a number": _doc(format=1, vin=A.vin, address=42),
    "address with control characters": _doc(format=1, vin=A.vin, address="\x00\n; rm -rf"),
    "address with a space": _doc(format=1, vin=A.vin, address="C1:11 11:11:11:11"),
    "address as markup": _doc(format=1, vin=A.vin, address="[blink]C1:11:11:11:11:11"),
    "address too long": _doc(format=1, vin=A.vin, address="C" * 129),
    "larger than any remembered vehicle": _doc(
        format=1, vin=A.vin, address=A.address, note="x" * 70_000
    ),
    "a list": json.dumps([1, A.vin, A.address]).encode(),
    "null": b"null",
    "binary": bytes(range(256)),
    "not UTF-8": b'{"format": 1, "vin": "\xff\xfe", "address": "x"}',
    "NUL bytes": b"\x00" * 64,
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_file_raises_naming_it_and_is_left_unchanged(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "vehicle.json"
    path.write_bytes(content)
    path.chmod(0o600)
    before = path.stat()
    with pytest.raises(StateFileError) as caught:
        load(path)
    assert str(path) in str(caught.value)
    assert "first_time" in str(caught.value)  # and says what to do
    assert path.read_bytes() == content
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert _temp_files(tmp_path) == []


def test_unreadable_file_raises_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.json"
    path.mkdir()  # a directory where the file should be: reading fails with an OSError
    with pytest.raises(StateFileError, match="cannot read") as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_missing_file_is_no_vehicle(tmp_path: Path) -> None:
    assert load(tmp_path / "vehicle.json") is None
    assert load(tmp_path / "absent" / "vehicle.json") is None


@pytest.mark.parametrize("key", ["vin", "address"])
def test_a_missing_key_is_named(tmp_path: Path, key: str) -> None:
    path = tmp_path / "vehicle.json"
    fields = {"format": 1, "vin": A.vin, "address": A.address}
    del fields[key]
    path.write_bytes(_doc(**fields))
    with pytest.raises(StateFileError, match=f'damaged \\(missing key "{key}"\\)'):
        load(path)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.json"
    os.mkfifo(path)
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(load(path))
        except Exception as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)  # returns at once unless load() blocks
    if reader.is_alive():
        # Blocked opening the FIFO for want of a writer: be one, so that it ends.
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
        pytest.fail("load() blocked on a FIFO")
    [error] = outcome
    assert isinstance(error, StateFileError)
    assert f"{path}: it is a FIFO, not a regular file" in str(error)
    assert stat.S_ISFIFO(path.stat().st_mode)  # left as it was


def test_a_device_is_refused() -> None:
    # Not read at all: /dev/null would read as an empty file, /dev/zero for ever
    # (not tried here: reading it is what this guards against).
    with pytest.raises(StateFileError, match="it is a character device, not a regular file"):
        load(Path("/dev/null"))


def test_a_path_with_a_nul_character_is_a_state_file_error(tmp_path: Path) -> None:
    state_dir = f"{tmp_path}/a\0b"
    path = state_file(state_dir)
    with pytest.raises(StateFileError, match=r"not a usable path \(embedded null byte\)"):
        load(path)
    with pytest.raises(StateFileError, match=r"not a usable path \(embedded null byte\)"):
        save(path, A)

    async def enter() -> None:
        async with O2XVehicle.previous(state_dir=state_dir):
            pass

    with pytest.raises(StateFileError) as caught:
        anyio.run(enter)
    assert repr(str(path)) in str(caught.value)  # quoted: no raw NUL in the message


# What bleak's backends give as a device's address (and BlueZ's object path for it).
ADDRESSES = [
    "C1:11:11:11:11:11",
    "c1:11:11:11:11:11",
    "9A2F4C1E-7B3D-4E55-8C61-0123456789AB",
    "/org/bluez/hci0/dev_C1_11_11_11_11_11",
    "C" * 128,
]
NOT_ADDRESSES = ["", "\x00\n; rm -rf", "C1:11 11:11:11:11", "[blink]x", "C" * 129, "\u00c9", 42]


def test_save_writes_only_what_load_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.json"
    for address in ADDRESSES:
        save(path, RememberedVehicle(A.vin, address))
        assert load(path) == RememberedVehicle(A.vin, address)
    path.unlink()
    refused = [RememberedVehicle(A.vin, address) for address in NOT_ADDRESSES]
    refused.append(RememberedVehicle("VR1AB12C3D456789O", A.address))
    for vehicle in refused:
        with pytest.raises(StateFileError, match="cannot remember the vehicle in "):
            save(path, vehicle)
    assert not path.exists()
    assert _temp_files(tmp_path) == []


def test_the_dongle_kind_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.json"
    save(path, RememberedVehicle("VR1AB12C3D4567890", "AA:BB:CC:DD:EE:FF", "adapter"))
    assert json.loads(path.read_text())["dongle"] == "adapter"
    assert load(path) == RememberedVehicle("VR1AB12C3D4567890", "AA:BB:CC:DD:EE:FF", "adapter")


def test_a_file_from_before_the_dongle_kind_holds_an_o2x_dongle(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.json"
    path.write_text('{"format": 1, "vin": "VR1AB12C3D4567890", "address": "AA:BB:CC:DD:EE:FF"}')
    remembered = load(path)
    assert remembered is not None
    assert remembered.dongle == "o2x"


@pytest.mark.parametrize("dongle", ["", "elm", 1, None, "ADAPTER"])
def test_an_unknown_dongle_kind_is_a_damaged_file(tmp_path: Path, dongle: object) -> None:
    path = tmp_path / "vehicle.json"
    path.write_text(
        json.dumps({"format": 1, "vin": "VR1AB12C3D4567890", "address": "AA:BB", "dongle": dongle})
    )
    with pytest.raises(StateFileError, match="dongle"):
        load(path)


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_save_never_replaces_a_damaged_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "vehicle.json"
    path.write_bytes(content)
    with pytest.raises(StateFileDamaged) as caught:
        save(path, A)
    error = caught.value
    assert error.path == str(path)
    assert error.problem in str(error)
    assert "is left as it is" in str(error)
    assert "delete it" in str(error)
    assert path.read_bytes() == content
    assert _temp_files(tmp_path) == []


def test_save_replaces_a_file_it_cannot_read_only_through_the_write(tmp_path: Path) -> None:
    # Not damaged, only in the way of reading (here: a directory where the state
    # directory should be): the write says what is wrong, as it did.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateFileError, match="cannot remember the vehicle in"):
        save(blocker / "vehicle.json", A)


def _stale(path: Path, age: float) -> None:
    then = time.time() - age
    os.utime(path, (then, then))


def test_a_save_removes_the_stale_temporary_files_of_killed_saves(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.json"
    stale = [tmp_path / f".vehicle-{i:04}abcd.tmp" for i in range(50)]
    for leftover in stale:
        leftover.write_text('{"format": 1, "vin"')
        _stale(leftover, 11 * 60)
    recent = tmp_path / ".vehicle-recent.tmp"  # a save under way in another process
    recent.write_text("")
    _stale(recent, 60)
    others = [tmp_path / "notes.tmp", tmp_path / ".vehicle-backup.json"]
    for other in others:
        other.write_text("the user's")
        _stale(other, 24 * 3600)
    not_a_file = tmp_path / ".vehicle-dir.tmp"
    not_a_file.mkdir()
    os.utime(not_a_file, (0, 0))
    target = tmp_path / "target"
    target.write_text("kept")
    link = tmp_path / ".vehicle-link.tmp"
    link.symlink_to(target)
    os.utime(link, (0, 0), follow_symlinks=False)

    save(path, A)
    assert load(path) == A
    assert _temp_files(tmp_path) == sorted([recent, not_a_file, link])
    assert all(other.read_text() == "the user's" for other in others)
    assert target.read_text() == "kept"
