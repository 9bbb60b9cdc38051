"""Time the demo, ``python -m lwp --threads 10000``, on 1 and on 2 LWPs.

The tuning guide (docs/howto/tuning.rst) quotes these runs to show what a
second LWP costs under the GIL when no thread ever blocks in the kernel.
Runs alternate between the LWP counts so that a burst of noise on the
(shared) machine hits both.

    python docs/figures/measure_demo.py          # writes docs/figures/demo.json

Then run docs/figures/make_figures.py.
"""

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNS = 5
THREADS = 10_000
LWPS = (1, 2)


def git_describe():
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_once(lwps):
    out = subprocess.run([sys.executable, "-m", "lwp", "--threads", str(THREADS),
                          "--lwps", str(lwps)], capture_output=True, text=True, check=True,
                         timeout=300).stdout
    seconds = float(re.search(r"steps in ([\d.]+) s", out).group(1))
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s+pooled", line)]
    stats = [{"lwp": int(r[0]), "threads_run": int(r[2]), "switches": int(r[3]),
              "steals": int(r[4]), "remote_wakeups": int(r[5]), "parked_s": float(r[6])}
             for r in rows]
    return {"seconds": seconds, "stats": stats}


def main():
    doc = {"command": f"python -m lwp --threads {THREADS} --lwps N",
           "machine": {"host": platform.node(), "cpu_count": os.cpu_count(),
                       "python": platform.python_version(), "platform": platform.platform(),
                       "lwp": git_describe(), "loadavg_start": os.getloadavg(),
                       "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
           "runs": {str(n): [] for n in LWPS}}
    try:
        with open("/proc/cpuinfo") as f:
            doc["machine"]["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                                         if line.startswith("model name"))
    except (OSError, StopIteration):
        doc["machine"]["cpu"] = platform.processor() or "unknown"
    for i in range(RUNS):
        for n in LWPS:
            run = run_once(n)
            doc["runs"][str(n)].append(run)
            print(f"run {i + 1}/{RUNS}, {n} LWP(s): {run['seconds']:.2f} s", file=sys.stderr)
    doc["machine"]["loadavg_end"] = os.getloadavg()
    (HERE / "demo.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
