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
    ProbeResult,
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
from plugins.twopath import client, filings, protocol, signature
from plugins.twopath import models as _models  # noqa: F401  (registers the plugin's tables)

REGULATOR = client.REGULATOR

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
    SettingField("sign_out_on_logout", "退出登录时签退【9002】", default="1", choices=("1", "0"),
                 help="1：用户退出管理后台时签退其签到号；0：不签退（签到号留待过期）"),
    SettingField("signtype", "数据签名（cainfo/signtype）", default=signature.OFF, choices=signature.CHOICES,
                 help="空：不签名（公开示例均为空）；SM3：cainfo 为 input 节点的 SM3 摘要；SM2：input 节点的 SM2 签名"),
    SettingField("sign_private_key", "签名私钥（SM2）", secret=True, help="64 位十六进制、PEM 或 Base64"),
    SettingField("sign_user_id", "签名用户 ID（SM2）", default="1234567812345678"),
    SettingField("sign_encoding", "签名编码（SM2）", default="der", choices=("der", "raw")),
    SettingField("sign_output", "签名输出（SM2）", default="hex", choices=("hex", "HEX", "base64")),
    SettingField("medication_days", "审核时查询用药记录的天数【5205】", default="180"),
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


# "Import from the HIS" reads one patient by ID number (demo/hospital.py's patients table; a
# hospital replaces it with its own SQL). Column aliases are the interface field names.
PATIENT_SQL = (
    "SELECT name AS psn_name, id_number AS certno, id_type AS psn_cert_type, gender AS gend, nation AS naty, "
    "birth_date AS brdy, phone AS tel, address AS addr, insu_card_no AS card_no, psn_no, insutype, "
    "insu_admdvs AS insuplc_admdvs, emp_no, emp_name FROM patients WHERE id_number = :certno"
)


# The doctor a permission is granted to, by HIS 工号 (4: 查询医生工号、姓名); insu_dr_code is the national
# 医保医师代码 the filings carry.
DOCTOR_SQL = "SELECT doctor_code, name, insu_dr_code, dept_code, title FROM doctors WHERE doctor_code = :doctor_code"
# The patient's recent visits in the HIS, shown while the doctor reviews (4: 院内就诊患者查询就诊数据).
VISITS_SQL = (
    "SELECT r.reg_time AS visit_time, d.dept_name AS dept_name, r.diag_code AS diag_code, r.diag_name AS diag_name, "
    "doc.name AS doctor_name, r.visit_type AS visit_type FROM registrations r JOIN patients p ON p.patient_id = "
    "r.patient_id LEFT JOIN departments d ON d.dept_code = r.dept_code LEFT JOIN doctors doc ON doc.doctor_code = "
    "r.doctor_code WHERE p.id_number = :certno AND r.status = 'valid' ORDER BY r.reg_time DESC LIMIT 20"
)
HIS_QUERIES = {"patient": PATIENT_SQL, "doctor": DOCTOR_SQL, "visits": VISITS_SQL}


def _rt(infno: str, title: str, **kwargs) -> ReportType:
    schema = protocol.schema(infno) if infno in protocol.INTERFACES else None
    queries = HIS_QUERIES if infno in ("2511", "2503") else {}
    return ReportType(f"twopath.{infno}", f"【{infno}】{title}", REGULATOR, schema=schema, queries=queries,
                      **kwargs)


@hookimpl
def register_report_types() -> list[ReportType]:
    types = [_rt(infno, title) for infno, title in protocol.INTERFACES.items()]
    types.append(ReportType(client.SYNC, "审核状态同步（5311/5301 查询）", REGULATOR, cron="*/30 * * * *",
                            catch_up="latest"))
    return types


@hookimpl
def register_sandboxes() -> list[Sandbox]:
    from plugins.twopath import sandbox

    return [Sandbox("twopath", "江西医保平台（双通道/慢特病）沙箱", make_app=sandbox.make_app,
                    demo_config=sandbox.demo_config, seed=sandbox.seed)]


@hookimpl
def seed_demo_hospital(connection, start, end) -> dict[str, int]:
    from plugins.twopath.demo_seed import seed_demo_hospital as seed

    return seed(connection, start, end)


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


@hookimpl
def test_connection(regulator: Regulator, settings: Settings) -> ProbeResult:
    """测试连接: a 9001 sign-in with the saved settings (see plugins/twopath/probe.py)."""
    from plugins.twopath import probe

    return probe.run(settings)


@hookimpl
def migrations_location() -> str:
    """The plugin's own Alembic branch ("twopath"), from its first tables (twopath_0000) on."""
    from pathlib import Path

    return str(Path(__file__).with_name("migrations"))


@hookimpl
def register_audit_actions() -> dict[str, str]:
    return {
        "twopath.api_token": "签发小程序接口令牌", "twopath.api_token_revoke": "停用小程序接口令牌", "twopath.catalogue_1309": "下载慢特病种目录（1309）",
        "twopath.doctor_grant": "授予医生权限", "twopath.doctor_revoke": "撤销医生权限",
        "twopath.sheet": "下载双通道申请表",
    }
