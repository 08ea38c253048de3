"""A soak: 1,000 uploads (keydata hours and Shangrao batches) sent by real `baosong worker` processes
that are SIGKILLed every few seconds and at each tenth of the way, against sandboxes that read their
documents the hard way (an update does not insert, a repeated new is refused, a refused msgid is taken)
and throw every fault at random (lost answers after storing, dropped connections, truncated bodies, slow answers, 500s).
Asserted from the sandboxes' own records: 0 lost, 0 stored twice, 0 falsely final, 0 stuck.

The test process plays the scheduler's part: it runs the sweep every second (retries are due at once
here), and restarts every worker it kills. A killed work-horse's lease is expired by hand (its process
is certainly gone) instead of waiting the minute a lease outlives the request timeout, and so is the
start of a batch it was running (the uploads it had not claimed yet are sent again at once).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import ROOT, configure_keydata_sandbox
from test_shangrao_support import configure_sandbox, fee_row, records

from core import aggregates, clock, ledger, pipeline, settings
from core.db import db
from core.hook_types import UploadPlan
from core.models import Attempt, Upload, UploadStatus
from core.plugins import registry
from core.queue import UNCLAIMED_GRACE_SECONDS, enqueue_upload, enqueue_uploads
from core.sandbox_faults import FAULTS
from plugins.keydata import spec as keydata_spec
from plugins.shangrao_insurance import common

KEYDATA_UPLOADS = int(os.environ.get("SOAK_UPLOADS", "1000")) // 2
SHANGRAO_UPLOADS = KEYDATA_UPLOADS
WORKERS = 2
# A worker takes a few seconds to start (imports, crypto self-test, start-up sweep): killed more often, it
# would never send. Each kill hits a worker with a work-horse in the middle of a job.
KILL_EVERY_SECONDS = float(os.environ.get("SOAK_KILL_EVERY", "4"))
DEADLINE_SECONDS = 600
FAULT_P = float(os.environ.get("SOAK_FAULT_P", "0.025"))  # per fault kind and request: about one request in seven is hit by something


@pytest.fixture
def database_url(tmp_path):
    """A SQLite ledger in memory-backed /dev/shm when there is one (thousands of commits)."""
    url = os.environ.get("TEST_DATABASE_URL")
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="baosong-soak-", dir=shm)) if shm.is_dir() else tmp_path
    os.environ["DATABASE_URL"] = url or f"sqlite:///{folder / 'baosong.db'}"
    yield os.environ["DATABASE_URL"]
    os.environ.pop("DATABASE_URL", None)
    if folder != tmp_path:
        shutil.rmtree(folder, ignore_errors=True)


def faults_at_random(seed: int, seconds: float) -> list[dict]:
    return [{"fault": fault, "p": FAULT_P, "seed": seed * 10 + i, "seconds": seconds} for i, fault in enumerate(FAULTS)]


def keydata_figures(n: int) -> dict:
    return {name: (n * 7 + i) % 500 for i, name in enumerate(keydata_spec.HOSPITAL_DAILY_FIELDS)}


def plan_everything() -> tuple[list[int], list[int]]:
    keydata_type = registry().report_type("keydata.hospital_daily")
    start = datetime(2024, 1, 1, 0, 59, 59)
    keydata_plans = [UploadPlan(business_key=stat_date, period=stat_date, rows=[keydata_figures(n)])
                     for n in range(KEYDATA_UPLOADS)
                     for stat_date in [f"{start + timedelta(hours=n):%Y/%m/%d %H:%M:%S}"]]
    shangrao_type = registry().report_type("shangrao.fee_list_d")
    shangrao_plans = [UploadPlan(business_key=f"soak:{b}", period="soak", rows=[fee_row(b * 2), fee_row(b * 2 + 1)],
                                 idempotency_key=common.new_msgid("H36110200001")) for b in range(SHANGRAO_UPLOADS)]
    return ledger.record_plans(keydata_type, keydata_plans), ledger.record_plans(shangrao_type, shangrao_plans)


def start_worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core.cli", "worker"], cwd=ROOT, env=dict(os.environ),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def sending_pids() -> set[int]:
    """Pids of the processes with an attempt under way (the attempt row names its worker host:pid)."""
    rows = db.session.execute(
        sa.select(Attempt.worker).join(Upload, Upload.id == Attempt.upload_id)
        .where(Upload.status == UploadStatus.SENDING, Attempt.outcome.is_(None))).scalars()
    return {int(w.rsplit(":", 1)[1]) for w in rows if w and w.rsplit(":", 1)[-1].isdigit()}


def kill(worker: subprocess.Popen) -> list[int]:
    """SIGKILL a worker and its work-horses (each in a process group of its own), as a lost machine.
    Returns every pid that died (the worker's own too: the in-process worker sends itself)."""
    horses = children_of(worker.pid)
    for pid in [worker.pid, *horses]:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait(10)
    return [worker.pid, *horses]


def expire_dead_leases(dead: set[int]) -> None:
    """Uploads left SENDING by a killed work-horse: their lease is over (the process is gone)."""
    sending = db.session.execute(sa.select(Upload).where(Upload.status == UploadStatus.SENDING)).scalars()
    for upload in sending:
        last = upload.attempt_list[-1] if upload.attempt_list else None
        if last is not None and last.worker and int(last.worker.rsplit(":", 1)[1]) in dead:
            upload.lease_until = clock.utc_naive(clock.now()) - timedelta(seconds=1)
    db.session.commit()


def age_dead_executions(redis_conn, dead: set[int]) -> None:
    """A batch job a killed worker had started: the uploads it had not claimed wait for the sweep to see
    the job as started long ago (``core.queue.UNCLAIMED_GRACE_SECONDS``). Its process is certainly gone,
    so its executions are made that old by hand instead of waiting the minute."""
    names = set()
    for key in redis_conn.scan_iter("rq:worker:*"):
        pid = (redis_conn.hget(key, "pid") or b"") if redis_conn.type(key) == b"hash" else b""
        if pid.isdigit() and int(pid) in dead:
            names.add(key.decode().removeprefix("rq:worker:"))
    for key in redis_conn.scan_iter("rq:execution:*"):
        if redis_conn.type(key) == b"hash" and (redis_conn.hget(key, "worker_name") or b"").decode() in names:
            redis_conn.hset(key, "created_at", time.time() - 2 * UNCLAIMED_GRACE_SECONDS)


def statuses() -> Counter:
    db.session.expire_all()
    return Counter(db.session.execute(sa.select(Upload.status)).scalars())


@pytest.mark.slow
def test_a_thousand_uploads_through_killed_workers_and_faults_land_exactly_once(app, serve, redis_conn):
    # --- regulators that disagree with us, and fail -------------------------------------------------
    keydata_url = configure_keydata_sandbox(serve, timeout="1")
    shangrao = configure_sandbox(serve, timeout="1")
    requests.post(f"{keydata_url}/_sandbox/readings", json={"update_absent": "reject", "new_existing": "reject"},
                  timeout=5).raise_for_status()
    requests.post(f"{shangrao.url}/_sandbox/readings", json={"msgid_taken": "on_receipt"}, timeout=5).raise_for_status()
    for url, seed in ((keydata_url, 1), (shangrao.url, 2)):
        requests.post(f"{url}/_sandbox/faults", json={"inject": faults_at_random(seed, 1.5)},
                      timeout=5).raise_for_status()
    # Retries due at once: a test-only value below the admin's minimum of one minute, written directly.
    from core.models import Flag

    db.session.merge(Flag(name="retry_interval_minutes", value="0"))
    settings.set_flag("retry_max", "20")
    db.session.commit()

    keydata_ids, shangrao_ids = plan_everything()
    enqueue_uploads([(i, 0) for i in keydata_ids])  # keydata as batches, as a back-fill enqueues them; Shangrao one by one
    for upload_id in shangrao_ids:
        enqueue_upload(upload_id, 0)
    total = len(keydata_ids) + len(shangrao_ids)

    # --- workers killed every few seconds while they send ---------------------------------------------
    chooser = random.Random(11)
    db.session.remove()
    workers = [start_worker() for _ in range(WORKERS)]
    dead: set[int] = set()
    kills = 0
    started = time.monotonic()
    next_kill = started + KILL_EVERY_SECONDS
    # Also a kill each tenth of the uploads, so that fast workers are killed as often as slow ones.
    kill_step = max(1, total // 10)
    next_kill_done = kill_step
    try:
        while True:
            counts = statuses()
            done = sum(counts[s] for s in (UploadStatus.SUCCEEDED, UploadStatus.REJECTED, UploadStatus.FAILED))
            if done == total:
                break
            assert time.monotonic() - started < DEADLINE_SECONDS, f"not done in time: {dict(counts)}"
            sending = sending_pids()
            # A worker is busy when it (the in-process worker) or one of its work-horses (--fork) is sending.
            busy = [i for i, w in enumerate(workers) if w.pid in sending or set(children_of(w.pid)) & sending]
            if KILL_EVERY_SECONDS and busy and (time.monotonic() >= next_kill or done >= next_kill_done):
                index = chooser.choice(busy)
                dead.update(kill(workers[index]))
                kills += 1
                db.session.remove()
                workers[index] = start_worker()
                next_kill = time.monotonic() + KILL_EVERY_SECONDS
                next_kill_done = done + kill_step
            for index, worker in enumerate(workers):
                if worker.poll() is not None:  # a worker that died by itself is restarted, and counted
                    workers[index] = start_worker()
            expire_dead_leases(dead)
            age_dead_executions(redis_conn, dead)
            pipeline.sweep()
            db.session.remove()
            time.sleep(0.5)
    finally:
        for worker in workers:
            if worker.poll() is None:
                kill(worker)
    elapsed = time.monotonic() - started

    # --- what the regulators hold -------------------------------------------------------------------
    counts = statuses()
    held = {r["statDate"]: r for r in requests.get(f"{keydata_url}/_sandbox/records", timeout=10).json()["records"]}
    inserts = Counter(c["statDate"] for c in requests.get(f"{keydata_url}/_sandbox/history", timeout=10).json()["history"]
                      if c["action"] == "insert")
    keys = records(shangrao.url, "fee_list_d", keys=1, limit=0)["keys"]
    struck = {name: requests.get(f"{url}/_sandbox/faults", timeout=5).json().get("struck")
              for name, url in (("keydata", keydata_url), ("shangrao", shangrao.url))}
    interrupted = db.session.scalar(sa.text("SELECT count(*) FROM attempts WHERE outcome = 'unknown'"))
    print(f"\nsoak: {total} uploads in {elapsed:.0f}s, {kills} kills, {interrupted} attempts interrupted, "
          f"faults struck {struck}, statuses {dict(counts)}")

    assert counts == {UploadStatus.SUCCEEDED: total}, "falsely final or stuck uploads"
    uploads = {u.id: u for u in db.session.execute(sa.select(Upload)).scalars()}
    lost = [uploads[i].period for i in keydata_ids if uploads[i].period not in held]
    assert not lost, f"{len(lost)} keydata hours lost"
    assert all(held[uploads[i].period]["presCount"] == uploads[i].rows[0]["presCount"] for i in keydata_ids)
    assert [d for d, n in inserts.items() if n != 1] == [], "keydata hours stored twice"
    assert len(held) == KEYDATA_UPLOADS
    expected = {row["BKKP_SN"] for i in shangrao_ids for row in uploads[i].rows}
    assert [k for k, n in Counter(keys).items() if n > 1] == [], "Shangrao rows stored twice"
    assert set(keys) == expected, f"{len(expected - set(keys))} Shangrao rows lost"
    assert not KILL_EVERY_SECONDS or (kills >= 5 and interrupted >= 1)  # the workers really were killed in the middle of sending

    # The statistics the racing (and killed) workers kept, day rows and indicators included, equal a
    # rebuild from the ledger alone: two workers finishing the same day never overwrote each other.
    db.session.expire_all()
    kept = aggregates.snapshot()
    aggregates.rebuild()
    assert aggregates.snapshot() == kept
