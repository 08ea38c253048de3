"""Shangrao medical-insurance fund supervision (上饶市医保基金监管 医药机构数据采集 v2.0).

Three row-level report types, one per service code: ``shangrao.fee_list_d`` (费用明细),
``shangrao.setl_d`` (结算信息) and ``shangrao.mdtrt_d`` (就诊信息, which hospitals must send). Every
10 minutes the rows created or updated since the last planned position are read, checked field by
field against ``schemas/<service>.json``, cut into batches whose SM2-encrypted ``data`` fits in 50,000
characters, and recorded in the ledger with a msgid fixed at planning (see ``extraction``). A re-send
after an unknown outcome reuses the msgid, so the regulator's 40005 then means "already received"; a
40005 no attempt of ours can explain is a collision and gets a new msgid (``delivery``).
"""

from __future__ import annotations

import json
import logging

from core.crypto import CryptoError, sm2_encrypt
from core.errors import ConfigurationError, RejectUpload
from core.hook_types import (
    OutboundRequest,
    Outcome,
    Payload,
    ProbeResult,
    Regulator,
    ReportType,
    Response,
    Sandbox,
    SettingField,
    UploadContext,
)
from core.hookspecs import hookimpl
from core.masking import mask_record

from . import common, delivery, extraction, sandbox
from .queries import DEFAULT_QUERIES

log = logging.getLogger("baosong.shangrao")

CRON = "*/10 * * * *"


@hookimpl
def register_regulators() -> list[Regulator]:
    return [Regulator(common.REGULATOR, "上饶市医保基金监管平台", settings=(
        SettingField("base_url", "接口地址", help="http://{服务ip}，请求发往 {接口地址}/metadata/receive/{服务代码}"),
        SettingField("fixmedins_code", "定点医药机构编号", help="12 位；msgid 以它开头"),
        SettingField("fixmedins_name", "定点医药机构名称"),
        SettingField("public_key", "监管平台 SM2 公钥",
                     help="服务商邮件下发；可填 04 开头的 130 位 hex、128 位 hex、压缩格式或 PEM"),
        SettingField("sm2_order", "SM2 密文顺序", default="C1C3C2", choices=("C1C3C2", "C1C2C3"),
                     help="文档未说明；Hutool 等 Java 服务端为 C1C3C2"),
        SettingField("sm2_c1_prefix", "C1 带 04 前缀", default="true", choices=("true", "false")),
        SettingField("sm2_format", "SM2 密文格式", default="raw", choices=("raw", "asn1")),
        SettingField("sm2_output", "SM2 密文编码", default="hex", choices=("hex", "HEX", "base64")),
        *(SettingField(f"infno_{service}", f"接口类别代码 infno（{title}）",
                       help="报文 infno 字段，varchar(4)；文档未给出取值，请向服务商确认")
          for service, title in common.SERVICE_TITLES.items()),
        SettingField("timeout", "超时（秒）", default="30"),
        SettingField("max_data_chars", "data 最大字符数", default=str(common.DEFAULT_MAX_DATA_CHARS),
                     help="按加密后的 data 长度切分批次（文档 3.2.1：varchar(50000)）"),
        SettingField("max_rows_per_run", "每次最多读取行数", default="100000",
                     help="一次运行读取的上限；其余在下一次运行中继续"),
        SettingField("initial_since", "首次上报起点", help="yyyy-MM-dd HH:mm:ss；为空则从最早的记录开始"),
        SettingField("dictionaries_path", "代码字典文件",
                     help="江西省医保平台代码字典 JSON（{字典名: {代码: 含义}}）；为空时代码字段只校验长度"),
    ), codes=common.code_explanations())]


@hookimpl
def register_report_types() -> list[ReportType]:
    return [
        ReportType(
            name=common.report_type_name(service), title=f"上饶医保{title}", regulator=common.REGULATOR,
            cron=CRON, catch_up="latest", schema=common.schema_for(service),
            queries={extraction.QUERY: DEFAULT_QUERIES[service]},
        )
        for service, title in common.SERVICE_TITLES.items()
    ]


@hookimpl
def register_sandboxes() -> list[Sandbox]:
    return [Sandbox(name="shangrao", title="上饶医保基金监管（沙箱）", make_app=sandbox.make_app,
                    demo_config=sandbox.demo_config)]


@hookimpl
def seed_demo_hospital(connection, start, end) -> dict[str, int]:
    from plugins.shangrao_insurance.demo_seed import seed_demo_hospital as seed

    return seed(connection, start, end)


@hookimpl
def test_connection(regulator: Regulator, settings) -> ProbeResult:
    """测试连接: the document has no harmless call, so local checks only (see probe.py)."""
    from . import probe

    return probe.run(settings)


