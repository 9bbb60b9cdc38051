"""Machine instructions per one-way Event hand-off, counted by valgrind's callgrind.

Timings on a shared machine move by a factor of two from run to run; the
number of instructions a hand-off executes does not.  Each row runs the
ping-pong of ``python -m lwp.bench event_handoff`` (two threads, one LWP, the
monitor off) for 1,000 and for 11,000 round trips under callgrind, and
divides the difference by the 20,000 extra one-way hand-offs, so start-up and
shutdown cancel out.  Needs valgrind; takes a minute or two.

The rows: lwp with the native door (``lwp.Event`` in C, ``csrc/event_py.c``,
over the C waiter and the LWP's C lock); the same door with the reference
``Event`` of ``lwp/sync.py`` (``sync.PythonEvent``), which shows what the C
Event saves; the pure-Python door (``LWP_NATIVE_PARK=0``); gevent.

    python docs/figures/count_handoff.py
"""

from callgrind import extra

PINGPONG = """\
import sys
lib, n = sys.argv[1], int(sys.argv[2])
def pingpong(make_event, start):
    ev1, ev2 = make_event(), make_event()
    def pong():
        for _ in range(n):
            ev1.wait(); ev1.clear(); ev2.set()
    join = start(pong)
    for _ in range(n):
        ev1.set(); ev2.wait(); ev2.clear()
    join()
if lib == "gevent":
    import gevent
    from gevent.event import Event
    pingpong(Event, lambda f: gevent.spawn(f).join)
else:
    import lwp
    event = lwp.sync.PythonEvent if lib == "lwp-python-event" else lwp.Event
    lwp.run(lambda: pingpong(event, lambda f: lwp.spawn(f).join), lwps=1, monitor=False)
"""

ROWS = [("lwp, native door", "lwp", {}),
        ("lwp, native door, Python Event", "lwp-python-event", {}),
        ("lwp, Python door (LWP_NATIVE_PARK=0)", "lwp", {"LWP_NATIVE_PARK": "0"}),
        ("gevent", "gevent", {})]


def main():
    for label, lib, env in ROWS:
        count = extra(PINGPONG, (lib, 1_000), (lib, 11_000), env)
        print(f"{label:40s} {count / 20_000:8,.0f} instructions per one-way hand-off")


if __name__ == "__main__":
    main()
