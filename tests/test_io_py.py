"""The socket hot path on both doors: lwp.socket's recv, recv_into, send and
sendall and the poller's event loop have a C transcription (``csrc/io_py.c``)
beside the Python reference, selected by ``LWP_NATIVE_PARK`` as the park door.

The behaviour tests here run on whichever door this process uses;
``test_socket_and_poller_pass_on_the_python_door`` runs them, with
tests/test_socket.py and tests/test_poller.py, on the Python one too.  The
tests of the native entry points themselves come last.
"""

import errno
import os
import select
import subprocess
import sys
import threading

import pytest

from helpers import run1, settle
import lwp
import lwp.socket as socket
from lwp._core import park, poller
from lwp._core.lwp import _IO_BUDGET, LWP

native_only = pytest.mark.skipif(not poller.NATIVE, reason="lwp._native is built without io_py")


def the_lwp():
    return lwp.current()._lwp


@pytest.mark.skipif(os.environ.get("LWP_NATIVE_PARK") == "0", reason="this is that run")
@pytest.mark.timeout(300)
def test_socket_and_poller_pass_on_the_python_door():
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, LWP_NATIVE_PARK="0")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-m", "not stress"]
        + [os.path.join(here, name) for name in ("test_socket.py", "test_poller.py",
                                                  "test_io_py.py")],
        env=env, capture_output=True, text=True, cwd=os.path.dirname(here), timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


