"""core.mapping: the safe expression parser, conversions, rule application, versions and validation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.mapping import (
    CompiledMapping,
    MappingError,
    active_version,
    check_rules,
    clean_rule,
    compare,
    evaluate,
    parse_codes,
    parse_expression,
    restore,
    save_version,
    validate,
    versions,
)
from core.schema import Schema

SCHEMA = Schema.from_dict({
    "name": "t.daily", "title": "测试",
    "fields": [
        {"name": "statDate", "type": "datetime", "format": "YYYY/MM/DD HH24:MI:SS", "required": True},
        {"name": "visits", "type": "integer", "required": True},
        {"name": "amount", "type": "decimal", "precision": 16, "scale": 2},
        {"name": "gend", "type": "code", "codes": {"1": "男", "2": "女"}},
        {"name": "name", "type": "string", "max_length": 4},
        {"name": "deptName", "type": "string", "max_length": 50},
    ],
})


def ev(text: str, row: dict | None = None):
    return evaluate(parse_expression(text), row or {})


# --- expressions ---

@pytest.mark.parametrize("text,row,expected", [
    ("1 + 2 * 3", {}, Decimal(7)),
    ("(1 + 2) * 3", {}, Decimal(9)),
    ("-a + 10", {"a": 4}, Decimal(6)),
    ("a / b", {"a": 10, "b": 4}, Decimal("2.5")),
    ("round(a / 3, 2)", {"a": 10}, Decimal("3.33")),
    ("round(2.5)", {}, Decimal(3)),  # half up, as a hospital expects, not banker's rounding
    ("coalesce(a, b, 0)", {"a": None, "b": ""}, Decimal(0)),
    ("concat(code, '-', name)", {"code": "0101", "name": "心内科"}, "0101-心内科"),
    ("concat('v', n)", {"n": 3.0}, "v3"),
    ("a * 2", {"a": None}, None),  # NULL propagates as in SQL
    ("a / b", {"a": 1, "b": 0}, None),  # and division by zero gives NULL
    ("abs(a - 10)", {"a": "3"}, Decimal(7)),
    ("金额 * 100", {"金额": Decimal("1.25")}, Decimal("125.00")),
])
def test_expressions(text, row, expected):
    assert ev(text, row) == expected


@pytest.mark.parametrize("text,words", [
    ("__import__('os')", "不支持的函数"), ("__import__('os').system('x')", "不允许的字符"),
    ("a.b", "不允许的字符"),
    ("a; b", "不允许的字符"),
    ("a ** 2", "有误"),
    ("round(a, b)", "小数位数应为数字"),
    ("(a + 1", "缺少"),
    ("a b", "多余内容"),
    ("upper(a)", "不支持的函数"),
    ("", "为空"),
    ("lambda: 1", "不允许的字符"),
])
def test_unsafe_or_broken_expressions_are_refused(text, words):
    with pytest.raises(MappingError, match=words):
        parse_expression(text)


def test_unknown_column_and_non_number_are_named():
    with pytest.raises(MappingError, match="没有列 cnt"):
        ev("cnt + 1", {"n": 1})
    with pytest.raises(MappingError, match="不是数字"):
        ev("n + 1", {"n": "abc"})


# --- conversions and application ---

def compiled(*rules, schema=SCHEMA) -> CompiledMapping:
    return CompiledMapping("t.daily", 7, [clean_rule(r) for r in rules], schema=schema)


def test_rules_fill_fields_and_other_columns_pass_through():
    mapping = compiled(
        {"target": "visits", "source": "cnt", "convert": "integer"},
        {"target": "amount", "kind": "expression", "source": "fee_fen / 100", "convert": "decimal", "scale": 2},
        {"target": "statDate", "source": "t", "convert": "datetime"},
        {"target": "gend", "source": "sex", "convert": "code", "codes": "M=1\nF=2"},
        {"target": "name", "kind": "constant", "source": "上饶市立医院", "convert": "string", "length": 4},
        {"target": "deptName", "kind": "expression", "source": "concat(dept, '门诊')", "query": "other"},
    )
    rows = [{"cnt": "12", "fee_fen": 12345, "t": "2025-02-17 07:59:59", "sex": "F", "dept": "心内科", "extra": 1}]
    [out] = mapping.apply("visits", rows)
    assert out == {"cnt": "12", "fee_fen": 12345, "t": "2025-02-17 07:59:59", "sex": "F", "dept": "心内科",
                   "extra": 1, "visits": 12, "amount": 123.45, "statDate": "2025/02/17 07:59:59", "gend": "2",
                   "name": "上饶市立"}
    assert not SCHEMA.validate({k: out[k] for k in ("visits", "amount", "statDate", "gend", "name")})
    # the query-scoped rule applies to its query only
    assert mapping.apply("other", rows)[0]["deptName"] == "心内科门诊"
    assert "deptName" not in out


def test_date_formats_in_both_styles_and_date_objects():
    from datetime import date, datetime

    mapping = compiled({"target": "statDate", "source": "d", "convert": "datetime", "from_format": "yyyyMMddHHmmss",
                        "to_format": "%Y-%m-%d %H:%M"})
    assert mapping.apply("q", [{"d": "20250217075959"}])[0]["statDate"] == "2025-02-17 07:59"
    auto = compiled({"target": "statDate", "source": "d", "convert": "datetime"})
    assert auto.apply("q", [{"d": datetime(2025, 2, 1, 8, 0)}])[0]["statDate"] == "2025/02/01 08:00:00"
    assert auto.apply("q", [{"d": date(2025, 2, 1)}])[0]["statDate"] == "2025/02/01 00:00:00"
    assert auto.apply("q", [{"d": None}])[0]["statDate"] is None
    with pytest.raises(MappingError, match="第 1 行 statDate.*不符合日期格式"):
        auto.apply("q", [{"d": "昨天"}])


def test_untranslated_code_is_an_error_not_a_guess():
    mapping = compiled({"target": "gend", "source": "sex", "convert": "code", "codes": {"M": "1"}})
    with pytest.raises(MappingError, match="值「X」不在代码转换表中"):
        mapping.apply("q", [{"sex": "X"}])


def test_dictionary_lookup_both_ways():
    table = {"A03.04": "心血管内科专业", "A20": "急诊医学科"}
    mapping = CompiledMapping("t.daily", 1, [
        clean_rule({"target": "deptName", "kind": "dictionary", "source": "code", "dictionary": "CT"}),
        clean_rule({"target": "deptCode", "kind": "dictionary", "source": "name", "dictionary": "CT",
                    "lookup": "code"}),
    ], dictionary_source=lambda name: table)
    [out] = mapping.apply("q", [{"code": "A20", "name": "心血管内科专业"}])
    assert out["deptName"] == "急诊医学科" and out["deptCode"] == "A03.04"


def test_rules_are_checked_before_use():
    problems = check_rules([clean_rule({"target": "a b", "kind": "expression", "source": "x +"}),
                            clean_rule({"target": "v", "source": "c"}), clean_rule({"target": "v", "source": "d"})])
    assert any("只能含字母" in p for p in problems)
    assert any("不完整" in p for p in problems)
    assert any("两条规则" in p for p in problems)
    with pytest.raises(MappingError):
        compiled({"target": "visits", "kind": "expression", "source": "eval('1')"})
    assert parse_codes("M=1\nF：2\n\n未知,9") == {"M": "1", "F": "2", "未知": "9"}
    with pytest.raises(MappingError, match="第 1 行"):
        parse_codes("just-a-value")


def test_validate_against_the_interface_schema():
    class RT:
        name = "t.daily"
        schema = SCHEMA
        queries = {"visits": "SELECT 1"}

    issues = validate(RT, [
        {"target": "visits", "source": "cnt", "convert": "date"},  # date cannot make an integer
        {"target": "amount", "source": "fee", "convert": "decimal", "scale": 4},  # more places than allowed
        {"target": "gend", "source": "sex", "convert": "code", "codes": "M=1\nF=3"},  # 3 is not a gend code
        {"target": "helper", "source": "x"},  # not an interface field: allowed, with a warning
        {"target": "name", "source": "n", "query": "nope"},
    ])
    by = {(i.level, i.target): i.message for i in issues}
    assert "不能得到接口要求的 integer" in by[("error", "visits")]
    assert "超过接口允许的 2 位" in by[("error", "amount")]
    assert "3 不在接口代码表中" in by[("error", "gend")]
    assert ("warning", "helper") in by
    assert "没有查询 nope" in by[("error", "name")]
    assert ("info", "statDate") in by  # required without a rule: the preview must show it is covered


# --- versions (database) ---

def test_every_save_is_a_version_and_restore_makes_a_new_equal_one(app):
    from core.db import db

    assert active_version("t.daily") is None
    v1 = save_version("t.daily", [{"target": "visits", "source": "cnt"}], "alice", "初版")
    db.session.commit()
    v2 = save_version("t.daily", [{"target": "visits", "source": "cnt2", "convert": "integer"},
                                  {"target": "gend", "source": "sex"}], "bob", "换列")
    db.session.commit()
    assert (v1.version, v2.version) == (1, 2) and active_version("t.daily").author == "bob"
    with pytest.raises(MappingError, match="与当前版本 v2 相同"):
        save_version("t.daily", [{"target": "gend", "source": "sex"},
                                 {"target": "visits", "source": "cnt2", "convert": "integer"}], "bob", "")
    v3 = restore("t.daily", 1, "carol")
    db.session.commit()
    assert v3.version == 3 and v3.restored_from == 1 and v3.rules == v1.rules
    assert [v.version for v in versions("t.daily")] == [3, 2, 1]
    diff = {d.target: d for d in compare(v1.rules, v2.rules)}
    assert diff["visits"].status == "changed" and diff["visits"].changed == ["source", "convert"]
    assert diff["gend"].status == "added"
    with pytest.raises(MappingError, match="没有字段映射版本 v9"):
        restore("t.daily", 9, "carol")


def test_mapped_source_applies_the_active_version_once_per_run(app, tmp_path):
    """MappedHospitalData over the real HospitalData and a demo hospital database."""
    pytest.importorskip("core.hisdb")
    from datetime import date

    from core.db import db
    from core.hisdb import HospitalData
    from core.hook_types import ReportType
    from core.mapping import MappedHospitalData
    from demo.hospital import generate

    url = f"sqlite:///{tmp_path / 'his.db'}"
    generate(url, start=date(2025, 2, 17), end=date(2025, 2, 17))
    report = ReportType("t.daily", "测试", "t", schema=SCHEMA, queries={
        "count": "SELECT COUNT(*) AS value, 'x' AS other FROM registrations WHERE reg_time < :end"})
    plain = HospitalData(url)
    raw = plain.scalar(report, "count", end="2025-02-18 00:00:00")
    assert raw > 0

    unmapped = MappedHospitalData(plain)
    assert unmapped.version_for("t.daily") is None
    assert unmapped.query(report, "count", end="2025-02-18 00:00:00") == [{"value": raw, "other": "x"}]

    save_version("t.daily", [{"target": "value", "kind": "expression", "source": "value * 2"},
                             {"target": "visits", "source": "value", "convert": "integer"}], "alice", "乘二")
    db.session.commit()
    source = MappedHospitalData(plain)
    assert source.scalar(report, "count", end="2025-02-18 00:00:00") == raw * 2  # replaced in place
    assert source.query(report, "count", end="2025-02-18 00:00:00") == [{"value": raw * 2, "other": "x",
                                                                       "visits": raw}]
    save_version("t.daily", [], "bob", "清空")
    db.session.commit()
    assert source.version_for("t.daily") == 1  # one run, one version
    assert MappedHospitalData(plain).version_for("t.daily") == 2
    assert MappedHospitalData(plain).dialect == plain.dialect  # everything else is the wrapped source's
