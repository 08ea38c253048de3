"""The regulators' field tables as data: every schema file loads, and matches the spec text it was
transcribed from (field names re-extracted from the documents, types, lengths, required flags, codes).

Counts established by reading the documents:
    keydata 五.1 10 fields (+ totalPersonTimes from the example), 五.2 8, 五.3 16; CT08.00.002 222 codes
    shangrao fee_list_d 24, setl_d 29, mdtrt_d 106
    ihs A0000 4, A0001 6, A1000 13 (+2 in attachment), A1001 5, A1002 24 (+2), A2000 20, A2001 20 (+4),
        A2010 18 (the copy is truncated after its mobile row)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.schema import FieldSpec, Schema, load_schema

REPO = Path(__file__).resolve().parents[1]
SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"
KEYDATA = REPO / "plugins" / "keydata"
SHANGRAO = REPO / "plugins" / "shangrao_insurance" / "schemas"
IHS = REPO / "plugins" / "ihs_supervision" / "schemas"
ALL_SCHEMAS = sorted(REPO.glob("plugins/*/schemas/*.json"))

CT08_COUNT = 222
KEYDATA_COUNTS = {"hospital_daily": 11, "dept_daily": 8, "monthly": 16}
SHANGRAO_COUNTS = {"fee_list_d": 24, "setl_d": 29, "mdtrt_d": 106}
IHS_COUNTS = {"A0000": 4, "A0001": 6, "A1000": 13, "A1001": 5, "A1002": 24, "A2000": 20, "A2001": 20, "A2010": 18}


def spec_text(name: str) -> str:
    path = SPECS / name
    if not path.exists():
        pytest.skip(f"regulator document {path} not available")
    return path.read_text(encoding="utf-8")


def ct08() -> list[dict[str, Any]]:
    return json.loads((KEYDATA / "ct08_00_002.json").read_text(encoding="utf-8"))


def ct08_dictionary() -> dict[str, dict[str, str]]:
    return {"CT08.00.002": {e["code"]: e["name"] for e in ct08()}}


# --- every file ---------------------------------------------------------------------------------

def test_all_schema_files_present() -> None:
    names = {p.relative_to(REPO).as_posix() for p in ALL_SCHEMAS}
    expected = {f"plugins/keydata/schemas/{n}.json" for n in KEYDATA_COUNTS}
    expected |= {f"plugins/shangrao_insurance/schemas/{n}.json" for n in SHANGRAO_COUNTS}
    expected |= {f"plugins/ihs_supervision/schemas/{n}.json" for n in IHS_COUNTS}
    twopath = {n for n in names if n.startswith("plugins/twopath/schemas/")}  # checked in test_twopath
    assert names - twopath == expected


@pytest.mark.parametrize("path", ALL_SCHEMAS, ids=lambda p: p.stem)
def test_schema_file_loads_and_is_documented(path: Path) -> None:
    schema = load_schema(path)
    assert schema.title and schema.source
    for f in schema.fields:
        assert f.title, f"{schema.name}.{f.name} has no title"
        if f.optional_extension:
            assert not f.required and f.note


# --- keydata --------------------------------------------------------------------------------------

def keydata_sections() -> dict[str, str]:
    text = spec_text("keydata-key-indicators.txt")
    five = text[text.index("五、接口及上报数据字段"):text.index("六、值域字典")]
    parts = re.split(r"\n(?=[123]\. \S)", five)
    by_title = {p.split("\n", 1)[0]: p for p in parts[1:]}
    return {"hospital_daily": by_title["1. 数据日报接口"], "dept_daily": by_title["2. 医疗机构各科室就诊日报"],
            "monthly": by_title["3. 数据月报接口"]}


def keydata_rows(section: str) -> list[list[str]]:
    """Rows of the 请求体构建参数 table: [name, title, type, required, description]."""
    table = section[section.index("请求体构建参数"):section.index("返回参数说明")]
    rows = []
    for block in table.split("\n\n"):  # a cell may be a lone tab (psybedNum's 必填): not a row break
        cells = [line[1:] for line in block.split("\n") if line.startswith("\t")]
        if cells and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", cells[0]):
            rows.append(cells)
    return rows


def keydata_example(section: str) -> dict[str, Any]:
    match = re.search(r"请求体明文:\n(\{.*?\n\})", section, re.S)
    assert match, "example not found"
    return json.loads(match.group(1))


@pytest.mark.parametrize("name", list(KEYDATA_COUNTS))
def test_keydata_fields_match_the_spec_table(name: str) -> None:
    rows = keydata_rows(keydata_sections()[name])
    schema = load_schema(KEYDATA / "schemas" / f"{name}.json")
    assert len(schema.fields) == KEYDATA_COUNTS[name]
    table_fields = [f for f in schema.fields if not f.optional_extension]
    assert [f.name for f in table_fields] == [r[0] for r in rows]  # same names, same order
    for f, (_, title, doc_type, required, *_rest) in zip(table_fields, rows, strict=True):
        assert f.title == title
        assert f.doc_type == doc_type
        assert f.required is (required == "是"), f.name
        if doc_type == "数字":
            assert f.type in ("integer", "number")
        else:
            assert f.type in ("string", "datetime", "code")


def test_keydata_spellings_and_special_fields() -> None:
    monthly = load_schema(KEYDATA / "schemas" / "monthly.json")
    assert monthly.field("surgGrande3Num").type == "integer"  # the document's spelling, not surgGrade3Num
    assert monthly.field("psybedNum").required is False  # its 必填 cell is empty
    daily = load_schema(KEYDATA / "schemas" / "hospital_daily.json")
    total = daily.field("totalPersonTimes")
    assert total.optional_extension and not total.required
    for schema in (daily, monthly, load_schema(KEYDATA / "schemas" / "dept_daily.json")):
        assert schema.field("statDate").format == "YYYY/MM/DD HH24:MI:SS"
        assert schema.field("dataFlag").codes == {"1": "新增", "2": "更新", "3": "删除"}
    dept = load_schema(KEYDATA / "schemas" / "dept_daily.json")
    assert dept.field("departNo").dictionary == "CT08.00.002"


@pytest.mark.parametrize("name", list(KEYDATA_COUNTS))
def test_keydata_examples_validate(name: str) -> None:
    example = keydata_example(keydata_sections()[name])
    schema = load_schema(KEYDATA / "schemas" / f"{name}.json")
    assert schema.validate(example, dictionaries=ct08_dictionary()) == []
    if name == "hospital_daily":  # the example carries the undocumented field; without it, still valid
        assert "totalPersonTimes" in example
        example.pop("totalPersonTimes")
        assert schema.validate(example) == []


def test_keydata_example_variations_fail() -> None:
    schema = load_schema(KEYDATA / "schemas" / "dept_daily.json")
    example = keydata_example(keydata_sections()["dept_daily"])
    bad = dict(example, departNo="A29", statDate="2025-02-24 07:59:59", dataFlag="4")
    assert {p.field for p in schema.validate(bad, dictionaries=ct08_dictionary())} == {
        "departNo", "statDate", "dataFlag"}


# --- CT08.00.002 ----------------------------------------------------------------------------------

CODE_RE = r"[A-D]\d{2}(?:\.\d{2}){0,2}"


def ct08_from_spec() -> list[tuple[str, str]]:
    """(code, meaning) in dictionary order: the table has two columns, left column first."""
    text = spec_text("keydata-key-indicators.txt")
    table = text[text.index("CT08.00.002科室代码"):]
    left, right = [], []
    for m in re.finditer(rf"\n\t({CODE_RE})\n\t([^\n]+)\n\t({CODE_RE})\n\t([^\n]+)\n", table):
        left.append((m.group(1), m.group(2)))
        right.append((m.group(3), m.group(4)))
    return left + right


def test_ct08_complete_against_the_spec_text() -> None:
    text = spec_text("keydata-key-indicators.txt")
    table = text[text.index("CT08.00.002科室代码"):]
    every_code = re.findall(rf"^\t({CODE_RE})$", table, re.M)  # every code-shaped cell, paired or not
    entries = ct08()
    assert len(entries) == CT08_COUNT == len(every_code) == len(set(every_code))
    assert {e["code"] for e in entries} == set(every_code)
    assert [(e["code"], e["name"]) for e in entries] == ct08_from_spec()


def test_ct08_structure() -> None:
    entries = ct08()
    seen: set[str] = set()
    for e in entries:
        assert set(e) == {"code", "name", "parent"}
        code = e["code"]
        expected_parent = code.rsplit(".", 1)[0] if "." in code else None
        assert e["parent"] == expected_parent
        assert expected_parent is None or expected_parent in seen  # parents come first
        seen.add(code)
    assert [e["code"] for e in entries] == sorted(seen)  # document order is code order
    by_code = {e["code"]: e["name"] for e in entries}
    assert by_code["A03.04"] == "心血管内科专业"
    assert by_code["A04.04.01"] == "肾脏移植项目"
    assert by_code["A16.07"] == "其它"  # spelled so in the document
    assert "A29" not in by_code
    assert sum(1 for e in entries if e["parent"] is None) == 81
    assert sum(1 for e in entries if e["name"] in ("其他", "其它")) == 17


# --- Shangrao -------------------------------------------------------------------------------------

SHANGRAO_SECTIONS = {"fee_list_d": ("3.3.1 ", "3.3.2 "), "setl_d": ("3.3.2 ", "3.3.3 "), "mdtrt_d": ("3.3.3 ", "字典说明")}


def shangrao_rows(name: str) -> list[dict[str, str]]:
    text = spec_text("shangrao-insurance-supervision.txt")
    start, end = SHANGRAO_SECTIONS[name]
    body = text[text.index(start):text.index(end, text.index(start) + 1)]
    row = r"\n\t(\d+)\n\t([A-Z][A-Z0-9_]*)\n\t([^\n]*)\n\t([^\n]*)\n\t([^\n]*)\n\t([^\n]*)\n\t([^\n]*)\n\t([^\n]*)\n"
    rows = []
    for m in re.finditer(row, body):
        no, code, title, dtype, length, c6, c7, desc = (g.strip() for g in m.groups())
        # mdtrt_d puts 代码标识 before 是否必填; the other two tables the other way round
        required, coded = (c7, c6) if name == "mdtrt_d" else (c6, c7)
        rows.append({"no": no, "code": code, "title": title, "type": dtype, "length": length,
                     "required": required, "coded": coded, "desc": desc})
    return rows


def expected_type(row: dict[str, str]) -> str:
    return {"varchar": "string", "字符型": "string", "decimal": "decimal", "数值型": "decimal",
            "datetime": "datetime", "日期时间型": "datetime", "date": "date", "日期型": "date"}[row["type"]]


@pytest.mark.parametrize("name", list(SHANGRAO_COUNTS))
def test_shangrao_fields_match_the_spec_table(name: str) -> None:
    rows = shangrao_rows(name)
    assert [r["no"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]  # no row missed
    schema = load_schema(SHANGRAO / f"{name}.json")
    assert len(rows) == len(schema.fields) == SHANGRAO_COUNTS[name]
    assert [f.name for f in schema.fields] == [r["code"] for r in rows]
    for f, r in zip(schema.fields, rows, strict=True):
        assert f.title == r["title"]
        assert f.type == expected_type(r), f.name
        assert f.required is (r["required"] in ("是", "Y")), f.name
        if f.type == "string":
            assert f.max_length == (int(r["length"]) if r["length"] else None), f.name
        elif f.type == "decimal":
            p, _, s = r["length"].partition(",")
            assert (f.precision, f.scale) == (int(p), int(s) if s else None), f.name
            if not s:
                assert f.note, f"{f.name}: a length without scale needs a note"
        else:
            assert f.format == ("yyyy-MM-dd HH:mm:ss" if f.type == "datetime" else "yyyy-MM-dd")
            if r["desc"] != f.format:
                assert f.note, f"{f.name}: format {r['desc']!r} changed without a note"
        if r["coded"] in ("是", "Y") and f.type == "string":
            assert f.dictionary == f.name


def test_shangrao_decimal_precisions_seen() -> None:
    seen = {(f.precision, f.scale) for n in SHANGRAO_COUNTS for f in load_schema(SHANGRAO / f"{n}.json").fields
            if f.type == "decimal" and f.scale is not None}
    assert seen == {(16, 2), (16, 4), (16, 6), (5, 4), (4, 1)}


def test_shangrao_patient_fields() -> None:
    assert load_schema(SHANGRAO / "setl_d.json").patient_fields() >= {"PSN_NAME", "CERTNO"}
    assert load_schema(SHANGRAO / "mdtrt_d.json").patient_fields() >= {"PSN_NAME", "CERTNO", "TEL", "ADDR",
                                                                       "CONER_NAME"}


def test_shangrao_sample_records() -> None:
    setl = load_schema(SHANGRAO / "setl_d.json")
    record = {f.name: "1" for f in setl.fields if f.required and f.type == "string"}
    record.update({f.name: "12.34" for f in setl.fields if f.type == "decimal"})
    record.update(AGE="35.5", POOL_PROP_SELFPAY="0.9", BRDY="1990-03-07", SETL_TIME="2025-02-01 10:00:00",
                  CRTE_TIME="2025-02-01 10:00:00")
    assert setl.validate(record) == []
    problems = setl.validate(dict(record, AGE="100.25", CERTNO="1" * 51))
    assert {p.field for p in problems} == {"AGE", "CERTNO"}
    assert "1" * 51 not in " ".join(p.reason for p in problems)


# --- IHS ------------------------------------------------------------------------------------------

def ihs_interfaces() -> dict[str, dict[str, Any]]:
    """{code: {"path", "rows": [(name, type, required, title, note, parent)]}} from the markdown tables."""
    text = spec_text("ihs-internet-medical-supervision.txt")
    pieces = re.split(r"\| 接口号 \| (A\d{4}) \|", text)
    out: dict[str, dict[str, Any]] = {}
    for code, body in zip(pieces[1::2], pieces[2::2], strict=True):
        path = re.search(r"\| 接口路径 \| (\S+) \|", body).group(1)
        rows, parent, last_list = [], None, None
        for line in body.split("\n"):
            cells = [re.sub(r"</?u>", "", c).strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 4:
                continue
            if cells[0].endswith("子节点"):
                parent = last_list
                continue
            if not re.fullmatch(r"[A-Za-z]+", cells[0]) or not re.match(r"String|Int|Decimal|List", cells[1]):
                continue
            rows.append((cells[0], cells[1], cells[2], cells[3], cells[4] if len(cells) > 4 else "", parent))
            if cells[1].startswith("List"):
                last_list = cells[0]
        out[code] = {"path": path, "rows": rows}
    return out


def flatten(fields: tuple[FieldSpec, ...], parent: str | None = None) -> list[tuple[FieldSpec, str | None]]:
    out = []
    for f in fields:
        out.append((f, parent))
        out.extend(flatten(f.fields, f.name))
    return out


def test_ihs_one_schema_per_interface_in_the_document() -> None:
    found = ihs_interfaces()
    assert list(found) == list(IHS_COUNTS)
    assert {p.stem for p in IHS.glob("*.json")} == set(found)
    for code, info in found.items():
        iface = load_schema(IHS / f"{code}.json").interface
        assert iface["code"] == iface["service"] == code
        assert iface["path"] == info["path"] or iface.get("doc_path") == info["path"]


def test_ihs_batch_limits() -> None:
    text = spec_text("ihs-internet-medical-supervision.txt")
    assert "限制一次传输不超过 10000 条" in text and "建议一次传输不超过 100 条" in text
    for code in IHS_COUNTS:
        iface = load_schema(IHS / f"{code}.json").interface
        if code == "A0001":  # one file per multipart request
            assert iface["batch_limit"] == 1 and iface["content_type"] == "multipart/form-data"
        else:
            assert (iface["batch_limit"], iface["batch_recommended"]) == (10000, 100)
            assert iface["max_request_bytes"] == 30 * 1024 * 1024
    assert load_schema(IHS / "A2010.json").interface["truncated"] is True


@pytest.mark.parametrize("code", list(IHS_COUNTS))
def test_ihs_fields_match_the_spec_table(code: str) -> None:
    rows = ihs_interfaces()[code]["rows"]
    schema = load_schema(IHS / f"{code}.json")
    assert len(schema.fields) == IHS_COUNTS[code]
    flat = flatten(schema.fields)
    assert [(f.doc_spelling or f.name, parent) for f, parent in flat] == [(r[0], r[5]) for r in rows]
    for (f, _), (_name, doc_type, required, title, note, _parent) in zip(flat, rows, strict=True):
        assert f.doc_type == doc_type, f.name
        assert f.title == title, f.name
        assert f.required is (required in ("√", "✓")), f.name
        if f.doc_spelling:
            assert f.doc_spelling in f.note
        string = re.fullmatch(r"String\((\d+)\)", doc_type)
        if f.type == "string" and string:
            assert f.max_length == int(string.group(1))
        elif doc_type == "Int":
            assert f.type == "integer"
        elif doc_type.startswith("Decimal"):
            assert f"decimal({doc_type[8:-1]})" == f.rule()
        elif doc_type.startswith("List"):
            assert f.type == "list"
        if "YYYY-MM-DD" in note:
            assert f.type in ("datetime", "date") and f.format and f.format in note.replace(": ", " ")
        # inline code lists such as "0-有效 1-无效" are all carried over
        for value, meaning in re.findall(r"(?:^|\s)(\d+)-\s*([^\s、]+)", note):
            assert f.codes and f.codes.get(value, "").startswith(meaning), (f.name, value)


def test_ihs_sample_record() -> None:
    a2000 = load_schema(IHS / "A2000.json")
    record = {"flowNo": "F1", "orderId": "O1", "createTime": "2019-10-10 21:10:10", "deptCode": "D1",
              "deptName": "内科", "docCode": "1", "docName": "李四", "channelType": 1, "payType": 1,
              "name": "张三", "age": 30.5, "sex": 1, "birthday": "1990-01-01", "mobile": "13800138000",
              "cardType": 1, "cardNo": "C1", "amount": "100.00", "status": "已完成"}
    assert a2000.validate(record) == []
    del record["cardNo"]
    [problem] = a2000.validate(record)
    assert "至少一组必填" in problem.reason
    a1000 = load_schema(IHS / "A1000.json")
    hospital = {"hospId": "H1", "hospName": "某医院", "hospAddress": "某地", "hospPhone": "0791-1",
                "hospArea": 360102, "hospLevel": 33, "hospType": "011", "hospCategory": 1,
                "attachment": [{"attaType": 1, "attaId": "a1"}]}
    assert a1000.validate(hospital) == []
    assert len(a1000.field("hospType").codes or {}) == 33


def test_schema_objects_expose_interface_blocks() -> None:
    schema = Schema.load(IHS / "A1001.json")
    assert schema.interface["path"] == "/ihs/api/base/department"
    assert schema.interface["doc_path"] == "/lhs/api/base/department"
