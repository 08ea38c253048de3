"""Key-data platform (医疗机构关键数据平台): hourly hospital figures, hourly per-department visits and the
monthly report, SM4-encrypted with an ``authCode`` header (keydata-key-indicators.txt 五).

statDate is always derived from the slot (never from now): see ``spec.hourly_period`` / ``monthly_period``.
dataFlag and what "不存在" / "重复" answers mean after a lost answer: the resend strategy in
``plugins.keydata.delivery`` (1 first submission, 2 re-send or correction, 3 withdrawal).

Answer classification (``classify``, then ``delivery.decide``):
    code 200 or "200"                                        -> success
    no answer / timeout / HTTP 5xx, 408, 429 / body not JSON -> retry (the core's 5 min x 3 policy;
                                                                later attempts send dataFlag 2)
    code != 200 whose message says the platform is busy      -> retry
    "不存在" for dataFlag 2, "重复" for dataFlag 1             -> the strategy's follow-up (see delivery),
                                                                also when they come with an HTTP 5xx
    any other code != 200 (decryption, authCode, field...) and other HTTP 4xx -> reject,
                                                                with the platform's message
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from core import ledger
from core.db import db
from core.errors import BaosongError, ConfigurationError, RejectUpload
from core.hook_types import (
    CodeDictionary,
    OutboundRequest,
    Outcome,
    Payload,
    ProbeResult,
    Problem,
    Regulator,
    ReportType,
    Response,
    Sandbox,
    SettingField,
    UploadAction,
    UploadContext,
    UploadPlan,
)
from core.hookspecs import hookimpl
from core.models import Upload, UploadStatus
from plugins.keydata import delivery, models, queries, spec
from plugins.keydata.models import KeydataDepartmentMapping, KeydataNationalDepartment  # noqa: F401 (tables)

REGULATOR = "keydata"
TITLE = "医疗机构关键数据平台"

SETTINGS = (
    SettingField("hospital_daily_url", "数据日报接口地址", help="医疗机构关键数据（每小时）上传地址，由平台方提供"),
    SettingField("dept_daily_url", "科室就诊日报接口地址", help="各科室就诊日报（每小时）上传地址"),
    SettingField("monthly_url", "数据月报接口地址", help="数据月报（每月1日）上传地址"),
    SettingField("org_code", "医院机构代码 orgCode", help="数据提供方机构编码，由平台方（万达）提供"),
    SettingField("auth_code", "接口权限码 authCode", secret=True, help="一机构一权限码，放在请求头 authCode"),
    SettingField("sm4_key", "SM4 密钥", secret=True, help="请求体 SM4 加密密钥，格式见“SM4 密钥格式”"),
    SettingField("sm4_mode", "SM4 模式", default="ECB", choices=("ECB", "CBC"),
                 help="文档未规定，平台常用 ECB"),
    SettingField("sm4_padding", "SM4 填充", default="pkcs7", choices=("pkcs7", "zero", "none"),
                 help="pkcs7 即 Java 的 PKCS5Padding"),
    SettingField("sm4_key_format", "SM4 密钥格式", default="hex", choices=("hex", "text", "base64"),
                 help="hex：32 位十六进制；text：16 个字符；base64：Base64 编码的 16 字节"),
    SettingField("sm4_output", "密文编码", default="hex", choices=("hex", "HEX", "base64"),
                 help="hex 小写十六进制（默认）、HEX 大写、base64"),
    SettingField("sm4_iv", "SM4 CBC 固定 IV", help="仅 CBC：32 位十六进制；留空则随机 IV 放在密文前"),
    SettingField("body_wrapping", "请求体封装", default="raw", choices=("raw", "json_field"),
                 help="raw：请求体就是密文；json_field：请求体为 JSON，密文放在下面指定的字段中"),
    SettingField("wrap_field", "密文字段名", default="data", help="请求体封装为 json_field 时密文所在字段"),
    SettingField("hospital_level", "医院等级", choices=("secondary", "tertiary"),
                 help="secondary 二级：月报报送三级手术占比/台次数；tertiary 三级：报送四级手术占比/台次数。"
                      "未设置时月报拒绝发送"),
    SettingField("send_total_person_times", "日报发送 totalPersonTimes（总人次数）", default="0",
                 choices=("0", "1"),
                 help="文档字段表没有此字段，只在请求示例中出现，含义未定义；平台要求时设为 1。"
                      "默认取值为当天门急诊挂号总人次，可在“指标 SQL”中修改"),
    SettingField("withheld_monthly_fields", "月报暂不报送的字段",
                 help="逗号分隔；文档允许试点期间暂不报的：keyDiseaseCount（门诊重点疾病诊断例数）、"
                      "aveCmi（平均CMI），以及非必填的 psybedNum（精神床位数）"),
    SettingField("proportion_format", "手术占比的表示", default="ratio", choices=("ratio", "percent"),
                 help="文档未说明：ratio 为小数（0.1234，保留4位），percent 为百分数（12.34，保留2位）；"
                      "由分子台次数 / 出院患者手术台次数计算"),
    SettingField("timeout", "超时（秒）", default="30"),
)

CODES = {
    "200": "成功",
    "非200": "失败：平台在 message 中说明原因（文档只定义 200 成功 / 非200 失败）",
    "解密失败": "SM4 密钥或加密参数（模式、填充、密钥格式、密文编码、请求体封装）与平台不一致：核对设置",
    "authCode": "接口权限码错误或未配置：核对“接口权限码 authCode”",
    "重复": "该统计日期（科室）已上报过：用“更正重报”（dataFlag=2）而不是再次新增",
}

_TITLES = {
    spec.HOSPITAL_DAILY: "数据日报（医疗机构关键数据）",
    spec.DEPT_DAILY: "医疗机构各科室就诊日报",
    spec.MONTHLY: "数据月报",
}
_URL_SETTING = {kind: f"{kind}_url" for kind in spec.KINDS}
_OPERATION_OF_FLAG = {flag: operation for operation, flag in spec.DATA_FLAGS.items()}
_BUSY = re.compile(r"系统繁忙|服务繁忙|稍后再试|稍后重试|服务暂不可用|系统异常|超时")
# Our own sources for the CT08.00.002 codes (the database table, loaded from the shipped file).


def report_types() -> list[ReportType]:
    # The 00:00 run carries the previous day's full-day figures: a "latest" catch-up never drops it.
    hourly = dict(cron="0 * * * *", catch_up="latest", must_run_slot=_is_midnight)
    return [
        ReportType(name=f"keydata.{spec.HOSPITAL_DAILY}", title=_TITLES[spec.HOSPITAL_DAILY], regulator=REGULATOR,
                   schema=spec.schema(spec.HOSPITAL_DAILY), queries=queries.HOSPITAL_DAILY, **hourly),
        ReportType(name=f"keydata.{spec.DEPT_DAILY}", title=_TITLES[spec.DEPT_DAILY], regulator=REGULATOR,
                   schema=spec.schema(spec.DEPT_DAILY), dictionaries=(spec.DICTIONARY,),
                   queries=queries.DEPT_DAILY, **hourly),
        ReportType(name=f"keydata.{spec.MONTHLY}", title=_TITLES[spec.MONTHLY], regulator=REGULATOR,
                   cron="0 0 1 * *", catch_up="all", schema=spec.schema(spec.MONTHLY), queries=queries.MONTHLY),
    ]


def _is_midnight(slot) -> bool:
    return slot.hour == 0 and slot.minute == 0


def kind_of(report_type: ReportType | str) -> str:
    name = report_type if isinstance(report_type, str) else report_type.name
    return name.split(".", 1)[1]


# --- hooks ---------------------------------------------------------------------------------------

@hookimpl
def register_regulators() -> list[Regulator]:
    return [Regulator(REGULATOR, TITLE, settings=SETTINGS, codes=CODES)]


@hookimpl
def register_report_types() -> list[ReportType]:
    return report_types()


@hookimpl
def migrations_location() -> str:
    """The plugin's own Alembic branch ("keydata"): the department mapping tables."""
    from pathlib import Path

    return str(Path(__file__).with_name("migrations"))


