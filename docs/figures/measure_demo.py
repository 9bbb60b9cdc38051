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
import re
import subprocess
import sys
from pathlib import Path

from origin import machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNS = 5
THREADS = 10_000
LWPS = (1, 2)


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
           "machine": machine(),
           "runs": {str(n): [] for n in LWPS}}
    doc["machine"]["loadavg_start"] = doc["machine"].pop("loadavg")
    for i in range(RUNS):
        for n in LWPS:
            run = run_once(n)
            doc["runs"][str(n)].append(run)
            print(f"run {i + 1}/{RUNS}, {n} LWP(s): {run['seconds']:.2f} s", file=sys.stderr)
    doc["machine"]["loadavg_end"] = os.getloadavg()
    (HERE / "demo.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
