"""Talking to the platform: envelopes, msgid sequence, gateway headers, sign-in per operator, answers,
and interactive calls that run through the core pipeline in-process so they are in the ledger too.
"""

from __future__ import annotations

import json
import secrets as random_source
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from core import clock, ledger, pipeline
from core.db import db
from core.errors import AlreadyDelivered, ConfigurationError, RejectUpload, RetryLater
from core.hook_types import OutboundRequest, Outcome, Payload, Response, Settings, UploadContext, UploadPlan
from core.models import Upload, UploadStatus
from core.plugins import registry
from plugins.twopath import delivery, protocol, signature
from plugins.twopath.models import SignIn

REGULATOR = "twopath"
SYNC = "twopath.sync"
SIGN_EXPIRED = "SIGN_EXPIRED"
QUERY_FIRST = "QUERY_FIRST"


NO_OPERATOR = "您的账号没有医保经办人编号（opter），不能签到医保平台：请管理员在「用户」页面填写经办人编号与姓名"


class NoOperator(ConfigurationError):
    """The signed-in user has no insurance operator code: the platform cannot be used on their behalf."""


def operator_of(user: Any) -> tuple[str, str, str]:
    """(opter, opter_name, opter_type) of a Baosong user, as the envelope and 9001 carry them.
    Raises NoOperator when the user has no operator code (the platform would refuse the sign-in)."""
    opter = (getattr(user, "opter", "") or "").strip()
    if not opter:
        raise NoOperator(NO_OPERATOR)
    name = (getattr(user, "opter_name", "") or getattr(user, "display_name", "") or opter).strip()
    return opter[:30], name[:50], (getattr(user, "opter_type", "") or "1")


class TransientError(RetryLater):
    """Something needed before sending failed (sign-in, the query before a re-send): a retryable
    failure, and nothing was sent."""


def interface_of(upload: UploadContext) -> str:
    """The interface number: the report type's suffix, or for status sync the query its row names."""
    suffix = upload.report_type.name.split(".", 1)[1]
    if suffix == "sync":
        return str(upload.rows[0]["infno"])
    return suffix


def _need(settings: Settings, key: str) -> str:
    value = settings.get(key)
    if not value:
        raise ConfigurationError(f"医保平台设置缺少「{key}」")
    return value


# --- msgid ---------------------------------------------------------------------------------------

def _sequence(fixmedins_code: str, stamp: str) -> int | None:
    """The next 4-digit sequence for this second (Redis INCR shared by every process), None when this
    second's 9999 numbers are used up."""
    from core.queue import connection

    conn = connection()
    key = f"twopath:msgseq:{fixmedins_code}:{stamp}"
    value = int(conn.incr(key))
    if value == 1:
        conn.expire(key, 10)
    return value if value <= 9999 else None


def next_msgid(fixmedins_code: str) -> tuple[str, str]:
    """(msgid, inf_time) for one send: unique per send, as the spec's sequence number asks."""
    for _ in range(50):
        moment = clock.local_now()
        seq = _sequence(fixmedins_code, f"{moment:{protocol.MSGID_TIME_FORMAT}}")
        if seq is not None:
            return protocol.make_msgid(fixmedins_code, moment, seq), f"{moment:{protocol.INF_TIME_FORMAT}}"
        time.sleep(0.05)
    raise TransientError("本秒报文顺序号已用完，稍后重试")


# --- sign-in (9001) ------------------------------------------------------------------------------

def _sign_in_valid(row: SignIn | None, settings: Settings) -> bool:
    if row is None or not row.sign_no or row.invalidated_at is not None:
        return False
    max_age = int(settings.get("sign_max_age_minutes", "0") or 0)
    if max_age > 0:
        return clock.from_db(row.obtained_at) + timedelta(minutes=max_age) > clock.now()
    return True


def current_sign_no(opter: str, opter_name: str, settings: Settings, actor: str | None = None,
                    opter_type: str | None = None) -> str:
    """The operator's cached sign_no, signing in (9001, through the ledger) when there is none or it
    expired."""
    if not opter:
        raise NoOperator(NO_OPERATOR)
    row = db.session.get(SignIn, opter)
    if _sign_in_valid(row, settings):
        return row.sign_no
    upload = sign_in(opter, opter_name, actor=actor, opter_type=opter_type)
    if upload.status != UploadStatus.SUCCEEDED:
        raise TransientError(f"签到【9001】失败：{upload.last_message or upload.status_label}")
    row = db.session.get(SignIn, opter)
    db.session.refresh(row)
    return row.sign_no


