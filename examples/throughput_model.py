"""Performance of threaded programs, measured: one thread against k on a dispatcher/worker server.

What it shows: the course's question.  Each request needs X ms of CPU and
Y ms of disk, on one CPU and one disk that can work at the same time.  With
one thread the server does one thing at a time, so its throughput is
1 / (X + Y).  With k threads one request can use the disk while another uses
the CPU, so throughput grows with k until the slowest resource is always busy:
min(k / (X + Y), 1 / max(X, Y)).  Past that point more threads add nothing.

For each k in ``--threads`` it starts ``examples/dispatcher_server.py`` with
``--workers k --cpu-ms X --disk-ms Y`` (one LWP: one CPU; the disk is a lock
held for Y ms while the request waits), sends ``--requests`` requests from
``2k`` keep-alive connections (green threads), and prints measured against
modelled throughput; with matplotlib installed it also saves a plot::

    python examples/throughput_model.py --cpu-ms 5 --disk-ms 10 --threads 1,2,4,8

Everything runs on 127.0.0.1.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time

import lwp
import _cli
from _cli import (check_open_files, complain, non_negative_float, output_file, positive_int,
                  positive_int_list)
from lwp.server import cooperative_socket

HERE = os.path.dirname(os.path.abspath(__file__))


def model(k, x, y):
    """Requests per second of k threads, X s of CPU and Y s of disk, one CPU and one disk."""
    if k <= 1:
        return 1.0 / (x + y)
    return min(k / (x + y), 1.0 / max(x, y))


def bottleneck(k, x, y):
    if k <= 1:
        return "one at a time: CPU then disk"
    if k / (x + y) < 1.0 / max(x, y):
        return "too few threads"
    return "the CPU" if x >= y else "the disk"


def start_server(workers, cpu_ms, disk_ms):
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "dispatcher_server.py"), "--port", "0",
                             "--workers", str(workers), "--cpu-ms", str(cpu_ms), "--disk-ms",
                             str(disk_ms), "--demo-site", "3", "--lwps", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"dispatcher_server did not start: {line!r} {proc.stderr.read()}")
    return proc, int(m.group(1))


def load(port, connections, requests):
    """Send ``requests`` GETs over ``connections`` keep-alive connections; return req/s."""
    left = [requests]

    def client():
        sock = cooperative_socket(socket.create_connection(("127.0.0.1", port)))
        f = sock.makefile("rb")
        try:
            while left[0] > 0:
                left[0] -= 1
                sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
                length = 0
                while True:
                    line = f.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                f.read(length)
        finally:
            f.close()
            sock.close()

    t0 = time.perf_counter()
    for t in [lwp.spawn(client) for _ in range(connections)]:
        t.join()
    return requests / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-ms", type=non_negative_float, default=5.0,
                   help="X: CPU per request (ms)")
    p.add_argument("--disk-ms", type=non_negative_float, default=10.0,
                   help="Y: disk per request (ms)")
    p.add_argument("--threads", type=positive_int_list, default=[1, 2, 4, 8],
                   help="worker counts to try, comma-separated (default 1,2,4,8)")
    p.add_argument("--requests", type=positive_int, default=200,
                   help="requests per measurement (default 200)")
    p.add_argument("--plot", type=output_file, default="throughput_model.png",
                   help="where to save the plot (default throughput_model.png)")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    if args.cpu_ms == args.disk_ms == 0:
        p.error("--cpu-ms and --disk-ms cannot both be 0: a request that costs nothing "
                "has no model")
    # 2k connections: this process and the server each hold one socket per connection.
    check_open_files(p, 2 * max(args.threads), f"--threads {max(args.threads)}")
    x, y = args.cpu_ms / 1000, args.disk_ms / 1000

    print(f"X = {args.cpu_ms} ms CPU, Y = {args.disk_ms} ms disk per request; one CPU, one disk")
    print(f"model: 1 thread 1/(X+Y) = {model(1, x, y):.1f} req/s; many threads at most "
          f"1/max(X,Y) = {1 / max(x, y):.1f} req/s")
    print(f"{'threads':>7} {'measured':>10} {'model':>10}   bottleneck (req/s)")
    rows = []
    for k in args.threads:
        proc, port = start_server(k, args.cpu_ms, args.disk_ms)
        try:
            measured = lwp.run(load, port, max(2 * k, 2), args.requests, lwps=1)
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
        rows.append((k, measured, model(k, x, y)))
        print(f"{k:>7} {measured:>10.1f} {model(k, x, y):>10.1f}   {bottleneck(k, x, y)}", flush=True)

    if not args.no_plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("(matplotlib is not installed: no plot)")
            return 0
        fig, ax = plt.subplots()
        ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="measured")
        ax.plot([r[0] for r in rows], [r[2] for r in rows], "s--", label="model")
        ax.set_xlabel("worker threads")
        ax.set_ylabel("requests per second")
        ax.set_title(f"X = {args.cpu_ms} ms CPU, Y = {args.disk_ms} ms disk")
        ax.legend()
        try:
            fig.savefig(args.plot)
        except (OSError, ValueError) as e:  # a full disk, a file type matplotlib cannot write
            return complain(f"cannot save the plot to {args.plot}: {e}")
        print(f"plot saved to {args.plot}")
    return 0


if __name__ == "__main__":
    _cli.run(main)
