"""Internet medical service supervision platform (互联网医疗服务监管平台 V1.1.8).

One report type per interface file in ``schemas/`` (``ihs.A0000`` … ``ihs.A2010``), planned
incrementally and sent in the document's call order (``planning``). The sign algorithm (section 4) is
missing from our copy, so signing is a recipe chosen in the settings (``recipes``, our assumption) and
nothing is planned or sent until a worked example from the vendor reproduces (``gate``). Steps the
copy lacks (处方, 购药订单, 药品, 电子病历) are declared unavailable as 文档缺失 until their schema file
is added.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import sqlalchemy as sa
import urllib3

from core import clock
from core.crypto import DIGESTS
from core.db import db
from core.errors import RejectUpload, RetryLater
from core.hook_types import (
    OutboundRequest,
    Outcome,
    Payload,
    ProbeResult,
    ProbeStep,
    Regulator,
    RegulatorStatus,
    ReportType,
    Response,
    Sandbox,
    SettingField,
    UploadContext,
)
from core.hookspecs import hookimpl
from core.masking import mask_record
from core.models import Attempt, Upload, UploadStatus

from . import catalogue, gate, planning, protocol, recipes, sandbox
from .models import Entity
from .queries import DEFAULT_QUERIES

log = logging.getLogger("baosong.ihs")
REGULATOR = gate.REGULATOR

# Planning follows the call order inside every ten minutes: a step is planned a minute after the one
# it depends on, so one pass usually finds its prerequisites already planned.
_CRON_MINUTE = {"hospital": 0, "department": 1, "staff": 2, "emr": 3, "revisit_order": 4, "recipe": 5,
                "drug_order": 5, "drug": 5, "consultation": 3, "revisit_service": 6, "attachment": 8}

RESPONSE_CODES = {
    protocol.SUCCESS: "成功",
    protocol.SYSTEM_ERROR: "系统错误（文档 1.4 失败示例；自动重试）",
}


@hookimpl
def register_regulators() -> list[Regulator]:
    return [Regulator(REGULATOR, "互联网医疗服务监管平台", settings=(
        SettingField("base_url", "接口地址", help="请求发往 {接口地址}{接口路径}，如 …/ihs/api/base/hospital"),
        SettingField("appid", "appid", help="平台对接时分配的互联网医院 id（String(32)）"),
        SettingField("app_secret", "签名密钥 key", secret=True, help="平台对接时分配的 appid:key 中的 key"),
        SettingField("hosp_id", "本院医疗机构 id", help="A1000 hospId；科室、会诊等依赖本院的医疗机构记录"),
        SettingField("dept_code_source", "科室编码来源", default="local", choices=("local", "CT08.00.002"),
                     help="文档只写“科室编码”：local 用院内编码；CT08.00.002 用 配置管理 › 代码对照 中的国家科室代码"),
        SettingField("sign_digest", "签名摘要算法", choices=("",) + DIGESTS,
                     help="规范第 4 节缺失：以下签名方案是我们的假设，须用厂商示例验证后才能发送"),
        SettingField("sign_layout", "签名串拼接方式", default="concat", choices=recipes.LAYOUTS,
                     help="concat：按顺序连接；pairs：按字段名排序的 k=v&…"),
        SettingField("sign_order", "拼接顺序（concat）", default=",".join(recipes.DEFAULT_ORDER),
                     help="appid、service、randomstr、uptime、data、key 的顺序，逗号分隔"),
        SettingField("sign_separator", "连接符（concat）", help="为空则直接连接"),
        SettingField("sign_key_placement", "密钥位置（pairs）", default="pair_last", choices=recipes.KEY_PLACEMENTS),
        SettingField("sign_output", "签名输出编码", default="hex", choices=recipes.OUTPUTS),
        SettingField("batch_size", "每批条数", default=str(protocol.DEFAULT_BATCH_ROWS),
                     help="文档 1.3：建议不超过 100 条，限制不超过 10000 条"),
        SettingField("max_request_mb", "单次请求上限（MB）", default="30", help="修改记录 1.1.8：普通接口 30MB"),
        SettingField("max_rows_per_run", "每次最多读取行数", default="100000"),
        SettingField("initial_since", "首次上报起点", help="YYYY-MM-DD HH24:MI:SS；为空则从最早的记录开始"),
        SettingField("timeout", "超时（秒）", default="30"),
        SettingField("retry_codes", "自动重试的返回码", default=protocol.SYSTEM_ERROR,
                     help="逗号分隔；文档 2.8 节（统一返回码）缺失，其余非 0 返回码按拒绝处理"),
        SettingField("duplicate_codes", "“已接收”返回码",
                     help="逗号分隔；重发可能已送达的批次时，平台答这些码视为已接收（文档未定义，按平台确认填写）"),
    ), codes=RESPONSE_CODES)]


@hookimpl
def register_report_types() -> list[ReportType]:
    declared = []
    for item in catalogue.interfaces():
        minute = _CRON_MINUTE.get(item.step, 9)
        declared.append(ReportType(
            name=item.report_type, title=f"互联网监管 {item.code} {item.title}", regulator=REGULATOR,
            cron=f"{minute}-59/10 * * * *", catch_up="latest", schema=item.schema,
            queries=DEFAULT_QUERIES.get(item.code) or ({planning.QUERY: item.query} if item.query else {}),
        ))
    for step in catalogue.missing_steps():
        declared.append(ReportType(
            name=f"{catalogue.PREFIX}.{step.name}", title=f"互联网监管 {step.title}（文档缺失）", regulator=REGULATOR,
            available=False, unavailable_reason=f"{catalogue.MISSING_NOTE}（{step.section} {step.title}）",
        ))
    return declared


@hookimpl
def register_sandboxes() -> list[Sandbox]:
    return [Sandbox(name="ihs_supervision", title="互联网医疗服务监管平台（沙箱）", make_app=sandbox.make_app,
                    demo_config=sandbox.demo_config, seed=sandbox.seed)]


@hookimpl
def register_blueprints() -> list:
    from plugins.ihs_supervision.views import PAGES

    return [PAGES]


@hookimpl
def migrations_location() -> str:
    return str(Path(__file__).with_name("migrations"))


@hookimpl
def seed_demo_hospital(connection, start, end) -> dict[str, int]:
    from plugins.ihs_supervision.demo_seed import seed_demo_hospital as seed

    return seed(connection, start, end)


@hookimpl
def schedule(report_type, slot, source, settings):
    return planning.plan(report_type, slot, source, settings)


def unmet(requirements: list[str]) -> list[str]:
    """Requirements ('step:key') no succeeded upload carries yet."""
    if not requirements:
        return []
    met = set()
    for step_key in set(requirements):
        step, _, key = step_key.partition(":")
        found = db.session.execute(
            sa.select(Upload.id).join(Entity, sa.and_(Entity.report_type == Upload.report_type,
                                                      Entity.business_key == Upload.business_key))
            .where(Entity.step == step, Entity.entity_key == key, Upload.status == UploadStatus.SUCCEEDED).limit(1)
        ).first()
        if found:
            met.add(step_key)
    return [r for r in dict.fromkeys(requirements) if r not in met]


def _label(requirement: str) -> str:
    step, _, key = requirement.partition(":")
    known = catalogue.STEP_BY_NAME.get(step)
    return f"{known.title if known else step} {key}"


@hookimpl
def build_payload(upload: UploadContext) -> Payload:
    interface = catalogue.by_report_type(upload.report_type.name)
    if not upload.rows:
        raise RejectUpload("本批次没有记录")
    needed = [r for row in upload.rows for r in row.get(planning.AFTER_KEY, [])]
    waiting = unmet(needed)
    if waiting:  # the core's ordering holds such uploads; this is the plugin's own guarantee
        shown = "、".join(_label(r) for r in waiting[:5]) + (f" 等 {len(waiting)} 项" if len(waiting) > 5 else "")
        raise RetryLater(f"等待前置上报：{shown} 尚未被监管平台接收（文档 1.3 接口调用顺序）")
    records = [{k: v for k, v in row.items() if not k.startswith(planning.HIDDEN_PREFIX)} for row in upload.rows]
    if interface.multipart:
        now = protocol.uptime(clock.local_now())
        records = [planning.as_sent(interface, row, now) for row in records]
    return Payload(records=records, document=records)


def _secret_free(records: list[dict], interface: catalogue.Interface) -> list[dict]:
    patient = interface.schema.patient_fields()
    shown = []
    for record in records:
        item = {k: (f"<{len(v)} 字节>" if isinstance(v, bytes) else v) for k, v in record.items()}
        if interface.code == "A0000" and isinstance(item.get("content"), str) and len(item["content"]) > 64:
            item["content"] = item["content"][:64] + f"…（共 {len(record['content'])} 字符）"
        shown.append(mask_record(item, patient) if patient else item)
    return shown


@hookimpl
def sign(upload: UploadContext, payload: Payload) -> OutboundRequest:
    settings = upload.settings
    interface = catalogue.by_report_type(upload.report_type.name)
    planning.check_ready(settings)
    recipe = gate.require_open(settings)  # refused, with the reason, while the gate is closed
    max_rows, max_bytes = planning.batch_limits(interface, settings)
    if len(payload.records) > max(max_rows, 1) and not interface.multipart:
        raise RejectUpload(f"本批次 {len(payload.records)} 条，超过每批上限 {max_rows} 条（计划后设置被修改？）")
    randomstr = protocol.new_randomstr()
    headers = {"service": interface.code, "appid": settings.get("appid"), "randomstr": randomstr}
    url = f"{settings.get('base_url').rstrip('/')}{interface.path}"
    timeout = float(planning.positive_int(settings, "timeout", 30))
    if interface.multipart:
        [record] = payload.records
        values = protocol.sign_values(interface.code, headers["appid"], randomstr, record["uptime"], "")
        headers["sign"] = recipe.sign(values, settings.get("app_secret"))
        fields = {k: v for k, v in record.items() if k != "fileUpload"}
        form = [(k, str(v)) for k, v in fields.items()]
        form.append(("fileUpload", (f"{record['attaId']}.{record['fileType']}", record["fileUpload"],
                                    "application/octet-stream")))
        body, content_type = urllib3.encode_multipart_formdata(form)
        headers["Content-Type"] = content_type
        shown = json.dumps(_secret_free(payload.records, interface)[0], ensure_ascii=False)
        return OutboundRequest(url=url, body=body, headers=headers, timeout=timeout, plaintext=shown,
                               secret_headers=frozenset({"sign"}))
    now = protocol.uptime(clock.local_now())
    data = protocol.encode_data(payload.records)
    body = protocol.encode_body(now, data)
    if max_bytes is not None and len(body.encode("utf-8")) > max_bytes:
        raise RejectUpload(f"请求体 {len(body.encode('utf-8'))} 字节，超过上限 {max_bytes} 字节（计划后设置被修改？）")
    headers["sign"] = recipe.sign(protocol.sign_values(interface.code, headers["appid"], randomstr, now, data),
                                  settings.get("app_secret"))
    headers["Content-Type"] = "application/json;charset=UTF-8"
    shown = json.dumps({"uptime": now, "data": _secret_free(payload.records, interface)}, ensure_ascii=False)
    return OutboundRequest(url=url, body=body, headers=headers, timeout=timeout, plaintext=shown,
                           secret_headers=frozenset({"sign"}))


def maybe_delivered_before(upload: UploadContext) -> bool:
    """Did an earlier attempt of this upload leave without a clear answer (ledger knowledge)? Then a
    "duplicate" answer now is our own earlier batch arriving, not someone else's record."""
    return db.session.execute(
        sa.select(Attempt.id).where(Attempt.upload_id == upload.id, Attempt.number < upload.attempt_no,
                                    Attempt.wire_body.is_not(None),
                                    Attempt.outcome.in_(("retry", "unknown"))).limit(1)
    ).first() is not None


