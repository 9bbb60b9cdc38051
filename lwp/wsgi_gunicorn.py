"""A gunicorn worker class: ``gunicorn -k lwp.wsgi_gunicorn.LwpWorker myapp:app``.

Each gunicorn worker process runs an lwp scheduler and serves gunicorn's
listening sockets with :class:`lwp.wsgi.WSGIServer` (dispatcher/worker green
threads, the same HTTP handling and limits as ``python -m lwp.wsgi``).  So lwp
fits the deployment people already have: gunicorn's master forks the workers,
restarts them, and reloads them; ``--workers N`` gives N processes (the way
to use N cores under the GIL).

Settings used: ``--worker-connections`` (the connection cap; beyond it 503),
``--keep-alive`` (idle keep-alive seconds), ``--graceful-timeout``,
``--limit-request-line`` (414), ``--limit-request-field_size`` (431),
``--limit-request-fields`` (431), ``--timeout`` (the heartbeat),
``--access-logfile`` and ``--access-logformat`` (see below).  The number of
LWPs per worker comes from ``$LWP_LWPS`` (default: one).  ``$LWP_MONKEY=1``
patches the standard library (``lwp.monkey.patch_all()``) before the app loads.

TLS: gunicorn's own ``--certfile``, ``--keyfile``, ``--ca-certs``,
``--cert-reqs``, ``--ciphers`` (and its ``ssl_context`` hook) make the context,
as for gunicorn's own workers; the handshake runs in the connection's worker
green thread within ``$LWP_HANDSHAKE_TIMEOUT`` seconds (default 10), and
``wsgi.url_scheme`` is ``"https"``.

Logs: the access log is on when gunicorn's own workers would write it (an
``--access-logfile``, or a logging configuration); each line is
``--access-logformat`` filled with the atoms of gunicorn's logger (its
``atoms()`` and ``atoms_wrapper_class``, so a ``--logger-class`` that
overrides those is honoured) and handed to the ``gunicorn.access`` logger as
gunicorn's ``Logger.access()`` does, but by lwp's log writer, through
:func:`lwp.blocking`, never on an LWP.  Differences from gunicorn's workers:

* a ``--logger-class`` that overrides ``access()`` itself is not called (it
  would write on the LWP); its ``atoms()`` is;
* ``%({name}e)s`` shows environ values that are strings only (others are
  ``-``): a waiting line must not keep the request's objects alive;
* ``%({name}o)s`` shows the application's response headers, not those the
  server adds (``Date``, ``Server``, ``Connection``, ``Transfer-Encoding``,
  a computed ``Content-Length``), as gunicorn's ``resp.headers`` does not;
* a request refused before the application runs (400, 408, 413, 414, 431,
  503) has a line too, whose ``m``, ``U``, ``q`` and ``H`` are ``-``, ``r``
  is ``- - -``, and whose request headers are empty (gunicorn writes none for most of
  these);
* gunicorn's ``atoms()`` itself logs a DEBUG line for a malformed Basic
  ``Authorization`` header (the ``u`` atom); with ``--log-level debug`` that
  one line is written on the LWP.

``wsgi.errors`` writes go where gunicorn's workers send them (the error
log's streams, gunicorn's ``WSGIErrorsWrapper``), through the same writer.
"""

import datetime
import os
from types import SimpleNamespace

from gunicorn.http.wsgi import WSGIErrorsWrapper
from gunicorn.sock import ssl_context
from gunicorn.workers.base import Worker

import lwp
from lwp.wsgi import WSGIServer


class LwpWorker(Worker):
    def init_process(self):
        if os.environ.get("LWP_MONKEY") == "1":
            import lwp.monkey

            lwp.monkey.patch_all()
        super().init_process()

    def run(self):
        lwps = int(os.environ.get("LWP_LWPS") or 1)
        sched = lwp.Scheduler(lwps)
        try:
            main = sched.spawn(self._serve, name="gunicorn-worker")
            # gunicorn installs its signal handlers with SA_RESTART
            # (signal.siginterrupt(sig, False)), so a main thread blocked in
            # one long join would never run them: join in short slices, and
            # the master's SIGTERM (handle_exit) is seen within half a second.
            while True:
                try:
                    return main.join(0.5)
                except TimeoutError:
                    continue
        finally:
            sched.shutdown()

    def _serve(self):
        cfg = self.cfg
        ctx = ssl_context(cfg) if cfg.is_ssl else None
        # What gunicorn's workers check (older gunicorns have no such property).
        access = getattr(self.log, "access_log_enabled", cfg.accesslog)
        servers = []
        for s in self.sockets:
            srv = _GunicornServer(
                self.log, cfg.access_log_format, s, self.wsgi,
                max_connections=cfg.worker_connections,
                keepalive_timeout=max(cfg.keepalive, 0.1),
                max_line=cfg.limit_request_line or 1 << 20,
                max_field=cfg.limit_request_field_size or 1 << 20,
                max_headers=cfg.limit_request_fields,
                multiprocess=cfg.workers > 1, ssl_context=ctx,
                access_log=self.log.access_log if access else None,
                errors=WSGIErrorsWrapper(cfg),
                handshake_timeout=float(os.environ.get("LWP_HANDSHAKE_TIMEOUT") or 10),
                name=f"gunicorn-{self.pid}")
            srv.start()
            servers.append(srv)
        try:
            while self.alive:
                self.notify()
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
                lwp.sleep(min(1.0, self.timeout / 2 if self.timeout else 1.0))
        finally:
            for srv in servers:
                srv.stop(cfg.graceful_timeout)


class _GunicornServer(WSGIServer):
    """A WSGIServer whose access lines are gunicorn's: ``access_log_format`` filled with
    the atoms of gunicorn's logger ``glog``."""

    def __init__(self, glog, access_log_format, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._glog = glog
        self._format = access_log_format

    def _access_message(self, addr, req, env, status, headers, nbytes, seconds):
        if env is None:
            remote = addr if isinstance(addr, tuple) else ("", "")
            env = {"REMOTE_ADDR": remote[0], "REMOTE_PORT": str(remote[1]),
                   "REQUEST_METHOD": "-", "RAW_URI": "-", "PATH_INFO": "-", "QUERY_STRING": "-",
                   "SERVER_PROTOCOL": "-"}
        else:
            env = {k: v for k, v in env.items() if type(v) is str}
        req_headers = [] if req is None else [(n.decode("latin-1").upper(), v.decode("latin-1"))
                                              for n, v in req.headers]
        resp = SimpleNamespace(status=status, sent=nbytes, headers=headers)
        atoms = self._glog.atoms(resp, req_headers, env, datetime.timedelta(seconds=seconds))
        return self._format, self._glog.atoms_wrapper_class(atoms)
