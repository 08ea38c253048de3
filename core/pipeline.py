"""The one upload pipeline every plugin goes through:

    build_payload -> validate (core.schema) -> sign -> post -> parse_response -> record

Each attempt is built from the upload as read, then taken in the ledger (a compare-and-set to SENDING)
with its Attempt row (URL, masked headers, plaintext, wire body) in the commit before the request
leaves, so a crash leaves a record the sweep can re-run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa

from core import aggregates, clock, ledger, ordering, settings
from core.db import db
from core.errors import AlreadyDelivered, BaosongError, RetryLater
from core.hook_types import (
    DELIVERY_UNKNOWN,
    TRANSPORT_MAYBE,
    TRANSPORT_NOT_SENT,
    AttemptRecord,
    Outcome,
    Payload,
    Response,
    UploadContext,
)
from core.models import Attempt, Upload, UploadStatus
from core.plugins import registry
from core.secrets import mask, redact

log = logging.getLogger("baosong.pipeline")


MAX_FOLLOW_UPS = 3  # follow-up attempts a plugin may ask for in a row (Outcome.follow_up)
LEASE_MARGIN_SECONDS = 60  # an attempt's lease outlives its request timeout by this much


def run_upload(upload_id: int, expected_attempts: int) -> str:
    """RQ job entry: run one attempt inside this process's application context."""
    from core.app import process_app

    with process_app().app_context():
        return attempt(upload_id, expected_attempts)


def run_uploads(members: list[tuple[int, int]]) -> dict[int, str]:
    """RQ job entry for a batch (``core.queue.enqueue_uploads``): each upload's attempt in turn, each
    taken and committed on its own. One that raises is left as a single job would leave it (runnable,
    or SENDING under a lease the sweep recovers) and the batch goes on. Returns the statuses by id."""
    from rq.timeouts import JobTimeoutException

    from core.app import process_app
    from core.queue import enqueue_uploads, stop_requested

    statuses: dict[int, str] = {}
    with process_app().app_context():
        for index, (upload_id, expected_attempts) in enumerate(members):
            if stop_requested():  # a warm shutdown waits for this job: the rest go back to the queue
                rest = members[index:]
                enqueue_uploads(rest, bulk=True, live=set())  # this job held them: none other does
                log.info("worker stopping: %s uploads of the batch handed back to the queue", len(rest))
                break
            try:
                statuses[upload_id] = attempt(upload_id, expected_attempts)
            except JobTimeoutException:
                raise
            except Exception:
                log.exception("upload %s: the attempt failed in its batch; the sweep takes it up", upload_id)
                db.session.rollback()
                statuses[upload_id] = "error"
    return statuses


def attempt(upload_id: int, expected_attempts: int) -> str:
    """Run one attempt, and the follow-ups its plugin asks for (at most MAX_FOLLOW_UPS in a row).
    Returns the upload's status afterwards ("skipped" if it was not runnable with that many attempts)."""
    with _keeping_loaded_rows():
        status = _attempt_as_read(upload_id, expected_attempts, follow_ups=0)
        follow_ups = 0
        while status == _FOLLOW_UP:
            follow_ups += 1
            upload = db.session.get(Upload, upload_id)
            status = _attempt_as_read(upload_id, upload.attempts, follow_ups=follow_ups)
    return status


# Times an attempt is built again when its upload changed between the read and the take (a person
# edited it meanwhile); after that the sweep, which enqueues every runnable upload no job holds, has it.
MAX_REREADS = 3


def _attempt_as_read(upload_id: int, expected_attempts: int, *, follow_ups: int) -> str:
    for _ in range(MAX_REREADS):
        status = _attempt_once(upload_id, expected_attempts, follow_ups=follow_ups)
        if status != _CHANGED:
            return status
    log.warning("upload %s changed %s times while its attempt was built; the sweep takes it up",
                upload_id, MAX_REREADS)
    return "skipped"


