"""配置管理 › 科室字典映射: the hospital's departments mapped to CT08.00.002 (keydata's tables).

One page lists every department the HIS knows (keydata.dept_daily's ``department_list`` query, through the
same source the plugin reads) with its mapping: 未对照, 可疑 (the national name scores low against the local
name, the code is not in the dictionary, or the HIS renamed the department since), 已对照. Unmapped and
suspicious rows get ranked suggestions (core.deptmatch) accepted with one click (HTMX), or any code can be
linked by hand. The coverage figure counts departments in pending data that are unmapped: today's
registrations and unresolved held-back dept_daily records.

Excel: the export is also the import template. An import validates every row (empty cells, unknown national
code, duplicate local code) and applies nothing if any row is wrong; a dry run shows what would change.

This module also provides ``config.index``, the landing page of 配置管理.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for

from core import clock
from core.db import db
from core.deptmatch import Matcher, Suggestion
from core.errors import ConfigurationError
from core.models import HeldBack
from core.plugins import registry
from web import audit
from web.auth import require_role
from web.models import Role

bp = Blueprint("config", __name__, url_prefix="/config")

DEPT_REPORT_TYPE = "keydata.dept_daily"
SUSPICIOUS_BELOW = 0.5  # a mapping whose national name scores under this against the local name is flagged
EXPORT_HEADER = ("院内科室代码", "院内科室名称", "国家科室代码", "国家科室名称（仅供参考，导入时忽略）")
MAX_IMPORT_ROWS = 5000
STATUS_LABELS = {"unmapped": "未对照", "suspicious": "可疑", "mapped": "已对照"}


# --- data -------------------------------------------------------------------------------------------

@dataclass
class DepartmentRow:
    local_code: str
    local_name: str
    in_his: bool  # False: only the mapping table knows it (removed from the HIS)
    active: bool = True
    national_code: str | None = None
    national_name: str = ""
    mapped_name: str = ""  # the local name recorded with the mapping
    score: float | None = None
    status: str = "unmapped"
    why: list[str] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    pending: bool = False  # appears in today's registrations or held-back records

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


def keydata_models():
    """The keydata plugin's mapping tables; ConfigurationError when the plugin is not installed."""
    try:
        from plugins.keydata import models
    except ImportError as exc:
        raise ConfigurationError(f"科室对照需要 keydata 插件：{exc}") from None
    models.ensure_setup()
    return models


