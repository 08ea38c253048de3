"""Redis is a cache of work: killed and restarted empty mid-run, every upload is still delivered once,
and the scheduler leads again; a standby scheduler takes over from a SIGKILLed leader within the lease.
Real processes (worker.py, ``baosong scheduler``) against a real ``redis-server``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
import sqlalchemy as sa
from conftest import free_port
from waiting import wait_until

from core import clock, scheduler_process
from core.db import db
from core.models import Upload, UploadStatus
from core.scheduler import run_slot

ROOT = Path(__file__).resolve().parents[1]
SLOT = datetime(2025, 2, 10, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
pytestmark = pytest.mark.slow


def start_redis(port: int) -> subprocess.Popen:
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: _pings(port), 10)
    return server


def _pings(port: int) -> bool:
    try:
        return redis.Redis(port=port, socket_connect_timeout=0.5).ping()
    except redis.ConnectionError:
        return False


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["BAOSONG_EXTRA_PLUGINS"] = "echo_regulator:EchoPlugin"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def statuses(ids: list[int]) -> Counter:
    db.session.expire_all()
    return Counter(db.session.execute(sa.select(Upload.status).where(Upload.id.in_(ids))).scalars())


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_redis_killed_and_restarted_empty_mid_run_loses_and_doubles_nothing(echo, monkeypatch):
    port = free_port()
    server = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("REDIS_URL", url)
    echo.state["hang"] = 0.3
    ids = [i for h in range(30) for i in run_slot("echo.hourly", SLOT + timedelta(hours=h))]
    for upload in db.session.execute(sa.select(Upload)).scalars():
        upload.created_at = clock.utc_naive(clock.now() - timedelta(minutes=2))  # planned a while ago
    db.session.commit()
    env = child_env(REDIS_URL=url)
    children = [start(["worker.py"], env), start(["-m", "core.cli", "scheduler"], env)]
    try:
        wait_until(lambda: len(echo.state["records"]) >= 5, 60)
        server.kill()  # SIGKILL: everything Redis held is gone
        server.wait(5)
        time.sleep(1)
        restarted_at = time.monotonic()
        server = start_redis(port)
        conn = redis.Redis(port=port)
        wait_until(lambda: conn.get(scheduler_process.LEADER_KEY) is not None, 60)  # leading again
        assert time.monotonic() - restarted_at < 60
        wait_until(lambda: statuses(ids).get(UploadStatus.SUCCEEDED) == len(ids), 180)
    finally:
        for child in children:
            stop(child)
        server.kill()
        server.wait(5)

    assert len(echo.state["records"]) == len(ids)  # every upload held by the regulator, once
    sent_as_new = Counter(r["requestId"] for r in echo.state["requests"] if not r["resend"])
    assert set(sent_as_new.values()) == {1}  # none sent as new twice


def test_a_standby_scheduler_takes_over_from_a_sigkilled_leader_within_the_lease(echo, redis_conn):
    env = child_env()
    first = start(["-m", "core.cli", "scheduler"], env)
    second = None
    try:
        wait_until(lambda: redis_conn.get(scheduler_process.LEADER_KEY) is not None, 30)
        leader = redis_conn.get(scheduler_process.LEADER_KEY).decode()
        assert leader.endswith(f":{first.pid}")
        second = start(["-m", "core.cli", "scheduler"], env)
        time.sleep(3)
        assert redis_conn.get(scheduler_process.LEADER_KEY).decode() == leader  # one leads, one stands by

        os.killpg(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: (redis_conn.get(scheduler_process.LEADER_KEY) or b"").decode().endswith(
            f":{second.pid}"), scheduler_process.LEASE_SECONDS + 15)
        assert time.monotonic() - killed_at <= scheduler_process.LEASE_SECONDS + 15
        assert redis_conn.zscore("rq:scheduler:scheduled_jobs", "baosong-tick") is not None
    finally:
        for process in (first, second):
            if process is not None:
                stop(process)


def test_a_worker_waits_out_an_unreachable_redis_and_stops_on_sigterm(echo, redis_conn):
    unreachable = start(["worker.py"], child_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        time.sleep(8)
        assert unreachable.poll() is None  # before: the start-up sweep's ConnectionError ended it
    finally:
        stop(unreachable)

    idle = start(["worker.py"], child_env())
    try:
        # This worker's own registration (its pid), not any worker's: it is in RQ's loop, idle.
        wait_until(lambda: any(redis_conn.hget(k, "pid") == str(idle.pid).encode()
                               for k in redis_conn.keys("rq:worker:*") if redis_conn.type(k) == b"hash"), 30)
        os.killpg(idle.pid, signal.SIGTERM)
        assert idle.wait(15) == 0  # a stop request ends it; only errors make it carry on
    finally:
        stop(idle)


def test_a_worker_stopped_at_any_moment_of_its_start_up_ends_cleanly(echo, redis_conn):
    # RQ registers the worker before it installs its signal handlers; a SIGTERM in that gap, or
    # during the imports, the self-test or the start-up sweep, used to kill it with -15.
    for delay in (0.3, 1.0, 2.0, 3.0):
        process = start(["worker.py"], child_env())
        try:
            time.sleep(delay)
            os.killpg(process.pid, signal.SIGTERM)
            assert process.wait(15) == 0, f"SIGTERM {delay} s after start"
        finally:
            stop(process)