@hookimpl
def register_dictionaries() -> list[CodeDictionary]:
    from plugins.keydata.dictionary import CT08

    return [CT08]


@hookimpl
def register_sandboxes() -> list[Sandbox]:
    from plugins.keydata import sandbox

    return [Sandbox(name="keydata", title=TITLE + "（沙箱）", make_app=sandbox.make_app,
                    demo_config=sandbox.demo_config, seed=sandbox.seed)]


@hookimpl
def test_connection(regulator: Regulator, settings) -> ProbeResult:
    """测试连接: the document has no harmless call, so local checks only (see plugins/keydata/probe.py)."""
    from plugins.keydata import probe

    return probe.run(settings)


@hookimpl
def schedule(report_type: ReportType, slot, source, settings) -> list[UploadPlan]:
    kind = kind_of(report_type)
    models.ensure_setup()
    local = slot.astimezone(ZoneInfo(report_type.timezone))  # wall-clock time of the report type's zone
    period = spec.monthly_period(local) if kind == spec.MONTHLY else spec.hourly_period(local)
    return plans_for(report_type, period, source, settings)


@hookimpl
def build_payload(upload: UploadContext) -> Payload:
    kind = kind_of(upload.report_type)
    org_code = upload.settings.get("org_code").strip()
    if not org_code:
        raise ConfigurationError(f"{TITLE}：未设置医院机构代码 orgCode")
    if not upload.rows:
        raise RejectUpload("上报没有数据行")
    figures = dict(upload.rows[0])
    record: dict[str, Any] = {"orgCode": org_code, "statDate": upload.period, "dataFlag": data_flag(upload)}
    if kind == spec.HOSPITAL_DAILY:
        record.update(_hospital_daily_fields(figures, upload.settings))
    elif kind == spec.DEPT_DAILY:
        record.update({k: figures.get(k) for k in ("departNoExp", "departNameExp", "departNo", "departName",
                                                   "personTimes")})
    else:
        record.update(_monthly_fields(figures, upload.settings))
    return Payload(records=[record], document=record)