def test_the_environment_selects_the_python_socket_path():
    code = ("from lwp._core import poller; import lwp.socket as s; "
            "print(poller.NATIVE, type(s.socket.recv).__name__, "
            "poller._deliver is poller._deliver_events, hasattr(s.socket, '_python_recv'))")
    env = dict(os.environ, LWP_NATIVE_PARK="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "function", "True", "False"]
    if park.NATIVE:
        assert poller.NATIVE
        assert type(socket.socket.recv).__name__ == "method_descriptor"
        assert poller._deliver is poller._native_deliver


# -- behaviour, on this process's door ---------------------------------------------------------

def test_a_short_read_marks_the_socket_not_ready_and_a_full_one_does_not():
    def main():
        a, b = socket.socketpair()
        with a, b:
            reader = lwp.spawn(a.recv, 10)  # a wait registers the socket, edge-triggered
            settle()
            b.sendall(b"w")
            assert reader.join() == b"w"
            b.sendall(b"abc")
            assert a.recv(3) == b"abc"  # all it asked for: maybe more is there
            p = the_lwp()._poller
            assert p.ready(a.fileno(), False)
            b.sendall(b"abc")
            assert a.recv(10) == b"abc"  # less: the buffer was drained
            assert not p.ready(a.fileno(), False)
            b.sendall(b"de")
            buf = bytearray(8)
            assert a.recv_into(buf) == 2 and buf[:2] == b"de"
            assert not p.ready(a.fileno(), False)
            assert a.send(b"xy") == 2 and b.recv(2) == b"xy"
            assert p.ready(a.fileno(), True)
        return "ok"

    assert run1(main) == "ok"


def test_calls_that_do_not_wait_spend_the_io_budget():
    def main():
        a, b = socket.socketpair()
        with a, b:
            me = the_lwp()
            b.sendall(b"1")
            b.sendall(b"2")
            b.send(b"3")
            assert me.io_ticks == me.ticks and me.io_left == _IO_BUDGET - 2
        return "ok"

    assert run1(main) == "ok"


def test_a_timed_out_recv_leaves_its_slot_and_the_count_of_waiters():
    def main():
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(0.01)
            with pytest.raises(TimeoutError):
                a.recv(1)
            p = the_lwp()._poller
            st = p._fds[a.fileno()]
            assert st.reader is None and p._nwaiting == 0 and not p.busy()
            b.sendall(b"z")
            return a.recv(1)

    assert run1(main) == b"z"


def test_arguments_the_fast_path_does_not_take_go_to_the_python_method():
    def main():
        a, b = socket.socketpair()
        with a, b:
            b.sendall(b"hello")
            assert a.recv(bufsize=2) == b"he"
            assert a.recv(2, flags=socket.MSG_PEEK) == b"ll"
            assert a.recv(True) == b"l"  # an int subclass
            with pytest.raises(TypeError):
                a.recv("1")
            with pytest.raises(ValueError):
                a.recv(-1)
            with pytest.raises(TypeError):
                a.recv()
            with pytest.raises(TypeError):
                a.send("text")
            with pytest.raises(ValueError):
                a.recv_into(bytearray(1), 2)
            b.sendall(bytearray(b"12"))
            b.sendall(memoryview(b"345"))
            b.send(memoryview(b"6"))
            got = b""
            while len(got) < 7:
                got += a.recv(100)
            assert got == b"lo123456"
            big = os.urandom(100_000)  # past the C's receive buffer
            b.sendall(big)
            got = b""
            while len(got) < len(big):
                got += a.recv(200_000)
            assert got == big
        return "ok"

    assert run1(main) == "ok"


def test_a_nonblocking_socket_raises_instead_of_waiting():
    def main():
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            with pytest.raises(BlockingIOError):
                a.recv(1)
            with pytest.raises(BlockingIOError):
                a.recv_into(bytearray(1))
        return "ok"

    assert run1(main) == "ok"


def test_a_closed_socket_fails_with_ebadf():
    def main():
        a, b = socket.socketpair()
        b.close()
        a.close()
        for call in (lambda: a.recv(1), lambda: a.send(b"x"), lambda: a.sendall(b"x")):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.EBADF
        return "ok"

    assert run1(main) == "ok"


def test_a_kernel_thread_started_by_a_green_thread_blocks_the_os_way():
    """The C knows the calling thread's LWP from a thread-local that a new
    kernel thread starts without: its calls block in poll(2)."""
    def main():
        a, b = socket.socketpair()
        got = []
        with a, b:
            t = threading.Thread(target=lambda: got.append(a.recv(5)))
            t.start()
            lwp.sleep(0.01)
            b.sendall(b"hello")
            while t.is_alive():
                lwp.sleep(0.001)
        return got

    assert run1(main) == [b"hello"]


# -- the native entry points (csrc/io_py.h) ----------------------------------------------------

@native_only
def test_native_socket_methods_are_installed_once_with_their_reference():
    assert socket.socket._python_recv.__name__ == "recv"
    for name in ("recv", "recv_into", "send", "sendall"):
        assert callable(getattr(socket.socket, "_python_" + name))
        assert getattr(socket.socket, name).__doc__
    with pytest.raises(RuntimeError):
        poller._native_socket_methods(socket.socket, LWP, _IO_BUDGET)
    with pytest.raises(TypeError):
        poller._native_socket_methods(socket.socket, LWP)
    with pytest.raises(TypeError):
        poller._native_socket_methods(1, 2, 3)


@native_only
def test_native_deliver_wakes_edge_waiters_and_reports_the_wakeup_fd():
    def main():
        a, b = socket.socketpair()
        with a, b:
            p = the_lwp()._poller
            fd = a.fileno()
            b.sendall(b"x")
            assert a.recv(10) == b"x"  # drained: the next recv waits first
            reader = lwp.spawn(a.recv, 10)
            settle()
            st = p._fds[fd]
            assert st.reader is not None and st.rready is False and p.busy()
            assert poller._native_deliver(p, [(fd, select.EPOLLIN)]) is False
            assert st.reader is None and st.rready is True
            assert poller._native_deliver(p, [(p._wakefd, select.EPOLLIN)]) is True
            assert poller._native_deliver(p, [(fd, select.EPOLLRDHUP)]) is False
            assert st.closed & select.EPOLLRDHUP
            b.sendall(b"y")
            return reader.join()

    assert run1(main) == b"y"


@native_only
def test_native_deliver_drops_a_closed_files_state_and_serves_one_shot_waits():
    def main():
        a, b = socket.socketpair()
        with a, b:
            p = the_lwp()._poller
            fd = a.fileno()
            reader = lwp.spawn(park.wait_readable, fd)  # one-shot registration
            settle()
            assert poller._native_deliver(p, [(fd, select.EPOLLIN)]) is False
            assert reader.join() is True
            c, d = socket.socketpair()
            with c, d:
                cfd = c.fileno()
                reader = lwp.spawn(c.recv, 1)
                settle()
                with poller._table_lock:
                    poller._gens[cfd] = poller._gens.get(cfd, 0) + 1  # as a close elsewhere
                poller._native_deliver(p, [(cfd, select.EPOLLIN)])
                assert cfd not in p._fds
                with pytest.raises(OSError) as e:
                    reader.join()
                assert e.value.errno == errno.EBADF
        return "ok"

    assert run1(main) == "ok"


@native_only
def test_native_deliver_refuses_what_is_not_a_poller_and_its_events():
    def main():
        p = the_lwp()._poller
        with pytest.raises(TypeError):
            poller._native_deliver(object(), [])
        with pytest.raises(TypeError):
            poller._native_deliver(p, ())
        with pytest.raises(TypeError):
            poller._native_deliver(p, [(1,)])
        with pytest.raises(TypeError):
            poller._native_deliver(p, [(1, "x")])
        return poller._native_deliver(p, [])

    assert run1(main) is False


@native_only
def test_native_set_lwp_copy_is_what_the_c_trusts():
    """park.set_lwp keeps the C's copy; something that is not an LWP there
    sends the socket calls down the plain path, as no LWP does."""
    def os_thread(out):
        a, b = socket.socketpair()
        with a, b:
            park._native_set_lwp(object())
            try:
                b.sendall(b"ok")
                out.append(a.recv(2))
            finally:
                park._native_set_lwp(None)
            out.append(type(park._native_waiter()).__name__)

    out = []
    t = threading.Thread(target=os_thread, args=(out,))
    t.start()
    t.join()
    assert out == [b"ok", "OSWaiter"]



@native_only
def test_a_connections_first_wait_keeps_no_deeper_stack_than_the_next():
    """A socket's first recv found no state, got EAGAIN and waited through the
    Python ``_wait`` and ``Poller.wait``: their eval-loop frame stayed on the
    parked thread's C stack, which greenlet saves with it (896 bytes more per
    freshly accepted, idle connection)."""
    def main():
        a, b = socket.socketpair()
        with a, b:
            def reader():
                a.recv(100)  # the first wait: no state for the fd yet
                a.recv(100)  # a later one: the edge registration's common case

            t = lwp.spawn(reader)
            lwp.sleep(0.05)
            first = t._glet._stack_saved
            b.send(b"x")
            lwp.sleep(0.05)
            later = t._glet._stack_saved
            b.send(b"y")
            t.join()
        return first, later

    first, later = run1(main)
    assert 0 < first <= later
