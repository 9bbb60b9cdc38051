"""Benchmarks of lwp against its peers: ``python -m lwp.bench [case ...]``.

Running it
----------
::

    python -m lwp.bench                   # every case, 5 rounds, saves bench-results.json
    python -m lwp.bench spawn_join        # some cases only
    python -m lwp.bench --list            # the cases and the libraries each compares
    python -m lwp.bench --quick           # tiny sizes, 1 round: a smoke test (CI), not a measurement
    python -m lwp.bench --rounds 9 --json out.json --libs lwp,gevent --lwps 2

The peers (gevent, trio) come with ``pip install lwp[bench]``; asyncio and
threading are always there. A peer that is not installed is reported as
"not installed". The exit status is 1 if any implementation failed (its row
reads "error: ..."), so a smoke run in CI catches a broken case.

How it measures
---------------
Every measurement is one implementation of one case in a fresh ``python``
subprocess, so that libraries never share an interpreter (monkey-patching,
leftover kernel threads, allocator state) and RSS starts clean. Each case
runs ``--rounds`` rounds; in each round every library runs once, in an order
that changes from round to round (who goes first, who follows whom). The
machines this runs on have 2 noisy cores, so only numbers from the same run
are compared, and each number is the median over rounds. Inside a
subprocess, an implementation first does a tenth of its work unmeasured
(warm-up), then times the rest.

Reading the table
-----------------
Each case prints its parameters, unit and direction ("lower is better"), then
one row per library:

* ``median``: the median over rounds of what one round measured;
* ``p99`` (hand-off cases): each round's 99th percentile over its individual
  operations, median over rounds; it shows stalls the mean hides;
* ``spread``: (max - min) / median over the rounds; a large spread means the
  machine was noisy and the ratio is uncertain to about that much;
* ``runs``: samples behind the median;
* ``vs lwp``: this library's median divided by lwp's. For a cost ("lower is
  better") a ratio above 1 means lwp is that many times cheaper.

Lines starting with ``*`` say where a peer departs from the plain
comparison (trio's idioms, capped kernel thread counts, the greenlet floor)
and how many LWPs each lwp row ran on; ``!`` flags a measurement that ended
badly but still produced a number. The header gives the load average before
and after the run: a load near or above the core count means other work
competed with the benchmark, and its numbers are worth less.

The JSON (``--json``, default ``bench-results.json``) holds the machine block
(host, platform, CPU, cores, Python, library versions, lwp commit, load,
date), the settings, and per case per library every sample, the median,
p99, unit, ratio and status, and for lwp rows ``lwp.stats()`` at the end of
each run.

Adding a case
-------------
A case is declarative: make a :class:`~lwp.bench.case.Case` in a
``cases_*.py`` module of this package (add a new module's name to
``case.GROUPS``) and register one function per library::

    tcp_echo = Case(name="tcp_echo", description="...", unit="us/op",
                    params={"n": 10_000}, quick={"n": 100}, tail=True)

    @tcp_echo.impl("lwp")
    def _lwp(n):
        return lwp_run(lambda: ..., lwps=1)    # returns us per op, or a list

    @tcp_echo.impl("gevent", requires="gevent")
    def _gevent(n): ...

Each function runs alone in a subprocess with the case's parameters as
keyword arguments; it imports its library itself and returns a number (one
sample) or, for a ``tail=True`` case, one number per operation. lwp rows go
through :func:`~lwp.bench.threads.lwp_run`, so that ``--lwps`` applies and
``lwp.stats()`` is recorded. Shared drivers for thread-style libraries take a
:data:`~lwp.bench.threads.Starter` (``lwp_thread``, ``gevent_thread``,
``kernel_thread``); timing and RSS helpers are in :mod:`lwp.bench.measure`.
Run ``python -m lwp.bench NAME --quick`` to try it; ``tests/test_bench.py``
then covers it in CI.

Modules: :mod:`~lwp.bench.case` (what a case is), :mod:`~lwp.bench.harness`
(rounds of subprocesses), :mod:`~lwp.bench.child` (the subprocess),
:mod:`~lwp.bench.measure` and :mod:`~lwp.bench.threads` (tools for
implementations), :mod:`~lwp.bench.machine` and :mod:`~lwp.bench.report`
(the machine block, table and JSON), ``cases_*`` (the cases).
"""