@hookimpl
def sign(upload: UploadContext, payload: Payload) -> OutboundRequest:
    settings = upload.settings
    kind = kind_of(upload.report_type)
    url = settings.get(_URL_SETTING[kind]).strip()
    for value, label in ((url, f"{_TITLES[kind]}接口地址"), (settings.get("auth_code"), "接口权限码 authCode"),
                         (settings.get("sm4_key"), "SM4 密钥")):
        if not value:
            raise ConfigurationError(f"{TITLE}：未设置{label}")
    plaintext = spec.encode_document(payload.document)
    wrapping = settings.get("body_wrapping", "raw")
    body = spec.encrypt_body(plaintext, settings.get("sm4_key"), spec.sm4_profile(settings), wrapping,
                             settings.get("wrap_field", "data"))
    content_type = "application/json;charset=UTF-8" if wrapping == "json_field" else "text/plain;charset=UTF-8"
    return OutboundRequest(
        url=url, body=body, plaintext=plaintext, timeout=_timeout(settings.get("timeout", "30")),
        headers={"authCode": settings.get("auth_code"), "Content-Type": content_type},
        secret_headers=frozenset({"authCode"}),
        operation=_OPERATION_OF_FLAG.get(str(payload.document.get("dataFlag"))),
    )


@hookimpl
def parse_response(upload: UploadContext, response: Response) -> Outcome:
    return delivery.decide(upload, response, classify(response))


def classify(response: Response) -> Outcome:
    """See the module docstring for the rules."""
    if response.status is None:
        return Outcome("retry", message=response.error or "没有收到应答")
    answer = _json_or_none(response.body)
    if response.status >= 500 or response.status in (408, 429):
        detail = answer.get("message") if isinstance(answer, dict) else None
        if detail and delivery.names_held_or_not(str(detail)):
            # The document defines no error statuses: "not found" / "duplicate" may come as an HTTP 500.
            return Outcome("reject", code=f"HTTP {response.status}", message=f"平台 HTTP {response.status}：{detail}")
        return Outcome("retry", code=f"HTTP {response.status}",
                       message=f"平台 HTTP {response.status}" + (f"：{detail}" if detail else ""))
    if not isinstance(answer, dict) or "code" not in answer:
        if 400 <= response.status < 500:
            return Outcome("reject", code=f"HTTP {response.status}",
                           message=f"平台 HTTP {response.status}（接口地址或请求方式可能有误）：{_excerpt(response.body)}")
        return Outcome("retry", code=f"HTTP {response.status}",
                       message=f"平台应答不是约定的 JSON（结果未知，将以 dataFlag=2 重发）：{_excerpt(response.body)}")
    code = str(answer.get("code")).strip()
    message = str(answer.get("message") or "")
    if code == "200":
        return Outcome("success", code=code, message=message or "success")
    if _BUSY.search(message):
        return Outcome("retry", code=code, message=message)
    return Outcome("reject", code=code, message=message or "平台未说明原因")


