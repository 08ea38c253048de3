"""Weekly outpatient visits: schedule -> payload -> HMAC-SM3 signature -> post -> answer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from flask import Flask, jsonify, request

from core.crypto import hmac_sm3
from core.hook_types import (
    OutboundRequest,
    Outcome,
    Payload,
    Regulator,
    ReportType,
    Response,
    Sandbox,
    SettingField,
    UploadPlan,
)
from core.hookspecs import hookimpl

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
)


@hookimpl
def register_regulators():
    return [Regulator("weekly", "周报平台（示例）", settings=(
        SettingField("url", "接口地址"),
        SettingField("org_code", "机构编码"),
        SettingField("sign_key", "签名密钥", secret=True),
    ))]


@hookimpl
def register_report_types():
    return [REPORT]


@hookimpl
def schedule(report_type, slot, source, settings):
    # The week that ended at the Monday 00:00 before this slot.
    end = slot.replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=7)
    fmt = "%Y-%m-%d %H:%M:%S"
    rows = source.query(report_type, "visits", start=start.strftime(fmt), end=end.strftime(fmt))
    week = f"{start:%Y-%m-%d}~{(end - timedelta(days=1)):%Y-%m-%d}"
    return [UploadPlan(business_key=week, period=week, rows=rows)]


@hookimpl
def build_payload(upload):
    record = {
        "orgCode": upload.settings.get("org_code"),
        "week": upload.period,
        "visits": int(upload.rows[0]["visits"]) if upload.rows else 0,
        "requestId": upload.idempotency_key,
    }
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


def make_sandbox(config: dict) -> Flask:
    """The weekly platform: verifies the signature, keeps one record per week (requestId dedups)."""
    app = Flask("weekly_sandbox")
    received: dict[str, dict] = {}
    app.config["RECEIVED"] = received

    @app.post("/report")
    def report():
        body = request.get_data()
        if hmac_sm3(config.get("sign_key", "").encode(), body) != request.headers.get("X-Signature"):
            return jsonify(ok=False, code="SIGN", message="签名错误")
        record = json.loads(body)
        previous = received.get(record["week"])
        if previous and previous["requestId"] != record["requestId"]:
            return jsonify(ok=False, code="DUP", message="该周已上报")
        received[record["week"]] = record
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