def sign_in_input(opter: str, settings: Settings) -> dict[str, Any]:
    """9001's input node (specs README: ``{"signIn": {opter_no, mac, ip}}``)."""
    return {"signIn": {"opter_no": opter, "mac": settings.get("mac"), "ip": settings.get("ip")}}


def sign_in(opter: str, opter_name: str, actor: str | None = None, opter_type: str | None = None) -> Upload:
    if not opter:
        raise NoOperator(NO_OPERATOR)
    settings = _settings()
    row = {
        "opter": opter, "opter_name": opter_name, "opter_type": opter_type or "", "insuplc_admdvs": "",
        "input": sign_in_input(opter, settings),
    }
    return call_now("twopath.9001", row, label=f"签到 {opter}", search_keys=[opter], actor=actor)


def sign_out(opter: str, opter_name: str, actor: str | None = None, opter_type: str | None = None) -> Upload | None:
    """9002 for the operator's valid sign-in (None when there is none: nothing to sign out)."""
    row = db.session.get(SignIn, opter) if opter else None
    if row is None or not row.sign_no or row.invalidated_at is not None:
        return None
    data = {"signOut": {"sign_no": row.sign_no, "opter_no": opter}}
    return call_now("twopath.9002", {"opter": opter, "opter_name": opter_name, "opter_type": opter_type or "",
                                     "insuplc_admdvs": "", "input": data},
                    label=f"签退 {opter}", search_keys=[opter], actor=actor)


def invalidate_sign_in(opter: str) -> None:
    row = db.session.get(SignIn, opter)
    if row is not None and row.invalidated_at is None:
        row.invalidated_at = clock.utc_naive(clock.now())
        db.session.commit()


def store_sign_in(opter: str, sign_no: str, sign_time: str, upload_id: int) -> None:
    row = db.session.get(SignIn, opter)
    if row is None:
        row = SignIn(opter=opter)
        db.session.add(row)
    else:
        row.renewals += 1
    row.sign_no, row.sign_time, row.upload_id = sign_no, sign_time, upload_id
    row.obtained_at, row.invalidated_at = clock.utc_naive(clock.now()), None
    db.session.commit()


def _settings() -> Settings:
    from core.settings import regulator_settings

    return regulator_settings(REGULATOR)


# --- interactive calls through the pipeline ------------------------------------------------------

def call_now(report_type: str, row: dict[str, Any], *, label: str, search_keys: list[str] | None = None,
             actor: str | None = None) -> Upload:
    """Plan one upload and run its attempt in this process (a person waits for the answer, or a send
    needs it first). A failure is not left to the automatic retries: the caller decides."""
    rt = registry().report_type(report_type)
    key = f"{label}:{clock.local_now():%Y%m%d%H%M%S}:{random_source.token_hex(4)}"
    ids = ledger.record_plans(rt, [UploadPlan(business_key=key, period=f"{clock.local_now():%Y-%m-%d}",
                                              rows=[row], search_keys=search_keys or [])], actor=actor)
    upload_id = ids[0]
    pipeline.attempt(upload_id, 0)
    upload = db.session.get(Upload, upload_id)
    db.session.refresh(upload)
    if upload.status == UploadStatus.RETRY_WAIT and upload.last_code == SIGN_EXPIRED:
        pipeline.attempt(upload_id, upload.attempts)  # signed in again on this attempt
        db.session.refresh(upload)
    if upload.status not in UploadStatus.FINAL:
        ledger.cancel(upload)
        db.session.commit()
    return upload


# --- build_payload / sign / parse_response --------------------------------------------------------

_sent_msgids: dict[tuple[int, int], str] = {}  # (upload id, attempt) -> msgid, for the search keys


def build(upload: UploadContext) -> Payload:
    infno = interface_of(upload)
    if infno not in protocol.INTERFACES:
        raise RejectUpload(f"交易 {infno} 没有字段表，拒绝发送")
    settings = upload.settings
    row = upload.rows[0]
    if delivery.must_query_first(upload, infno, row):
        found = query_before_resend(upload, infno, row)
        if found is not None:
            appno = found.get("appno", "")
            raise AlreadyDelivered(
                f"重发前查询【{found.get('query_infno')}】确认平台已有该备案，未重复申请"
                + (f"；申请号 {appno}" if appno else "；查询结果未给出申请号"),
                result={"appno": appno, "found_by_query": True, "platform_status": found.get("status", "")},
                code=QUERY_FIRST, search_keys=[appno])
    input_node = checked_input(infno, row["input"])
    opter = row.get("opter") or settings.get("default_opter")
    opter_name = row.get("opter_name") or settings.get("default_opter_name")
    opter_type = row.get("opter_type") or settings.get("opter_type", "1")
    if not opter:
        raise RejectUpload(NO_OPERATOR)
    if infno == "9001":
        sign_no = ""
    elif infno == "9002":
        sign_no = str(input_node.get("signOut", {}).get("sign_no") or "")
    else:
        sign_no = current_sign_no(opter, opter_name, settings, opter_type=opter_type)
    envelope = make_envelope(infno, input_node, settings, opter=opter, opter_name=opter_name,
                             opter_type=opter_type, sign_no=sign_no, insuplc_admdvs=row.get("insuplc_admdvs") or "")
    _sent_msgids[(upload.id, upload.attempt_no)] = envelope["msgid"]
    return Payload(records=protocol.records_from_input(infno, input_node), document=envelope)


