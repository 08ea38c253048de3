"""The key-data platform's stand-in: a real HTTP app that behaves like the regulator.

Endpoints (mounted under /keydata by ``baosong sandbox``):

    POST /hospital_daily | /dept_daily | /monthly
        header authCode; body = SM4 ciphertext (raw, or in a JSON field), per the sandbox config.
        Answers HTTP 200 {"code": 200, "message": "success"} or a non-200 code with the reason:
        401 authCode 无效 · 403 orgCode 与权限码不符 · 400 解密失败 / 字段校验失败 ·
        409 重复上报（dataFlag=1 for a statDate [and department] already held) · 404 删除的记录不存在
    GET    /_sandbox/records[?report=hospital_daily&statDate=2025/02/17 07:59:59&departNoExp=...]
        what the regulator holds: dataFlag 1 adds, 2 replaces (or adds), 3 removes
    DELETE /_sandbox/records                forget everything held
    GET    /_sandbox/requests               every request seen: report, statDate, dataFlag, code, message
    POST   /_sandbox/faults                 {"error_rate": 0.5, "status": 500} · {"timeout_seconds": 5}
                                            (the record is kept, then the answer is delayed) ·
                                            {"non_json": true} · {"slow_seconds": 2} · {"reject_field": "X"} ·
                                            {"count": 3} (faults apply to the next 3 requests) · {"reset": true}
                                            {"inject": [{"fault": "drop_after_store", "count": 2}, ...]}
                                            (see core.sandbox_faults: lost answers, dropped connections,
                                            truncated bodies, slow answers; counted or p with a seed)
    GET    /_sandbox/faults                 the faults in force and how often each struck
    GET|POST /_sandbox/readings             how the platform reads what its document leaves open:
        update_absent   dataFlag 2 for a record it does not hold: "insert" (default) | "reject" (404 不存在)
        new_existing    dataFlag 1 for a record it holds: "reject" (default, 409 重复) | "overwrite"
        delete_absent   dataFlag 3 for a record it does not hold: "reject" (default, 404) | "ok"
        refusals        how those refusals are worded: "explained" (default: 409 重复 / 404 不存在) |
                        "bare" (code 400 "处理失败" for both: the document defines no error codes) |
                        "http_500" (the explained words, as HTTP 500 with code 500)
    GET    /_sandbox/history                every change to what it holds: key, action
                                            (insert / overwrite / update / delete), dataFlag

Config (``demo_config`` makes one): auth_code, sm4_key, org_code, sm4_mode, sm4_padding, sm4_key_format,
sm4_output, sm4_iv, body_wrapping, wrap_field — the same keys as the client's settings.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from datetime import datetime
from typing import Any

from flask import Flask, jsonify, request

from core import sandbox_faults
from core.crypto import CryptoError
from core.errors import ConfigurationError
from plugins.keydata import spec

FAULT_KEYS = ("error_rate", "status", "timeout_seconds", "non_json", "slow_seconds", "reject_field", "count")
# Where the document is silent (dataFlag 1/2/3 against what is or is not held), each reading -> its choices.
READINGS = {
    "update_absent": ("insert", "reject"),
    "new_existing": ("reject", "overwrite"),
    "delete_absent": ("reject", "ok"),
    "refusals": ("explained", "bare", "http_500"),
}
BARE_REFUSAL = (400, "处理失败")


class SandboxState:
    """What the regulator holds and how it is told to misbehave; shared by the request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.faults: dict[str, Any] = {}
        self.random = random.Random()
        self.plan = sandbox_faults.FaultPlan()
        self.readings = {name: choices[0] for name, choices in READINGS.items()}
        self.history: list[dict[str, Any]] = []  # every change to what is held

    def take_faults(self) -> dict[str, Any]:
        """The faults for this request (counting down a limited run)."""
        with self.lock:
            faults = dict(self.faults)
            if "count" in self.faults:
                self.faults["count"] -= 1
                if self.faults["count"] <= 0:
                    self.faults = {}
            return faults


