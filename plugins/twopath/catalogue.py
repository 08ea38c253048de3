"""Drug (特药) and chronic-disease (病种) catalogues: Excel import and export (openpyxl).

An import is checked completely first; any error (naming row and column) applies nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from core.db import db
from plugins.twopath.models import Disease, Drug

# kind -> (model, code header, name header, code max length, name max length). The drug lengths are
# those of twopathdruglist (med_list_codg 30, med_list_name 50); the disease table gives none, so the
# column sizes of our own table limit them.
CATALOGUES = {
    "drugs": (Drug, "中心药品项目编码", "中心药品项目名称", 30, 50),
    "diseases": (Disease, "门慢门特病种目录代码", "门慢门特病种名称", 30, 300),
}
ENABLED_HEADER = "启用"
NOTE_HEADER = "备注"
TITLES = {"drugs": "特药目录", "diseases": "慢特病病种目录"}
# Caps on an imported workbook (the catalogues are a few thousand rows): the file is read in memory.
MAX_IMPORT_ROWS = 20000
MAX_IMPORT_BYTES = 5 * 1024 * 1024
_YES = {"是", "启用", "1", "y", "yes", "true"}
_NO = {"否", "停用", "0", "n", "no", "false"}


@dataclass
class RowError:
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"第 {self.row} 行「{self.column}」：{self.reason}"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def import_workbook(kind: str, content: bytes) -> tuple[int, list[RowError]]:
    """Apply a workbook to the catalogue: (rows applied, errors). With any error nothing is applied."""
    model, code_header, name_header, code_max, name_max = CATALOGUES[kind]
    if len(content) > MAX_IMPORT_BYTES:
        return 0, [RowError(0, "文件", f"文件 {len(content) // 1024} KB，超过 {MAX_IMPORT_BYTES // (1024 * 1024)} MB 的上限：请拆分后分批导入")]
    try:
        sheet = load_workbook(io.BytesIO(content), read_only=True, data_only=True).worksheets[0]
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        return 0, [RowError(0, "文件", f"不是有效的 Excel（.xlsx）文件：{type(exc).__name__}")]
    from itertools import islice

    rows = list(islice(sheet.iter_rows(values_only=True), MAX_IMPORT_ROWS + 2))  # header + cap + 1
    if len(rows) > MAX_IMPORT_ROWS + 1:
        return 0, [RowError(MAX_IMPORT_ROWS + 2, "文件", f"超过 {MAX_IMPORT_ROWS} 行的上限：请拆分后分批导入，未导入任何数据")]
    if not rows:
        return 0, [RowError(1, "表头", "工作表为空")]
    headers = [_text(h) for h in rows[0]]
    errors = [RowError(1, h, "缺少该列") for h in (code_header, name_header) if h not in headers]
    if errors:
        return 0, errors
    at = {h: headers.index(h) for h in (code_header, name_header, ENABLED_HEADER, NOTE_HEADER) if h in headers}

    def cell(row: tuple, header: str) -> str:
        i = at.get(header)
        return _text(row[i]) if i is not None and i < len(row) else ""

    parsed: list[tuple[str, str, bool, str]] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(_text(v) for v in row):
            continue  # blank lines are ignored
        code, name = cell(row, code_header), cell(row, name_header)
        enabled_text, note = cell(row, ENABLED_HEADER).lower(), cell(row, NOTE_HEADER)
        if not code:
            errors.append(RowError(number, code_header, "不能为空"))
        elif len(code) > code_max:
            errors.append(RowError(number, code_header, f"长度 {len(code)} 超过 {code_max}"))
        elif code in seen:
            errors.append(RowError(number, code_header, f"与第 {seen[code]} 行重复"))
        else:
            seen[code] = number
        if not name:
            errors.append(RowError(number, name_header, "不能为空"))
        elif len(name) > name_max:
            errors.append(RowError(number, name_header, f"长度 {len(name)} 超过 {name_max}"))
        if enabled_text and enabled_text not in _YES | _NO:
            errors.append(RowError(number, ENABLED_HEADER, "应为“是”或“否”"))
        if len(note) > 200:
            errors.append(RowError(number, NOTE_HEADER, "长度超过 200"))
        parsed.append((code, name, enabled_text not in _NO, note))
    if errors:
        return 0, errors
    existing = {item.code: item for item in db.session.execute(sa.select(model)).scalars()}
    for code, name, enabled, note in parsed:
        item = existing.get(code)
        if item is None:
            db.session.add(model(code=code, name=name, enabled=enabled, note=note))
        else:
            item.name, item.enabled, item.note = name, enabled, note
    db.session.commit()
    return len(parsed), []


def export_workbook(kind: str) -> bytes:
    model, code_header, name_header, _, _ = CATALOGUES[kind]
    book = Workbook()
    sheet = book.active
    sheet.title = TITLES[kind]
    sheet.append([code_header, name_header, ENABLED_HEADER, NOTE_HEADER])
    for item in db.session.execute(sa.select(model).order_by(model.code)).scalars():
        sheet.append([item.code, item.name, "是" if item.enabled else "否", item.note])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def items(kind: str, enabled_only: bool = False) -> list:
    model = CATALOGUES[kind][0]
    query = sa.select(model).order_by(model.code)
    if enabled_only:
        query = query.where(model.enabled.is_(True))
    return list(db.session.execute(query).scalars())
