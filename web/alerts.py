"""配置管理 › 告警通知: alert channels (e-mail, 企业微信, 钉钉 robots) and rules, for admins, audited;
发送测试消息 per channel; the alert history. Evaluation and sending live in core.alerts.

Channel secrets (SMTP password, robot webhook address — its key/access_token is a credential —, the
钉钉 signing secret) are sealed at rest and write-only here: an empty field keeps the stored value."""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from core import alerts
from core.alert_models import AlertChannel, AlertEvent, AlertRule, AlertState
from core.db import db
from core.errors import ConfigurationError
from web import audit
from web.auth import require_role
from web.helpers import report_type_choices
from web.models import Role

bp = Blueprint("config_alerts", __name__, url_prefix="/config/alerts")
SECRET_FIELDS = {"email": ("password",), "wecom": ("webhook",), "dingtalk": ("webhook", "sign_secret")}
HISTORY_PAGE = 100


def _channel_or_404(channel_id: int) -> AlertChannel:
    channel = db.session.get(AlertChannel, channel_id)
    if channel is None:
        abort(404)
    return channel


def _rule_or_404(rule_id: int) -> AlertRule:
    rule = db.session.get(AlertRule, rule_id)
    if rule is None:
        abort(404)
    return rule


def channel_config_from(kind: str, form) -> dict:
    """The non-secret part of a channel from the form, checked."""
    if kind == "email":
        recipients = [r for r in re.split(r"[\s,;，；]+", form.get("recipients", "")) if r]
        security = form.get("security", "starttls")
        if security not in alerts.SMTP_SECURITY:
            raise ConfigurationError("加密方式无效")
        port = (form.get("port") or "").strip()
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigurationError("端口应为 1–65535")
        if not form.get("host", "").strip() or not form.get("sender", "").strip() or not recipients:
            raise ConfigurationError("请填写 SMTP 服务器、发件人和至少一个收件人")
        if any("@" not in r for r in recipients):
            raise ConfigurationError("收件人应为电子邮件地址")
        return {"host": form.get("host", "").strip(), "port": port, "security": security,
                "username": form.get("username", "").strip(), "sender": form.get("sender", "").strip(),
                "recipients": recipients, "ca_file": form.get("ca_file", "").strip()}
    msgtype = form.get("msgtype", "markdown")
    if msgtype not in alerts.ROBOT_MSGTYPES:
        raise ConfigurationError("消息类型应为 markdown 或 text")
    return {"msgtype": msgtype}


def _summary(channel: AlertChannel) -> str:
    config = channel.config or {}
    if channel.kind == "email":
        return f"{config.get('host')}:{config.get('port') or '默认'} {alerts.SMTP_SECURITY.get(config.get('security'), '')}" \
               f" → {'、'.join(config.get('recipients', []))}"
    return f"消息类型 {config.get('msgtype', 'markdown')}"


@bp.get("/")
@require_role(Role.ADMIN)
def index():
    channels = list(db.session.scalars(sa.select(AlertChannel).order_by(AlertChannel.id)))
    rules = list(db.session.scalars(sa.select(AlertRule).order_by(AlertRule.id)))
    firing = list(db.session.scalars(sa.select(AlertState).where(AlertState.firing.is_(True))
                                     .order_by(AlertState.since)))
    set_secrets = {c.id: set(alerts.channel_secrets(c)) for c in channels}
    return render_template("ops/alerts.html", channels=channels, rules=rules, firing=firing,
                           rules_by_id={r.id: r for r in rules}, summary=_summary, set_secrets=set_secrets,
                           kinds=alerts.CHANNEL_KINDS, rule_kinds=alerts.RULE_KINDS, rule_label=alerts.rule_label,
                           report_types=report_type_choices(), security=alerts.SMTP_SECURITY)


@bp.get("/channels/new")
@require_role(Role.ADMIN)
def new_channel():
    kind = request.args.get("kind", "email")
    if kind not in alerts.CHANNEL_KINDS:
        abort(404)
    return render_template("ops/alert_channel.html", channel=None, kind=kind, kinds=alerts.CHANNEL_KINDS,
                           config={}, set_secrets=set(), security=alerts.SMTP_SECURITY)


@bp.get("/channels/<int:channel_id>")
@require_role(Role.ADMIN)
def edit_channel(channel_id: int):
    channel = _channel_or_404(channel_id)
    return render_template("ops/alert_channel.html", channel=channel, kind=channel.kind, kinds=alerts.CHANNEL_KINDS,
                           config=channel.config or {}, set_secrets=set(alerts.channel_secrets(channel)),
                           security=alerts.SMTP_SECURITY)


