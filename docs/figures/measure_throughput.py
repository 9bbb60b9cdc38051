"""Check the throughput model of docs/concepts/throughput.rst against lwp.

Each request needs ``X`` seconds of CPU (a busy loop in Python) and ``Y``
seconds of waiting (``lwp.sleep``, standing in for a disk or a remote
server that can serve many requests at once).  ``W`` worker green threads on
one LWP take requests from a queue for ``DURATION`` seconds; the script
records requests per second for each ``W`` next to the model's prediction.
Two kinds of device: ``parallel`` serves any number of requests at once (a
remote server): ``min(W / (X + Y), 1 / X)``; ``single`` serves one at a time
(one disk; the wait is made holding an ``lwp.Lock``):
``min(W / (X + Y), 1 / X, 1 / Y)``; ``single-yield`` is the same device, but
a worker yields (``lwp.sleep(0)``) after releasing it, so that the next
request reaches the device before this worker computes again.

    python docs/figures/measure_throughput.py      # writes docs/figures/throughput.json

Then run docs/figures/make_figures.py.
"""

import json
import sys
import time
from pathlib import Path

from origin import machine

import lwp

HERE = Path(__file__).resolve().parent
X, Y = 0.001, 0.004          # seconds of CPU and of waiting per request
WORKERS = (1, 2, 3, 4, 5, 6, 8, 12, 16)
DURATION = 1.0


def serve(workers, device):
    done = [0]
    stop = lwp.Event()
    disk = lwp.Lock() if device.startswith("single") else None

    def worker():
        while not stop.is_set():
            end = time.perf_counter() + X
            while time.perf_counter() < end:   # X of CPU: no scheduling point
                pass
            if disk is None:
                lwp.sleep(Y)                     # Y of waiting: the LWP runs others
            else:
                with disk:                       # one request at a time on the device
                    lwp.sleep(Y)
                if device == "single-yield":
                    lwp.sleep(0)                 # let the next request reach the device first
            done[0] += 1

    def main():
        threads = [lwp.spawn(worker) for _ in range(workers)]
        lwp.sleep(DURATION / 10)                 # warm-up
        start, before = time.perf_counter(), done[0]
        lwp.sleep(DURATION)
        rate = (done[0] - before) / (time.perf_counter() - start)
        stop.set()
        for t in threads:
            t.join()
        return rate

    return lwp.run(main, lwps=1)


def main():
    doc = {"X": X, "Y": Y, "duration": DURATION, "lwps": 1,
           "machine": machine(),
           "points": []}
    for device in ("parallel", "single", "single-yield"):
        for w in WORKERS:
            rate = serve(w, device)
            model = min(w / (X + Y), 1 / X) if device == "parallel" else min(w / (X + Y), 1 / X, 1 / Y)
            doc["points"].append({"device": device, "workers": w, "measured": rate, "model": model})
            print(f"{device:8} W={w:3}: {rate:7.0f} req/s (model {model:6.0f})", file=sys.stderr)
    (HERE / "throughput.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
