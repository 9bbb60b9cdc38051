"""Stream servers: a dispatcher accepts, worker green threads serve.

``StreamServer(address, handler)`` listens on a TCP (or Unix) address and calls
``handler(conn, address)`` for every connection, where ``conn`` is a
cooperative socket: its ``recv``/``sendall``/``makefile`` park the green
thread, so the handler is ordinary blocking code.  The connection is closed
when the handler returns.

Two organisations of a server, chosen with ``mode``:

``"concurrent"`` (default): the *dispatcher/worker* model.  One dispatcher
    green thread accepts connections and hands each to a worker green thread
    from a bounded pool (``max_connections``).  Workers are made on demand and
    kept: a worker that finished a connection waits for the next one, so a
    busy server recycles its threads instead of creating them.
``"iterative"``: the dispatcher serves each connection itself, one at a time.
    Kept for comparison (see ``examples/throughput_model.py``): a handler that
    waits for a disk or a client makes every other client wait too.

Limits and back-pressure.  When all ``max_connections`` workers are busy,
``overload="wait"`` (default) stops accepting until one is free: new clients
wait in the kernel's listen backlog, which is the back-pressure TCP already
has.  ``overload=callable`` accepts anyway and calls ``callable(conn,
address)`` in a short-lived thread (at most ``max_overload`` at once, beyond
which connections are simply closed): the WSGI server answers 503 there.

Accept errors never end the server.  Running out of descriptors (EMFILE,
ENFILE) or kernel memory (ENOBUFS, ENOMEM) is answered with an exponential
back-off (10 ms doubling to 1 s) and a warning on the ``lwp.server`` logger,
after which accepting resumes by itself; connections aborted before accept
(ECONNABORTED, EPROTO...) are skipped.

``stop(timeout)`` stops accepting at once, lets busy connections finish for up
to ``timeout`` seconds, then cancels what is left (``lwp.Cancelled`` is raised
in those handlers, so their ``finally`` blocks run).  A handler may mark a
phase in which it is idle (an HTTP connection between requests) with
``with server.idle():`` so that ``stop`` ends it immediately instead of
waiting for it.

TLS: ``ssl_context=`` (an :class:`ssl.SSLContext` made for the server side)
makes every connection a cooperative :class:`lwp.ssl.SSLSocket`.  The
handshake runs in the thread that serves the connection (the worker; the
dispatcher itself only in ``"iterative"`` mode), so a client that connects and
says nothing holds one worker, never the dispatcher, and only for
``handshake_timeout`` seconds (default 10), after which it is dropped.  A
failed handshake (a timeout, a plain-HTTP client, an unknown CA) costs one
line at INFO on the ``lwp.server`` logger and the ``tls_errors`` counter; the
handler is not called.  ``stop()`` ends handshakes in progress at once.
``plaintext=callable(conn, address)`` is for a client that speaks plain text
to the TLS port (its first byte, peeked, cannot begin a TLS handshake): it is
counted and logged as a failed handshake, then ``callable`` may answer it in
the clear on ``conn`` (the WSGI server answers ``400 Bad Request``, as nginx
does) before the connection is closed.

Logging: what the server logs on the ``lwp.server`` logger (a handler's
exception at ERROR with its traceback, a failed TLS handshake at INFO, an
accept back-off at WARNING, an overload callable's exception at DEBUG) is
queued on the server's log writer, a green thread that hands the records to
the logging handlers in order, in batches, through :func:`lwp.blocking`.  So a
handler that blocks (a StreamHandler on a pipe nobody drains, one that sends
over the network) holds an activation thread, never an LWP and the
connections on it.  If the log falls more than 10,000 records behind,
records are dropped and their number logged.  ``stop()`` lets the writer
finish for 10 s at most, then gives up on a destination still stuck (an
ERROR record says how much was dropped).  A record carries its formatted
traceback (``exc_text``), not ``exc_info``: a waiting record keeps no frames
alive.

Several processes: ``reuse_port=True`` sets ``SO_REUSEPORT``, so several
processes can bind the same port and the kernel spreads connections among
them; ``serve_processes(n, make_server)`` forks ``n`` such processes, each
with its own scheduler.  That is how a server uses every core despite the GIL.
"""

import errno
import logging
import os
import signal
import socket as _stdsocket
import sys
from _thread import allocate_lock

from . import _logwriter
from ._core import park
from ._core.exceptions import Cancelled
from ._core.preempt import user_code_entry
from ._core.scheduler import spawn

