"""The benchmark command works end to end, and its harness degrades instead of crashing.

The smoke test runs ``python -m lwp.bench --quick`` exactly as CI and a
developer would; it checks the report's shape, not the numbers, which are
meaningless at --quick sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lwp.bench import harness
from lwp.bench.case import Case, all_cases
from lwp.bench.child import percentile, reduce

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("name", sorted(all_cases()))
def test_quick_run_prints_table_and_saves_the_case(tmp_path: Path, name: str) -> None:
    """One quick run per case, so that each fits well inside the per-test timeout."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "lwp.bench", "--quick", name, "--json", str(out)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = all_cases()
    assert f"{name}: " in proc.stdout
    assert "vs lwp" in proc.stdout

    document = json.loads(out.read_text())
    machine = document["machine"]
    for key in ("hostname", "platform", "cpu", "nproc", "python", "libraries", "date"):
        assert machine[key], key
    assert "lwp" in machine["libraries"]
    assert set(document["cases"]) == {name}
    lwp_result = document["cases"][name]["results"]["lwp"]
    assert lwp_result["status"] == "ok", (name, lwp_result)
    assert lwp_result["median"] > 0
    assert lwp_result["unit"] == cases[name].unit
    assert lwp_result["samples"]
    assert lwp_result["ratio_vs_lwp"] == 1.0


def test_list_names_every_case() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lwp.bench", "--list"], env=_env(), capture_output=True, text=True, check=False, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    for name in all_cases():
        assert name in proc.stdout


def test_missing_peer_is_not_installed_and_runs_nothing() -> None:
    case = Case(
        name="_test_missing_peer",
        description="a peer that cannot be imported",
        unit="us/op",
        params={"n": 1},
        quick={"n": 1},
        register=False,
    )

    @case.impl("ghost", requires="no_such_module_for_lwp_bench")
    def _ghost(n: int) -> float:
        raise AssertionError("must not run")

    result = harness.run_case(case, quick=True, rounds=2)
    outcome = result.outcomes["ghost"]
    assert outcome.status == harness.NOT_INSTALLED
    assert outcome.median is None and result.ratio("ghost") is None


def test_failing_implementation_is_an_error_not_a_crash() -> None:
    case = all_cases()["spawn_join"]
    result = harness.run_once(
        case, case.impls["asyncio"], {"n": "not a number"}, timeout=30, env=harness.child_env(None)
    )
    assert result["error"].startswith("TypeError"), result


def test_rounds_rotate_who_goes_first_and_who_follows_whom() -> None:
    impls = list(all_cases()["event_handoff"].impls.values())
    orders = [harness.run_order(impls, round_no) for round_no in range(len(impls))]
    assert all(sorted(o, key=id) == sorted(impls, key=id) for o in orders)
    assert len({id(o[0]) for o in orders}) == len(impls)
    assert orders[0][1] is not orders[1][1]


def test_tail_case_keeps_mean_and_p99() -> None:
    tail_case = all_cases()["event_handoff"]
    values = [1.0] * 99 + [101.0]
    assert reduce(tail_case, values) == {"samples": [2.0], "p99": 1.0}
    assert percentile(values, 1.0) == 101.0
    assert reduce(all_cases()["spawn_join"], 3) == {"samples": [3.0], "p99": None}


def test_parked_million_command_reports_every_phase() -> None:
    """The opt-in million-thread run (here with 300): RSS and the four phase times."""
    proc = subprocess.run([sys.executable, "-m", "lwp.bench.cases_memory", "--n", "300", "--lwps", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("300 threads parked on one Event: RSS grew ")
    for phase in ("spawn", "all parked after", "Event.set", "join all"):
        assert phase in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "lwp.bench.cases_memory", "--n", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--n must be at least 1" in bad.stderr


# What wrk 4.1 printed for a server that accepts and never answers (captured here).
_WRK_SILENT = """Running 1s test @ http://127.0.0.1:59805/
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 1.00s, 0.00B read
Requests/sec:      0.00
Transfer/sec:       0.00B
"""


def test_a_server_that_answered_nothing_is_an_error_not_a_throughput_of_zero() -> None:
    from lwp.bench.servers import parse_echo, parse_wrk

    with pytest.raises(RuntimeError, match="no request"):
        parse_wrk(_WRK_SILENT)
    with pytest.raises(RuntimeError, match="no round trip"):
        parse_echo("0 5.0000 0.0 0.0 0\n")
    answered = _WRK_SILENT.replace("Requests/sec:      0.00", "Requests/sec:  41000.50").replace(
        "99%    0.00us", "99%    4.66ms")
    assert parse_wrk(answered) == {"samples": [41000.5], "p99": 4660.0}
    assert parse_echo("200 2.0000 10.0 30.5 0\n") == {"samples": [100.0], "p99": 30.5}