@hookimpl
def schedule(report_type, slot, source, settings):
    return extraction.plan(report_type, slot, source, settings)


@hookimpl
def build_payload(upload: UploadContext) -> Payload:
    code = common.institution_code(upload.settings)
    msgid = delivery.msgid(upload)
    if not msgid.startswith(code) or len(msgid) != common.MSGID_LENGTH:
        # The msgid was fixed at planning with the institution code of that time.
        raise RejectUpload(f"本批次的 msgid 不以当前机构编号 {code} 开头（机构编号在计划后被修改？）")
    if not upload.rows:
        raise RejectUpload("本批次没有记录")
    return Payload(records=list(upload.rows), document=list(upload.rows))


@hookimpl
def sign(upload: UploadContext, payload: Payload) -> OutboundRequest:
    settings = upload.settings
    service = common.service_of(upload.report_type.name)
    common.check_ready(settings, service)
    profile = common.sm2_profile(settings)
    max_chars = common.positive_int(settings, "max_data_chars", common.DEFAULT_MAX_DATA_CHARS)
    plaintext = common.encode_rows(payload.records)
    expected = common.ciphertext_chars(len(plaintext), profile)
    if expected > max_chars:
        raise RejectUpload(f"本批次加密后 data 为 {expected} 字符，超过上限 {max_chars}（计划后设置被修改？）")
    try:
        data = sm2_encrypt(plaintext, settings.get("public_key"), profile)
    except CryptoError as exc:
        raise ConfigurationError(f"SM2 加密失败：{exc}") from None
    exact = profile.format == "raw"
    if (len(data) != expected) if exact else (len(data) > expected):
        raise RejectUpload(f"SM2 密文长度 {len(data)} 与预计的 {expected} 不符")
    envelope = {
        "infno": settings.get(f"infno_{service}"),
        "msgid": delivery.msgid(upload),
        "fixmedins_code": common.institution_code(settings),
        "fixmedins_name": settings.get("fixmedins_name"),
        "data": data,
    }
    # What the ledger keeps: the envelope with the rows before encryption, patient fields masked.
    patient = common.schema_for(service).patient_fields()
    shown = {**envelope, "data": mask_record(payload.records, patient) if patient else payload.records}
    return OutboundRequest(
        url=f"{settings.get('base_url').rstrip('/')}/metadata/receive/{service}",
        body=json.dumps(envelope, ensure_ascii=False),
        headers={"Content-Type": "application/json;charset=UTF-8"},
        timeout=float(common.positive_int(settings, "timeout", 30)),
        plaintext=json.dumps(shown, ensure_ascii=False),
    )


@hookimpl
def parse_response(upload: UploadContext, response: Response) -> Outcome:
    if response.status is None:
        return Outcome("retry", message=response.error or "网络错误")
    answer = _json(response.body)
    code = _code(answer)
    if code is None:
        if response.status >= 500 or response.status in (408, 429):
            return Outcome("retry", code=str(response.status), message=f"HTTP {response.status}")
        if response.status >= 400:
            return Outcome("reject", code=str(response.status),
                           message=f"HTTP {response.status}：请检查接口地址 base_url")
        # 2xx without a code: we cannot tell whether it was received; re-sent with the same msgid.
        return Outcome("retry", message=f"HTTP {response.status}，应答不是约定的 JSON，结果未知")
    message = _message(answer) or common.RESPONSE_CODES.get(code, ("未知响应码", ""))[0]
    if code == common.SUCCESS_CODE:
        return Outcome("success", code=code, message=message, result={"msgid": delivery.msgid(upload)})
    if code == common.DUPLICATE_CODE:
        return delivery.on_duplicate(upload, message)
    if code in common.RETRY_CODES:
        return Outcome("retry", code=code, message=message)
    if code in common.REJECT_CODES:
        fix = common.RESPONSE_CODES[code][1]
        return Outcome("reject", code=code, message=f"{message}（{fix}）" if fix else message)
    return Outcome("retry", code=code, message=f"未知响应码 {code}：{message}")


@hookimpl
def upload_finished(upload: UploadContext, outcome: Outcome) -> None:
    # accepted-through is computed from the ledger when asked (extraction.accepted_through), so there is
    # nothing to keep in step here; log counts and codes only, never row contents.
    log.info("shangrao %s batch %s (%d rows) %s %s", common.service_of(upload.report_type.name), upload.id,
             len(upload.rows), outcome.kind, outcome.code or "")


def _json(body: str):
    try:
        return json.loads(body)
    except (TypeError, ValueError):
        return None


def _code(answer) -> str | None:
    if not isinstance(answer, dict):
        return None
    value = answer.get("code")
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text if text.isdigit() else None


def _message(answer: dict) -> str:
    for key in ("msg", "message"):
        if isinstance(answer.get(key), str):
            return answer[key]
    return ""
