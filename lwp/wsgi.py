"""A WSGI HTTP/1.1 server on lwp green threads: ``python -m lwp.wsgi module:app``.

Each connection is served by a worker green thread of a
:class:`lwp.server.StreamServer` (dispatcher/worker), so a WSGI application
written as plain blocking code (a Flask app, say) runs unchanged: while one
request waits for a database or a file, the LWP serves the others.

HTTP: keep-alive (HTTP/1.0's ``Connection: keep-alive`` too), pipelining
(requests on one connection are answered in order), chunked request and
response bodies, ``Expect: 100-continue`` (answered when the application
first reads ``wsgi.input``), HEAD, ``wsgi.file_wrapper`` (``sendfile``).
Requests are parsed by ``httptools`` (the llhttp parser of Node.js, in C);
it is strict, so malformed input is refused rather than guessed at.

Safe defaults, each a keyword of :class:`WSGIServer` and a command-line option:

=========================================  ===============================
request line longer than ``max_line``      414, connection closed
a header field over ``max_field``, more    431, connection closed
than ``max_headers`` fields, or a header
block over ``max_header_block``
body over ``max_body``                     413 (before reading it, even
                                           with 100-continue), closed
headers not complete ``header_timeout`` s  408, closed (slowloris)
after the request's first byte
idle keep-alive for ``keepalive_timeout``  closed
more than ``max_connections`` connections  503 with Retry-After, closed
Content-Length with Transfer-Encoding,     400, closed (request smuggling
duplicate Content-Length, bad chunk size,  shapes); the parser's
any other malformed request                verdict
an HTTP/1.1 request without a Host         400, closed (RFC 9112 3.2)
header, any request with two
a plain-HTTP request on the HTTPS port     400 in the clear, closed (as
                                           nginx answers it)
a client silent for ``io_timeout`` while   closed
sending a body or reading the response
=========================================  ===============================

Header names containing ``_`` are dropped (they would be confused with
``-`` in ``HTTP_*`` environ keys), header values are decoded as latin-1 as
PEP 3333 says, and the application's response headers are checked: a name
must be an RFC 9110 token and a value must hold no CR, LF or NUL (header
injection), its Content-Length must not be negative and its body must be
bytes (a ``str`` is the usual slip), else the answer is a 500.  Any exception
of the application, its own ``ConnectionError`` or ``TimeoutError`` (a
database refusing) included, is a 500 and logged; only a failure of the
client's own connection ends a request without an answer or a log.  Error
responses close the connection with a lingering close, so the client reads
the status instead of a reset.

The access log (``access_log``: a file, a :class:`logging.Logger`, or None,
the default: no log) has one line per response: client, time, request line,
status, bytes, microseconds.  An application's exception (answered 500 if
nothing was sent yet) is logged at ERROR, with its traceback, on the
``lwp.wsgi`` logger.  ``wsgi.errors`` is a text stream (``write``,
``writelines``, ``flush``) to ``sys.stderr`` as it is at each write, or to the
file-like ``errors`` given to :class:`WSGIServer`.  All three are written by
the server's log writer (see :mod:`lwp.server`: a green thread that writes
through :func:`lwp.blocking`, in the order things happened, a request's
error and ``wsgi.errors`` text before its access line), so a slow log
(stderr into a full pipe, a handler that sends over the network) never holds
an LWP or a request.  ``wsgi.errors.flush()`` returns at once for that
reason: the writer flushes the stream after each batch.  If the log falls
more than 10,000 entries behind, entries are dropped and their number
written to the destination that lost them.  The error records carry the
formatted traceback (``exc_text``), not ``exc_info``: a waiting record keeps
no frames alive.
A failed TLS handshake is logged at INFO on ``lwp.server``.

Command line::

    python -m lwp.wsgi myapp:app --host 127.0.0.1 --port 8000 --lwps 2 --processes 2

``--processes N`` forks N servers sharing the port (``SO_REUSEPORT``), one
scheduler each, to use N cores despite the GIL.  SIGTERM or Ctrl-C stops
gracefully (``--graceful-timeout``).  HTTPS: ``--certfile cert.pem
--keyfile key.pem`` (and ``--ca-certs ca.pem`` to require client
certificates); the handshake happens in the connection's worker, within
``--handshake-timeout`` seconds.
"""

import argparse
import importlib
import io
import logging
import os
import re
import signal
import sys
import time
from collections import deque
from email.utils import formatdate
from stat import S_ISREG
from urllib.parse import unquote_to_bytes

import httptools

