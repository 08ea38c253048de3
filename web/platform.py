"""配置管理 › 平台参数: the platform flags (retry interval and count, send lease, retention) for admins,
validated by core.settings (the same checks as ``baosong settings``), audited; and the retention
prune on demand (a count first, then a confirmed run)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from core import retention
from core import settings as core_settings
from core.db import db
from core.errors import ConfigurationError
from web import audit
from web.auth import require_role
from web.models import Role

bp = Blueprint("config_platform", __name__, url_prefix="/config/platform")
# The stop switch lives on the retry page (失败重试), next to what it stops.
EDITABLE = ("retry_interval_minutes", "retry_max", "send_lease_seconds", "retention_days")


@bp.get("/")
@require_role(Role.ADMIN)
def index():
    values = core_settings.flags()
    fields = [(name, core_settings.FLAG_SPECS[name], values[name], core_settings.FLAG_DEFAULTS[name])
              for name in EDITABLE]
    return render_template("ops/platform.html", fields=fields, preview=retention.prune(dry_run=True))


@bp.post("/")
@require_role(Role.ADMIN)
def save():
    current = core_settings.flags()
    changes, errors = {}, []
    for name in EDITABLE:
        if name not in request.form:
            continue
        try:
            value = core_settings.validate_flag(name, request.form.get(name, ""))
        except ConfigurationError as exc:
            errors.append(str(exc))
            continue
        if value != current[name]:
            changes[name] = value
    if errors:
        for error in errors:
            flash(error, "error")
        flash("未保存任何参数", "error")
        return redirect(url_for("config_platform.index"))
    for name, value in changes.items():
        core_settings.set_flag(name, value)
    if changes:
        audit.record("platform.flags", "platform", before={k: current[k] for k in changes}, after=changes)
    db.session.commit()
    flash("已保存（立即生效）" if changes else "没有修改", "ok")
    return redirect(url_for("config_platform.index"))


@bp.post("/prune")
@require_role(Role.ADMIN)
def prune():
    result = retention.prune()
    audit.record("retention.prune", "attempts", after={"attempts": result["attempts"], "days": result["days"]},
                 commit=True)
    flash(f"已清除 {result['attempts']} 次尝试的报文（{result['before']:%Y-%m-%d %H:%M} 之前）", "ok")
    return redirect(url_for("config_platform.index"))
