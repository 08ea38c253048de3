"""What the document defines, as data: the business steps in the document's call order (1.3 items 5
and 6), and the interfaces found in ``schemas/`` (one file per interface, each naming its step).

A step without a schema file is listed as 文档缺失 and cannot be sent; adding its schema file (with
``interface.step``, ``code``, ``path``, ``key_field`` and, optionally, a default ``query``) is all it
takes to enable it: the report type, its call-order place and the sandbox follow from the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from core.schema import Schema, load_schema

SCHEMAS = Path(__file__).with_name("schemas")
PREFIX = "ihs"
OWN_HOSPITAL = "@hosp_id"  # a requirement on the hospital of the settings (the central hospital)
REQUIRES_COLUMN = "_requires"  # optional query column "step:key,step:key" (e.g. an attachment's owner)


@dataclass(frozen=True)
class Step:
    """One business step of the document. ``requires`` are (step, field): the row's ``field`` holds the
    key of a record of that step which must have been accepted before (OWN_HOSPITAL: settings)."""

    name: str
    title: str
    section: str
    requires: tuple[tuple[str, str], ...] = ()


# 1.3 item 5: 开通医疗机构-上传科室信息-绑定科目-上传医务人员-上传电子病历-上传复诊订单记录-上传处方信息-
# 上传购药订单记录-上传药品信息-上传复诊服务信息; item 6: 绑定合作医院-然后再上传远程会诊信息.
# 绑定科目 and 绑定合作医院 have no interface of their own in the document: the platform's side (the
# partner hospital itself is uploaded with A1000, 协作医院信息). Attachments come after the record
# that owns them (2.1.1: 业务数据上传后，如果有附件通过此接口上传).
STEPS: tuple[Step, ...] = (
    Step("hospital", "医疗机构信息上传", "2.2.1"),
    Step("department", "科室信息上传", "2.2.2", (("hospital", OWN_HOSPITAL),)),
    Step("staff", "医务人员信息上传", "2.2.3", (("department", "deptCode"),)),
    Step("emr", "电子病历信息上传", "2.7.1", (("staff", "docCode"),)),
    Step("revisit_order", "复诊订单记录上传", "2.3.1", (("department", "deptCode"), ("staff", "docCode"))),
    Step("recipe", "处方信息上传", "2.5.1", (("revisit_order", "orderId"),)),
    Step("drug_order", "购药订单记录上传", "2.6.1", (("recipe", "recipeId"),)),
    Step("drug", "药品信息上传", "2.6.2"),
    Step("revisit_service", "复诊服务信息上传", "2.3.2",
         (("revisit_order", "orderId"), ("recipe", "recipeId"), ("emr", "recordId"))),
    Step("consultation", "会诊信息上传", "2.4.1", (("hospital", OWN_HOSPITAL), ("hospital", "applyHospId"))),
    Step("attachment", "附件信息上传", "2.1.1 / 2.1.2"),
)
STEP_BY_NAME = {s.name: s for s in STEPS}
MISSING_NOTE = "文档缺失：本副本在 2.4.1 之后截断，缺少该接口的接口号、路径和字段表"


@dataclass(frozen=True)
class Interface:
    code: str
    step: str
    path: str
    title: str
    key_field: str
    content_type: str
    batch_limit: int
    max_request_bytes: int | None
    schema: Schema
    query: str | None
    raw: dict[str, Any]

    @property
    def report_type(self) -> str:
        return f"{PREFIX}.{self.code}"

    @property
    def multipart(self) -> bool:
        return self.content_type.startswith("multipart/")


@cache
def interfaces() -> tuple[Interface, ...]:
    """Interfaces with a schema file, in call order (then by code)."""
    found = []
    for path in sorted(SCHEMAS.glob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        block = document.get("interface") or {}
        step = block.get("step")
        if step not in STEP_BY_NAME:
            raise ValueError(f"{path.name}: interface.step 应为 {', '.join(STEP_BY_NAME)} 之一")
        found.append(Interface(
            code=block["code"], step=step, path=block["path"], title=block.get("title") or document["title"],
            key_field=block["key_field"], content_type=block.get("content_type", "application/json"),
            batch_limit=int(block.get("batch_limit") or 10000), max_request_bytes=block.get("max_request_bytes"),
            schema=load_schema(path), query=block.get("query"), raw=block,
        ))
    order = {s.name: i for i, s in enumerate(STEPS)}
    return tuple(sorted(found, key=lambda i: (order[i.step], i.code)))


def by_code(code: str) -> Interface:
    for item in interfaces():
        if item.code == code:
            return item
    raise KeyError(code)


def by_report_type(name: str) -> Interface:
    return by_code(name.removeprefix(f"{PREFIX}."))


def by_path(path: str) -> Interface | None:
    for item in interfaces():
        if item.path == path:
            return item
    return None


def of_step(step: str) -> list[Interface]:
    return [i for i in interfaces() if i.step == step]


def missing_steps() -> list[Step]:
    """Steps of the document with no schema file yet (文档缺失)."""
    present = {i.step for i in interfaces()}
    return [s for s in STEPS if s.name not in present]


def active_requirements(step: str) -> list[tuple[str, str]]:
    """A step's requirements on steps that have an interface; those on missing steps cannot be checked
    (and cannot be sent) until the document arrives."""
    present = {i.step for i in interfaces()}
    return [(s, f) for s, f in STEP_BY_NAME[step].requires if s in present]


def position(step: str) -> int:
    return [s.name for s in STEPS].index(step)
