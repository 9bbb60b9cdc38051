"""Timing and weighing, used by implementations inside the benchmark subprocess.

Everything here is cheap and library-neutral, so that every peer of a case is
timed and weighed the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import pairwise

#: The clock every implementation uses: monotonic, nanoseconds, ~70 ns a call here.
clock = time.perf_counter_ns


def us_per_op(start_ns: int, end_ns: int, ops: int) -> float:
    """Microseconds per operation over an interval of ``ops`` operations."""
    return (end_ns - start_ns) / 1e3 / ops


def intervals_us(stamps: Sequence[int], ops_per_interval: int = 1) -> list[float]:
    """Per-operation microseconds between consecutive clock stamps.

    With ``ops_per_interval=2`` a round-trip time becomes a one-way time.
    """
    scale = 1e3 * ops_per_interval
    return [(b - a) / scale for a, b in pairwise(stamps)]


def rss_bytes() -> int:
    """This process's resident set size, from ``VmRSS`` in /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")
