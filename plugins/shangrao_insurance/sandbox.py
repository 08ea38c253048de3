"""The Shangrao sandbox regulator: a real HTTP app that behaves like the supervision platform.

``POST /metadata/receive/{service}`` checks, in this order, and answers ``{"code", "msg"}`` with the
document's codes (3.2.4):

    unknown service                                   40004 服务类型不存在
    body not a JSON object                            40001 业务数据序列化失败
    envelope field missing / too long (3.2.1)         40003 数据格式校验失败
    fixmedins_code is not the registered institution  40002 授权信息有误
    msgid not 12-char institution code + 24 chars     40003
    msgid already accepted                            40005 请勿重复提交
    data not hex/Base64 as configured                 40001 (加密不正确)
    SM2 decryption fails (wrong key, order, 04)       40006 解密失败
    plaintext not a UTF-8 JSON array of objects       40001
    any row fails its field table (schemas/*.json)    40003, naming the row and field
    otherwise                                         200, rows kept

Where the document is silent the sandbox can take either reading (``GET|POST /_sandbox/readings``):

    msgid_taken    "on_accept" (default): only accepted msgids are remembered, so a refused batch can be
                   sent again after a fix; "on_receipt": every msgid that arrives is taken, refused or not
    repeat_msgid   "40005" (default): a taken msgid is answered 40005 请勿重复提交; "200": an accepted
                   msgid sent again is answered 200 without keeping its rows a second time

Test endpoints: ``GET /_sandbox/records?service=fee_list_d[&keys=1][&limit=50]`` (counts, the key field
of every accepted row, the latest rows with patient fields masked), ``DELETE /_sandbox/records``,
``POST /_sandbox/faults`` with any of ``{"error_rate": 0.5, "status": 500}``, ``{"timeout_seconds": 5}``
(wait before handling), ``{"slow_seconds": 2}`` (handle and keep the rows, then wait before answering:
an answer the client may never see), ``{"non_json": true}`` (handle, answer garbage),
``{"reject_field": "CNT"}``, ``{"code": 40000}`` (answer that code without handling), ``{"reset": true}``,
``{"inject": [{"fault": "drop_after_store", "p": 0.3, "seed": 1}, ...]}`` (core.sandbox_faults: lost answers,
dropped connections, truncated bodies, slow answers, counted or probabilistic).
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import threading
import time
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, request

from core import clock, sandbox_faults
from core.crypto import CryptoError, SM2Profile, generate_sm2_keypair, sm2_decrypt
from core.hook_types import Problem
from core.masking import mask_record
from demo.hospital import DEFAULT_ORG_CODE, DEFAULT_ORG_NAME

from .common import (
    CODE_LENGTH,
    DEFAULT_MAX_DATA_CHARS,
    KEY_FIELDS,
    MSGID_LENGTH,
    RESPONSE_CODES,
    SERVICES,
    schema_for,
)

# The demo hospital's own institution (demo.hospital), so its rows and the envelope agree.
DEMO_INSTITUTION_CODE = DEFAULT_ORG_CODE
DEMO_INSTITUTION_NAME = DEFAULT_ORG_NAME
# The document gives infno as varchar(4) 接口类别代码 without values; the demo uses these placeholders.
DEMO_INFNO = {"fee_list_d": "FL01", "setl_d": "ST01", "mdtrt_d": "MD01"}
ENVELOPE_LIMITS = {"infno": 4, "msgid": MSGID_LENGTH, "fixmedins_code": 30, "fixmedins_name": 100}
_HEX = re.compile(r"[0-9a-fA-F]*")
_FAULT_KEYS = {"error_rate", "status", "timeout_seconds", "slow_seconds", "non_json", "reject_field", "code"}
READINGS = {"msgid_taken": ("on_accept", "on_receipt"), "repeat_msgid": ("40005", "200")}


class SandboxState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, list[dict[str, Any]]] = {s: [] for s in SERVICES}
        self.batches: list[dict[str, Any]] = []
        self.msgids: set[str] = set()
        self.requests = 0
        self.faults: dict[str, Any] = {}
        self.random = random.Random()
        self.plan = sandbox_faults.FaultPlan()
        self.readings = {name: choices[0] for name, choices in READINGS.items()}
        self.accepted: set[str] = set()  # msgids whose rows are kept (self.msgids: every msgid taken)


def make_app(config: dict) -> Flask:
    """The sandbox for one institution: ``config`` holds the SM2 private key, the registered
    institution code and the SM2 profile (``{"order", "c1_prefix", "format", "output"}``)."""
    app = Flask("shangrao_sandbox")
    state = SandboxState()
    app.config["SANDBOX_STATE"] = state
    private_key = config.get("private_key", "")
    registered_code = config.get("fixmedins_code", "")
    profile = SM2Profile.from_dict(config.get("sm2", {}))
    max_chars = int(config.get("max_data_chars", DEFAULT_MAX_DATA_CHARS))
    dictionaries = config.get("dictionaries") or {}

    def answer(code: str, message: str = "", http_status: int = 200, **extra):
        text = RESPONSE_CODES.get(code, ("沙箱应答",))[0]
        body = {"code": int(code), "msg": f"{text}：{message}" if message else text, **extra}
        return jsonify(body), http_status

    @app.get("/")
    def index():
        with state.lock:
            return jsonify(sandbox="shangrao", institution=registered_code, sm2=profile.describe(),
                           accepted={s: len(rows) for s, rows in state.records.items()},
                           batches=len(state.batches))

    @app.post("/metadata/receive/<service>")
    def receive(service: str):
        rule = state.plan.draw(request.path)
        early = sandbox_faults.before_store(rule, request.environ)
        if early is not None:
            return early
        return sandbox_faults.after_store(rule, request.environ, app.make_response(receive_now(service)))

    def receive_now(service: str):
        faults = dict(state.faults)
        with state.lock:
            state.requests += 1
        if faults.get("code"):
            return answer(str(faults["code"]), "沙箱故障注入")
        if faults.get("error_rate") and state.random.random() < float(faults["error_rate"]):
            status = int(faults.get("status", 500))
            return jsonify(code=50000, msg="系统错误（沙箱故障注入）"), status
        if faults.get("timeout_seconds"):
            time.sleep(float(faults["timeout_seconds"]))
        result = handle(service, faults)
        if faults.get("slow_seconds"):
            time.sleep(float(faults["slow_seconds"]))  # handled and kept: only the answer is late
        if faults.get("non_json"):
            return "<html><body>502 Bad Gateway</body></html>", 200, {"Content-Type": "text/html"}
        return result

    def handle(service: str, faults: dict[str, Any]):
        if service not in SERVICES:
            return answer("40004", f"服务代码 {service} 不在服务清单中（{', '.join(SERVICES)}）")
        try:
            envelope = json.loads(request.get_data(as_text=True))
        except ValueError:
            return answer("40001", "请求体不是合法的 JSON")
        if not isinstance(envelope, dict):
            return answer("40001", "请求体应为 JSON 对象")
        for name in (*ENVELOPE_LIMITS, "data"):
            value = envelope.get(name)
            if not isinstance(value, str) or not value:
                return answer("40003", f"{name} 必填且应为字符串")
            limit = max_chars if name == "data" else ENVELOPE_LIMITS[name]
            if len(value) > limit:
                return answer("40003", f"{name} 长度 {len(value)} 超过 {limit}")
        if envelope["fixmedins_code"] != registered_code:
            return answer("40002", "机构编码与授权信息不符")
        msgid = envelope["msgid"]
        if len(msgid) != MSGID_LENGTH or msgid[:CODE_LENGTH] != registered_code:
            return answer("40003", f"msgid 应为定点医药机构编号({CODE_LENGTH}位)+随机24位字符串")
        with state.lock:
            if msgid in state.msgids:
                return repeated(msgid)
            if state.readings["msgid_taken"] == "on_receipt":
                state.msgids.add(msgid)
        ciphertext = envelope["data"]
        if not _well_formed(ciphertext, profile.output):
            return answer("40001", "data 不是约定编码的 SM2 密文（加密不正确）")
        try:
            plaintext = sm2_decrypt(ciphertext, private_key, profile)
        except CryptoError:
            return answer("40006", "SM2 解密失败")
        try:
            rows = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return answer("40001", "解密后的 data 不是合法的 JSON")
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            return answer("40001", "data 应为非空的对象数组")
        schema = schema_for(service)
        problems = []
        for index, row in enumerate(rows):
            problems.extend(schema.validate(row, dictionaries=dictionaries, index=index))
            forced = faults.get("reject_field")
            if forced and forced in row:
                problems.append(Problem(forced, "沙箱注入的校验失败", record_index=index))
        if problems:
            shown = "；".join(str(p) for p in problems[:10])
            return answer("40003", shown + (f" 等 {len(problems)} 处" if len(problems) > 10 else ""))
        with state.lock:
            if msgid in state.accepted or (msgid in state.msgids and state.readings["msgid_taken"] == "on_accept"):
                return repeated(msgid)  # a concurrent re-send got here first
            state.msgids.add(msgid)
            state.accepted.add(msgid)
            state.records[service].extend(rows)
            state.batches.append({"service": service, "msgid": msgid, "rows": len(rows),
                                  "infno": envelope["infno"], "received_at": time.time()})
        return answer("200", rows=len(rows))

    def repeated(msgid: str):
        if msgid in state.accepted and state.readings["repeat_msgid"] == "200":
            return answer("200", "该 msgid 已接收（不重复保存）")
        return answer("40005", "该 msgid 已接收")

    @app.route("/_sandbox/readings", methods=["GET", "POST"])
    def readings():
        if request.method == "POST":
            wanted = request.get_json(force=True, silent=True) or {}
            for name, value in wanted.items():
                if name not in READINGS or value not in READINGS[name]:
                    choices = "；".join(f"{n}: {'|'.join(c)}" for n, c in READINGS.items())
                    return jsonify(error=f"未知的解读 {name}={value}（可选 {choices}）"), 400
            with state.lock:
                state.readings.update(wanted)
        with state.lock:
            return jsonify(readings=dict(state.readings))

    @app.get("/_sandbox/records")
    def records():
        service = request.args.get("service", "")
        if service not in SERVICES:
            return jsonify(error=f"service 应为 {', '.join(SERVICES)} 之一"), 400
        limit = int(request.args.get("limit", "50"))
        with state.lock:
            rows = list(state.records[service])
            batches = [b for b in state.batches if b["service"] == service]
        patient = schema_for(service).patient_fields()
        body: dict[str, Any] = {
            "service": service, "count": len(rows), "batches": len(batches),
            "msgids": [b["msgid"] for b in batches],
            "records": [mask_record(r, patient) for r in rows[-limit:]] if limit > 0 else [],
        }
        if request.args.get("keys"):
            body["keys"] = [r.get(KEY_FIELDS[service]) for r in rows]
        return jsonify(body)

    @app.delete("/_sandbox/records")
    def clear_records():
        with state.lock:
            for rows in state.records.values():
                rows.clear()
            state.batches.clear()
            state.msgids.clear()
            state.accepted.clear()
        return jsonify(ok=True)

    @app.route("/_sandbox/faults", methods=["GET", "POST"])
    def faults():
        if request.method == "POST":
            body = request.get_json(force=True, silent=True) or {}
            if body.get("reset"):
                state.faults = {}
                state.plan.clear()
            unknown = set(body) - _FAULT_KEYS - {"reset", "inject"}
            if unknown:
                return jsonify(error=f"未知的故障参数 {', '.join(sorted(unknown))}"), 400
            if "inject" in body:
                try:
                    state.plan.configure(body.pop("inject"))
                except ValueError as exc:
                    return jsonify(error=str(exc)), 400
            state.faults = {**state.faults, **{k: v for k, v in body.items() if k != "reset"}}
        return jsonify(faults=state.faults, requests=state.requests, **state.plan.describe())

    return app


def _well_formed(ciphertext: str, output: str) -> bool:
    if output in ("hex", "HEX"):
        return len(ciphertext) % 2 == 0 and bool(_HEX.fullmatch(ciphertext))
    try:
        base64.b64decode(ciphertext, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def demo_config(base_url: str) -> tuple[dict[str, dict[str, str]], dict]:
    """A fresh SM2 key pair: the private key stays with the sandbox, the public key goes to the
    client's settings, with the sandbox's URL and a demo institution."""
    private_key, public_key = generate_sm2_keypair()
    profile = SM2Profile()
    # A demo starts with the last day or so of the demo hospital, not its whole history.
    since = (clock.local_now() - timedelta(days=1)).strftime("%Y-%m-%d 00:00:00")
    client = {
        "base_url": base_url.rstrip("/"),
        "fixmedins_code": DEMO_INSTITUTION_CODE,
        "fixmedins_name": DEMO_INSTITUTION_NAME,
        "public_key": public_key,
        "sm2_order": profile.order,
        "sm2_c1_prefix": "true" if profile.c1_prefix else "false",
        "sm2_format": profile.format,
        "sm2_output": profile.output,
        **{f"infno_{service}": infno for service, infno in DEMO_INFNO.items()},
        "initial_since": since,
    }
    sandbox = {"private_key": private_key, "fixmedins_code": DEMO_INSTITUTION_CODE,
               "fixmedins_name": DEMO_INSTITUTION_NAME, "sm2": profile.to_dict(),
               "max_data_chars": DEFAULT_MAX_DATA_CHARS}
    return {"shangrao_insurance": client}, sandbox
