"""Where a parked green thread's memory goes: the table of docs/performance.rst.

``python -m lwp.bench parked_memory`` gives one number per library (RSS growth
per parked thread); this script splits lwp's into its parts.  Each part is
measured in a fresh child process over ``N`` objects:

* ``unstarted``: greenlets created, never switched to: the greenlet object
  and its C++ state, nothing else.
* ``bare``: greenlets started and parked straight away (``run`` switches
  back to the parent).  Starting one maps it a 16 KiB chunk of CPython's
  *data stack* (where 3.11+ keeps Python frames), of which the parked frame
  touches one page, and greenlet copies the C stack it used to the heap
  (``greenlet._stack_saved``).
* ``lwp``: ``N`` lwp threads parked on one :class:`lwp.Event` on one LWP;
  and, for its saved C stack only, one thread parked in a socket's ``recv``.

Each kind is run twice: for RSS (as the benchmark reads it), and under
``tracemalloc`` for what Python's allocators hand out (the data stack comes
from ``mmap`` and is not traced).  The lwp run also lists its largest traced
growths by source line beyond the bare greenlet's.

    python docs/figures/measure_parked_memory.py      # writes docs/figures/parked_memory.json

Then run docs/figures/make_figures.py.
"""

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

from origin import ROOT, machine

from lwp.bench.measure import rss_bytes

HERE = Path(__file__).resolve().parent
N = 100_000


def park_greenlets(n, start):
    import greenlet

    parent = greenlet.getcurrent()

    def park():  # a Python frame, as every green thread has
        parent.switch()

    gs = [greenlet.greenlet(park) for _ in range(n)]
    if start:
        for g in gs:
            g.switch()
    return gs, gs[-1]._stack_saved if start else 0


def recv_stack_saved():
    """The C stack saved for a thread parked in a socket's ``recv``."""
    import lwp
    from lwp import socket

    a, b = socket.socketpair()
    with a, b:
        t = lwp.spawn(a.recv, 1)
        while t._glet is None or not t._glet._stack_saved:
            lwp.sleep(0.01)
        saved = t._glet._stack_saved
        b.send(b"x")
        t.join()
    return saved


def park_lwp_threads(n, measure):
    import lwp

    def main():
        event = lwp.Event()

        def waiter():  # as python -m lwp.bench parked_memory's
            event.wait()

        threads = [lwp.spawn(waiter) for _ in range(n)]
        while sum(t._glet is not None for t in threads[-10:]) < 10:
            lwp.sleep(0.01)
        lwp.sleep(0.05)
        result = measure(), threads[-1]._glet._stack_saved, recv_stack_saved()
        event.set()
        for t in threads:
            t.join()
        return result

    return lwp.run(main, lwps=1, monitor=False)


def child(kind, traced):
    """Runs in the child: the growth per object of ``kind``, RSS or traced."""
    if traced:
        tracemalloc.start()
    gc.collect()
    snap0 = tracemalloc.take_snapshot() if traced else None
    before = tracemalloc.get_traced_memory()[0] if traced else rss_bytes()

    def measure():
        gc.collect()
        grown = (tracemalloc.get_traced_memory()[0] if traced else rss_bytes()) - before
        lines = []
        if traced and kind == "lwp":
            stats = tracemalloc.take_snapshot().compare_to(snap0, "lineno")
            lines = [(str(s.traceback[0]).replace(str(ROOT) + os.sep, ""), s.size_diff / N)
                     for s in stats[:6] if s.size_diff / N >= 8]
        return grown / N, lines

    recv_saved = None
    if kind == "lwp":
        (per, lines), saved, recv_saved = park_lwp_threads(N, measure)
    else:
        keep, saved = park_greenlets(N, kind == "bare")
        per, lines = measure()
    print(json.dumps({"per": per, "stack_saved": saved, "recv_stack_saved": recv_saved,
                      "lines": lines}))


def run_child(kind, traced):
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(int(traced))],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
    return json.loads(out)


def main():
    r = {kind: {"rss": run_child(kind, False), "traced": run_child(kind, True)}
         for kind in ("unstarted", "bare", "lwp")}
    import greenlet

    result = {
        "machine": dict(machine(), greenlet=greenlet.__version__), "n": N,
        "greenlet_object": r["unstarted"]["rss"]["per"],
        "bare_rss": r["bare"]["rss"]["per"],
        "bare_traced": r["bare"]["traced"]["per"],
        "unstarted_traced": r["unstarted"]["traced"]["per"],
        "bare_stack_saved": r["bare"]["rss"]["stack_saved"],
        "lwp_rss": r["lwp"]["rss"]["per"],
        "lwp_traced": r["lwp"]["traced"]["per"],
        "lwp_stack_saved": r["lwp"]["rss"]["stack_saved"],
        "recv_stack_saved": r["lwp"]["rss"]["recv_stack_saved"],
        "lwp_lines": r["lwp"]["traced"]["lines"],
    }
    # What starting a greenlet adds that no Python allocator hands out: the data-stack page.
    result["data_stack"] = (result["bare_rss"] - result["greenlet_object"]
                            - (result["bare_traced"] - result["unstarted_traced"]))
    (HERE / "parked_memory.json").write_text(json.dumps(result, indent=1) + "\n")
    for key, value in result.items():
        if key != "machine":
            print(f"{key:18s} {value}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3] == "1")
    else:
        main()
