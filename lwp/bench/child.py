"""The benchmark subprocess: runs one implementation of one case, once.

Usage (by the harness only)::

    python -m lwp.bench.child CASE LABEL PARAMS_JSON

A fresh interpreter per measurement keeps libraries from sharing a process
(gevent's monkey-patching, an lwp scheduler's kernel threads, a warm
allocator) and gives the memory case a clean RSS. The result is one line on
standard output starting with :data:`RESULT_TAG`, followed by a JSON object:
``{"samples": [...], "p99": float | null}`` on success (plus ``"lwp_stats"``,
``lwp.stats()`` at the end of the measurement, when lwp ran), ``{"error": str}``
(with exit status 1 and a traceback on standard error) on failure. Anything
else the implementation prints is ignored.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from . import threads
from .case import Case, all_cases

RESULT_TAG = "LWP-BENCH-RESULT "


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with ``fraction`` of all at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def reduce(case: Case, measured: Any) -> dict[str, Any]:
    """Turn what an implementation returned into samples (and p99), per :class:`Case`."""
    if isinstance(measured, (int, float)):
        return {"samples": [float(measured)], "p99": None}
    if isinstance(measured, dict):  # {"samples": [...], "p99": x}: a rate with its latency tail
        return {"samples": [float(v) for v in measured["samples"]], "p99": measured.get("p99")}
    values = [float(v) for v in measured]
    if not values:
        raise ValueError("implementation returned no measurement")
    if case.tail:
        return {"samples": [math.fsum(values) / len(values)], "p99": percentile(values, 0.99)}
    return {"samples": values, "p99": None}


def main(argv: list[str]) -> int:
    name, label, params_json = argv
    case = all_cases()[name]
    impl = case.impls[label]
    kwargs = {**json.loads(params_json), **impl.kwargs}
    try:
        result = reduce(case, impl.fn(**kwargs))
    except Exception as exc:  # noqa: BLE001 - any failure becomes an "error" row
        traceback.print_exc()
        result, status = {"error": f"{type(exc).__name__}: {exc}"}, 1
    else:
        status = 0
        if threads.last_lwp_stats is not None:
            result["lwp_stats"] = threads.last_lwp_stats
    sys.stdout.flush()
    print(RESULT_TAG + json.dumps(result), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
