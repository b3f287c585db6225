"""The remembered vehicle: a small JSON file, written atomically, readable only by its owner.

An ``O2XVehicle`` writes it once it streams (after ``first_time`` or ``previous``),
and ``O2XVehicle.previous`` reads it: the SDK's "previously subscribed vehicle".
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path

import attrs
import platformdirs

from .errors import InvalidVIN, StateFileError
from .model import _quote, normalize_vin

__all__ = ["STATE_DIR_ENV", "RememberedVehicle", "load", "save", "state_file"]

#: Environment variable that moves the state directory.
STATE_DIR_ENV = "O2X_STATE_DIR"
_FILE_NAME = "vehicle.json"
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


def state_file(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the remembered vehicle lives: ``state_dir``, else ``$O2X_STATE_DIR``,
    else the user's state directory (``~/.local/state/o2x`` on Linux)."""
    if state_dir is None:
        state_dir = os.environ.get(STATE_DIR_ENV) or platformdirs.user_state_dir("o2x")
    return Path(state_dir) / _FILE_NAME


def load(path: Path) -> RememberedVehicle | None:
    """The remembered vehicle, or ``None`` if there is none yet.

    A file that exists but cannot be understood raises :class:`StateFileError`
    naming it; it is never silently replaced.
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
        raise StateFileError(
            f"the remembered-vehicle file {_shown(path)} is damaged ({exc}); "
            "delete it and connect with O2XVehicle.first_time(vin) again"
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

    The file is created readable and writable by its owner only. A vehicle that
    :func:`load` would refuse to read back is not written: StateFileError.
    """
    try:
        checked = _checked(vehicle)
    except (ValueError, InvalidVIN) as exc:
        raise StateFileError(f"cannot remember the vehicle in {_shown(path)}: {exc}") from exc
    payload = json.dumps(
        {
            "format": _FORMAT,
            "vin": checked.vin,
            "address": checked.address,
            "dongle": checked.dongle,
        }
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".vehicle-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp creates it 0600
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
