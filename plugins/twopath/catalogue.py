"""Drug (特药) and chronic-disease (病种) catalogues: Excel import and export (openpyxl).

An import is checked completely first; any error (naming row and column) applies nothing.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from core.db import db
from plugins.twopath.models import Disease, Drug, Institution

log = logging.getLogger("baosong.twopath.catalogue")

# kind -> (model, code header, name header, code max length, name max length). The drug lengths are
# those of twopathdruglist (med_list_codg 30, med_list_name 50), the institutions' those of
# twopathfixmedins (fixmedins_code 30, fixmedins_name 300); the disease table gives none, so the column
# sizes of our own table limit them.
CATALOGUES = {
    "drugs": (Drug, "中心药品项目编码", "中心药品项目名称", 30, 50),
    "diseases": (Disease, "门慢门特病种目录代码", "门慢门特病种名称", 30, 300),
    "institutions": (Institution, "医疗机构编码", "医疗机构名称", 30, 300),
}
# Further columns of a catalogue: kind -> [(header, attribute, max length)].
EXTRA_COLUMNS = {"institutions": [("统筹区域", "poolarea_no", 30)]}
ENABLED_HEADER = "启用"
NOTE_HEADER = "备注"
TITLES = {"drugs": "特药目录", "diseases": "慢特病病种目录", "institutions": "定点医药机构"}
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
        log.info("catalogue upload is not a workbook: %s: %s", type(exc).__name__, exc)
        return 0, [RowError(0, "文件", "不是有效的 Excel（.xlsx）文件：请用 Excel 或 WPS 另存为 .xlsx 后再导入")]
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
    extras = EXTRA_COLUMNS.get(kind, [])
    at = {h: headers.index(h) for h in (code_header, name_header, ENABLED_HEADER, NOTE_HEADER,
                                        *(e[0] for e in extras)) if h in headers}

    def cell(row: tuple, header: str) -> str:
        i = at.get(header)
        return _text(row[i]) if i is not None and i < len(row) else ""

    parsed: list[tuple[str, str, bool, str, dict[str, str]]] = []
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
        extra = {}
        for header, attribute, max_length in extras:
            extra[attribute] = cell(row, header)
            if len(extra[attribute]) > max_length:
                errors.append(RowError(number, header, f"长度超过 {max_length}"))
        parsed.append((code, name, enabled_text not in _NO, note, extra))
    if errors:
        return 0, errors
    existing = {item.code: item for item in db.session.execute(sa.select(model)).scalars()}
    for code, name, enabled, note, extra in parsed:
        item = existing.get(code)
        if item is None:
            db.session.add(model(code=code, name=name, enabled=enabled, note=note, **extra))
        else:
            item.name, item.enabled, item.note = name, enabled, note
            for attribute, value in extra.items():
                setattr(item, attribute, value)
    db.session.commit()
    return len(parsed), []


def export_workbook(kind: str) -> bytes:
    model, code_header, name_header, _, _ = CATALOGUES[kind]
    book = Workbook()
    sheet = book.active
    sheet.title = TITLES[kind]
    extras = EXTRA_COLUMNS.get(kind, [])
    sheet.append([code_header, name_header, ENABLED_HEADER, NOTE_HEADER, *(e[0] for e in extras)])
    for item in db.session.execute(sa.select(model).order_by(model.code)).scalars():
        sheet.append([item.code, item.name, "是" if item.enabled else "否", item.note,
                      *(getattr(item, e[1]) for e in extras)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def items(kind: str, enabled_only: bool = False) -> list:
    model = CATALOGUES[kind][0]
    query = sa.select(model).order_by(model.code)
    if enabled_only:
        query = query.where(model.enabled.is_(True))
    return list(db.session.execute(query).scalars())


# --- 1309: the platform's chronic-disease catalogue into ours, with a preview first ----------------------

@dataclass
class CatalogueDiff:
    """What applying a 1309 download would change in the disease catalogue."""

    added: list[tuple[str, str]]
    renamed: list[tuple[str, str, str]]  # code, old name, new name
    disabled: list[tuple[str, str]]  # the platform marks them invalid (vali_flag 0)
    unchanged: int

    @property
    def changes(self) -> int:
        return len(self.added) + len(self.renamed) + len(self.disabled)


def diff_diseases(rows: list[dict[str, str]]) -> CatalogueDiff:
    existing = {d.code: d for d in db.session.execute(sa.select(Disease)).scalars()}
    added, renamed, disabled, unchanged = [], [], [], 0
    for row in rows:
        code, name = row["opsp_dise_code"][:30], (row.get("opsp_dise_name") or "")[:300]
        valid = row.get("vali_flag", "1") != "0"
        item = existing.get(code)
        if item is None:
            if valid:
                added.append((code, name))
        elif not valid and item.enabled:
            disabled.append((code, item.name))
        elif valid and name and item.name != name:
            renamed.append((code, item.name, name))
        else:
            unchanged += 1
    return CatalogueDiff(added, renamed, disabled, unchanged)


def apply_diseases(rows: list[dict[str, str]]) -> CatalogueDiff:
    diff = diff_diseases(rows)
    existing = {d.code: d for d in db.session.execute(sa.select(Disease)).scalars()}
    for code, name in diff.added:
        db.session.add(Disease(code=code, name=name, note="1309 下载"))
    for code, _old, new in diff.renamed:
        existing[code].name = new
    for code, _name in diff.disabled:
        existing[code].enabled = False
    db.session.commit()
    return diff
