"""What the Jiangxi medical-insurance platform's documents fix, shared by the plugin and its sandbox:
the envelope (twopath-jiangxi-insurance.txt 1.1 / 1.2), the rules of 1.4, msgid, the interface field
tables (``schemas/*.json``), and the two gateway signatures of the specs README (Alibaba CSB, Tencent
TIF). Nothing here touches the database or the network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from core.hook_types import Problem
from core.schema import Schema, load_schema

SCHEMAS = Path(__file__).resolve().parent / "schemas"

# Interfaces with a field table, and their titles (the hospital's words).
INTERFACES: dict[str, str] = {
    "9001": "签到",
    "1101": "人员信息获取",
    "2511": "双通道备案申请",
    "5311": "双通道备案查询",
    "2512": "双通道备案撤销",
    "2503": "人员慢特病备案",
    "2504": "人员慢特病备案撤销",
    "5301": "人员慢特病备案查询",
    # Named by the hospital (2.1) without field tables: schemas/9002, 1309, 5205 cite public HIS code.
    "9002": "签退",
    "1309": "门诊慢特病种目录下载",
    "5205": "人员慢特病用药记录查询",
}
# Node names the platform spells with capitals although 1.4 asks for lower case (README: 9001 signIn).
CASE_EXCEPTIONS = frozenset({"signIn", "signOut"})
ENVELOPE_FIELDS = (
    "infno", "msgid", "mdtrtarea_admvs", "insuplc_admdvs", "recer_sys_code", "dev_no", "dev_safe_info",
    "cainfo", "signtype", "infver", "opter_type", "opter", "opter_name", "inf_time", "fixmedins_code",
    "fixmedins_name", "sign_no", "input",
)
OUTPUT_FIELDS = ("infcode", "inf_refmsgid", "refmsg_time", "respond_time", "err_msg", "output")
INF_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MSGID_TIME_FORMAT = "%Y%m%d%H%M%S"
MSGID_RE = re.compile(r"(?P<code>.{12})(?P<time>\d{14})(?P<seq>\d{4})")
# Interfaces whose input carries a person number: the envelope's insuplc_admdvs is then required (1.1 #4).
PERSON_INTERFACES = frozenset({"2511", "5311", "2503", "2504", "5301", "5205"})
# The answer fields that name a filing (documented in the filing interfaces' outputs).
APPNO_FIELD = {"2511": "two_path_reg_sn", "2503": "trt_dcla_detl_sn"}
NUMERIC_TYPES = frozenset({"integer", "number", "decimal"})


@cache
def schema(infno: str) -> Schema:
    return load_schema(SCHEMAS / f"{infno}.json")


def envelope_schema() -> Schema:
    return schema("envelope")


# --- msgid -------------------------------------------------------------------------------------

def make_msgid(fixmedins_code: str, moment: datetime, sequence: int) -> str:
    """定点医药机构编号(12) + yyyyMMddHHmmss(14) + 顺序号(4): 30 characters."""
    if len(fixmedins_code) != 12:
        raise ValueError(f"定点医药机构编号应为 12 位，实为 {len(fixmedins_code)} 位")
    if not 0 <= sequence <= 9999:
        raise ValueError("顺序号超出 4 位")
    return f"{fixmedins_code}{moment:{MSGID_TIME_FORMAT}}{sequence:04d}"


def msgid_problem(msgid: Any, fixmedins_code: str) -> str | None:
    """Why a msgid does not have the documented shape (None when it does)."""
    if not isinstance(msgid, str) or len(msgid) != 30:
        return "msgid 应为 30 位"
    m = MSGID_RE.fullmatch(msgid)
    if m is None:
        return "msgid 应为 机构编号(12)+yyyyMMddHHmmss(14)+顺序号(4)"
    if m["code"] != fixmedins_code:
        return "msgid 前 12 位应为定点医药机构编号"
    try:
        datetime.strptime(m["time"], MSGID_TIME_FORMAT)
    except ValueError:
        return "msgid 的时间部分不是有效的 yyyyMMddHHmmss"
    return None


# --- 1.4: node names, empty values -------------------------------------------------------------

def lower_keys(value: Any) -> Any:
    """Every node name lower case (1.4), except the platform's own documented exceptions."""
    if isinstance(value, dict):
        return {(k if k in CASE_EXCEPTIONS else k.lower()): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


def fill_empty(record: dict[str, Any], fields) -> dict[str, Any]:
    """1.4: an empty numeric value is sent as 0, any other empty value as "" (lists recursively).
    A list whose element structure the document does not give (appy_lmt) is left out when empty."""
    out: dict[str, Any] = {}
    for spec in fields:
        value = record.get(spec.name)
        if spec.type == "list":
            if value:
                out[spec.name] = [fill_empty(item, spec.fields) if isinstance(item, dict) else item
                                  for item in value]
            elif spec.fields:
                out[spec.name] = []
            continue
        if value is None or value == "":
            value = 0 if spec.type in NUMERIC_TYPES else ""
        out[spec.name] = value
    for name, value in record.items():  # keep unknown names so validation can name them
        out.setdefault(name, value)
    return out


# --- interface input <-> validated records -----------------------------------------------------

def node_name(infno: str) -> str:
    return schema(infno).interface.get("node", "data")


def build_input(infno: str, values: dict[str, Any]) -> dict[str, Any]:
    """The ``input`` node of one interface from flat values (lists included), 1.4 applied."""
    sch = schema(infno)
    lists = sch.interface.get("lists", [])
    string_list = sch.interface.get("string_list")
    if string_list:
        return {node_name(infno): {string_list: [str(v) for v in values.get(string_list) or []]}}
    filled = fill_empty(lower_keys(values), sch.fields)
    data = {k: v for k, v in filled.items() if k not in lists}
    node = {node_name(infno): data}
    for name in lists:
        node[name] = filled.get(name, [])
    return node


def records_from_input(infno: str, input_node: Any) -> list[dict[str, Any]]:
    """The records the interface's field table validates, from an ``input`` node: the data node with
    its sibling lists folded in (2511), or one record per element of a string list (2512)."""
    if not isinstance(input_node, dict):
        return [{}]
    sch = schema(infno)
    node = input_node.get(node_name(infno))
    if not isinstance(node, dict):
        return [{}]
    string_list = sch.interface.get("string_list")
    if string_list:
        items = node.get(string_list)
        if not isinstance(items, list) or not items:
            return [{}]
        return [{string_list: item} for item in items]
    record = dict(node)
    for name in sch.interface.get("lists", []):
        if name in input_node:
            record[name] = input_node[name]
    return [record]


def validate_input(infno: str, input_node: Any) -> list[Problem]:
    sch = schema(infno)
    problems: list[Problem] = []
    for i, record in enumerate(records_from_input(infno, input_node)):
        problems.extend(sch.validate(record, index=i))
    return problems


def validate_envelope(envelope: Any) -> list[Problem]:
    """The 1.1 fields (input is checked against the interface's own table)."""
    if not isinstance(envelope, dict):
        return [Problem(None, "报文不是 JSON 对象")]
    problems = [Problem(None, f"缺少 {name}") for name in ENVELOPE_FIELDS if name not in envelope]
    rest = {k: v for k, v in envelope.items() if k != "input"}
    problems.extend(envelope_schema().validate(rest))
    if envelope.get("infno") in PERSON_INTERFACES and not envelope.get("insuplc_admdvs"):
        problems.append(Problem("insuplc_admdvs", "交易输入含人员编号时必填（由【1101】取得）"))
    return problems


def parse_infcode(value: Any) -> int | None:
    """infcode arrives as a number or a string ("0", "-1", even "1"): None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


# --- gateway authentication (specs README) ------------------------------------------------------

GATEWAYS = ("csb", "tif", "none")


def csb_string_to_sign(params: dict[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params))


def csb_signature(secret: str, params: dict[str, str]) -> str:
    """Base64(HMAC-SHA1(secret, "k=v&k=v" with the keys in ASCII order))."""
    digest = hmac.new(secret.encode(), csb_string_to_sign(params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def csb_headers(infno: str, access_key: str, secret: str, version: str, timestamp_ms: int) -> dict[str, str]:
    params = {
        "_api_access_key": access_key,
        "_api_name": f"hsa-fsi-{infno}",
        "_api_timestamp": str(timestamp_ms),
        "_api_version": version,
    }
    return {**params, "_api_signature": csb_signature(secret, params)}


def tif_signature(timestamp_s: str, token: str, nonce: str) -> str:
    """hex(SHA-256(timestamp + token + nonce + timestamp))."""
    return hashlib.sha256(f"{timestamp_s}{token}{nonce}{timestamp_s}".encode()).hexdigest()


def tif_headers(paasid: str, token: str, timestamp_s: int, nonce: str) -> dict[str, str]:
    ts = str(timestamp_s)
    return {
        "x-tif-paasid": paasid,
        "x-tif-timestamp": ts,
        "x-tif-nonce": nonce,
        "x-tif-signature": tif_signature(ts, token, nonce),
    }


SIGNATURE_HEADERS = frozenset({"_api_signature", "_api_access_key", "x-tif-signature", "x-tif-paasid"})


def url_for(template: str, base: str, infno: str) -> str:
    """The configurable URL template, e.g. ``{base}/CSB/hsa-fsi-{infno}``."""
    return template.replace("{base}", base.rstrip("/")).replace("{infno}", infno)
