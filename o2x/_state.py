"""The remembered vehicle: a small JSON file, written atomically, readable only by its owner.

An ``O2XVehicle`` writes it once it streams (after ``first_time`` or ``previous``),
and ``O2XVehicle.previous`` reads it: the SDK's "previously subscribed vehicle".
Vehicles on a virtual radio are remembered apart (:func:`state_file`'s ``virtual``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path

import attrs
import platformdirs

from .errors import InvalidVIN, StateFileDamaged, StateFileError
from .model import _quote, normalize_vin

__all__ = [
    "STATE_DIR_ENV",
    "VIRTUAL_DIR",
    "RememberedVehicle",
    "load",
    "refuse_damaged",
    "save",
    "state_file",
]

#: Environment variable that moves the state directory.
STATE_DIR_ENV = "O2X_STATE_DIR"
_FILE_NAME = "vehicle.json"
#: The subdirectory of the state directory where vehicles on a virtual radio are
#: remembered, so that a simulated run never replaces the user's real car.
VIRTUAL_DIR = "simulated"
# Temporary files of a save are named so; one older than this is a save that was
# killed before its rename (a save takes milliseconds), and the next save removes it.
_TEMP_PREFIX, _TEMP_SUFFIX = ".vehicle-", ".tmp"
_STALE_TEMP_AGE = 10 * 60.0
_FORMAT = 1
# A remembered vehicle takes under 200 bytes: anything much larger is not one.
_MAX_SIZE = 64 * 1024
# What o2x writes as the address is bleak's BLEDevice.address: a MAC address
# (AA:BB:CC:DD:EE:FF) on BlueZ, Windows and Android and in the simulator, a UUID on
# macOS. Other backends may name devices otherwise (BlueZ's object paths look like
# /org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF), so the check is not for those two shapes
# but for a short token of letters, digits and ":._/-": enough for any of them, and
# nothing that could garble a terminal or a log, or inject markup, when printed.
_ADDRESS_RE = re.compile(r"[A-Za-z0-9:._/-]{1,128}")


#: The kinds of dongle a vehicle can be remembered with.
DONGLES = ("o2x", "adapter")


@attrs.frozen
class RememberedVehicle:
    """The vehicle subscribed last: its VIN, the BLE address it was found at, and the
    kind of dongle there: ``"o2x"`` (an O2X dongle, found again by the VIN it
    advertises) or ``"adapter"`` (a BLE OBD adapter, connected to again by its address).
    Files written before the kind was kept hold an O2X dongle."""

    vin: str
    address: str
    dongle: str = "o2x"


def state_file(state_dir: str | os.PathLike[str] | None = None, *, virtual: bool = False) -> Path:
    """Where the remembered vehicle lives: ``state_dir``, else ``$O2X_STATE_DIR``,
    else the user's state directory (``~/.local/state/o2x`` on Linux).

    With ``virtual`` (a vehicle on a virtual radio) and no ``state_dir``, the
    ``simulated`` directory inside that default one: the vehicle of a simulated run
    is never the one a real run finds with ``previous()``.
    """
    if state_dir is None:
        default = os.environ.get(STATE_DIR_ENV) or platformdirs.user_state_dir("o2x")
        state_dir = Path(default) / VIRTUAL_DIR if virtual else Path(default)
    return Path(state_dir) / _FILE_NAME


def load(path: Path) -> RememberedVehicle | None:
    """The remembered vehicle, or ``None`` if there is none yet.

    A file that exists but cannot be understood raises :class:`StateFileDamaged`
    naming it and what is wrong; one that cannot be read, :class:`StateFileError`.
    Neither is ever silently replaced (see :func:`save`).
    """
    try:
        raw = _read(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(
            f"cannot read the remembered vehicle from {_shown(path)}: {exc.strerror or exc}"
        ) from exc
    try:
        return _parse(raw)
    except (ValueError, TypeError, RecursionError, InvalidVIN) as exc:
        raise StateFileDamaged(
            f"the remembered-vehicle file {_shown(path)} is damaged ({exc}) and is left "
            "as it is; delete it (or move it away) and connect with "
            "O2XVehicle.first_time(vin) again",
            path=_shown(path),
            problem=str(exc),
        ) from exc


def _read(path: Path) -> bytes:
    """The file's first bytes, enough to tell one too large; OSError if it is no file."""
    # Opened without blocking and checked before reading: a FIFO would block the
    # read for ever, and a device such as /dev/zero never end.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except ValueError as exc:  # a NUL character in the path, or one not encodable
        raise OSError(errno.EINVAL, f"not a usable path ({exc})") from exc
    try:
        mode = os.fstat(fd).st_mode
        # Wrapped only once known to be a file: open() would refuse a directory but
        # leave the descriptor open.
        f = open(fd, "rb") if stat.S_ISREG(mode) else None  # noqa: SIM115 (closed below)
    except BaseException:
        os.close(fd)
        raise
    if f is None:
        os.close(fd)
        raise OSError(errno.EINVAL, f"it is {_file_kind(mode)}, not a regular file")
    with f:
        return f.read(_MAX_SIZE + 1)


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def _shown(path: Path) -> str:
    # A path with control characters (a NUL, a newline) is quoted, not printed raw.
    text = str(path)
    return text if text.isprintable() else repr(text)


