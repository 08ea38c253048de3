"""Every hospital row arrives at the regulator exactly once: across a worker SIGKILLed in the middle
of a send (real worker processes, real Redis, the sandbox on a real HTTP server), and for a full month
of demo data."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from conftest import ROOT
from test_shangrao_support import configure_sandbox, faults, records

from core import clock, pipeline, settings
from core.db import db
from core.models import HeldBack, Upload, UploadStatus
from core.scheduler import run_slot
from demo.hospital import generate
from plugins.shangrao_insurance import common, extraction, queries

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def database_url(tmp_path):
    """As conftest's, but a SQLite ledger lives in memory-backed /dev/shm when there is one: these tests
    commit a few thousand attempts, and an fsync per commit would dominate their run time."""
    url = os.environ.get("TEST_DATABASE_URL")
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="baosong-shangrao-", dir=shm)) if shm.is_dir() else tmp_path
    os.environ["DATABASE_URL"] = url or f"sqlite:///{folder / 'baosong.db'}"
    yield os.environ["DATABASE_URL"]
    os.environ.pop("DATABASE_URL", None)
    if folder != tmp_path:
        shutil.rmtree(folder, ignore_errors=True)


def source_keys(url: str, service: str, until: str = "2099-01-01 00:00:00") -> list[str]:
    """What the default query selects, straight from the hospital database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(queries.DEFAULT_QUERIES[service]),
                                {"after_ts": extraction.START_TS, "after_id": None, "until": until,
                                 "limit": 10**9}).mappings().all()
    finally:
        engine.dispose()
    return [row["_wm_id"] for row in rows]


def assert_exactly_once(sandbox_url: str, his_url: str, until: str = "2099-01-01 00:00:00") -> dict[str, int]:
    counts = {}
    for service in common.SERVICES:
        expected = source_keys(his_url, service, until)
        received = records(sandbox_url, service, keys=1, limit=0)["keys"]
        duplicates = [key for key, n in Counter(received).items() if n > 1]
        assert not duplicates, f"{service}: {len(duplicates)} rows arrived twice"
        assert len(received) == len(expected) and set(received) == set(expected), service
        counts[service] = len(received)
    return counts


def kill_mid_send(worker: subprocess.Popen) -> Upload:
    """SIGKILL the worker's process group and the work-horse sending the upload now (RQ puts each
    work-horse in a process group of its own). Returns the upload that was in flight."""
    [sending] = db.session.execute(sa.select(Upload).where(Upload.status == UploadStatus.SENDING)).scalars()
    horse = int(sending.attempt_list[-1].worker.rsplit(":", 1)[1])  # committed before the request left
    db.session.remove()
    if horse != worker.pid:  # `--fork`: a work-horse, our worker's child; by default the worker itself
        with open(f"/proc/{horse}/stat") as stat:
            assert int(stat.read().rsplit(")", 1)[1].split()[1]) == worker.pid
        os.killpg(os.getpgid(horse), signal.SIGKILL)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    return sending


