"""Planning IHS uploads: incremental reads in (update time, key) order, validation against the
interface's schema, the call order, and batches cut by rows and by body size.

Call order. Each row names the records it depends on: by field (``catalogue.Step.requires``, e.g. an
A2000 order's ``deptCode`` and ``docCode``) and by the optional ``_requires`` column (an attachment's
owner). Each requirement is resolved through the entity index (``models.Entity``: which planned upload
carries ``department:0101``) to a (report type, business key) and becomes the plan's ``depends_on``,
so the core never sends the batch before those uploads succeeded; ``plugin.build_payload`` checks the
same again before anything leaves. A row whose prerequisite has not been planned yet stops the read
there: the planned-through position stays before it and the next run tries again, so nothing is
skipped and nothing is sent out of order. Requirements on steps whose interface the document copy
lacks (处方, 电子病历 …) cannot be resolved or sent; they are left out and listed in the admin.

The entity rows are added to the session that records the plans, so they are committed in the same
transaction as the uploads (``core.ledger.record_plans``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from core import ledger
from core.db import db
from core.errors import ConfigurationError
from core.hook_types import Problem, ReportType, Settings, UploadPlan

from . import catalogue, gate, protocol
from .models import Entity

log = logging.getLogger("baosong.ihs")

QUERY = "rows"
PROCESS_QUERY = "process"
START_TS = "1900-01-01 00:00:00"
PAGE_SIZE = 2000
HIDDEN_PREFIX = "_"
AFTER_KEY = "_after"  # kept in the ledger rows: the requirements ("step:key") build_payload re-checks
_INT_WIDTH = 20


@dataclass(frozen=True)
class Position:
    ts: str
    key: Any

    def is_after(self, other: Position) -> bool:
        if self.ts != other.ts:
            return self.ts > other.ts
        if other.key is None:
            return self.key is not None
        return self.key is not None and self.key > other.key

    def text(self) -> str:
        if self.key is None:
            return f"{self.ts}|"
        if isinstance(self.key, int) and not isinstance(self.key, bool):
            return f"{self.ts}|i:{self.key:0{_INT_WIDTH}d}"
        return f"{self.ts}|s:{self.key}"

    @classmethod
    def parse(cls, text: str) -> Position:
        ts, _, key = text.partition("|")
        if key.startswith("i:"):
            return cls(ts, int(key[2:]))
        return cls(ts, key[2:] if key else None)


def watermark_name(code: str) -> str:
    return f"ihs.{code}.planned"


def positive_int(settings: Settings, key: str, default: int) -> int:
    raw = settings.get(key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"设置 {key} 应为正整数，实际为 {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"设置 {key} 应为正整数，实际为 {value}")
    return value


def batch_limits(interface: catalogue.Interface, settings: Settings) -> tuple[int, int | None]:
    """(rows, body bytes) per request: the settings, never above the document's hard limits."""
    rows = positive_int(settings, "batch_size", protocol.DEFAULT_BATCH_ROWS)
    if rows > protocol.HARD_MAX_ROWS:
        raise ConfigurationError(f"每批条数 batch_size 最多 {protocol.HARD_MAX_ROWS}（文档 1.3：限制一次不超过 10000 条）")
    if interface.multipart:
        return 1, None  # 2.1.2: one file per request; the 30 MB limit does not apply
    mb = positive_int(settings, "max_request_mb", 30)
    if mb > 30:
        raise ConfigurationError("单次请求上限 max_request_mb 最多 30（修改记录 1.1.8：单次请求数据限制为 30MB）")
    return min(rows, interface.batch_limit), mb * 1024 * 1024


def check_ready(settings: Settings) -> None:
    missing = [label for key, label in (("base_url", "接口地址 base_url"), ("appid", "appid"),
                                        ("app_secret", "签名密钥 app_secret"), ("hosp_id", "本院医疗机构 id hosp_id"))
               if not settings.get(key).strip()]
    if missing:
        raise ConfigurationError("互联网医疗监管设置不完整，缺少：" + "、".join(missing))


