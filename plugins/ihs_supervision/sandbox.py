"""The IHS sandbox regulator: a real HTTP app that checks requests the way the platform would.

``POST <interface path>`` (every path in ``schemas/``) checks, in this order:

    headers service / appid / randomstr / sign present, randomstr ≤ 32   PARAM_ERROR
    service header is the interface of the path                           SERVICE_ERROR
    appid is the registered one                                           APPID_ERROR
    body {"uptime", "data"} (A0001: the multipart form), uptime format    PARAM_ERROR
    sign = the configured recipe over appid/service/randomstr/uptime/data SIGN_ERROR
    data a JSON array of 1 … 10,000 objects, body ≤ 30 MB (not A0001)    DATA_LIMIT
    every row against the interface's field table (schemas/*.json)       PARAM_ERROR, naming row and field
    call order: every record a row depends on was accepted before        DEPENDENCY_MISSING
    a row whose key was already accepted (switch ``duplicate``: refuse)  DATA_EXISTS
    otherwise                                                            0, rows kept (keyed: overwrite)

The document's own return-code table (2.8) is missing from our copy: apart from "0" and
SYSTEM_ERROR (1.4) these codes are the sandbox's, and Baosong treats them as rejections.

Test endpoints: ``GET /_sandbox/records?code=A2000[&limit=50]`` (keys in acceptance order, rows
received including repeats, the latest rows masked), ``GET /_sandbox/log`` (every accepted batch in
order), ``DELETE /_sandbox/records``, ``POST /_sandbox/faults`` with any of ``{"error_rate": 1,
"status": 500}``, ``{"code": "SYSTEM_ERROR"}`` (answer without handling), ``{"timeout_seconds": 5}``
(wait, then handle), ``{"slow_seconds": 5}`` (handle and keep, then answer late),
``{"lost_after_store": true}`` (handle and keep, then drop the connection), ``{"drop_after_read":
true}`` (read the request, keep nothing, drop the connection), ``{"truncated": true}`` (handle and keep,
answer half a body), ``{"duplicate": "refuse" | "overwrite"}`` (the point the document leaves open),
``{"reset": true}``; and the rules every sandbox shares (``core.sandbox_faults``): ``{"inject":
[{"fault": "error_after_store", "count": 2}, {"fault": "drop_before_store", "p": 0.3, "seed": 7,
"path": "department"}]}`` (500 or a dropped connection before or after storing, a truncated or slow
answer after storing; for the next N requests or with a probability), cleared by ``{"reset": true}``.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from datetime import datetime
from typing import Any

from flask import Flask, Response, jsonify, request

from core import sandbox_faults
from core.masking import mask_record
from core.schema import DateFormat
from demo.hospital import DEFAULT_ORG_CODE

from . import catalogue, protocol, recipes

_FAULT_KEYS = {"error_rate", "status", "code", "timeout_seconds", "slow_seconds", "lost_after_store",
               "drop_after_read", "truncated", "duplicate"}
_UPTIME = DateFormat.parse("YYYY-MM-DD HH24:MI:SS")
# attaService -> the steps whose records an attachment may belong to (2.1.1).
_ATTA_STEPS = {"01": ("hospital",), "02": ("staff",), "11": ("revisit_order", "revisit_service"),
               "12": ("recipe",), "13": ("consultation",), "14": ("drug_order",), "15": ("emr",)}
DEMO_APPID = "IHS-DEMO-0001"
DEMO_RECIPE = recipes.SignRecipe(digest="SM3", layout="pairs", key_placement="pair_last", output="HEX")


class SandboxState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, dict[str, dict[str, Any]]] = {i.code: {} for i in catalogue.interfaces()}
        self.received: dict[str, int] = {i.code: 0 for i in catalogue.interfaces()}
        self.log: list[dict[str, Any]] = []
        self.requests = 0
        self.faults: dict[str, Any] = {}
        self.random = random.Random()
        self.plan = sandbox_faults.FaultPlan()

    def accepted(self, step: str, key: str) -> bool:
        return any(key in self.records[i.code] for i in catalogue.of_step(step))

    def any_accepted(self, steps: tuple[str, ...]) -> bool:
        return any(self.records[i.code] for s in steps for i in catalogue.of_step(s))


def make_app(config: dict) -> Flask:
    """``config``: ``appid``, ``key``, ``recipe`` (the recipe settings), ``hosp_id`` (the central
    hospital), optional ``duplicate`` ("overwrite" default, or "refuse")."""
    app = Flask("ihs_sandbox")
    state = SandboxState()
    app.config["SANDBOX_STATE"] = state
    appid, key = config.get("appid", ""), config.get("key", "")
    recipe = recipes.from_settings(config.get("recipe") or {}) or DEMO_RECIPE
    hosp_id = config.get("hosp_id", "")
    state.faults["duplicate"] = config.get("duplicate", "overwrite")

    def answer(code: str, message: str = "", status: int = 200, **extra):
        body: dict[str, Any] = {"code": code, **extra}
        if code != protocol.SUCCESS:
            body["message"] = message or code
        return jsonify(body), status

    @app.get("/")
    def index():
        with state.lock:
            return jsonify(sandbox="ihs_supervision", appid=appid, recipe=recipe.describe(),
                           accepted={c: len(r) for c, r in state.records.items()}, batches=len(state.log))

    def receive():
        interface = catalogue.by_path(request.url_rule.rule)
        with state.lock:
            state.requests += 1
        rule = state.plan.draw(request.path)  # the shared fault rules (core.sandbox_faults)
        if rule is not None and rule.fault in sandbox_faults.BEFORE_STORE:
            request.get_data()  # read the whole request first, as a server does
            return sandbox_faults.before_store(rule, request.environ)
        return sandbox_faults.after_store(rule, request.environ, app.make_response(respond(interface)))

    def respond(interface: catalogue.Interface):
        faults = dict(state.faults)
        if faults.get("code"):
            return answer(str(faults["code"]), "沙箱故障注入")
        if faults.get("error_rate") and state.random.random() < float(faults["error_rate"]):
            return answer(protocol.SYSTEM_ERROR, "系统错误（沙箱故障注入）", int(faults.get("status", 500)))
        if faults.get("timeout_seconds"):
            time.sleep(float(faults["timeout_seconds"]))
        request.get_data()  # read the whole request first, as a server does
        if faults.get("drop_after_read"):
            return _drop()
        result = handle(interface, faults)
        if faults.get("slow_seconds"):
            time.sleep(float(faults["slow_seconds"]))
        if faults.get("lost_after_store"):
            return _drop()
        if faults.get("truncated"):
            body, status = result
            text = body.get_data()
            return Response(_half(text), status=status, headers={"Content-Length": str(len(text)),
                                                                 "Content-Type": "application/json"})
        return result

    for item in catalogue.interfaces():
        app.add_url_rule(item.path, f"receive_{item.code}", receive, methods=["POST"])

    def handle(interface: catalogue.Interface, faults: dict[str, Any]):
        headers = {name: request.headers.get(name, "") for name in protocol.HEADER_NAMES}
        missing = [name for name, value in headers.items() if not value]
        if missing:
            return answer("PARAM_ERROR", f"缺少请求头 {', '.join(missing)}")
        if len(headers["randomstr"]) > protocol.RANDOMSTR_MAX:
            return answer("PARAM_ERROR", f"randomstr 长度 {len(headers['randomstr'])} 超过 32")
        if headers["service"] != interface.code:
            return answer("SERVICE_ERROR", f"service {headers['service']} 与接口路径 {interface.path} 不符")
        if headers["appid"] != appid:
            return answer("APPID_ERROR", "appid 未注册")
        if interface.multipart:
            form = request.form.to_dict()
            upload = request.files.get("fileUpload")
            uptime, data = form.get("uptime", ""), form.get("data")
            if data != "":
                return answer("PARAM_ERROR", "超大附件接口的 data 必须为空字符串")
        else:
            if request.content_length and request.content_length > protocol.HARD_MAX_BYTES:
                return answer("DATA_LIMIT", "单次请求数据超过 30MB")
            try:
                body = json.loads(request.get_data(as_text=True))
            except ValueError:
                return answer("PARAM_ERROR", "请求体不是合法的 JSON")
            if not isinstance(body, dict) or not isinstance(body.get("data"), str):
                return answer("PARAM_ERROR", "请求体应为 {\"uptime\", \"data\"}，data 为字符串")
            uptime, data = body.get("uptime", ""), body["data"]
        if not isinstance(uptime, str) or not _UPTIME.check(uptime):
            return answer("PARAM_ERROR", "uptime 格式应为 YYYY-MM-DD HH24:MI:SS")
        values = protocol.sign_values(interface.code, appid, headers["randomstr"], uptime, data)
        if recipe.sign(values, key) != headers["sign"]:
            return answer("SIGN_ERROR", "验签失败")
        if interface.multipart:
            if upload is None:
                return answer("PARAM_ERROR", "缺少附件 fileUpload")
            rows = [{**form, "fileUpload": upload.read()}]
        else:
            try:
                rows = json.loads(data)
            except ValueError:
                return answer("PARAM_ERROR", "data 不是 JSON 数组的字符串")
            if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
                return answer("PARAM_ERROR", "data 应为非空的对象数组")
            if len(rows) > protocol.HARD_MAX_ROWS:
                return answer("DATA_LIMIT", f"单次 {len(rows)} 条，超过 10000 条")
        problems = []
        for index, row in enumerate(rows):
            problems.extend(interface.schema.validate(row, index=index))
        if problems:
            shown = "；".join(str(p) for p in problems[:10])
            return answer("PARAM_ERROR", shown + (f" 等 {len(problems)} 处" if len(problems) > 10 else ""))
        with state.lock:
            for index, row in enumerate(rows):
                lacking = _lacking(state, interface, row, hosp_id)
                if lacking:
                    return answer("DEPENDENCY_MISSING", f"第{index + 1}条：{lacking} 尚未上报（接口调用顺序）")
            keys = [str(row.get(interface.key_field)) for row in rows]
            kept = state.records[interface.code]
            if faults.get("duplicate") == "refuse":
                again = [k for k in keys if k in kept]
                if again:
                    return answer("DATA_EXISTS", f"{len(again)} 条记录已上报，如 {interface.key_field}={again[0]}")
            for k, row in zip(keys, rows, strict=True):
                kept.pop(k, None)
                kept[k] = {f: (v.hex() if isinstance(v, bytes) else v) for f, v in row.items()}
            state.received[interface.code] += len(rows)
            state.log.append({"code": interface.code, "keys": keys, "randomstr": headers["randomstr"],
                              "at": datetime.now().isoformat(timespec="milliseconds")})
        return answer(protocol.SUCCESS)

    @app.get("/_sandbox/records")
    def records():
        code = request.args.get("code", "")
        if code not in state.records:
            return jsonify(error=f"code 应为 {', '.join(state.records)} 之一"), 400
        limit = int(request.args.get("limit", "50"))
        with state.lock:
            kept = dict(state.records[code])
            received = state.received[code]
        patient = catalogue.by_code(code).schema.patient_fields()
        rows = list(kept.values())
        return jsonify(code=code, count=len(kept), received=received, keys=list(kept),
                       records=[mask_record(r, patient) for r in rows[-limit:]] if limit > 0 else [])

    @app.get("/_sandbox/log")
    def batches():
        with state.lock:
            return jsonify(batches=list(state.log))

    @app.delete("/_sandbox/records")
    def clear():
        with state.lock:
            for kept in state.records.values():
                kept.clear()
            for code in state.received:
                state.received[code] = 0
            state.log.clear()
        return jsonify(ok=True)

    @app.route("/_sandbox/faults", methods=["GET", "POST"])
    def faults():
        if request.method == "POST":
            body = request.get_json(force=True, silent=True) or {}
            unknown = set(body) - _FAULT_KEYS - {"reset", "inject"}
            if unknown:
                return jsonify(error=f"未知的故障参数 {', '.join(sorted(unknown))}"), 400
            if body.get("duplicate") not in (None, "refuse", "overwrite"):
                return jsonify(error="duplicate 应为 refuse 或 overwrite"), 400
            if body.get("reset"):
                state.faults = {"duplicate": state.faults.get("duplicate", "overwrite")}
                state.plan.clear()
            if "inject" in body:
                try:
                    state.plan.configure(body.pop("inject"))
                except ValueError as exc:
                    return jsonify(error=str(exc)), 400
            state.faults = {**state.faults, **{k: v for k, v in body.items() if k != "reset"}}
        return jsonify(faults=state.faults, requests=state.requests, **state.plan.describe())

    return app


def _lacking(state: SandboxState, interface: catalogue.Interface, row: dict[str, Any], hosp_id: str) -> str | None:
    for step, field in catalogue.active_requirements(interface.step):
        value = hosp_id if field == catalogue.OWN_HOSPITAL else row.get(field)
        if value not in (None, "") and not state.accepted(step, str(value)):
            return f"{catalogue.STEP_BY_NAME[step].title} {value}"
    if interface.step == "attachment":
        steps = _ATTA_STEPS.get(str(row.get("attaService")), ())
        present = tuple(s for s in steps if catalogue.of_step(s))
        if present and not state.any_accepted(present):
            return f"附件所属业务（{row.get('attaService')}）的业务数据"
    return None


def _drop():
    """Close the connection without an answer (the client sees a reset / remote disconnect)."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return Response(b"", status=200)


