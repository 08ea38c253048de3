"""Running it in production: the mode that refuses embedded defaults, the admin under a real gunicorn,
/healthz and /readyz (against a real redis-server that is killed), ``baosong status`` and the logs."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port
from test_web_support import csrf_from, make_user

from core.config import production_problems

BAOSONG = [sys.executable, "-m", "core.cli"]
ROOT = Path(__file__).resolve().parents[1]


def production_env(tmp_path, **overrides) -> dict[str, str]:
    key_file = tmp_path / "secret.key"
    key_file.write_text("y7Z0rYb1m0kqf8mKf4b1Qm9yXbC0Qv0sZ8t3pF6wq1U=")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "HIS_DATABASE_URL",
                                                             "BAOSONG_SECRET_KEY", "BAOSONG_SECRET_KEY_FILE")}
    env.update(BAOSONG_ENV="production", DATABASE_URL="postgresql://baosong@db.example/baosong",
               REDIS_URL="redis://redis.example:6379/0", HIS_DATABASE_URL="postgresql://ro@his.example/his",
               BAOSONG_SECRET_KEY_FILE=str(key_file), BAOSONG_INSTANCE=str(tmp_path / "instance"))
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# --- production mode ----------------------------------------------------------------------------

@pytest.mark.parametrize(("command", "missing"), [
    ("worker", "DATABASE_URL"), ("worker", "REDIS_URL"), ("worker", "HIS_DATABASE_URL"),
    ("worker", "BAOSONG_SECRET_KEY_FILE"), ("scheduler", "REDIS_URL"), ("web", "BAOSONG_SECRET_KEY_FILE"),
    ("init-db", "DATABASE_URL"), ("sweep", "DATABASE_URL"),
])
def test_production_mode_refuses_to_start_naming_the_missing_variable(tmp_path, command, missing):
    env = production_env(tmp_path, **{missing: None})
    done = subprocess.run([*BAOSONG, command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, done.stderr
    assert "拒绝启动（BAOSONG_ENV=production）" in done.stderr
    assert f"缺少 {missing}" in done.stderr or f"缺少 BAOSONG_SECRET_KEY 或 {missing}" in done.stderr
    assert f"请设置 {missing}=" in done.stderr
    assert not (tmp_path / "instance" / "baosong.db").exists()  # nothing fell back to SQLite


def test_production_flag_is_the_same_as_the_environment_and_names_a_missing_key_file(tmp_path):
    env = production_env(tmp_path, BAOSONG_ENV=None, BAOSONG_SECRET_KEY_FILE=str(tmp_path / "nowhere.key"))
    done = subprocess.run([*BAOSONG, "--production", "worker"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 78
    assert "nowhere.key 不存在" in done.stderr and "baosong new-secret-key" in done.stderr
    assert not (tmp_path / "nowhere.key").exists()  # never generated


def test_a_complete_production_environment_has_no_problems_and_development_is_unchecked(tmp_path):
    assert production_problems(production_env(tmp_path)) == []
    assert production_problems(production_env(tmp_path, BAOSONG_SECRET_KEY_FILE=None,
                                               BAOSONG_SECRET_KEY="k" * 44)) == []
    problems = production_problems({})
    assert [p.split("：")[0] for p in problems] == [
        "生产模式缺少 DATABASE_URL", "生产模式缺少 REDIS_URL", "生产模式缺少 HIS_DATABASE_URL",
        "生产模式缺少 BAOSONG_SECRET_KEY 或 BAOSONG_SECRET_KEY_FILE"]
    env = production_env(tmp_path, BAOSONG_ENV=None, DATABASE_URL=None)
    done = subprocess.run([*BAOSONG, "plugins"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # development keeps the embedded defaults


def test_python_worker_py_refuses_in_production_like_baosong_worker(tmp_path):
    env = production_env(tmp_path, DATABASE_URL=None)
    done = subprocess.run([sys.executable, "worker.py", "--burst"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 78, done.stderr
    assert "拒绝启动（BAOSONG_ENV=production）" in done.stderr and "请设置 DATABASE_URL=" in done.stderr
    assert not (tmp_path / "instance" / "baosong.db").exists()


def test_production_mode_never_generates_a_secret_key(tmp_path, monkeypatch):
    from core.errors import ConfigurationError
    from core.secrets import load_or_create_key

    monkeypatch.delenv("BAOSONG_SECRET_KEY", raising=False)
    monkeypatch.setenv("BAOSONG_ENV", "production")
    missing = tmp_path / "gone.key"  # e.g. removed after the process passed its start-up check
    with pytest.raises(ConfigurationError, match="不会自动生成密钥.*gone.key 不存在"):
        load_or_create_key(missing)
    assert not missing.exists()
    monkeypatch.delenv("BAOSONG_ENV")
    assert load_or_create_key(missing) and missing.stat().st_mode & 0o777 == 0o600  # development makes one


def test_new_secret_key_is_written_0600_and_never_overwritten(tmp_path):
    path = tmp_path / "secret.key"
    done = subprocess.run([*BAOSONG, "new-secret-key", str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "BAOSONG_ENV": "production"})
    assert done.returncode == 0, done.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    key = path.read_bytes()
    again = subprocess.run([*BAOSONG, "new-secret-key", str(path)], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode != 0 and "不会覆盖" in again.stderr
    assert path.read_bytes() == key


# --- the admin under gunicorn -------------------------------------------------------------------

def _wait_for(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {process.stdout.read()}")
        try:
            requests.get(url, timeout=10)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


@pytest.mark.slow
def test_the_admin_works_under_gunicorn_with_an_access_log(app, tmp_path):
    make_user("ops", "admin")
    port = free_port()
    env = {**os.environ, "BAOSONG_LOG_FORMAT": "text"}
    process = subprocess.Popen([*BAOSONG, "web", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "2",
                                "--timeout", "30"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/healthz", process)
        session = requests.Session()
        assert session.get(f"{base}/healthz").json() == {"status": "ok"}
        page = session.get(f"{base}/login?next=/uploads/%3Fq%3D360102199001011234")
        assert page.status_code == 200 and "登录" in page.text
        answer = session.post(f"{base}/login", data={"username": "ops", "password": "Passw0rd-123",
                                                      "csrf_token": csrf_from(page.text)}, allow_redirects=False)
        assert answer.status_code == 302
        dashboard = session.get(f"{base}/")
        assert dashboard.status_code == 200 and "数据看板" in dashboard.text
        assert session.get(f"{base}/config/alerts/").status_code == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "Booting worker" in output  # gunicorn, not Flask's development server
    assert re.search(r'\+08:00 INFO gunicorn\.access: 127\.0\.0\.1 "GET /healthz" 200', output), output
    assert '"POST /login" 302' in output
    assert "360102199001011234" not in output  # query strings are never logged


# --- health and readiness ----------------------------------------------------------------------

@pytest.fixture
def redis_server(tmp_path, monkeypatch):
    """A real redis-server on a free port, pointed at by REDIS_URL; ``.kill()`` takes it away."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    monkeypatch.setenv("REDIS_URL", url)
    process.url = url
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def _all_there(conn):
    """A leader lease, a registered worker with a heartbeat and a recent tick — by the real functions."""
    from rq import Worker

    from core.health import record_tick
    from core.queue import queues
    from core.scheduler_process import LEADER_KEY, acquire_leadership

    assert acquire_leadership(conn, "sched-host:1") or conn.get(LEADER_KEY) == b"sched-host:1"
    if not Worker.all(connection=conn):
        worker = Worker(queues(), connection=conn, name="test-worker")
        worker.register_birth()
        worker.heartbeat()
    record_tick(conn)