def his_departments(warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """[{code, name, active}] from the hospital system, as the plugin sees it."""
    from core.scheduler import hospital_data

    try:
        report_type = registry().report_type(DEPT_REPORT_TYPE)
        rows = hospital_data().query(report_type, "department_list")
    except Exception as exc:  # the HIS may be down: the page still shows the mapping table
        if warnings is not None:
            warnings.append(f"无法从医院系统读取科室清单：{exc}")
        return []
    out = []
    for row in rows:
        code = row.get("departNoExp", row.get("dept_code"))
        if code in (None, ""):
            continue
        active = row.get("active", 1)
        out.append({"code": str(code), "name": str(row.get("departNameExp", row.get("dept_name")) or ""),
                    "active": active in (1, "1", True, None)})
    return out


def pending_departments(warnings: list[str] | None = None) -> tuple[dict[str, int], set[str]]:
    """({local code: unresolved held-back records}, local codes with registrations today)."""
    held: dict[str, int] = {}
    rows = db.session.execute(
        sa.select(HeldBack.record_key, sa.func.count()).where(
            HeldBack.report_type == DEPT_REPORT_TYPE, HeldBack.resolved.is_(False), HeldBack.record_key.is_not(None))
        .group_by(HeldBack.record_key)
    )
    for key, count in rows:
        held[str(key)] = count
    today: set[str] = set()
    from core.scheduler import hospital_data

    try:
        report_type = registry().report_type(DEPT_REPORT_TYPE)
        now = clock.local_now()
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        for row in hospital_data().query(report_type, "departments", start=f"{start:%Y-%m-%d %H:%M:%S}",
                                         end=f"{now + timedelta(seconds=1):%Y-%m-%d %H:%M:%S}"):
            code = row.get("departNoExp")
            if code not in (None, ""):
                today.add(str(code))
    except Exception as exc:
        if warnings is not None:
            warnings.append(f"无法读取今日挂号科室：{exc}")
    return held, today


def build_rows(warnings: list[str] | None = None) -> tuple[list[DepartmentRow], dict[str, str]]:
    """Every department (HIS and mapping table), classified, with suggestions where they are needed."""
    models = keydata_models()
    national = models.national_departments()
    mappings = models.mappings()
    rows: dict[str, DepartmentRow] = {}
    for dept in his_departments(warnings):
        rows[dept["code"]] = DepartmentRow(dept["code"], dept["name"], True, dept["active"])
    for code, mapping in mappings.items():
        if code not in rows:
            rows[code] = DepartmentRow(code, mapping.local_name, False, False)
    entries = [{"code": c, "name": n, "parent": p} for c, n, p in db.session.execute(
        sa.select(models.KeydataNationalDepartment.code, models.KeydataNationalDepartment.name,
                  models.KeydataNationalDepartment.parent).order_by(models.KeydataNationalDepartment.position))]
    plain = Matcher(entries)
    for row in rows.values():
        mapping = mappings.get(row.local_code)
        if mapping is None or not mapping.national_code:
            continue
        row.national_code = mapping.national_code
        row.mapped_name = mapping.local_name
        row.national_name = national.get(mapping.national_code, "")
        row.score = plain.score(row.local_name, mapping.national_code)
        if mapping.national_code not in national:
            row.why.append(f"代码 {mapping.national_code} 不在 CT08.00.002 中")
        elif row.score < SUSPICIOUS_BELOW:
            row.why.append(f"国家科室名称与院内名称相似度低（{round(row.score * 100)}%）")
        if row.in_his and mapping.local_name and mapping.local_name != row.local_name:
            row.why.append(f"医院系统中的科室名称已改为「{row.local_name}」（对照时为「{mapping.local_name}」）")
        row.status = "suspicious" if row.why else "mapped"
    learned = {r.local_name: r.national_code for r in rows.values() if r.status == "mapped" and r.national_code}
    matcher = Matcher(entries, learned=learned)
    held, today = pending_departments(warnings)
    for row in rows.values():
        row.pending = row.local_code in held or row.local_code in today
        if row.status != "mapped":
            row.suggestions = [s for s in matcher.suggest(row.local_name, 3) if s.code != row.national_code]
    order = {"unmapped": 0, "suspicious": 1, "mapped": 2}
    ordered = sorted(rows.values(), key=lambda r: (order[r.status], not r.pending, r.local_code))
    return ordered, national


def coverage(rows: list[DepartmentRow]) -> dict[str, int]:
    held, today = pending_departments()
    status = {r.local_code: r.status for r in rows}
    unmapped_today = sorted(c for c in today if status.get(c, "unmapped") == "unmapped")
    unmapped_held = sorted(c for c in held if status.get(c, "unmapped") == "unmapped")
    return {
        "total": len(rows),
        "mapped": sum(r.status == "mapped" for r in rows),
        "unmapped": sum(r.status == "unmapped" for r in rows),
        "suspicious": sum(r.status == "suspicious" for r in rows),
        "today": len(today),
        "unmapped_today": len(unmapped_today),
        "held_departments": len(held),
        "held_records": sum(held.values()),
        "unmapped_held": len(unmapped_held),
        "pending_unmapped": len(set(unmapped_today) | set(unmapped_held)),
    }


def _actor() -> str:
    user = getattr(g, "user", None)
    return user.username if user is not None else "system"


def apply_mapping(local_code: str, local_name: str, national_code: str | None, *, how: str) -> dict[str, Any]:
    """Map one department (national_code None: unmap) with an audit entry, in one commit."""
    models = keydata_models()
    existing = models.mappings().get(local_code)
    before = {"national_code": existing.national_code, "local_name": existing.local_name} if existing else None
    models.set_mapping(local_code, local_name, national_code, _actor())
    after = {"national_code": national_code, "local_name": local_name, "how": how}
    audit.record("department.map" if national_code else "department.unmap", local_code, before=before, after=after)
    db.session.commit()
    if national_code:  # its held-back records are sent now (core.scheduler re-plans the slots that held them)
        from core.scheduler import request_held_back_replan

        request_held_back_replan(DEPT_REPORT_TYPE, local_code)
    return after


# --- Excel import / export ---------------------------------------------------------------------------

def export_workbook(rows: list[DepartmentRow]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = "科室对照"
    sheet.append(EXPORT_HEADER)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in sorted(rows, key=lambda r: r.local_code):
        # Text cells: a code like 0101 must come back as 0101, not 101.
        sheet.append([row.local_code, row.local_name, row.national_code or "", row.national_name])
    for column in ("A", "B", "C", "D"):
        for cell in sheet[column]:
            cell.number_format = "@"
    for column, width in zip("ABCD", (14, 28, 14, 36), strict=True):
        sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@dataclass
class ImportResult:
    errors: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)  # local_code, local_name, before, after, kind
    unchanged: int = 0
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def check_import(data: bytes) -> ImportResult:
    """Validate every row of an uploaded workbook against the dictionary and the current mappings."""
    from openpyxl import load_workbook

    result = ImportResult()
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:
        result.errors.append("文件不是有效的 Excel（.xlsx）文件：请使用“导出 Excel”得到的模板")
        return result
    sheet = book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = next(rows, None)
    if header is None or [_cell_text(h) for h in header[:3]] != list(EXPORT_HEADER[:3]):
        result.errors.append(f"第 1 行应为表头：{'、'.join(EXPORT_HEADER[:3])}（请使用导出的模板）")
        return result
    models = keydata_models()
    national = models.national_departments()
    current = models.mappings()
    seen: dict[str, int] = {}
    for number, values in enumerate(rows, start=2):
        values = list(values or ()) + [None] * 3
        local_code, local_name, national_code = (_cell_text(v) for v in values[:3])
        if not (local_code or local_name or national_code):
            continue  # blank line
        result.rows += 1
        if result.rows > MAX_IMPORT_ROWS:
            result.errors.append(f"超过 {MAX_IMPORT_ROWS} 行，请分批导入")
            break
        problems = []
        if not local_code:
            problems.append("院内科室代码为空")
        if not local_name:
            problems.append("院内科室名称为空")
        if local_code in seen:
            problems.append(f"院内科室代码 {local_code} 与第 {seen[local_code]} 行重复")
        elif local_code:
            seen[local_code] = number
        existing = current.get(local_code)
        if national_code and national_code not in national:
            problems.append(f"国家科室代码 {national_code} 不在 CT08.00.002 中")
        if not national_code and existing is not None and existing.national_code:
            problems.append(f"国家科室代码为空（当前对照 {existing.national_code}；如需取消对照请在页面上操作）")
        if len(local_code) > 64 or len(local_name) > 200:
            problems.append("代码或名称过长（代码最多 64 字符，名称最多 200 字符）")
        if problems:
            result.errors.append(f"第 {number} 行（{local_code or '无代码'} {local_name}）：" + "；".join(problems))
            continue
        if not national_code:
            result.unchanged += 1  # unmapped and left unmapped
            continue
        before = existing.national_code if existing else None
        if before == national_code and existing is not None and existing.local_name == local_name:
            result.unchanged += 1
            continue
        kind = "new" if not before else ("changed" if before != national_code else "renamed")
        result.changes.append({"local_code": local_code, "local_name": local_name, "before": before,
                               "after": national_code, "after_name": national[national_code], "kind": kind})
    if result.rows == 0 and not result.errors:
        result.errors.append("文件中没有数据行")
    return result


def apply_import(result: ImportResult, filename: str) -> None:
    models = keydata_models()
    actor = _actor()
    for change in result.changes:
        models.set_mapping(change["local_code"], change["local_name"], change["after"], actor)
    audit.record("department.import", filename[:120], after={
        "changed": len(result.changes), "unchanged": result.unchanged,
        "changes": [{k: c[k] for k in ("local_code", "before", "after")} for c in result.changes[:200]],
    })
    db.session.commit()
    if any(change["after"] for change in result.changes):
        from core.scheduler import request_held_back_replan

        request_held_back_replan(DEPT_REPORT_TYPE)  # every slot that held a department back


# --- views ---------------------------------------------------------------------------------------------

@bp.get("/")
def index():
    from core.mapping import active_version

    sections = []
    try:
        rows, _ = build_rows()
        sections.append(("departments", coverage(rows)))
    except ConfigurationError as exc:
        sections.append(("departments", {"error": str(exc)}))
    field_rows = [(name, rt.title, active_version(name)) for name, rt in sorted(registry().report_types.items())]
    regulators = sorted(registry().regulators.values(), key=lambda r: r.name)
    return render_template("config/index.html", sections=dict(sections), field_rows=field_rows,
                           regulators=regulators)


@bp.get("/departments/")
def departments():
    warnings: list[str] = []
    try:
        rows, national = build_rows(warnings)
    except ConfigurationError as exc:
        return render_template("config/departments.html", error=str(exc), rows=[], national={}, cover={},
                               show="all", warnings=warnings)
    show = request.args.get("show", "all")
    shown = [r for r in rows if show == "all" or r.status == show or (show == "pending" and r.pending)]
    return render_template("config/departments.html", rows=shown, national=national, cover=coverage(rows),
                           show=show, warnings=warnings, error=None, labels=STATUS_LABELS)


def _row_response(local_code: str, message: str = "", category: str = "ok"):
    """The department's row re-rendered; the summary figures refresh on the deptChanged event."""
    rows, national = build_rows()
    row = next((r for r in rows if r.local_code == local_code), None)
    body = render_template("config/_department_row.html", r=row, national=national, message=message,
                           category=category)
    return Response(body, headers={"HX-Trigger": "deptChanged"})


@bp.get("/departments/summary")
def department_summary():
    rows, _ = build_rows()
    return render_template("config/_department_summary.html", cover=coverage(rows))


@bp.post("/departments/map")
@require_role(Role.OPERATOR)
def map_department():
    local_code = (request.form.get("local_code") or "").strip()
    local_name = (request.form.get("local_name") or "").strip()
    national_code = (request.form.get("national_code") or "").strip().split(" ")[0]
    how = request.form.get("how", "manual")[:20]
    error = None
    if not local_code or not local_name:
        error = "缺少院内科室代码或名称"
    elif not national_code:
        error = "请选择国家科室代码"
    if error is None:
        try:
            apply_mapping(local_code, local_name, national_code, how=how)
        except ConfigurationError as exc:
            db.session.rollback()
            error = str(exc)
    message = error or f"已对照：{local_code} {local_name} → {national_code}"
    if request.headers.get("HX-Request"):
        return _row_response(local_code, message, "error" if error else "ok")
    flash(message, "error" if error else "ok")
    return redirect(url_for("config.departments", show=request.form.get("show", "all")))


@bp.post("/departments/unmap")
@require_role(Role.OPERATOR)
def unmap_department():
    local_code = (request.form.get("local_code") or "").strip()
    local_name = (request.form.get("local_name") or "").strip()
    apply_mapping(local_code, local_name, None, how="manual")
    message = f"已取消对照：{local_code} {local_name}"
    if request.headers.get("HX-Request"):
        return _row_response(local_code, message)
    flash(message, "ok")
    return redirect(url_for("config.departments"))


@bp.get("/departments/export.xlsx")
def export_departments():
    rows, _ = build_rows()
    audit.record("department.export", f"{len(rows)} 个科室", commit=True)
    filename = f"科室对照_{clock.local_now():%Y%m%d_%H%M%S}.xlsx"
    return Response(export_workbook(rows),
                    mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


@bp.post("/departments/import")
@require_role(Role.OPERATOR)
def import_departments():
    upload = request.files.get("file")
    dry_run = request.form.get("action") != "apply"
    if upload is None or not upload.filename:
        flash("请选择要导入的 Excel 文件", "error")
        return redirect(url_for("config.departments"))
    result = check_import(upload.read())
    applied = False
    if result.ok and not dry_run and result.changes:
        apply_import(result, upload.filename)
        applied = True
    elif not result.ok:
        audit.record("department.import_rejected", upload.filename[:120],
                     after={"errors": len(result.errors), "first": result.errors[:5]}, commit=True)
    return render_template("config/department_import.html", result=result, dry_run=dry_run, applied=applied,
                           filename=upload.filename), (200 if result.ok else 422)
