"""The RQ worker entry (``python worker.py`` or ``baosong worker``).

On start it runs the crypto self-test (uploads stop with a clear message if it fails) and a sweep,
so uploads a killed worker left behind are re-run. It outlives Redis: if the connection is lost (a
restart, a network cut) or RQ's loop ends on an error, it waits with backoff, sweeps again (a Redis
restarted empty has lost every queued job; the ledger has not) and works on. Only a stop request
(SIGTERM/SIGINT, handled by RQ) or ``--burst`` ends it.

By default jobs run in the worker process itself (RQ's ``SimpleWorker``): no fork and no new app per
upload, so one worker sends tens of uploads a second. Crash safety does not depend on the fork: a job
that dies takes the process with it and leaves its upload SENDING with a lease the sweep recovers, and
a stuck job is stopped by the job timeout (SIGALRM in the worker's main thread). ``--fork`` keeps RQ's
forking worker (a work-horse per job) for plugins that must not share a process between uploads.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("baosong.worker")
MAX_BACKOFF_SECONDS = 30.0


WORKER_CLASSES = ("simple", "fork")


def main(burst: bool = False, worker_class: str = "simple") -> int:
    import redis
    from rq import SimpleWorker, Worker

    from core.app import process_app
    from core.crypto import CryptoError, self_test
    from core.pipeline import sweep
    from core.queue import connection, queues

    try:
        self_test()
    except CryptoError as exc:
        log.error("加密自检失败，工作进程不处理上报：%s", exc)
        return 2
    from core.plugins import registry

    registry()  # import every plugin once (before RQ forks, with --fork)
    worker_type = SimpleWorker if worker_class == "simple" else Worker
    backoff = 1.0
    while True:
        try:
            with process_app().app_context():  # the process's one app, reused by every job it runs
                try:
                    log.info("start-up sweep: %s", sweep())
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    raise
                except Exception:  # the sweep must never keep a worker from working
                    log.exception("start-up sweep failed; working on")
            worker = worker_type(queues(), connection=connection())
            worker.work(burst=burst, with_scheduler=False)
            if burst or stop_requested(worker):
                return 0
            log.warning("the RQ loop ended without a stop request; restarting in %.0f s", backoff)
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as exc:
            log.warning("Redis unreachable (%s); reconnecting in %.0f s", exc, backoff)
        time.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def stop_requested(worker) -> bool:
    """Did RQ end its loop because of SIGTERM/SIGINT (warm shutdown), idle or busy?"""
    return bool(getattr(worker, "_stop_requested", False) or getattr(worker, "_shutdown_requested_date", None))


if __name__ == "__main__":
    from core.cli import _setup_logging

    _setup_logging()
    sys.exit(main(burst="--burst" in sys.argv, worker_class="fork" if "--fork" in sys.argv else "simple"))
