"""Shared by the admin's tests: a tiny test plugin ("webtest") with its own regulator (a real HTTP app
that can be told to fail), users of each role, and a logged-in Flask test client."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta

from flask import Flask, jsonify, request

from core.hook_types import (
    OutboundRequest,
    Outcome,
    Payload,
    Regulator,
    ReportType,
    SettingField,
    UploadPlan,
)
from core.hookspecs import hookimpl
from core.schema import Schema

PATIENT_ID = "360102199001011234"
SCHEMA = Schema.from_dict({
    "name": "webtest.daily",
    "title": "测试日报",
    "fields": [
        {"name": "statDate", "title": "统计日期", "type": "string", "required": True},
        {"name": "visits", "title": "门诊人次", "type": "integer", "required": True},
        {"name": "cmi", "title": "平均CMI", "type": "number"},
        {"name": "psn_name", "title": "姓名", "type": "string", "patient_identifier": True},
        {"name": "certno", "title": "身份证号", "type": "string", "patient_identifier": True},
    ],
})
REPORT = ReportType(name="webtest.daily", title="测试日报", regulator="webtest", cron="0 * * * *",
                    schema=SCHEMA, catch_up="latest")


class Regulated:
    """The test regulator's state: whether it fails, and what it accepted."""

    def __init__(self) -> None:
        self.failing = False
        self.accepted: list[dict] = []
        self.lock = threading.Lock()


def make_regulator_app(state: Regulated) -> Flask:
    app = Flask("webtest-regulator")

    @app.post("/upload")
    def upload():
        if request.headers.get("authCode") != "auth-SECRET-42":
            return jsonify(code="401", msg="authCode 无效"), 401
        if state.failing:
            return "服务繁忙", 503
        document = request.get_json()
        with state.lock:
            state.accepted.append(document)
        return jsonify(code="0", msg="上传成功")

    return app


class WebTestPlugin:
    @hookimpl
    def register_regulators(self):
        return [Regulator("webtest", "测试监管平台", settings=(SettingField("url", "接口地址"),),
                          codes={"E01": "字段错误：请检查映射"})]

    @hookimpl
    def register_report_types(self):
        return [REPORT]

    @hookimpl
    def schedule(self, report_type, slot, source, settings):
        row = {"statDate": f"{slot:%Y/%m/%d %H}:59:59", "visits": 10 + slot.hour, "cmi": 1.25,
               "psn_name": "张三", "certno": PATIENT_ID}
        return [UploadPlan(business_key=f"webtest-{slot:%Y%m%d%H%M}", period=f"{slot:%Y/%m/%d %H}:59:59",
                           rows=[row], department="0301", search_keys=[PATIENT_ID, f"APP{slot:%d%H%M}"])]

    @hookimpl
    def build_payload(self, upload):
        records = [dict(r) for r in upload.rows]
        return Payload(records=records, document={"msgid": upload.idempotency_key, "records": records})

    @hookimpl
    def sign(self, upload, payload):
        body = json.dumps(payload.document, ensure_ascii=False)
        return OutboundRequest(url=upload.settings.get("url") + "/upload", body=body,
                               headers={"Content-Type": "application/json", "authCode": "auth-SECRET-42"},
                               plaintext=body, secret_headers=frozenset({"authCode"}), timeout=5)

    @hookimpl
    def parse_response(self, upload, response):
        if response.status is None or response.status >= 500:
            return Outcome("retry", code=str(response.status or ""), message=response.error or response.body[:200])
        try:
            answer = json.loads(response.body)
        except ValueError:
            return Outcome("retry", message="应答不是 JSON")
        if answer.get("code") == "0":
            return Outcome("success", code="0", message=answer.get("msg", ""))
        return Outcome("reject", code=answer.get("code"), message=answer.get("msg", ""))


def install_webtest(registry_with, serve) -> Regulated:
    """The webtest plugin installed, its regulator served, its task created; returns the regulator state.
    (Test modules wrap this in a ``webtest`` fixture; needs the ``app`` fixture's context.)"""
    from core.db import db
    from core.scheduler import ensure_tasks
    from core.settings import save_regulator_setting

    state = Regulated()
    registry_with(WebTestPlugin())
    url = serve(make_regulator_app(state))
    save_regulator_setting("webtest", "url", url)
    db.session.commit()
    ensure_tasks()
    state.url = url
    return state


def make_user(username: str, role: str, password: str = "Passw0rd-123") -> tuple[str, str]:
    from core.db import db
    from web.users import create_user

    create_user(username, role, password)
    db.session.commit()
    return username, password


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or \
        re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


class Client:
    """A logged-in test client that adds the CSRF token to its POSTs (unless told not to)."""

    def __init__(self, flask_client, token: str):
        self.raw = flask_client
        self.token = token

    def get(self, *args, **kwargs):
        return self.raw.get(*args, **kwargs)

    def post(self, url, data=None, *, csrf: bool = True, **kwargs):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.token)
        return self.raw.post(url, data=data, **kwargs)


def login(app, role: str, username: str | None = None) -> Client:
    username = username or f"{role}-user"
    make_user(username, role)
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"username": username, "password": "Passw0rd-123", "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    page = client.get("/").get_data(as_text=True)
    return Client(client, csrf_from(page))


def plan_and_send(count: int, *, start: datetime | None = None) -> list[int]:
    """Plan ``count`` hourly slots of webtest.daily (recorded as run slots) and send each once, in-process."""
    from zoneinfo import ZoneInfo

    from core import clock
    from core.db import db
    from core.ledger import record_plans
    from core.models import Slot
    from core.pipeline import attempt

    start = start or clock.now().astimezone(ZoneInfo("Asia/Shanghai")).replace(minute=0, second=0, microsecond=0)
    ids: list[int] = []
    for i in range(count):
        slot = start - timedelta(hours=i)
        db.session.add(Slot(report_type=REPORT.name, slot_at=clock.utc_naive(slot), origin="manual"))
        ids += record_plans(REPORT, WebTestPlugin().schedule(REPORT, slot, None, None))
    for upload_id in ids:
        attempt(upload_id, 0)
    return ids
