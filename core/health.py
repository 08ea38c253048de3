"""Liveness and readiness: what /healthz, /readyz, ``baosong status`` and the alert rules check.

Readiness means the deployment can deliver: the database and Redis answer, a scheduler holds a
fresh leader lease (core.scheduler_process.LEADER_KEY), at least one worker sends heartbeats, the
periodic tick ran recently, and the SM2/SM3/SM4 self-test passed in this process. Each check is
small, names itself and says what it saw; none reveals data.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import sqlalchemy as sa

from core.config import Config
from core.db import db

LAST_TICK_KEY = "baosong:scheduler:last_tick"
TICK_AGE_LIMIT_SECONDS = 180  # three missed ticks (core.scheduler.TICK_SECONDS = 60)
REDIS_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str
    value: float | int | str | None = None

    def as_dict(self) -> dict:
        out = {"ok": self.ok, "detail": self.detail}
        if self.value is not None:
            out["value"] = self.value
        return out


@functools.cache
def _checking_connection(url: str) -> redis.Redis:
    # Short timeouts: a monitor asking /readyz must get an answer even when Redis hangs.
    return redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                socket_timeout=REDIS_TIMEOUT_SECONDS)


def redis_connection() -> redis.Redis:
    url = Config.from_env().redis_url
    if url:
        return _checking_connection(url)
    from core.queue import connection

    return connection()


def record_tick(conn: redis.Redis | None = None) -> None:
    """Note that the periodic tick ran (called by core.scheduler.tick_job)."""
    (conn or redis_connection()).set(LAST_TICK_KEY, f"{time.time():.3f}")


def last_tick_age(conn: redis.Redis) -> float | None:
    value = conn.get(LAST_TICK_KEY)
    return max(0.0, time.time() - float(value)) if value else None


def scheduler_leader(conn: redis.Redis) -> tuple[str | None, int]:
    """(leader identity or None, seconds left on its lease)."""
    from core.scheduler_process import LEADER_KEY

    leader = conn.get(LEADER_KEY)
    return (leader.decode() if leader else None), max(0, int(conn.ttl(LEADER_KEY) or 0))


def workers_alive(conn: redis.Redis) -> int:
    """RQ workers whose registration (renewed by their heartbeat) has not expired."""
    from rq import Worker

    return len(Worker.all(connection=conn))


def _database() -> Check:
    try:
        db.session.execute(sa.text("SELECT 1"))
        return Check(True, "数据库可连接")
    except Exception as exc:
        db.session.rollback()
        return Check(False, f"数据库不可连接：{type(exc).__name__}")


def _scheduler(conn: redis.Redis) -> Check:
    leader, ttl = scheduler_leader(conn)
    if leader is None:
        return Check(False, "没有调度进程持有主控租约（baosong scheduler 未运行？）")
    return Check(True, f"调度主控 {leader}，租约剩余 {ttl} 秒", leader)


def _workers(conn: redis.Redis) -> Check:
    count = workers_alive(conn)
    return Check(count > 0, f"{count} 个工作进程在线" if count else "没有在线的工作进程（baosong worker 未运行？）",
                 count)


def _tick(conn: redis.Redis) -> Check:
    age = last_tick_age(conn)
    if age is None:
        return Check(False, "尚无定时巡检记录（调度进程或工作进程未运行）")
    age = round(age, 1)
    if age > TICK_AGE_LIMIT_SECONDS:
        return Check(False, f"上次定时巡检在 {int(age)} 秒前（超过 {TICK_AGE_LIMIT_SECONDS} 秒）", age)
    return Check(True, f"上次定时巡检在 {int(age)} 秒前", age)


@functools.cache
def _self_test_result() -> tuple[bool, str]:
    from core.crypto import CryptoError, self_test

    try:
        self_test()
        return True, "SM2/SM3/SM4 自检通过"
    except CryptoError as exc:
        return False, str(exc)


def crypto_check() -> Check:
    ok, detail = _self_test_result()
    return Check(ok, detail)


def checks() -> dict[str, Check]:
    """Every readiness check by name; Redis-based ones fail together, saying Redis is down."""
    out = {"database": _database()}
    conn = redis_connection()
    try:
        conn.ping()
        out["redis"] = Check(True, "Redis 可连接")
        redis_checks: dict[str, Callable[[redis.Redis], Check]] = {
            "scheduler": _scheduler, "workers": _workers, "tick": _tick}
        for name, check in redis_checks.items():
            out[name] = check(conn)
    except (redis.RedisError, OSError) as exc:
        out["redis"] = Check(False, f"Redis 不可连接：{type(exc).__name__}")
        for name in ("scheduler", "workers", "tick"):
            out[name] = Check(False, "无法检查：Redis 不可连接")
    out["crypto"] = crypto_check()
    return out


def readiness() -> dict:
    """The /readyz body: {"ready": bool, "checks": {name: {"ok", "detail"[, "value"]}}}."""
    found = checks()
    return {"ready": all(c.ok for c in found.values()), "checks": {k: c.as_dict() for k, c in found.items()}}