def make_app(config: dict) -> Flask:
    app = Flask("keydata_sandbox")
    state = SandboxState()
    app.config["STATE"] = state
    dictionary = spec.dictionary_file_codes()

    def answer(kind: str, document: dict | None, code: int, message: str):
        with state.lock:
            state.requests.append({
                "report": kind, "statDate": (document or {}).get("statDate"),
                "departNoExp": (document or {}).get("departNoExp"), "dataFlag": (document or {}).get("dataFlag"),
                "code": code, "message": message, "at": datetime.now().isoformat(timespec="seconds"),
            })
        return jsonify(code=code, message=message)

    def receive(kind: str):
        rule = state.plan.draw(request.path)
        early = sandbox_faults.before_store(rule, request.environ)
        if early is not None:
            return early
        return sandbox_faults.after_store(rule, request.environ, app.make_response(handle(kind)))

    def handle(kind: str):
        faults = state.take_faults()
        if faults.get("slow_seconds"):
            time.sleep(float(faults["slow_seconds"]))
        if faults.get("error_rate") and state.random.random() < float(faults["error_rate"]):
            status = int(faults.get("status", 500))
            return answer(kind, None, status, "沙箱模拟的系统错误"), status
        if faults.get("non_json"):
            return "<html><body><h1>502 Bad Gateway</h1></body></html>", 200, {"Content-Type": "text/html"}

        if not config.get("auth_code") or not config.get("sm4_key"):
            return answer(kind, None, 500, "沙箱未配置 authCode / SM4 密钥（运行 baosong demo 生成）")
        if request.headers.get("authCode") != config["auth_code"]:
            return answer(kind, None, 401, "authCode 无效：接口权限码错误或缺失")
        try:
            document = spec.decrypt_body(
                request.get_data(as_text=True), config["sm4_key"], spec.sm4_profile(config),
                config.get("body_wrapping", "raw"), config.get("wrap_field", "data"))
        except (CryptoError, ValueError, ConfigurationError) as exc:
            return answer(kind, None, 400, f"解密失败：{exc}")

        problems = validate(kind, document, dictionary)
        if config.get("org_code") and document.get("orgCode") != config["org_code"]:
            problems.insert(0, "orgCode 与接口权限码所属机构不符")
        if faults.get("reject_field") and faults["reject_field"] in document:
            problems.insert(0, f"{faults['reject_field']} 字段值不合法（沙箱按要求拒绝）")
        if problems:
            code = 403 if problems[0].startswith("orgCode") else 400
            return answer(kind, document, code, "数据校验失败：" + "；".join(problems))

        code, message = store(kind, document)
        response = answer(kind, document, code, message)
        if faults.get("timeout_seconds"):
            # The record is kept, the answer comes too late: the client cannot know it arrived.
            time.sleep(float(faults["timeout_seconds"]))
        return (response, 500) if code == 500 else response  # the "http_500" reading of a refusal

    def store(kind: str, document: dict) -> tuple[int, str]:
        key = (kind, document["statDate"], str(document.get("departNoExp", "")) if kind == spec.DEPT_DAILY else "")
        flag = document["dataFlag"]
        what = "该统计日期" + ("该科室" if kind == spec.DEPT_DAILY else "")
        with state.lock:
            held = key in state.records
            readings = dict(state.readings)

            def keep(action: str) -> tuple[int, str]:
                if action == "delete":
                    del state.records[key]
                else:
                    state.records[key] = document
                state.history.append({"report": key[0], "statDate": key[1], "departNoExp": key[2],
                                      "action": action, "dataFlag": flag})
                return 200, "success"

            def refuse(code: int, message: str) -> tuple[int, str]:
                return {"bare": BARE_REFUSAL, "http_500": (500, message)}.get(readings["refusals"], (code, message))

            if flag == "1":
                if not held:
                    return keep("insert")
                if readings["new_existing"] == "overwrite":
                    return keep("overwrite")
                return refuse(409, f"数据重复：{what}已上报，更新请使用 dataFlag=2")
            if flag == "2":
                if held:
                    return keep("update")
                if readings["update_absent"] == "insert":
                    return keep("insert")
                return refuse(404, f"更新失败：{what}的数据不存在，请使用 dataFlag=1 新增")
            if held:
                return keep("delete")
            if readings["delete_absent"] == "ok":
                return 200, "success"
            return 404, f"删除失败：{what}没有已上报的数据"

    for kind in spec.KINDS:
        app.add_url_rule(f"/{kind}", f"receive_{kind}", lambda kind=kind: receive(kind), methods=["POST"])

    @app.get("/")
    def index():
        return jsonify(sandbox="keydata", title="医疗机构关键数据平台（沙箱）",
                       endpoints=[f"/{k}" for k in spec.KINDS], held=len(state.records),
                       body_wrapping=config.get("body_wrapping", "raw"),
                       sm4_profile=spec.sm4_profile(config).describe())

    @app.get("/_sandbox/records")
    def records():
        report = request.args.get("report")
        stat_date = request.args.get("statDate")
        dept = request.args.get("departNoExp")
        with state.lock:
            found = [
                {"report": kind, **document}
                for (kind, date, dept_key), document in sorted(state.records.items())
                if (report is None or kind == report) and (stat_date is None or date == stat_date)
                and (dept is None or dept_key == dept)
            ]
        return jsonify(records=found)

    @app.delete("/_sandbox/records")
    def forget():
        with state.lock:
            state.records.clear()
            state.requests.clear()
            state.history.clear()
        return jsonify(ok=True)

    @app.get("/_sandbox/history")
    def history():
        with state.lock:
            return jsonify(history=list(state.history))

    @app.route("/_sandbox/readings", methods=["GET", "POST"])
    def readings():
        if request.method == "POST":
            wanted = request.get_json(force=True, silent=True) or {}
            for name, value in wanted.items():
                if name not in READINGS or value not in READINGS[name]:
                    choices = "；".join(f"{n}: {'|'.join(c)}" for n, c in READINGS.items())
                    return jsonify(ok=False, message=f"未知的解读 {name}={value}（可选 {choices}）"), 400
            with state.lock:
                state.readings.update(wanted)
        with state.lock:
            return jsonify(ok=True, readings=dict(state.readings))

    @app.get("/_sandbox/requests")
    def requests_seen():
        with state.lock:
            return jsonify(requests=list(state.requests))

    @app.route("/_sandbox/faults", methods=["GET", "POST"])
    def faults():
        if request.method == "POST":
            wanted = request.get_json(force=True, silent=True) or {}
            unknown = set(wanted) - set(FAULT_KEYS) - {"reset", "inject"}
            if unknown:
                return jsonify(ok=False, message=f"未知的故障参数：{', '.join(sorted(unknown))}"), 400
            if "inject" in wanted:
                try:
                    state.plan.configure(wanted.pop("inject"))
                except ValueError as exc:
                    return jsonify(ok=False, message=str(exc)), 400
            with state.lock:
                if wanted.pop("reset", False):
                    state.faults = {}
                    state.plan.clear()
                state.faults.update(wanted)
        with state.lock:
            return jsonify(ok=True, faults=dict(state.faults), **state.plan.describe())

    return app


