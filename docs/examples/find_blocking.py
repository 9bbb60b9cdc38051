"""A green thread stuck in a call lwp cannot see, and three ways to find it.

    python docs/examples/find_blocking.py

See docs/howto/finding-blocking.rst for the output and how to read it.
"""

import ctypes
import logging

import lwp

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # 1. the monitor's log
libc = ctypes.CDLL(None)


def legacy_client():
    libc.usleep(700_000)  # a C library waiting in the kernel: lwp cannot see it


def heartbeat():
    for _ in range(5):
        lwp.sleep(0.1)


def watch():
    lwp.sleep(0.3)
    lwp.dump()  # 2. every LWP, every green thread, every stack


def trace(event, **info):  # 3. the upcalls
    print("upcall", event, info, flush=True)


def main():
    unsubscribe = lwp.upcalls.subscribe(trace, events=("lwp_added", "lwp_blocked", "lwp_unblocked"))
    try:
        threads = [lwp.spawn(heartbeat, name="heartbeat"),
                   lwp.spawn(legacy_client, name="legacy"),
                   lwp.spawn(watch, name="watch", bound=True)]  # its own LWP: never stuck
        for t in threads:
            t.join()
    finally:
        unsubscribe()


if __name__ == "__main__":
    lwp.run(main, lwps=2)