@bp.post("/channels")
@require_role(Role.ADMIN)
def save_channel():
    channel_id = request.form.get("channel_id", type=int)
    channel = _channel_or_404(channel_id) if channel_id else None
    kind = channel.kind if channel else request.form.get("kind", "")
    if kind not in alerts.CHANNEL_KINDS:
        abort(400)
    name = (request.form.get("name") or "").strip()[:80]
    try:
        if not name:
            raise ConfigurationError("请填写通道名称")
        config = channel_config_from(kind, request.form)
        secrets = alerts.channel_secrets(channel) if channel else {}
        replaced = []
        for key in SECRET_FIELDS[kind]:
            value = (request.form.get(key) or "").strip()
            if value:
                secrets[key] = value
                replaced.append(key)
        if request.form.get("clear_sign_secret") and kind == "dingtalk":
            secrets.pop("sign_secret", None)
            replaced.append("sign_secret")
        if kind in ("wecom", "dingtalk"):
            webhook = secrets.get("webhook", "")
            if not webhook.startswith(("https://", "http://")):
                raise ConfigurationError("请填写机器人的 Webhook 地址（https://…）")
    except ConfigurationError as exc:
        flash(str(exc), "error")
        return redirect(url_for("config_alerts.edit_channel", channel_id=channel.id) if channel
                        else url_for("config_alerts.new_channel", kind=kind))
    before = {"name": channel.name, "enabled": channel.enabled, "config": channel.config} if channel else None
    if channel is None:
        channel = AlertChannel(kind=kind)
        db.session.add(channel)
    channel.name, channel.config = name, config
    channel.enabled = request.form.get("enabled") == "1"
    alerts.set_channel_secrets(channel, secrets)
    db.session.flush()
    audit.record("alert.channel", f"{channel.id} {name}", before=before,
                 after={"name": name, "kind": kind, "enabled": channel.enabled, "config": config,
                        "secrets_replaced": replaced})
    db.session.commit()
    flash(f"已保存告警通道「{name}」", "ok")
    return redirect(url_for("config_alerts.index"))


@bp.post("/channels/<int:channel_id>/delete")
@require_role(Role.ADMIN)
def delete_channel(channel_id: int):
    channel = _channel_or_404(channel_id)
    audit.record("alert.channel_delete", f"{channel.id} {channel.name}", before={"kind": channel.kind})
    db.session.delete(channel)
    db.session.commit()
    flash("已删除告警通道", "ok")
    return redirect(url_for("config_alerts.index"))


@bp.post("/channels/<int:channel_id>/test")
@require_role(Role.ADMIN)
def test_channel(channel_id: int):
    channel = _channel_or_404(channel_id)
    event = alerts.send_test(channel)
    [delivery] = event.deliveries
    audit.record("alert.test", f"{channel.id} {channel.name}", after={"ok": delivery["ok"]})
    db.session.commit()
    flash(f"测试消息{'已发送' if delivery['ok'] else '发送失败'}：{delivery['detail']}", "ok" if delivery["ok"] else "error")
    return redirect(url_for("config_alerts.index"))


@bp.post("/rules")
@require_role(Role.ADMIN)
def save_rule():
    rule_id = request.form.get("rule_id", type=int)
    rule = _rule_or_404(rule_id) if rule_id else None
    kind = rule.kind if rule else request.form.get("kind", "")
    report_type = (request.form.get("report_type") or "").strip() or None
    threshold = request.form.get("threshold", type=int)
    window = request.form.get("window_minutes", type=int) or 60
    declared = alerts.RULE_KINDS.get(kind)
    if declared is not None and not declared.per_report_type:
        report_type = None
    if threshold is None:
        threshold = declared.default_threshold if declared else 1
    try:
        alerts.validate_rule(kind, report_type, threshold, window)
    except ConfigurationError as exc:
        flash(str(exc), "error")
        return redirect(url_for("config_alerts.index"))
    before = {"report_type": rule.report_type, "threshold": rule.threshold, "window_minutes": rule.window_minutes,
              "enabled": rule.enabled} if rule else None
    if rule is None:
        rule = AlertRule(kind=kind)
        db.session.add(rule)
    rule.report_type, rule.threshold, rule.window_minutes = report_type, threshold, window
    rule.enabled = request.form.get("enabled", "1") == "1"
    db.session.flush()
    audit.record("alert.rule", f"{rule.id} {kind}", before=before,
                 after={"report_type": report_type, "threshold": threshold, "window_minutes": window,
                        "enabled": rule.enabled})
    db.session.commit()
    flash(f"已保存告警规则：{alerts.rule_label(rule)}", "ok")
    return redirect(url_for("config_alerts.index"))


@bp.post("/rules/<int:rule_id>/delete")
@require_role(Role.ADMIN)
def delete_rule(rule_id: int):
    rule = _rule_or_404(rule_id)
    audit.record("alert.rule_delete", f"{rule.id} {rule.kind}", before={"label": alerts.rule_label(rule)})
    db.session.execute(sa.delete(AlertState).where(AlertState.rule_id == rule.id))
    db.session.delete(rule)
    db.session.commit()
    flash("已删除告警规则", "ok")
    return redirect(url_for("config_alerts.index"))


@bp.get("/history")
@require_role(Role.ADMIN)
def history():
    before_id = request.args.get("before", type=int)
    query = sa.select(AlertEvent).order_by(AlertEvent.id.desc()).limit(HISTORY_PAGE)
    if before_id:
        query = query.where(AlertEvent.id < before_id)
    events = list(db.session.scalars(query))
    return render_template("ops/alert_history.html", events=events,
                           more=events[-1].id if len(events) == HISTORY_PAGE else None)