def test_readiness_is_200_when_all_is_there_and_503_when_redis_is_killed(app, redis_server):
    from core.health import redis_connection

    _all_there(redis_connection())
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    body = ready.get_json()
    assert set(body["checks"]) == {"database", "redis", "scheduler", "workers", "tick", "crypto"}
    assert body["checks"]["scheduler"]["value"] == "sched-host:1"
    assert body["checks"]["workers"]["value"] == 1

    redis_server.kill()
    redis_server.wait()
    down = client.get("/readyz")
    assert down.status_code == 503
    checks = down.get_json()["checks"]
    assert checks["redis"]["ok"] is False and "Redis 不可连接" in checks["redis"]["detail"]
    assert checks["database"]["ok"] and checks["crypto"]["ok"]
    assert client.get("/healthz").status_code == 200  # alive all the same


def test_readiness_is_503_without_a_scheduler_leader_or_with_a_stale_tick(app, redis_server):
    from core.health import LAST_TICK_KEY, redis_connection
    from core.scheduler_process import LEADER_KEY

    conn = redis_connection()
    _all_there(conn)
    conn.delete(LEADER_KEY)
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    checks = answer.get_json()["checks"]
    assert not checks["scheduler"]["ok"] and "主控" in checks["scheduler"]["detail"]
    assert checks["workers"]["ok"] and checks["tick"]["ok"]

    _all_there(conn)
    conn.set(LAST_TICK_KEY, f"{time.time() - 600:.3f}")
    checks = app.test_client().get("/readyz").get_json()["checks"]
    assert not checks["tick"]["ok"] and checks["tick"]["value"] >= 600


