"""Small things several pages share: report type names, masking for the viewer's role, Redis that may be
down."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import TypeVar

from flask import g

from core.masking import PATIENT_FIELDS, mask_field, mask_record, mask_text
from core.plugins import registry

log = logging.getLogger("baosong.web")
T = TypeVar("T")
REDIS_DOWN = "Redis 不可用：{what}未能同步到队列/调度器（数据库中的记录已保存，Redis 恢复后由清扫任务补上）"


def safe_back(value: str | None, default: str) -> str:
    """A same-site path to return to from a form's ``back`` field (no open redirects): the login's
    ``next=`` rule (``web.auth.safe_next``), so ``/%09/evil`` or a line break is refused here too."""
    from web.auth import safe_next

    return safe_next(value) or default


def report_type_title(name: str) -> str:
    report_type = registry().report_types.get(name)
    return report_type.title if report_type else name


def report_type_choices() -> list[tuple[str, str]]:
    return [(name, f"{rt.title}（{name}）") for name, rt in sorted(registry().report_types.items())]


def regulator_of(report_type: str) -> str:
    declared = registry().report_types.get(report_type)
    return declared.regulator if declared else "?"


def regulator_title(name: str) -> str:
    regulator = registry().regulators.get(name)
    return regulator.title if regulator else name


def sees_patient_identifiers() -> bool:
    """Whether the signed-in user's role may see patient identifiers in full (``web.permissions``).
    A True answer marks the request, and the response is audited as an unmasked view."""
    from web.permissions import may_see_patient_identifiers

    user = getattr(g, "user", None)
    # Decided once per request and user (a page asks for every row it masks; the roles flag is a query).
    # Keyed by the user object, which each request loads anew: an app context may outlive a request.
    decided = g.get("sees_patient_identifiers")
    if decided is None or decided[0] is not user:
        decided = g.sees_patient_identifiers = (user, bool(user and may_see_patient_identifiers(user.role)))
    allowed = decided[1]
    if allowed:
        g.unmasked_view = True
    return allowed


def patient_fields_of(report_type: str) -> frozenset[str]:
    declared = registry().report_types.get(report_type)
    schema = getattr(declared, "schema", None)
    extra = schema.patient_fields() if schema is not None and hasattr(schema, "patient_fields") else frozenset()
    return PATIENT_FIELDS | extra


def _mask_xml(text: str, fields: frozenset[str]) -> str:
    names = "|".join(re.escape(f) for f in sorted(fields, key=len, reverse=True))
    pattern = re.compile(rf"<({names})>([^<]*)</\1>", re.IGNORECASE)
    return pattern.sub(lambda m: f"<{m.group(1)}>{mask_field(m.group(1), m.group(2))}</{m.group(1)}>", text)


def shown_document(text: str | None, report_type: str, *, pretty: bool = True) -> str:
    """A payload/response/row document as this user may see it: patient identifiers masked unless admin;
    JSON pretty-printed."""
    if text in (None, ""):
        return ""
    admin = sees_patient_identifiers()
    fields = patient_fields_of(report_type)
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except (ValueError, TypeError):
        value = None
    if isinstance(value, dict | list):
        if not admin:
            value = mask_record(value, fields)
        return json.dumps(value, ensure_ascii=False, indent=2 if pretty else None)
    text = str(text)
    return text if admin else mask_text(_mask_xml(text, fields))


def shown_text(text: str | None) -> str:
    """Free text (messages, tracebacks, business keys): ID-number and phone shaped numbers masked."""
    if not text:
        return text or ""
    return text if sees_patient_identifiers() else (mask_text(text) or "")


def redis_call(what: str, func: Callable[[], T], warnings: list[str] | None = None) -> T | None:
    """Run a Redis-touching call; if Redis is down, note a warning instead of failing the page."""
    try:
        return func()
    except Exception as exc:  # redis.ConnectionError, TimeoutError, socket errors, rq errors
        log.warning("redis call for %s failed: %s", what, exc)
        if warnings is not None:
            warnings.append(REDIS_DOWN.format(what=what))
        return None


def redis_ok() -> bool:
    from core.queue import connection

    try:
        return bool(connection().ping())
    except Exception:
        return False


def regulator_statuses(report_type_names) -> dict[str, dict]:
    """{report type: {"ok", "message", "url", "regulator"}} for report types whose plugin says it cannot
    send now (hook ``regulator_status``): shown on the dashboard and the task list."""
    from flask import url_for

    from core import settings as core_settings
    from core.plugins import registry

    reg = registry()
    by_regulator: dict[str, dict | None] = {}
    out: dict[str, dict] = {}
    for name in report_type_names:
        report_type = reg.report_types.get(name)
        if report_type is None:
            continue
        regulator = report_type.regulator
        if regulator not in by_regulator:
            status = reg.regulator_status(regulator, core_settings.regulator_settings(regulator))
            if status is None or status.ok:
                by_regulator[regulator] = None
            else:
                try:
                    url = url_for(status.endpoint) if status.endpoint else None
                except Exception:  # an endpoint the plugin did not register
                    url = None
                title = reg.regulators[regulator].title if regulator in reg.regulators else regulator
                by_regulator[regulator] = {"ok": False, "message": status.message, "url": url, "regulator": title}
        if by_regulator[regulator] is not None:
            out[name] = by_regulator[regulator]
    return out