def _text_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def wire_value(value: Any) -> Any:
    """A database value in the document's forms: decimals as numbers, YYYY-MM-DD HH24:MI:SS times."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, bytes):
        return value.hex()
    return value


def clean(row: dict[str, Any]) -> dict[str, Any]:
    """1.3 item 3: empty optional values are left out."""
    return {k: wire_value(v) for k, v in row.items() if v is not None and v != ""}


def as_sent(interface: catalogue.Interface, row: dict[str, Any], uptime_text: str) -> dict[str, Any]:
    """The record as it goes on the wire. A0001 (multipart): the file's bytes (kept as hex in the
    ledger), with the form's own ``uptime`` and ``data`` = "" (2.1.2)."""
    if not interface.multipart:
        return row
    try:
        content = bytes.fromhex(str(row.get("fileUpload", "")))
    except ValueError:
        content = row.get("fileUpload")  # reported by the schema as not binary
    return {**row, "fileUpload": content, "uptime": uptime_text, "data": ""}


def planned_through(code: str, settings: Settings) -> Position:
    mark = ledger.watermark(watermark_name(code))
    if mark:
        return Position.parse(mark)
    since = settings.get("initial_since").strip()
    return Position(since, None) if since else Position(START_TS, None)


def fetch(report_type: ReportType, source, after: Position, until: str, max_rows: int) \
        -> list[tuple[Position, dict[str, Any]]]:
    out: list[tuple[Position, dict[str, Any]]] = []
    while len(out) < max_rows:
        limit = min(PAGE_SIZE, max_rows - len(out))
        page = source.query(report_type, QUERY, after_ts=after.ts, after_id=after.key, until=until, limit=limit)
        for raw in page:
            row = dict(raw)
            try:
                position = Position(_text_time(row.pop("_wm_ts")), row.pop("_wm_id"))
            except KeyError:
                raise ConfigurationError(f"{report_type.title} 的查询须返回 _wm_ts 和 _wm_id 两列") from None
            if not position.is_after(after):
                raise ConfigurationError(f"{report_type.title} 的查询没有按 (_wm_ts, _wm_id) 升序返回水位之后的记录")
            after = position
            out.append((position, row))
        if len(page) < limit:
            break
    return out


def _attach_process(report_type: ReportType, source, start: Position, until: str,
                    fetched: list[tuple[Position, dict[str, Any]]]) -> None:
    """A2001: the Q&A lines of each service, nested as ``process``."""
    if PROCESS_QUERY not in report_type.queries:
        return
    lines: dict[str, list[dict[str, Any]]] = {}
    for raw in source.query(report_type, PROCESS_QUERY, after_ts=start.ts, after_id=start.key, until=until):
        line = dict(raw)
        lines.setdefault(str(line.pop("_parent")), []).append(clean(line))
    for _, row in fetched:
        found = lines.get(str(row.get("orderId")))
        if found:
            row["process"] = found


NATIONAL_DEPARTMENTS = "CT08.00.002"
DEPARTMENT_STEPS = ("department", "staff", "revisit_order")  # rows whose deptCode names a department


def department_codes(settings: Settings) -> dict[str, str] | None:
    """local -> national department codes when the settings ask for CT08.00.002 (the mapping kept in
    配置管理 › 代码对照), None for the hospital's own codes."""
    source = settings.get("dept_code_source", "local").strip()
    if source == "local":
        return None
    if source != NATIONAL_DEPARTMENTS:
        raise ConfigurationError(f"科室编码来源 dept_code_source 应为 local 或 {NATIONAL_DEPARTMENTS}")
    from core.plugins import registry

    dictionary = registry().dictionaries.get(NATIONAL_DEPARTMENTS)
    if dictionary is None or dictionary.mapping is None:
        raise ConfigurationError(f"没有插件提供 {NATIONAL_DEPARTMENTS} 科室对照，无法按国家科室代码上报")
    return {local: m.national_code for local, m in dictionary.mapping.mappings().items() if m.national_code}


def map_department(interface: catalogue.Interface, row: dict[str, Any], codes: dict[str, str] | None) \
        -> Problem | None:
    if codes is None or interface.step not in DEPARTMENT_STEPS or "deptCode" not in row:
        return None
    national = codes.get(str(row["deptCode"]))
    if national is None:
        return Problem("deptCode", f"科室 {row['deptCode']} 未对照到 {NATIONAL_DEPARTMENTS}（配置管理 › 代码对照）")
    row["deptCode"] = national
    return None


