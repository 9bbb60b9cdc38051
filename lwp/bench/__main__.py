"""``python -m lwp.bench``: the command line; see :mod:`lwp.bench` for how to read it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import harness, machine, report
from .case import all_cases


def parse_args(argv: list[str] | None, case_names: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lwp.bench",
        description="Benchmark lwp against its peers, each measurement in a fresh subprocess.",
    )
    parser.add_argument("cases", nargs="*", metavar="case", help="cases to run (default: all; see --list)")
    parser.add_argument("--list", action="store_true", help="list the cases and their libraries, then exit")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 round: a smoke test, not a measurement")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case (default 5, or 1 with --quick)")
    parser.add_argument("--lwps", type=int, default=None, help="LWPs for lwp rows that do not pin their own count")
    parser.add_argument(
        "--libs", default=None, help="comma-separated libraries to run, e.g. lwp,gevent (default: all)"
    )
    parser.add_argument(
        "--json", type=Path, default=Path("bench-results.json"), metavar="PATH", help="where to save the results"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds before one measurement counts as hung (600, --quick 60)"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases if name not in case_names]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(case_names)}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.lwps is not None and args.lwps < 1:
        parser.error("--lwps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases; exit status 1 if any implementation failed."""
    cases = all_cases()
    args = parse_args(argv, list(cases))
    selected = [cases[name] for name in (args.cases or cases)]

    if args.list:
        for case in selected:
            labels = ", ".join(case.impls)
            print(f"{case.name:16} {case.description} [{case.unit}]\n{'':16} {labels}")
        return 0

    libraries = set(args.libs.split(",")) if args.libs else None
    known = {impl.library for case in selected for impl in case.impls.values()}
    if libraries is not None and not libraries <= known:
        print(f"unknown librar(ies) {', '.join(sorted(libraries - known))}; known: {', '.join(sorted(known))}",
              file=sys.stderr)
        return 2
    rounds = args.rounds or (1 if args.quick else 5)
    timeout = args.timeout or (60.0 if args.quick else 600.0)
    settings = {
        "rounds": rounds,
        "quick": args.quick,
        "lwps": args.lwps,
        "libraries": sorted(libraries) if libraries else "all",
        "argv": sys.argv[1:] if argv is None else argv,
    }
    names = {"lwp", "greenlet"} | {m for case in selected for impl in case.impls.values() for m in impl.requires}
    machine_block = machine.describe(names)

    def progress(message: str) -> None:
        print(f"  .. {message}", file=sys.stderr, flush=True)

    results = [
        harness.run_case(
            case,
            quick=args.quick,
            rounds=rounds,
            libraries=libraries,
            lwps=args.lwps,
            timeout=timeout,
            progress=progress,
        )
        for case in selected
    ]
    machine_block["loadavg_end"] = machine.loadavg()
    print(report.table(results, machine_block, settings), flush=True)
    report.save(report.to_json(results, machine_block, settings), args.json)
    print(f"\nsaved {args.json}")
    failed = any(o.status == harness.ERROR for r in results for o in r.outcomes.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