def make_envelope(infno: str, input_node: dict[str, Any], settings: Settings, *, opter: str, opter_name: str,
                  opter_type: str, sign_no: str, insuplc_admdvs: str = "") -> dict[str, Any]:
    """The 1.1 envelope around an ``input`` node: msgid from the shared sequence, cainfo/signtype from the
    configured signer, checked against the envelope table (RejectUpload names what is wrong). Every call
    to the platform, uploads and the 测试连接 sign-in alike, is built here."""
    cainfo, signtype = signature.sign_envelope(input_node, settings)
    fixmedins_code = _need(settings, "fixmedins_code")
    msgid, inf_time = next_msgid(fixmedins_code)
    envelope = {
        "infno": infno,
        "msgid": msgid,
        "mdtrtarea_admvs": _need(settings, "mdtrtarea_admvs"),
        "insuplc_admdvs": insuplc_admdvs,
        "recer_sys_code": _need(settings, "recer_sys_code"),
        "dev_no": settings.get("dev_no"),
        "dev_safe_info": "",
        "cainfo": cainfo,  # "" unless a signer is configured (plugins/twopath/signature.py)
        "signtype": signtype,
        "infver": settings.get("infver", "V1.0"),
        "opter_type": opter_type,
        "opter": opter,
        "opter_name": opter_name,
        "inf_time": inf_time,
        "fixmedins_code": fixmedins_code,
        "fixmedins_name": _need(settings, "fixmedins_name"),
        "sign_no": sign_no,
        "input": input_node,
    }
    problems = protocol.validate_envelope(envelope)
    if problems:
        raise RejectUpload("报文头校验未通过：" + "；".join(str(p) for p in problems[:20]))
    return envelope


def checked_input(infno: str, planned_input: dict[str, Any]) -> dict[str, Any]:
    """The ``input`` node as sent (1.4 applied) from a planned row's input, checked against the
    interface's field table (RejectUpload names the problems)."""
    input_node = protocol.build_input(infno, _flat_values(infno, planned_input))
    problems = protocol.validate_input(infno, input_node)
    if problems:  # also checked by the core for the named report types; sync queries are checked here
        raise RejectUpload("字段校验未通过：" + "；".join(str(p) for p in problems[:20]))
    return input_node


def _flat_values(infno: str, input_node: dict[str, Any]) -> dict[str, Any]:
    """Planned rows keep the input node; build_input wants the flat record (lists folded in)."""
    sch = protocol.schema(infno)
    string_list = sch.interface.get("string_list")
    node = dict(input_node.get(protocol.node_name(infno)) or {})
    if string_list:
        return node
    for name in sch.interface.get("lists", []):
        node[name] = input_node.get(name, [])
    return node


def sign_request(upload: UploadContext, payload: Payload) -> OutboundRequest:
    return outbound_request(payload.document, upload.settings)


def outbound_request(document: dict[str, Any], settings: Settings) -> OutboundRequest:
    """The HTTP request for one envelope: URL from the template, gateway headers (CSB or TIF)."""
    infno = document["infno"]
    body = json.dumps(document, ensure_ascii=False)  # json escapes " and \ as 1.4 asks
    url = protocol.url_for(settings.get("url_template", "{base}/CSB/hsa-fsi-{infno}"),
                           _need(settings, "base_url"), infno)
    headers = {"Content-Type": "application/json;charset=utf-8"}
    gateway = settings.get("gateway", "csb")
    now = clock.now()
    if gateway == "csb":
        headers.update(protocol.csb_headers(
            infno, _need(settings, "csb_access_key"), _need(settings, "csb_secret_key"),
            settings.get("csb_api_version", "1.0.0"), int(now.timestamp() * 1000)))
    elif gateway == "tif":
        headers.update(protocol.tif_headers(
            _need(settings, "tif_paasid"), _need(settings, "tif_token"), int(now.timestamp()),
            random_source.token_hex(16)))
    elif gateway != "none":
        raise ConfigurationError(f"未知的网关类型 {gateway}（可选：{', '.join(protocol.GATEWAYS)}）")
    return OutboundRequest(
        url=url, body=body, headers=headers, timeout=float(settings.get("timeout_seconds", "30")),
        plaintext=body, secret_headers=frozenset(h for h in headers if h in protocol.SIGNATURE_HEADERS),
    )