def requirements(interface: catalogue.Interface, row: dict[str, Any], hidden: dict[str, Any],
                 settings: Settings) -> list[str]:
    """The records ('step:key') this row needs accepted before it is sent."""
    needed: list[str] = []
    for step, field in catalogue.active_requirements(interface.step):
        value = settings.get("hosp_id") if field == catalogue.OWN_HOSPITAL else row.get(field)
        if value not in (None, ""):
            needed.append(f"{step}:{value}")
    present = {i.step for i in catalogue.interfaces()}
    for item in str(hidden.get(catalogue.REQUIRES_COLUMN) or "").split(","):
        step, _, key = item.strip().partition(":")
        if step in present and key:
            needed.append(f"{step}:{key}")
    return list(dict.fromkeys(needed))


def carrier(requirement: str) -> tuple[str, str] | None:
    """The latest planned upload carrying a record, as (report type, business key)."""
    step, _, key = requirement.partition(":")
    found = db.session.execute(
        sa.select(Entity.report_type, Entity.business_key).where(Entity.step == step, Entity.entity_key == key)
        .order_by(Entity.id.desc()).limit(1)
    ).first()
    return (found[0], found[1]) if found else None


def batch_key(code: str, first: Position, end: Position) -> str:
    key = f"{code}:{first.text()}..{end.text()}"
    if len(key) > 200:
        key = f"{code}:{hashlib.sha1(first.text().encode()).hexdigest()[:16]}..{end.text()}"[:200]
    return key


def plan(report_type: ReportType, slot: datetime, source, settings: Settings) -> list[UploadPlan]:
    interface = catalogue.by_report_type(report_type.name)
    check_ready(settings)
    gate.require_open(settings)  # nothing is planned (and nothing moves) while the gate is closed
    max_rows, max_bytes = batch_limits(interface, settings)
    max_read = positive_int(settings, "max_rows_per_run", 100000)
    after = planned_through(interface.code, settings)
    until = slot.astimezone(ZoneInfo(report_type.timezone)).strftime("%Y-%m-%d %H:%M:%S")
    fetched = fetch(report_type, source, after, until, max_read)
    if not fetched:
        return []
    _attach_process(report_type, source, after, until, fetched)

    codes = department_codes(settings)
    held_back: list[Problem] = []
    ready: list[tuple[Position, dict[str, Any], list[str], list[tuple[str, str]]]] = []
    last_read: Position | None = None  # the planned-through position: stops before a waiting row
    waiting: str | None = None
    waiting_row: dict[str, Any] = {}
    for index, (position, raw) in enumerate(fetched):
        hidden = {k: v for k, v in raw.items() if k.startswith(HIDDEN_PREFIX)}
        row = clean({k: v for k, v in raw.items() if not k.startswith(HIDDEN_PREFIX)})
        unmapped = map_department(interface, row, codes)
        if unmapped is not None:
            unmapped.record_index, unmapped.record_key = index, str(row.get(interface.key_field) or "") or None
            held_back.append(unmapped)
            last_read = position
            continue
        needed = requirements(interface, row, hidden, settings)
        carriers = [carrier(n) for n in needed]
        if any(c is None for c in carriers):
            waiting = next(n for n, c in zip(needed, carriers, strict=True) if c is None)
            waiting_row = row
            break
        last_read = position
        problems = interface.schema.validate(as_sent(interface, row, "2000-01-01 00:00:00"), index=index)
        if problems:
            key = row.get(interface.key_field)
            for problem in problems:
                problem.record_key = None if key in (None, "") else str(key)
            held_back.extend(problems)
            continue
        ready.append((position, row, needed, [c for c in carriers if c is not None]))
    notice = _waiting_notice(report_type.name, interface, waiting, waiting_row) if waiting else None
    _clear_waiting_notices(report_type.name, _waiting_reason(waiting) if waiting else None)
    if waiting:
        log.warning("%s: waiting for %s to be planned before reading on", report_type.name, waiting)
    if last_read is None:
        return [UploadPlan(business_key=f"{interface.code}:waiting", period=fetched[0][0].ts, rows=None,
                           held_back=[notice])] if notice else []

    cut = protocol.cut_batches([row for _, row, _, _ in ready], max_rows, max_bytes)
    for index, size in cut.oversized:
        row = ready[index][1]
        held_back.append(Problem(None, f"单条记录请求体 {size} 字节，超过上限 {max_bytes} 字节，无法发送",
                                 record_key=str(row.get(interface.key_field) or "") or None))
    plans: list[UploadPlan] = []
    for indexes in cut.batches:
        items = [ready[i] for i in indexes]
        first, end = items[0][0], items[-1][0]
        business_key = batch_key(interface.code, first, end)
        rows = [{**row, AFTER_KEY: needed} if needed else row for _, row, needed, _ in items]
        depends = sorted({c for *_, carriers in items for c in carriers})
        keys = [str(row.get(interface.key_field)) for _, row, _, _ in items]
        plans.append(UploadPlan(business_key=business_key, period=f"{first.ts} ~ {end.ts}", rows=rows,
                                search_keys=keys[:20], depends_on=depends))
        _index_entities(interface, report_type.name, business_key, keys)
    if not plans:
        plans.append(UploadPlan(business_key=batch_key(f"{interface.code}:held", fetched[0][0], last_read),
                                period=f"{fetched[0][0].ts} ~ {last_read.ts}", rows=None))
    plans[-1].watermark = (watermark_name(interface.code), last_read.text())
    plans[-1].held_back = held_back + ([notice] if notice else [])
    log.info("%s: %d rows read, %d batches, %d problems held back, planned through %s%s", report_type.name,
             len(fetched), len(cut.batches), len(held_back), last_read.ts, f" (waiting for {waiting})" if waiting else "")
    return plans


