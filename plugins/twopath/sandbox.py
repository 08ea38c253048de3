"""The sandbox platform (``/twopath`` under ``baosong sandbox``): a stateful stand-in for the Jiangxi
medical-insurance platform.

It verifies the gateway signature (CSB or TIF) and its time window, checks the envelope (msgid shape
and uniqueness, infver, institution, required fields) and every input against the same field tables
the plugin uses, issues sign_no on 9001 and refuses other calls without a valid one (expiring them
after ``sign_ttl_seconds``), answers 1101 for its demo people, keeps filings (2511 / 2503) with an
application number, answers 5311 / 5301 from what it keeps, revokes only unreviewed filings
(2512 / 2504), and reviews filings ``review_delay_seconds`` after they arrive (rejecting every
``reject_every``-th) so status synchronisation has something to find.

Admin endpoints for tests and the demo::

    GET  /_sandbox/records           filings, sign-ins, calls per interface
    POST /_sandbox/faults            {"error_rate": 0.5, "status": 500} / {"timeout_seconds": 5} /
                                     {"non_json": true} / {"slow_seconds": 2} / {"reject_field": "X"} /
                                     {"lose_response": true}  (process, then answer 502: outcome unknown)
                                     / {"inject": [{"fault": "drop_after_store", "count": 1}, ...]}
                                     (core.sandbox_faults: lost answers, dropped connections, truncated
                                     bodies, slow answers; counted or probabilistic) / {"reset": true}
    GET|POST /_sandbox/readings      where the documents are silent: {"duplicate_filing": "refuse"}
                                     (default: an overlapping 2511/2503 for the same person and drug or
                                     disease is refused) or "accept" (filed again: a second application)
    POST /_sandbox/clock             {"advance_seconds": 3600}  (sign-in expiry, review delay)
    POST /_sandbox/review            {"appno": "...", "decision": "approved" | "rejected"}
"""

from __future__ import annotations

import json
import random
import secrets as random_source
import threading
import time
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, jsonify, request

from core import sandbox_faults
from plugins.twopath import protocol, signature

PENDING, APPROVED, REJECTED, REVOKED = "pending", "approved", "rejected", "revoked"
READINGS = {"duplicate_filing": ("refuse", "accept")}
DEFAULT_STATUS_CODES = {PENDING: "0", APPROVED: "1", REJECTED: "2"}


def _id_number(region: str, birth: str, seq: str) -> str:
    """A well-formed (checksummed) fictitious resident ID number."""
    body = f"{region}{birth}{seq}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + check


def his_people(url: str, limit: int = 50000) -> list[dict[str, str]]:
    """The insured patients of a (demo) hospital database, as the platform would know them: the demo
    HIS and the sandbox share the same synthetic people, so 1101 finds whoever the HIS import finds."""
    import sqlalchemy as sa

    engine = sa.create_engine(url if "://" in url else f"sqlite:///{url}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT name, id_number, gender, nation, birth_date, insu_card_no, psn_no, insutype, insu_admdvs, "
                "emp_name FROM patients WHERE psn_no IS NOT NULL ORDER BY patient_id LIMIT :limit"), {"limit": limit})
            people = [{
                "psn_no": r.psn_no, "psn_name": r.name, "psn_cert_type": "01", "certno": r.id_number,
                "card_no": r.insu_card_no or "", "card_sn": "", "gend": r.gender or "", "naty": r.nation or "",
                "brdy": str(r.birth_date)[:10], "insutype": r.insutype or "", "insuplc_admdvs": r.insu_admdvs or "",
                "emp_name": r.emp_name or "",
            } for r in rows]
    finally:
        engine.dispose()
    return people


def demo_people() -> list[dict[str, str]]:
    names = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄涛"]
    people = []
    for i, name in enumerate(names):
        birth = f"19{50 + i * 5:02d}0{(i % 9) + 1}1{i}"
        people.append({
            "psn_no": f"36000000000000{1000 + i}",
            "psn_name": name, "psn_cert_type": "01",
            "certno": _id_number("360102", birth, f"{30 + i:02d}{i % 2 + 1}"),
            "card_no": f"36{i:02d}{7654321 + i}", "card_sn": f"SN{i:06d}",
            "gend": "1" if i % 2 == 0 else "2", "naty": "01",
            "brdy": f"{birth[:4]}-{birth[4:6]}-{birth[6:]}",
            "insutype": "310" if i % 3 else "390", "insuplc_admdvs": "360102" if i % 4 else "360100",
            "emp_name": "南昌某单位" if i % 3 else "",
        })
    return people


