"""双通道申请表 (6.5 "根据信息动态生成双通道申请电子表格"): one workbook per approved filing, generated
from the filing itself (patient, diagnosis, drug or disease, the approving doctor, the institution,
dates) and kept with it (``Filing.sheet``), so what was approved is what can be printed and archived.

Identifiers are kept in full: the sheet is the application form the patient signs and the insurance
office files. A download is an operator's action, recorded in the audit log, and like every other page and
export it carries the identifiers in full only for the roles that may see them (``web.permissions``,
default admin); anyone else gets the kept sheet with its identifier rows masked (``masked``).
"""

from __future__ import annotations

import io
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Border, Font, Side

from core import clock
from core.masking import mask_field
from plugins.twopath.models import TWOPATH, Filing

_CERT_TYPES = {"01": "居民身份证"}
_GENDERS = {"1": "男", "2": "女", "9": "未说明"}
_THIN = Side(style="thin")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)


# The sheet's rows that identify a person, and the field whose masking each follows (core.masking).
IDENTIFYING_ROWS = {"患者姓名": "psn_name", "证件号码": "certno", "医保卡号": "card_no",
                    "联系电话": "tel", "联系地址": "addr", "代办人": "name", "代办人联系方式": "agnter_tel"}


def title_of(filing: Filing) -> str:
    return "双通道药品备案申请表" if filing.kind == TWOPATH else "门诊慢特病备案申请表"


def file_name(filing: Filing) -> str:
    return f"{title_of(filing)}-{filing.id}-{filing.appy_date or ''}.xlsx"


def rows_of(filing: Filing) -> list[tuple[str, str]]:
    """(label, value) in the order the form shows them."""
    data: dict[str, Any] = filing.data or {}
    institution = (data.get("twopathfixmedins") or [{}])[0] if filing.kind == TWOPATH else {
        "fixmedins_code": data.get("ide_fixmedins_no", ""), "fixmedins_name": data.get("ide_fixmedins_name", "")}
    item_label = "申请药品" if filing.kind == TWOPATH else "申请病种"
    approved_at = clock.from_db(filing.doctor_approved_at).astimezone(clock.default_timezone()) \
        if filing.doctor_approved_at else None
    rows = [
        ("申请单编号", str(filing.id)),
        ("患者姓名", filing.psn_name),
        ("性别", _GENDERS.get(str(data.get("gend") or ""), str(data.get("gend") or ""))),
        ("出生日期", str(data.get("brdy") or "")),
        ("证件类型", _CERT_TYPES.get(str(data.get("psn_cert_type") or ""), str(data.get("psn_cert_type") or ""))),
        ("证件号码", filing.certno),
        ("医保卡号", filing.card_no),
        ("人员编号", filing.psn_no),
        ("参保地医保区划", filing.insuplc_admdvs),
        ("联系电话", str(data.get("tel") or "")),
        ("联系地址", str(data.get("addr") or "")),
        ("诊断依据", str(data.get("cond_abst") or "")),
        (item_label, f"{filing.item_name}（{filing.item_code}）"),
        ("定点医药机构", f"{institution.get('fixmedins_name', '')}（{institution.get('fixmedins_code', '')}）"),
        ("申请日期", filing.appy_date),
        ("有效期", f"{filing.begndate} 至 {filing.enddate}"),
        ("审核医生", f"{filing.doctor_name}（医保医师代码 {filing.doctor_code}"
                     + (f"，工号 {filing.doctor_his_code}" if filing.doctor_his_code else "") + "）"),
        ("医生审核时间", f"{approved_at:%Y-%m-%d %H:%M}" if approved_at else ""),
    ]
    if data.get("agnter_name"):
        rows += [("代办人", str(data["agnter_name"])), ("代办人联系方式", str(data.get("agnter_tel") or ""))]
    return rows


def build(filing: Filing) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "申请表"
    sheet.merge_cells("A1:B1")
    sheet["A1"] = title_of(filing)
    sheet["A1"].font = Font(size=16, bold=True)
    sheet["A1"].alignment = Alignment(horizontal="center")
    for number, (label, value) in enumerate(rows_of(filing), start=2):
        sheet.cell(number, 1, label).font = Font(bold=True)
        sheet.cell(number, 2, value).alignment = Alignment(wrap_text=True)
        for column in (1, 2):
            sheet.cell(number, column).border = _BOX
    end = len(rows_of(filing)) + 3
    sheet.cell(end, 1, "患者（代办人）签字：")
    sheet.cell(end + 1, 1, "医生签字：")
    sheet.cell(end + 2, 1, f"生成时间：{clock.local_now():%Y-%m-%d %H:%M}")
    sheet.column_dimensions["A"].width = 18
    sheet.column_dimensions["B"].width = 60
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def masked(kept: bytes) -> bytes:
    """The kept sheet with every identifying row's value masked (the rest, layout included, as kept)."""
    book = load_workbook(io.BytesIO(kept))
    sheet = book.active
    for label_cell, value_cell in sheet.iter_rows(min_row=2, max_col=2):
        field = IDENTIFYING_ROWS.get(str(label_cell.value or ""))
        if field and value_cell.value not in (None, ""):
            value_cell.value = mask_field(field, str(value_cell.value))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
