"""The audit trail of every change and manual action (who, when, what, before/after).

Blueprints call ``record(...)`` next to the change they make; the entry joins the caller's transaction,
so a change and its audit entry are committed (or rolled back) together.
"""

from __future__ import annotations

from typing import Any

from flask import g, has_request_context

from core.db import db
from core.models import AuditLog


def current_actor() -> str:
    if has_request_context():
        user = getattr(g, "user", None)
        if user is not None:
            return user.username
    return "system"


def record(action: str, target: str = "", before: Any = None, after: Any = None, *,
           actor: str | None = None, commit: bool = False) -> AuditLog:
    """Add an audit entry to the session (committed with the caller's change, or now with commit=True).
    Never pass secrets or unmasked patient identifiers in before/after."""
    entry = AuditLog(actor=actor or current_actor(), action=action, target=str(target)[:200],
                     before=before, after=after)
    db.session.add(entry)
    if commit:
        db.session.commit()
    return entry


ACTION_LABELS = {
    "login": "登录",
    "login_locked": "登录锁定",
    "logout": "退出",
    "user.create": "新建用户",
    "user.update": "修改用户",
    "user.password": "修改密码",
    "upload.retry": "重试上报",
    "upload.resend": "更新重发",
    "upload.withdraw": "撤回上报",
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