# --- planning ------------------------------------------------------------------------------------

def plans_for(report_type: ReportType, period: spec.Period, source, settings,
              *, only_department: str | None = None) -> list[UploadPlan]:
    """The uploads for one period (a scheduled slot, or a re-send of its statDate)."""
    kind = kind_of(report_type)
    stat_date = period.stat_date_text
    if kind == spec.HOSPITAL_DAILY:
        names = list(spec.HOSPITAL_DAILY_FIELDS)
        if settings.get("send_total_person_times") == "1":
            names.append(spec.TOTAL_PERSON_TIMES)
        figures = {name: _figure(source, report_type, name, period) for name in names}
        return [UploadPlan(business_key=stat_date, period=stat_date, rows=[figures])]
    if kind == spec.MONTHLY:
        names = [n for n in spec.MONTHLY_QUERIED_FIELDS if n not in _not_collected(settings)]
        figures = {name: _figure(source, report_type, name, period) for name in names}
        return [UploadPlan(business_key=stat_date, period=stat_date, rows=[figures])]
    return _department_plans(report_type, period, source, only_department)


def _department_plans(report_type: ReportType, period: spec.Period, source,
                      only_department: str | None) -> list[UploadPlan]:
    stat_date = period.stat_date_text
    rows = source.query(report_type, "departments", **_params(period))
    mapped = models.mappings()
    national = models.national_departments()
    plans: list[UploadPlan] = []
    held: list[Problem] = []
    for row in rows:
        local_code = str(row["departNoExp"])
        if only_department is not None and local_code != only_department:
            continue
        local_name = str(row["departNameExp"] or "")
        mapping = mapped.get(local_code)
        code = mapping.national_code if mapping else None
        if not code or code not in national:
            reason = (f"院内科室 {local_code} {local_name} 对照的国家科室代码 {code} 不在 CT08.00.002 中" if code
                      else f"院内科室 {local_code} {local_name} 尚未对照 CT08.00.002 国家科室代码")
            held.append(Problem("departNo", reason + "，本条未上报；请在科室对照中维护后补报", record_key=local_code))
            continue
        record = {"departNoExp": local_code, "departNameExp": local_name, "departNo": code,
                  "departName": national[code], "personTimes": _number(row["personTimes"])}
        plans.append(UploadPlan(business_key=f"{stat_date}#{local_code}", period=stat_date, rows=[record],
                                department=local_code, search_keys=[local_code, code]))
    if only_department is not None and not plans:
        if held:
            raise ConfigurationError(held[0].reason)
        # No visits any more: the corrected figure is 0 (the mapping still decides the national code).
        mapping = mapped.get(only_department)
        if mapping is None or mapping.national_code not in national:
            raise ConfigurationError(f"院内科室 {only_department} 尚未对照 CT08.00.002 国家科室代码")
        record = {"departNoExp": only_department, "departNameExp": mapping.local_name,
                  "departNo": mapping.national_code, "departName": national[mapping.national_code], "personTimes": 0}
        plans.append(UploadPlan(business_key=f"{stat_date}#{only_department}", period=stat_date, rows=[record],
                                department=only_department))
    if held and plans:
        plans[0].held_back.extend(held)  # recorded by the core with the plans, whatever their keys
    elif held:  # nothing to send: a plan without rows records only its held-back records
        plans.append(UploadPlan(business_key=f"{stat_date}#held-back", period=stat_date, rows=None,
                                held_back=held))
    return plans


def _params(period: spec.Period) -> dict[str, Any]:
    """Query parameters (see plugins/keydata/queries.py): local wall-clock datetimes, which core.hisdb binds
    as 'YYYY-MM-DD HH:MM:SS' text for SQLite and as timestamps elsewhere; the window is [start, end)."""
    return {"start": period.start, "end": period.end, "stat_date": period.stat_date,
            "stat_day": period.stat_date.date()}


