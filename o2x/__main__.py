"""``python -m o2x``: the ``o2x`` command line (``python -m o2x --help``)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
