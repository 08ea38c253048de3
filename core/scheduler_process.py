"""The ``baosong scheduler`` process: one leader at a time (a Redis lease). The leader rebuilds the Redis
schedule from the database, then on every loop renews its lease, repairs whatever Redis lost
(``core.scheduler.reconcile``) and moves due rq-scheduler jobs to the queues.

It cannot silently stop: a lost lease sends it back to standby (not out), and a Redis connection error
(a restart, a network cut) is waited out with backoff, after which it leads again and rebuilds. A
standby takes over once a dead leader's lease has expired (``LEASE_SECONDS``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

import redis

from core import scheduler as schedules
from core.app import process_app
from core.queue import connection

log = logging.getLogger("baosong.scheduler")
LEADER_KEY = "baosong:scheduler:leader"
LEASE_SECONDS = 30
MAX_BACKOFF_SECONDS = 30.0
# What a lost or restarting Redis raises through redis-py (OSError covers a vanished unix socket).
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError)


def _identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire_leadership(conn, me: str) -> bool:
    return bool(conn.set(LEADER_KEY, me, nx=True, ex=LEASE_SECONDS))


def renew_leadership(conn, me: str) -> bool:
    # Renew only our own lease: compare-and-expire in one round trip.
    script = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end"
    return bool(conn.eval(script, 1, LEADER_KEY, me, LEASE_SECONDS))


def release_leadership(conn, me: str) -> None:
    script = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
    conn.eval(script, 1, LEADER_KEY, me)


def run(poll_seconds: float = 5.0, stop: threading.Event | None = None, *, me: str | None = None) -> None:
    """Lead or stand by until ``stop`` is set (or the process is signalled); never exits on Redis errors."""
    me = me or _identity()
    if stop is None:
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            import signal

            # A clean stop releases the lease, so a standby takes over at once.
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
    backoff = 1.0
    app = process_app()
    try:
        while not stop.is_set():
            try:
                conn = connection()
                if not acquire_leadership(conn, me):
                    log.info("another scheduler leads (%s); standing by", conn.get(LEADER_KEY))
                    stop.wait(min(poll_seconds, LEASE_SECONDS / 3))
                    backoff = 1.0
                    continue
                log.info("scheduler %s leads", me)
                with app.app_context():
                    lead(conn, me, poll_seconds, stop)
                backoff = 1.0
            except REDIS_DOWN as exc:
                log.warning("Redis unreachable (%s); reconnecting in %.0f s", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception:  # a database hiccup, a bug: logged, and the loop goes on
                log.exception("scheduler loop failed; retrying in %.0f s", backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
    finally:
        try:
            release_leadership(connection(), me)
        except REDIS_DOWN:
            pass


def lead(conn, me: str, poll_seconds: float, stop: threading.Event) -> None:
    """While we hold the lease: rebuild once, then reconcile and enqueue due jobs on every loop. Returns
    when the lease is lost (back to standby) or on stop; raises on Redis errors (the caller backs off)."""
    from core.db import db

    schedules.ensure_tasks()
    rq_scheduler = schedules._rq_scheduler(conn, poll_seconds)
    repaired = schedules.sync_redis(rq_scheduler)  # the tick it schedules catches up missed slots
    log.info("schedule rebuilt from the database: %s", ", ".join(repaired))
    while not stop.is_set():
        if not renew_leadership(conn, me):
            log.warning("lost the scheduler lease; standing by")
            return
        try:
            repaired = schedules.reconcile(rq_scheduler)
        finally:
            db.session.remove()  # no transaction held across the wait
        if repaired:
            log.warning("repaired the Redis schedule: %s", ", ".join(repaired))
        if rq_scheduler.acquire_lock():
            try:
                rq_scheduler.enqueue_jobs()
            finally:
                rq_scheduler.remove_lock()
        stop.wait(poll_seconds)
