"""Uploads planned together run as batch jobs (``core.queue.enqueue_uploads``): a back-fill is a few
jobs, not one per slot; each upload in a batch is still claimed, leased and finished on its own; a
batch's uploads count as queued for the sweep (never enqueued twice), and whatever a batch leaves
behind (an upload that raised, a stop request, a killed worker) is sent by the sweep or handed back."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from rq import Worker
from rq.job import Job

from core import clock, pipeline, queue, scheduler
from core.db import db
from core.models import Upload, UploadStatus

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2025, 3, 1, 0, 0, tzinfo=SHANGHAI)


def statuses() -> dict:
    db.session.expire_all()
    return dict(db.session.execute(sa.select(Upload.status, sa.func.count()).group_by(Upload.status)).all())


def plan_unqueued(hours: int) -> list[int]:
    """``hours`` echo uploads in the ledger, created five minutes ago, with no job."""
    ids = []
    for n in range(hours):
        ids += scheduler.run_slot("echo.hourly", START + timedelta(hours=n), enqueue=False)
    for upload in db.session.execute(sa.select(Upload).where(Upload.id.in_(ids))).scalars():
        upload.created_at = clock.utc_naive(clock.now() - timedelta(minutes=5))
    db.session.commit()
    return ids


@pytest.fixture
def stop_flag():
    yield queue._stopping
    queue._stopping.clear()


def test_a_backfill_is_enqueued_as_batches_and_every_upload_lands_once(echo, redis_conn, work):
    planned = scheduler.backfill("echo.hourly", START, START + timedelta(hours=44))

    assert planned == 45
    jobs = queue.queue(bulk=True).job_ids
    assert [len(queue.batch_members(j)) for j in jobs] == [20, 20, 5]
    work()
    assert statuses() == {UploadStatus.SUCCEEDED: 45}
    assert len(echo.state["records"]) == 45


def test_an_upload_waiting_in_a_batch_is_not_enqueued_again_by_the_sweep(echo, redis_conn):
    ids = plan_unqueued(3)
    [job_id] = queue.enqueue_uploads([(i, 0) for i in ids])

    assert queue.batch_members(job_id) == [(i, 0) for i in ids]
    assert {queue.upload_job_id(i, 0) for i in ids} <= queue.live_upload_job_ids()
    assert pipeline.sweep()["requeued"] == 0
    assert queue.enqueue_upload(ids[0], 0, live=queue.live_upload_job_ids()) is None
    assert queue.enqueue_uploads([(i, 0) for i in ids]) == []
    assert len(queue.queue()) == 1


def test_an_upload_that_raises_does_not_stop_its_batch_and_the_sweep_sends_it(echo, redis_conn, work, monkeypatch):
    ids = plan_unqueued(4)
    real_attempt = pipeline.attempt

    def attempt(upload_id, expected_attempts):
        if upload_id == ids[1]:
            raise RuntimeError("the database went away for a moment")
        return real_attempt(upload_id, expected_attempts)

    monkeypatch.setattr(pipeline, "attempt", attempt)
    result = pipeline.run_uploads([(i, 0) for i in ids])

    assert result == {ids[0]: UploadStatus.SUCCEEDED, ids[1]: "error", ids[2]: UploadStatus.SUCCEEDED,
                      ids[3]: UploadStatus.SUCCEEDED}
    assert db.session.get(Upload, ids[1]).status == UploadStatus.PENDING
    monkeypatch.setattr(pipeline, "attempt", real_attempt)
    assert pipeline.sweep()["requeued"] == 1
    work()
    assert statuses() == {UploadStatus.SUCCEEDED: 4}
    assert len(echo.state["records"]) == 4


def test_a_stop_request_hands_the_rest_of_a_batch_back_to_the_queue(echo, redis_conn, work, stop_flag):
    ids = plan_unqueued(5)
    stop_flag.set()  # what a SIGTERM to the worker does (worker.py: StopAwareWorker.request_stop)

    assert pipeline.run_uploads([(i, 0) for i in ids]) == {}

    [job_id] = queue.queue(bulk=True).job_ids
    assert queue.batch_members(job_id) == [(i, 0) for i in ids]
    stop_flag.clear()
    work()
    assert statuses() == {UploadStatus.SUCCEEDED: 5}


def test_the_unclaimed_uploads_of_a_batch_whose_worker_died_are_sent_again(echo, redis_conn, work):
    ids = plan_unqueued(3)
    [job_id] = queue.enqueue_uploads([(i, 0) for i in ids])
    job = Job.fetch(job_id, connection=redis_conn)
    dead = Worker([queue.queue()], connection=redis_conn, name="killed-in-a-batch")
    dead.register_birth()
    redis_conn.lrem(queue.queue().key, 0, job_id)
    dead.prepare_execution(job)
    dead.prepare_job_execution(job)  # it started the batch, and the process was gone
    assert pipeline.sweep()["requeued"] == 0  # just started: it may still claim them
    for key in redis_conn.scan_iter(f"rq:execution:{job_id}:*"):  # two minutes pass
        redis_conn.hset(key, "created_at", time.time() - 120)

    assert pipeline.sweep()["requeued"] == 3
    work()
    assert statuses() == {UploadStatus.SUCCEEDED: 3}
    assert len(echo.state["records"]) == 3


@pytest.mark.slow
def test_a_real_worker_stopped_in_a_batch_finishes_its_upload_and_hands_back_the_rest(app, serve, redis_conn):
    """SIGTERM to a `baosong worker` in the middle of a 20-upload keydata batch against a slow regulator:
    it exits 0 within seconds, the uploads it sent succeeded, the rest are queued again (none SENDING),
    and a new worker sends them: every hour stored once."""
    import os
    import signal
    import subprocess
    import sys

    import requests
    from conftest import ROOT, configure_keydata_sandbox

    from core.plugins import registry
    from plugins.keydata import spec as keydata_spec

    url = configure_keydata_sandbox(serve, timeout="5")
    requests.post(f"{url}/_sandbox/faults", json={"inject": [{"fault": "slow_after_store", "p": 1.0, "seconds": 0.4}]},
                  timeout=5).raise_for_status()
    from core import ledger
    from core.hook_types import UploadPlan

    figures = {name: 1 for name in keydata_spec.HOSPITAL_DAILY_FIELDS}
    plans = [UploadPlan(business_key=f"2024/02/01 {h:02d}:59:59", period=f"2024/02/01 {h:02d}:59:59", rows=[figures])
             for h in range(20)]
    ids = ledger.record_plans(registry().report_type("keydata.hospital_daily"), plans)
    [job_id] = queue.enqueue_uploads([(i, 0) for i in ids])
    db.session.remove()

    def worker() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "core.cli", "worker"], cwd=ROOT, env=dict(os.environ),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = worker()
    deadline = time.monotonic() + 60
    while statuses().get(UploadStatus.SUCCEEDED, 0) < 2:
        assert time.monotonic() < deadline and first.poll() is None, "the worker never sent"
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    assert first.wait(15) == 0
    sent = statuses().get(UploadStatus.SUCCEEDED, 0)
    assert 2 <= sent < 20
    assert statuses() == {UploadStatus.SUCCEEDED: sent, UploadStatus.PENDING: 20 - sent}
    [handed_back] = queue.queue(bulk=True).job_ids
    assert [i for i, _ in queue.batch_members(handed_back)] == ids[sent:]

    requests.post(f"{url}/_sandbox/faults", json={"reset": True}, timeout=5).raise_for_status()
    second = subprocess.Popen([sys.executable, "-m", "core.cli", "worker", "--burst"], cwd=ROOT, env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert second.wait(120) == 0
    assert statuses() == {UploadStatus.SUCCEEDED: 20}
    history = requests.get(f"{url}/_sandbox/history", timeout=10).json()["history"]
    inserts = [c["statDate"] for c in history if c["action"] == "insert"]
    assert sorted(inserts) == sorted(p.period for p in plans)  # each hour stored once
