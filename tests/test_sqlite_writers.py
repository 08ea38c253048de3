"""SQLite writers take turns through a file lock (core.sqlite_writers): a waiting writer goes on as soon
as the other's transaction ends, reads never wait, a killed holder frees the turn, and a turn held too
long fails the waiting statement as SQLite would."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time

import pytest
import sqlalchemy as sa

from core import sqlite_writers


def engine_for(path) -> sa.engine.Engine:
    engine = sa.create_engine(f"sqlite:///{path}", connect_args=sqlite_writers.connect_args())
    sqlite_writers.install(engine)
    return engine


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "ledger.db"
    engine = engine_for(path)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    yield path, engine
    engine.dispose()


def holds_turn(conn) -> bool:
    return conn.connection.dbapi_connection._holds_turn


def test_a_write_takes_the_turn_until_its_transaction_ends_and_a_read_never_does(database):
    _, engine = database
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT count(*) FROM t")).scalar()
        assert not holds_turn(conn)
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert holds_turn(conn)
        conn.commit()
        assert not holds_turn(conn)
        conn.execute(sa.text("UPDATE t SET n = 2"))
        conn.rollback()
        assert not holds_turn(conn)


def test_a_waiting_writer_goes_on_as_soon_as_the_other_commits_while_reads_go_on_at_once(database):
    _, engine = database
    second = engine_for(database[0])
    waited: dict[str, float] = {}
    with engine.connect() as first:
        first.execute(sa.text("INSERT INTO t VALUES (1)"))

        def write():
            started = time.monotonic()
            with second.begin() as conn:
                conn.execute(sa.text("INSERT INTO t VALUES (2)"))
            waited["write"] = time.monotonic() - started

        thread = threading.Thread(target=write)
        thread.start()
        started = time.monotonic()
        with second.connect() as reader:
            assert reader.execute(sa.text("SELECT count(*) FROM t")).scalar() == 0  # WAL: the committed state
        assert time.monotonic() - started < 1
        time.sleep(0.3)
        assert thread.is_alive()  # the second writer waits for its turn
        committed_at = time.monotonic()
        first.commit()
        thread.join(5)
        assert not thread.is_alive()
        assert waited["write"] >= 0.3 and time.monotonic() - committed_at < 0.5
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 2
    second.dispose()


def test_a_holder_killed_mid_transaction_frees_the_turn(database, python):
    path, engine = database
    child = subprocess.Popen([python, "-c", (
        "import sys, time, sqlalchemy as sa\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from tests.test_sqlite_writers import engine_for\n"
        "conn = engine_for(sys.argv[1]).connect()\n"
        "conn.execute(sa.text('INSERT INTO t VALUES (9)'))\n"
        "print('holding', flush=True)\n"
        "time.sleep(60)\n"), str(path), os.getcwd()], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "holding"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT n FROM t")).scalars().all() == [1]  # the killed write is gone
    finally:
        if child.poll() is None:
            child.kill()


def test_a_turn_held_too_long_fails_the_waiting_write_as_sqlite_would(database, monkeypatch):
    monkeypatch.setattr(sqlite_writers, "TIMEOUT_SECONDS", 0.3)
    _, engine = database
    second = engine_for(database[0])
    with engine.connect() as first:
        first.execute(sa.text("INSERT INTO t VALUES (1)"))
        with pytest.raises(sa.exc.OperationalError, match="database is locked"), second.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (2)"))
        first.commit()
    second.dispose()


def test_a_write_that_ends_its_own_transaction_gives_the_turn_back(database):
    path, engine = database
    with engine.connect() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        conn.exec_driver_sql("COMMIT")
        assert not holds_turn(conn)
        conn.rollback()
    plain = sqlite3.connect(path, timeout=0.1)  # a client that knows nothing of the turns
    plain.execute("INSERT INTO t VALUES (2)")
    plain.commit()
    plain.close()