__all__ = ["StreamServer", "serve_processes", "cooperative_socket"]

log = logging.getLogger("lwp.server")

# Accept errors that mean "no resources now": back off, then retry.
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# Accept errors that concern one connection only: skip it.
_SKIP_ERRNOS = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.ENOPROTOOPT,
                errno.EHOSTDOWN, errno.ENONET, errno.EHOSTUNREACH, errno.EOPNOTSUPP,
                errno.ENETUNREACH, errno.EAGAIN, errno.EINTR}
BACKOFF_MIN, BACKOFF_MAX = 0.01, 1.0

from . import socket as _lwp_socket
from .monkey import get_original as _get_original

_std_socket_class = _get_original("socket", "socket")  # the real one, even after lwp.monkey


def cooperative_socket(sock):
    """Wrap a connected or listening stdlib socket into a cooperative one (takes it over)."""
    fd = sock.detach()
    return _lwp_socket.socket(sock.family, sock.type, sock.proto, fileno=fd)


def _make_listener(address, backlog, reuse_port, family=None):
    if isinstance(address, (str, bytes)):
        family = _stdsocket.AF_UNIX
    elif family is None:
        family = _stdsocket.AF_INET6 if ":" in address[0] else _stdsocket.AF_INET
    sock = _std_socket_class(family, _stdsocket.SOCK_STREAM)
    try:
        if family != _stdsocket.AF_UNIX:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class StreamServer:
    """A TCP server: a dispatcher green thread and a bounded pool of workers.

    ``address``: ``(host, port)`` (port 0 picks a free one; see
    :attr:`address`), a Unix socket path, or an already listening socket
    (anything with ``fileno()``; the server uses a duplicate of it).
    ``handler(conn, address)`` serves one connection.  Options: ``mode``
    (``"concurrent"`` or ``"iterative"``), ``max_connections`` (worker pool
    size, default 1024), ``overload`` (``"wait"`` or a callable, see the
    module doc), ``max_overload``, ``backlog`` (default 1024), ``reuse_port``,
    ``nodelay`` (TCP_NODELAY on accepted connections, default True),
    ``ssl_context``, ``handshake_timeout`` and ``plaintext`` (TLS, see the
    module doc), ``name`` (for thread names and logs).
    """

    def __init__(self, address, handler, *, mode="concurrent", max_connections=1024,
                 overload="wait", max_overload=64, backlog=1024, reuse_port=False,
                 nodelay=True, ssl_context=None, handshake_timeout=10.0, plaintext=None,
                 name="server"):
        if mode not in ("concurrent", "iterative"):
            raise ValueError(f"mode must be 'concurrent' or 'iterative', got {mode!r}")
        if not (isinstance(max_connections, int) and max_connections >= 1):
            raise ValueError(f"max_connections must be an integer >= 1, got {max_connections!r}")
        if overload != "wait" and not callable(overload):
            raise ValueError("overload must be 'wait' or a callable(conn, address)")
        self._tls_socket = None
        if ssl_context is not None:
            from .ssl import SSLSocket  # loaded only by a server that speaks TLS

            if not isinstance(ssl_context, _get_original("ssl", "SSLContext")):
                raise TypeError(f"ssl_context must be an ssl.SSLContext, got {ssl_context!r}")
            if not (isinstance(handshake_timeout, (int, float)) and handshake_timeout > 0):
                raise ValueError(f"handshake_timeout must be a number > 0, got {handshake_timeout!r}")
            self._tls_socket = SSLSocket
        if plaintext is not None and not callable(plaintext):
            raise ValueError("plaintext must be None or a callable(conn, address)")
        self.handler = handler
        self.mode = mode
        self.max_connections = max_connections
        self.overload = overload
        self.max_overload = max_overload
        self.backlog = backlog
        self.reuse_port = reuse_port
        self.nodelay = nodelay
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self.plaintext = plaintext
        self.name = name
        self._address_arg = address
        self._listener = None        # the stdlib socket, non-blocking
        self._lock = allocate_lock()  # guards the fields below (workers may run on several LWPs)
        self._idle = []               # waiters of idle workers
        self._workers = set()         # live worker threads
        self._busy = 0                # connections being served
        self._idle_phase = set()      # workers inside ``with server.idle()``
        self._capacity_waiter = None  # the dispatcher, waiting for a free worker
        self._drained_waiter = None   # stop(), waiting for busy == 0
        self._overloaded = 0
        self._overflow_threads = set()
        self._dispatcher = None
        self._logs = None             # the log writer, from start()
        self._stopping = False
        self.started = False
        self.counters = {"accepted": 0, "served": 0, "rejected": 0, "handler_errors": 0,
                         "accept_errors": 0, "max_busy": 0, "workers_made": 0,
                         "tls_errors": 0}

    # -- life cycle ------------------------------------------------------------------------

    @property
    def address(self):
        """The bound address (the real port when 0 was asked for)."""
        if self._listener is None:
            return self._address_arg
        return self._listener.getsockname()

    @property
    def stopping(self):
        return self._stopping

    def start(self):
        """Bind, listen and start the dispatcher; returns at once."""
        if self.started:
            raise RuntimeError("server already started")
        a = self._address_arg
        if hasattr(a, "fileno"):  # a listening socket (or gunicorn's wrapper of one): share it
            self._listener = _std_socket_class(fileno=os.dup(a.fileno()))
        else:
            self._listener = _make_listener(a, self.backlog, self.reuse_port)
        self._listener.setblocking(False)
        self._tcp = self._listener.family in (_stdsocket.AF_INET, _stdsocket.AF_INET6)
        self.started = True
        self._logs = _logwriter.LogWriter(self.name, log)
        self._dispatcher = spawn(self._dispatch, name=f"{self.name}-dispatcher")
        return self

    def serve_forever(self):
        """Start (if needed) and wait until the server is stopped."""
        if not self.started:
            self.start()
        self._dispatcher.join()
        while self._workers:
            w = next(iter(self._workers), None)
            if w is not None:
                w.join()

    def __enter__(self):
        if not self.started:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self, timeout=None):
        """Stop accepting; let busy connections finish for ``timeout`` s; cancel the rest;
        then write out the server's log entries.

        ``timeout=None`` waits for as long as they take.  The log gets 10 s
        more at most (a stuck destination is given up on, see the module
        doc).  Idempotent.  Returns the number of connections that had to be
        cancelled.
        """
        try:
            return self._stop(timeout)
        finally:
            if self._logs is not None:
                self._logs.close(_logwriter.CLOSE_TIMEOUT)

    def _stop(self, timeout):
        with self._lock:
            if self._stopping:
                first = False
            else:
                self._stopping = first = True
            idle, self._idle = self._idle, []
            interruptible = list(self._idle_phase)
            cap, self._capacity_waiter = self._capacity_waiter, None
        if first and self._listener is not None:
            park.fd_closing(self._listener.fileno())
            self._listener.close()
        if cap is not None:
            cap.wake(None)
        for w in idle:
            w.wake(None)
        for t in interruptible:
            t.cancel()
        if self._dispatcher is not None and self._dispatcher is not park.current():
            self._dispatcher.join()
        cancelled = 0
        if not self._wait_drained(timeout):
            with self._lock:
                left = list(self._workers)
            for t in left:
                if t is not park.current() and t.cancel():
                    cancelled += 1
        with self._lock:
            left = list(self._workers) + list(self._overflow_threads)
        for t in left:
            if t is not park.current():
                t.join()
        return cancelled

    def _wait_drained(self, timeout):
        with self._lock:
            if self._busy == 0:
                return True
            w = self._drained_waiter = park.waiter()
        return w.wait(timeout) is not park.TIMED_OUT

    def idle(self):
        """Context manager: while inside, ``stop()`` cancels this connection at once."""
        return _IdlePhase(self)

    def stats(self):
        """Counters: accepted, served, rejected, handler_errors, accept_errors, tls_errors, busy..."""
        with self._lock:
            d = dict(self.counters)
            d.update(busy=self._busy, workers=len(self._workers), idle_workers=len(self._idle))
        return d

    # -- the dispatcher --------------------------------------------------------------------

    def _accept(self):
        """Accept one connection (parking while there is none); None once stopped."""
        backoff = BACKOFF_MIN
        lst = self._listener
        while not self._stopping:
            try:
                conn, addr = lst._accept()
            except BlockingIOError:
                try:
                    park._wait_fd(lst.fileno(), False, None)
                except (OSError, ValueError):  # ValueError: stop() closed it already (fd -1)
                    if self._stopping:
                        return None
                    raise
                continue
            except OSError as e:
                if self._stopping:
                    return None
                self.counters["accept_errors"] += 1
                if e.errno in _SKIP_ERRNOS:
                    continue
                level = logging.WARNING if backoff == BACKOFF_MIN else logging.DEBUG
                self._logs.log(log, level, "%s: accept failed (%s); backing off %.0f ms",
                               self.name, e, backoff * 1000)
                self._backoff(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if backoff != BACKOFF_MIN:
                self._logs.log(log, logging.WARNING, "%s: accepting again", self.name)
            return conn, addr
        return None

    def _backoff(self, seconds):
        with self._lock:
            if self._stopping:
                return
            w = self._capacity_waiter = park.waiter()  # stop() wakes it
        w.wait(seconds)
        with self._lock:
            if self._capacity_waiter is w:
                self._capacity_waiter = None

    def _prepare(self, fd):
        """A cooperative socket for an accepted descriptor."""
        lst = self._listener
        conn = _lwp_socket.socket(lst.family, lst.type, lst.proto, fileno=fd)
        if self._tcp and self.nodelay:
            try:
                conn.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
            except OSError:
                pass
        return conn

    def _dispatch(self):
        try:
            if self.mode == "iterative":
                self._dispatch_iterative()
            else:
                self._dispatch_concurrent()
        except Cancelled:
            pass
        finally:
            if not self._stopping:  # cancelled from outside: behave like stop()
                with self._lock:
                    self._stopping = True
                if self._listener.fileno() >= 0:
                    park.fd_closing(self._listener.fileno())
                    self._listener.close()

    def _dispatch_iterative(self):
        while True:
            got = self._accept()
            if got is None:
                return
            self.counters["accepted"] += 1
            with self._lock:
                self._busy = 1
                self.counters["max_busy"] = 1
            try:
                self._serve(self._prepare(got[0]), got[1])
            finally:
                with self._lock:
                    self._busy = 0
                    w, self._drained_waiter = self._drained_waiter, None
                if w is not None:
                    w.wake(None)

    def _wait_capacity(self):
        """Back-pressure: park the dispatcher until a worker is free (or stop)."""
        with self._lock:
            if self._stopping or self._idle or len(self._workers) < self.max_connections:
                return
            w = self._capacity_waiter = park.waiter()
        w.wait()

    def _dispatch_concurrent(self):
        cap = self.max_connections
        while True:
            if self.overload == "wait" and self._busy >= cap:
                self._wait_capacity()
            got = self._accept()
            if got is None:
                return
            conn, addr = got
            self.counters["accepted"] += 1
            handed = False
            while not handed:
                with self._lock:
                    if self._idle:
                        w = self._idle.pop()
                    elif len(self._workers) < cap and not self._stopping:
                        w = None
                    else:
                        break
                    self._busy += 1
                    if self._busy > self.counters["max_busy"]:
                        self.counters["max_busy"] = self._busy
                if w is None:
                    t = spawn(self._worker, conn, addr, name=f"{self.name}-worker")
                    self.counters["workers_made"] += 1
                    with self._lock:
                        self._workers.add(t)
                    handed = True
                elif w.wake((conn, addr)):
                    handed = True
                else:
                    with self._lock:
                        self._busy -= 1
            if not handed:
                self._reject(conn, addr)

    def _reject(self, conn, addr):
        self.counters["rejected"] += 1
        if self.overload == "wait" or self._overloaded >= self.max_overload or self._stopping:
            os.close(conn)
            return
        with self._lock:
            self._overloaded += 1
            t = spawn(self._overflow, conn, addr, name=f"{self.name}-overload")
            self._overflow_threads.add(t)

    def _overflow(self, conn, addr):
        try:
            raw = c = self._prepare(conn)
            try:
                if self.ssl_context is not None:
                    c = self._secure(raw, addr)
                if c is not None:
                    self.overload(c, addr)
            finally:
                if c is not None:
                    c.close()
                raw.close()  # a no-op once TLS has taken the descriptor over
        except Exception:
            self._logs.log(log, logging.DEBUG, "%s: overload handler failed", self.name,
                           exc_info=True)
        except Cancelled:
            pass
        finally:
            with self._lock:
                self._overloaded -= 1
                self._overflow_threads.discard(park.current())

    def _secure(self, conn, addr):
        """The server side of the TLS handshake on ``conn``: an SSLSocket, or None if it failed.

        The descriptor passes to the SSLSocket (``conn`` is left detached); on
        failure it is closed.  The handshake is an idle phase: ``stop()``
        cancels it rather than waiting for a silent client.
        """
        conn.settimeout(self.handshake_timeout)
        try:
            with self.idle():
                if self.plaintext is not None and _speaks_plain_text(conn):
                    tls = None
                else:
                    tls = self._tls_socket._create(conn, server_side=True,
                                                   do_handshake_on_connect=False,
                                                   context=self.ssl_context)
                    try:
                        tls.do_handshake()
                    except BaseException:
                        tls.close()
                        raise
        except OSError as e:  # SSLError and TimeoutError included
            self._tls_failed(addr, e)
            return None
        if tls is None:
            self._tls_failed(addr, "the client speaks plain text, not TLS")
            self.plaintext(conn, addr)
            return None
        tls.settimeout(None)
        return tls

    def _tls_failed(self, addr, reason):
        self._logs.log(log, logging.INFO, "%s: TLS handshake with %s failed: %s", self.name, addr,
                       reason)
        with self._lock:
            self.counters["tls_errors"] += 1

    @user_code_entry  # the handler may be preempted: nothing is held across the call
    def _serve(self, conn, addr):
        raw = conn
        try:
            if self.ssl_context is not None:
                conn = self._secure(raw, addr)
                if conn is None:
                    return
            self.handler(conn, addr)
        except Cancelled:
            raise
        except (ConnectionError, TimeoutError):
            pass  # the client went away or was too slow: the handler's business ends here
        except Exception:
            with self._lock:
                self.counters["handler_errors"] += 1
            self._logs.log(log, logging.ERROR, "%s: handler failed for %s", self.name, addr,
                           exc_info=True)
        finally:
            if conn is not raw:
                raw.close()  # after TLS took the descriptor over, or a failed handshake: a no-op
            if conn is not None:
                try:
                    conn.close()
                except OSError:
                    pass
            with self._lock:
                self.counters["served"] += 1

    def _worker(self, conn, addr):
        me = park.current()
        try:
            while True:
                try:
                    self._serve(self._prepare(conn), addr)
                finally:
                    with self._lock:
                        self._busy -= 1
                        drained = self._drained_waiter if self._busy == 0 else None
                        if drained is not None:
                            self._drained_waiter = None
                        cap, self._capacity_waiter = self._capacity_waiter, None
                        if self._stopping:
                            w = None
                        else:
                            w = park.waiter()
                            self._idle.append(w)
                    if drained is not None:
                        drained.wake(None)
                    if cap is not None:
                        cap.wake(None)
                if w is None:
                    return
                got = w.wait()
                if got is None:
                    return
                conn, addr = got
        except Cancelled:
            pass
        finally:
            with self._lock:
                self._workers.discard(me)
                try:
                    self._idle.remove(w)
                except (ValueError, UnboundLocalError):
                    pass


def _speaks_plain_text(conn):
    """Whether the client's first byte (peeked: the handshake still reads it) cannot begin
    a TLS handshake, as nginx tells a plain-HTTP client: a TLS record of type handshake
    starts with 0x16, an SSLv2-style hello with a byte whose high bit is set."""
    first = conn.recv(1, _stdsocket.MSG_PEEK)
    return bool(first) and first[0] != 0x16 and not first[0] & 0x80


class _IdlePhase:
    __slots__ = ("server", "thread")

    def __init__(self, server):
        self.server = server
        self.thread = park.current()

    def __enter__(self):
        s = self.server
        with s._lock:
            s._idle_phase.add(self.thread)
            stopping = s._stopping
        if stopping:
            self.__exit__()
            raise Cancelled()
        return self

    def __exit__(self, *exc):
        with self.server._lock:
            self.server._idle_phase.discard(self.thread)


def serve_processes(n, target, *, stop_signals=(signal.SIGTERM, signal.SIGINT)):
    """Fork ``n`` processes that each run ``target()``; wait for them all.

    Use with a server made with ``reuse_port=True`` inside ``target`` (each
    child binds its own socket on the same port; the kernel balances
    connections), so a server uses every core despite the GIL.  A signal in
    ``stop_signals`` received by the parent is passed on to the children.
    Returns the children's exit statuses.
    """
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                target()
            except KeyboardInterrupt:
                pass
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)

    def forward(signum, frame):
        for p in pids:
            try:
                os.kill(p, signum)
            except ProcessLookupError:
                pass

    old = {s: signal.signal(s, forward) for s in stop_signals}
    try:
        statuses = []
        for p in pids:
            while True:
                try:
                    statuses.append(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]))
                    break
                except InterruptedError:
                    continue
        return statuses
    finally:
        for s, h in old.items():
            signal.signal(s, h)

