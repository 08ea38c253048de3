"""数据查询: the upload log (filter in the URL, keyset pages, capped count), its streamed Excel export, and
the detail of one upload with its actions: retry, cancel, 冲销并重传 for report types that declare a reversal
(core.ordering), and the actions the owning plugin offers (hook ``upload_actions``), with its ordering chain."""

from __future__ import annotations

import logging
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from core import clock, ledger, ordering
from core.db import db
from core.errors import BaosongError
from core.hook_types import UploadAction
from core.masking import mask_text
from core.models import Upload, UploadStatus
from core.plugins import registry
from web import audit
from web.auth import can, require_role
from web.helpers import (
    redis_call,
    report_type_choices,
    report_type_title,
    sees_patient_identifiers,
    shown_document,
    shown_text,
)
from web.models import Role
from web.upload_query import (
    FAILURE_STATUSES,
    STATUS_CHOICES,
    UploadFilter,
    capped_count,
    export_rows,
    page,
)
from web.xlsx_stream import MAX_ROWS, stream_xlsx

bp = Blueprint("uploads", __name__, url_prefix="/uploads")
log = logging.getLogger("baosong.web")
RETRYABLE = (UploadStatus.FAILED, UploadStatus.RETRY_WAIT, UploadStatus.REJECTED, UploadStatus.PENDING)


@bp.get("/")
def index():
    flt = UploadFilter.from_args(request.args)
    result = page(flt, after=request.args.get("after"), before=request.args.get("before"))
    count, exact = capped_count(flt)
    context = dict(
        flt=flt, page=result, count=count, count_exact=exact, statuses=STATUS_CHOICES,
        report_types=report_type_choices(), title_of=report_type_title, shown_text=shown_text,
        labels=UploadStatus.LABELS,
    )
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "upload-results":
        return render_template("uploads_results.html", **context)
    return render_template("uploads.html", **context)


EXPORT_HEADER = ("ID", "上报时间", "报表类型", "报表名称", "统计期", "科室", "业务主键", "操作", "状态",
                 "尝试次数", "返回代码", "返回信息", "完成时间")
EXPORT_WIDTHS = (9, 20, 26, 26, 22, 10, 36, 8, 10, 8, 10, 60, 20)


