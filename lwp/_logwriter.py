"""The log writer of lwp's servers: log output written off the LWPs.

A server's green threads produce log output (an access line per response,
an application's traceback, text an application writes to ``wsgi.errors``,
a failed TLS handshake).  Written where it is produced, a slow or stuck
destination (stderr into a full pipe, a file on a slow disk, a logging
handler that sends over the network) would hold that LWP and every
connection on it.  So the output is queued on the server's
:class:`LogWriter`, a green thread that writes it, in the order it came, in
batches through :func:`lwp.blocking`: a stuck destination holds an
activation thread, never an LWP nor the request whose output it is.
"""

import logging
import sys
from _thread import allocate_lock
from collections.abc import Mapping
from itertools import groupby
from traceback import TracebackException

from ._core import park
from ._core.activation import blocking
from ._core.exceptions import Cancelled
from ._core.scheduler import spawn
from .sync import Event

BACKLOG = 10000          # entries waiting for a slow log, at most
CLOSE_TIMEOUT = 10.0     # seconds a server's stop() lets its writer finish before giving up


class LogWriter:
    """A green thread that writes queued log entries in order, in batches, through
    :func:`lwp.blocking`.

    An entry is text for a file-like (written and flushed with the text next
    to it for the same file) or a :class:`logging.LogRecord` for a logger
    (handed to its handlers).  One queue keeps the order of everything put on
    it, from any green thread of any LWP.  At most ``BACKLOG`` entries wait;
    beyond that they are dropped and counted per destination, and each
    destination is told its count once the writer catches up: a log that
    cannot keep up must not grow memory without bound.  ``name`` prefixes
    the writer's own notes, which go to ``logger``.

    Nothing is lost quietly when the writer ends.  Cancelled (``lwp.run``
    shutting down a server that was never stopped), it writes what waits
    before it ends, and a write it was waiting for goes on in its activation
    thread.  An entry put after it ended (an application thread writing to
    ``wsgi.errors`` after the server stopped) is written by the caller.  Only
    once :meth:`close` gave up on a stuck destination are entries dropped:
    those waiting then and all put later (writing them would hold their
    callers on the stuck destination), as its note says.
    """

    def __init__(self, name, logger):
        self.name = name
        self.logger = logger
        self._lock = allocate_lock()
        self._entries = []        # (destination, text or (LogRecord, TracebackException))
        self._dropped = {}        # id(destination) -> [destination, count]
        self._waiter = None       # the writer, parked until there are entries
        self._closed = False
        self._ended = False       # the writer returned: entries are written by _put's caller
        self._abandoned = False   # close() gave up on a stuck destination: entries are dropped
        self._cancelled = False   # the writer was cancelled while writing: it ends when idle
        self._thread = spawn(self._run, name=f"{name}-log")

    def text(self, stream, text):
        """Queue ``text`` for the file-like ``stream``."""
        self._put(stream, text)

    def line(self, dest, msg, args=()):
        """Queue a line of an access log ``dest``: ``msg % args`` and a newline for a
        file-like; an INFO record of ``msg`` and ``args`` for a :class:`logging.Logger`
        (``args`` a tuple, or a mapping as for ``logger.info(msg, mapping)``)."""
        if not isinstance(dest, logging.Logger):
            self._put(dest, (msg % args if args else msg) + "\n")
        elif dest.isEnabledFor(logging.INFO):
            # The record is made by the writer, out of the request's time (most of the cost
            # of a line); a line waits as (msg, args), a record as (record, traceback).
            self._put(dest, (msg, (args,) if isinstance(args, Mapping) else args))

    def log(self, logger, level, msg, *args, exc_info=False):
        """Queue what ``logger.log(level, msg, *args, exc_info=exc_info)`` writes (with
        ``exc_info=True``, the exception being handled).

        The record is made here, in the caller's green thread (a LogRecord
        made in an activation thread would register a dummy Thread for good).
        The traceback is kept as a :class:`traceback.TracebackException`
        without its source lines, which the writer reads when it formats it
        into ``exc_text``: a waiting record must not keep the caller's frames
        (a request's environ, its body) alive, nor read source files on an
        LWP.  So the record has ``exc_text`` and no ``exc_info``.
        """
        if logger.isEnabledFor(level):
            self._put(logger, _record(logger, level, msg, args,
                                      sys.exc_info() if exc_info else None))

    def _put(self, dest, entry):
        with self._lock:
            ended = self._ended
            if not ended:
                if len(self._entries) >= BACKLOG:
                    count = self._dropped.setdefault(id(dest), [dest, 0])
                    count[1] += 1
                    return
                self._entries.append((dest, entry))
                w, self._waiter = self._waiter, None
        if ended:
            if not self._abandoned:
                self._write(dest, [entry], _call)
        elif w is not None:
            w.wake(None)

    def close(self, timeout=None):
        """Write what waits, then end the writer.

        A destination still stuck after ``timeout`` seconds is given up on:
        the writer is cancelled (its write goes on in an activation thread
        until the destination takes it), what still waits is dropped, and an
        ERROR note on ``logger`` says how much, written the same way so that
        it cannot hold the caller either.
        """
        with self._lock:
            self._closed = True
            w, self._waiter = self._waiter, None
        if w is not None:
            w.wake(None)
        if self._thread is park.current():
            return
        try:
            self._thread.join(timeout)
        except TimeoutError:
            self._abandoned = True
            self._thread.cancel()
            with self._lock:
                lost, self._entries = len(self._entries), []
            note = _record(self.logger, logging.ERROR, "%s: the log did not take its last "
                           "entries within %s s; %d more dropped, and so is what is "
                           "logged after this", (self.name, timeout, lost), None)
            spawn(blocking, _handle, self.logger, [note], name=f"{self.name}-log-note")

    def _run(self):
        try:
            while True:
                with self._lock:
                    entries, self._entries = self._entries, []
                    dropped, self._dropped = self._dropped, {}
                    if not (entries or dropped):
                        if self._closed or self._cancelled:
                            self._ended = True  # under the lock: no entry is put after this check
                            return
                        w = self._waiter = park.waiter()
                if not (entries or dropped):
                    try:
                        w.wait()
                    except Cancelled:
                        with self._lock:
                            self._waiter = None
                            self._cancelled = True
                    continue
                for dest, count in dropped.values():
                    entries.append((dest, self._drop_note(dest, count)))
                for _, batch in groupby(entries, key=lambda e: id(e[0])):
                    batch = list(batch)
                    self._write(batch[0][0], [entry for _, entry in batch], self._blocking)
        finally:
            with self._lock:
                self._ended = True  # also when close() gave up: what waits is dropped

    def _blocking(self, fn, *args):
        """``blocking(fn, *args)``; a cancel ends the writer once what waits is
        written, not at once, unless close() gave up.

        A write already running when the cancel comes is waited for before
        the next: it goes on in its activation thread, and the next write to
        its destination must follow it, as must the end of ``lwp.run``.  A
        write the cancel recalled before it started is made again.
        """
        while True:
            call = _Call(fn, args)
            try:
                blocking(call)
                return
            except Cancelled:
                if self._abandoned:
                    raise
                self._cancelled = True
                if not call.recall():
                    call.done.wait()  # a second cancel (close() giving up) raises here
                    call.result()
                    return

    def _write(self, dest, entries, call):
        """Write ``entries`` for ``dest`` with ``call(fn, *args)``: through an activation, or
        directly once the writer has ended."""
        if isinstance(dest, logging.Logger):
            call(_handle, dest, [_as_record(dest, entry) for entry in entries])
            return
        try:
            call(_write, dest, "".join(entries))
        except Exception:  # a full disk, a closed or broken file: say so, go on
            call(_handle, self.logger, [_record(
                self.logger, logging.ERROR, "%s: the log %r failed to take %d entries",
                (self.name, dest, len(entries)), sys.exc_info())])

    def _drop_note(self, dest, count):
        msg = "%s: %d log entries dropped (the log is slower than the server)"
        if isinstance(dest, logging.Logger):
            return _record(dest, logging.ERROR, msg, (self.name, count), None)
        return msg % (self.name, count) + "\n"


