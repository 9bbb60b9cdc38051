"""Machine instructions per TCP echo round trip, counted by valgrind's callgrind.

Timings on a shared machine move by a factor of two from run to run; the
number of instructions a round trip executes does not.  Each row runs, on one
LWP with the monitor off, an echo handler like the benchmark's
(``lwp/bench/servers.py``: ``recv(65536)`` then ``sendall(data)``) and a
client green thread that sends 64 bytes and reads them back, over a real TCP
loopback connection (the benchmark's transport: the same socket class, the
same short-read and edge rules; callgrind counts user-space instructions
only, so the kernel's share is not in the count either way).  It runs 1,000
and 11,000 round trips under callgrind and divides the difference by the
10,000 extra, so start-up and shutdown cancel out.  A round trip is both
ends: the handler's recv and sendall, the client's sendall and recv, two
parks and the epoll waits that wake them.  Needs valgrind; takes a minute.

    python docs/figures/count_echo.py            # lwp native door, lwp Python door
"""

import os
import re
import subprocess
import sys
import tempfile

ECHO = """\
import sys
import lwp
from lwp import socket

n = int(sys.argv[1])
MESSAGE = b"x" * 64

def handler(conn):
    recv, sendall = conn.recv, conn.sendall
    while True:
        data = recv(65536)
        if not data:
            return
        sendall(data)

def main():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    server = lwp.spawn(handler, conn)
    recv, sendall = client.recv, client.sendall
    for _ in range(n):
        sendall(MESSAGE)
        got = recv(65536)
        while len(got) < len(MESSAGE):
            got += recv(65536)
    client.close()
    server.join()
    conn.close()
    listener.close()

lwp.run(main, lwps=1, monitor=False)
"""

# The checkout this script is in, not whichever lwp is installed.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROWS = [("lwp, native door", {}),
        ("lwp, Python door (LWP_NATIVE_PARK=0)", {"LWP_NATIVE_PARK": "0"})]


def instructions(script, n, env):
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, script, str(n)],
        env=dict(os.environ, PYTHONPATH=ROOT, **env), capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "echo.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(ECHO)
        for label, env in ROWS:
            extra = instructions(script, 11_000, env) - instructions(script, 1_000, env)
            print(f"{label:40s} {extra / 10_000:8,.0f} instructions per round trip")


if __name__ == "__main__":
    main()
