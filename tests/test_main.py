"""``python -m lwp``: the demo runs, prints progress and per-LWP statistics."""

import subprocess
import sys

import pytest


def test_demo_runs_and_prints_stats():
    out = subprocess.run([sys.executable, "-m", "lwp", "--threads", "300", "--lwps", "2",
                          "--rounds", "3"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "300 green threads on 2 LWPs: 900 steps" in out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert len(rows) == 2
    assert sum(int(r[2]) for r in rows) >= 300


@pytest.mark.parametrize("args", [["--threads", "0"], ["--lwps", "0"], ["--rounds", "-1"]])
def test_demo_rejects_bad_arguments(args):
    out = subprocess.run([sys.executable, "-m", "lwp", *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and args[0] in out.stderr and "Traceback" not in out.stderr