def test_health_endpoints_need_no_login_but_pages_still_do(app):
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
    assert client.get("/metrics").status_code == 200
    assert client.get("/config/alerts/").status_code == 302


def test_status_prints_each_check_and_exits_1_when_not_ready(app, redis_server):
    from core.health import redis_connection

    env = {**os.environ}
    done = subprocess.run([*BAOSONG, "status"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "未就绪" in done.stdout and "✗ scheduler" in done.stdout and "✓ database" in done.stdout
    _all_there(redis_connection())
    done = subprocess.run([*BAOSONG, "status", "--json"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["ready"] is True


# --- logs ------------------------------------------------------------------------------------

def test_logs_carry_local_time_with_offset_and_json_on_request(monkeypatch):
    from core.logs import TEXT_FORMAT, JsonFormatter, LocalTimeFormatter

    record = logging.LogRecord("baosong.test", logging.INFO, __file__, 1, "上传 %s", ("成功",), None)
    record.created = 1739750400.0  # 2025-02-17 00:00:00 UTC
    text = LocalTimeFormatter(TEXT_FORMAT).format(record)
    assert text == "2025-02-17T08:00:00.000+08:00 INFO baosong.test: 上传 成功"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["time"] == "2025-02-17T08:00:00.000+08:00" and entry["message"] == "上传 成功"
    monkeypatch.setenv("BAOSONG_TIMEZONE", "UTC")
    assert LocalTimeFormatter(TEXT_FORMAT).format(record).startswith("2025-02-17T00:00:00.000+00:00")


@pytest.mark.postgres
def test_a_pooled_connection_that_died_while_idle_is_replaced_at_checkout(app, monkeypatch):
    """A PostgreSQL restart (or a firewall) kills the pool's idle connections: the next use after
    ``IDLE_PING_SECONDS`` pings first and gets a new connection instead of failing its statement."""
    import sqlalchemy as sa

    from core import app as core_app
    from core.db import db

    def backend_pid() -> int:
        pid = db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        db.session.commit()  # the connection goes back to the pool
        return pid

    def kill(pid: int) -> None:
        other = sa.create_engine(db.engine.url)
        with other.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        other.dispose()

    first = backend_pid()
    kill(first)
    monkeypatch.setattr(core_app, "IDLE_PING_SECONDS", 0.0)  # it sat idle long enough to be checked
    second = backend_pid()
    assert second != first

    monkeypatch.setattr(core_app, "IDLE_PING_SECONDS", 3600.0)  # the control: used again at once, not checked
    kill(second)
    with pytest.raises(sa.exc.OperationalError):
        db.session.execute(sa.text("SELECT 1"))
    db.session.rollback()
    assert backend_pid() not in (first, second)  # and the pool recovers by itself after one failure
