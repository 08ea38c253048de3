"""A small test plugin ("echo") and its regulator, a real HTTP app, for testing the core alone.

The regulator stores each record by its ``requestId`` (the upload's idempotency key), so a re-send
of the same upload is recognised, and can be told to fail, hang or reject.
"""

from __future__ import annotations

import json
import threading
import time

from flask import Flask, jsonify, request

from core.hook_types import (
    OutboundRequest,
    Outcome,
    Payload,
    Regulator,
    ReportType,
    Response,
    SettingField,
    UploadPlan,
)
from core.hookspecs import hookimpl

REPORT = ReportType(name="echo.hourly", title="回声测试报表", regulator="echo", cron="0 * * * *",
                    catch_up="latest")
MONTHLY = ReportType(name="echo.monthly", title="回声月报", regulator="echo", cron="0 0 1 * *", catch_up="all")
SECRET_TOKEN = "tok-SECRET-9f8e7d6c5b4a"


class EchoPlugin:
    """Hook implementations as methods of one object, registered with ``registry_with``."""

    def __init__(self):
        self.finished: list[tuple[int, str]] = []

    @hookimpl
    def register_regulators(self):
        return [Regulator("echo", "回声平台", settings=(
            SettingField("url", "接口地址"),
            SettingField("token", "令牌", secret=True),
            SettingField("timeout", "超时（秒）", default="5"),
        ))]

    @hookimpl
    def register_report_types(self):
        return [REPORT, MONTHLY]

    @hookimpl
    def schedule(self, report_type, slot, source, settings):
        key = f"{report_type.name}@{slot:%Y-%m-%d %H:%M}"
        return [UploadPlan(business_key=key, period=f"{slot:%Y-%m-%d %H:%M}", rows=[{"n": slot.hour}])]

    @hookimpl
    def build_payload(self, upload):
        record = {"key": upload.business_key, "n": upload.rows[0]["n"], "requestId": upload.idempotency_key,
                  "resend": upload.resend}
        return Payload(records=[record], document=record)

    @hookimpl
    def sign(self, upload, payload):
        body = json.dumps(payload.document)
        return OutboundRequest(url=upload.settings.get("url"), body=body, plaintext=body,
                               headers={"X-Token": upload.settings.get("token"),
                                        "Content-Type": "application/json"},
                               timeout=float(upload.settings.get("timeout", "5")),
                               secret_headers=frozenset({"X-Token"}))

    @hookimpl
    def parse_response(self, upload, response: Response):
        if response.status is None or response.status >= 500:
            return Outcome("retry", message=response.error or f"HTTP {response.status}")
        answer = json.loads(response.body)
        if answer["code"] == 0:
            return Outcome("success", code="0", message="ok", result={"receipt": answer["receipt"]})
        return Outcome("reject", code=str(answer["code"]), message=answer["message"])

    @hookimpl
    def upload_finished(self, upload, outcome):
        self.finished.append((upload.id, outcome.kind))


def make_regulator() -> Flask:
    app = Flask("echo_regulator")
    state = {"records": {}, "requests": [], "mode": "ok", "hang": 0.0, "lock": threading.Lock()}
    app.config["STATE"] = state

    @app.post("/report")
    def report():
        if request.headers.get("X-Token") != SECRET_TOKEN:
            return jsonify(code=401, message="令牌错误")
        record = request.get_json()
        with state["lock"]:
            state["requests"].append(record)
        if state["hang"]:
            time.sleep(state["hang"])
        if state["mode"] == "fail":
            return "internal error", 500
        if state["mode"] == "reject":
            return jsonify(code=400, message="n 字段取值错误")
        with state["lock"]:
            known = state["records"].get(record["requestId"])
            state["records"][record["requestId"]] = record
        return jsonify(code=0, receipt=f"R-{record['requestId'][:8]}", duplicate=known is not None)

    @app.post("/_control")
    def control():
        state.update(request.get_json())
        return jsonify(ok=True)

    @app.get("/_state")
    def dump():
        return jsonify(records=state["records"], requests=state["requests"])

    return app