@bp.get("/export.xlsx")
def export():
    """Exactly the filtered set, streamed row by row (constant memory, first bytes at once)."""
    flt = UploadFilter.from_args(request.args)
    tz = clock.default_timezone()
    titles: dict[str, str] = {}
    audit.record("upload.export", flt.query_string() or "全部", commit=True)

    def local(value):
        return clock.from_db(value).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if value else ""

    admin = sees_patient_identifiers()  # decided now: the rows are produced after the view returned

    def masked(text: str | None) -> str:
        return (text or "") if admin else (mask_text(text) or "")

    def rows():
        for r in export_rows(flt):
            if r.report_type not in titles:
                titles[r.report_type] = report_type_title(r.report_type)
            yield (r.id, local(r.created_at), r.report_type, titles[r.report_type], r.period, r.department or "",
                   masked(r.business_key), r.operation, UploadStatus.LABELS.get(r.status, r.status),
                   r.attempts, r.last_code or "", masked((r.last_message or "")[:500]), local(r.finished_at))

    note = f"导出已截断：Excel 单表最多 {MAX_ROWS - 1} 行，请缩小筛选范围"
    body = stream_xlsx(EXPORT_HEADER, rows(), sheet_name="上报记录", widths=EXPORT_WIDTHS, truncated_note=note)
    filename = f"上报记录_{clock.local_now():%Y%m%d_%H%M%S}.xlsx"
    response = Response(stream_with_context(body),
                        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    response.headers["Content-Disposition"] = (
        f"attachment; filename=uploads.xlsx; filename*=UTF-8''{quote(filename)}"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _upload_or_404(upload_id: int) -> Upload:
    return db.session.get(Upload, upload_id) or abort(404)


def plugin_actions(upload: Upload) -> list[UploadAction]:
    """What the plugin owning the upload's report type offers for it (hook ``upload_actions``)."""
    try:
        return registry().upload_actions(upload)
    except Exception:  # a plugin's bug must not take the detail page down
        log.exception("upload_actions of %s failed", upload.report_type)
        return []


def can_reverse(upload: Upload) -> str | None:
    """None when 冲销并重传 does not apply; "" when it may run now; else why not yet."""
    declared = registry().report_types.get(upload.report_type)
    if declared is None or not declared.reversal or upload.operation == "delete":
        return None
    if upload.status != UploadStatus.SUCCEEDED:
        return f"只有已成功的上报可以冲销（当前：{upload.status_label}）"
    return ""


@bp.get("/<int:upload_id>")
def detail(upload_id: int):
    upload = _upload_or_404(upload_id)
    return render_template(
        "upload_detail.html", upload=upload, title_of=report_type_title, shown_document=shown_document,
        shown_text=shown_text, can_retry=upload.status in RETRYABLE,
        can_cancel=upload.status not in (UploadStatus.SUCCEEDED, UploadStatus.SENDING, UploadStatus.CANCELLED),
        plugin_actions=plugin_actions(upload), reverse_state=can_reverse(upload), chain=ordering.chain(upload),
        children=_children(upload), failure_statuses=FAILURE_STATUSES,
    )


def _children(upload: Upload) -> list[Upload]:
    return list(db.session.execute(
        db.select(Upload).where(Upload.parent_id == upload.id).order_by(Upload.id)
    ).scalars())


def retry_upload(upload: Upload, warnings: list[str]) -> None:
    """Mark for a manual retry, commit, then enqueue (the sweep enqueues it if Redis is down now)."""
    from core.queue import enqueue_upload

    ledger.mark_for_manual_retry(upload)
    db.session.commit()
    redis_call("重试任务", lambda: enqueue_upload(upload.id, upload.attempts), warnings)


@bp.post("/<int:upload_id>/retry")
@require_role(Role.OPERATOR)
def retry(upload_id: int):
    upload = _upload_or_404(upload_id)
    if upload.status not in RETRYABLE:
        flash(f"状态为「{upload.status_label}」的上报不能重试", "error")
        return redirect(url_for("uploads.detail", upload_id=upload_id))
    before = {"status": upload.status, "attempts": upload.attempts}
    audit.record("upload.retry", f"upload:{upload.id}", before=before, after={"status": UploadStatus.RETRY_WAIT})
    warnings: list[str] = []
    retry_upload(upload, warnings)
    for warning in warnings:
        flash(warning, "warn")
    flash(f"已提交重试：上报 #{upload.id}", "ok")
    return redirect(url_for("uploads.detail", upload_id=upload_id))


@bp.post("/<int:upload_id>/cancel")
@require_role(Role.OPERATOR)
def cancel(upload_id: int):
    upload = _upload_or_404(upload_id)
    before = {"status": upload.status}
    try:
        ledger.cancel(upload)
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect(url_for("uploads.detail", upload_id=upload_id))
    audit.record("upload.cancel", f"upload:{upload.id}", before=before, after={"status": upload.status})
    db.session.commit()
    flash(f"已取消上报 #{upload.id}", "ok")
    return redirect(url_for("uploads.detail", upload_id=upload_id))


@bp.post("/<int:upload_id>/actions/<name>")
@require_role(Role.OPERATOR)
def run_action(upload_id: int, name: str):
    """Run one of the plugin's actions, asked again now (availability and role checked on POST)."""
    upload = _upload_or_404(upload_id)
    action = next((a for a in plugin_actions(upload) if a.name == name and a.handler is not None), None)
    if action is None:
        abort(404)
    if not can(action.role):
        abort(403)
    back = url_for("uploads.detail", upload_id=upload_id)
    if action.unavailable:
        flash(f"{action.label}：{action.unavailable}", "error")
        return redirect(back)
    try:
        result = action.handler(upload_id, g.user.username)
    except (BaosongError, ValueError) as exc:  # the plugin explains why (e.g. not yet accepted)
        db.session.rollback()
        flash(f"{action.label}失败：{exc}", "error")
        return redirect(back)
    new_id = result if isinstance(result, int) else getattr(result, "id", None)
    audit.record(f"upload.action.{name}"[:80], f"upload:{upload_id}",
                 after={"action": action.label, **({"new_upload": new_id} if new_id else {})}, commit=True)
    flash(action.done or f"已执行：{action.label}", "ok")
    return redirect(url_for("uploads.detail", upload_id=new_id) if new_id else back)


@bp.post("/<int:upload_id>/reverse")
@require_role(Role.OPERATOR)
def reverse(upload_id: int):
    """冲销并重传: a reversal of the accepted upload, then the same data again once it succeeded."""
    upload = _upload_or_404(upload_id)
    back = url_for("uploads.detail", upload_id=upload_id)
    if can_reverse(upload) is None:
        abort(404)
    try:
        reverse_id, resend_id = ordering.reverse_and_resend(upload_id, g.user.username)
    except BaosongError as exc:
        db.session.rollback()
        flash(f"冲销失败：{exc}", "error")
        return redirect(back)
    audit.record("upload.reverse", f"upload:{upload_id}", after={"reversal": reverse_id, "resend": resend_id},
                 commit=True)
    flash(f"已提交冲销 #{reverse_id}；冲销成功后自动重传 #{resend_id}", "ok")
    return redirect(url_for("uploads.detail", upload_id=reverse_id))
