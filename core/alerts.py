"""Alerts that reach people: rules evaluated once a minute (after the sweep, core.operations), messages
to e-mail (SMTP with STARTTLS or SSL), 企业微信 and 钉钉 group robots.

A rule fires once per subject (a report type, or the platform), reminds at most once per its window
while the condition holds, and sends one "resolved" message when it clears; every message is kept in
``AlertEvent`` with each channel's answer (the 告警历史 page).

Rules (``RULE_KINDS``):
    failed_slots      a report type's last N slots each failed (planning error, or a failed/rejected upload)
    failed_uploads    a report type's last N uploads all failed or were rejected
    slot_deadline     a slot of the last 24 hours not delivered N minutes after it fell due
    no_scheduler      no scheduler holds the leader lease
    no_worker         no worker heartbeat
    crypto_selftest   the SM2/SM3/SM4 self-test fails
    retry_backlog     more than N uploads wait for an automatic retry

A slot's uploads are those of its report type created between its Slot row and the next one (the
scheduler plans a slot's uploads right after recording it).

Robot payloads follow the platforms' documents: 企业微信 ``{"msgtype": "markdown", "markdown":
{"content": ...}}`` (or ``text``); 钉钉 ``{"msgtype": "markdown", "markdown": {"title", "text"}}`` (or
``text``) posted to the webhook with ``timestamp`` (ms) and ``sign`` = urlencode(Base64(HMAC-SHA256(
secret, "{timestamp}\\n{secret}"))) when a signing secret is set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

import requests
import sqlalchemy as sa

from core import clock
from core.alert_models import AlertChannel, AlertEvent, AlertRule, AlertState
from core.db import db
from core.errors import ConfigurationError
from core.models import Slot, Upload, UploadStatus

log = logging.getLogger("baosong.alerts")
FAILED = (UploadStatus.FAILED, UploadStatus.REJECTED)
DELIVERED = (UploadStatus.SUCCEEDED, UploadStatus.CANCELLED)
SEND_TIMEOUT = 10.0
LOCK_KEY = "baosong:alerts:evaluate"
DEADLINE_LOOKBACK = timedelta(hours=24)


@dataclass(frozen=True)
class RuleKind:
    label: str
    per_report_type: bool
    threshold_label: str | None  # None: the rule takes no number
    default_threshold: int = 1


RULE_KINDS = {
    "failed_slots": RuleKind("报表连续多个时段失败", True, "连续失败时段数", 2),
    "failed_uploads": RuleKind("报表连续多条上报失败", True, "连续失败条数", 3),
    "slot_deadline": RuleKind("时段超时未送达", True, "应送达时限（分钟）", 30),
    "no_scheduler": RuleKind("调度进程无主控", False, None),
    "no_worker": RuleKind("没有在线工作进程", False, None),
    "crypto_selftest": RuleKind("加密自检失败", False, None),
    "retry_backlog": RuleKind("待重试积压过多", False, "积压条数上限", 100),
}

CHANNEL_KINDS = {"email": "电子邮件（SMTP）", "wecom": "企业微信群机器人", "dingtalk": "钉钉群机器人"}
SMTP_SECURITY = {"starttls": "STARTTLS（587）", "ssl": "SSL/TLS（465）", "none": "不加密（仅限内网）"}
ROBOT_MSGTYPES = ("markdown", "text")


# --- channel secrets (sealed like regulator secrets) ------------------------------------------------

def channel_secrets(channel: AlertChannel) -> dict[str, str]:
    from core.secrets import register_secret_for_logs
    from core.settings import secret_box

    values = json.loads(secret_box().open(channel.secret)) if channel.secret else {}
    for value in secret_parts(values):  # masked in any log line of this process from now on
        register_secret_for_logs(value)
    return values


def secret_parts(secrets: dict[str, str]) -> list[str]:
    """Every secret value and, for webhook addresses, each query value (the robot's key or access_token
    appears alone in error messages such as "Max retries exceeded with url: /send?key=...")."""
    parts = [v for v in secrets.values() if v]
    for value in list(parts):
        if value.startswith(("http://", "https://")):
            query = urllib.parse.urlsplit(value).query
            parts += [v for _, v in urllib.parse.parse_qsl(query) if len(v) >= 4]
    return parts


def set_channel_secrets(channel: AlertChannel, values: dict[str, str]) -> None:
    from core.secrets import register_secret_for_logs
    from core.settings import secret_box

    kept = {k: v for k, v in values.items() if v}
    for value in secret_parts(kept):
        register_secret_for_logs(value)
    channel.secret = secret_box().seal(json.dumps(kept)) if kept else ""


# --- sending ---------------------------------------------------------------------------------------

def _truncate(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 6].decode("utf-8", "ignore") + "……"


def wecom_payload(title: str, text: str, msgtype: str = "markdown") -> dict:
    """企业微信群机器人: markdown content at most 4096 bytes, text at most 2048."""
    if msgtype == "text":
        return {"msgtype": "text", "text": {"content": _truncate(f"{title}\n{text}", 2048)}}
    return {"msgtype": "markdown", "markdown": {"content": _truncate(f"**{title}**\n{text}", 4096)}}


def dingtalk_payload(title: str, text: str, msgtype: str = "markdown") -> dict:
    if msgtype == "text":
        return {"msgtype": "text", "text": {"content": _truncate(f"{title}\n{text}", 18000)}}
    return {"msgtype": "markdown", "markdown": {"title": title[:64],
                                                "text": _truncate(f"### {title}\n\n{text}", 18000)}}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """钉钉 加签: Base64(HMAC-SHA256(key=secret, "{timestamp}\\n{secret}")), URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def dingtalk_url(webhook: str, secret: str | None, timestamp_ms: int | None = None) -> str:
    if not secret:
        return webhook
    timestamp_ms = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    joiner = "&" if "?" in webhook else "?"
    return f"{webhook}{joiner}timestamp={timestamp_ms}&sign={dingtalk_sign(secret, timestamp_ms)}"


