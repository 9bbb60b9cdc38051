"""Running cases: each measurement in a fresh subprocess, rounds alternating libraries.

For every case, each round runs every selected implementation once, each in
its own ``python -m lwp.bench.child`` process. The order of the
implementations rotates from round to round and is reversed every other
round, so that no library always runs first (cold machine) nor always right
after the same peer. With 2 noisy cores this is what makes the per-library
medians comparable within one run.

Guarantees: a peer whose modules are missing is reported as
``"not installed"`` without starting a process; a failing, crashing or hung
implementation is reported as ``"error"`` with the reason, is not run again in
later rounds, and never stops the other implementations or cases.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .case import Case, Impl
from .child import RESULT_TAG
from .threads import LWPS_ENV

OK, NOT_INSTALLED, ERROR = "ok", "not installed", "error"

#: The directory holding the ``lwp`` package these cases come from; put first
#: on the subprocess's path so that it measures this same lwp.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    """Everything measured for one implementation of one case."""

    label: str
    library: str
    note: str = ""
    status: str = OK
    samples: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    lwp_stats: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.status == OK and self.samples else None

    @property
    def lwp_count(self) -> int | None:
        """How many pooled LWPs ran this implementation, if it ran on lwp."""
        counts = {sum(1 for lwp in stats if lwp.get("kind") == "pooled") for stats in self.lwp_stats}
        return counts.pop() if len(counts) == 1 else None

    @property
    def p99(self) -> float | None:
        """The median over rounds of each round's p99 (robust to one noisy round)."""
        return statistics.median(self.p99s) if self.status == OK and self.p99s else None


@dataclass
class CaseResult:
    case: Case
    params: dict[str, Any]
    outcomes: dict[str, Outcome]

    def ratio(self, label: str) -> float | None:
        """This implementation's median over the baseline's; None when either is missing."""
        base = self.outcomes.get(self.case.baseline)
        mine = self.outcomes[label].median
        if base is None or base.median is None or mine is None or base.median == 0:
            return None
        return mine / base.median


def missing_modules(impl: Impl) -> list[str]:
    """The modules ``impl`` requires that cannot be imported here."""
    return [name for name in impl.requires if importlib.util.find_spec(name) is None]


def child_env(lwps: int | None) -> dict[str, str]:
    """The environment of every benchmark subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SOURCE_ROOT), env.get("PYTHONPATH")]))
    env.pop(LWPS_ENV, None)
    if lwps is not None:
        env[LWPS_ENV] = str(lwps)
    return env


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


_FRAME = re.compile(r'^  File "(?P<path>.+)", line (?P<line>\d+), in (?P<fn>.+)$', re.MULTILINE)


def _raised_at(traceback_text: str) -> str:
    """Where the innermost frame of a printed traceback was, as " (at file:line in fn)"."""
    frames = list(_FRAME.finditer(traceback_text))
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {Path(frame['path']).name}:{frame['line']} in {frame['fn']})"


def run_once(
    case: Case, impl: Impl, params: dict[str, Any], *, timeout: float, env: dict[str, str]
) -> dict[str, Any]:
    """One measurement in a fresh subprocess.

    Returns the child's result object (see :mod:`lwp.bench.child`), or
    ``{"error": ...}``; a child that printed its result but then failed to
    exit in time keeps its result, with a ``"warning"``.
    """
    cmd = [sys.executable, "-m", f"{__package__}.child", case.name, impl.label, json.dumps(params)]
    warning = None
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=timeout)
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        warning = f"subprocess killed after {timeout:g} s"
        proc = None
    tagged = [line[len(RESULT_TAG):] for line in stdout.splitlines() if line.startswith(RESULT_TAG)]
    if not tagged:
        if proc is None:
            return {"error": f"timed out after {timeout:g} s"}
        return {"error": f"exit status {proc.returncode}, no result: {_tail(stderr) or 'no output'}"}
    result = json.loads(tagged[-1])
    if "error" in result:
        result["error"] += _raised_at(stderr)
    elif warning:
        result["warning"] = warning + ", after it had printed its result"
    elif proc is not None and proc.returncode != 0:
        result["warning"] = f"exit status {proc.returncode} after printing its result: {_tail(stderr)}"
    return result


def run_order(impls: list[Impl], round_no: int) -> list[Impl]:
    """One round's order: from ``impls[round_no]`` (cyclically), forward on even rounds, backward on odd."""
    step = -1 if round_no % 2 else 1
    return [impls[(round_no + step * k) % len(impls)] for k in range(len(impls))]


def run_case(
    case: Case,
    *,
    quick: bool,
    rounds: int,
    libraries: set[str] | None = None,
    lwps: int | None = None,
    timeout: float = 600.0,
    progress: Callable[[str], None] = lambda message: None,
) -> CaseResult:
    """Measure every implementation of ``case`` (of ``libraries``, if given) ``rounds`` times."""
    params = case.sizes(quick)
    env = child_env(lwps)
    outcomes: dict[str, Outcome] = {}
    active: list[Impl] = []
    for impl in case.impls.values():
        if libraries is not None and impl.library not in libraries:
            continue
        outcome = outcomes[impl.label] = Outcome(impl.label, impl.library, impl.note)
        missing = missing_modules(impl)
        if missing:
            outcome.status = NOT_INSTALLED
            outcome.error = "missing " + ", ".join(missing)
        else:
            active.append(impl)

    for round_no in range(rounds):
        for impl in run_order(active, round_no):
            outcome = outcomes[impl.label]
            if outcome.status != OK:
                continue
            progress(f"{case.name} round {round_no + 1}/{rounds}: {impl.label}")
            result = run_once(case, impl, params, timeout=timeout, env=env)
            if "error" in result:
                outcome.status, outcome.error = ERROR, result["error"]
                continue
            outcome.samples.extend(result["samples"])
            if result.get("p99") is not None:
                outcome.p99s.append(result["p99"])
            if result.get("lwp_stats") is not None:
                outcome.lwp_stats.append(result["lwp_stats"])
            if result.get("warning"):
                outcome.warnings.append(result["warning"])
    return CaseResult(case, params, outcomes)