from ._core.exceptions import Cancelled
from ._core.preempt import user_code_entry
from ._logwriter import LogStream
from .server import StreamServer, serve_processes

__all__ = ["WSGIServer", "FileWrapper", "serve", "server_ssl_context", "main"]

log = logging.getLogger("lwp.wsgi")

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 408: "Request Timeout",
    413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}
RECV_SIZE = 65536
LINGER_SECONDS = 1.0        # after an error response, read what the client still sends
LINGER_BYTES = 1 << 20
DRAIN_BYTES = 1 << 16       # unread request body we read and discard to keep the connection


class HTTPError(Exception):
    """A request the server refuses with ``status`` (and then closes the connection)."""

    def __init__(self, status, detail=""):
        super().__init__(status, detail)
        self.status = status
        self.detail = detail or REASONS.get(status, "")


class ClientDisconnected(ConnectionError):
    """Raised by ``wsgi.input`` reads when the client closed before sending the whole body."""


_date_cache = [0, b""]


def _http_date():
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode("ascii")
    return _date_cache[1]


class _Request:
    __slots__ = ("url", "headers", "method", "version", "keep_alive", "headers_done",
                 "complete", "chunks", "received", "content_length", "chunked", "expect",
                 "head_bytes", "field_bytes", "started", "upgrade")

    def __init__(self, started):
        self.url = b""
        self.headers = []
        self.method = None
        self.version = "1.1"
        self.keep_alive = True
        self.headers_done = False
        self.complete = False
        self.chunks = deque()    # body data received and not yet read by the application
        self.received = 0
        self.content_length = None
        self.chunked = False
        self.expect = None
        self.head_bytes = 0      # bytes of the request head seen so far (an unfinished head)
        self.field_bytes = 0     # bytes of the header fields parsed so far
        self.started = started   # monotonic time of the first byte
        self.upgrade = False


