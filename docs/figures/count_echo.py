"""Machine instructions per TCP echo round trip, counted by valgrind's callgrind.

Timings on a shared machine move by a factor of two from run to run; the
number of instructions a round trip executes does not.  Each row runs, on one
LWP with the monitor off, an echo handler like the benchmark's
(``lwp/bench/servers.py``: ``recv(65536)`` then ``sendall(data)``) and, on
the same LWP, client green threads that send 64 bytes and read them back,
over real TCP loopback connections (the benchmark's transport: the same
socket class, short-read and edge rules; a socketpair would skip nothing
that callgrind counts, as it counts user-space instructions only, but would
be AF_UNIX, not what the benchmark serves).  It runs 1,000 and 11,000 round
trips under callgrind and divides the difference by the 10,000 extra, so
start-up and shutdown cancel out.  A round trip is both ends: the handler's
recv and sendall, the client's sendall and recv, and the parks and epoll
waits between them.  With one connection every park finds nothing to run
and goes through the hub's idle pass and an ``epoll_wait``; with ten in
lockstep, one ``epoll_wait`` serves several connections and most parks
switch straight to the next woken thread, as under the benchmark's 100
connections.  The native door is the C of the park door and of the socket
path (``csrc/park_py.c``, ``csrc/io_py.c``); the Python door
(``LWP_NATIVE_PARK=0``) their Python reference.  Needs valgrind; takes two
minutes.

    python docs/figures/count_echo.py            # lwp native door, lwp Python door
"""

from callgrind import extra

ECHO = """\
import sys
import lwp
from lwp import socket
from lwp.bench.servers import lwp_echo as handler  # the benchmark's echo handler

rounds, conns = int(sys.argv[1]), int(sys.argv[2])
MESSAGE = b"x" * 64


def client(address):
    sock = socket.create_connection(address)
    recv, sendall = sock.recv, sock.sendall
    for _ in range(rounds // conns):
        sendall(MESSAGE)
        got = recv(65536)
        while len(got) < len(MESSAGE):
            got += recv(65536)
    sock.close()

def main():
    listener = socket.create_server(("127.0.0.1", 0))
    clients = [lwp.spawn(client, listener.getsockname()) for _ in range(conns)]
    handlers = []
    for _ in range(conns):
        conn, _ = listener.accept()
        handlers.append((lwp.spawn(handler, conn), conn))
    for c in clients:
        c.join()
    for h, conn in handlers:
        h.join()
        conn.close()
    listener.close()

lwp.run(main, lwps=1, monitor=False)
"""

# (label, connections, environment)
ROWS = [("lwp, native door, 1 connection", 1, {}),
        ("lwp, Python door, 1 connection", 1, {"LWP_NATIVE_PARK": "0"}),
        ("lwp, native door, 10 connections", 10, {}),
        ("lwp, Python door, 10 connections", 10, {"LWP_NATIVE_PARK": "0"})]


def main():
    for label, conns, env in ROWS:
        count = extra(ECHO, (1_000, conns), (11_000, conns), env)
        print(f"{label:34s} {count / 10_000:8,.0f} instructions per round trip")


if __name__ == "__main__":
    main()