def start_worker(*args: str) -> subprocess.Popen:
    """A real worker process (its own process group, so the work-horse dies with it)."""
    db.session.remove()  # no open SQLite transaction in this process while the worker writes
    return subprocess.Popen([sys.executable, "-m", "core.cli", "worker", *args], cwd=ROOT, env=dict(os.environ),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_of_a_send_loses_and_doubles_nothing(app, serve, tmp_path, monkeypatch,
                                                                          redis_conn):
    his_url = f"sqlite:///{tmp_path / 'his.db'}"
    generate(his_url, start=date(2025, 3, 3), end=date(2025, 3, 3), now=datetime(2025, 3, 4))
    monkeypatch.setenv("HIS_DATABASE_URL", his_url)
    sandbox = configure_sandbox(serve)
    slot = datetime(2025, 3, 3, 10, 0, tzinfo=SHANGHAI)  # about 20 batches: enough, and quick
    planned = sum(len(run_slot(f"shangrao.{service}", slot)) for service in common.SERVICES)  # enqueued
    assert planned > 10
    faults(sandbox.url, slow_seconds=20)  # the regulator keeps each batch, then is slow to answer

    worker = start_worker()
    try:
        deadline = time.monotonic() + 60
        while not sandbox.state.batches:
            assert worker.poll() is None, worker.stderr.read().decode()
            assert time.monotonic() < deadline, "the worker never sent anything"
            time.sleep(0.05)
        stuck = kill_mid_send(worker)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    faults(sandbox.url, reset=True)
    time.sleep(0.5)
    assert len(sandbox.state.batches) == 1  # nothing else was sent after the kill

    db.session.expire_all()
    assert db.session.get(Upload, stuck.id).status == UploadStatus.SENDING
    assert stuck.idempotency_key == sandbox.state.batches[0]["msgid"]  # received, answer never seen
    lease = settings.flag_int("send_lease_seconds")
    clock.freeze(clock.now() + timedelta(seconds=lease + 60))
    # The same time passes for the batch job the killed worker had started: those of its uploads that
    # were never claimed are enqueued again (core.queue.UNCLAIMED_GRACE_SECONDS).
    for key in redis_conn.scan_iter("rq:execution:*"):
        if redis_conn.type(key) == b"hash":
            redis_conn.hset(key, "created_at", time.time() - lease - 60)
    swept = pipeline.sweep()
    clock.freeze(None)
    assert swept["recovered"] == 1 and swept["retried"] == 1

    again = start_worker("--burst")
    _, errors = again.communicate(timeout=300)
    assert again.returncode == 0, errors.decode()[-3000:]

    db.session.expire_all()
    statuses = Counter(db.session.execute(sa.select(Upload.status)).scalars())
    assert statuses == {UploadStatus.SUCCEEDED: planned}
    stuck = db.session.get(Upload, stuck.id)
    first, second = stuck.attempt_list
    assert first.outcome == "unknown"
    assert second.resend and second.code == "40005" and second.outcome == "success"
    assert_exactly_once(sandbox.url, his_url, until="2025-03-03 10:00:00")
    for service in common.SERVICES:
        view = extraction.progress(service, settings.regulator_settings("shangrao_insurance"))
        assert view["accepted_through"] == view["planned_through"] and view["open_batches"] == 0


def _send(upload_ids: list[int]) -> None:
    from core.app import process_app

    with process_app().app_context():  # a fresh app and database connections for this process
        for upload_id in upload_ids:
            pipeline.attempt(upload_id, 0)


def send_in_parallel(upload_ids: list[int], processes: int) -> None:
    """Run the attempts in forked processes (the sandbox keeps serving from this one): a month is a
    couple of thousand batches, and one process would be CPU-bound."""
    db.session.remove()
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_send, args=(upload_ids[i::processes],)) for i in range(processes)]
    for child in children:
        child.start()
    for child in children:
        child.join(600)
        assert child.exitcode == 0


@pytest.mark.slow
def test_a_month_of_demo_records_arrives_exactly_once(app, serve, tmp_path, monkeypatch):
    his_url = f"sqlite:///{tmp_path / 'his.db'}"
    generate(his_url, start=date(2025, 2, 1), end=date(2025, 2, 28), now=datetime(2025, 3, 1))
    monkeypatch.setenv("HIS_DATABASE_URL", his_url)
    sandbox = configure_sandbox(serve)

    for service in common.SERVICES:
        run_slot(f"shangrao.{service}", datetime(2025, 3, 1, 0, 10, tzinfo=SHANGHAI), enqueue=False)
    assert db.session.scalar(sa.select(sa.func.count(HeldBack.id))) == 0
    ids = list(db.session.execute(sa.select(Upload.id).order_by(Upload.id)).scalars())
    send_in_parallel(ids, processes=2)
    db.session.expire_all()
    assert Counter(db.session.execute(sa.select(Upload.status)).scalars()) == {UploadStatus.SUCCEEDED: len(ids)}

    counts = assert_exactly_once(sandbox.url, his_url)
    assert counts["fee_list_d"] > 50000 and counts["setl_d"] > 5000 and counts["mdtrt_d"] > 5000
    # Nothing new in the hospital: the next slot plans nothing.
    for service in common.SERVICES:
        assert run_slot(f"shangrao.{service}", datetime(2025, 3, 1, 0, 20, tzinfo=SHANGHAI), enqueue=False) == []