class _Input(io.RawIOBase):
    """``wsgi.input``: the request body, read from the connection on demand."""

    def __init__(self, conn, req):
        super().__init__()
        self._conn = conn
        self._req = req
        self._buf = bytearray()

    def readable(self):
        return True

    def _more(self):
        """Move more body into the buffer; False at the end of the body."""
        req = self._req
        if not req.chunks:
            if req.complete:
                return False
            self._conn.fill_body(req)
            if not req.chunks:
                return False
        while req.chunks:
            self._buf += req.chunks.popleft()
        return True

    def read(self, size=-1):
        if size is None or size < 0:
            while self._more():
                pass
            data = bytes(self._buf)
            self._buf.clear()
            return data
        while len(self._buf) < size and self._more():
            pass
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readline(self, size=-1):
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0:
                end = i + 1
                break
            if 0 <= size <= len(self._buf):
                end = size
                break
            start = len(self._buf)
            if not self._more():
                end = len(self._buf)
                break
        if 0 <= size < end:
            end = size
        data = bytes(self._buf[:end])
        del self._buf[:end]
        return data

    def readlines(self, hint=-1):
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _Connection:
    """One client connection: the parser's callbacks and the request/response loop."""

    def __init__(self, server, sock, addr):
        self.server = server
        self.sock = sock
        self.addr = addr
        self.parser = httptools.HttpRequestParser(self)
        self.queue = deque()      # requests whose head is being or has been parsed, in order
        self.parsing = None       # the request the parser is filling
        self.error = None         # HTTPError that ended parsing; answered in turn
        self.eof = False
        self.timeout = -1.0       # what the socket's timeout is set to now
        self.continue_sent = False
        self.client_error = None  # the last error of the client's socket (or its early EOF)
        remote = addr if isinstance(addr, tuple) else ("", "")
        self.base_env = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": server.server_name,
            "SERVER_PORT": server.server_port,
            "REMOTE_ADDR": remote[0],
            "REMOTE_PORT": str(remote[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": server.url_scheme,
            "wsgi.errors": server._errors,
            "wsgi.multithread": True,
            "wsgi.multiprocess": server.multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }

    # -- parser callbacks (run inside feed_data) ---------------------------------------------

    def on_message_begin(self):
        r = self.parsing = _Request(time.monotonic())
        self.queue.append(r)

    def on_url(self, url):
        r = self.parsing
        r.url += url
        if len(r.url) > self.server.max_line:
            raise HTTPError(414)

    def on_header(self, name, value):
        r = self.parsing
        s = self.server
        if len(name) + len(value) > s.max_field:
            raise HTTPError(431, "header field too large")
        if len(r.headers) >= s.max_headers:
            raise HTTPError(431, "too many header fields")
        r.field_bytes += len(name) + len(value) + 4
        if r.field_bytes > s.max_header_block:
            raise HTTPError(431, "header block too large")
        r.headers.append((name, value))

    def on_headers_complete(self):
        r = self.parsing
        p = self.parser
        s = self.server
        r.method = p.get_method()
        r.version = p.get_http_version()
        r.keep_alive = p.should_keep_alive()
        if r.version not in ("1.1", "1.0"):
            raise HTTPError(505)
        hosts = 0
        for name, value in r.headers:
            lname = name.lower()
            if lname == b"host":
                hosts += 1
            elif lname == b"content-length":
                r.content_length = int(value)  # the parser has checked it
            elif lname == b"transfer-encoding":
                r.chunked = True  # the parser accepts only a final "chunked"
            elif lname == b"expect":
                r.expect = value.lower()
        if hosts > 1 or (hosts == 0 and r.version == "1.1"):  # RFC 9112 3.2: a MUST
            raise HTTPError(400, "an HTTP/1.1 request needs one Host header" if hosts == 0
                            else "more than one Host header")
        if r.content_length is not None and r.content_length > s.max_body:
            raise HTTPError(413)
        if r.expect is not None and r.expect != b"100-continue":
            raise HTTPError(417)
        r.headers_done = True

    def on_body(self, body):
        r = self.parsing
        r.received += len(body)
        if r.received > self.server.max_body:
            raise HTTPError(413)
        r.chunks.append(body)

    def on_message_complete(self):
        self.parsing.complete = True
        self.parsing = None

    # -- reading ---------------------------------------------------------------------------

    def _recv(self, timeout):
        if timeout != self.timeout:
            self.sock.settimeout(timeout)
            self.timeout = timeout
        return self.client_io(self.sock.recv, RECV_SIZE)

    def send(self, data):
        self.client_io(self.sock.sendall, data)

    def client_io(self, op, *args):
        """``op(*args)``, an operation on the client's socket, noting its failure as the
        client's (see respond)."""
        try:
            return op(*args)
        except OSError as e:
            self.client_error = e
            raise

    def _feed(self, data):
        """Parse ``data``; a refusal is kept in ``self.error`` for its turn."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            err = e.__context__
            self.error = err if isinstance(err, HTTPError) else HTTPError(400, str(err))
        except httptools.HttpParserUpgrade:
            # No protocol upgrades here: answer the request as plain HTTP, then close.
            if self.parsing is not None and self.parsing.headers_done:
                self.parsing.keep_alive = False
                self.parsing.complete = True
                self.parsing = None
            self.error = HTTPError(400, "protocol upgrade not supported")
        except httptools.HttpParserError as e:
            self.error = HTTPError(400, str(e) or "malformed request")
        else:
            r = self.parsing
            if r is not None and not r.headers_done:
                r.head_bytes += len(data)
                if r.head_bytes > self.server.max_header_block:
                    self.error = HTTPError(414 if not r.headers and len(r.url) >= self.server.max_line
                                           else 431, "request head too large")
            return
        r = self.parsing
        if r is not None and not r.headers_done:
            # A request whose head failed will not be served: drop it from the queue.
            try:
                self.queue.remove(r)
            except ValueError:
                pass

    def next_request(self):
        """The next request whose head is complete; None to close (EOF or idle timeout).

        Raises HTTPError for a request to refuse.
        """
        s = self.server
        while True:
            q = self.queue
            if q and q[0].headers_done:
                return q.popleft()
            if self.error is not None:
                raise self.error
            if self.eof:
                return None
            if q:  # a request has begun: its head must complete within header_timeout
                left = q[0].started + s.header_timeout - time.monotonic()
                if left <= 0:
                    raise HTTPError(408)
                try:
                    data = self._recv(left)
                except TimeoutError:
                    raise HTTPError(408) from None
            else:
                try:
                    with s._stream.idle():
                        data = self._recv(s.keepalive_timeout)
                except (TimeoutError, Cancelled):
                    return None
            if not data:
                self.eof = True
                continue
            self._feed(data)

    def fill_body(self, req):
        """Read until ``req`` has more body data or is complete (for wsgi.input)."""
        if req.expect == b"100-continue" and not self.continue_sent and not req.received:
            self.continue_sent = True
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not req.chunks and not req.complete:
            if self.error is not None and self.parsing is req:
                raise self.error
            if self.eof:
                self.client_error = ClientDisconnected(
                    "client closed the connection before the end of the body")
                raise self.client_error
            data = self._recv(self.server.io_timeout)
            if not data:
                self.eof = True
                continue
            self._feed(data)
            if self.error is not None and self.parsing is not req and not req.complete:
                raise self.error

    # -- the loop --------------------------------------------------------------------------

    def serve(self):
        s = self.server
        try:
            while True:
                try:
                    req = self.next_request()
                except HTTPError as e:
                    self.refuse(e)
                    return
                if req is None:
                    return
                if not self.respond(req):
                    return
                if s._stream.stopping:
                    return
        except (ConnectionError, TimeoutError, OSError):
            return

    def refuse(self, err, keep_reading=True):
        """Send an error response, then close with a lingering read."""
        body = f"{err.status} {REASONS.get(err.status, '')}\n{err.detail}\n".encode("latin-1", "replace")
        extra = b"Retry-After: 1\r\n" if err.status == 503 else b""
        head = (f"HTTP/1.1 {err.status} {REASONS.get(err.status, 'Error')}\r\n".encode()
                + b"Date: " + _http_date() + b"\r\nContent-Type: text/plain\r\n" + extra
                + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
        try:
            self.sock.sendall(head + body)
        except OSError:
            return
        self.server._log(self.addr, None, None,
                         f"{err.status} {REASONS.get(err.status, 'Error')}", [], len(body), 0.0)
        if keep_reading:
            _linger(self.sock)

    @user_code_entry  # the application may be preempted: nothing is held across the call
    def respond(self, req):
        """Run the application for ``req``; True if the connection may stay open."""
        s = self.server
        t0 = time.monotonic()
        self.continue_sent = False
        env = self.environ(req)
        if env is None:
            self.refuse(HTTPError(400, "bad request target"))
            return False
        state = _Response(self, req)
        result = None
        if self.timeout != s.io_timeout:  # sends wait io_timeout, not what the last recv waited
            self.sock.settimeout(s.io_timeout)
            self.timeout = s.io_timeout
        try:
            result = s.app(env, state.start_response)
            chunks = result
            if type(result) is list and len(result) == 1 and not state.sent:
                state.single(result[0])
                state.finish()
            elif type(result) is FileWrapper and not state.sent and state.send_file(result):
                state.finish()
            else:
                for chunk in chunks:
                    if chunk:
                        state.write(chunk)
                state.finish()
        except HTTPError as e:  # a refusal met while reading the body
            if not state.sent:
                self.refuse(e)
            return False
        except Cancelled:
            raise
        except Exception as e:
            if e is self.client_error:  # the client went away or was too slow: not an app error
                if isinstance(e, ClientDisconnected) and not state.sent:
                    self.refuse(HTTPError(400, "incomplete request body"), keep_reading=False)
                return False
            # The application's own error, a ConnectionError from its database included.
            s._error("lwp.wsgi: application error on %s %s", req.method.decode("latin-1"),
                     req.url.decode("latin-1"))
            if not state.sent:
                self.refuse(HTTPError(500, ""), keep_reading=False)
            return False
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    s._error("lwp.wsgi: error closing the application's iterable")
        s._log(self.addr, req, env, state.status, state.headers, state.body_bytes,
               time.monotonic() - t0)
        if not (state.keep_alive and req.keep_alive):
            return False
        return self.discard_body(req)

    def discard_body(self, req):
        """Read what the application left of the body; False if too much (then close)."""
        if req.complete:
            req.chunks.clear()
            return True
        if req.expect == b"100-continue" and not self.continue_sent and not req.received:
            return False  # the client waits for our go-ahead: close instead of inviting the body
        dropped = sum(map(len, req.chunks))
        req.chunks.clear()
        while not req.complete:
            if dropped > DRAIN_BYTES or self.error is not None or self.eof:
                return False
            try:
                self.fill_body(req)
            except (HTTPError, ConnectionError, TimeoutError):
                return False
            dropped += sum(map(len, req.chunks))
            req.chunks.clear()
        return True

    def environ(self, req):
        url = req.url
        if url[:1] != b"/":
            if url == b"*" and req.method == b"OPTIONS":
                url = b"*"
            else:
                try:
                    parsed = httptools.parse_url(url)
                except httptools.HttpParserInvalidURLError:
                    return None
                url = parsed.path or b"/"
                if parsed.query:
                    url += b"?" + parsed.query
        path, _, query = url.partition(b"?")
        path, _, _ = path.partition(b"#")
        env = self.base_env.copy()
        env["REQUEST_METHOD"] = _METHODS.get(req.method) or req.method.decode("latin-1")
        env["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
        env["QUERY_STRING"] = query.decode("latin-1")
        env["RAW_URI"] = url.decode("latin-1")
        env["SERVER_PROTOCOL"] = "HTTP/1.1" if req.version == "1.1" else "HTTP/" + req.version
        if req.chunked or req.content_length:
            env["wsgi.input"] = _Input(self, req)
        else:
            env["wsgi.input"] = io.BytesIO()
        keys = _ENV_KEYS
        for name, value in req.headers:
            key = keys.get(name)
            if key is None:
                if b"_" in name:
                    continue  # would be confused with "-" once in the environ
                key = _env_key(name)
            value = value.decode("latin-1")
            if key in env:
                if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                    env[key] = value
                else:
                    env[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
            else:
                env[key] = value
        if req.chunked:
            env.pop("CONTENT_LENGTH", None)
        return env


_is_token = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+\Z").match  # RFC 9110 field names

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}
_ENV_KEYS = {}  # header name (bytes, as sent) -> environ key; bounded


def _env_key(name):
    key = name.decode("ascii").upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    if len(_ENV_KEYS) < 1024:
        _ENV_KEYS[name] = key
    return key


class FileWrapper:
    """``wsgi.file_wrapper``: return ``FileWrapper(file)`` to send a file efficiently.

    When ``file`` is a regular file with a descriptor, the server sends it
    from its current position with ``sendfile`` (no copy through Python; over
    TLS, a read-and-send loop), with a Content-Length of what is left of it
    unless the application gave one; otherwise it is iterated in ``blksize``
    reads like any other response.  Closing the wrapper (the server does)
    closes ``file``.
    """

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def _check_bytes(data):
    """PEP 3333: a body is bytes.  Checked before the head goes out, so that a str (the
    usual slip) is answered 500 instead of a connection closed with nothing sent."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"the application's response body must be bytes, not "
                        f"{type(data).__name__}")


