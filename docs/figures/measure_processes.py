"""Measure what ``python -m lwp.bench`` does not: the cost of processes.

The table "processes vs kernel threads vs green threads" in
docs/concepts/processes-and-threads.rst takes its thread and green-thread
rows from the benchmark (``spawn_join``, ``event_handoff``); this script adds
the process rows, measured the same way (medians of rounds, in Python, on the
same machine):

* ``fork_wait``: ``os.fork()``, the child ``os._exit(0)``, the parent
  ``os.waitpid``: create a process and wait for it (a copy of this one);
* ``spawn_wait``: ``os.posix_spawn`` of ``/bin/true`` and ``os.waitpid``: a
  new program (fork + exec);
* ``pipe_pingpong``: two processes pass one byte back and forth over two
  pipes; time per one-way hand-off (each is a wake-up of a blocked process
  and, on a busy machine, a context switch);
* ``thread_pipe_pingpong``: the same between two kernel threads of one
  process (each side also takes the interpreter lock back after its read).

    python docs/figures/measure_processes.py            # writes docs/figures/processes.json

Then run docs/figures/make_figures.py.
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path

from origin import machine

HERE = Path(__file__).resolve().parent
ROUNDS = 9


def fork_wait(n):
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - t0) / n * 1e6


def spawn_wait(n):
    true = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn(true, [true], os.environ)
        os.waitpid(pid, 0)
    return (time.perf_counter() - t0) / n * 1e6


def pipe_pingpong(n):
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(n):
                os.read(a_r, 1)
                os.write(b_w, b"x")
        finally:
            os._exit(0)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(a_w, b"x")
        os.read(b_r, 1)
    elapsed = time.perf_counter() - t0
    os.waitpid(pid, 0)
    for fd in (a_r, a_w, b_r, b_w):
        os.close(fd)
    return elapsed / (2 * n) * 1e6


def thread_pipe_pingpong(n):
    """The same ping-pong between two kernel threads of this process."""
    import threading

    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()

    def echo():
        for _ in range(n):
            os.read(a_r, 1)
            os.write(b_w, b"x")

    t = threading.Thread(target=echo)
    t.start()
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(a_w, b"x")
        os.read(b_r, 1)
    elapsed = time.perf_counter() - t0
    t.join()
    for fd in (a_r, a_w, b_r, b_w):
        os.close(fd)
    return elapsed / (2 * n) * 1e6


CASES = {"fork_wait": (fork_wait, 300), "spawn_wait": (spawn_wait, 300),
         "pipe_pingpong": (pipe_pingpong, 20_000),
         "thread_pipe_pingpong": (thread_pipe_pingpong, 20_000)}


def main():
    out = {"machine": machine(),
           "unit": "us/op", "rounds": ROUNDS, "cases": {}}
    for name, (fn, n) in CASES.items():
        fn(n // 10)  # warm-up
        samples = [fn(n) for _ in range(ROUNDS)]
        out["cases"][name] = {"n": n, "samples": samples, "median": statistics.median(samples)}
        print(f"{name:14} {statistics.median(samples):9.1f} us/op", file=sys.stderr)
    (HERE / "processes.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
