"""配置管理 › 字段映射配置: per report type, how each interface field is filled from the hospital's rows
(core.mapping), validated against the interface's field schema, previewed on real data for a chosen
period (the plugin's own planning and payload code, recording nothing), versioned (every save is a
version with author, time and comment), compared field by field and restored."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from core import clock
from core.db import db
from core.errors import UnknownReportType
from core.mapping import (
    CONVERSIONS,
    KINDS,
    LOOKUPS,
    RULE_KEYS,
    MappingError,
    active_version,
    clean_rule,
    codes_text,
    compare,
    describe,
    get_version,
    preview,
    registered_dictionaries,
    restore,
    restore_plugin_default,
    save_version,
    validate,
    versions,
)
from core.plugins import registry
from web import audit
from web.auth import require_role
from web.helpers import shown_document
from web.models import Role

bp = Blueprint("config_fields", __name__, url_prefix="/config/fields")
BLANK_ROWS = 3


def _report_type_or_404(name: str):
    try:
        return registry().report_type(name)
    except UnknownReportType:
        abort(404)


def _actor() -> str:
    user = getattr(g, "user", None)
    return user.username if user is not None else "system"


def rules_from_form(form) -> list[dict[str, Any]]:
    """rules-<i>-<key> fields as rule dicts; rows without a target or marked for deletion are dropped."""
    indices = sorted({int(k.split("-")[1]) for k in form if k.startswith("rules-") and k.split("-")[1].isdigit()})
    rules = []
    for i in indices:
        raw = {key: form.get(f"rules-{i}-{key}", "") for key in RULE_KEYS}
        if form.get(f"rules-{i}-delete") or not (raw.get("target") or "").strip():
            continue
        rules.append(raw)
    return rules


def _editor_rows(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [dict(r, codes=codes_text(r.get("codes")) if isinstance(r.get("codes"), dict) else r.get("codes", ""))
            for r in rules]
    return rows + [{} for _ in range(BLANK_ROWS)]


def default_slot(report_type) -> datetime:
    """The most recent slot of the report type's schedule (now for event-driven ones)."""
    tz = ZoneInfo(report_type.timezone)
    now = clock.now().astimezone(tz)
    if report_type.cron:
        return croniter(report_type.cron, now).get_prev(datetime)
    return now.replace(second=0, microsecond=0)


def _parse_slot(text: str, report_type) -> datetime:
    tz = ZoneInfo(report_type.timezone)
    try:
        return datetime.fromisoformat(text).replace(tzinfo=tz) if text else default_slot(report_type)
    except ValueError:
        raise MappingError(f"时间「{text}」格式不正确") from None


def _context(report_type, rules: list[dict[str, Any]], **extra) -> dict[str, Any]:
    current = active_version(report_type.name)
    schema = report_type.schema
    return dict(
        rt=report_type, current=current, history=versions(report_type.name), rows=_editor_rows(rules),
        fields=list(schema.fields) if schema is not None else [], queries=list(report_type.queries),
        kinds=KINDS, conversions=CONVERSIONS, lookups=LOOKUPS, dictionaries=registered_dictionaries(),
        slot=default_slot(report_type).strftime("%Y-%m-%dT%H:%M"), describe=describe, **extra,
    )


@bp.get("/")
def index():
    listing = [(name, rt, active_version(name)) for name, rt in sorted(registry().report_types.items())]
    return render_template("config/fields_index.html", listing=listing)


@bp.get("/<report_type>")
def edit(report_type: str):
    rt = _report_type_or_404(report_type)
    current = active_version(rt.name)
    rules = list(current.rules or []) if current else []
    return render_template("config/fields_edit.html", issues=validate(rt, rules), **_context(rt, rules))


@bp.post("/<report_type>/validate")
def check(report_type: str):
    rt = _report_type_or_404(report_type)
    return render_template("config/_field_issues.html", issues=validate(rt, rules_from_form(request.form)))


@bp.post("/<report_type>/preview")
def show_preview(report_type: str):
    rt = _report_type_or_404(report_type)
    try:
        slot = _parse_slot(request.form.get("slot", ""), rt)
        rules = rules_from_form(request.form) if request.form.get("use") == "form" else None
        if rules is not None:
            rules = [clean_rule(r) for r in rules]
        result = preview(rt.name, slot, rules)
    except MappingError as exc:
        return render_template("config/_field_preview.html", result=None, error=str(exc))

    def shown(value: Any) -> str:
        return shown_document(json.dumps(value, ensure_ascii=False, default=str), rt.name)

    return render_template("config/_field_preview.html", result=result, error=result.error, shown=shown,
                           unsaved=rules is not None)