class _Response:
    """``start_response`` and the framing of one response."""

    __slots__ = ("conn", "req", "status", "status_code", "headers", "sent", "chunked", "length",
                 "body_bytes", "keep_alive", "no_body")

    def __init__(self, conn, req):
        self.conn = conn
        self.req = req
        self.status = None
        self.status_code = 0
        self.headers = None
        self.sent = False
        self.chunked = False
        self.length = None
        self.body_bytes = 0
        self.keep_alive = True
        self.no_body = req.method == b"HEAD"

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        if not isinstance(status, str) or "\r" in status or "\n" in status:
            raise ValueError(f"bad status {status!r}")
        self.status = status
        self.status_code = int(status[:3])
        self.headers = headers
        return self.write

    def _head(self, body_len=None):
        """Serialize the status line and headers, choosing the framing."""
        if self.status is None:
            raise AssertionError("the application returned before calling start_response")
        code = self.status_code
        if code < 200 or code in (204, 304):
            self.no_body = True
        out = [b"HTTP/1.1 ", self.status.encode("latin-1"), b"\r\n"]
        length = None
        conn_hdr = None
        for name, value in self.headers:
            if not _is_token(name) or "\r" in value or "\n" in value or "\0" in value:
                raise ValueError(f"bad response header (or header injection) {name!r}: {value!r}")
            lname = name.lower()
            if lname == "content-length":
                length = int(value)
                if length < 0:
                    raise ValueError(f"negative Content-Length {value!r}")
                continue
            elif lname == "connection":
                conn_hdr = value.lower()
                if conn_hdr == "close":
                    self.keep_alive = False
                continue
            elif lname == "transfer-encoding":
                continue  # ours to decide
            out += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        if length is None and body_len is not None and not (self.no_body and self.req.method != b"HEAD"):
            length = body_len
        if length is not None:
            self.length = length
            out += (b"Content-Length: ", str(length).encode(), b"\r\n")
        elif not self.no_body:
            if self.req.version == "1.1":
                self.chunked = True
                out.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False
        srv = self.conn.server
        if srv._stream.stopping:
            self.keep_alive = False
        keep = self.keep_alive and self.req.keep_alive
        if not keep:
            out.append(b"Connection: close\r\n")
        elif self.req.version == "1.0":
            out.append(b"Connection: keep-alive\r\n")
        out += (b"Date: ", _http_date(), b"\r\nServer: lwp\r\n\r\n")
        self.sent = True
        return b"".join(out)

    def single(self, body):
        """The whole body is one chunk: one send with its head."""
        _check_bytes(body)
        head = self._head(len(body))
        if self.no_body:
            self.conn.send(head)
            return
        if self.length != len(body):
            self.keep_alive = False
            body = body[:self.length]
        self.body_bytes = len(body)
        self.conn.send(head + body)

    def send_file(self, wrapper):
        """Send a FileWrapper's regular file with sendfile; False (nothing sent) if it is none."""
        f = wrapper.filelike
        try:
            st = os.fstat(f.fileno())
            pos = f.tell()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation included
            return False
        if not S_ISREG(st.st_mode):
            return False
        size = max(st.st_size - pos, 0)
        head = self._head(size)
        conn = self.conn
        conn.send(head)
        if self.no_body:
            return True
        count = min(self.length, size)
        if count:
            self.body_bytes = conn.client_io(conn.sock.sendfile, f, pos, count)
        return True

    def write(self, data):
        _check_bytes(data)
        if not self.sent:
            head = self._head()
        else:
            head = b""
        if self.no_body:
            if head:
                self.conn.send(head)
            return
        n = len(data)
        if self.chunked:
            if n:
                data = b"%x\r\n%s\r\n" % (n, data)
        elif self.length is not None:
            room = self.length - self.body_bytes
            if n > room:
                self.keep_alive = False
                data, n = data[:room], room
        self.body_bytes += n
        if head or data:
            self.conn.send(head + data if head else data)

    def finish(self):
        if not self.sent:
            self.conn.send(self._head(0))
            return
        if self.chunked and not self.no_body:
            self.conn.send(b"0\r\n\r\n")
        elif self.length is not None and self.body_bytes < self.length and not self.no_body:
            self.keep_alive = False
            raise ConnectionAbortedError("the application sent less than its Content-Length")