def _post_robot(url: str, payload: dict) -> str:
    answer = requests.post(url, json=payload, timeout=SEND_TIMEOUT)
    if answer.status_code != 200:
        raise ConfigurationError(f"机器人接口返回 HTTP {answer.status_code}")
    try:
        body = answer.json()
    except ValueError:
        raise ConfigurationError("机器人接口的应答不是 JSON") from None
    if body.get("errcode") != 0:
        raise ConfigurationError(f"机器人接口拒绝：errcode={body.get('errcode')} {body.get('errmsg', '')}")
    return "已送达（errcode=0）"


def _send_email(config: dict, secrets: dict, title: str, text: str) -> str:
    recipients = [r.strip() for r in config.get("recipients", []) if r.strip()]
    if not recipients or not config.get("host") or not config.get("sender"):
        raise ConfigurationError("邮件通道缺少 SMTP 服务器、发件人或收件人")
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = title, config["sender"], ", ".join(recipients)
    message.set_content(text)
    security = config.get("security", "starttls")
    context = ssl.create_default_context(cafile=config.get("ca_file") or None)
    port = int(config.get("port") or (465 if security == "ssl" else 587))
    if security == "ssl":
        server = smtplib.SMTP_SSL(config["host"], port, timeout=SEND_TIMEOUT, context=context)
    else:
        server = smtplib.SMTP(config["host"], port, timeout=SEND_TIMEOUT)
    with server:
        if security == "starttls":
            server.starttls(context=context)
        if config.get("username"):
            server.login(config["username"], secrets.get("password", ""))
        server.send_message(message)
    return f"已发送给 {len(recipients)} 个收件人"


def send(channel: AlertChannel, title: str, text: str) -> tuple[bool, str]:
    """Deliver one message through one channel; (ok, what happened) — never raises, never shows a secret."""
    from core.secrets import redact

    secrets: dict[str, str] = {}
    try:
        secrets = channel_secrets(channel)
        config = channel.config or {}
        msgtype = config.get("msgtype", "markdown")
        if channel.kind == "email":
            return True, _send_email(config, secrets, title, text)
        if not secrets.get("webhook"):
            raise ConfigurationError("未设置机器人 Webhook 地址")
        if channel.kind == "wecom":
            return True, _post_robot(secrets["webhook"], wecom_payload(title, text, msgtype))
        if channel.kind == "dingtalk":
            url = dingtalk_url(secrets["webhook"], secrets.get("sign_secret"))
            return True, _post_robot(url, dingtalk_payload(title, text, msgtype))
        raise ConfigurationError(f"未知的通道类型 {channel.kind}")
    except (ConfigurationError, OSError, smtplib.SMTPException, requests.RequestException, ValueError) as exc:
        detail = str(exc) if isinstance(exc, ConfigurationError) else f"{type(exc).__name__}: {exc}"
        return False, redact(detail, secret_parts(secrets)) or ""


def broadcast(kind: str, title: str, text: str, *, rule: AlertRule | None = None, subject: str = "",
              channels: list[AlertChannel] | None = None) -> AlertEvent:
    """Send to every enabled channel (or the given ones) and record the event. The caller commits."""
    if channels is None:
        channels = list(db.session.scalars(sa.select(AlertChannel).where(AlertChannel.enabled.is_(True))
                                           .order_by(AlertChannel.id)))
    deliveries = []
    for channel in channels:
        ok, detail = send(channel, title, text)
        deliveries.append({"channel": channel.name, "kind": channel.kind, "ok": ok, "detail": detail})
        if not ok:
            log.warning("alert channel %s failed: %s", channel.name, detail)
    event = AlertEvent(rule_id=rule.id if rule else None, subject=subject, kind=kind, title=title[:200],
                       text=text, deliveries=deliveries)
    db.session.add(event)
    return event