def _figure(source, report_type: ReportType, name: str, period: spec.Period) -> int | float | None:
    rows = source.query(report_type, name, **_params(period))
    if not rows:
        return None
    row = rows[0]
    value = row.get("value") if "value" in row else next(iter(row.values()), None)
    return _number(value)


def _number(value: Any) -> int | float | None:
    """DB numbers as JSON numbers: Decimal/float that are whole become int (counts are integers)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BaosongError(f"指标 SQL 返回的不是数字：{value[:40]!r}") from None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _not_collected(settings) -> set[str]:
    """Monthly figures not queried at all: withheld ones and the other grade's surgery figures (a
    hospital's HIS may have no SQL for them)."""
    skip = set(_withheld(settings, strict=False))
    level = settings.get("hospital_level")
    if level == "secondary":
        skip.add("surgGrade4Num")
    elif level == "tertiary":
        skip.add("surgGrande3Num")
    return skip


def _withheld(settings, *, strict: bool = True) -> list[str]:
    names = [n.strip() for n in re.split(r"[,，;；\s]+", settings.get("withheld_monthly_fields")) if n.strip()]
    if strict:
        for name in names:
            if name not in spec.MONTHLY_FIELDS:
                raise ConfigurationError(f"“月报暂不报送的字段”中的 {name} 不是月报字段")
            if name not in spec.WITHHOLDABLE_FIELDS:
                raise ConfigurationError(
                    f"“月报暂不报送的字段”中的 {name} 是文档要求报送的字段，不能暂不报送"
                    f"（可暂不报送：{'、'.join(spec.WITHHOLDABLE_FIELDS)}）")
    return names


# --- payload -------------------------------------------------------------------------------------

def data_flag(upload: UploadContext) -> str:
    """3 withdraws; 2 re-sends a statDate the platform may already hold; 1 is a first submission."""
    return delivery.flag_to_send(upload)


def _hospital_daily_fields(figures: dict[str, Any], settings) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if settings.get("send_total_person_times") == "1" and figures.get(spec.TOTAL_PERSON_TIMES) is not None:
        record[spec.TOTAL_PERSON_TIMES] = figures[spec.TOTAL_PERSON_TIMES]
    for name in spec.HOSPITAL_DAILY_FIELDS:
        record[name] = figures.get(name)
    return record


def _monthly_fields(figures: dict[str, Any], settings) -> dict[str, Any]:
    level = settings.get("hospital_level")
    if level not in ("secondary", "tertiary"):
        raise ConfigurationError(f"{TITLE}：未设置医院等级（secondary 二级 / tertiary 三级），月报无法确定报送三级还是四级手术指标")
    withheld = set(_withheld(settings))
    not_for_level = spec.GRADE4_FIELDS if level == "secondary" else spec.GRADE3_FIELDS
    percent = settings.get("proportion_format", "ratio") == "percent"
    record: dict[str, Any] = {}
    for name in spec.MONTHLY_FIELDS:
        if name in withheld or name in not_for_level:
            continue
        if name in spec.PROPORTIONS:
            numerator, denominator = (figures.get(n) for n in spec.PROPORTIONS[name])
            value = _proportion(numerator, denominator, percent)
        else:
            value = figures.get(name)
        if value is None:
            if name in spec.PILOT_OPTIONAL_FIELDS or name == "psybedNum":
                continue  # the document lets these be left out; a missing required one fails validation
            if name in spec.CONDITIONAL_FIELDS:
                raise RejectUpload(f"{name} 没有取到数据（指标 SQL 返回空）：请检查指标 SQL 后更正重报")
        record[name] = value
    return record


def _proportion(numerator: Any, denominator: Any, percent: bool) -> float | None:
    if numerator is None or denominator is None:
        return None
    if not denominator:
        return 0
    ratio = numerator / denominator
    return round(ratio * 100, 2) if percent else round(ratio, 4)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"超时设置「{text}」不是数字") from None
    if value <= 0:
        raise ConfigurationError("超时设置须大于 0")
    return value