class State:
    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.offset = 0.0
        self.faults: dict[str, Any] = {}
        self.msgids: set[str] = set()
        self.signins: dict[str, dict[str, Any]] = {}  # sign_no -> {opter, at}
        self.filings: list[dict[str, Any]] = []
        self.calls: dict[str, int] = {}
        self.counter = 0
        self.plan = sandbox_faults.FaultPlan()
        self.readings = {name: choices[0] for name, choices in READINGS.items()}

    def now(self) -> float:
        return time.time() + self.offset

    def next_no(self) -> int:
        self.counter += 1
        return self.counter

    def review_due(self) -> None:
        """Decide filings whose review delay passed: approve, or reject every reject_every-th."""
        delay = float(self.config.get("review_delay_seconds", 120))
        every = int(self.config.get("reject_every", 4))
        for f in self.filings:
            if f["status"] == PENDING and self.now() >= f["received"] + delay:
                f["status"] = REJECTED if every and f["seq"] % every == 0 else APPROVED
                f["reviewed"] = self.now()


def make_app(config: dict[str, Any]) -> Flask:
    state = State(config)
    people = list(config.get("people") or demo_people())
    if config.get("his_database_url"):
        people += his_people(config["his_database_url"])
    app = Flask("twopath_sandbox")
    status_field = config.get("status_field", "chk_stas")
    status_codes = {**DEFAULT_STATUS_CODES, **config.get("status_codes", {})}

    @app.get("/_sandbox/records")
    def records():
        with state.lock:
            state.review_due()
            return jsonify({"filings": state.filings, "calls": state.calls,
                            "signins": list(state.signins.values()), "msgids": len(state.msgids)})

    @app.post("/_sandbox/faults")
    def faults():
        body = request.get_json(force=True, silent=True) or {}
        if "inject" in body:
            try:
                state.plan.configure(body.pop("inject"))
            except ValueError as exc:
                return jsonify({"error": str(exc)}), 400
        with state.lock:
            if body.get("reset"):
                state.faults = {}
                state.plan.clear()
            else:
                state.faults.update(body)
            return jsonify({"faults": state.faults, **state.plan.describe()})

    @app.route("/_sandbox/readings", methods=["GET", "POST"])
    def readings():
        if request.method == "POST":
            wanted = request.get_json(force=True, silent=True) or {}
            for name, value in wanted.items():
                if name not in READINGS or value not in READINGS[name]:
                    return jsonify({"error": f"未知的解读 {name}={value}"}), 400
            with state.lock:
                state.readings.update(wanted)
        with state.lock:
            return jsonify({"readings": dict(state.readings)})

    @app.post("/_sandbox/clock")
    def advance_clock():
        body = request.get_json(force=True, silent=True) or {}
        with state.lock:
            state.offset += float(body.get("advance_seconds", 0))
            state.review_due()
            return jsonify({"offset_seconds": state.offset})

    @app.post("/_sandbox/review")
    def review():
        body = request.get_json(force=True, silent=True) or {}
        with state.lock:
            for f in state.filings:
                if f["appno"] == body.get("appno") and f["status"] == PENDING:
                    f["status"] = APPROVED if body.get("decision", "approved") == "approved" else REJECTED
                    return jsonify({"filing": f})
        return jsonify({"error": "没有该待审核备案"}), 404

    @app.post("/", defaults={"path": ""})
    @app.post("/<path:path>")
    def transaction(path: str):
        rule = state.plan.draw(request.path)
        early = sandbox_faults.before_store(rule, request.environ)
        if early is not None:
            return early
        return sandbox_faults.after_store(rule, request.environ, app.make_response(transact(path)))

    def transact(path: str):
        faults = dict(state.faults)
        if faults.get("slow_seconds"):
            time.sleep(float(faults["slow_seconds"]))
        if faults.get("timeout_seconds"):
            time.sleep(float(faults["timeout_seconds"]))
        if faults.get("error_rate") and random.random() < float(faults["error_rate"]):
            return jsonify({"error": "注入的故障"}), int(faults.get("status", 500))
        if faults.get("non_json"):
            return "<html><body>502 Bad Gateway</body></html>", 200, {"Content-Type": "text/html"}
        try:
            envelope = json.loads(request.get_data(as_text=True))
        except ValueError:
            return jsonify({"error": "请求体不是 JSON"}), 400
        if not isinstance(envelope, dict):
            return jsonify({"error": "请求体不是 JSON 对象"}), 400
        infno = str(envelope.get("infno", ""))
        refusal = _check_gateway(config, raw_headers(request.environ), path, infno)
        if refusal:
            return jsonify({"code": "401", "message": refusal}), 401
        with state.lock:
            state.review_due()
            state.calls[infno] = state.calls.get(infno, 0) + 1
            answer = _handle(state, config, people, envelope, faults, status_field, status_codes)
        if faults.get("lose_response"):
            return jsonify({"error": "网关超时"}), 502  # processed, but the caller never learns the answer
        return app.response_class(json.dumps(answer, ensure_ascii=False), content_type="application/json")

    return app


