"""The core's Flask app factory: configuration and the database. ``web.create_app`` builds on it;
workers and the scheduler use it for an application context."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask_migrate import Migrate

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
    if config.database_url.startswith("sqlite"):
        with app.app_context():
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
    return app


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the admin read while a worker writes; NORMAL sync keeps commits durable across a
    # process crash (the ledger's concern) without an fsync per commit.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        # Several processes (admin, workers, scheduler) share one SQLite file: wait on locks.
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


_process_app: tuple[tuple[int, str], Flask] | None = None


def process_app() -> Flask:
    """One app per process and database (a forked RQ work-horse gets its own, with fresh connections)."""
    global _process_app
    key = (os.getpid(), Config.from_env().database_url)
    if _process_app is None or _process_app[0] != key:
        _process_app = (key, create_app())
    return _process_app[1]