class LogStream:
    """A text file-like whose writes are queued on a :class:`LogWriter`, in order with the
    rest of its entries, for ``dest`` (None: :data:`sys.stderr` as it is at each write).

    ``flush()`` returns at once: the writer flushes ``dest`` after each batch,
    and waiting for it would hold the caller on a stuck destination.
    """

    def __init__(self, writer, dest=None):
        self._writer = writer
        self._dest = dest

    def writable(self):
        return True

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._writer.text(sys.stderr if self._dest is None else self._dest, text)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass


def _record(logger, level, msg, args, exc_info):
    """A queued record for ``logger`` and its traceback, not yet formatted."""
    record = logger.makeRecord(logger.name, level, __file__, 0, msg, args, None)
    tb = None
    if exc_info is not None and exc_info[0] is not None:
        tb = TracebackException(*exc_info, lookup_lines=False)
    return record, tb


def _as_record(logger, entry):
    """A queued record as it is, a queued access line made an INFO record (see line())."""
    if isinstance(entry[0], str):
        msg, args = entry
        return logger.makeRecord(logger.name, logging.INFO, __file__, 0, msg, args, None), None
    return entry


def _handle(logger, entries):
    """Format the tracebacks and hand the records to ``logger``'s handlers (in an
    activation thread: reading source lines and writing may block)."""
    for record, tb in entries:
        if tb is not None:
            record.exc_text = "".join(tb.format()).rstrip("\n")
        logger.handle(record)


def _write(stream, text):
    stream.write(text)
    stream.flush()


def _call(fn, *args):
    fn(*args)


class _Call:
    """``fn(*args)`` for :func:`lwp.blocking` that can be recalled until it
    starts, and waited for once it has (``done``, set from its kernel thread)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args
        self.done = Event()
        self._claim = allocate_lock()  # taken by whichever comes first: the call or recall()
        self._error = None

    def __call__(self):
        if not self._claim.acquire(False):
            return
        try:
            self.fn(*self.args)
        except BaseException as e:  # noqa: B036 - reported by blocking() or result()
            self._error = e
            raise
        finally:
            self.done.set()

    def recall(self):
        """True if the call had not started: now it never will."""
        return self._claim.acquire(False)

    def result(self):
        """Once ``done``: raise what the call raised."""
        if self._error is not None:
            raise self._error
