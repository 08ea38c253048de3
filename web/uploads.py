"""数据查询: the upload log (filter in the URL, keyset pages, capped count), its streamed Excel export, and
the detail of one upload with its actions (retry, keydata re-send/withdraw, cancel, plugin links)."""

from __future__ import annotations

import importlib
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

from core import clock, ledger
from core.db import db
from core.masking import mask_text
from core.models import Upload, UploadStatus
from web import audit
from web.auth import require_role
from web.filters import operation_label
from web.helpers import (
    plugin_upload_actions,
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
    exact_count,
    export_rows,
    page,
)
from web.xlsx_stream import MAX_ROWS, stream_xlsx

bp = Blueprint("uploads", __name__, url_prefix="/uploads")
RETRYABLE = (UploadStatus.FAILED, UploadStatus.RETRY_WAIT, UploadStatus.REJECTED, UploadStatus.PENDING)


@bp.get("/")
def index():
    flt = UploadFilter.from_args(request.args)
    result = page(flt, after=request.args.get("after"), before=request.args.get("before"))
    if request.args.get("count") == "exact":  # asked for: the exact total, however long it takes
        count, exact = exact_count(flt), True
    else:
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
                   masked(r.business_key), operation_label(r.operation), UploadStatus.LABELS.get(r.status, r.status),
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


def _keydata_function(name: str):
    try:
        module = importlib.import_module("plugins.keydata.plugin")
    except ImportError:
        return None
    return getattr(module, name, None)


@bp.get("/<int:upload_id>")
def detail(upload_id: int):
    upload = _upload_or_404(upload_id)
    is_keydata = upload.report_type.startswith("keydata.")
    return render_template(
        "upload_detail.html", upload=upload, title_of=report_type_title, shown_document=shown_document,
        shown_text=shown_text, can_retry=upload.status in RETRYABLE,
        can_cancel=upload.status not in (UploadStatus.SUCCEEDED, UploadStatus.SENDING, UploadStatus.CANCELLED),
        keydata_resend=is_keydata and _keydata_function("resend_update") is not None,
        keydata_withdraw=is_keydata and _keydata_function("withdraw") is not None,
        plugin_actions=plugin_upload_actions(upload), children=_children(upload),
        failure_statuses=FAILURE_STATUSES,
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


def _keydata_action(upload_id: int, function_name: str, action: str, done_message: str):
    upload = _upload_or_404(upload_id)
    if not upload.report_type.startswith("keydata."):
        abort(400)
    func = _keydata_function(function_name)
    if func is None:
        flash("该插件尚未提供此操作", "error")
        return redirect(url_for("uploads.detail", upload_id=upload_id))
    try:
        result = func(upload_id, g.user.username)
    except Exception as exc:  # the plugin explains why (e.g. not yet accepted, already withdrawn)
        db.session.rollback()
        flash(f"操作失败：{exc}", "error")
        return redirect(url_for("uploads.detail", upload_id=upload_id))
    new_id = result if isinstance(result, int) else getattr(result, "id", None)
    audit.record(action, f"upload:{upload_id}", after={"new_upload": new_id} if new_id else None, commit=True)
    flash(done_message, "ok")
    return redirect(url_for("uploads.detail", upload_id=new_id or upload_id))


@bp.post("/<int:upload_id>/resend")
@require_role(Role.OPERATOR)
def resend(upload_id: int):
    return _keydata_action(upload_id, "resend_update", "upload.resend", "已提交更新重发（dataFlag=2）")


@bp.post("/<int:upload_id>/withdraw")
@require_role(Role.OPERATOR)
def withdraw(upload_id: int):
    return _keydata_action(upload_id, "withdraw", "upload.withdraw", "已提交撤回（dataFlag=3）")