@contextmanager
def _keeping_loaded_rows():
    """An attempt commits twice (before the request leaves, the outcome); by default each commit
    expires every loaded row and the next access reads it again. The rows an attempt touches are its
    own while its upload is SENDING (nothing else writes a SENDING upload or its attempt), so they stay
    loaded in between. The read before the take refreshes the upload, and everything is expired at the
    end as a commit would have, for the caller."""
    session = db.session()
    before = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield
    finally:
        session.expire_on_commit = before
        session.expire_all()


_FOLLOW_UP = "follow_up"
_CHANGED = "changed"  # the upload changed between the read and the take: nothing was written or sent


def _attempt_once(upload_id: int, expected_attempts: int, *, follow_ups: int) -> str:
    """One attempt: read the runnable upload, build and sign its request, then take it (SENDING) and
    record the attempt in one commit before the request leaves; send; record the outcome. An attempt
    that stops before sending is taken and finished in one commit. A worker that dies before the take
    leaves the upload runnable, as it was; after it, SENDING under a lease the sweep recovers."""
    policy = settings.flags()
    lease_seconds = int(policy["send_lease_seconds"])
    upload = ledger.runnable(upload_id, expected_attempts)
    if upload is None:
        return "skipped"
    number = expected_attempts + 1
    record = Attempt(upload_id=upload.id, number=number, started_at=clock.utc_naive(clock.now()),
                     worker=_worker_name(), resend=bool(upload.delivery_uncertain) or upload.operation == "update",
                     headers={})
    reg = registry()
    earlier = [] if number <= 1 else list(db.session.execute(
        sa.select(Attempt).where(Attempt.upload_id == upload.id, Attempt.number < number)
        .order_by(Attempt.number)).scalars())
    resend = record.resend

    started = time.monotonic()
    taken = False  # take() set the upload SENDING for this attempt, in the commit before sending
    sent = False  # the post hook was called: from here on the request may have left
    secrets: list[str] = []
    context: UploadContext | None = None
    report_type = None
    outcome: Outcome
    try:
        # Inside the try so a missing plugin or an undecryptable secret is a visible attempt error.
        report_type = reg.report_type(upload.report_type)
        try:
            regulator_settings = settings.regulator_settings(report_type.regulator)
        except BaosongError as exc:
            raise RetryLater(f"读取监管平台设置失败：{exc}") from None
        secrets = regulator_settings.secrets()
        context = UploadContext(
            id=upload.id,
            report_type=report_type,
            business_key=upload.business_key,
            period=upload.period,
            department=upload.department,
            rows=list(upload.rows or []),
            idempotency_key=upload.idempotency_key,
            operation=upload.operation,
            attempt_no=number,
            resend=resend,
            settings=regulator_settings,
            mapping_version=upload.mapping_version,
            created_at=upload.created_at,
            result=dict(upload.result or {}),
            history=tuple(attempt_record(a) for a in earlier),
            delivery_uncertain=bool(upload.delivery_uncertain),
        )
        if not report_type.available:
            raise BaosongError(f"接口不可用：{report_type.unavailable_reason or '缺少接口规范'}，拒绝发送")
        payload = reg.hook(report_type.name, "build_payload")(upload=context)
        if payload is None:
            raise BaosongError(f"插件没有为 {report_type.name} 实现 build_payload")
        problems = validate_payload(report_type, payload)
        if problems:
            raise BaosongError("字段校验未通过：" + "；".join(str(p) for p in problems[:20]))
        request = reg.hook(report_type.name, "sign")(upload=context, payload=payload)
        if request is None:
            raise BaosongError(f"插件没有为 {report_type.name} 实现 sign")
        record.url = request.url
        record.headers = {
            k: (mask(v) if k in request.secret_headers else redact(v, secrets)) for k, v in request.headers.items()
        }
        record.plaintext = storable(redact(request.plaintext or _as_text(payload.document), secrets))
        body = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else request.body
        record.wire_body = storable(redact(body, secrets))
        record.operation_sent = (request.operation or upload.operation)[:16]
        record.delivery = TRANSPORT_MAYBE  # what a crash from here on leaves: it may have arrived
        # A slow but live attempt must never be taken for a dead one and sent again concurrently.
        lease_until = clock.utc_naive(clock.now()) + timedelta(
            seconds=attempt_lease_seconds(lease_seconds, request.timeout))
        if not ledger.take(upload, record, lease_until):
            db.session.rollback()
            return _CHANGED
        taken = True
        db.session.commit()  # durable before the request leaves

        sent = True
        response: Response = reg.hook(report_type.name, "post")(upload=context, request=request)
        record.delivery = response.transport
        record.http_status = response.status
        record.response_body = storable(redact(response.body, secrets))
        record.error = redact(response.error, secrets)
        outcome = reg.hook(report_type.name, "parse_response")(upload=context, response=response)
        if outcome is None:
            raise BaosongError(f"插件没有为 {report_type.name} 实现 parse_response")
        if may_have_arrived(response, outcome):
            upload.delivery_uncertain = True
    except AlreadyDelivered as exc:
        outcome = Outcome(kind="success", code=exc.code, message=redact(str(exc), secrets), result=exc.result,
                          search_keys=exc.search_keys)
        if not sent:
            record.url = record.url or "（未发送：监管平台已有该记录）"
    except RetryLater as exc:
        outcome = Outcome(kind="retry", message=redact(str(exc), secrets))
        _after_error(record, upload, sent)
    except BaosongError as exc:
        outcome = Outcome(kind="retry" if sent else "reject", message=redact(str(exc), secrets))
        _after_error(record, upload, sent)
    except Exception as exc:  # a plugin bug or an unexpected answer: keep everything for the admin
        outcome = Outcome(kind="retry", message=redact(f"{type(exc).__name__}: {exc}", secrets))
        record.traceback = redact(traceback.format_exc(), secrets)
        _after_error(record, upload, sent)

    if not taken:  # stopped before sending: take it and record the attempt with its outcome, one commit
        record.delivery = None  # nothing left
        if not ledger.take(upload, record, clock.utc_naive(clock.now()) + timedelta(seconds=lease_seconds)):
            db.session.rollback()
            return _CHANGED

    record.finished_at = clock.utc_naive(clock.now())
    record.duration_ms = int((time.monotonic() - started) * 1000)
    record.outcome = outcome.kind
    record.code = outcome.code
    record.message = outcome.message
    follow_up = bool(outcome.follow_up) and follow_ups < MAX_FOLLOW_UPS
    if outcome.follow_up and not follow_up:
        outcome.message = f"{outcome.message}（已连续跟进 {MAX_FOLLOW_UPS} 次，不再跟进）"
        record.message = outcome.message
    with db.session.no_autoflush:  # one flush at the commit, not one per query the bookkeeping runs
        ledger.finish(
            upload, outcome.kind, code=outcome.code, message=outcome.message,
            retry_interval=int(policy["retry_interval_minutes"]), retry_max=int(policy["retry_max"]),
            result=outcome.result, search_keys=outcome.search_keys, follow_up=follow_up,
        )
    db.session.commit()
    ordering.enqueue_released()
    log.info("upload %s %s attempt %s -> %s %s%s", upload.id, upload.report_type, record.number,
             upload.status, outcome.code or "", " (follow-up)" if follow_up else "")
    if follow_up:
        return _FOLLOW_UP
    if context is not None and upload.status in (UploadStatus.SUCCEEDED, UploadStatus.REJECTED):
        context.result = dict(upload.result or {})
        reg.hook(report_type.name, "upload_finished")(upload=context, outcome=outcome)
    return upload.status


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _after_error(record: Attempt, upload: Upload, sent: bool) -> None:
    """An exception ended the attempt. Raised once the post hook was called, it may have come after the
    request left (a plugin's own transport raising, or an answer it could not read): maybe delivered,
    unless the transport said the request never left."""
    if sent and record.delivery != TRANSPORT_NOT_SENT:
        upload.delivery_uncertain = True