def _codes(settings, key: str) -> set[str]:
    return {c.strip() for c in settings.get(key).split(",") if c.strip()}


@hookimpl
def parse_response(upload: UploadContext, response: Response) -> Outcome:
    if response.status is None:
        return Outcome("retry", message=response.error or "网络错误")
    code, message = protocol.answer_code(response.body)
    if code is None:
        if response.status >= 500 or response.status in (408, 429):
            return Outcome("retry", code=str(response.status), message=f"HTTP {response.status}")
        if response.status >= 400:
            return Outcome("reject", code=str(response.status), message=f"HTTP {response.status}：请检查接口地址")
        return Outcome("retry", message=f"HTTP {response.status}，应答不是约定的 JSON，结果未知")
    if code == protocol.SUCCESS:
        return Outcome("success", code=code, message=message or "成功", result={"rows": len(upload.rows)})
    if code in _codes(upload.settings, "duplicate_codes") and (upload.resend or maybe_delivered_before(upload)):
        return Outcome("success", code=code, message=f"重发的批次已被接收（{message or code}）",
                       result={"rows": len(upload.rows), "duplicate": True})
    if code in _codes(upload.settings, "retry_codes"):
        return Outcome("retry", code=code, message=message or RESPONSE_CODES.get(code, code))
    return Outcome("reject", code=code, message=f"{message or '失败'}（返回码 {code}；文档 2.8 节统一返回码缺失）")


