"""The worker process (worker.py): its RQ worker class against a real Redis."""

from __future__ import annotations

import time

from rq import Queue, SimpleWorker
from waiting import wait_until

import worker


def test_the_command_listener_of_a_worker_stops_within_seconds_even_after_it_read_its_unsubscribe(redis_conn):
    rq_worker = worker._stop_aware(SimpleWorker)([Queue("baosong-test", connection=redis_conn)],
                                                 connection=redis_conn)
    rq_worker.subscribe()
    wait_until(lambda: rq_worker.pubsub.subscribed, 5)
    # The listener reads its unsubscribe before it is told to stop (the race a worker ending loses at
    # random): it then waits for a subscription again, for RQ's 60 s unless woken sooner.
    rq_worker.pubsub.unsubscribe()
    wait_until(lambda: not rq_worker.pubsub.subscribed, 5)
    stopping = time.monotonic()
    rq_worker.unsubscribe()
    assert time.monotonic() - stopping < worker.LISTENER_WAKE_SECONDS + 2
    assert not rq_worker.pubsub_thread.is_alive()
