"""Tests of the native activation pool (lwp._native through lwp._core.native).

Each test drives the pool the way an LWP does: an eventfd, a CompletionQueue,
submit, wait on the eventfd with a bounded select(), reset it, drain.  Name
resolution only touches numeric addresses and names in /etc/hosts, so no DNS
query leaves the machine.
"""

import errno
import gc
import os
import select
import sys
import socket
import threading
import time
import types
import warnings
import weakref

import pytest

from helpers import wait_until
from lwp._core import native
from lwp._core.native import ActivationPool, CompletionQueue

TIMEOUT = 5.0
NUMERIC = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV


@pytest.fixture
def efd():
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    yield fd
    os.close(fd)


@pytest.fixture
def cq(efd):
    q = CompletionQueue(efd)
    yield q
    q.close()


@pytest.fixture
def pool(cq):
    # Depends on cq so that it is closed first: the documented shutdown order.
    p = ActivationPool(4)
    yield p
    p.close()


def wait_for(cq, efd, n, timeout=TIMEOUT):
    """Collect exactly n completions, waiting on the eventfd like an LWP."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out with {len(got)} of {n} completions"
        readable, _, _ = select.select([efd], [], [], remaining)
        if readable:
            os.eventfd_read(efd)    # reset before draining
            got += cq.drain()
    assert len(got) == n, got
    return got


def wait_one(cq, efd):
    [c] = wait_for(cq, efd, 1)
    return c


def eventfd_value(fd):
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


def same_outcome(ours, call):
    """Assert a Completion matches what the blocking stdlib call does."""
    try:
        expected = call()
    except OSError as exc:
        assert ours.value is None
        assert type(ours.error) is type(exc)
        assert ours.error.args == exc.args
    else:
        assert ours.error is None
        assert ours.value == expected


# -- each op ------------------------------------------------------------------

def test_pool_size_and_bad_size():
    with ActivationPool(3) as p:
        assert p.size == 3
    assert p.closed
    with pytest.raises(ValueError):
        ActivationPool(0)


def test_usleep(pool, cq, efd):
    pool.usleep(cq, 7, 1000)
    c = wait_one(cq, efd)
    assert (c.cookie, c.value, c.error) == (7, None, None)
    assert cq.in_flight == 0
    assert "cookie=7" in repr(c)


def test_file_ops_round_trip(pool, cq, efd, tmp_path):
    path = tmp_path / "data"
    pool.open(cq, "open", str(path), os.O_RDWR | os.O_CREAT, 0o600)
    c = wait_one(cq, efd)
    assert c.error is None
    fd = c.value
    try:
        assert not os.get_inheritable(fd)
        assert os.stat(path).st_mode & 0o777 == 0o600

        pool.pwrite(cq, "w", fd, b"hello world", 0)
        assert wait_one(cq, efd).value == 11
        pool.pwrite(cq, "w2", fd, bytearray(b"WORLD"), 6)
        assert wait_one(cq, efd).value == 5
        pool.pwrite(cq, "w3", fd, memoryview(b"xxH").cast("B")[2:], 0)
        assert wait_one(cq, efd).value == 1

        pool.pread(cq, "r", fd, 5, 6)
        assert wait_one(cq, efd).value == b"WORLD"
        pool.pread(cq, "r2", fd, 100, 0)
        assert wait_one(cq, efd).value == b"Hello WORLD"
        pool.pread(cq, "eof", fd, 10, 11)
        assert wait_one(cq, efd).value == b""
        pool.pread(cq, "zero", fd, 0, 0)
        assert wait_one(cq, efd).value == b""

        pool.fsync(cq, "sync", fd)
        c = wait_one(cq, efd)
        assert (c.value, c.error) == (None, None)

        pool.fstat(cq, "stat", fd)
        st = wait_one(cq, efd).value
        expected = os.fstat(fd)
        assert isinstance(st, os.stat_result)
        assert st == expected
        for name in ("st_size", "st_mode", "st_ino", "st_dev", "st_nlink", "st_uid",
                     "st_gid", "st_atime", "st_mtime", "st_ctime", "st_atime_ns",
                     "st_mtime_ns", "st_ctime_ns", "st_blksize", "st_blocks", "st_rdev"):
            assert getattr(st, name) == getattr(expected, name), name
        assert st.st_size == 11
    finally:
        pool.close_fd(cq, "close", fd)
        c = wait_one(cq, efd)
    assert (c.cookie, c.value, c.error) == ("close", None, None)
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF


def test_open_accepts_bytes_and_pathlike(pool, cq, efd, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    for name in (os.fsencode(path), path):
        pool.open(cq, name, name, os.O_RDONLY)
        c = wait_one(cq, efd)
        assert c.error is None
        os.close(c.value)


def test_open_enoent(pool, cq, efd, tmp_path):
    missing = str(tmp_path / "missing")
    pool.open(cq, 1, missing, os.O_RDONLY)
    c = wait_one(cq, efd)
    assert c.value is None
    assert isinstance(c.error, FileNotFoundError)
    assert c.error.errno == errno.ENOENT
    assert c.error.filename == missing


def test_open_rejects_nul_before_submitting(pool, cq):
    with pytest.raises(ValueError):
        pool.open(cq, 1, "a\0b", os.O_RDONLY)
    assert cq.in_flight == 0
    assert cq.drain() == []


@pytest.mark.parametrize("submit", [
    lambda pool, cq: pool.pread(cq, "op", -1, 10, 0),
    lambda pool, cq: pool.pwrite(cq, "op", -1, b"x", 0),
    lambda pool, cq: pool.fsync(cq, "op", -1),
    lambda pool, cq: pool.fstat(cq, "op", -1),
    lambda pool, cq: pool.close_fd(cq, "op", -1),
], ids=["pread", "pwrite", "fsync", "fstat", "close"])
def test_ebadf(pool, cq, efd, submit):
    submit(pool, cq)
    c = wait_one(cq, efd)
    assert c.cookie == "op"
    assert c.value is None
    assert type(c.error) is OSError
    assert c.error.errno == errno.EBADF
    assert c.error.strerror == os.strerror(errno.EBADF)


@pytest.mark.parametrize("args", [
    ("127.0.0.1", 80),
    ("localhost", 80, 0, socket.SOCK_STREAM),
    ("localhost", "http", 0, 0, 0, socket.AI_CANONNAME),
    (b"127.0.0.1", b"8080", socket.AF_INET, socket.SOCK_DGRAM),
    ("::1", 443, socket.AF_INET6),
    ("fe80::1%1", 0, socket.AF_INET6, socket.SOCK_STREAM),
    (None, 0, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_PASSIVE),
    (None, None, 0, 0, 0, socket.AI_PASSIVE),                    # EAI_NONAME
    ("not-an-address", 80, 0, 0, 0, socket.AI_NUMERICHOST),      # EAI_NONAME
    ("127.0.0.1", 80, 12345),                                     # EAI_FAMILY
    ("127.0.0.1", 80, socket.AF_INET, 12345),                     # EAI_SOCKTYPE
    ("127.0.0.1", "no-such-service", 0, socket.SOCK_STREAM),      # EAI_SERVICE
])
def test_getaddrinfo_matches_stdlib(pool, cq, efd, args):
    pool.getaddrinfo(cq, "gai", *args)
    c = wait_one(cq, efd)
    assert c.cookie == "gai"
    same_outcome(c, lambda: socket.getaddrinfo(*args))


def test_getaddrinfo_shapes(pool, cq, efd):
    pool.getaddrinfo(cq, 1, "::1", 443, socket.AF_INET6, socket.SOCK_STREAM)
    [(family, kind, proto, canonname, sockaddr)] = wait_one(cq, efd).value
    assert family is socket.AF_INET6
    assert kind is socket.SOCK_STREAM
    assert (proto, canonname, sockaddr) == (socket.IPPROTO_TCP, "", ("::1", 443, 0, 0))


def test_getaddrinfo_error_is_gaierror(pool, cq, efd):
    pool.getaddrinfo(cq, 1, "bad host", 80, flags=socket.AI_NUMERICHOST)
    err = wait_one(cq, efd).error
    assert isinstance(err, socket.gaierror)
    assert err.errno == socket.EAI_NONAME
    assert err.strerror


@pytest.mark.parametrize("host, port, exc", [
    (80, 80, TypeError),
    ("localhost", 1.5, OSError),
    ("local\0host", 80, ValueError),
])
def test_getaddrinfo_bad_arguments_raise_at_submit(pool, cq, host, port, exc):
    with pytest.raises(exc):
        pool.getaddrinfo(cq, 1, host, port)
    assert cq.drain() == [] and cq.in_flight == 0


@pytest.mark.parametrize("sockaddr, flags", [
    (("127.0.0.1", 80), NUMERIC),
    (("127.0.0.1", 80), 0),                       # /etc/hosts and /etc/services
    (("127.0.0.1", 53), socket.NI_DGRAM),
    (("::1", 8080, 0, 0), NUMERIC),
    (("::1", 8080), NUMERIC),
    (("fe80::1", 22, 7, 1), NUMERIC),
])
def test_getnameinfo_matches_stdlib(pool, cq, efd, sockaddr, flags):
    pool.getnameinfo(cq, "gni", sockaddr, flags)
    c = wait_one(cq, efd)
    assert c.cookie == "gni"
    same_outcome(c, lambda: socket.getnameinfo(sockaddr, flags))


def test_getnameinfo_bad_flags_is_gaierror(pool, cq, efd):
    pool.getnameinfo(cq, 1, ("127.0.0.1", 80), 0x7fffffff)
    err = wait_one(cq, efd).error
    assert isinstance(err, socket.gaierror)
    assert err.errno == socket.EAI_BADFLAGS


@pytest.mark.parametrize("sockaddr", [
    ["127.0.0.1", 80],
    ("127.0.0.1",),
    ("localhost", 80),                 # not numeric
    ("127.0.0.1", 80, 0, 0),           # IPv4 with IPv6 fields
    ("::1", 80, 1 << 20, 0),           # flowinfo out of range
])
def test_getnameinfo_bad_sockaddr_raises_like_stdlib(pool, cq, sockaddr):
    with pytest.raises(Exception) as ours:
        pool.getnameinfo(cq, 1, sockaddr, NUMERIC)
    with pytest.raises(Exception) as theirs:
        socket.getnameinfo(sockaddr, NUMERIC)
    assert type(ours.value) is type(theirs.value)
    assert cq.drain() == [] and cq.in_flight == 0


# -- queue behaviour ----------------------------------------------------------

def test_notifies_only_when_queue_becomes_non_empty(cq, efd):
    with ActivationPool(1) as pool:
        for i in range(5):
            pool.usleep(cq, i, 1000)
        wait_until(lambda: cq.in_flight == 0)
        assert eventfd_value(efd) == 1          # five completions, one write
        assert [c.cookie for c in cq.drain()] == [0, 1, 2, 3, 4]
        assert eventfd_value(efd) == 0

        pool.usleep(cq, 5, 0)
        wait_until(lambda: cq.in_flight == 0)
        pool.usleep(cq, 6, 0)                   # queue already non-empty
        wait_until(lambda: cq.in_flight == 0)
        assert eventfd_value(efd) == 1
        assert [c.cookie for c in cq.drain()] == [5, 6]


def test_many_concurrent_preads(cq, efd, tmp_path):
    n = 2000
    path = tmp_path / "blocks"
    path.write_bytes(b"".join(i.to_bytes(4, "little") for i in range(n)))
    fd = os.open(path, os.O_RDONLY)
    try:
        with ActivationPool(8) as pool:
            for i in range(n):
                pool.pread(cq, i, fd, 4, 4 * i)
            done = wait_for(cq, efd, n, timeout=30)
    finally:
        os.close(fd)
    assert sorted(c.cookie for c in done) == list(range(n))
    for c in done:
        assert c.error is None
        assert int.from_bytes(c.value, "little") == c.cookie
    assert cq.drain() == []


def test_cookies_need_not_be_unique(pool, cq, efd):
    pool.usleep(cq, "same", 0)
    pool.usleep(cq, "same", 0)
    assert [c.cookie for c in wait_for(cq, efd, 2)] == ["same", "same"]


def test_queues_are_independent(pool, efd):
    other_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        with CompletionQueue(efd) as a, CompletionQueue(other_fd) as b:
            pool.usleep(a, "a", 0)
            pool.usleep(b, "b", 0)
            assert wait_one(a, efd).cookie == "a"
            assert wait_one(b, other_fd).cookie == "b"
    finally:
        os.close(other_fd)


def test_notify_fd_must_be_non_blocking():
    fd = os.eventfd(0)
    try:
        with pytest.raises(ValueError):
            CompletionQueue(fd)
    finally:
        os.close(fd)


# -- shutdown and lifetime ----------------------------------------------------

def test_pool_close_completes_in_flight_requests(cq, efd):
    pool = ActivationPool(2)
    for i in range(10):
        pool.usleep(cq, i, 1_000_000)
    pool.getaddrinfo(cq, "gai", "127.0.0.1", 80)
    pool.pread(cq, "pread", -1, 1, 0)
    pool.close()
    assert cq.in_flight == 0
    done = {c.cookie: c for c in wait_for(cq, efd, 12)}
    assert sorted(done, key=str) == sorted([*range(10), "gai", "pread"], key=str)
    for c in done.values():
        assert c.error is None or c.error.errno == errno.ECANCELED
    cancelled = [c for c in done.values() if c.error is not None]
    assert cancelled, "two workers cannot have taken all twelve requests"
    assert type(done["gai"].error) is OSError          # EAI_SYSTEM + ECANCELED
    assert done["pread"].error.errno == errno.ECANCELED

    pool.close()                                       # idempotent
    with pytest.raises(RuntimeError):
        pool.usleep(cq, 1, 0)
    assert cq.drain() == []


def test_concurrent_close_waits_for_workers(cq, efd):
    pool = ActivationPool(1)
    pool.usleep(cq, 1, 200_000)
    left_in_flight = []

    def close():
        pool.close()
        left_in_flight.append(cq.in_flight)

    closers = [threading.Thread(target=close) for _ in range(3)]
    for t in closers:
        t.start()
    for t in closers:
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert left_in_flight == [0, 0, 0]
    assert len(wait_for(cq, efd, 1)) == 1


def test_cq_close_refuses_while_in_flight(efd):
    cq = CompletionQueue(efd)
    pool = ActivationPool(1)
    pool.usleep(cq, "quick", 0)
    wait_until(lambda: cq.in_flight == 0)
    pool.usleep(cq, "slow", 500_000)
    with pytest.raises(RuntimeError, match="in flight"):
        cq.close()
    assert not cq.closed
    assert [c.cookie for c in cq.drain()] == ["quick"]    # nothing discarded
    pool.usleep(cq, "still usable", 0)
    pool.close()
    cq.close()                       # undrained completions are discarded
    assert cq.closed
    cq.close()
    with pytest.raises(RuntimeError):
        cq.drain()
    with ActivationPool(1) as other:
        with pytest.raises(RuntimeError):
            other.usleep(cq, 1, 0)


def test_caller_may_close_notify_fd_early():
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    cq = CompletionQueue(fd)
    with ActivationPool(1) as pool:
        pool.usleep(cq, 1, 100_000)
        os.close(fd)
        reused = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            wait_until(lambda: cq.in_flight == 0)
            assert eventfd_value(reused) == 0     # the worker wrote to its dup
        finally:
            os.close(reused)
    assert [c.cookie for c in cq.drain()] == [1]
    cq.close()


def test_dropped_queue_stays_alive_while_in_flight(efd):
    pool = ActivationPool(1)
    cq = CompletionQueue(efd)
    pool.usleep(cq, 1, 100_000)
    pool.pread(cq, 2, 0, 4096, 0)
    ref = weakref.ref(cq)
    del cq
    gc.collect()
    cq = ref()
    assert cq is not None
    pool.close()
    assert len(cq.drain()) == 2
    assert id(cq) not in native._queues_in_use
    cq.close()


def test_no_fd_leaks(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    before = sorted(os.listdir("/proc/self/fd"))
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    cq = CompletionQueue(fd)
    pool = ActivationPool(4)
    pool.open(cq, "open", str(path), os.O_RDONLY)
    f = wait_one(cq, fd).value
    pool.pread(cq, "r", f, 10, 0)
    pool.getaddrinfo(cq, "gai", "localhost", 80)
    pool.getnameinfo(cq, "gni", ("127.0.0.1", 80), 0)
    assert all(c.error is None for c in wait_for(cq, fd, 3))
    pool.close_fd(cq, "close", f)
    assert wait_one(cq, fd).error is None
    pool.usleep(cq, "left in flight", 500_000)
    pool.close()
    cq.close()
    os.close(fd)
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_gil_released_while_request_in_flight(pool, cq, efd):
    stop = threading.Event()
    count = [0]

    def counter():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=counter)
    t.start()
    try:
        pool.usleep(cq, "sleep", 200_000)
        start = count[0]
        readable, _, _ = select.select([efd], [], [], TIMEOUT)
        during_wait = count[0] - start
        assert readable
        os.eventfd_read(efd)
        assert [c.cookie for c in cq.drain()] == ["sleep"]

        # Shutting down joins a worker busy for 200 ms; that must not hold the
        # GIL either.  Retry in the rare case the worker had not yet taken the
        # request, which close() then cancels without waiting.
        for _ in range(5):
            closing = ActivationPool(1)
            closing.usleep(cq, "close", 200_000)
            time.sleep(0.02)
            start = count[0]
            closing.close()
            during_close = count[0] - start
            [c] = wait_for(cq, efd, 1)
            if c.error is None:
                break
    finally:
        stop.set()
        t.join(TIMEOUT)
    assert during_wait > 0
    assert during_close > 0


def test_forked_child_neither_uses_nor_joins_inherited_pool(pool, cq, efd):
    pool.usleep(cq, "parent", 100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)    # fork with threads
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                pool.usleep(cq, "child", 0)
            except RuntimeError:
                pool.close()        # must return at once: no workers to join
                code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    assert wait_one(cq, efd).cookie == "parent"


# -- the GIL-keeping entry points (csrc/activations_py.c) ---------------------

def test_pending_and_ready_follow_a_request_to_its_drain(pool, cq, efd):
    assert not cq.pending and cq.wait_ready(0) == 0
    pool.usleep(cq, "x", 0)
    assert cq.pending
    wait_until(lambda: cq.in_flight == 0)
    assert cq.wait_ready(0) == 1
    assert cq.pending  # finished, not drained
    assert [c.cookie for c in cq.drain()] == ["x"]
    assert not cq.pending and cq.wait_ready(0) == 0


def test_wait_ready_resets_the_eventfd_only_when_something_is_ready(pool, cq, efd):
    os.eventfd_write(efd, 1)            # a wake-up nothing is ready for yet
    assert cq.wait_ready(1000) == 0
    assert eventfd_value(efd) == 1      # left alone: it is not a completion's
    with ActivationPool(1) as one:
        for i in range(3):
            one.usleep(cq, i, 0)
        wait_until(lambda: cq.in_flight == 0)
        assert cq.wait_ready(0) == 3
        assert eventfd_value(efd) == 0  # reset: the caller drains next
        assert [c.cookie for c in cq.drain()] == [0, 1, 2]


def test_wait_ready_bounds(cq):
    with pytest.raises(ValueError):
        cq.wait_ready(-1)
    with pytest.raises(ValueError):
        cq.wait_ready(1_000_001)
    with pytest.raises(TypeError):
        cq.wait_ready(None)
    cq.close()
    with pytest.raises(RuntimeError):
        cq.wait_ready(0)


def test_builtins_reject_bad_arguments():
    for call in (lambda: native._submit(0, 1, 2), lambda: native._ready(0),
                 lambda: native._inflight(-1), lambda: native._drain(1, 1, -1),
                 lambda: native._spin(1, -1, 0)):
        with pytest.raises((ValueError, OverflowError)):
            call()
    with pytest.raises(TypeError):
        native._submit(1, 2)
    with pytest.raises(TypeError):
        native._drain(1, 2)


def test_submit_drain_and_wait_ready_keep_the_gil(pool, cq, efd):
    """No other Python thread runs while an LWP submits, waits briefly and drains.

    Each release of the GIL would let the counting thread in (and, next to a
    CPU hog, cost the caller a switch interval to get it back).  The switch
    interval is raised so that only a release could let the counter move.
    """
    stop = threading.Event()
    count = [0]

    def counter():
        while not stop.is_set():
            count[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    t = threading.Thread(target=counter)
    t.start()
    try:
        wait_until(lambda: count[0] > 0)
        # This thread holds the GIL now: from here on, only a release lets it go.
        start = count[0]
        done = 0
        for i in range(200):
            pool.usleep(cq, i, 0)
            while not cq.wait_ready(1_000_000):
                pass
            done += len(cq.drain())
        during = count[0] - start
    finally:
        stop.set()
        sys.setswitchinterval(old)
        t.join(TIMEOUT)
    assert done == 200
    assert during == 0


def test_cffi_entry_points_behave_like_the_builtins(monkeypatch, pool, cq, efd):
    """The fallback used where CPython's C API is missing (PyPy)."""
    assert isinstance(native._submit, types.BuiltinFunctionType)  # replaced on CPython
    for name, fn in zip(("_submit", "_drain", "_inflight", "_ready", "_spin"),
                        native._cffi_entry_points()):
        monkeypatch.setattr(native, name, fn)
    assert cq.wait_ready(0) == 0 and cq.in_flight == 0
    for i in range(3):
        pool.usleep(cq, i, 0)
    wait_until(lambda: cq.in_flight == 0)
    os.eventfd_write(efd, 1)
    assert cq.wait_ready(1000) == 3 and eventfd_value(efd) == 0
    assert sorted(c.cookie for c in cq.drain()) == [0, 1, 2]
    with pytest.raises(ValueError):
        cq.wait_ready(1_000_001)
    assert_submit_refused_once_shut_down(pool, cq)