def _parse(raw: bytes) -> RememberedVehicle:
    if len(raw) > _MAX_SIZE:
        raise ValueError(f"over {_MAX_SIZE} bytes, far more than a remembered vehicle takes")
    # UnicodeDecodeError is a ValueError; json raises RecursionError for deep nesting.
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object with format {_FORMAT}")
    if "format" not in data:
        raise ValueError(f'expected a JSON object with format {_FORMAT}, no "format" key')
    fmt = data["format"]
    # The integer 1: not JSON true, nor 1.0 (both equal to 1 in Python).
    if type(fmt) is not int or fmt != _FORMAT:
        raise ValueError(f"expected format {_FORMAT}, not {_quote(fmt)}")
    missing = [key for key in ("vin", "address") if key not in data]
    if missing:
        keys = ", ".join(f'"{key}"' for key in missing)
        raise ValueError(f"missing key{'s' if len(missing) > 1 else ''} {keys}")
    return _checked(RememberedVehicle(data["vin"], data["address"], data.get("dongle", "o2x")))


def _checked(vehicle: RememberedVehicle) -> RememberedVehicle:
    """``vehicle`` with its VIN normalised; InvalidVIN or ValueError if it cannot be stored."""
    address = vehicle.address
    if not isinstance(address, str) or _ADDRESS_RE.fullmatch(address) is None:
        raise ValueError(
            f"the address {_quote(address)} is not a Bluetooth address or device identifier "
            "(up to 128 letters, digits and ':._/-')"
        )
    if vehicle.dongle not in DONGLES:
        raise ValueError(f"the dongle {_quote(vehicle.dongle)} is none of {', '.join(DONGLES)}")
    return RememberedVehicle(normalize_vin(vehicle.vin), address, vehicle.dongle)


def save(path: Path, vehicle: RememberedVehicle) -> None:
    """Write ``vehicle`` to ``path`` atomically: a crash leaves the old file or the new one.

    The file is created readable and writable by its owner only, and the
    directories created for it (parents included) accessible by their owner only
    (0700, whatever the umask). A vehicle that :func:`load` would refuse to read
    back is not written: StateFileError. Nor is a damaged file replaced: the
    :class:`StateFileDamaged` that :func:`load` raises for it is raised. Temporary
    files that saves killed before their rename left in the directory, over ten
    minutes old, are removed.
    """
    try:
        checked = _checked(vehicle)
    except (ValueError, InvalidVIN) as exc:
        raise StateFileError(f"cannot remember the vehicle in {_shown(path)}: {exc}") from exc
    refuse_damaged(path)
    payload = json.dumps(
        {
            "format": _FORMAT,
            "vin": checked.vin,
            "address": checked.address,
            "dongle": checked.dongle,
        }
    )
    try:
        _make_private_dirs(path.parent)
        _remove_stale_temp_files(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                if sys.platform != "win32":
                    # mkstemp creates it 0600 less the umask's bits: 0600 whatever the umask.
                    os.fchmod(f.fileno(), 0o600)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StateFileError(f"cannot remember the vehicle in {_shown(path)}: {exc}") from exc
    except ValueError as exc:  # a NUL character in the path, or one not encodable
        raise StateFileError(
            f"cannot remember the vehicle in {_shown(path)}: not a usable path ({exc})"
        ) from OSError(errno.EINVAL, f"not a usable path ({exc})")


def refuse_damaged(path: Path) -> None:
    """Raise :class:`StateFileDamaged` if ``path`` holds a file :func:`load` finds damaged.

    What is there must be a remembered vehicle, or nothing: a file the user put
    there, or one a later version wrote, is theirs to deal with. A file that cannot
    be read at all (no permission, a directory in the way) is left to the write,
    which says what is wrong if it matters. (Checked, then replaced: a file
    damaged in between is replaced, as a file written then would be.)
    """
    try:
        load(path)
    except StateFileDamaged:
        raise
    except StateFileError:
        pass


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each 0700; leave existing ones be."""
    missing: list[Path] = []
    while not os.path.lexists(directory):
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by someone else: theirs, not ours to change
            continue
        # mkdir's mode is masked by the umask: set the mode itself. Between the two
        # calls the directory is at most 0700, never more open.
        os.chmod(created, 0o700)


def _remove_stale_temp_files(directory: Path) -> None:
    """Remove the temporary files of saves killed before their rename, once stale.

    By age, not by process: a save holds its temporary file for milliseconds, so one
    older than ``_STALE_TEMP_AGE`` belongs to no save still running (a process ID in
    the name could not say as much: PIDs are reused, and other machines or
    containers may share the directory). Only regular files of ours are removed;
    failing to remove one is no reason to fail the save.
    """
    oldest = time.time() - _STALE_TEMP_AGE
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime < oldest:
                os.unlink(entry.path)
        except OSError:
            continue


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable; not possible on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