def _linger(sock):
    """Half-close and read what the client still sends (briefly), so it sees our reply."""
    try:
        sock.shutdown(1)  # SHUT_WR
        sock.settimeout(LINGER_SECONDS)
        deadline = time.monotonic() + LINGER_SECONDS
        total = 0
        while total < LINGER_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            data = sock.recv(RECV_SIZE)
            if not data:
                return
            total += len(data)
    except (OSError, TimeoutError):
        return


class WSGIServer:
    """Serve the WSGI application ``app`` on ``address`` (``(host, port)`` or a socket).

    Limits (see the module doc): ``max_connections`` (1000), ``max_line``
    (8190 bytes), ``max_field`` (8190), ``max_headers`` (100),
    ``max_header_block`` (65536), ``max_body`` (16 MiB), ``header_timeout``
    (10 s), ``keepalive_timeout`` (5 s), ``io_timeout`` (30 s).  Others:
    ``access_log`` (None, a file or a Logger), ``backlog``, ``reuse_port``,
    ``multiprocess`` (the ``wsgi.multiprocess`` flag), ``errors`` (where
    ``wsgi.errors`` text goes: a text file-like, or None for ``sys.stderr``).
    TLS: ``ssl_context`` (a server-side :class:`ssl.SSLContext`; ``wsgi.url_scheme`` is then
    ``"https"``) and ``handshake_timeout`` (10 s), as in
    :class:`lwp.server.StreamServer`; :func:`server_ssl_context` makes one
    from certificate files.
    """

    def __init__(self, address, app, *, max_connections=1000, max_line=8190, max_field=8190,
                 max_headers=100, max_header_block=65536, max_body=16 << 20, header_timeout=10.0,
                 keepalive_timeout=5.0, io_timeout=30.0, access_log=None, backlog=1024,
                 reuse_port=False, multiprocess=False, ssl_context=None, handshake_timeout=10.0,
                 errors=None, name="wsgi"):
        if errors is not None and not callable(getattr(errors, "write", None)):
            raise TypeError(f"errors must be None or a file-like with write(), got {errors!r}")
        self.app = app
        self.max_line = max_line
        self.max_field = max_field
        self.max_headers = max_headers
        self.max_header_block = max_header_block
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.io_timeout = io_timeout
        self.access_log = access_log
        self.multiprocess = multiprocess
        self.url_scheme = "http" if ssl_context is None else "https"
        self._stream = StreamServer(address, self._handle, max_connections=max_connections,
                                    overload=self._overload, backlog=backlog,
                                    reuse_port=reuse_port, ssl_context=ssl_context,
                                    handshake_timeout=handshake_timeout,
                                    plaintext=self._plain_http, name=name)
        self.server_name = "localhost"
        self.server_port = "0"
        self.errors = errors
        self._errors = None  # wsgi.errors, from start()

    @property
    def address(self):
        return self._stream.address

    def start(self):
        self._stream.start()
        self._errors = LogStream(self._stream._logs, self.errors)
        addr = self._stream.address
        if isinstance(addr, tuple):
            self.server_name, self.server_port = str(addr[0]), str(addr[1])
        return self

    def serve_forever(self):
        if not self._stream.started:
            self.start()
        self._stream.serve_forever()

    def stop(self, timeout=None):
        """Stop accepting, close idle keep-alive connections, let requests finish; then
        write out the logs (see :meth:`lwp.server.StreamServer.stop`)."""
        return self._stream.stop(timeout)

    def stats(self):
        return self._stream.stats()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _handle(self, sock, addr):
        _Connection(self, sock, addr).serve()

    def _overload(self, sock, addr):
        """More than max_connections: read the request head briefly, answer 503, close."""
        conn = _Connection(self, sock, addr)
        try:
            sock.settimeout(0.5)
            sock.recv(RECV_SIZE)
        except (OSError, TimeoutError):
            pass
        conn.refuse(HTTPError(503, "server at its connection limit"))

    def _plain_http(self, sock, addr):
        """A plain-HTTP client on the HTTPS port: a 400 in the clear, as nginx answers, so
        it sees why instead of a closed connection."""
        _Connection(self, sock, addr).refuse(
            HTTPError(400, "The plain HTTP request was sent to the HTTPS port"))

    def _error(self, msg, *args):
        """Queue ``msg % args`` at ERROR on ``lwp.wsgi`` with the exception being handled
        (what ``log.exception`` writes, written by the log writer)."""
        self._stream._logs.log(log, logging.ERROR, msg, *args, exc_info=True)

    def _log(self, addr, req, env, status, headers, nbytes, seconds):
        """Queue the access log's line for a response: ``env`` is its environ, or None (and
        ``req`` perhaps too) for a refusal of the server's own."""
        if self.access_log is None:
            return
        try:
            msg, args = self._access_message(addr, req, env, status, headers, nbytes, seconds)
        except Exception:  # a format or an environ the application spoiled: say so, go on
            self._error("lwp.wsgi: cannot make the access log line for a %s response", status)
            return
        self._stream._logs.line(self.access_log, msg, args)

    def _access_message(self, addr, req, env, status, headers, nbytes, seconds):
        """The access line as ``(msg, args)`` for ``msg % args``: lwp's format here."""
        client = addr[0] if isinstance(addr, tuple) else "-"
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        line = "-" if req is None else (
            f"{req.method.decode('latin-1')} {req.url.decode('latin-1')} HTTP/{req.version}")
        return (f'{client} - - [{when}] "{line}" {status[:3]} {nbytes} '
                f'{int(seconds * 1e6)}us'), ()