def parse(upload: UploadContext, response: Response) -> Outcome:
    infno = interface_of(upload)
    row = upload.rows[0]
    if response.status is None:
        return Outcome("retry", None, response.error or "网络错误")
    if response.status in (401, 403):
        return Outcome("reject", str(response.status), f"网关拒绝（HTTP {response.status}）：{response.body[:200]}"
                       "；请检查网关类型、密钥与时间同步")
    if response.status >= 500 or response.status == 429:
        return Outcome("retry", str(response.status), f"平台暂时不可用（HTTP {response.status}）")
    if response.status != 200:
        return Outcome("reject", str(response.status), f"HTTP {response.status}：{response.body[:200]}")
    try:
        answer = json.loads(response.body)
        if not isinstance(answer, dict):
            raise ValueError
    except ValueError:
        return Outcome("retry", None, f"应答不是 JSON：{response.body[:120]}")
    code = protocol.parse_infcode(answer.get("infcode"))
    msgid = _sent_msgids.pop((upload.id, upload.attempt_no), "")
    keys = [k for k in (msgid, str(answer.get("inf_refmsgid") or "")) if k]
    if code is None:
        return Outcome("retry", str(answer.get("infcode")), "应答缺少可识别的 infcode", search_keys=keys)
    err_msg = str(answer.get("err_msg") or "")
    if code != 0:
        keywords = [k for k in upload.settings.get("sign_expired_keywords", "签到").split(",") if k.strip()]
        if infno not in ("9001", "9002") and any(k.strip() in err_msg for k in keywords):
            invalidate_sign_in(row.get("opter") or upload.settings.get("default_opter"))
            return Outcome("retry", SIGN_EXPIRED, f"签到已失效（{err_msg}），重试时重新签到", search_keys=keys)
        if delivery.revocation_took_effect(upload, infno, row):
            return Outcome("success", QUERY_FIRST, f"查询确认前次撤销已生效，平台已无该备案（{err_msg}）",
                           search_keys=keys)
        return Outcome("reject", str(code), err_msg or "平台返回失败", search_keys=keys)
    output = answer.get("output") or {}
    if isinstance(output, str):  # some deployments send output as a JSON string
        try:
            output = json.loads(output) if output.strip() else {}
        except ValueError:
            output = {}
    result, message = _result_of(infno, output, upload.settings)
    return Outcome("success", "0", message, result=result, search_keys=keys + _result_keys(result))


def _result_keys(result: dict[str, Any]) -> list[str]:
    return [str(result[k]) for k in ("appno", "psn_no") if result.get(k)]