def _half(text: bytes):
    yield text[: max(len(text) // 2, 1)]
    raise ConnectionAbortedError("沙箱故障注入：应答被截断")


def demo_config(base_url: str) -> tuple[dict[str, dict[str, str]], dict]:
    """A fresh key; the demo's recipe (an assumption like any other) on both sides."""
    import secrets

    key = secrets.token_hex(16)
    client = {"base_url": base_url.rstrip("/"), "appid": DEMO_APPID, "app_secret": key, "hosp_id": DEFAULT_ORG_CODE,
              **DEMO_RECIPE.settings(), "duplicate_codes": "DATA_EXISTS"}
    return {"ihs_supervision": client}, {"appid": DEMO_APPID, "key": key, "recipe": DEMO_RECIPE.settings(),
                                         "hosp_id": DEFAULT_ORG_CODE}


def example_for(key: str, recipe: recipes.SignRecipe = DEMO_RECIPE) -> dict[str, str]:
    """A worked example as a vendor would give it (what the sandbox itself accepts)."""
    data = protocol.encode_data([{"hospId": DEFAULT_ORG_CODE, "hospName": "示例医院"}])
    values = protocol.sign_values("A1000", DEMO_APPID, "5f1c0e2a9b7d4c3e8a6f0b1d2c3e4f5a", "2019-10-10 21:10:10", data)
    return {**values, "expected_sign": recipe.sign(values, key)}


def seed() -> None:
    """The demo's admin enters the sandbox's worked example and verifies it (inside an app context)."""
    from core import settings as core_settings
    from core.db import db

    from . import gate

    current = core_settings.regulator_settings(gate.REGULATOR)
    key = current.get("app_secret")
    if not key:
        return
    gate.save_example(example_for(key), key, "demo")
    gate.verify(current, "demo")
    db.session.commit()