def server_ssl_context(certfile, keyfile=None, ca_certs=None):
    """A server-side TLS context for ``certfile`` (PEM; the key in it or in ``keyfile``).

    The standard library's defaults for a server (TLS 1.2 at least, its
    cipher choice).  With ``ca_certs`` (a PEM bundle), clients must present a
    certificate signed by one of those CAs (mutual TLS).
    """
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_certs)
    ctx.load_cert_chain(certfile, keyfile)
    if ca_certs:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def serve(app, host="127.0.0.1", port=8000, **options):
    """Run ``app`` until interrupted (call from a green thread, e.g. inside ``lwp.run``)."""
    server = WSGIServer((host, port), app, **options)
    server.start()
    try:
        server.serve_forever()
    finally:
        server.stop(5.0)


def load_app(spec):
    """Import ``module:attribute`` (attribute defaults to ``app``; ``module:factory()`` calls it).

    Raises :class:`LookupError` with a one-line message when the module or the
    attribute does not exist or is not callable; an exception raised while the
    module itself imports (a missing dependency, a bug) propagates unchanged,
    with the traceback that locates it.
    """
    module, _, attr = spec.partition(":")
    attr = attr or "app"
    sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise
        raise LookupError(f"no module named {module!r}") from None
    call = attr.endswith("()")
    obj = mod
    for part in attr.rstrip("()").split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(f"module {module!r} has no attribute {attr.rstrip('()')!r}") from None
    if call:
        obj = obj()
    if not callable(obj):
        raise LookupError(f"{spec} is a {type(obj).__name__}, not a WSGI application")
    return obj