def send_test(channel: AlertChannel) -> AlertEvent:
    now = clock.local_now()
    return broadcast("test", "【报送】测试消息",
                     f"这是一条来自报送平台的测试消息（{now:%Y-%m-%d %H:%M:%S %z}）。收到即表示通道「{channel.name}」配置正确。",
                     channels=[channel])


# --- conditions ------------------------------------------------------------------------------------

def _title(report_type: str) -> str:
    from core.plugins import registry

    declared = registry().report_types.get(report_type)
    return f"{declared.title}（{report_type}）" if declared else report_type


def _report_types(rule: AlertRule, *, scheduled: bool) -> list[str]:
    from core.plugins import registry

    if rule.report_type:
        return [rule.report_type]
    return sorted(name for name, rt in registry().report_types.items() if rt.cron or not scheduled)


def _local(moment: datetime) -> str:
    return f"{clock.from_db(moment).astimezone(clock.default_timezone()):%m-%d %H:%M}"


def _slot_upload_statuses(slot: Slot, next_created: datetime | None) -> list[str]:
    query = sa.select(Upload.status).where(Upload.report_type == slot.report_type,
                                           Upload.created_at >= slot.created_at)
    if next_created is not None:
        query = query.where(Upload.created_at < next_created)
    return list(db.session.scalars(query))


def _recent_slots(report_type: str, limit: int, since: datetime | None = None) -> list[tuple[Slot, datetime | None]]:
    """Recent slots (not skipped), newest first, each with the next slot's created_at."""
    query = sa.select(Slot).where(Slot.report_type == report_type).order_by(Slot.id.desc())
    rows = list(db.session.scalars(query.limit(limit + 50)))
    out: list[tuple[Slot, datetime | None]] = []
    next_created: datetime | None = None
    for slot in rows:
        if slot.status != "skipped" and (since is None or slot.slot_at >= since):
            out.append((slot, next_created))
        next_created = slot.created_at
        if len(out) >= limit:
            break
    return out


def _failed_slots(rule: AlertRule, now: datetime) -> dict[str, str]:
    firing = {}
    for report_type in _report_types(rule, scheduled=True):
        slots = _recent_slots(report_type, rule.threshold)
        if len(slots) < rule.threshold:
            continue
        failed = [s for s, nxt in slots if s.status == "error"
                  or any(st in FAILED for st in _slot_upload_statuses(s, nxt))]
        if len(failed) == len(slots):
            firing[report_type] = (f"{_title(report_type)} 最近 {len(slots)} 个时段均失败"
                                   f"（{_local(slots[-1][0].slot_at)} 起，最新 {_local(slots[0][0].slot_at)}）")
    return firing


def _failed_uploads(rule: AlertRule, now: datetime) -> dict[str, str]:
    firing = {}
    for report_type in _report_types(rule, scheduled=False):
        latest = list(db.session.execute(
            sa.select(Upload.id, Upload.status, Upload.last_code, Upload.last_message)
            .where(Upload.report_type == report_type, Upload.status.in_((*FAILED, UploadStatus.SUCCEEDED)))
            .order_by(Upload.id.desc()).limit(rule.threshold)))
        if len(latest) == rule.threshold and all(row.status in FAILED for row in latest):
            from core.masking import mask_text

            code = f"代码 {latest[0].last_code}：" if latest[0].last_code else ""
            message = mask_text((latest[0].last_message or "")[:200]) or ""
            firing[report_type] = (f"{_title(report_type)} 最近 {rule.threshold} 条上报均失败；"
                                   f"最新 #{latest[0].id} {code}{message}")
    return firing


def _slot_deadline(rule: AlertRule, now: datetime) -> dict[str, str]:
    firing = {}
    due_before = clock.utc_naive(now - timedelta(minutes=rule.threshold))
    since = clock.utc_naive(now - DEADLINE_LOOKBACK)
    for report_type in _report_types(rule, scheduled=True):
        late = []
        for slot, nxt in _recent_slots(report_type, 200, since=since):
            if slot.slot_at > due_before:
                continue
            statuses = _slot_upload_statuses(slot, nxt)
            if slot.status == "error" or any(st not in DELIVERED for st in statuses):
                late.append(slot)
        if late:
            firing[report_type] = (f"{_title(report_type)} 有 {len(late)} 个时段超过 {rule.threshold} 分钟未送达"
                                   f"（最早 {_local(late[-1].slot_at)}）")
    return firing