def _json_or_none(body: str) -> Any:
    try:
        return json.loads(body) if body else None
    except (ValueError, TypeError):
        return None


def _excerpt(text: str, limit: int = 120) -> str:
    text = (text or "").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


# --- admin actions (hook upload_actions: buttons on an upload's detail page) --------------------------

@hookimpl
def upload_actions(upload: Upload) -> list[UploadAction]:
    """更新重发 (dataFlag 2) and 撤回 (dataFlag 3) of what an upload submitted."""
    if upload.operation == "delete":
        return []
    no_rows = "" if upload.rows else "没有数据（被暂缓的科室记录请先维护对照）"
    landed = "" if upload.status == UploadStatus.SUCCEEDED else \
        f"平台尚未确认接收（当前状态：{upload.status_label}），无可更新或撤回的记录：请用「重试」发送"
    return [
        UploadAction("resend", "更新重发（dataFlag=2）", handler=resend_update, unavailable=no_rows or landed,
                     confirm="以 dataFlag=2（更新）重新发送这条数据？", done="已提交更新重发（dataFlag=2）"),
        UploadAction("withdraw", "撤回（dataFlag=3）", handler=withdraw, unavailable=no_rows or landed,
                     confirm="以 dataFlag=3（删除）撤回这条数据？", done="已提交撤回（dataFlag=3）"),
    ]


_SUFFIX = re.compile(r"#(update|delete)-\d+$")


def resend_update(upload_id: int, actor: str) -> int:
    """Re-collect the figures of an upload's statDate (and department) and send them as a correction
    (operation "update", dataFlag 2). Returns the new upload's id; it is queued at once."""
    original = _load(upload_id)
    if original.operation == "delete":
        raise BaosongError("撤回记录不能更正重报")
    report_type = _report_type(original)
    from core import settings as core_settings
    from core.scheduler import hospital_data

    models.ensure_setup()
    period = spec.period_of_stat_date(kind_of(report_type), original.period)
    plans = plans_for(report_type, period, hospital_data(), core_settings.regulator_settings(REGULATOR),
                      only_department=original.department)
    plan = next(p for p in plans if p.rows)
    return _record_follow_up(report_type, original, plan.rows, "update", actor, plan.search_keys)


def withdraw(upload_id: int, actor: str) -> int:
    """Withdraw what an upload submitted (operation "delete", dataFlag 3, the same statDate and
    department). Returns the new upload's id; it is queued at once."""
    original = _load(upload_id)
    if original.operation == "delete":
        raise BaosongError("该记录本身就是撤回")
    if original.status != UploadStatus.SUCCEEDED:
        raise BaosongError(f"只有已成功的上报可以撤回（当前状态：{original.status_label}）")
    return _record_follow_up(_report_type(original), original, list(original.rows or []), "delete", actor, [])


def _load(upload_id: int) -> Upload:
    upload = db.session.get(Upload, upload_id)
    if upload is None:
        raise BaosongError(f"上报 {upload_id} 不存在")
    if not upload.report_type.startswith("keydata."):
        raise BaosongError(f"上报 {upload_id} 不是{TITLE}的上报")
    if not upload.rows:
        raise BaosongError(f"上报 {upload_id} 没有数据（被暂缓的科室记录请先维护对照）")
    return upload


def _report_type(upload: Upload) -> ReportType:
    from core.plugins import registry

    return registry().report_type(upload.report_type)


def _record_follow_up(report_type: ReportType, original: Upload, rows: list[dict], operation: str, actor: str,
                      search_keys: list[str]) -> int:
    from core.queue import enqueue_upload

    base = _SUFFIX.sub("", original.business_key)
    word = "update" if operation == "update" else "delete"
    taken = db.session.scalar(
        sa.select(sa.func.count(Upload.id)).where(Upload.report_type == original.report_type,
                                                  Upload.business_key.like(f"{base}#{word}-%"))
    )
    plan = UploadPlan(business_key=f"{base}#{word}-{taken + 1}", period=original.period, rows=rows,
                      department=original.department, operation=operation, parent_id=original.id,
                      search_keys=[*search_keys, f"源上报{original.id}"])
    [new_id] = ledger.record_plans(report_type, [plan], actor=actor)
    enqueue_upload(new_id, 0)
    return new_id
