"""The field-schema engine (core.schema): types, messages, masking, unknown fields, schema-file errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import BaosongError, ConfigurationError
from core.hook_types import Problem
from core.schema import DateFormat, FieldSpec, Schema, SchemaError, load_schema


def make(*fields: dict[str, Any], **extra: Any) -> Schema:
    return Schema.from_dict({"name": "t.schema", "title": "测试", "fields": list(fields), **extra})


def reasons(schema: Schema, record: dict[str, Any], **kw: Any) -> list[str]:
    return [str(p) for p in schema.validate(record, **kw)]


# --- required / optional / unknown -------------------------------------------------------------

def test_required_missing_none_and_empty_string() -> None:
    s = make({"name": "A", "type": "string", "required": True})
    for record in ({}, {"A": None}, {"A": ""}):
        assert reasons(s, record) == ["A: 必填字段缺失"]
    assert s.validate({"A": "x"}) == []


def test_optional_absent_or_empty_is_fine() -> None:
    s = make({"name": "A", "type": "integer"})
    assert s.validate({}) == []
    assert s.validate({"A": None}) == []
    assert s.validate({"A": ""}) == []


def test_unknown_field_is_an_error() -> None:
    s = make({"name": "A", "type": "string"})
    problems = s.validate({"A": "x", "B": 1})
    assert [(p.field, p.reason) for p in problems] == [("B", "字段不在接口字段表中")]


def test_declared_optional_extension_is_accepted() -> None:
    s = make({"name": "A", "type": "string"},
             {"name": "total", "type": "integer", "optional_extension": True, "note": "示例中出现"})
    assert s.validate({"A": "x", "total": 1}) == []
    assert s.field("total").optional_extension


def test_record_not_an_object() -> None:
    s = make({"name": "A", "type": "string"})
    assert [p.reason for p in s.validate(["A"], index=2)] == ["记录不是 JSON 对象"]


# --- strings ------------------------------------------------------------------------------------

def test_string_length_counts_characters_not_bytes() -> None:
    s = make({"name": "N", "type": "string", "max_length": 3})
    assert s.validate({"N": "张三丰"}) == []  # 9 bytes in UTF-8, 3 characters
    assert reasons(s, {"N": "张三丰四"}) == ["N: 长度 4 超过最大长度 3"]


def test_string_exact_and_min_length() -> None:
    s = make({"name": "E", "type": "string", "length": 6}, {"name": "M", "type": "string", "min_length": 2})
    assert reasons(s, {"E": "12345", "M": "1"}) == ["E: 长度 5 不等于规定长度 6", "M: 长度 1 小于最小长度 2"]
    assert s.validate({"E": "123456", "M": "12"}) == []


def test_string_rejects_numbers() -> None:
    s = make({"name": "S", "type": "string"})
    assert reasons(s, {"S": 12}) == ["S: 12 类型错误：应为字符串"]


def test_string_codes_restrict_values() -> None:
    s = make({"name": "T", "type": "string", "max_length": 3, "codes": {"011": "综合医院"}})
    assert s.validate({"T": "011"}) == []
    assert reasons(s, {"T": "012"}) == ['T: "012" 不在代码表中（允许：011-综合医院）']


# --- integer / number / boolean -------------------------------------------------------------------

@pytest.mark.parametrize("value", [True, 1.5, 2.0, "3"])
def test_integer_rejects_bool_float_and_string(value: Any) -> None:
    s = make({"name": "I", "type": "integer"})
    [problem] = s.validate({"I": value})
    assert problem.reason.endswith("不是整数")


def test_integer_accepts_int_and_checks_codes() -> None:
    s = make({"name": "L", "type": "integer", "codes": {"33": "三级甲等", "99": "其他"}})
    assert s.validate({"L": 33}) == []
    assert reasons(s, {"L": 34}) == ["L: 34 不在代码表中（允许：33-三级甲等, 99-其他）"]


@pytest.mark.parametrize("value", [0, 1, 1.25, -3])
def test_number_accepts_int_and_float(value: Any) -> None:
    assert make({"name": "N", "type": "number"}).validate({"N": value}) == []


@pytest.mark.parametrize("value", [True, "1", float("nan"), float("inf")])
def test_number_rejects_bool_string_nan(value: Any) -> None:
    [problem] = make({"name": "N", "type": "number"}).validate({"N": value})
    assert problem.reason.endswith("不是数字")


def test_boolean() -> None:
    s = make({"name": "B", "type": "boolean"})
    assert s.validate({"B": False}) == []
    assert reasons(s, {"B": 1}) == ["B: 1 不是布尔值"]


# --- decimal ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["12345678901234.12", 12345678901234.5, 0, "0.5", "-1.25", 100, "007.10"])
def test_decimal_16_2_accepts(value: Any) -> None:
    s = make({"name": "D", "type": "decimal", "precision": 16, "scale": 2})
    assert s.validate({"D": value}) == []


def test_decimal_16_2_rejects_15_integer_digits_and_3_decimals() -> None:
    s = make({"name": "D", "type": "decimal", "precision": 16, "scale": 2})
    assert reasons(s, {"D": "123456789012345"}) == [
        'D: "123456789012345" 整数部分 15 位，超过 decimal(16,2) 允许的 14 位']
    assert reasons(s, {"D": 1.005}) == ["D: 1.005 小数部分 3 位，超过 decimal(16,2) 允许的 2 位"]
    assert reasons(s, {"D": "1.500"}) == ['D: "1.500" 小数部分 3 位，超过 decimal(16,2) 允许的 2 位']


def test_decimal_5_4_allows_one_digit_before_the_point() -> None:
    s = make({"name": "P", "type": "decimal", "precision": 5, "scale": 4})
    assert s.validate({"P": "0.8765"}) == []
    assert s.validate({"P": 1}) == []
    assert reasons(s, {"P": "10.5"}) == ['P: "10.5" 整数部分 2 位，超过 decimal(5,4) 允许的 1 位']
    assert reasons(s, {"P": 0.12345}) == ["P: 0.12345 小数部分 5 位，超过 decimal(5,4) 允许的 4 位"]


def test_decimal_4_1() -> None:
    s = make({"name": "AGE", "type": "decimal", "precision": 4, "scale": 1})
    assert s.validate({"AGE": "123.4"}) == []
    assert reasons(s, {"AGE": 1234}) == ["AGE: 1234 整数部分 4 位，超过 decimal(4,1) 允许的 3 位"]


@pytest.mark.parametrize("value", ["abc", "1e3", " 1", "1,000", ".5", "1.", "NaN", True, [1], float("nan"), ""])
def test_decimal_rejects_non_numeric(value: Any) -> None:
    s = make({"name": "D", "type": "decimal", "precision": 16, "scale": 2, "required": True})
    [problem] = s.validate({"D": value})
    assert "不是数值" in problem.reason or problem.reason == "必填字段缺失"


def test_decimal_without_scale_limits_total_digits() -> None:
    s = make({"name": "DAYS", "type": "decimal", "precision": 2})
    assert s.validate({"DAYS": "12"}) == []
    assert s.validate({"DAYS": 1.5}) == []
    assert reasons(s, {"DAYS": 123}) == ["DAYS: 123 共 3 位数字，超过 decimal(2) 允许的 2 位"]


# --- dates ----------------------------------------------------------------------------------------

def test_datetime_format_message_matches_the_brief() -> None:
    s = make({"name": "FEE_OCUR_TIME", "type": "datetime", "format": "yyyy-MM-dd HH:mm:ss"})
    assert s.validate({"FEE_OCUR_TIME": "2025-02-01 08:09:10"}) == []
    assert reasons(s, {"FEE_OCUR_TIME": "2025/02/01"}) == [
        'FEE_OCUR_TIME: "2025/02/01" 不符合格式 yyyy-MM-dd HH:mm:ss']


@pytest.mark.parametrize("value,ok", [
    ("2025-02-28", True), ("2024-02-29", True), ("2025-02-30", False), ("2025-2-3", False),
    ("2025-02-03 ", False), ("20250203", False), ("2025-13-01", False),
])
def test_date_is_strict(value: str, ok: bool) -> None:
    s = make({"name": "BRDY", "type": "date", "format": "yyyy-MM-dd"})
    assert (s.validate({"BRDY": value}) == []) is ok


def test_invalid_but_well_shaped_date_has_its_own_message() -> None:
    s = make({"name": "D", "type": "date", "format": "yyyy-MM-dd"})
    assert reasons(s, {"D": "2025-02-30"}) == ['D: "2025-02-30" 不是有效的日期（格式 yyyy-MM-dd）']


@pytest.mark.parametrize("fmt,good,bad", [
    ("YYYY/MM/DD HH24:MI:SS", "2025/02/17 07:59:59", "2025-02-17 07:59:59"),
    ("YYYY-MM-DD HH24:MI:SS", "2019-10-10 21:10:10", "2019-10-10 24:00:00"),
    ("YYYY-MM-DD", "2019-10-10", "2019-10-10 00:00:00"),
    ("yyyyMMddHHmmss", "20250217075959", "2025021707595"),
    ("yyyy-MM-dd HH:mm:ss", "2025-02-17 07:59:59", "2025-02-17 7:59:59"),
])
def test_supported_formats(fmt: str, good: str, bad: str) -> None:
    s = make({"name": "T", "type": "datetime", "format": fmt})
    assert s.validate({"T": good}) == []
    assert s.validate({"T": bad}) != []


def test_date_format_conversion() -> None:
    assert DateFormat.parse("YYYY/MM/DD HH24:MI:SS").strptime == "%Y/%m/%d %H:%M:%S"
    assert DateFormat.parse("yyyy-MM-dd HH:mm:ss").strptime == "%Y-%m-%d %H:%M:%S"
    assert DateFormat.parse("yyyyMMddHHmmss").strptime == "%Y%m%d%H%M%S"


def test_datetime_rejects_non_string() -> None:
    s = make({"name": "T", "type": "datetime", "format": "yyyy-MM-dd HH:mm:ss"})
    assert reasons(s, {"T": 20250101}) == ["T: 20250101 类型错误：应为日期时间字符串"]


# --- codes and dictionaries ---------------------------------------------------------------------

def test_inline_codes() -> None:
    s = make({"name": "dataFlag", "type": "code", "codes": {"1": "新增", "2": "更新", "3": "删除"}})
    assert s.validate({"dataFlag": "2"}) == []
    assert reasons(s, {"dataFlag": "4"}) == ['dataFlag: "4" 不在代码表中（允许：1-新增, 2-更新, 3-删除）']
    assert reasons(s, {"dataFlag": 1}) == ["dataFlag: 1 类型错误：应为代码字符串"]


def test_named_dictionary_is_required_and_checked() -> None:
    s = make({"name": "departNo", "type": "code", "dictionary": "CT08.00.002"})
    assert s.dictionaries() == frozenset({"CT08.00.002"})
    with pytest.raises(ConfigurationError, match="CT08.00.002"):
        s.validate({"departNo": "A01"})
    ct08 = {"CT08.00.002": {"A01": "预防保健科"}}
    assert s.validate({"departNo": "A01"}, dictionaries=ct08) == []
    assert reasons(s, {"departNo": "A29"}, dictionaries=ct08) == ['departNo: "A29" 不在代码字典 CT08.00.002 中']


def test_dictionary_on_a_string_field_is_checked_only_when_supplied() -> None:
    s = make({"name": "GEND", "type": "string", "max_length": 6, "dictionary": "GEND"})
    assert s.dictionaries() == frozenset()
    assert s.validate({"GEND": "9"}) == []
    assert reasons(s, {"GEND": "9"}, dictionaries={"GEND": {"1": "男", "2": "女"}}) == [
        'GEND: "9" 不在代码字典 GEND 中']


# --- patient data is never quoted ----------------------------------------------------------------

def test_patient_values_never_appear_in_reasons() -> None:
    s = make(
        {"name": "PSN_NAME", "type": "string", "max_length": 2, "patient_identifier": True},
        {"name": "CERTNO", "type": "code", "codes": {"x": "x"}, "patient_identifier": True},
        {"name": "BRDY", "type": "date", "format": "yyyy-MM-dd", "patient_identifier": True},
        {"name": "TEL", "type": "integer", "patient_identifier": True},
        {"name": "AGE", "type": "decimal", "precision": 4, "scale": 1, "patient_identifier": True},
    )
    secrets = {"PSN_NAME": "欧阳娜娜", "CERTNO": "110101199003077777", "BRDY": "1990/03/07",
               "TEL": "13800138000", "AGE": "12345.67"}
    problems = s.validate(secrets)
    assert len(problems) == 5
    text = "\n".join(str(p) for p in problems)
    for value in secrets.values():
        assert value not in text
    assert "值" in text
    assert s.patient_fields() == frozenset({"PSN_NAME", "CERTNO", "BRDY", "TEL", "AGE"})


def test_patient_key_field_refused() -> None:
    s = make({"name": "PSN_NAME", "type": "string", "patient_identifier": True})
    with pytest.raises(ValueError):
        s.validate_records([{"PSN_NAME": "张三"}], key_field="PSN_NAME")


def test_long_values_are_shortened_in_reasons() -> None:
    s = make({"name": "C", "type": "code", "codes": {"1": "a"}})
    [problem] = s.validate({"C": "x" * 500})
    assert len(problem.reason) < 120 and "…" in problem.reason


# --- validate_records ---------------------------------------------------------------------------

def test_validate_records_splits_and_tags() -> None:
    s = make({"name": "SETL_ID", "type": "string", "required": True},
             {"name": "AMT", "type": "decimal", "precision": 16, "scale": 2, "required": True})
    records = [{"SETL_ID": "S1", "AMT": "1.00"}, {"SETL_ID": "S2", "AMT": "x"}, {"AMT": 1}]
    valid, problems = s.validate_records(records, key_field="SETL_ID")
    assert valid == [records[0]]
    assert [(p.record_index, p.record_key, p.field) for p in problems] == [(1, "S2", "AMT"), (2, None, "SETL_ID")]
    assert all(isinstance(p, Problem) for p in problems)
    assert str(problems[0]) == '第2条 AMT: "x" 不是数值（decimal(16,2)）'


# --- lists, constants, constraints --------------------------------------------------------------

def test_list_items_are_validated_with_paths() -> None:
    s = make({"name": "attachment", "type": "list", "fields": [
        {"name": "attaType", "type": "integer", "required": True, "codes": {"1": "a"}},
        {"name": "attaId", "type": "string", "max_length": 3, "required": True},
    ]})
    assert s.validate({"attachment": [{"attaType": 1, "attaId": "x"}]}) == []
    assert reasons(s, {"attachment": [{"attaType": 2, "attaId": "xxxx", "zz": 1}, "no"]}) == [
        "attachment[0].zz: 字段不在接口字段表中",
        "attachment[0].attaType: 2 不在代码表中（允许：1-a）",
        "attachment[0].attaId: 长度 4 超过最大长度 3",
        "attachment[1]: 不是 JSON 对象",
    ]
    assert reasons(s, {"attachment": {"attaType": 1}}) == ['attachment: {"attaType": 1} 类型错误：应为数组']


def test_const_field_must_be_present_with_that_value() -> None:
    s = make({"name": "data", "type": "string", "const": "", "required": True})
    assert s.validate({"data": ""}) == []
    assert reasons(s, {}) == ["data: 必填字段缺失"]
    assert reasons(s, {"data": "x"}) == ['data: "x" 应为固定值 ""']


def test_binary() -> None:
    s = make({"name": "f", "type": "binary", "required": True})
    assert s.validate({"f": b"\x00\x01"}) == []
    assert reasons(s, {"f": "text"}) == ['f: "text" 类型错误：应为二进制内容']


def test_one_group_required() -> None:
    s = make({"name": "certType", "type": "integer"}, {"name": "certNo", "type": "string"},
             {"name": "cardType", "type": "integer"}, {"name": "cardNo", "type": "string"},
             constraints=[{"type": "one_group_required", "groups": [["certType", "certNo"], ["cardType", "cardNo"]]}])
    assert s.validate({"certType": 1, "certNo": "x"}) == []
    assert s.validate({"cardType": 1, "cardNo": "x"}) == []
    assert [p.reason for p in s.validate({"certType": 1, "cardNo": "x"})] == [
        "certType+certNo 或 cardType+cardNo 至少一组必填"]


# --- schema files -------------------------------------------------------------------------------

def write(tmp_path: Path, doc: Any, name: str = "s.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, ensure_ascii=False) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


def test_load_and_accessors(tmp_path: Path) -> None:
    path = write(tmp_path, {"name": "x.y", "title": "标题", "source": "doc 1.1", "fields": [
        {"name": "A", "title": "甲", "type": "string", "max_length": 5, "required": True, "note": "n"}]})
    s = Schema.load(path)
    assert (s.name, s.title, s.source) == ("x.y", "标题", "doc 1.1")
    assert s.field("A") == FieldSpec(name="A", title="甲", type="string", max_length=5, required=True, note="n")
    with pytest.raises(KeyError):
        s.field("B")
    assert load_schema(path) is load_schema(str(path))  # cached by path


@pytest.mark.parametrize("doc,message", [
    ({"name": "x", "fields": [{"name": "A", "type": "varchar"}]}, "未知的类型 'varchar'"),
    ({"name": "x", "fields": [{"name": "A", "type": "decimal"}]}, "decimal 需要 precision"),
    ({"name": "x", "fields": [{"name": "A", "type": "decimal", "precision": 2, "scale": 3}]}, "scale 3 大于"),
    ({"name": "x", "fields": [{"name": "A", "type": "date"}]}, "date 需要 format"),
    ({"name": "x", "fields": [{"name": "A", "type": "date", "format": "yyyy-MM-dd Q"}]}, "无法识别"),
    ({"name": "x", "fields": [{"name": "A", "type": "code"}]}, "code 类型需要 codes 或 dictionary"),
    ({"name": "x", "fields": [{"name": "A", "type": "string", "maxlength": 3}]}, "未知的属性 maxlength"),
    ({"name": "x", "fields": [{"name": "A", "type": "string"}, {"name": "A", "type": "string"}]}, "字段 A 重复"),
    ({"name": "x", "fields": [{"name": "A", "type": "string", "max_length": "3"}]}, "max_length 应为非负整数"),
    ({"name": "x", "fields": [{"name": "A", "type": "list"}]}, "list 需要 fields"),
    ({"name": "x", "fields": [{"type": "string"}]}, "缺少 name"),
    ({"name": "x", "fields": []}, "缺少 fields"),
    ({"fields": [{"name": "A", "type": "string"}]}, "缺少 name"),
    ({"name": "x", "fieldz": []}, "未知的属性 fieldz"),
    ({"name": "x", "fields": [{"name": "A", "type": "string"}],
      "constraints": [{"type": "one_group_required", "groups": [["A", "B"]]}]}, "未定义的字段 B"),
    ("{not json", "不是合法的 JSON"),
])
def test_schema_file_errors(tmp_path: Path, doc: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=message) as info:
        Schema.load(write(tmp_path, doc))
    assert isinstance(info.value, BaosongError)
    assert str(tmp_path) in str(info.value)  # names the file


def test_missing_schema_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="无法读取"):
        Schema.load(tmp_path / "nope.json")