def _health_rule(name: str, text: str):
    def condition(rule: AlertRule, now: datetime) -> dict[str, str]:
        from core import health

        if name == "crypto":
            check = health.crypto_check()
        else:
            check = health.checks()[name]
        return {} if check.ok else {"": f"{text}：{check.detail}"}

    return condition


def _retry_backlog(rule: AlertRule, now: datetime) -> dict[str, str]:
    count = db.session.scalar(sa.select(sa.func.count(Upload.id)).where(Upload.status == UploadStatus.RETRY_WAIT))
    return {"": f"待重试积压 {count} 条，超过上限 {rule.threshold}"} if count > rule.threshold else {}


CONDITIONS = {
    "failed_slots": _failed_slots,
    "failed_uploads": _failed_uploads,
    "slot_deadline": _slot_deadline,
    "no_scheduler": _health_rule("scheduler", "调度进程无主控"),
    "no_worker": _health_rule("workers", "没有在线的工作进程"),
    "crypto_selftest": _health_rule("crypto", "加密自检失败"),
    "retry_backlog": _retry_backlog,
}


def rule_label(rule: AlertRule) -> str:
    kind = RULE_KINDS.get(rule.kind)
    if kind is None:
        return rule.kind
    scope = (_title(rule.report_type) if rule.report_type else "全部报表") if kind.per_report_type else ""
    number = f"，{kind.threshold_label} {rule.threshold}" if kind.threshold_label else ""
    return f"{kind.label}{'（' + scope + number + '）' if scope else ('（' + number[1:] + '）' if number else '')}"


def validate_rule(kind: str, report_type: str | None, threshold: int, window_minutes: int) -> None:
    from core.plugins import registry

    if kind not in RULE_KINDS:
        raise ConfigurationError(f"未知的告警规则 {kind}")
    if report_type and report_type not in registry().report_types:
        raise ConfigurationError(f"未知的报表类型 {report_type}")
    if RULE_KINDS[kind].threshold_label and not 1 <= threshold <= 100000:
        raise ConfigurationError(f"{RULE_KINDS[kind].threshold_label}应在 1 到 100000 之间")
    if not 1 <= window_minutes <= 7 * 24 * 60:
        raise ConfigurationError("提醒间隔应在 1 分钟到 7 天之间")


# --- evaluation ------------------------------------------------------------------------------------

def evaluate(now: datetime | None = None) -> list[AlertEvent]:
    """Evaluate every enabled rule once and send what changed (fired, reminder due, resolved).
    Called after each sweep; one evaluation at a time across processes (a Redis lock)."""
    from core.health import redis_connection

    lock = None
    try:
        lock = redis_connection().lock(LOCK_KEY, timeout=300, blocking_timeout=0)
        if not lock.acquire(blocking=False):
            return []
    except Exception:  # Redis down: evaluate anyway (the no_scheduler/no_worker rules must still fire)
        lock = None
    try:
        return _evaluate(now or clock.now())
    finally:
        if lock is not None:
            try:
                lock.release()
            except Exception:
                pass


def _evaluate(now: datetime) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    stamp = clock.utc_naive(now)
    for rule in db.session.scalars(sa.select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)).all():
        condition = CONDITIONS.get(rule.kind)
        if condition is None:
            continue
        try:
            firing = condition(rule, now)
        except Exception as exc:
            log.exception("alert rule %s could not be evaluated", rule.id)
            db.session.rollback()
            firing = {"": f"告警规则无法评估：{type(exc).__name__}"}
        states = {s.subject: s for s in db.session.scalars(sa.select(AlertState).filter_by(rule_id=rule.id))}
        for subject in sorted(set(firing) | {s for s, st in states.items() if st.firing}):
            state = states.get(subject)
            if state is None:
                state = AlertState(rule_id=rule.id, subject=subject, firing=False)
                db.session.add(state)
            label = rule_label(rule)
            if subject in firing:
                message = firing[subject]
                window = timedelta(minutes=rule.window_minutes)
                if not state.firing:
                    state.firing, state.since, state.last_sent_at = True, stamp, stamp
                    events.append(broadcast("firing", f"【报送告警】{label}", message, rule=rule, subject=subject))
                elif state.last_sent_at is None or stamp - state.last_sent_at >= window:
                    state.last_sent_at = stamp
                    since = _local(state.since) if state.since else ""
                    events.append(broadcast("reminder", f"【报送告警·持续】{label}", f"{message}\n（自 {since} 起持续）",
                                            rule=rule, subject=subject))
                state.message = message
            else:
                state.firing, state.last_sent_at = False, stamp
                since = _local(state.since) if state.since else ""
                events.append(broadcast("resolved", f"【报送恢复】{label}",
                                        f"已恢复：{state.message or label}（自 {since} 起，持续至 {_local(stamp)}）",
                                        rule=rule, subject=subject))
            db.session.commit()
    return events
