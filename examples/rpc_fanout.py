"""Fan-out RPC: a client calls several servers at once, one green thread per call.

What it shows: the multithreaded client of the slides.  A request-reply call
spends nearly all its time waiting for the server; when the calls go to
*different* servers, making them from one thread each overlaps the waits, so
S calls take about as long as one: a near-linear speed-up.  When they all go
to the *same* server that handles one call at a time (``--same-server``, an
iterative server), the waits cannot overlap and there is no speed-up: the
server is the bottleneck, not the client.

It starts ``--servers`` S small RPC servers on 127.0.0.1 (each a
``lwp.server.StreamServer`` answering JSON-lines calls after ``--delay-ms``
of simulated work), calls each once one after another, then all at once, and
prints both times, the speed-up and whether the results agree::

    python examples/rpc_fanout.py --servers 8 --delay-ms 100
    python examples/rpc_fanout.py --servers 8 --delay-ms 100 --same-server
"""

import argparse
import json
import socket
import time

import lwp
import _cli
from _cli import check_open_files, non_negative_float, positive_int
from lwp.server import StreamServer, cooperative_socket


def rpc_server(delay_s, mode):
    """A server whose ``square`` method takes ``delay_s`` seconds (simulated remote work)."""

    def handle(conn, addr):
        f = conn.makefile("rwb")
        try:
            for line in f:
                call = json.loads(line)
                lwp.sleep(delay_s)
                result = {"id": call["id"], "result": call["n"] * call["n"]}
                f.write(json.dumps(result).encode() + b"\n")
                f.flush()
        finally:
            f.close()

    return StreamServer(("127.0.0.1", 0), handle, mode=mode).start()


def call(address, n, ident):
    """One request-reply call: plain blocking socket code, cooperative under lwp."""
    sock = cooperative_socket(socket.create_connection(address))
    f = sock.makefile("rwb")
    try:
        f.write(json.dumps({"id": ident, "method": "square", "n": n}).encode() + b"\n")
        f.flush()
        return json.loads(f.readline())["result"]
    finally:
        f.close()
        sock.close()


def run(args):
    delay = args.delay_ms / 1000
    if args.same_server:
        servers = [rpc_server(delay, "iterative")]
        targets = [servers[0].address] * args.servers
        where = f"1 iterative server (one call at a time), {args.servers} calls"
    else:
        servers = [rpc_server(delay, "concurrent") for _ in range(args.servers)]
        targets = [s.address for s in servers]
        where = f"{args.servers} different servers"
    print(f"{where}; each call takes {args.delay_ms:g} ms of server time")
    try:
        t0 = time.perf_counter()
        sequential = [call(a, i, i) for i, a in enumerate(targets)]
        seq_s = time.perf_counter() - t0
        print(f"sequential: {len(targets)} calls in {seq_s * 1000:.1f} ms (one at a time)")

        t0 = time.perf_counter()
        threads = [lwp.spawn(call, a, i, i) for i, a in enumerate(targets)]
        concurrent = [t.join() for t in threads]
        con_s = time.perf_counter() - t0
        print(f"concurrent: {len(targets)} calls in {con_s * 1000:.1f} ms (a green thread per call)")
        print(f"speed-up {seq_s / con_s:.1f}x (ideal for independent servers: {len(targets)}x)")
        ok = sequential == concurrent == [i * i for i in range(len(targets))]
        print("results agree" if ok else f"results DIFFER: {sequential} vs {concurrent}")
        return 0 if ok else 1
    finally:
        for s in servers:
            s.stop(5)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=positive_int, default=8,
                   help="number of servers / calls (default 8)")
    p.add_argument("--delay-ms", type=non_negative_float, default=100.0,
                   help="server time per call (default 100)")
    p.add_argument("--same-server", action="store_true",
                   help="send every call to one iterative server instead")
    p.add_argument("--lwps", type=positive_int, default=1, help="LWPs (default 1)")
    args = p.parse_args(argv)
    # At the peak each call holds a client socket and, on a concurrent server, the server's
    # side of it; each server a listening socket.  An iterative server accepts one at a time.
    sockets = args.servers + 2 if args.same_server else 3 * args.servers
    check_open_files(p, sockets, f"--servers {args.servers}")
    return lwp.run(run, args, lwps=args.lwps)


if __name__ == "__main__":
    _cli.run(main)
