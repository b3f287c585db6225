"""What the hostile-peer tests leave out when they measure the library's memory."""

from __future__ import annotations

import tracemalloc

#: The simulated radio and the hostile peer live in the process: their allocations
#: (Bumble's queues, the simulated car's log) are not the library's; nor are the
#: measurement's own (tracemalloc, and the patterns its filters compile).
NOT_THE_LIBRARY = [
    tracemalloc.Filter(False, "*/o2x/sim/*"),
    tracemalloc.Filter(False, "*/bumble/*"),
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "*/fnmatch.py"),
    tracemalloc.Filter(False, "*/re/*"),
]
