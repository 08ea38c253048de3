"""The audit trail of every change and manual action (who, when, what, before/after).

Blueprints call ``record(...)`` next to the change they make; the entry joins the caller's transaction,
so a change and its audit entry are committed (or rolled back) together.

An entry never holds a secret: before it is stored, every value that equals or contains a regulator's
secret (or one this process has read) is masked, and ID-number and phone shaped numbers are masked
(callers pass masked patient data anyway).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import g, has_request_context

from core.db import db
from core.masking import mask_text
from core.models import AuditLog, RegulatorSetting
from core.secrets import RedactingFilter, redact

log = logging.getLogger("baosong.web.audit")


def current_actor() -> str:
    if has_request_context():
        user = getattr(g, "user", None)
        if user is not None:
            return user.username
    return "system"


def record(action: str, target: str = "", before: Any = None, after: Any = None, *,
           actor: str | None = None, commit: bool = False) -> AuditLog:
    """Add an audit entry to the session (committed with the caller's change, or now with commit=True).
    Never pass secrets or unmasked patient identifiers in before/after (they are masked here too)."""
    secrets = known_secrets()
    entry = AuditLog(actor=actor or current_actor(), action=action, target=scrub(str(target), secrets)[:200],
                     before=scrub(before, secrets), after=scrub(after, secrets))
    db.session.add(entry)
    if commit:
        db.session.commit()
    return entry


def known_secrets() -> list[str]:
    """Every stored regulator secret, and those this process has read (for masking)."""
    from core.settings import secret_box

    found = set(RedactingFilter.secrets)
    try:
        with db.session.no_autoflush:
            rows = db.session.execute(db.select(RegulatorSetting.value).filter_by(secret=True)).scalars().all()
        for stored in rows:
            try:
                value = secret_box().open(stored)
            except Exception:  # a secret sealed with another key: nothing to compare against
                continue
            if value:
                found.add(value)
    except Exception:
        log.exception("could not read the stored secrets to keep them out of the audit log")
    return sorted(found)


def scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` (JSON-like) with secrets and ID/phone shaped numbers masked."""
    if isinstance(value, str):
        return mask_text(redact(value, secrets)) or value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return value


ACTION_LABELS = {
    "patient.unmasked_view": "查看未脱敏患者信息",
    "regulator.settings": "修改监管平台设置",
    "regulator.test": "测试连接",
    "regulator.sm4_profile": "应用 SM4 参数",
    "regulator.known_answer": "密钥核对",
    "security.patient_roles": "修改可见患者信息的角色",
    "login": "登录",
    "login_locked": "登录锁定",
    "logout": "退出",
    "user.create": "新建用户",
    "user.update": "修改用户",
    "user.password": "修改密码",
    "upload.retry": "重试上报",
    "upload.resend": "更新重发",
    "upload.withdraw": "撤回上报",
    "upload.reverse": "冲销并重传",
    "upload.action": "上报操作",
    "upload.cancel": "取消上报",
    "upload.export": "导出 Excel",
    "retry.bulk": "批量重试",
    "retry.bulk_stop": "停止批量重试",
    "retry.auto_stop": "自动重试开关",
    "task.pause": "暂停任务",
    "task.resume": "恢复任务",
    "task.run_now": "立即执行",
    "task.cron": "修改计划",
    "task.backfill": "补传",
    "heldback.resolve": "处理暂缓记录",
    "heldback.resend": "补报暂缓记录",
    "task.replan": "重新计划",
    "department.map": "科室对照",
    "department.import": "导入科室对照",
    "department.import_rejected": "科室对照导入被拒绝",
    "department.export": "导出科室对照",
    "field_mapping.save": "保存字段映射",
    "field_mapping.restore": "恢复字段映射版本",
    "field_mapping.reset": "恢复插件默认映射",
    "patient.unmask": "查看完整患者信息",
    "filing.create": "新建备案",
    "filing.update": "修改备案",
    "filing.approve": "医师审核通过",
    "filing.reject": "医师审核驳回",
    "filing.submit": "提交备案",
    "filing.revoke": "撤销备案",
    "catalogue.import": "导入目录",
    "catalogue.export": "导出目录",
    "catalogue.download": "下载目录",
    "platform.flags": "修改平台参数",
    "retention.prune": "清理过期报文",
    "alert.channel": "保存告警通道",
    "alert.channel_delete": "删除告警通道",
    "alert.test": "发送测试消息",
    "alert.rule": "保存告警规则",
    "alert.rule_delete": "删除告警规则",
    "settings.flag": "命令行修改平台参数",
    "settings.unset": "命令行清除设置",
}

# Families of actions, for an action recorded by a plugin that has no label of its own yet: the admin
# never sees a raw identifier such as "filing.sheet".
ACTION_GROUPS = {
    "login": "登录", "user": "用户", "upload": "上报", "retry": "重试", "task": "定时任务", "heldback": "暂缓记录",
    "department": "科室对照", "field_mapping": "字段映射", "regulator": "监管平台配置", "platform": "平台参数",
    "alert": "告警", "patient": "患者信息", "filing": "备案", "catalogue": "目录", "settings": "配置",
}


def all_labels() -> dict[str, str]:
    """The admin's own action names and those the plugins declare (hook ``register_audit_actions``)."""
    from core.plugins import registry

    try:
        plugin_labels = registry().audit_action_labels()
    except Exception:  # a broken plugin must not take the audit page down
        plugin_labels = {}
    return {**plugin_labels, **ACTION_LABELS}


def action_label(action: str, labels: dict[str, str] | None = None) -> str:
    """The Chinese name of an audit action; an unknown one is named by its family ("备案：其他操作")."""
    labels = all_labels() if labels is None else labels
    if action in labels:
        return labels[action]
    family = action.split(".", 1)[0]
    return f"{ACTION_GROUPS[family]}：其他操作" if family in ACTION_GROUPS else "其他操作"


def action_choices(seen: list[str]) -> list[tuple[str, str]]:
    """Every labelled action plus any action found in the log, for the 操作 filter."""
    labels = all_labels()
    keys = list(labels) + sorted(a for a in set(seen) if a not in labels)
    return [(key, action_label(key, labels)) for key in keys]
