"""``o2x -v`` / ``-vv`` / ``-vvv`` / ``-q``: the library's logging, on stderr.

o2x logs through the standard :mod:`logging` module, one logger per module
(``o2x.vehicle``, ``o2x.transport``, ``o2x.obd.link``...). The command line sets the
levels and one handler on stderr: rich's on a terminal (coloured, the time and level
in columns, printed above a live view), plain lines otherwise (one record per line,
for a file or ``grep``).

| flag | o2x | bleak | Bumble (the virtual radio) |
|---|---|---|---|
| ``-q`` | errors | errors | errors |
| (none) | warnings | warnings | errors |
| ``-v`` | info: what the connection does | warnings | errors |
| ``-vv`` | debug: each step, each command to an adapter | debug | warnings |
| ``-vvv`` | debug | debug | debug |
"""

from __future__ import annotations

import logging
import sys
from typing import Final

from rich.console import Console
from rich.logging import RichHandler

__all__ = ["configure_logging"]

#: The levels of the loggers o2x sets, by verbosity (-1 is -q).
_LEVELS: Final = {
    -1: {"o2x": logging.ERROR, "bleak": logging.ERROR, "bumble": logging.ERROR},
    0: {"o2x": logging.WARNING, "bleak": logging.WARNING, "bumble": logging.ERROR},
    1: {"o2x": logging.INFO, "bleak": logging.WARNING, "bumble": logging.ERROR},
    2: {"o2x": logging.DEBUG, "bleak": logging.DEBUG, "bumble": logging.WARNING},
    3: {"o2x": logging.DEBUG, "bleak": logging.DEBUG, "bumble": logging.DEBUG},
}
_HANDLER_NAME: Final = "o2x-cli"
_PLAIN_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Plain lines on whatever ``sys.stderr`` is when a record is written (a test's
    capture, or rich's live view, may replace it after the handler is made)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(verbosity: int) -> logging.Handler:
    """Set the levels for ``verbosity`` (-1: ``-q``, 0, 1: ``-v``, 2: ``-vv``, 3:
    ``-vvv`` or more) and put one handler on the root logger, replacing the one an
    earlier call put there. Returns that handler."""
    levels = _LEVELS[max(-1, min(3, verbosity))]
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler: logging.Handler
    if sys.stderr.isatty():
        # Console(stderr=True) writes to sys.stderr as it is at each record, so a
        # live view on the terminal prints the records above itself.
        handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    else:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(_PLAIN_FORMAT, "%H:%M:%S"))
    handler.set_name(_HANDLER_NAME)
    root.addHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    return handler
