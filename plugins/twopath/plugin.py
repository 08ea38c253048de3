"""Baosong plugin: two-channel drug (双通道) and chronic-disease (慢特病) filings with the Jiangxi
national medical-insurance platform (twopath-jiangxi-insurance.txt and the specs README).

Unlike timed reports, filings are events people create; each interface call is one upload in the
ledger (report type ``twopath.<infno>``). Interactive calls (9001 sign-in, 1101 lookup, the query
before a re-send) run in-process through ``core.pipeline.attempt``; filings are queued. Status
synchronisation is the scheduled ``twopath.sync``.
"""

from __future__ import annotations

from datetime import datetime

from core.hook_types import (
    OutboundRequest,
    Outcome,
    Payload,
    Regulator,
    ReportType,
    Response,
    Sandbox,
    SettingField,
    Settings,
    UploadContext,
    UploadPlan,
)
from core.hookspecs import hookimpl
from plugins.twopath import client, filings, protocol
from plugins.twopath import models as _models  # noqa: F401  (registers the plugin's tables)

REGULATOR = client.REGULATOR
SPEC_NEEDED = "不可用：需要接口规范（医院文档列出了该接口，但没有字段表）"

SETTINGS = (
    SettingField("base_url", "接口地址前缀", help="例如 http://10.0.0.1:8080（不含交易路径）"),
    SettingField("url_template", "交易地址模板", default="{base}/CSB/hsa-fsi-{infno}",
                 help="{base} 为接口地址前缀，{infno} 为交易编号"),
    SettingField("gateway", "网关认证", default="csb", choices=protocol.GATEWAYS,
                 help="csb：阿里 CSB 头（江西）；tif：腾讯 TIF 头；none：不加认证头"),
    SettingField("csb_access_key", "CSB AccessKey", secret=True),
    SettingField("csb_secret_key", "CSB SecretKey", secret=True),
    SettingField("csb_api_version", "CSB 接口版本", default="1.0.0"),
    SettingField("tif_paasid", "TIF paasid"),
    SettingField("tif_token", "TIF token", secret=True),
    SettingField("fixmedins_code", "定点医药机构编号（12位）"),
    SettingField("fixmedins_name", "定点医药机构名称（≤20字）"),
    SettingField("mdtrtarea_admvs", "就医地医保区划（6位）"),
    SettingField("poolarea_no", "统筹区域（双通道机构信息）", help="空则用就医地医保区划"),
    SettingField("recer_sys_code", "接收方系统代码", help="由医保局分配"),
    SettingField("infver", "接口版本号", default="V1.0"),
    SettingField("opter_type", "经办人类别", default="1", choices=("1", "2", "3"),
                 help="1-经办人；2-自助终端；3-移动终端"),
    SettingField("default_opter", "定时任务经办人编号", default="baosong"),
    SettingField("default_opter_name", "定时任务经办人姓名", default="报送定时同步"),
    SettingField("dev_no", "设备编号"),
    SettingField("mac", "签到 MAC 地址"),
    SettingField("ip", "签到 IP 地址"),
    SettingField("sign_max_age_minutes", "签到号最长使用时间（分钟）", default="0",
                 help="0：一直使用，直到平台提示签到失效"),
    SettingField("sign_expired_keywords", "签到失效提示关键字", default="签到",
                 help="平台失败信息含任一关键字（逗号分隔）时重新签到后重试"),
    SettingField("query_status_field", "查询结果中的审核状态字段",
                 help="5311/5301 字段表没有审核状态字段：联调时按平台实际返回填写；空则状态同步只能补全申请号"),
    SettingField("status_approved_values", "审核通过的状态值", help="逗号分隔"),
    SettingField("status_rejected_values", "审核不通过的状态值", help="逗号分隔"),
    SettingField("status_pending_values", "待审核的状态值", help="逗号分隔"),
    SettingField("timeout_seconds", "超时（秒）", default="30"),
)

CODES = {
    "0": "成功",
    "-1": "失败：见平台返回的错误信息（err_msg）",
    client.SIGN_EXPIRED: "签到已失效：已清除缓存的签到号，重试时自动重新签到【9001】",
    client.QUERY_FIRST: "重发前查询确认平台已有该备案：未重复申请",
    "401": "网关认证失败：检查网关类型、AccessKey/SecretKey 或 paasid/token，以及服务器时间",
    "403": "网关拒绝：检查接口授权",
}


@hookimpl
def register_regulators() -> list[Regulator]:
    return [Regulator(REGULATOR, "江西省医疗保障信息平台（双通道/慢特病）", settings=SETTINGS, codes=CODES)]


# "Import from the HIS" reads one patient by ID number (core/demo_hospital.py's patients table; a
# hospital replaces it with its own SQL). Column aliases are the interface field names.
PATIENT_SQL = (
    "SELECT name AS psn_name, id_number AS certno, id_type AS psn_cert_type, gender AS gend, nation AS naty, "
    "birth_date AS brdy, phone AS tel, address AS addr, insu_card_no AS card_no, psn_no, insutype, "
    "insu_admdvs AS insuplc_admdvs, emp_no, emp_name FROM patients WHERE id_number = :certno"
)


def _rt(infno: str, title: str, **kwargs) -> ReportType:
    schema = protocol.schema(infno) if infno in protocol.INTERFACES else None
    queries = {"patient": PATIENT_SQL} if infno in ("2511", "2503") else {}
    return ReportType(f"twopath.{infno}", f"【{infno}】{title}", REGULATOR, schema=schema, queries=queries,
                      **kwargs)


@hookimpl
def register_report_types() -> list[ReportType]:
    types = [_rt(infno, title) for infno, title in protocol.INTERFACES.items()]
    types.append(ReportType(client.SYNC, "审核状态同步（5311/5301 查询）", REGULATOR, cron="*/30 * * * *",
                            catch_up="latest"))
    # Named by the hospital (section 2.1), no field table in any document we have.
    types.append(_rt("1309", "门诊慢特病种目录下载", available=False, unavailable_reason=SPEC_NEEDED))
    types.append(_rt("5205", "人员慢特病用药记录查询", available=False, unavailable_reason=SPEC_NEEDED))
    return types


@hookimpl
def register_sandboxes() -> list[Sandbox]:
    from plugins.twopath import sandbox

    return [Sandbox("twopath", "江西医保平台（双通道/慢特病）沙箱", make_app=sandbox.make_app,
                    demo_config=sandbox.demo_config, seed=sandbox.seed)]


@hookimpl
def register_blueprints() -> list:
    from plugins.twopath.views import PAGES

    return [PAGES]


@hookimpl
def upload_actions(upload) -> list:
    from plugins.twopath import views

    return views.upload_actions(upload)


@hookimpl
def schedule(report_type: ReportType, slot: datetime, source, settings: Settings) -> list[UploadPlan]:
    if report_type.name == client.SYNC:
        return filings.plan_sync(slot, settings)
    return []  # the other interfaces are events people create


@hookimpl
def build_payload(upload: UploadContext) -> Payload:
    return client.build(upload)


@hookimpl
def sign(upload: UploadContext, payload: Payload) -> OutboundRequest:
    return client.sign_request(upload, payload)


@hookimpl
def parse_response(upload: UploadContext, response: Response) -> Outcome:
    return client.parse(upload, response)


@hookimpl
def upload_finished(upload: UploadContext, outcome: Outcome) -> None:
    filings.on_upload_finished(upload, outcome)
