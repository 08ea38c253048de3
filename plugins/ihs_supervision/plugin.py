"""Internet medical service supervision platform (互联网医疗服务监管平台 V1.1.8).

The interfaces A0000–A2010 are defined as data in ``schemas/`` (one file per interface), but the
document's section 4 (the sign algorithm for the ``sign`` header) is missing from the copy we have.
Until a signing strategy is specified, every report type here is declared unavailable: the admin
shows why, and the pipeline refuses to send. Adding the missing interfaces later is a matter of
adding schema files.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.hook_types import Regulator, ReportType, SettingField
from core.hookspecs import hookimpl

SCHEMAS = Path(__file__).with_name("schemas")
MISSING_SIGN = "规范第4节（签名算法）缺失，未配置签名策略前拒绝发送"


def interfaces() -> list[dict]:
    """The interface blocks of the schema files, in interface-number order."""
    found = []
    for path in sorted(SCHEMAS.glob("A*.json")):
        document = json.loads(path.read_text("utf-8"))
        found.append({**document["interface"], "schema_file": path.name})
    return found


@hookimpl
def register_regulators():
    return [Regulator("ihs_supervision", "互联网医疗服务监管平台", settings=(
        SettingField("base_url", "接口地址"),
        SettingField("appid", "appid"),
        SettingField("app_secret", "签名密钥", secret=True),
    ))]


@hookimpl
def register_report_types():
    return [
        ReportType(name=f"ihs.{item['code']}", title=item["title"], regulator="ihs_supervision",
                   available=False, unavailable_reason=MISSING_SIGN)
        for item in interfaces()
    ]