def _result_of(infno: str, output: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    if infno == "9001":
        info = output.get("signinoutb") or {}
        return {"sign_no": str(info.get("sign_no") or ""), "sign_time": str(info.get("sign_time") or "")}, "签到成功"
    if infno == "9002":
        info = output.get("signoutoutb") or {}
        return {"sign_time": str(info.get("sign_time") or "")}, "签退成功"
    if infno == "1309":
        return catalogue_rows(output)
    if infno == "5205":
        records = [{k: v for k, v in r.items() if k != "psn_no"} for r in _first_list(output)]
        return {"records": records}, f"查询到 {len(records)} 条用药记录"
    if infno == "1101":
        base = output.get("baseinfo") or {}
        insu = output.get("insuinfo") or []
        first = insu[0] if isinstance(insu, list) and insu else {}
        person = {k: str(base.get(k) or "") for k in ("psn_no", "psn_name", "certno", "psn_cert_type", "gend",
                                                      "naty", "brdy")}
        person.update({k: str(first.get(k) or "") for k in ("insutype", "insuplc_admdvs", "emp_name")})
        return person, "已取得人员信息" if person["psn_no"] else "平台未返回人员编号"
    if infno in protocol.APPNO_FIELD:
        result = output.get("result") or {}
        appno = str(result.get(protocol.APPNO_FIELD[infno]) or "") if isinstance(result, dict) else ""
        return {"appno": appno}, f"平台已受理，申请号 {appno}" if appno else "平台已受理（未返回申请号）"
    if infno in ("5311", "5301"):
        rows = query_rows(infno, output, settings)
        return {"query_rows": rows}, f"查询到 {len(rows)} 条备案"
    return {}, "成功"  # 2512 / 2504: the output is empty


def _first_list(output: Any) -> list[dict[str, Any]]:
    """A multi-row output whose node name the sources do not give: the first list of objects in it."""
    if isinstance(output, list):
        return [r for r in output if isinstance(r, dict)]
    if isinstance(output, dict):
        for value in output.values():
            if isinstance(value, list) and all(isinstance(r, dict) for r in value):
                return value
    return []


CATALOGUE_FIELDS = ("opsp_dise_code", "opsp_dise_name", "opsp_dise_majcls_code", "opsp_dise_majcls_name",
                    "opsp_dise_subd_clss_name", "admdvs", "vali_flag", "ver", "ver_name")


def catalogue_rows(output: Any) -> tuple[dict[str, Any], str]:
    """1309's answer: the disease rows (lower-case names, 1.4), or the file the platform would have us
    fetch with 9102, which our documents do not cover."""
    if isinstance(output, dict) and output.get("file_qury_no"):
        return ({"catalogue": [], "file_qury_no": str(output["file_qury_no"]), "filename": str(output.get("filename") or "")},
                "平台以文件方式答复（需【9102】文件下载，不在本院文档范围内）：未取得目录")
    rows = [{k: str(r.get(k, r.get(k.upper(), "")) or "") for k in CATALOGUE_FIELDS} for r in _first_list(output)]
    return {"catalogue": [r for r in rows if r["opsp_dise_code"]]}, f"下载到 {len(rows)} 条病种"


def query_rows(infno: str, output: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The query's answer, compact and without patient data: one dict per filing the platform holds.

    5311 answers ``result`` (multi-row) with ``twopathdruglist``/``twopathfixmedins``; with several rows
    the lists are read from inside each row when present, else from the output's top level. 5301
    answers ``feedetail``. Neither table documents a status or an application number: the status is
    read from the field the setting ``query_status_field`` names, the number from the names the filing
    interfaces' outputs use, when the platform sends them.
    """
    status_field = settings.get("query_status_field")
    node = output.get("result" if infno == "5311" else "feedetail") or []
    items = node if isinstance(node, list) else [node]
    rows = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if infno == "5311":
            drugs = item.get("twopathdruglist", output.get("twopathdruglist")) or []
            codes = [str(d.get("med_list_codg") or "") for d in drugs if isinstance(d, dict)]
            appno = str(item.get("two_path_reg_sn") or "")
        else:
            codes = [str(item.get("opsp_dise_code") or "")]
            appno = str(item.get("trt_dcla_detl_sn") or "")
        rows.append({
            "appno": appno, "codes": codes, "begndate": str(item.get("begndate") or ""),
            "enddate": str(item.get("enddate") or ""), "appy_date": str(item.get("appy_date") or ""),
            "status": str(item.get(status_field) or "") if status_field else "",
        })
    return rows


# --- query first, then decide -------------------------------------------------------------------

def query_before_resend(upload: UploadContext, infno: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """An earlier 2511/2503 may have reached the platform: ask (5311 / 5301) before filing again.
    Returns what was found, or None when the platform has no such filing (then send)."""
    from plugins.twopath import filings

    query_infno = "5311" if infno == "2511" else "5301"
    filing_id = row.get("filing_id")
    query_row = filings.query_row_for(infno, row)
    done = call_now(f"twopath.{query_infno}", query_row, label=f"重发前查询 filing-{filing_id}",
                    search_keys=[f"filing-{filing_id}"], actor="system")
    if done.status != UploadStatus.SUCCEEDED:
        raise TransientError(f"重发前查询【{query_infno}】未成功（{done.last_message}），暂不重发以免重复备案")
    match = filings.match_query_rows(infno, row, (done.result or {}).get("query_rows", []))
    if match is None:
        return None
    return {"query_infno": query_infno, "query_upload_id": done.id, "appno": match.get("appno", ""),
            "status": match.get("status", "")}


def find_person(upload_row: dict[str, Any], actor: str | None) -> Upload:
    return call_now("twopath.1101", upload_row, label="人员信息获取", actor=actor,
                    search_keys=[v for v in (upload_row["input"]["data"].get("certno"),
                                             upload_row["input"]["data"].get("mdtrt_cert_no")) if v])


def uploads_of(report_types: list[str], limit: int = 50) -> list[Upload]:
    return list(db.session.execute(
        sa.select(Upload).where(Upload.report_type.in_(report_types)).order_by(Upload.id.desc()).limit(limit)
    ).scalars())