def assert_submit_refused_once_shut_down(pool, cq):
    pool.close()
    req = native._new_req(native.lib.LWP_OP_USLEEP)
    assert native._submit(pool._addr, cq._addr, native._address(req)) == errno.ESHUTDOWN
    assert cq.in_flight == 0 and not cq.drain()


def test_builtin_submit_is_refused_once_shut_down(pool, cq):
    assert_submit_refused_once_shut_down(pool, cq)


def test_each_request_gets_an_idle_worker_while_there_are_some(cq, efd, tmp_path):
    """Opening a FIFO for reading blocks a worker until a writer comes: with
    four workers, four such opens all run at once.  A writer opening the
    *last* one first (without blocking) proves its open was not left queued
    behind the others for want of a wake-up."""
    fifos = [tmp_path / f"fifo{i}" for i in range(4)]
    fds = []
    pool = ActivationPool(4)
    try:
        for i, path in enumerate(fifos):
            os.mkfifo(path)
            pool.open(cq, i, path, os.O_RDONLY)
        for path in reversed(fifos):
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    fds.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                    break
                except OSError as e:  # ENXIO: no reader has it open yet
                    assert e.errno == errno.ENXIO
                    assert time.monotonic() < deadline, f"{path.name} never got a worker"
                    time.sleep(0.005)
    finally:
        # Opened read-write, a FIFO lets every reader's open through, now or later.
        fds += [os.open(path, os.O_RDWR | os.O_NONBLOCK) for path in fifos if path.exists()]
        pool.close()
        done = cq.drain()
        fds += [c.value for c in done if c.error is None]
        for fd in fds:
            os.close(fd)
    assert sorted(c.cookie for c in done if c.error is None) == [0, 1, 2, 3]