def may_have_arrived(response: Response, outcome: Outcome) -> bool:
    """After this answer, may the regulator hold the data without us knowing it succeeded? Yes when no
    answer came back although the request may have left, and when it answered but we will retry (a 5xx
    or a system error: the regulator may have stored it first). A success or a rejection is an answer."""
    if response.transport == TRANSPORT_NOT_SENT:
        return False
    if response.transport == TRANSPORT_MAYBE:
        return True
    return outcome.kind == "retry"


def attempt_record(row: Attempt) -> AttemptRecord:
    return AttemptRecord(number=row.number, delivery=row.delivery, outcome=row.outcome, code=row.code,
                         resend=bool(row.resend), operation_sent=row.operation_sent)


def attempt_lease_seconds(setting: int, timeout) -> int:
    """The lease of a running attempt: the setting, or the request's own timeout plus a margin if longer."""
    if isinstance(timeout, tuple | list):
        total = sum(float(t) for t in timeout if t is not None)
    else:
        total = float(timeout) if timeout is not None else 0.0
    return max(int(setting), int(total) + LEASE_MARGIN_SECONDS)


def validate_payload(report_type, payload: Payload) -> list:
    if report_type.schema is None:
        return []
    dictionaries = {name: dictionary_codes(name) for name in report_type.dictionaries}
    _, problems = report_type.schema.validate_records(payload.records, dictionaries=dictionaries)
    return problems


