"""The ``baosong scheduler`` process: one leader at a time (a Redis lease), which rebuilds the Redis
schedule from the database, catches up missed slots and runs rq-scheduler's loop."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from core import scheduler as schedules
from core.app import process_app
from core.queue import connection, queue

log = logging.getLogger("baosong.scheduler")
LEADER_KEY = "baosong:scheduler:leader"
LEASE_SECONDS = 30


def _identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire_leadership(conn, me: str) -> bool:
    return bool(conn.set(LEADER_KEY, me, nx=True, ex=LEASE_SECONDS))


def renew_leadership(conn, me: str) -> bool:
    # Renew only our own lease: compare-and-expire in one round trip.
    script = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end"
    return bool(conn.eval(script, 1, LEADER_KEY, me, LEASE_SECONDS))


def run(poll_seconds: float = 5.0, stop: threading.Event | None = None) -> None:
    from rq_scheduler import Scheduler

    conn = connection()
    me = _identity()
    stop = stop or threading.Event()
    while not acquire_leadership(conn, me):
        log.info("another scheduler leads (%s); standing by", conn.get(LEADER_KEY))
        if stop.wait(LEASE_SECONDS / 3):
            return
    log.info("scheduler %s leads", me)
    app = process_app()
    with app.app_context():
        schedules.ensure_tasks()
        schedules.tick()  # catch up what fell due while no scheduler ran
        rq_scheduler = Scheduler(queue=queue(), connection=conn, interval=poll_seconds)
        schedules.sync_redis(rq_scheduler)
    try:
        while not stop.is_set():
            if not renew_leadership(conn, me):
                log.error("lost the scheduler lease; stopping")
                return
            if rq_scheduler.acquire_lock():
                try:
                    rq_scheduler.enqueue_jobs()
                finally:
                    rq_scheduler.remove_lock()
            stop.wait(poll_seconds)
    finally:
        if conn.get(LEADER_KEY) == me.encode():
            conn.delete(LEADER_KEY)
        time.sleep(0)
