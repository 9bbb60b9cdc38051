"""Make the documentation's tables and plots from measured results.

Inputs (all committed, all made by a command on a named machine):

* ``docs/bench-results.json``: ``python -m lwp.bench --rounds 3 --json docs/bench-results.json``
* ``docs/figures/processes.json``: ``python docs/figures/measure_processes.py``
* ``docs/figures/demo.json``: ``python docs/figures/measure_demo.py``
* ``docs/figures/throughput.json``: ``python docs/figures/measure_throughput.py``
* ``docs/figures/parked_memory.json``: ``python docs/figures/measure_parked_memory.py``

Outputs, in ``docs/figures/`` (or ``--out``):

* ``*.rst``: tables, pulled into pages with ``.. include::``;
* ``*.png``: plots, made only when matplotlib is installed (the PNGs are
  committed, so building the docs never needs matplotlib).

Every table and plot names the machine and the date of its measurement.

    python docs/figures/make_figures.py                  # tables and plots
    python docs/figures/make_figures.py --tables-only    # what tests/test_docs.py checks
"""

import argparse
import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent
BENCH = DOCS / "bench-results.json"
PROCESSES = HERE / "processes.json"
DEMO = HERE / "demo.json"
THROUGHPUT = HERE / "throughput.json"
MEMORY = HERE / "parked_memory.json"
DEVICES = ("parallel", "single", "single-yield")


def fmt(value):
    """About three significant digits, as the benchmark's own table prints them."""
    if value is None:
        return "n/a"  # not "-": alone in a list-table cell it would become a bullet
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(ratio):
    if ratio is None:
        return "n/a"
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def spread(samples, median):
    if median in (None, 0) or len(samples) < 2:
        return "n/a"
    return f"{(max(samples) - min(samples)) / median:.0%}"


def lwp_count(result):
    """How many pooled LWPs an lwp row ran on, as the benchmark's table says (None if it varied)."""
    stats = result.get("lwp_stats") or []
    counts = {sum(1 for lwp in run if lwp.get("kind") == "pooled") for run in stats}
    return counts.pop() if len(counts) == 1 else None


def compensating(result):
    """The most compensating LWPs alive at the end of a run of an lwp row."""
    stats = result.get("lwp_stats") or []
    return max((sum(1 for lwp in run if lwp.get("kind") == "compensating") for run in stats),
               default=0)


def day(date):
    return date[:10]


def bench_origin(bench):
    m = bench["machine"]
    return (f"{m['hostname']} ({m['cpu']}, {m['nproc']} cores, {m['python']}), "
            f"{day(m['date'])}")


def list_table(header, rows, widths=None):
    """An RST list-table (robust to commas and markup in cells); no header if ``header`` is None."""
    lines = [".. list-table::", f"   :header-rows: {0 if header is None else 1}"]
    if widths:
        lines.append(f"   :widths: {' '.join(str(w) for w in widths)}")
    lines.append("")
    for row in ([] if header is None else [header]) + rows:
        first = True
        for cell in row:
            lines.append(f"   {'* -' if first else '  -'} {cell}")
            first = False
    return "\n".join(lines) + "\n"


# -- tables ------------------------------------------------------------------------------------