def validate(kind: str, document: dict, dictionary: dict[str, str]) -> list[str]:
    """Every reason the platform refuses the record: the shared field schema plus what it cannot express
    (statDate is a period's last second, departName is departNo's meaning)."""
    problems = [str(p) for p in spec.schema(kind).validate(document, dictionaries={spec.DICTIONARY: dictionary})]
    stat_date = document.get("statDate")
    if isinstance(stat_date, str) and not any(p.startswith("statDate") for p in problems):
        if not spec.is_period_end(kind, spec.parse_stat_date(stat_date)):
            what = "月的最后一秒（如 2025/01/31 23:59:59）" if kind == spec.MONTHLY \
                else "小时的最后一秒（如 2025/02/17 07:59:59）"
            problems.append(f"statDate: {stat_date} 应为业务数据期{what}")
    if kind == spec.DEPT_DAILY:
        code = document.get("departNo")
        if code in dictionary and document.get("departName") != dictionary[code]:
            problems.append(f"departName: {document.get('departName')!s} 与科室编码 {code} 的含义"
                            f"“{dictionary[code]}”不符")
    return problems


def demo_config(base_url: str) -> tuple[dict[str, dict[str, str]], dict]:
    """Fresh keys for a demo: the client's settings and the sandbox's matching config."""
    shared = {
        "auth_code": secrets.token_hex(16),
        "sm4_key": secrets.token_hex(16),
        "org_code": "DEMO330100001",
        "sm4_mode": "ECB", "sm4_padding": "pkcs7", "sm4_key_format": "hex", "sm4_output": "hex", "sm4_iv": "",
        "body_wrapping": "raw", "wrap_field": "data",
    }
    client = {
        **shared,
        "hospital_daily_url": f"{base_url}/{spec.HOSPITAL_DAILY}",
        "dept_daily_url": f"{base_url}/{spec.DEPT_DAILY}",
        "monthly_url": f"{base_url}/{spec.MONTHLY}",
        "hospital_level": "tertiary",
        "send_total_person_times": "0",
        "withheld_monthly_fields": "",
    }
    return {"keydata": client}, dict(shared)


def seed() -> None:
    """Demo data once settings are stored: the dictionary, and a partial department mapping."""
    from plugins.keydata import demo_seed

    demo_seed.seed_mappings()
