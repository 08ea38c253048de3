"""The core's Flask app factory: configuration and the database. ``web.create_app`` builds on it;
workers and the scheduler use it for an application context."""

from __future__ import annotations

import os
import time
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask_migrate import Migrate

from core import sqlite_writers
from core.config import Config
from core.db import db

MIGRATIONS = str(Path(__file__).with_name("migrations"))
migrate = Migrate()


def create_app(config: Config | None = None, *, name: str = "baosong") -> Flask:
    config = config or Config.from_env()
    app = Flask(name)
    app.config["SQLALCHEMY_DATABASE_URI"] = config.database_url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(config.database_url)
    app.config["BAOSONG"] = config
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS)
    with app.app_context():
        if config.database_url.startswith("sqlite"):
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
            sqlite_writers.install(db.engine)  # acts on turn-taking connections (a file) only
        else:
            ping_after_idle(db.engine)
    return app


# A pooled connection unused for longer than this is checked before use (the server may have restarted
# or a firewall dropped it). A worker uses its connection every few milliseconds: pinging at every
# checkout (SQLAlchemy's pre_ping) cost it three round trips per upload for nothing.
IDLE_PING_SECONDS = 10.0


def ping_after_idle(engine: sa.engine.Engine) -> None:
    """Check a connection at checkout when it sat idle in the pool for ``IDLE_PING_SECONDS``; a dead
    one is replaced by a new one (the pool retries the checkout). A connection that dies while in use
    fails its statement once, and SQLAlchemy then discards the whole pool."""

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection, record) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, proxy) -> None:
        idle_since = record.info.get("checked_in_at")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise sa.exc.DisconnectionError(str(exc)) from exc
            raise


def _is_sqlite_file(url: str) -> bool:
    database = sa.engine.make_url(url).database
    return bool(database) and database != ":memory:" and not database.startswith("file:")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the admin read while a worker writes; NORMAL sync keeps commits durable across a
    # process crash (the ledger's concern) without an fsync per commit.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Another process's commit empties this connection's page cache; with the file mapped, the pages are
    # read back from the map rather than copied in by a read() each (two workers: ~3% more uploads/s).
    cursor.execute("PRAGMA mmap_size=268435456")
    cursor.close()


def _engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        # Several processes (admin, workers, scheduler) share one SQLite file: writers take turns
        # (core.sqlite_writers), and wait on SQLite's own lock too.
        return {"connect_args": sqlite_writers.connect_args() if _is_sqlite_file(url) else {"timeout": 30}}
    return {}  # connections idle in the pool are checked at checkout (ping_after_idle)


_process_app: tuple[tuple[int, str], Flask] | None = None


def process_app() -> Flask:
    """One app per process and database (a forked RQ work-horse gets its own, with fresh connections)."""
    global _process_app
    key = (os.getpid(), Config.from_env().database_url)
    if _process_app is None or _process_app[0] != key:
        _process_app = (key, create_app())
    return _process_app[1]