def _number(kind, ok, what):
    def parse(text):
        value = kind(text)  # argparse turns a ValueError into "invalid ... value"
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its message
    return parse


def _positive(kind):
    return _number(kind, lambda v: v > 0, "> 0")


def _non_negative(kind):
    return _number(kind, lambda v: v >= 0, ">= 0")


_port = _number(int, lambda v: 0 <= v <= 65535, "a port number, 0 to 65535")


def _parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m lwp.wsgi",
                                description="Serve a WSGI application on lwp green threads.")
    p.add_argument("app", help="module:attribute of the WSGI application (e.g. myapp:app)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--lwps", type=_positive(int), default=None, help="LWPs per process (default: CPUs)")
    p.add_argument("--processes", type=_positive(int), default=1,
                   help="server processes sharing the port with SO_REUSEPORT")
    p.add_argument("--max-connections", type=_positive(int), default=1000)
    p.add_argument("--max-body", type=_positive(int), default=16 << 20)
    p.add_argument("--max-line", type=_positive(int), default=8190)
    p.add_argument("--max-field", type=_positive(int), default=8190)
    p.add_argument("--max-headers", type=_positive(int), default=100)
    p.add_argument("--header-timeout", type=_positive(float), default=10.0)
    p.add_argument("--keepalive-timeout", type=_positive(float), default=5.0)
    p.add_argument("--io-timeout", type=_positive(float), default=30.0)
    p.add_argument("--graceful-timeout", type=_non_negative(float), default=10.0)
    p.add_argument("--access-log", default=None, help="file for the access log, '-' for stderr")
    p.add_argument("--certfile", default=None, help="PEM certificate (chain): serve HTTPS")
    p.add_argument("--keyfile", default=None, help="PEM private key, if not in --certfile")
    p.add_argument("--ca-certs", default=None,
                   help="PEM CA bundle: require client certificates signed by these CAs")
    p.add_argument("--handshake-timeout", type=_positive(float), default=10.0,
                   help="seconds a client has to complete the TLS handshake")
    p.add_argument("--monkey", action="store_true", help="lwp.monkey.patch_all() before loading the app")
    return p.parse_args(argv)


