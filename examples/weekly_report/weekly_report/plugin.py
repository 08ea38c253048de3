"""An example plugin installed as its own package, using every hook of the plugin boundary:

* report types: ``weekly.outpatient_visits`` (the week's outpatient visits; declares a reversal, so the
  admin offers 冲销并重传) and ``weekly.department_groups`` (visits per department group), which
  depends on the same week's visits upload (``UploadPlan.depends_on``): the platform refuses a group
  detail for a week it has no total for, and Baosong never sends it first;
* its own tables (``models.py``) and migrations (``migrations/``, its own Alembic branch);
* an admin page and menu entry (``views.py``), an upload action (标记已核对), a connection probe,
  a code dictionary with a local mapping (WEEKLY.GROUP), demo HIS rows and a ``baosong`` command.

schedule -> payload -> HMAC-SM3 signature (core.crypto) -> post -> answer, as before.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import requests
import sqlalchemy as sa
from flask import Flask, jsonify, request

from core import clock
from core.crypto import hmac_sm3
from core.db import db
from core.hook_types import (
    CodeDictionary,
    LocalCode,
    LocalMapping,
    MappedCode,
    OutboundRequest,
    Outcome,
    Payload,
    ProbeResult,
    ProbeStep,
    Problem,
    Regulator,
    ReportType,
    Response,
    Sandbox,
    SettingField,
    UploadAction,
    UploadPlan,
)
from core.hookspecs import hookimpl
from weekly_report.models import WeeklyGroupMapping, WeeklyReceipt

REPORT = ReportType(
    name="weekly.outpatient_visits",
    title="门诊周报（示例插件）",
    regulator="weekly",
    cron="0 1 * * 1",
    catch_up="all",
    queries={
        "visits": "SELECT COUNT(*) AS visits FROM registrations "
        "WHERE visit_type = 'outpatient' AND status = 'valid' AND reg_time >= :start AND reg_time < :end",
    },
    reversal="weekly.outpatient_visits",  # the platform reverses a week with operation "delete"
)
DETAIL = ReportType(
    name="weekly.department_groups",
    title="门诊周报分组明细（示例插件）",
    regulator="weekly",
    cron="0 1 * * 1",
    catch_up="all",
    dictionaries=("WEEKLY.GROUP",),
    queries={
        "department_visits": "SELECT d.dept_code, d.dept_name, COUNT(*) AS visits FROM registrations r "
        "JOIN departments d ON d.dept_code = r.dept_code WHERE r.visit_type = 'outpatient' AND r.status = 'valid' "
        "AND r.reg_time >= :start AND r.reg_time < :end GROUP BY d.dept_code, d.dept_name ORDER BY d.dept_code",
        "departments": "SELECT dept_code, dept_name, active FROM departments ORDER BY dept_code",
    },
)
GROUPS = {"G1": "内科系统", "G2": "外科系统", "G3": "妇产与儿科", "G4": "中医与康复", "G9": "其他"}


@hookimpl
def register_regulators():
    return [Regulator("weekly", "周报平台（示例）", settings=(
        SettingField("url", "接口地址"),
        SettingField("org_code", "机构编码"),
        SettingField("sign_key", "签名密钥", secret=True),
    ))]


@hookimpl
def register_report_types():
    return [REPORT, DETAIL]


def _week(slot: datetime) -> tuple[datetime, datetime, str]:
    """The week that ended at the Monday 00:00 before this slot."""
    end = slot.replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=7)
    return start, end, f"{start:%Y-%m-%d}~{(end - timedelta(days=1)):%Y-%m-%d}"


@hookimpl
def schedule(report_type, slot, source, settings):
    start, end, week = _week(slot)
    fmt = "%Y-%m-%d %H:%M:%S"
    if report_type.name == DETAIL.name:
        rows = source.query(report_type, "department_visits", start=start.strftime(fmt), end=end.strftime(fmt))
        groups, held = group_visits(rows)
        return [UploadPlan(business_key=week, period=week, rows=[{"group": g, "visits": n} for g, n in groups],
                           held_back=held, depends_on=[(REPORT.name, week)])]
    rows = source.query(report_type, "visits", start=start.strftime(fmt), end=end.strftime(fmt))
    return [UploadPlan(business_key=week, period=week, rows=rows)]


def group_visits(rows: list[dict]) -> tuple[list[tuple[str, int]], list[Problem]]:
    """Sum visits per mapped group; departments not mapped yet are held back, never guessed."""
    mapped = stored_mappings()
    totals: dict[str, int] = {}
    held = []
    for row in rows:
        mapping = mapped.get(str(row["dept_code"]))
        if mapping is None or not mapping.national_code:
            held.append(Problem("group", f"科室 {row['dept_name']} 尚未对照周报分组", record_key=str(row["dept_code"])))
            continue
        totals[mapping.national_code] = totals.get(mapping.national_code, 0) + int(row["visits"])
    return sorted(totals.items()), held


@hookimpl
def build_payload(upload):
    record = {
        "orgCode": upload.settings.get("org_code"),
        "week": upload.period,
        "requestId": upload.idempotency_key,
        "operation": upload.operation,
    }
    if upload.report_type.name == DETAIL.name:
        record["groups"] = {row["group"]: int(row["visits"]) for row in upload.rows}
    else:
        record["visits"] = int(upload.rows[0]["visits"]) if upload.rows else 0
    return Payload(records=[record], document=record)


@hookimpl
def sign(upload, payload):
    body = json.dumps(payload.document, ensure_ascii=False, separators=(",", ":"))
    signature = hmac_sm3(upload.settings.get("sign_key").encode(), body.encode())
    return OutboundRequest(url=upload.settings.get("url"), body=body, plaintext=body,
                           headers={"Content-Type": "application/json", "X-Signature": signature},
                           secret_headers=frozenset())


@hookimpl
def parse_response(upload, response: Response):
    if response.status is None or response.status >= 500:
        return Outcome("retry", message=response.error or f"HTTP {response.status}")
    answer = json.loads(response.body)
    if answer.get("ok"):
        return Outcome("success", code="ok", message=answer.get("message", ""))
    return Outcome("reject", code=str(answer.get("code")), message=answer.get("message", ""))


@hookimpl
def upload_finished(upload, outcome):
    """Keep a receipt of each accepted week (the plugin's own table)."""
    if upload.report_type.name != REPORT.name or outcome.kind != "success" or upload.operation == "delete":
        return
    if db.session.query(WeeklyReceipt).filter_by(upload_id=upload.id).first() is None:
        db.session.add(WeeklyReceipt(upload_id=upload.id, week=upload.period,
                                     visits=int(upload.rows[0]["visits"]) if upload.rows else 0))
        db.session.commit()


# --- the plugin boundary hooks --------------------------------------------------------------------------

@hookimpl
def migrations_location():
    return str(Path(__file__).with_name("migrations"))


@hookimpl
def register_blueprints():
    from weekly_report.views import PAGES

    return [PAGES]


@hookimpl
def upload_actions(upload):
    if upload.report_type != REPORT.name or upload.operation == "delete":
        return []
    receipt = db.session.query(WeeklyReceipt).filter_by(upload_id=upload.id).first()
    if receipt is None:
        why = "尚未被周报平台接收"
    elif receipt.checked_by:
        why = f"已由 {receipt.checked_by} 核对"
    else:
        why = ""
    return [UploadAction("check", "标记已核对", handler=mark_checked, unavailable=why,
                         confirm="确认已与周报平台核对本周门诊人次？", done="已标记为已核对")]


def mark_checked(upload_id: int, actor: str) -> None:
    receipt = db.session.query(WeeklyReceipt).filter_by(upload_id=upload_id).first()
    if receipt is None:
        raise ValueError("尚未被周报平台接收，不能核对")
    receipt.checked_by, receipt.checked_at = actor, clock.utc_naive(clock.now())
    db.session.commit()


@hookimpl
def test_connection(regulator, settings):
    """A signed no-op (``/ping``) next to the report URL: reachability and the signing key in one call."""
    url = settings.get("url")
    if not url or not settings.get("sign_key"):
        return ProbeResult(False, "未配置接口地址或签名密钥", conclusive=False)
    ping = url.rsplit("/", 1)[0] + "/ping"
    body = b"ping"
    started = time.monotonic()
    try:
        answer = requests.post(ping, data=body, timeout=5,
                               headers={"X-Signature": hmac_sm3(settings.get("sign_key").encode(), body)})
    except requests.RequestException as exc:
        return ProbeResult(False, f"无法连接：{type(exc).__name__}", url=ping,
                           steps=(ProbeStep("连接", False, type(exc).__name__),))
    elapsed = round((time.monotonic() - started) * 1000)
    signed = answer.ok and answer.json().get("ok") is True
    steps = (ProbeStep("连接", True, f"HTTP {answer.status_code}"),
             ProbeStep("签名校验", signed, "平台接受签名" if signed else answer.text[:200]))
    return ProbeResult(signed, "周报平台应答正常，签名有效" if signed else "平台拒绝签名：请核对签名密钥",
                       url=ping, status=answer.status_code, elapsed_ms=elapsed, steps=steps)


def local_departments() -> list[LocalCode]:
    from core.scheduler import hospital_data

    return [LocalCode(str(r["dept_code"]), str(r["dept_name"]), r.get("active", 1) in (1, "1", True, None))
            for r in hospital_data().query(DETAIL, "departments")]


def stored_mappings() -> dict[str, MappedCode]:
    return {m.local_code: MappedCode(m.local_code, m.local_name, m.national_code, m.updated_by, m.updated_at)
            for m in db.session.query(WeeklyGroupMapping)}


def save_mapping(local_code: str, local_name: str, national_code: str | None, actor: str) -> None:
    from core.errors import ConfigurationError

    if national_code is not None and national_code not in GROUPS:
        raise ConfigurationError(f"分组代码 {national_code} 不在 WEEKLY.GROUP 中")
    row = db.session.query(WeeklyGroupMapping).filter_by(local_code=local_code).first()
    if row is None:
        row = WeeklyGroupMapping(local_code=local_code)
        db.session.add(row)
    row.local_name, row.national_code, row.updated_by = local_name, national_code, actor


@hookimpl
def register_dictionaries():
    return [CodeDictionary("WEEKLY.GROUP", "周报科室分组", codes=lambda: dict(GROUPS),
                           mapping=LocalMapping(local_codes=local_departments, mappings=stored_mappings,
                                                save=save_mapping, local_label="院内科室",
                                                national_label="周报分组", used_by="门诊周报分组明细使用"))]


@hookimpl
def seed_demo_hospital(connection, start, end):
    """A weekly outpatient target per Monday in the demo hospital (shown on the plugin's page)."""
    connection.exec_driver_sql("CREATE TABLE weekly_clinic_targets (week_start TEXT PRIMARY KEY, target INTEGER)")
    monday = start + timedelta(days=(7 - start.weekday()) % 7)
    rows = []
    while monday <= end:
        rows.append((monday.isoformat(), 1500 + 10 * (monday.toordinal() % 7)))
        monday += timedelta(days=7)
    if rows:  # named parameters, not the driver's own style: the demo HIS may be SQLite or PostgreSQL
        connection.execute(sa.text("INSERT INTO weekly_clinic_targets VALUES (:week_start, :target)"),
                           [{"week_start": week, "target": target} for week, target in rows])
    return {"weekly_clinic_targets": len(rows)}


@hookimpl
def register_commands(cli):
    import click

    @cli.command("weekly-receipts")
    def weekly_receipts():
        """List the weekly platform's accepted weeks (example plugin)."""
        from core.app import create_app

        with create_app().app_context():
            for receipt in db.session.query(WeeklyReceipt).order_by(WeeklyReceipt.week):
                click.echo(f"{receipt.week}  {receipt.visits}  {receipt.checked_by or '未核对'}")


def make_sandbox(config: dict) -> Flask:
    """The weekly platform: verifies the signature, keeps one record per week (requestId dedups), takes
    a group detail only for a week it has the total of, and reverses a week with operation "delete"."""
    app = Flask("weekly_sandbox")
    received: dict[str, dict] = {}
    details: dict[str, dict] = {}
    log: list[tuple[str, str, str]] = []  # (kind, operation, week) in arrival order
    app.config.update(RECEIVED=received, DETAILS=details, LOG=log)

    def signed(body: bytes) -> bool:
        return hmac_sm3(config.get("sign_key", "").encode(), body) == request.headers.get("X-Signature")

    @app.post("/ping")
    def ping():
        return jsonify(ok=signed(request.get_data()), message="pong")

    @app.post("/report")
    def report():
        body = request.get_data()
        if not signed(body):
            return jsonify(ok=False, code="SIGN", message="签名错误")
        record = json.loads(body)
        week, operation = record["week"], record.get("operation", "new")
        kind = "groups" if "groups" in record else "visits"
        log.append((kind, operation, week))
        if kind == "groups":
            if week not in received:
                return jsonify(ok=False, code="ORDER", message="请先上报该周汇总")
            details[week] = record
            return jsonify(ok=True, message="received")
        if operation == "delete":
            if week in received:
                del received[week]
            return jsonify(ok=True, message="reversed")
        previous = received.get(week)
        if previous and previous["requestId"] != record["requestId"]:
            return jsonify(ok=False, code="DUP", message="该周已上报")
        received[week] = record
        return jsonify(ok=True, message="received")

    @app.get("/_sandbox/records")
    def records():
        return jsonify(sorted(received.values(), key=lambda r: r["week"]))

    return app


def demo_config(base_url: str):
    key = datetime.now().strftime("weekly-demo-%Y%m%d%H%M%S")
    return ({"weekly": {"url": f"{base_url}/report", "org_code": "H36110200001", "sign_key": key}},
            {"sign_key": key})


@hookimpl
def register_sandboxes():
    return [Sandbox(name="weekly", title="周报平台沙箱（示例）", make_app=make_sandbox, demo_config=demo_config)]
