"""A scheduler that cannot silently stop: rq-scheduler's jobs are repaired on every loop (nothing depends
on a result TTL), the scheduler's jobs are never stuck behind uploads, and the sweep enqueues whatever the
ledger owes from the ledger alone — whatever RQ's half-gone state or an old job hash says."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rq import Worker
from rq.executions import ExecutionRegistry
from rq.job import Job
from waiting import wait_until

from core import clock, pipeline, scheduler, scheduler_process
from core.db import db
from core.models import Task, Upload, UploadStatus
from core.queue import (
    connection,
    control_queue,
    live_job_ids,
    live_upload_job_ids,
    queue,
    queues,
    upload_job_id,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
SLOT = datetime(2025, 2, 17, 8, 0, tzinfo=SHANGHAI)


def scheduled_ids(conn) -> set[str]:
    rq_scheduler = scheduler._rq_scheduler(conn)
    return {i.decode() for i in conn.zrange(rq_scheduler.scheduled_jobs_key, 0, -1)}


def test_the_periodic_jobs_keep_no_expiring_result(echo, redis_conn):
    scheduler.sync_redis()
    for job_id in scheduler.PERIODIC_JOBS:
        job = Job.fetch(job_id, connection=redis_conn)
        assert job.result_ttl == -1  # was 120: the job record expired and rq-scheduler dropped it
        assert job.origin == control_queue().name


def test_a_running_leader_repairs_tick_and_sweep_after_their_records_expired(echo, redis_conn):
    stop = threading.Event()
    leader = threading.Thread(target=scheduler_process.run, kwargs={"poll_seconds": 0.2, "stop": stop})
    leader.start()
    try:
        wait_until(lambda: {"baosong-tick", "baosong-sweep"} <= scheduled_ids(redis_conn), 20)
        # What a result TTL expiring under a long queue did: the job hashes vanish, and rq-scheduler,
        # finding no hash, drops the job from its schedule for good.
        for job_id in ("baosong-tick", "baosong-sweep", "baosong-task-echo__hourly"):
            redis_conn.delete(Job.key_for(job_id))
        rq_scheduler = scheduler._rq_scheduler(redis_conn)
        rq_scheduler.get_jobs_to_queue()  # rq-scheduler's own clean-up of jobs without a hash
        wait_until(lambda: all(redis_conn.exists(Job.key_for(j)) for j in
                               ("baosong-tick", "baosong-sweep", "baosong-task-echo__hourly")), 20)
        assert {"baosong-tick", "baosong-sweep"} <= scheduled_ids(redis_conn)
    finally:
        stop.set()
        leader.join(10)


def test_a_paused_task_has_no_firing_and_a_resumed_one_gets_it_back_on_the_next_loop(echo, redis_conn):
    scheduler.sync_redis()
    task = db.session.execute(sa.select(Task).filter_by(report_type="echo.hourly")).scalar_one()
    task.enabled = False
    db.session.commit()
    scheduler.reconcile()
    assert "baosong-task-echo__hourly" not in scheduled_ids(redis_conn)
    task.enabled = True
    db.session.commit()
    assert "baosong-task-echo__hourly" in scheduler.reconcile()
    assert scheduler.reconcile() == []  # nothing missing: nothing recreated


def test_the_tick_runs_before_a_long_queue_of_uploads(echo, redis_conn):
    for n in range(300):
        queue().enqueue("core.pipeline.run_upload", 10_000 + n, 0, job_id=upload_job_id(10_000 + n, 0))
    rq_scheduler = scheduler._rq_scheduler(redis_conn)
    scheduler.sync_redis(rq_scheduler)
    rq_scheduler.enqueue_jobs()
    assert queues()[0].name == control_queue().name
    Worker(queues(), connection=connection()).work(burst=True, max_jobs=2, with_scheduler=False)
    assert len(queue()) == 300  # no upload job ran before the tick and the sweep
    assert Job.fetch("baosong-tick", connection=redis_conn).get_status() == "finished"


def _pending_upload_created_minutes_ago(minutes: int = 5) -> int:
    [upload_id] = scheduler.run_slot("echo.hourly", SLOT)
    upload = db.session.get(Upload, upload_id)
    upload.created_at = clock.utc_naive(clock.now() - timedelta(minutes=minutes))
    db.session.commit()
    return upload_id


def test_the_sweep_survives_a_missing_rq_execution_and_requeues_the_upload(echo, redis_conn, work):
    upload_id = _pending_upload_created_minutes_ago()
    job_id = upload_job_id(upload_id, 0)
    # The state a SIGKILLed worker left: the job out of every queue, its hash still "started", and an
    # execution listed whose record is gone — RQ's job.delete() raises "Execution ... not found".
    redis_conn.lrem(queue().key, 0, job_id)
    redis_conn.hset(Job.key_for(job_id), "status", "started")
    redis_conn.zadd(ExecutionRegistry(job_id, connection=redis_conn).key, {"gone": time.time() + 600})

    counts = pipeline.sweep()

    assert counts["requeued"] == 1
    work()
    assert db.session.get(Upload, upload_id).status == UploadStatus.SUCCEEDED
    assert len(echo.state["records"]) == 1


def test_a_pending_upload_whose_job_hash_says_queued_but_no_queue_holds_it_is_requeued(echo, redis_conn, work):
    upload_id = _pending_upload_created_minutes_ago()
    job_id = upload_job_id(upload_id, 0)
    redis_conn.lrem(queue().key, 0, job_id)
    assert Job.fetch(job_id, connection=redis_conn).get_status() == "queued"  # the hash still says so
    assert job_id not in live_job_ids()

    assert pipeline.sweep()["requeued"] == 1
    assert pipeline.sweep()["requeued"] == 0  # now it is really queued: not twice
    work()
    assert db.session.get(Upload, upload_id).status == UploadStatus.SUCCEEDED


def test_a_job_whose_worker_died_before_the_claim_does_not_hold_its_upload(echo, redis_conn, work):
    """A worker took the job and was SIGKILLed before claiming the upload: RQ keeps the execution in the
    started registry for the whole job timeout (30 minutes), but the upload is sent again at once."""
    upload_id = _pending_upload_created_minutes_ago()
    job_id = upload_job_id(upload_id, 0)
    job = Job.fetch(job_id, connection=redis_conn)
    dead = Worker([queue()], connection=redis_conn, name="killed-before-the-claim")
    dead.register_birth()
    redis_conn.lrem(queue().key, 0, job_id)
    dead.prepare_execution(job)  # the worker has it (execution in the started registry) ...
    dead.prepare_job_execution(job)  # ... and starts it: then the process is gone
    assert job_id in live_upload_job_ids()  # just started: it may still claim
    assert pipeline.sweep()["requeued"] == 0
    for key in redis_conn.scan_iter(f"rq:execution:{job_id}:*"):  # two minutes pass
        redis_conn.hset(key, "created_at", time.time() - 120)
    assert job_id in live_job_ids() and job_id not in live_upload_job_ids()

    assert pipeline.sweep()["requeued"] == 1
    work()
    db.session.expire_all()
    assert db.session.get(Upload, upload_id).status == UploadStatus.SUCCEEDED
    assert len(echo.state["records"]) == 1


def test_after_redis_lost_everything_the_sweep_requeues_every_pending_upload(echo, redis_conn, work):
    ids = [scheduler.run_slot("echo.hourly", SLOT + timedelta(hours=h)) for h in range(3)]
    ids = [i for group in ids for i in group]
    for upload_id in ids:
        db.session.get(Upload, upload_id).created_at = clock.utc_naive(clock.now() - timedelta(minutes=5))
    db.session.commit()
    redis_conn.flushdb()

    assert pipeline.sweep()["requeued"] == 3
    work()
    db.session.expire_all()
    assert {db.session.get(Upload, i).status for i in ids} == {UploadStatus.SUCCEEDED}
    assert len(echo.state["records"]) == 3


def test_a_standby_leads_once_the_leader_stops_renewing(echo, redis_conn, monkeypatch):
    monkeypatch.setattr(scheduler_process, "LEASE_SECONDS", 2)
    assert scheduler_process.acquire_leadership(redis_conn, "dead-host:1")  # a leader that was SIGKILLed
    stop = threading.Event()
    standby = threading.Thread(target=scheduler_process.run,
                               kwargs={"poll_seconds": 0.2, "stop": stop, "me": "standby:2"})
    standby.start()
    try:
        time.sleep(0.5)
        assert redis_conn.get(scheduler_process.LEADER_KEY) == b"dead-host:1"
        wait_until(lambda: redis_conn.get(scheduler_process.LEADER_KEY) == b"standby:2", 10)
        wait_until(lambda: "baosong-tick" in scheduled_ids(redis_conn), 20)
    finally:
        stop.set()
        standby.join(10)


def test_a_leader_that_lost_its_lease_stands_by_instead_of_exiting(echo, redis_conn, monkeypatch):
    stop = threading.Event()
    leader = threading.Thread(target=scheduler_process.run,
                              kwargs={"poll_seconds": 0.2, "stop": stop, "me": "leader:1"})
    leader.start()
    try:
        wait_until(lambda: redis_conn.get(scheduler_process.LEADER_KEY) == b"leader:1", 20)
        redis_conn.flushdb()  # Redis restarted empty: the lease is gone with everything else
        wait_until(lambda: redis_conn.get(scheduler_process.LEADER_KEY) == b"leader:1", 20)
        wait_until(lambda: {"baosong-tick", "baosong-sweep"} <= scheduled_ids(redis_conn), 20)
        assert leader.is_alive()
    finally:
        stop.set()
        leader.join(10)
