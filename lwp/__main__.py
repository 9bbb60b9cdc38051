"""``python -m lwp``: M green threads on N LWPs, doing something you can watch.

Spawns ``--threads`` green threads.  Each one repeatedly sleeps a little (a
stand-in for waiting on the network) and counts a step under a shared Lock,
then reports through a Queue.  A progress line shows how many threads have
finished and how many steps were taken; at the end come the per-LWP
statistics: how many threads each LWP started, how many switches it made, how
many threads it stole from the others and how long it was parked.

    python -m lwp --threads 10000 --lwps 2
"""

import argparse
import sys
import time

import lwp


def worker(i, rounds, lock, totals, results):
    for r in range(rounds):
        lwp.sleep(0.001 * (1 + (i + r) % 7))
        with lock:
            totals[0] += 1
    results.put(i)


def progress(totals, results, threads, stop):
    """Print a status line four times a second until ``stop`` is set."""
    while not stop.wait(0.25):
        print(f"  {results.qsize() + totals[1]:>7}/{threads} threads finished, "
              f"{totals[0]:>9} steps", flush=True)


def main(threads, rounds):
    lock = lwp.Lock()
    totals = [0, 0]
    results = lwp.Queue()
    stop = lwp.Event()
    started = time.perf_counter()
    ticker = lwp.spawn(progress, totals, results, threads, stop, name="progress")
    pool = [lwp.spawn(worker, i, rounds, lock, totals, results, name=f"worker-{i}")
            for i in range(threads)]
    for _ in range(threads):
        results.get()
        totals[1] += 1
    stop.set()
    ticker.join()
    for t in pool:
        t.join()
    return totals[0], time.perf_counter() - started


def run_demo(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lwp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=10_000, help="green threads (M)")
    parser.add_argument("--lwps", type=int, default=None, help="LWPs (N), default: CPU count")
    parser.add_argument("--rounds", type=int, default=20, help="sleep/lock rounds per thread")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or (args.lwps is not None and args.lwps < 1):
        parser.error("--threads, --lwps and --rounds must be >= 1")
    stats = []

    def demo():
        result = main(args.threads, args.rounds)
        stats.extend(lwp.stats())
        return result

    steps, elapsed = lwp.run(demo, lwps=args.lwps)
    print(f"{args.threads} green threads on {len(stats)} LWPs: {steps} steps in {elapsed:.2f} s")
    print(f"{'LWP':>4} {'kind':>8} {'threads run':>12} {'switches':>10} {'steals':>7} "
          f"{'remote wakeups':>15} {'parked s':>9}")
    for s in stats:
        print(f"{s['lwp']:>4} {s['kind']:>8} {s['threads_run']:>12} {s['switches']:>10} "
              f"{s['steals']:>7} {s['remote_wakeups']:>15} {s['parked_time']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
