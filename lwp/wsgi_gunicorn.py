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
``--access-logfile`` (lwp's access log lines, through gunicorn's
``gunicorn.access`` logger; ``--access-logformat`` is not used).  The number of
LWPs per worker comes from ``$LWP_LWPS`` (default: one).  ``$LWP_MONKEY=1``
patches the standard library (``lwp.monkey.patch_all()``) before the app loads.

TLS: gunicorn's own ``--certfile``, ``--keyfile``, ``--ca-certs``,
``--cert-reqs``, ``--ciphers`` (and its ``ssl_context`` hook) make the context,
as for gunicorn's own workers; the handshake runs in the connection's worker
green thread within ``$LWP_HANDSHAKE_TIMEOUT`` seconds (default 10), and
``wsgi.url_scheme`` is ``"https"``.
"""

import os

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
        servers = []
        for s in self.sockets:
            srv = WSGIServer(s, self.wsgi, max_connections=cfg.worker_connections,
                             keepalive_timeout=max(cfg.keepalive, 0.1),
                             max_line=cfg.limit_request_line or 1 << 20,
                             max_field=cfg.limit_request_field_size or 1 << 20,
                             max_headers=cfg.limit_request_fields,
                             multiprocess=cfg.workers > 1, ssl_context=ctx,
                             access_log=self.log.access_log if cfg.accesslog else None,
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
