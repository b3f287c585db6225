"""The remembered vehicle: a small JSON file, written atomically, readable only by its owner.

An ``O2XVehicle`` writes it once it streams (after ``first_time`` or ``previous``),
and ``O2XVehicle.previous`` reads it: the SDK's "previously subscribed vehicle".
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import attrs
import platformdirs

from .errors import InvalidVIN, StateFileError
from .model import normalize_vin

__all__ = ["STATE_DIR_ENV", "RememberedVehicle", "load", "save", "state_file"]

#: Environment variable that moves the state directory.
STATE_DIR_ENV = "O2X_STATE_DIR"
_FILE_NAME = "vehicle.json"
_FORMAT = 1


@attrs.frozen
class RememberedVehicle:
    """The vehicle subscribed last: its VIN and the BLE address it was found at."""

    vin: str
    address: str


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
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read the remembered vehicle from {path}: {exc}") from exc
    try:
        # UnicodeDecodeError is a ValueError; json raises RecursionError for deep nesting.
        return _parse(raw.decode("utf-8"))
    except (ValueError, KeyError, TypeError, RecursionError, InvalidVIN) as exc:
        raise StateFileError(
            f"the remembered-vehicle file {path} is damaged ({exc}); "
            "delete it and connect with O2XVehicle.first_time(vin) again"
        ) from exc


def _parse(text: str) -> RememberedVehicle:
    data = json.loads(text)
    fmt = data.get("format") if isinstance(data, dict) else None
    if isinstance(fmt, bool) or fmt != _FORMAT:  # JSON true is not format 1
        raise ValueError(f"expected a JSON object with format {_FORMAT}")
    vin, address = data["vin"], data["address"]
    if not isinstance(address, str) or not address:
        raise ValueError("address must be a non-empty string")
    return RememberedVehicle(normalize_vin(vin), address)


def save(path: Path, vehicle: RememberedVehicle) -> None:
    """Write ``vehicle`` to ``path`` atomically: a crash leaves the old file or the new one.

    The file is created readable and writable by its owner only.
    """
    payload = json.dumps({"format": _FORMAT, "vin": vehicle.vin, "address": vehicle.address})
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
        raise StateFileError(f"cannot remember the vehicle in {path}: {exc}") from exc


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
