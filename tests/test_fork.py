"""fork() while lwp runs: the child gets a working scheduler, no hang."""

import os
import signal
import threading

import pytest

import lwp

pytestmark = [pytest.mark.fault,
              pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")]


def _child_exit_code(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _in_child(fn):
    """Run ``fn`` in the child; its return value (0..255) becomes the exit code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = fn()
        finally:
            os._exit(code)
    return pid


def test_fork_from_green_thread_child_keeps_scheduling():
    def child():
        sleeper_done = lwp.spawn(lambda: lwp.sleep(0.01) or 1).join(5)
        on_file = lwp.blocking(lambda: 2)
        for t in others:  # each ends: normally on the surviving LWP, else ForkLostError
            try:
                t.join(5)
            except lwp._core.fork.ForkLostError:
                pass
            except BaseException:
                return 1
        return 10 * (sleeper_done + on_file) + min(len(lwp.stats()), 9)

    others = []

    def main():
        others.extend(lwp.spawn(lwp.sleep, 0.2) for _ in range(4))
        lwp.sleep(0.01)
        pid = _in_child(child)
        return _child_exit_code(pid), [t.join(5) for t in others]

    code, parent = lwp.run(main, lwps=2)
    assert code == 32  # child: both new calls worked, and 2 LWPs again
    assert parent == [None] * 4  # the parent is untouched


def test_fork_from_plain_thread_drops_default_scheduler():
    assert lwp.spawn(lambda: 1).join(5) == 1  # start the default scheduler

    def child():
        return lwp.spawn(lambda: 7).join(5)  # a new default scheduler in the child

    assert _child_exit_code(_in_child(child)) == 7
    assert lwp.spawn(lambda: 2).join(5) == 2


def test_fork_with_io_waiter_in_child():
    import socket

    def child():
        a, b = socket.socketpair()
        try:
            t = lwp.spawn(lambda: lwp._core.park.wait_readable(a.fileno(), 5))
            lwp.sleep(0.01)
            b.send(b"x")
            return 5 if t.join(5) else 1
        finally:
            a.close()
            b.close()

    def main():
        return _child_exit_code(_in_child(child))

    assert lwp.run(main, lwps=1) == 5


def test_fork_while_another_kernel_thread_holds_the_lwp_lock():
    """The child's LWP gets a new lock (``park.new_lock``): the parent's was held
    at the fork by a kernel thread that the child does not have."""
    def child():
        signal.alarm(10)  # a hang on the inherited lock kills the child
        return lwp.spawn(lambda: 7).join(5)

    def main():
        lock = lwp.current()._lwp._lock
        held, done = threading.Event(), threading.Event()

        def holder():
            with lock:
                held.set()
                done.wait(10)

        t = threading.Thread(target=holder)
        t.start()
        held.wait(10)
        try:
            pid = _in_child(child)
        finally:
            done.set()
            t.join(10)
        return _child_exit_code(pid)

    assert lwp.run(main, lwps=1) == 7