def machine_table(bench):
    m, s = bench["machine"], bench["settings"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    rows = [
        ["host", f"{m['hostname']}: {m['cpu']}, {m['nproc']} cores (a shared virtual machine)"],
        ["system", m["platform"]],
        ["Python", m["python"]],
        ["libraries", libs],
        ["lwp commit", f"``{m['lwp_commit'][:12]}``" if m.get("lwp_commit") else "unknown"],
        ["date", m["date"]],
        ["load average", f"{m['loadavg']} at start, {m.get('loadavg_end', '?')} at end "
                         f"(1, 5, 15 minutes)"],
        ["command", "``python -m lwp.bench " + " ".join(s.get("argv", [])) + "``"],
        ["rounds", f"{s['rounds']} per case; each number is the median over rounds"],
    ]
    return list_table(None, rows, widths=[18, 82])


def case_table(bench, name):
    case = bench["cases"][name]
    tail = case.get("p99") is not None
    header = ["library", f"median ({case['unit']})"] + (["p99"] if tail else []) + [
        "spread", "runs", f"vs {case['baseline']}"]
    rows, notes = [], []
    for label, r in case["results"].items():
        if r["status"] != "ok":
            reason = r["status"] if r["status"] != "error" else f"error: {r['error']}"
            rows.append([label, reason] + [""] * (len(header) - 2))
            continue
        ratio = r.get(f"ratio_vs_{case['baseline']}")
        cells = [label, fmt(r["median"])] + ([fmt(r["p99"])] if tail else [])
        cells += [spread(r["samples"], r["median"]), str(len(r["samples"])), fmt_ratio(ratio)]
        rows.append(cells)
        count, extra = lwp_count(r), compensating(r)
        ran_on = f"ran on {count} LWP{'s' if count != 1 else ''}" if count else ""
        if extra:
            ran_on += f" (and {extra} compensating LWP{'s' if extra != 1 else ''} alive at the end of a run)"
        note = "; ".join(x for x in (r.get("note"), ran_on) if x)
        if note:
            notes.append(f"* **{label}**: {note}")
        notes += [f"* **{label}** (warning): {w}" for w in r.get("warnings", [])]
    params = ", ".join(f"{k}={v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}"
                       for k, v in case["params"].items())
    text = (f"*{case['description']}*; {params}; {case['unit']}, **{case['better']} is better**.\n\n"
            + list_table(header, rows) + "\n")
    if notes:
        text += "\n".join(notes) + "\n\n"
    text += f"Measured on {bench_origin(bench)}.\n"
    return text


def costs_table(bench, procs):
    """Processes vs kernel threads vs green threads: spawn, hand-off, memory."""
    c = bench["cases"]

    def b(case, label):
        r = c.get(case, {}).get("results", {}).get(label)
        return fmt(r["median"]) if r and r["status"] == "ok" else "n/a"

    def p(case):
        r = procs["cases"].get(case)
        return fmt(r["median"]) if r else "n/a"

    bm, pm = bench["machine"], procs["machine"]
    rows = [
        ["**spawn** and wait", "process: ``fork()``, child exits, ``waitpid()``", p("fork_wait"), "[P]"],
        ["", "process: ``posix_spawn(/bin/true)``, ``waitpid()``", p("spawn_wait"), "[P]"],
        ["", "kernel thread: ``threading.Thread(...).start()``, ``join()``",
         b("spawn_join", "threading"), "[B] spawn_join"],
        ["", "green thread: ``lwp.spawn(f).join()``, 1 LWP",
         b("spawn_join", "lwp lwps=1"), "[B] spawn_join"],
        ["**hand-off** (one way)", "two processes, one byte over pipes", p("pipe_pingpong"), "[P]"],
        ["", "two kernel threads, one byte over pipes", p("thread_pipe_pingpong"), "[P]"],
        ["", "two kernel threads, ``threading.Event``", b("event_handoff", "threading"),
         "[B] event_handoff"],
        ["", "two green threads, ``lwp.Event``, 1 LWP", b("event_handoff", "lwp"),
         "[B] event_handoff"],
        ["", "bare greenlet switch (the floor)", b("event_handoff", "greenlet switch"),
         "[B] event_handoff"],
    ]
    mem = [
        ["**memory** per parked thread", "kernel thread", b("parked_memory", "threading"),
         "[B] parked_memory"],
        ["", "green thread (lwp)", b("parked_memory", "lwp"), "[B] parked_memory"],
    ]
    text = list_table(["operation", "how", "µs", "source"], rows, widths=[18, 52, 10, 20])
    text += "\n" + list_table(["", "what", "bytes of RSS", "source"], mem, widths=[18, 52, 10, 20])
    text += (f"\n[B] ``python -m lwp.bench`` (see :doc:`/performance`), on {bench_origin(bench)}, "
             f"load average {bm['loadavg']}.  "
             f"[P] ``python docs/figures/measure_processes.py``, median of {procs['rounds']} rounds, "
             f"on {pm['host']} ({pm['cpu']}, {pm['cpu_count']} cores, Python {pm['python']}), "
             f"{day(pm['date'])}, load average {' '.join(f'{x:.2f}' for x in pm['loadavg'])}.\n")
    return text


def demo_table(demo):
    m = demo["machine"]
    rows = []
    for n, runs in demo["runs"].items():
        secs = [r["seconds"] for r in runs]
        steals = statistics.median(sum(s["steals"] for s in r["stats"]) for r in runs)
        remote = statistics.median(sum(s["remote_wakeups"] for s in r["stats"]) for r in runs)
        rows.append([n, f"{statistics.median(secs):.2f}", f"{min(secs):.2f} – {max(secs):.2f}",
                     str(len(secs)), f"{steals:,.0f}", f"{remote:,.0f}"])
    text = list_table(["LWPs", "median s", "range s", "runs", "steals", "remote wake-ups"], rows)
    la0 = " ".join(f"{x:.2f}" for x in m["loadavg_start"])
    la1 = " ".join(f"{x:.2f}" for x in m["loadavg_end"])
    text += (f"\n``{demo['command']}`` (10,000 threads × 20 rounds of a short sleep and a "
             f"locked counter), runs alternating between 1 and 2 LWPs; steals and remote "
             f"wake-ups are per run, summed over the LWPs.  Measured on {m['host']} ({m['cpu']}, "
             f"{m['cpu_count']} cores, Python {m['python']}), lwp ``{m['lwp']}``, {m['date']}, "
             f"load average {la0} at start, {la1} at end, with "
             f"``python docs/figures/measure_demo.py``.\n")
    return text


def throughput_origin(tp):
    m = tp["machine"]
    return (f"{m['host']} ({m['cpu']}, {m['cpu_count']} cores, Python {m['python']}), "
            f"lwp ``{m['lwp']}``, {m['date']}, load average "
            + " ".join(f"{x:.2f}" for x in m["loadavg"]))


def throughput_table(tp):
    by = {(p["device"], p["workers"]): p for p in tp["points"]}
    workers = sorted({p["workers"] for p in tp["points"]})
    rows = []
    for w in workers:
        row = [str(w)]
        for device in DEVICES:
            p = by.get((device, w))
            row += [f"{p['measured']:.0f}", f"{p['model']:.0f}"] if p else ["n/a", "n/a"]
        rows.append(row)
    header = ["W"] + [f"{d} {what}" for d in DEVICES for what in ("measured", "model")]
    x, y = tp["X"] * 1000, tp["Y"] * 1000
    return (list_table(header, rows)
            + f"\nRequests per second; X = {x:g} ms of CPU, Y = {y:g} ms of waiting, "
              f"{tp['lwps']} LWP, {tp['duration']:g} s per point.  Measured with "
              f"``python docs/figures/measure_throughput.py`` on {throughput_origin(tp)}.\n")


def memory_table(mem):
    """Where a parked green thread's bytes go (``measure_parked_memory.py``)."""
    b = lambda v: f"{v:,.0f}"  # noqa: E731
    lwp_own = mem["lwp_traced"] - mem["bare_traced"]
    extra_stack = mem["lwp_stack_saved"] - mem["bare_stack_saved"]
    lines = "; ".join(f"``{where}`` {size:,.0f}" for where, size in mem["lwp_lines"])
    rows = [
        ["the greenlet's *data stack*: CPython keeps Python frames in chunks of 16 KiB, "
         "greenlet gives every greenlet its own, mapped when its first frame is pushed; "
         "the parked frames touch one page of it",
         b(mem["data_stack"]),
         "RSS of a started, parked greenlet beyond an unstarted one's, less what "
         "``tracemalloc`` saw: the chunk comes from ``mmap``"],
        ["the C stack greenlet copies to the heap at the switch (``greenlet._stack_saved``)",
         b(mem["lwp_stack_saved"]),
         f"a bare greenlet parked in a Python function: {b(mem['bare_stack_saved'])}; "
         f"an lwp thread parked in a socket's ``recv``: {b(mem['recv_stack_saved'])}"],
        ["the greenlet object and its C++ state", b(mem["greenlet_object"]),
         "RSS per greenlet created and never started"],
        ["what lwp adds: its thread, waiter and bookkeeping, and the deeper saved stack",
         b(lwp_own),
         f"``tracemalloc`` growth beyond a bare parked greenlet's ({b(extra_stack)} of it "
         f"saved stack)"],
        ["RSS growth, all told", b(mem["lwp_rss"]),
         f"a bare parked greenlet: {b(mem['bare_rss'])}"],
    ]
    m = mem["machine"]
    return (list_table(["part", "bytes per thread", "how it is measured"], rows, (44, 14, 42))
            + f"\n{mem['n']:,} threads parked on one :class:`lwp.Event` on one LWP, against "
              f"{mem['n']:,} bare greenlets; measured with "
              f"``python docs/figures/measure_parked_memory.py`` on {m['host']} ({m['cpu']}, "
              f"{m['cpu_count']} cores, Python {m['python']}, greenlet {m['greenlet']}), "
              f"lwp ``{m['lwp']}``, {m['date']}.  The lwp run's largest traced growths, "
              f"per thread, by the line that allocated (the line where a thread parks holds "
              f"its saved C stack): {lines}.\n")


def tables(bench, procs, demo, tp, mem):
    out = {"bench-machine.rst": machine_table(bench), "costs.rst": costs_table(bench, procs)}
    for name in bench["cases"]:
        out[f"bench-{name}.rst"] = case_table(bench, name)
    if demo is not None:
        out["demo.rst"] = demo_table(demo)
    if tp is not None:
        out["throughput.rst"] = throughput_table(tp)
    if mem is not None:
        out["parked-memory.rst"] = memory_table(mem)
    return out


# -- plots -------------------------------------------------------------------------------------


def plots(bench, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    origin = bench_origin(bench) + f", load average {bench['machine']['loadavg']} at start"
    colors = {"lwp": "#1f77b4", "lwp lwps=1": "#6baed6", "gevent": "#2ca02c", "asyncio": "#ff7f0e",
              "uvloop": "#d62728", "trio": "#9467bd", "threading": "#7f7f7f",
              "greenlet switch": "#bcbd22"}

    def color(label):
        if label in colors:
            return colors[label]
        if label.startswith("lwp"):
            return colors["lwp lwps=1"]
        if label.startswith("gevent"):
            return colors["gevent"]
        return colors["threading"]

    def bars(ax, name, log=False):
        case = bench["cases"][name]
        items = [(label, r["median"]) for label, r in case["results"].items()
                 if r["status"] == "ok" and r["median"] is not None]
        labels = [label for label, _ in items]
        values = [v for _, v in items]
        ax.barh(labels, values, color=[color(x) for x in labels])
        ax.invert_yaxis()
        if log:
            ax.set_xscale("log")
        ax.set_title(f"{name}\n({case['better']} is better)", fontsize=10)
        ax.set_xlabel(case["unit"])
        if log:  # a zero has no bar on a log axis: write it at the axis
            floor = min([v for v in values if v > 0], default=1) / 3
            ax.set_xlim(floor, max(values) * 6)
        for y, v in enumerate(values):
            x = v if v > 0 or not log else ax.get_xlim()[0]
            ax.text(x, y, " " + (fmt(v) if v > 0 else "0"), va="center", fontsize=8)
        ax.margins(x=0.25)

    def save(fig, filename, title):
        fig.suptitle(f"{title}\n{origin}", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / filename, dpi=110, metadata={"Software": None})
        plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, name in zip(axes, ("spawn_join", "event_handoff", "queue_handoff")):
        bars(ax, name, log=name == "spawn_join")
    save(fig, "bench-costs.png", "Cost of spawning and of hand-offs (python -m lwp.bench)")

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, name in zip(axes, ("stall_total", "stall_heartbeat", "stall_spawn_latency")):
        bars(ax, name, log=name == "stall_heartbeat")
    save(fig, "bench-stall.png", "8 unpatchable 100 ms blocking calls (python -m lwp.bench)")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, name in zip(axes, ("offloaded_io", "offloaded_io_cpu_hog")):
        bars(ax, name, log=name == "offloaded_io_cpu_hog")
    save(fig, "bench-io.png", "File reads kept off the event loop (python -m lwp.bench)")

    servers = [n for n in ("echo_100", "echo_1000", "http_raw", "http_wsgi") if n in bench["cases"]]
    if servers:
        rows = (len(servers) + 1) // 2
        fig, axes = plt.subplots(rows, 2, figsize=(10, 3.0 * rows + 0.6), squeeze=False)
        for ax, name in zip(axes.flat, servers):
            bars(ax, name)
        for ax in list(axes.flat)[len(servers):]:
            ax.set_visible(False)
        save(fig, "bench-servers.png", "Servers under load, server on one core (python -m lwp.bench)")


def throughput_plot(tp, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    styles = {"parallel": ("#1f77b4", "o"), "single": ("#d62728", "s"),
              "single-yield": ("#2ca02c", "^")}
    for device in DEVICES:
        pts = sorted((p for p in tp["points"] if p["device"] == device), key=lambda p: p["workers"])
        if not pts:
            continue
        color, marker = styles[device]
        w = [p["workers"] for p in pts]
        ax.plot(w, [p["model"] for p in pts], color=color, lw=1, ls="--", alpha=0.7)
        ax.plot(w, [p["measured"] for p in pts], color=color, marker=marker, lw=0,
                label=f"{device}: measured (dashed: model)")
    x, y = tp["X"] * 1000, tp["Y"] * 1000
    ax.set_xlabel("worker green threads W (1 LWP)")
    ax.set_ylabel("requests per second")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    m = tp["machine"]
    ax.set_title(f"Throughput with X = {x:g} ms CPU + Y = {y:g} ms wait per request\n"
                 f"{m['host']} ({m['cpu']}, {m['cpu_count']} cores, Python {m['python']}), "
                 f"{m['date'][:10]}, load avg {m['loadavg'][0]:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables-only", action="store_true", help="write the .rst tables only")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: here)")
    args = parser.parse_args()
    bench = json.loads(BENCH.read_text())
    procs = json.loads(PROCESSES.read_text())
    demo = json.loads(DEMO.read_text()) if DEMO.exists() else None
    tp = json.loads(THROUGHPUT.read_text()) if THROUGHPUT.exists() else None
    mem = json.loads(MEMORY.read_text()) if MEMORY.exists() else None
    args.out.mkdir(parents=True, exist_ok=True)
    for filename, text in tables(bench, procs, demo, tp, mem).items():
        (args.out / filename).write_text(text)
    if not args.tables_only:
        plots(bench, args.out)
        if tp is not None:
            throughput_plot(tp, args.out)


if __name__ == "__main__":
    main()