@bp.post("/<report_type>/save")
@require_role(Role.ADMIN)
def save(report_type: str):
    rt = _report_type_or_404(report_type)
    rules = rules_from_form(request.form)
    comment = (request.form.get("comment") or "").strip()
    try:
        cleaned = [clean_rule(r) for r in rules]
        errors = [i for i in validate(rt, cleaned) if i.level == "error"]
        if errors:
            raise MappingError("；".join(f"{i.target}: {i.message}" if i.target else i.message for i in errors))
        if not comment:
            raise MappingError("请填写修改说明")
        before = active_version(rt.name)
        row = save_version(rt.name, cleaned, _actor(), comment)
        audit.record("field_mapping.save", rt.name, before={"version": before.version if before else None},
                     after={"version": row.version, "comment": comment, "rules": len(cleaned)})
        db.session.commit()
    except MappingError as exc:
        db.session.rollback()
        flash(f"未保存：{exc}", "error")
        return render_template("config/fields_edit.html", issues=validate(rt, rules), comment=comment,
                               **_context(rt, rules)), 422
    flash(f"已保存为 v{row.version}，下一次上报起使用", "ok")
    return redirect(url_for("config_fields.edit", report_type=rt.name))


@bp.get("/<report_type>/versions/<int:version>")
def show_version(report_type: str, version: int):
    rt = _report_type_or_404(report_type)
    row = get_version(rt.name, version)
    if row is None:
        abort(404)
    return render_template("config/field_version.html", rt=rt, v=row, describe=describe,
                           current=active_version(rt.name))


@bp.get("/<report_type>/compare")
def compare_versions(report_type: str):
    rt = _report_type_or_404(report_type)
    try:
        a, b = int(request.args.get("a", "")), int(request.args.get("b", ""))
    except ValueError:
        flash("请选择两个版本进行比较", "error")
        return redirect(url_for("config_fields.edit", report_type=rt.name))
    old, new = get_version(rt.name, min(a, b)), get_version(rt.name, max(a, b))
    if old is None or new is None:
        abort(404)
    return render_template("config/field_compare.html", rt=rt, old=old, new=new,
                           diff=compare(old.rules or [], new.rules or []), keys=RULE_KEYS, describe=describe)


@bp.post("/<report_type>/restore")
@require_role(Role.ADMIN)
def restore_version(report_type: str):
    rt = _report_type_or_404(report_type)
    try:
        version = int(request.form.get("version", ""))
        before = active_version(rt.name)
        row = restore(rt.name, version, _actor(), (request.form.get("comment") or "").strip())
        audit.record("field_mapping.restore", rt.name, before={"version": before.version if before else None},
                     after={"version": row.version, "restored_from": version})
        db.session.commit()
    except (MappingError, ValueError) as exc:
        db.session.rollback()
        flash(f"未恢复：{exc}", "error")
        return redirect(url_for("config_fields.edit", report_type=rt.name))
    flash(f"已恢复 v{version}（保存为新版本 v{row.version}），下一次上报起使用", "ok")
    return redirect(url_for("config_fields.edit", report_type=rt.name))


@bp.post("/<report_type>/reset")
@require_role(Role.ADMIN)
def restore_default(report_type: str):
    rt = _report_type_or_404(report_type)
    try:
        before = active_version(rt.name)
        row = restore_plugin_default(rt.name, _actor())
        audit.record("field_mapping.reset", rt.name, before={"version": before.version if before else None},
                     after={"version": row.version, "rules": 0})
        db.session.commit()
    except MappingError as exc:
        db.session.rollback()
        flash(f"未恢复：{exc}", "error")
        return redirect(url_for("config_fields.edit", report_type=rt.name))
    flash(f"已恢复插件默认映射（保存为 v{row.version}，不含任何规则），下一次上报起使用；"
          f"需要时可在版本历史中恢复 v{before.version}", "ok")
    return redirect(url_for("config_fields.edit", report_type=rt.name))
