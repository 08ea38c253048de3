"""Admin page of the IHS plugin (blueprint ``bp``, url_prefix ``/ihs``): the known-answer gate (the
vendor's worked example, verification, "which recipe is this?"), the interfaces with their state
(可发送 / 签名未验证 / 文档缺失) and the call order.

Registered through ``plugin.register_blueprints``. Everyone signed in may look; entering the example,
verifying and adopting a recipe are admin actions (they decide what is signed with the key), audited.
The example's key is write-only like every secret.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for

from core import ledger
from core import settings as core_settings
from core.db import db
from core.hook_types import AdminPages, NavEntry
from core.models import Upload
from plugins.ihs_supervision import catalogue, gate, planning, recipes
from web import audit
from web.auth import can, require_role
from web.models import Role

bp = Blueprint("ihs", __name__, url_prefix="/ihs", template_folder="templates")
PAGES = AdminPages(bp, nav=(NavEntry("互联网监管", "ihs.index"),))
MAX_DATA = 200000


def _settings():
    return core_settings.regulator_settings(gate.REGULATOR)


def interface_rows(state: gate.GateState) -> list[dict]:
    """Every step of the document in call order with its interfaces and their state."""
    counts: dict[str, dict[str, int]] = {}
    for report_type, status, n in db.session.execute(
            sa.select(Upload.report_type, Upload.status, sa.func.count()).where(Upload.report_type.like("ihs.%"))
            .group_by(Upload.report_type, Upload.status)):
        counts.setdefault(report_type, {})[status] = n
    rows = []
    for position, step in enumerate(catalogue.STEPS, start=1):
        found = catalogue.of_step(step.name)
        requires = [catalogue.STEP_BY_NAME[s].title for s, _ in step.requires]
        if not found:
            rows.append({"position": position, "step": step, "code": "—", "path": "—", "report_type": None,
                         "status": "文档缺失", "ok": False, "requires": requires, "counts": {}, "planned": None})
            continue
        for item in found:
            mark = ledger.watermark(planning.watermark_name(item.code))
            rows.append({"position": position, "step": step, "code": item.code, "path": item.path,
                         "report_type": item.report_type, "status": "可发送" if state.open else "签名未验证，拒绝发送",
                         "ok": state.open, "requires": requires, "counts": counts.get(item.report_type, {}),
                         "planned": planning.Position.parse(mark).ts if mark else None,
                         "truncated": bool(item.raw.get("truncated"))})
    return rows


def _page(proposals=None):
    settings = _settings()
    state = gate.state(settings)
    try:
        configured, problem = recipes.from_settings(settings.values), None
    except recipes.RecipeError as exc:
        configured, problem = None, str(exc)
    return render_template("ihs/index.html", state=state, record=gate.record(), configured=configured,
                           recipe_problem=problem, rows=interface_rows(state), missing=catalogue.missing_steps(),
                           proposals=proposals, can_admin=can(Role.ADMIN),
                           recipe_count=sum(1 for _ in recipes.candidates()), MISSING_NOTE=catalogue.MISSING_NOTE)


@bp.get("/")
@require_role(Role.VIEWER)
def index():
    return _page()


@bp.post("/example")
@require_role(Role.ADMIN)
def save_example():
    values = {name: request.form.get(name, "") for name in gate.EXAMPLE_FIELDS}
    if len(values["data"]) > MAX_DATA:
        flash(f"示例 data 过长（最多 {MAX_DATA} 字符）", "error")
        return redirect(url_for("ihs.index"))
    missing = [name for name in ("appid", "service", "randomstr", "uptime", "expected_sign") if not values[name].strip()]
    key = request.form.get("key") or None
    if gate.record() is None and not key:
        missing.append("key")
    if missing:
        flash("示例不完整，缺少：" + "、".join(missing), "error")
        return redirect(url_for("ihs.index"))
    gate.save_example(values, key, audit.current_actor())
    audit.record("ihs.example", gate.REGULATOR, after={k: v for k, v in values.items() if k != "data"}
                 | {"data_chars": len(values["data"]), "key_changed": key is not None})
    db.session.commit()
    flash("示例已保存；签名门禁在验证通过前保持关闭", "success")
    return redirect(url_for("ihs.index"))


@bp.post("/verify")
@require_role(Role.ADMIN)
def verify():
    state = gate.verify(_settings(), audit.current_actor())
    audit.record("ihs.verify", gate.REGULATOR, after={"open": state.open, "reason": state.reason,
                                                      "recipe": state.recipe.id if state.recipe else None})
    db.session.commit()
    flash(("验证通过：" if state.open else "验证未通过：") + state.reason, "success" if state.open else "error")
    return redirect(url_for("ihs.index"))


@bp.post("/search")
@require_role(Role.ADMIN)
def search():
    """"Which recipe is this?": every assumed recipe tried against the stored example."""
    if gate.record() is None:
        flash("请先录入厂商提供的签名示例", "error")
        return redirect(url_for("ihs.index"))
    return _page(proposals=gate.search())


def _configured(settings):
    try:
        return recipes.from_settings(settings.values)
    except recipes.RecipeError:
        return None


@bp.post("/apply")
@require_role(Role.ADMIN)
def apply():
    fields = {key: request.form.get(key, "") for key in recipes.SignRecipe().settings()}
    try:
        recipe = recipes.from_settings(fields)
    except recipes.RecipeError as exc:
        flash(f"签名方案无效：{exc}", "error")
        return redirect(url_for("ihs.index"))
    if recipe is None:
        flash("未选择摘要算法", "error")
        return redirect(url_for("ihs.index"))
    before = _configured(_settings())
    for key, value in recipe.settings().items():
        core_settings.save_regulator_setting(gate.REGULATOR, key, value)
    audit.record("ihs.recipe", gate.REGULATOR, before=before.id if before else None, after=recipe.id)
    db.session.commit()
    flash(f"已采用签名方案 {recipe.describe()}；请点击“验证”以开启发送", "success")
    return redirect(url_for("ihs.index"))