def _say(line):
    """One line to stderr in one write: print() writes the text and its newline apart, and
    the lines of several --processes children would interleave."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _run_one(args, reuse_port, ctx):
    import lwp

    if args.monkey:
        import lwp.monkey

        lwp.monkey.patch_all()
    try:
        app = load_app(args.app)
    except LookupError as e:
        raise SystemExit(f"lwp.wsgi: cannot load {args.app}: {e.args[0]}") from None
    log_file = None
    if args.access_log == "-":
        access = sys.stderr
    elif args.access_log:
        access = log_file = open(args.access_log, "a", buffering=1)
    else:
        access = None

    def main():
        server = WSGIServer((args.host, args.port), app, max_connections=args.max_connections,
                            max_body=args.max_body, max_line=args.max_line,
                            max_field=args.max_field, max_headers=args.max_headers,
                            header_timeout=args.header_timeout,
                            keepalive_timeout=args.keepalive_timeout, io_timeout=args.io_timeout,
                            access_log=access, reuse_port=reuse_port,
                            multiprocess=args.processes > 1, ssl_context=ctx,
                            handshake_timeout=args.handshake_timeout)
        server.start()
        host, port = server.address[:2]
        _say(f"lwp.wsgi: serving {args.app} on {server.url_scheme}://{host}:{port} "
             f"(pid {os.getpid()})")
        try:
            server.serve_forever()
        except (KeyboardInterrupt, Cancelled):
            pass
        finally:
            left = server.stop(args.graceful_timeout)
            st = server.stats()
            _say(f"lwp.wsgi: stopped (pid {os.getpid()}): {st['served']} connections served, "
                 f"{st['rejected']} rejected, {left} cancelled")

    def on_term(signum, frame):
        # What Ctrl-C does: while lwp.run owns SIGINT its handler forwards the
        # interrupt to main safely; before and after, the default one raises.
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):  # SIG_IGN or SIG_DFL: stop all the same
            raise KeyboardInterrupt
        handler(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    try:
        lwp.run(main, lwps=args.lwps)
    except KeyboardInterrupt:
        pass
    finally:
        if log_file is not None:
            log_file.close()


def main(argv=None):
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if (args.keyfile or args.ca_certs) and not args.certfile:
        raise SystemExit("--keyfile and --ca-certs need --certfile")
    ctx = None
    if args.certfile:
        try:
            ctx = server_ssl_context(args.certfile, args.keyfile, args.ca_certs)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise SystemExit(f"lwp.wsgi: cannot load the TLS certificate or key: {e}") from None
    if args.processes > 1:
        if args.port == 0:
            raise SystemExit("--processes needs a fixed --port")
        statuses = serve_processes(args.processes, lambda: _run_one(args, True, ctx))
        return max(statuses, default=0)
    _run_one(args, False, ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