_dictionary_providers: dict[str, object] = {}


def register_dictionary(name: str, provider) -> None:
    """A plugin registers a code dictionary (e.g. CT08.00.002) as a callable returning {code: meaning}."""
    _dictionary_providers[name] = provider


def dictionary_codes(name: str) -> dict[str, str]:
    """The codes of a dictionary a plugin declared (hook ``register_dictionaries``)."""
    declared = registry().dictionaries.get(name)
    provider = declared.codes if declared is not None else _dictionary_providers.get(name)
    if provider is None:
        raise BaosongError(f"代码字典 {name} 未注册")
    return provider()


def storable(text: str | None) -> str | None:
    """Text as the ledger can keep it in any database: PostgreSQL refuses NUL characters in text, and a
    multipart body carrying a binary attachment has them (shown as \\x00)."""
    return text.replace("\x00", "\\x00") if text and "\x00" in text else text


def _as_text(document) -> str:
    return document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)


def sweep(now=None) -> dict[str, int]:
    """Periodic housekeeping, also run at worker start: re-run uploads left SENDING by a dead worker,
    enqueue due automatic retries (unless stopped) and every pending upload no queue or worker holds,
    and resume back-fills whose job was lost. Judged from the ledger alone: whatever Redis lost or an
    old job hash says, work the ledger owes is enqueued again (the take keeps it to one run)."""
    from core import queue
    from core.scheduler import resume_stalled_backfills

    now_utc = clock.utc_naive(now or clock.now())
    counts = {"recovered": 0, "retried": 0, "requeued": 0}
    for upload in ledger.stale_sending(now_utc):
        last = upload.attempt_list[-1] if upload.attempt_list else None
        if last is not None and last.outcome is None:
            last.outcome = "unknown"
            last.delivery = DELIVERY_UNKNOWN
            last.error = "工作进程中断（租约过期），结果未知；将以幂等方式重发"
            last.finished_at = now_utc
        upload.status = UploadStatus.RETRY_WAIT
        upload.delivery_uncertain = True
        upload.lease_until = None
        upload.next_retry_at = now_utc
        aggregates.settle(upload)
        counts["recovered"] += 1
    db.session.commit()
    ordering.release_ready()
    ordering.enqueue_released()
    live = queue.live_upload_job_ids()
    if settings.flag("auto_retry_stopped") != "1":
        for upload in ledger.due_retries(now_utc):
            if queue.enqueue_upload(upload.id, upload.attempts, live=live):
                counts["retried"] += 1
    after_id = 0
    while True:
        batch = ledger.forgotten_pending(now_utc - timedelta(seconds=60), limit=2000, after_id=after_id)
        if not batch:
            break
        forgotten = [(i, n) for i, n in batch if queue.upload_job_id(i, n) not in live]
        queue.enqueue_uploads(forgotten, bulk=True, live=live)
        counts["requeued"] += len(forgotten)
        after_id = batch[-1][0]
    resumed = resume_stalled_backfills(now)
    if resumed:
        counts["backfills"] = resumed
    return counts
