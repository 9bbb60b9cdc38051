"""Presenting results: the printed table and the saved JSON.

The table is for a person comparing libraries on this machine now; the JSON is
for keeping and comparing runs, and holds every sample so that other
statistics can be computed later. Both carry the machine block, because a
ratio means nothing without the machine it was measured on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .harness import ERROR, OK, CaseResult, Outcome

SCHEMA = "lwp-bench/1"


def fmt_value(value: float | None) -> str:
    """About three significant digits, with thousands separators for large values."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def spread(outcome: Outcome) -> str:
    """(max - min) / median over the samples: how much the rounds disagreed."""
    median = outcome.median
    if median is None or len(outcome.samples) < 2 or median == 0:
        return "-"
    return f"{(max(outcome.samples) - min(outcome.samples)) / median:.0%}"


def _case_lines(result: CaseResult) -> list[str]:
    case = result.case
    sizes = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in result.params.items())
    lines = [
        f"{case.name}: {case.description}",
        f"  {sizes}; {case.unit}, {case.better} is better; ratio = median / {case.baseline} median",
    ]
    header = ["median"] + (["p99"] if case.tail else []) + ["spread", "runs", f"vs {case.baseline}"]
    widths = [max(9, len(h) + 2) for h in header]
    label_width = max([len("library"), *(len(label) for label in result.outcomes)])
    lines.append("  " + "library".ljust(label_width) + "".join(h.rjust(w) for h, w in zip(header, widths)))
    for label, outcome in result.outcomes.items():
        if outcome.status != OK:
            reason = outcome.status if outcome.status != ERROR else f"error: {outcome.error}"
            lines.append(f"  {label.ljust(label_width)}  {reason[:110]}")
            continue
        cells = [fmt_value(outcome.median)]
        cells += [fmt_value(outcome.p99)] if case.tail else []
        cells += [spread(outcome), str(len(outcome.samples)), fmt_ratio(result.ratio(label))]
        lines.append("  " + label.ljust(label_width) + "".join(c.rjust(w) for c, w in zip(cells, widths)))
    for label, outcome in result.outcomes.items():
        count = outcome.lwp_count
        ran_on = f"ran on {count} LWP{'s' if count != 1 else ''}" if count else ""
        if outcome.note or ran_on:
            lines.append(f"  * {label}: " + "; ".join(filter(None, [outcome.note, ran_on])))
        for warning in outcome.warnings:
            lines.append(f"  ! {label}: {warning}")
    return lines


def table(results: Iterable[CaseResult], machine: dict[str, Any], settings: dict[str, Any]) -> str:
    """The whole printed report: a header with the machine, then one block per case."""
    libs = ", ".join(f"{name} {version}" for name, version in machine["libraries"].items())
    commit = machine.get("lwp_commit")
    mode = " --quick" if settings["quick"] else ""
    lines = [
        f"lwp bench, {machine['date']}: {settings['rounds']} round(s){mode}, each measurement in a fresh "
        + "process, library order varying per round; medians over rounds",
        f"machine: {machine['hostname']}, {machine['cpu']}, {machine['nproc']} cores, {machine['platform']}, "
        + machine["python"],
        f"libraries: {libs}" + (f"; lwp commit {commit[:12]}" if commit else ""),
        f"load average {machine['loadavg']} at start, {machine.get('loadavg_end', '?')} at end"
        + (f"; --lwps {settings['lwps']}" if settings.get("lwps") else ""),
    ]
    for result in results:
        lines.append("")
        lines += _case_lines(result)
    return "\n".join(lines)


def _outcome_json(result: CaseResult, label: str, outcome: Outcome) -> dict[str, Any]:
    return {
        "library": outcome.library,
        "status": outcome.status,
        "unit": result.case.unit,
        "samples": outcome.samples,
        "median": outcome.median,
        "p99": outcome.p99,
        "p99_samples": outcome.p99s,
        f"ratio_vs_{result.case.baseline}": result.ratio(label),
        "note": outcome.note,
        "error": outcome.error,
        "warnings": outcome.warnings,
        "lwp_stats": outcome.lwp_stats or None,
    }


def to_json(results: Iterable[CaseResult], machine: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The saved document: schema tag, machine block, settings, and per case per library results."""
    return {
        "schema": SCHEMA,
        "machine": machine,
        "settings": settings,
        "cases": {
            r.case.name: {
                "description": r.case.description,
                "unit": r.case.unit,
                "better": r.case.better,
                "baseline": r.case.baseline,
                "p99": "per-operation p99 of each run, median over runs" if r.case.tail else None,
                "params": r.params,
                "results": {label: _outcome_json(r, label, o) for label, o in r.outcomes.items()},
            }
            for r in results
        },
    }


def save(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
