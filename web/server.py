"""The admin under gunicorn (``baosong web``): a production WSGI server with worker processes,
threads, a request timeout and an access log, its lines formatted by core.logs like every other
Baosong log (local time with offset, or JSON).

The access log records method, path (never the query string: the upload log's free-text search may
hold an ID or card number), status, size, duration and client address.
"""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

# Method, path (no query string), status, bytes, milliseconds, client, user agent.
ACCESS_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms "%(a)s"'


class BaosongLogger(Logger):
    """gunicorn's logger with Baosong's formatter on its error and access handlers."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        from core.logs import formatter

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter())


class AdminServer(BaseApplication):
    """Runs ``web.create_app()`` in each gunicorn worker (created after the fork, so no database
    connection or Redis socket is shared between processes)."""

    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from web import create_app

        return create_app()


def serve(bind: str, *, workers: int = 2, threads: int = 4, timeout: int = 60, access_log: str = "-",
          log_level: str = "info") -> None:
    """Run gunicorn in this process until it is stopped (SIGTERM/SIGINT: graceful shutdown)."""
    logging.getLogger("baosong.web").info("admin on http://%s (gunicorn, %d workers x %d threads)",
                                          bind, workers, threads)
    AdminServer({
        "bind": bind, "workers": workers, "threads": threads, "timeout": timeout,
        "worker_class": "gthread" if threads > 1 else "sync",
        "accesslog": access_log or None, "access_log_format": ACCESS_FORMAT, "errorlog": "-",
        "loglevel": log_level, "logger_class": BaosongLogger, "graceful_timeout": 30,
        "forwarded_allow_ips": "127.0.0.1",  # nginx on the same host sets X-Forwarded-Proto
        "proc_name": "baosong-web",
    }).run()