def raw_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers including those with underscores (CSB's ``_api_*``), which WSGI servers
    drop from the environ to stop header spoofing; Baosong's servers (core.sandbox.RawHeadersHandler)
    keep them in ``environ["baosong.raw_headers"]``."""
    if "baosong.raw_headers" in environ:
        return {k.lower(): v for k, v in environ["baosong.raw_headers"]}
    return {k.lower(): v for k, v in request.headers.items()}


def _check_gateway(config: dict[str, Any], headers: dict[str, str], path: str, infno: str) -> str | None:
    gateway = config.get("gateway", "csb")
    now = time.time()
    if gateway == "csb":
        params = {k: headers.get(k, "") for k in ("_api_access_key", "_api_name", "_api_timestamp", "_api_version")}
        if not all(params.values()) or not headers.get("_api_signature"):
            return "缺少 CSB 认证头"
        if params["_api_access_key"] != config.get("csb_access_key"):
            return "AccessKey 无效"
        if params["_api_name"] != f"hsa-fsi-{infno}" or not path.endswith(params["_api_name"]):
            return "_api_name 与交易不符"
        if not params["_api_timestamp"].isdigit() or len(params["_api_timestamp"]) != 13:
            return "_api_timestamp 应为 13 位毫秒时间戳"
        if abs(int(params["_api_timestamp"]) / 1000 - now) > float(config.get("window_seconds", 300)):
            return "时间戳超出允许范围"
        expected = protocol.csb_signature(config.get("csb_secret_key", ""), params)
        if not random_source.compare_digest(expected, headers.get("_api_signature", "")):
            return "签名错误"
    elif gateway == "tif":
        ts, nonce = headers.get("x-tif-timestamp", ""), headers.get("x-tif-nonce", "")
        if headers.get("x-tif-paasid") != config.get("tif_paasid") or not ts or not nonce:
            return "缺少或错误的 TIF 认证头"
        if not ts.isdigit() or abs(int(ts) - now) > float(config.get("window_seconds", 180)):
            return "时间戳超出 ±180 秒"
        expected = protocol.tif_signature(ts, config.get("tif_token", ""), nonce)
        if not random_source.compare_digest(expected, headers.get("x-tif-signature", "").lower()):
            return "签名错误"
    return None


SHANGHAI = ZoneInfo("Asia/Shanghai")


def _stamp(moment: float, fmt: str) -> str:
    """The platform's times are Beijing time, whatever the sandbox machine's zone."""
    return datetime.fromtimestamp(moment, SHANGHAI).strftime(fmt)


def _handle(state: State, config: dict[str, Any], people: list[dict[str, str]], envelope: dict[str, Any],
            faults: dict[str, Any], status_field: str, status_codes: dict[str, str]) -> dict[str, Any]:
    received = state.now()
    refmsg_time = _stamp(received, "%Y%m%d%H%M%S%f")[:17]

    def answer(output: Any = None, error: str = "") -> dict[str, Any]:
        return {
            # The real platform sends infcode as a number or a string: the sandbox does both.
            "infcode": 0 if not error else "-1",
            "inf_refmsgid": f"{config.get('admdvs', '360100')}{_stamp(received, '%Y%m%d%H%M%S')}"
                            f"{state.next_no():010d}",
            "refmsg_time": refmsg_time, "respond_time": _stamp(state.now(), "%Y%m%d%H%M%S%f")[:17],
            "err_msg": error, "output": output if output is not None else {},
        }

    problems = protocol.validate_envelope(envelope)
    if problems:
        return answer(error="报文头校验失败：" + "；".join(str(p) for p in problems[:5]))
    infno = envelope["infno"]
    fixmedins_code = config.get("fixmedins_code", "")
    bad_msgid = protocol.msgid_problem(envelope["msgid"], fixmedins_code)
    if bad_msgid:
        return answer(error=bad_msgid)
    if envelope["msgid"] in state.msgids:
        return answer(error=f"发送方报文ID重复：{envelope['msgid']}")
    state.msgids.add(envelope["msgid"])
    if envelope["fixmedins_code"] != fixmedins_code:
        return answer(error="定点医药机构编号不符")
    if envelope["infver"] != config.get("infver", "V1.0"):
        return answer(error=f"接口版本号应为 {config.get('infver', 'V1.0')}")
    if infno not in protocol.INTERFACES:
        return answer(error=f"不支持的交易 {infno}")
    bad_signature = signature.verify_envelope(envelope, config)
    if bad_signature:
        return answer(error=bad_signature)
    if infno != "9001":
        signin = state.signins.get(envelope.get("sign_no") or "")
        ttl = float(config.get("sign_ttl_seconds", 43200))
        if signin is None or signin["opter"] != envelope["opter"]:
            return answer(error="签到流水号无效，请先签到【9001】")
        if received > signin["at"] + ttl:
            return answer(error="签到已过期，请重新签到【9001】")
    input_node = envelope.get("input")
    problems = protocol.validate_input(infno, input_node)
    if problems:
        return answer(error="输入校验失败：" + "；".join(str(p) for p in problems[:5]))
    rejected = faults.get("reject_field")
    if rejected and any(rejected in r for r in protocol.records_from_input(infno, input_node)):
        return answer(error=f"字段 {rejected} 不合法")
    data = input_node.get(protocol.node_name(infno)) or {}

    if infno == "9001":
        sign_no = f"{_stamp(received, '%Y%m%d%H%M%S')}{state.next_no():08d}"
        state.signins[sign_no] = {"opter": envelope["opter"], "at": received, "sign_no": sign_no}
        return answer({"signinoutb": {"sign_time": _stamp(received, "%Y-%m-%d %H:%M:%S"), "sign_no": sign_no}})
    if infno == "9002":
        if data.get("sign_no") != envelope.get("sign_no") or data.get("opter_no") != envelope["opter"]:
            return answer(error="签退的签到号与经办人不符")
        state.signins.pop(data["sign_no"], None)
        return answer({"signoutoutb": {"sign_time": _stamp(received, "%Y-%m-%d %H:%M:%S")}})
    if infno == "1309":
        return answer({"data": [dict(row, ver=str(config.get("catalogue_ver", "20250101"))) for row in _catalogue(config)]})
    if infno == "1101":
        person = _find_person(people, data)
        if person is None:
            return answer(error="未查询到该人员的参保信息")
        base = {k: person[k] for k in ("psn_no", "psn_cert_type", "certno", "psn_name", "gend", "naty", "brdy")}
        base["age"] = date.today().year - int(person["brdy"][:4])
        insu = {"insutype": person["insutype"], "psn_type": "11", "psn_insu_stas": "1",
                "insuplc_admdvs": person["insuplc_admdvs"], "emp_name": person.get("emp_name", ""),
                "balc": 0, "psn_insu_date": "2015-01-01", "paus_insu_date": "", "cvlserv_flag": "0"}
        return answer({"baseinfo": base, "insuinfo": [insu], "idetinfo": []})

    known = {p["psn_no"]: p for p in people}
    psn_no = data.get("psn_no", "")
    if infno in ("2511", "2503", "5311", "5301", "2504", "5205") and known and psn_no not in known:
        return answer(error="人员编号不存在")
    if infno == "5205":
        return answer({"feedetail": _medication(state, psn_no, data, config)})
    if infno in ("2511", "2503"):
        kind = "twopath" if infno == "2511" else "chronic"
        codes = ([d["med_list_codg"] for d in input_node.get("twopathdruglist", [])] if kind == "twopath"
                 else [data["opsp_dise_code"]])
        for f in state.filings if state.readings["duplicate_filing"] == "refuse" else ():
            if f["kind"] == kind and f["psn_no"] == psn_no and f["status"] in (PENDING, APPROVED) \
                    and set(codes) & set(f["codes"]) and f["begndate"] <= (data.get("enddate") or "9999") \
                    and data["begndate"] <= (f["enddate"] or "9999"):
                return answer(error=f"该人员已有有效或待审核的备案（{f['appno']}），不能重复申请")
        seq = state.next_no()
        appno = f"{'SCT' if kind == 'twopath' else 'MTB'}{_stamp(received, '%Y%m%d%H%M%S')}{seq:06d}"
        state.filings.append({
            "kind": kind, "appno": appno, "seq": len(state.filings) + 1, "psn_no": psn_no, "codes": codes,
            "begndate": data.get("begndate", ""), "enddate": data.get("enddate", ""), "status": PENDING,
            "received": received, "msgid": envelope["msgid"], "input": input_node,
        })
        return answer({"result": {protocol.APPNO_FIELD[infno]: appno}})
    if infno == "5311":
        rows = []
        for f in state.filings:
            if f["kind"] == "twopath" and f["psn_no"] == psn_no and f["status"] != REVOKED \
                    and f["begndate"] <= data["enddate"] and data["begndate"] <= (f["enddate"] or "9999"):
                row = dict(f["input"]["data"])
                row["twopathdruglist"] = f["input"].get("twopathdruglist", [])
                row["twopathfixmedins"] = f["input"].get("twopathfixmedins", [])
                row["two_path_reg_sn"] = f["appno"]  # extension fields (not in the 5311 table)
                row[status_field] = status_codes[f["status"]]
                rows.append(row)
        return answer({"result": rows})
    if infno == "5301":
        rows = [{"opsp_dise_code": f["input"]["data"]["opsp_dise_code"],
                 "opsp_dise_name": f["input"]["data"]["opsp_dise_name"],
                 "begndate": f["begndate"], "enddate": f["enddate"],
                 "trt_dcla_detl_sn": f["appno"], status_field: status_codes[f["status"]]}
                for f in state.filings if f["kind"] == "chronic" and f["psn_no"] == psn_no and f["status"] != REVOKED]
        return answer({"feedetail": rows})
    if infno in ("2512", "2504"):
        wanted = data["two_path_reg_sn_list"] if infno == "2512" else [data["trt_dcla_detl_sn"]]
        targets = []
        for appno in wanted:
            match = next((f for f in state.filings if f["appno"] == appno), None)
            if match is None:
                return answer(error=f"备案 {appno} 不存在")
            if match["status"] != PENDING:
                return answer(error=f"备案 {appno} 已审核或已撤销，只能撤销未审核的备案")
            targets.append(match)
        for f in targets:  # all or nothing
            f["status"] = REVOKED
        return answer({})
    return answer(error=f"不支持的交易 {infno}")


DEMO_CATALOGUE = [
    ("M03900", "高血压", "M039", "循环系统疾病", "1"), ("M03901", "糖尿病", "M039", "内分泌疾病", "1"),
    ("M07800", "慢性阻塞性肺疾病", "M078", "呼吸系统疾病", "1"), ("M05500", "冠心病", "M055", "循环系统疾病", "1"),
    ("M01600", "恶性肿瘤门诊治疗", "M016", "肿瘤", "1"), ("M02300", "慢性肾功能衰竭（透析）", "M023", "泌尿系统疾病", "1"),
    ("M06900", "类风湿关节炎", "M069", "免疫系统疾病", "1"), ("M04500", "帕金森病", "M045", "神经系统疾病", "1"),
]


def _catalogue(config: dict[str, Any]) -> list[dict[str, str]]:
    """1309's rows (fields of schemas/1309.json output): the demo catalogue unless configured."""
    rows = config.get("catalogue") or [
        {"opsp_dise_code": c, "opsp_dise_name": n, "opsp_dise_majcls_code": mc, "opsp_dise_majcls_name": mn,
         "opsp_dise_subd_clss_name": n, "admdvs": config.get("admdvs", "360100"), "vali_flag": v,
         "ver_name": "江西省门慢门特病种目录"} for c, n, mc, mn, v in DEMO_CATALOGUE]
    return [dict(r) for r in rows]


DEMO_MEDICATIONS = [
    ("XL01XC03", "曲妥珠单抗注射液", "440mg/瓶", 1, 5960.0), ("XA10BJ06", "司美格鲁肽注射液", "1.34mg/ml*1.5ml", 2, 439.0),
    ("XC09CA01", "氯沙坦钾片", "50mg*7片", 4, 12.6), ("XA10BA02", "盐酸二甲双胍片", "0.5g*20片", 6, 8.4),
]


def _medication(state: State, psn_no: str, data: dict[str, Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    """5205's rows (fields of schemas/5205.json output) for one person: deterministic per person, one fill
    a month over the period asked, from the configured or demo drugs."""
    begin = datetime.strptime(data["begntime"], "%Y-%m-%d %H:%M:%S")
    end = datetime.strptime(data["endtime"], "%Y-%m-%d %H:%M:%S") if data.get("endtime") else \
        datetime.fromtimestamp(state.now(), SHANGHAI).replace(tzinfo=None)
    drugs = config.get("medications") or DEMO_MEDICATIONS
    pick = drugs[sum(map(ord, psn_no)) % len(drugs)]
    rows, moment, n = [], begin + timedelta(days=3), 0
    while moment <= end and n < 24:
        n += 1
        code, name, spec, cnt, price = pick
        rows.append({
            "feedetl_sn": f"FY{moment:%Y%m%d}{n:06d}", "rx_drord_no": f"CF{moment:%Y%m%d}{n:04d}",
            "fixmedins_code": config.get("fixmedins_code", ""), "fixmedins_name": "江西中医药大学附属医院",
            "psn_no": psn_no, "med_type": "14", "fee_ocur_time": f"{moment:%Y-%m-%d} 10:00:00", "cnt": cnt,
            "pric": price, "chrgitm_lv": "01", "hilist_code": code, "hilist_name": name, "list_type": "101",
            "med_list_codg": code, "medins_list_codg": code, "medins_list_name": name, "med_chrgitm_type": "09",
            "prodname": name, "spec": spec, "dosform_name": "", "lmt_used_flag": "0", "hosp_prep_flag": "0",
            "hosp_appr_flag": "0", "tcmdrug_used_way": "", "prodplac_type": "1", "bas_medn_flag": "0",
            "hi_nego_drug_flag": "1", "chld_medc_flag": "0", "etip_flag": "0", "etip_hosp_code": "",
            "dscg_tkdrug_flag": "0", "list_sp_item_flag": "0", "matn_fee_flag": "0",
        })
        moment += timedelta(days=30)
    return rows


def _find_person(people: list[dict[str, str]], data: dict[str, Any]) -> dict[str, str] | None:
    kind, number = data.get("mdtrt_cert_type"), data.get("mdtrt_cert_no")
    for person in people:
        if kind == "02" and number == person["certno"]:
            return person
        if kind == "03" and number == person.get("card_no"):
            return person
        if kind == "01" and number in (person["certno"], person["psn_no"]):
            return person
    return None


# --- demo wiring ---------------------------------------------------------------------------------------

DEMO_FIXMEDINS_CODE = "H36010200001"


def demo_config(base_url: str) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    from core.config import Config

    his_url = Config.from_env().his_database_url
    access_key = random_source.token_hex(8)
    secret = random_source.token_urlsafe(24)
    client_settings = {
        "twopath": {
            "base_url": base_url, "url_template": "{base}/CSB/hsa-fsi-{infno}", "gateway": "csb",
            "csb_access_key": access_key, "csb_secret_key": secret, "csb_api_version": "1.0.0",
            "fixmedins_code": DEMO_FIXMEDINS_CODE, "fixmedins_name": "江西中医药大学附属医院",
            "mdtrtarea_admvs": "360100", "poolarea_no": "360100", "recer_sys_code": "JXYB",
            "infver": "V1.0", "opter_type": "1", "mac": "00-16-3E-00-00-01", "ip": "10.0.0.8",
            "query_status_field": "chk_stas", "status_pending_values": "0", "status_approved_values": "1",
            "status_rejected_values": "2",
        }
    }
    sandbox_config = {
        "gateway": "csb", "csb_access_key": access_key, "csb_secret_key": secret,
        "fixmedins_code": DEMO_FIXMEDINS_CODE, "infver": "V1.0", "admdvs": "360100",
        "sign_ttl_seconds": 4 * 3600, "review_delay_seconds": 90, "reject_every": 4,
        "status_field": "chk_stas", "people": demo_people(),
        # the demo hospital's insured patients are the platform's people too (1101 finds HIS imports)
        "his_database_url": his_url if his_url and _sqlite_file_exists(his_url) else "",
    }
    return client_settings, sandbox_config


def _sqlite_file_exists(url: str) -> bool:
    import os

    return url.startswith("sqlite:///") and os.path.exists(url.removeprefix("sqlite:///"))


DEMO_DRUGS = [("XL01XC03", "曲妥珠单抗注射液"), ("XL01XE13", "阿法替尼片"), ("XL04AC10", "司库奇尤单抗注射液"),
              ("XA10BJ06", "司美格鲁肽注射液"), ("XL01XX52", "维奈克拉片")]
DEMO_DISEASES = [("M03900", "高血压"), ("M03901", "糖尿病"), ("M07800", "慢性阻塞性肺疾病"),
                 ("M05500", "冠心病"), ("M01600", "恶性肿瘤门诊治疗")]


DEMO_INSTITUTIONS = [(DEMO_FIXMEDINS_CODE, "江西中医药大学附属医院", "360100"),
                     ("P36010200012", "南昌双通道定点药房（八一大道店）", "360100"),
                     ("P36010200027", "江西大参林连锁药店（青山湖店）", "360100")]


def seed() -> None:
    """Demo catalogues and applications in several states; the submitted ones are queued, so the demo
    worker sends them and the sandbox reviews them over time."""
    from core.db import db
    from plugins.twopath import filings
    from plugins.twopath.models import Disease, Drug, Institution

    if db.session.execute(db.select(Drug).limit(1)).first() is None:
        db.session.add_all(Drug(code=c, name=n) for c, n in DEMO_DRUGS)
        db.session.add_all(Disease(code=c, name=n) for c, n in DEMO_DISEASES)
        db.session.add_all(Institution(code=c, name=n, poolarea_no=p) for c, n, p in DEMO_INSTITUTIONS)
        db.session.commit()
    from core.models import Task

    # The demo reviews filings after 90 s: synchronise every 5 minutes so the changes show soon.
    task = db.session.execute(db.select(Task).filter_by(report_type="twopath.sync")).scalar_one_or_none()
    if task is not None:
        task.cron = "*/5 * * * *"
        db.session.commit()
    from core.config import Config

    his_url = Config.from_env().his_database_url
    # The demo HIS's own patients when there is one: the review page then shows their visits.
    people = (his_people(his_url, limit=8) if his_url and _sqlite_file_exists(his_url) else []) or demo_people()
    today = date.today()
    for i, person in enumerate(people):
        kind = "twopath" if i % 2 == 0 else "chronic"
        item = DEMO_DRUGS[i % len(DEMO_DRUGS)] if kind == "twopath" else DEMO_DISEASES[i % len(DEMO_DISEASES)]
        appy = today - timedelta(days=40 * (len(people) - i))
        values = {
            "psn_no": person["psn_no"], "psn_name": person["psn_name"], "certno": person["certno"],
            "psn_cert_type": "01", "gend": person["gend"], "naty": "01", "brdy": person["brdy"],
            "insutype": person["insutype"], "insuplc_admdvs": person["insuplc_admdvs"], "card_no": person["card_no"],
            "addr": "江西省南昌市", "tel": "13800000000", "appy_date": f"{appy:%Y-%m-%d}",
            "begndate": f"{appy:%Y-%m-%d}", "enddate": f"{appy + timedelta(days=365):%Y-%m-%d}",
            "cond_abst": "病理诊断明确" if kind == "twopath" else "",
            "hosp_ide_date": f"{appy:%Y-%m-%d}", "item_code": item[0], "item_name": item[1],
        }
        filing = filings.create_filing(kind, values, actor="demo")
        if i in (0, 1):
            continue  # stays a draft
        filings.doctor_approve(filing, f"D{1000 + i}", ["周医生", "吴医生", "郑医生"][i % 3], actor="demo")
        if i == 2:
            continue  # approved by the doctor, not yet submitted
        filings.submit(filing, actor="demo", opter="demo", opter_name="演示操作员")