@hookimpl
def upload_finished(upload: UploadContext, outcome: Outcome) -> None:
    log.info("ihs %s upload %s (%d rows) %s %s", upload.report_type.name, upload.id, len(upload.rows),
             outcome.kind, outcome.code or "")


@hookimpl
def test_connection(regulator, settings) -> ProbeResult:
    """The document has no no-op call: report the sign gate and whether the base URL answers HTTP."""
    import time

    import requests

    state = gate.state(settings)
    steps = [ProbeStep("签名已知答案门禁", state.open, state.reason)]
    url = settings.get("base_url").strip()
    if not url:
        return ProbeResult(False, "未配置接口地址 base_url", steps=tuple(steps), conclusive=False)
    started = time.monotonic()
    try:
        answer = requests.get(url, timeout=5, allow_redirects=False)  # 测试连接 never follows a redirect
    except requests.RequestException as exc:
        steps.append(ProbeStep("HTTP", False, type(exc).__name__))
        return ProbeResult(False, f"无法连接 {url}", url=url, steps=tuple(steps))
    elapsed = int((time.monotonic() - started) * 1000)
    steps.append(ProbeStep("HTTP", answer.status_code < 500, f"HTTP {answer.status_code}"))
    message = (f"接口地址可访问（HTTP {answer.status_code}）；文档没有不写数据的探测接口，"
               f"签名{'已验证' if state.open else '未验证：' + state.reason}")
    return ProbeResult(answer.status_code < 500 and state.open, message, url=url, status=answer.status_code,
                       elapsed_ms=elapsed, steps=tuple(steps), conclusive=False)


@hookimpl
def register_audit_actions() -> dict[str, str]:
    return {
        "ihs.example": "录入签名样例", "ihs.recipe": "选择签名算法", "ihs.verify": "验证签名样例",
    }


@hookimpl
def regulator_status(regulator, settings) -> RegulatorStatus:
    """The known-answer gate: closed, nothing is sent (shown on the dashboard and the task list)."""
    state = gate.state(settings)
    if state.open:
        return RegulatorStatus(True, f"签名已验证：{state.reason}")
    return RegulatorStatus(False, f"签名算法未经已知答案验证（{state.reason}）", endpoint="ihs.index")