def _waiting_notice(report_type: str, interface: catalogue.Interface, waiting: str,
                    row: dict[str, Any]) -> Problem | None:
    """A held-back notice for the first row waiting on a prerequisite nobody planned yet (shown on the
    dashboard), recorded once until resolved: the row is read again on every run until it can go."""
    from core.models import HeldBack

    reason = _waiting_reason(waiting)
    record_key = str(row.get(interface.key_field) or "") or None
    exists = db.session.execute(
        sa.select(HeldBack.id).where(HeldBack.report_type == report_type, HeldBack.reason == reason,
                                     HeldBack.resolved.is_(False)).limit(1)
    ).first()
    return None if exists else Problem(None, reason, record_key=record_key)


WAITING_NOTICE = "等待前置数据："


def _waiting_reason(waiting: str) -> str:
    step, _, key = waiting.partition(":")
    title = catalogue.STEP_BY_NAME[step].title if step in catalogue.STEP_BY_NAME else step
    return f"{WAITING_NOTICE}{title} {key} 尚未计划上报（文档 1.3 接口调用顺序），其后的记录暂缓，前置数据计划后自动继续"


def _clear_waiting_notices(report_type: str, still_waiting: str | None) -> None:
    """Resolve the waiting notices of this report type that no longer hold (the prerequisite is planned
    now and the read went past it); the one still true, if any, stays on the dashboard."""
    from core.models import HeldBack

    condition = [HeldBack.report_type == report_type, HeldBack.resolved.is_(False),
                 HeldBack.reason.startswith(WAITING_NOTICE)]
    if still_waiting is not None:
        condition.append(HeldBack.reason != still_waiting)
    db.session.execute(sa.update(HeldBack).where(*condition).values(resolved=True))


def _index_entities(interface: catalogue.Interface, report_type: str, business_key: str, keys: list[str]) -> None:
    exists = db.session.execute(
        sa.select(Entity.id).where(Entity.report_type == report_type, Entity.business_key == business_key).limit(1)
    ).first()
    if exists:  # the same batch planned again: the ledger skips it, and so do we
        return
    for key in dict.fromkeys(keys):
        db.session.add(Entity(step=interface.step, entity_key=key[:128], report_type=report_type,
                              business_key=business_key))
