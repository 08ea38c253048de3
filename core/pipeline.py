"""The one upload pipeline every plugin goes through:

    build_payload -> validate (core.schema) -> sign -> post -> parse_response -> record

Each attempt is claimed in the ledger and its Attempt row (URL, masked headers, plaintext, wire body)
is committed before the request leaves, so a crash leaves a record the sweep can re-run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
from datetime import timedelta

from core import clock, ledger, ordering, settings
from core.db import db
from core.errors import AlreadyDelivered, BaosongError, RetryLater
from core.hook_types import Outcome, Payload, Response, UploadContext
from core.models import Attempt, Upload, UploadStatus
from core.plugins import registry
from core.secrets import mask, redact

log = logging.getLogger("baosong.pipeline")


def run_upload(upload_id: int, expected_attempts: int) -> str:
    """RQ job entry: run one attempt inside this process's application context."""
    from core.app import process_app

    with process_app().app_context():
        return attempt(upload_id, expected_attempts)


def attempt(upload_id: int, expected_attempts: int) -> str:
    """Claim and run one attempt. Returns the upload's status afterwards ("skipped" if not claimed)."""
    policy = settings.flags()
    if not ledger.claim(upload_id, expected_attempts, int(policy["send_lease_seconds"])):
        return "skipped"
    upload = db.session.get(Upload, upload_id)
    reg = registry()
    report_type = reg.report_type(upload.report_type)
    regulator_settings = settings.regulator_settings(report_type.regulator)
    secrets = regulator_settings.secrets()
    resend = upload.delivery_uncertain or upload.operation == "update"
    context = UploadContext(
        id=upload.id,
        report_type=report_type,
        business_key=upload.business_key,
        period=upload.period,
        department=upload.department,
        rows=list(upload.rows or []),
        idempotency_key=upload.idempotency_key,
        operation=upload.operation,
        attempt_no=upload.attempts,
        resend=resend,
        settings=regulator_settings,
        mapping_version=upload.mapping_version,
        created_at=upload.created_at,
        result=dict(upload.result or {}),
    )
    record = Attempt(
        upload_id=upload.id, number=upload.attempts, resend=resend,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    db.session.add(record)
    db.session.commit()

    started = time.monotonic()
    sent = False
    outcome: Outcome
    try:
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
        record.plaintext = redact(request.plaintext or _as_text(payload.document), secrets)
        body = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else request.body
        record.wire_body = redact(body, secrets)
        db.session.commit()  # durable before the request leaves

        sent = True
        response: Response = reg.hook(report_type.name, "post")(upload=context, request=request)
        record.http_status = response.status
        record.response_body = redact(response.body, secrets)
        record.error = redact(response.error, secrets)
        outcome = reg.hook(report_type.name, "parse_response")(upload=context, response=response)
        if outcome is None:
            raise BaosongError(f"插件没有为 {report_type.name} 实现 parse_response")
        if outcome.kind == "retry" and _maybe_delivered(response):
            upload.delivery_uncertain = True
    except AlreadyDelivered as exc:
        outcome = Outcome(kind="success", code=exc.code, message=redact(str(exc), secrets), result=exc.result,
                          search_keys=exc.search_keys)
        if not sent:
            record.url = record.url or "（未发送：监管平台已有该记录）"
    except RetryLater as exc:
        outcome = Outcome(kind="retry", message=redact(str(exc), secrets))
        if sent:
            upload.delivery_uncertain = True
    except BaosongError as exc:
        outcome = Outcome(kind="retry" if sent else "reject", message=redact(str(exc), secrets))
        if sent:
            upload.delivery_uncertain = True
    except Exception as exc:  # a plugin bug or an unexpected answer: keep everything for the admin
        outcome = Outcome(kind="retry", message=redact(f"{type(exc).__name__}: {exc}", secrets))
        record.traceback = redact(traceback.format_exc(), secrets)
        if sent:
            upload.delivery_uncertain = True

    record.finished_at = clock.utc_naive(clock.now())
    record.duration_ms = int((time.monotonic() - started) * 1000)
    record.outcome = outcome.kind
    record.code = outcome.code
    record.message = outcome.message
    ledger.finish(
        upload, outcome.kind, code=outcome.code, message=outcome.message,
        retry_interval=int(policy["retry_interval_minutes"]), retry_max=int(policy["retry_max"]),
        result=outcome.result, search_keys=outcome.search_keys,
    )
    db.session.commit()
    ordering.enqueue_released()
    log.info("upload %s %s attempt %s -> %s %s", upload.id, upload.report_type, record.number,
             upload.status, outcome.code or "")
    if upload.status in (UploadStatus.SUCCEEDED, UploadStatus.REJECTED):
        context.result = dict(upload.result or {})
        reg.hook(report_type.name, "upload_finished")(upload=context, outcome=outcome)
    return upload.status


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


def _maybe_delivered(response: Response) -> bool:
    """Did the request possibly reach the regulator? Not when the connection was never made."""
    if response.status is not None:
        return True
    return not (response.error or "").startswith("连接失败")


def _as_text(document) -> str:
    return document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)


def sweep(now=None) -> dict[str, int]:
    """Periodic housekeeping, also run at worker start: re-run uploads left SENDING by a dead worker,
    enqueue due automatic retries (unless stopped) and pending uploads whose job was lost."""
    from core import queue

    now_utc = clock.utc_naive(now or clock.now())
    counts = {"recovered": 0, "retried": 0, "requeued": 0}
    for upload in ledger.stale_sending(now_utc):
        last = upload.attempt_list[-1] if upload.attempt_list else None
        if last is not None and last.outcome is None:
            last.outcome = "unknown"
            last.error = "工作进程中断（租约过期），结果未知；将以幂等方式重发"
            last.finished_at = now_utc
        upload.status = UploadStatus.RETRY_WAIT
        upload.delivery_uncertain = True
        upload.lease_until = None
        upload.next_retry_at = now_utc
        counts["recovered"] += 1
    db.session.commit()
    ordering.release_ready()
    ordering.enqueue_released()
    if settings.flag("auto_retry_stopped") != "1":
        for upload in ledger.due_retries(now_utc):
            queue.enqueue_upload(upload.id, upload.attempts)
            counts["retried"] += 1
    for upload in ledger.forgotten_pending(now_utc - timedelta(seconds=60)):
        if queue.enqueue_upload(upload.id, upload.attempts, bulk=True):
            counts["requeued"] += 1
    return counts
