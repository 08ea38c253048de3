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
import signal
import sys
import time

log = logging.getLogger("baosong.worker")
MAX_BACKOFF_SECONDS = 30.0
# How often RQ's command listener (a thread per worker) wakes when no command comes. RQ 3.0 sets 60 s,
# and redis-py 8's PubSubWorkerThread.stop() waits for the thread to wake: a worker ending (a SIGTERM,
# the end of a burst) whose listener had already read its unsubscribe sat out the rest of those 60 s
# (half the two-worker rounds of bench/bench_worker.py; rq/rq#1613). Waking each second bounds that.
LISTENER_WAKE_SECONDS = 1.0

# Set by a SIGTERM/SIGINT that arrives while RQ's own handlers are not installed: during the crypto
# self-test, the sweep, the backoff wait, or RQ's start-up (it registers the worker before it installs
# its handlers), so a stop request at any moment ends the process cleanly with 0.
_stop_signalled = False


def _note_stop(signum, frame) -> None:
    global _stop_signalled
    _stop_signalled = True


def _install_stop_handlers() -> None:
    signal.signal(signal.SIGTERM, _note_stop)
    signal.signal(signal.SIGINT, _note_stop)


def _wait(seconds: float) -> None:
    """Sleep, but wake within a fraction of a second of a stop request."""
    deadline = time.monotonic() + seconds
    while not _stop_signalled and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _stop_aware(worker_type: type) -> type:
    """The RQ worker class, told of a stop request that came before its handlers replaced ours."""

    class StopAwareWorker(worker_type):
        def request_stop(self, signum, frame) -> None:
            from core.queue import note_stop_requested

            note_stop_requested()
            super().request_stop(signum, frame)

        def subscribe(self) -> None:
            """RQ's own subscribe, with a listener that wakes every LISTENER_WAKE_SECONDS."""
            self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
            self.pubsub = self.connection.pubsub()
            self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
            self.pubsub_thread = self.pubsub.run_in_thread(
                sleep_time=LISTENER_WAKE_SECONDS, daemon=True, exception_handler=self._pubsub_exception_handler)

        def _install_signal_handlers(self) -> None:
            super()._install_signal_handlers()
            if _stop_signalled:
                self._stop_requested = True  # RQ's loop checks this before it dequeues anything

    StopAwareWorker.__name__ = StopAwareWorker.__qualname__ = worker_type.__name__
    return StopAwareWorker


WORKER_CLASSES = ("simple", "fork")


def main(burst: bool = False, worker_class: str = "simple") -> int:
    import redis
    from rq import SimpleWorker, Worker

    from core.app import process_app
    from core.crypto import CryptoError, self_test
    from core.pipeline import sweep
    from core.queue import connection, queues

    _install_stop_handlers()
    try:
        self_test()
    except CryptoError as exc:
        log.error("加密自检失败，工作进程不处理上报：%s", exc)
        return 2
    from core.plugins import registry

    registry()  # import every plugin once (before RQ forks, with --fork)
    worker_type = _stop_aware(SimpleWorker if worker_class == "simple" else Worker)
    backoff = 1.0
    while True:
        if _stop_signalled:
            return 0
        try:
            with process_app().app_context():  # the process's one app, reused by every job it runs
                try:
                    log.info("start-up sweep: %s", sweep())
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    raise
                except Exception:  # the sweep must never keep a worker from working
                    log.exception("start-up sweep failed; working on")
            if _stop_signalled:
                return 0
            worker = worker_type(queues(), connection=connection())
            try:
                worker.work(burst=burst, with_scheduler=False)
            finally:
                _install_stop_handlers()  # RQ's handlers stay behind after its loop; ours take over again
            if burst or stop_requested(worker) or _stop_signalled:
                return 0
            log.warning("the RQ loop ended without a stop request; restarting in %.0f s", backoff)
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as exc:
            log.warning("Redis unreachable (%s); reconnecting in %.0f s", exc, backoff)
        _wait(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def stop_requested(worker) -> bool:
    """Did RQ end its loop because of SIGTERM/SIGINT (warm shutdown), idle or busy?"""
    return bool(getattr(worker, "_stop_requested", False) or getattr(worker, "_shutdown_requested_date", None))


if __name__ == "__main__":
    _install_stop_handlers()  # before the slow imports: a stop request during start-up ends it with 0
    from core.cli import _setup_logging, exit_unless_production_ready

    _setup_logging()
    exit_unless_production_ready()  # the same refusal as ``baosong worker`` (BAOSONG_ENV=production)
    sys.exit(main(burst="--burst" in sys.argv, worker_class="fork" if "--fork" in sys.argv else "simple"))
