"""配置管理 › 代码对照 (科室字典映射 and any other dictionary): a hospital's local codes mapped to a regulator's
national dictionary, for every dictionary a plugin declares with a local mapping (hook
``register_dictionaries``, ``CodeDictionary.mapping``), e.g. a national department dictionary. Nothing here knows
a plugin: the rows, the stored mappings and the coverage figures come through the plugin's ``LocalMapping``.

One page per dictionary lists every local code the hospital uses (``local_codes()``) with its mapping:
未对照, 可疑 (the national name scores low against the local name, the code is not in the dictionary, or
the HIS renamed it since), 已对照. Unmapped and suspicious rows get ranked suggestions (core.deptmatch)
accepted with one click (HTMX), or any code can be linked by hand. The coverage figure counts local codes
in pending data that are unmapped (``in_use()`` and ``held()``).

Excel: the export is also the import template. An import validates every row (empty cells, unknown national
code, duplicate local code) and applies nothing if any row is wrong; a dry run shows what would change.

This module also provides ``config.index``, the landing page of 配置管理.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for

from core import clock
from core.db import db
from core.deptmatch import Matcher, Suggestion
from core.errors import ConfigurationError
from core.hook_types import CodeDictionary
from core.plugins import registry
from web import audit
from web.auth import require_role
from web.models import Role

bp = Blueprint("config", __name__, url_prefix="/config")

SUSPICIOUS_BELOW = 0.5  # a mapping whose national name scores under this against the local name is flagged
MAX_IMPORT_ROWS = 5000
STATUS_LABELS = {"unmapped": "未对照", "suspicious": "可疑", "mapped": "已对照"}


def export_header(local_label: str = "院内科室", national_label: str = "国家科室") -> tuple[str, ...]:
    return (f"{local_label}代码", f"{local_label}名称", f"{national_label}代码",
            f"{national_label}名称（仅供参考，导入时忽略）")


EXPORT_HEADER = export_header()  # a department dictionary's template header


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


def mapped_dictionaries() -> list[CodeDictionary]:
    return registry().mapped_dictionaries()


def dictionary_named(name: str | None = None) -> CodeDictionary:
    """The dictionary ``name`` (default: the first one needing a mapping); ConfigurationError if none."""
    found = mapped_dictionaries()
    if not found:
        raise ConfigurationError("没有已安装的插件声明需要院内代码对照的字典")
    if not name:
        return found[0]
    for dictionary in found:
        if dictionary.name == name:
            return dictionary
    raise ConfigurationError(f"代码字典 {name} 不存在或不需要对照")


def _header(dictionary: CodeDictionary) -> tuple[str, ...]:
    return export_header(dictionary.mapping.local_label, dictionary.mapping.national_label)


def local_codes(dictionary: CodeDictionary, warnings: list[str] | None = None) -> list[Any]:
    try:
        return list(dictionary.mapping.local_codes())
    except Exception as exc:  # the HIS may be down: the page still shows the mapping table
        if warnings is not None:
            warnings.append(f"无法从医院系统读取{dictionary.mapping.local_label}清单：{exc}")
        return []


def pending_codes(dictionary: CodeDictionary, warnings: list[str] | None = None) -> tuple[dict[str, int], set[str]]:
    """({local code: unresolved held-back records}, local codes in the current data)."""
    mapping = dictionary.mapping
    held = dict(mapping.held()) if mapping.held else {}
    in_use: set[str] = set()
    if mapping.in_use:
        try:
            in_use = set(mapping.in_use())
        except Exception as exc:
            if warnings is not None:
                warnings.append(f"无法读取当前数据中的{mapping.local_label}：{exc}")
    return held, in_use


def build_rows(warnings: list[str] | None = None, dictionary: CodeDictionary | None = None
               ) -> tuple[list[DepartmentRow], dict[str, str]]:
    """Every local code (HIS and mapping table), classified, with suggestions where they are needed."""
    dictionary = dictionary or dictionary_named()
    national = dictionary.codes()
    mappings = dictionary.mapping.mappings()
    rows: dict[str, DepartmentRow] = {}
    for local in local_codes(dictionary, warnings):
        rows[local.code] = DepartmentRow(local.code, local.name, True, local.active)
    for code, mapping in mappings.items():
        if code not in rows:
            rows[code] = DepartmentRow(code, mapping.local_name, False, False)
    entries = list(dictionary.entries()) if dictionary.entries else national
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
            row.why.append(f"代码 {mapping.national_code} 不在 {dictionary.name} 中")
        elif row.score < SUSPICIOUS_BELOW:
            row.why.append(f"{dictionary.mapping.national_label}名称与{dictionary.mapping.local_label}名称相似度低"
                           f"（{round(row.score * 100)}%）")
        if row.in_his and mapping.local_name and mapping.local_name != row.local_name:
            row.why.append(f"医院系统中的名称已改为「{row.local_name}」（对照时为「{mapping.local_name}」）")
        row.status = "suspicious" if row.why else "mapped"
    learned = {r.local_name: r.national_code for r in rows.values() if r.status == "mapped" and r.national_code}
    matcher = Matcher(entries, learned=learned)
    held, today = pending_codes(dictionary, warnings)
    for row in rows.values():
        row.pending = row.local_code in held or row.local_code in today
        if row.status != "mapped":
            row.suggestions = [s for s in matcher.suggest(row.local_name, 3) if s.code != row.national_code]
    order = {"unmapped": 0, "suspicious": 1, "mapped": 2}
    ordered = sorted(rows.values(), key=lambda r: (order[r.status], not r.pending, r.local_code))
    return ordered, national


def coverage(rows: list[DepartmentRow], dictionary: CodeDictionary | None = None) -> dict[str, int]:
    held, today = pending_codes(dictionary or dictionary_named())
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


def resolve_national(dictionary: CodeDictionary, text: str) -> str:
    """A national code typed by hand: the code itself, "code name" as the autocomplete offers it, or a
    name (exact, or the only dictionary name containing it). ConfigurationError names what is ambiguous."""
    text = " ".join((text or "").split())
    if not text:
        raise ConfigurationError(f"请选择{dictionary.mapping.national_label}代码")
    codes = dictionary.codes()
    first = text.split(" ")[0]
    if first in codes:
        return first
    if first.upper() in codes:
        return first.upper()
    if first.isascii() and first == text:
        return first  # looks like a code: the plugin's own check names what is wrong with it
    name = text
    exact = [code for code, meaning in codes.items() if meaning == name]
    if len(exact) == 1:
        return exact[0]
    containing = [code for code, meaning in codes.items() if name in meaning]
    if len(containing) == 1:
        return containing[0]
    if containing:
        shown = "、".join(f"{c} {codes[c]}" for c in containing[:6])
        raise ConfigurationError(f"「{name}」对应多个{dictionary.mapping.national_label}：{shown}"
                                 f"{' 等' if len(containing) > 6 else ''}，请输入代码或从列表中选择")
    raise ConfigurationError(f"「{text}」不是{dictionary.mapping.national_label}的代码或名称，请从列表中选择")


def apply_mapping(local_code: str, local_name: str, national_code: str | None, *, how: str,
                  dictionary: CodeDictionary | None = None) -> dict[str, Any]:
    """Map one local code (national_code None: unmap) with an audit entry, in one commit."""
    dictionary = dictionary or dictionary_named()
    existing = dictionary.mapping.mappings().get(local_code)
    before = {"national_code": existing.national_code, "local_name": existing.local_name} if existing else None
    dictionary.mapping.save(local_code, local_name, national_code, _actor())
    after = {"dictionary": dictionary.name, "national_code": national_code, "local_name": local_name, "how": how}
    audit.record("department.map" if national_code else "department.unmap", local_code, before=before, after=after)
    db.session.commit()
    if national_code:  # its held-back records are sent now (core.scheduler re-plans the slots that held them)
        from core.scheduler import request_held_back_replan

        for report_type in dictionary.mapping.held_by:
            request_held_back_replan(report_type, local_code)
    return after


# --- Excel import / export ---------------------------------------------------------------------------

def export_workbook(rows: list[DepartmentRow], dictionary: CodeDictionary | None = None) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    dictionary = dictionary or dictionary_named()
    book = Workbook()
    sheet = book.active
    sheet.title = f"{dictionary.mapping.local_label}对照"[:31]
    sheet.append(_header(dictionary))
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


def check_import(data: bytes, dictionary: CodeDictionary | None = None) -> ImportResult:
    """Validate every row of an uploaded workbook against the dictionary and the current mappings."""
    from openpyxl import load_workbook

    dictionary = dictionary or dictionary_named()
    header_expected = _header(dictionary)
    local_label, national_label = dictionary.mapping.local_label, dictionary.mapping.national_label
    result = ImportResult()
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:
        result.errors.append("文件不是有效的 Excel（.xlsx）文件：请使用“导出 Excel”得到的模板")
        return result
    sheet = book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = next(rows, None)
    if header is None or [_cell_text(h) for h in header[:3]] != list(header_expected[:3]):
        result.errors.append(f"第 1 行应为表头：{'、'.join(header_expected[:3])}（请使用导出的模板）")
        return result
    national = dictionary.codes()
    current = dictionary.mapping.mappings()
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
            problems.append(f"{local_label}代码为空")
        if not local_name:
            problems.append(f"{local_label}名称为空")
        if local_code in seen:
            problems.append(f"{local_label}代码 {local_code} 与第 {seen[local_code]} 行重复")
        elif local_code:
            seen[local_code] = number
        existing = current.get(local_code)
        if national_code and national_code not in national:
            problems.append(f"{national_label}代码 {national_code} 不在 {dictionary.name} 中")
        if not national_code and existing is not None and existing.national_code:
            problems.append(f"{national_label}代码为空（当前对照 {existing.national_code}；如需取消对照请在页面上操作）")
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


def apply_import(result: ImportResult, filename: str, dictionary: CodeDictionary | None = None) -> None:
    dictionary = dictionary or dictionary_named()
    actor = _actor()
    for change in result.changes:
        dictionary.mapping.save(change["local_code"], change["local_name"], change["after"], actor)
    audit.record("department.import", filename[:120], after={
        "dictionary": dictionary.name, "changed": len(result.changes), "unchanged": result.unchanged,
        "changes": [{k: c[k] for k in ("local_code", "before", "after")} for c in result.changes[:200]],
    })
    db.session.commit()
    if any(change["after"] for change in result.changes):
        from core.scheduler import request_held_back_replan

        for report_type in dictionary.mapping.held_by:
            request_held_back_replan(report_type)  # every slot that held a local code back


# --- views ---------------------------------------------------------------------------------------------
# Every page takes the dictionary as ``?dictionary=`` (forms: a hidden field); default: the first one.

def _requested() -> CodeDictionary:
    return dictionary_named(request.values.get("dictionary"))


def _page_context(dictionary: CodeDictionary) -> dict[str, Any]:
    return {"dictionary": dictionary, "dictionaries": mapped_dictionaries(), "header": _header(dictionary)}


@bp.get("/")
def index():
    from core.mapping import active_version

    mappings = []
    for dictionary in mapped_dictionaries():
        try:
            rows, _ = build_rows(dictionary=dictionary)
            mappings.append((dictionary, coverage(rows, dictionary)))
        except Exception as exc:  # one plugin's broken dictionary must not hide the others
            mappings.append((dictionary, {"error": str(exc)}))
    field_rows = [(name, rt.title, active_version(name)) for name, rt in sorted(registry().report_types.items())]
    regulators = sorted(registry().regulators.values(), key=lambda r: r.name)
    return render_template("config/index.html", mappings=mappings, field_rows=field_rows,
                           regulators=regulators)


@bp.get("/departments/")
def departments():
    warnings: list[str] = []
    try:
        dictionary = _requested()
        rows, national = build_rows(warnings, dictionary)
    except ConfigurationError as exc:
        return render_template("config/departments.html", error=str(exc), rows=[], national={}, cover={},
                               show="all", warnings=warnings, dictionary=None, dictionaries=[], header=())
    show = request.args.get("show", "all")
    shown = [r for r in rows if show == "all" or r.status == show or (show == "pending" and r.pending)]
    return render_template("config/departments.html", rows=shown, national=national,
                           cover=coverage(rows, dictionary), show=show, warnings=warnings, error=None,
                           labels=STATUS_LABELS, **_page_context(dictionary))


def _row_response(dictionary: CodeDictionary, local_code: str, message: str = "", category: str = "ok"):
    """The row re-rendered; the summary figures refresh on the deptChanged event."""
    rows, national = build_rows(dictionary=dictionary)
    row = next((r for r in rows if r.local_code == local_code), None)
    body = render_template("config/_department_row.html", r=row, national=national, message=message,
                           category=category, **_page_context(dictionary))
    return Response(body, headers={"HX-Trigger": "deptChanged"})


@bp.get("/departments/summary")
def department_summary():
    dictionary = _requested()
    rows, _ = build_rows(dictionary=dictionary)
    return render_template("config/_department_summary.html", cover=coverage(rows, dictionary),
                           **_page_context(dictionary))


@bp.post("/departments/map")
@require_role(Role.OPERATOR)
def map_department():
    dictionary = _requested()
    local_code = (request.form.get("local_code") or "").strip()
    local_name = (request.form.get("local_name") or "").strip()
    typed = (request.form.get("national_code") or "").strip()
    national_code = typed.split(" ")[0]
    how = request.form.get("how", "manual")[:20]
    error = None
    if not local_code or not local_name:
        error = f"缺少{dictionary.mapping.local_label}代码或名称"
    if error is None:
        try:
            national_code = resolve_national(dictionary, typed)
            apply_mapping(local_code, local_name, national_code, how=how, dictionary=dictionary)
        except ConfigurationError as exc:
            db.session.rollback()
            error = str(exc)
    message = error or f"已对照：{local_code} {local_name} → {national_code}"
    if request.headers.get("HX-Request"):
        return _row_response(dictionary, local_code, message, "error" if error else "ok")
    flash(message, "error" if error else "ok")
    return redirect(url_for("config.departments", show=request.form.get("show", "all"), dictionary=dictionary.name))


@bp.post("/departments/unmap")
@require_role(Role.OPERATOR)
def unmap_department():
    dictionary = _requested()
    local_code = (request.form.get("local_code") or "").strip()
    local_name = (request.form.get("local_name") or "").strip()
    apply_mapping(local_code, local_name, None, how="manual", dictionary=dictionary)
    message = f"已取消对照：{local_code} {local_name}"
    if request.headers.get("HX-Request"):
        return _row_response(dictionary, local_code, message)
    flash(message, "ok")
    return redirect(url_for("config.departments", dictionary=dictionary.name))


@bp.get("/departments/export.xlsx")
def export_departments():
    dictionary = _requested()
    rows, _ = build_rows(dictionary=dictionary)
    audit.record("department.export", f"{dictionary.name}：{len(rows)} 个代码", commit=True)
    filename = f"{dictionary.mapping.local_label}对照_{dictionary.name}_{clock.local_now():%Y%m%d_%H%M%S}.xlsx"
    return Response(export_workbook(rows, dictionary),
                    mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


@bp.post("/departments/import")
@require_role(Role.OPERATOR)
def import_departments():
    dictionary = _requested()
    upload = request.files.get("file")
    dry_run = request.form.get("action") != "apply"
    if upload is None or not upload.filename:
        flash("请选择要导入的 Excel 文件", "error")
        return redirect(url_for("config.departments", dictionary=dictionary.name))
    result = check_import(upload.read(), dictionary)
    applied = False
    if result.ok and not dry_run and result.changes:
        apply_import(result, upload.filename, dictionary)
        applied = True
    elif not result.ok:
        audit.record("department.import_rejected", upload.filename[:120],
                     after={"errors": len(result.errors), "first": result.errors[:5]}, commit=True)
    return render_template("config/department_import.html", result=result, dry_run=dry_run, applied=applied,
                           filename=upload.filename, **_page_context(dictionary)), (200 if result.ok else 422)
