"""Field schemas: the regulators' field tables as data, and the validation of records against them.

A schema file (JSON, one per interface) lists every field the regulator's document defines, with its
type, length, precision/scale, required flag, date format and code list. ``Schema.validate`` checks a
record against it and returns ``Problem``s whose reasons are fit to log: a field marked
``patient_identifier`` never has its value quoted (the reason says "值" instead).

Types:
    string    max_length / min_length / length (characters, not bytes)
    integer   a JSON integer (bool and 1.5 are rejected)
    number    a JSON number (int or float, finite; bool rejected)
    decimal   precision, scale: a JSON number or a numeric string; digits before the point are at most
              precision - scale, after it at most scale (as written: "1.500" has three). Without
              ``scale`` only the total number of digits is limited (documents that give one length).
    datetime  / date: a string in the document's own format, parsed strictly (zero-padded, real dates)
    code      a string from inline ``codes`` or from the named ``dictionary`` the caller passes in
    boolean   a JSON boolean
    list      a JSON array of objects, each checked against the nested ``fields``
    binary    bytes (multipart uploads)
``codes`` may also restrict an integer or string field; ``dictionary`` on a non-code field is checked
only when the caller supplies that dictionary (the document names one it does not include).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from core.errors import BaosongError, ConfigurationError
from core.hook_types import Problem

TYPES = frozenset({"string", "integer", "number", "decimal", "datetime", "date", "code", "boolean", "list",
                   "binary"})

_FIELD_KEYS = frozenset({
    "name", "title", "type", "required", "max_length", "min_length", "length", "precision", "scale",
    "format", "codes", "dictionary", "patient_identifier", "note", "optional_extension", "doc_type",
    "doc_spelling", "const", "fields",
})
_SCHEMA_KEYS = frozenset({"name", "title", "source", "note", "interface", "constraints", "fields"})
_CONSTRAINT_TYPES = frozenset({"one_group_required"})

# Date-format tokens of both styles the documents use: Java (yyyy-MM-dd HH:mm:ss) and Oracle
# (YYYY/MM/DD HH24:MI:SS). Longest first so HH24 wins over HH. "MM" is always the month.
_FORMAT_TOKENS: dict[str, tuple[str, str]] = {
    "yyyy": ("%Y", r"\d{4}"), "YYYY": ("%Y", r"\d{4}"),
    "HH24": ("%H", r"\d{2}"), "HH": ("%H", r"\d{2}"),
    "MM": ("%m", r"\d{2}"), "MI": ("%M", r"\d{2}"), "mm": ("%M", r"\d{2}"),
    "dd": ("%d", r"\d{2}"), "DD": ("%d", r"\d{2}"),
    "ss": ("%S", r"\d{2}"), "SS": ("%S", r"\d{2}"),
}
_TOKEN_RE = re.compile("|".join(sorted(_FORMAT_TOKENS, key=len, reverse=True)))
_NUMERIC_RE = re.compile(r"[+-]?\d+(\.\d+)?")  # plain decimal text: no exponent, no bare ".5" or "1."
_MAX_SHOWN = 40  # longest value quoted in a reason
_MAX_CODES_SHOWN = 12


class SchemaError(BaosongError):
    """A schema file is malformed (unknown type, missing precision, bad format string...)."""


@dataclass(frozen=True)
class DateFormat:
    """A document's date format, turned into a strict regex (exact digit counts) and a strptime format."""

    text: str
    strptime: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> DateFormat:
        out, rx, pos = [], [], 0
        for m in _TOKEN_RE.finditer(text):
            literal = text[pos:m.start()]
            _check_literal(text, literal)
            out.append(literal.replace("%", "%%"))
            rx.append(re.escape(literal))
            directive, digits = _FORMAT_TOKENS[m.group()]
            out.append(directive)
            rx.append(digits)
            pos = m.end()
        _check_literal(text, text[pos:])
        out.append(text[pos:].replace("%", "%%"))
        rx.append(re.escape(text[pos:]))
        if not any(d in "".join(out) for d in ("%Y", "%d", "%H")):
            raise SchemaError(f"日期格式 {text!r} 没有年、日或时")
        return cls(text, "".join(out), re.compile("".join(rx)))

    def check(self, value: str) -> bool:
        """True when the value has exactly this shape and is a real date/time (no 2025-02-30)."""
        if not self.pattern.fullmatch(value):
            return False
        try:
            datetime.strptime(value, self.strptime)
        except ValueError:
            return False
        return True


def _check_literal(fmt: str, literal: str) -> None:
    if any(ch.isalpha() for ch in literal):
        raise SchemaError(f"日期格式 {fmt!r} 含无法识别的部分 {literal!r}")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    title: str = ""
    required: bool = False
    max_length: int | None = None
    min_length: int | None = None
    length: int | None = None  # exact length
    precision: int | None = None
    scale: int | None = None
    format: str | None = None
    codes: Mapping[str, str] | None = None
    dictionary: str | None = None
    patient_identifier: bool = False
    note: str = ""
    optional_extension: bool = False  # seen in a document's example but not in its field table
    doc_type: str = ""  # the type exactly as the document writes it, for tracing
    doc_spelling: str | None = None  # the name as the (imperfect) copy of the document spells it
    const: Any = None  # the value must be exactly this (e.g. "" for a signed-but-empty field)
    has_const: bool = False
    fields: tuple[FieldSpec, ...] = ()  # item fields of a list
    date_format: DateFormat | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> FieldSpec:
        if not isinstance(raw, dict):
            raise SchemaError(f"{where}: 字段定义应为 JSON 对象")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError(f"{where}: 字段缺少 name")
        where = f"{where} 字段 {name}"
        unknown = set(raw) - _FIELD_KEYS
        if unknown:
            raise SchemaError(f"{where}: 未知的属性 {', '.join(sorted(unknown))}")
        ftype = raw.get("type")
        if ftype not in TYPES:
            raise SchemaError(f"{where}: 未知的类型 {ftype!r}（可用：{', '.join(sorted(TYPES))}）")
        for key in ("max_length", "min_length", "length", "precision", "scale"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise SchemaError(f"{where}: {key} 应为非负整数")
        for key in ("required", "patient_identifier", "optional_extension"):
            if not isinstance(raw.get(key, False), bool):
                raise SchemaError(f"{where}: {key} 应为 true/false")
        precision, scale = raw.get("precision"), raw.get("scale")
        if ftype == "decimal":
            if not precision:
                raise SchemaError(f"{where}: decimal 需要 precision")
            if scale is not None and scale > precision:
                raise SchemaError(f"{where}: scale {scale} 大于 precision {precision}")
        date_format = None
        if ftype in ("datetime", "date"):
            if not isinstance(raw.get("format"), str):
                raise SchemaError(f"{where}: {ftype} 需要 format")
            try:
                date_format = DateFormat.parse(raw["format"])
            except SchemaError as exc:
                raise SchemaError(f"{where}: {exc}") from None
        codes = raw.get("codes")
        if codes is not None and (not isinstance(codes, dict) or not codes
                                  or not all(isinstance(k, str) for k in codes)):
            raise SchemaError(f"{where}: codes 应为非空的 {{代码: 含义}} 对象")
        dictionary = raw.get("dictionary")
        if dictionary is not None and not isinstance(dictionary, str):
            raise SchemaError(f"{where}: dictionary 应为字典名")
        if ftype == "code" and codes is None and dictionary is None:
            raise SchemaError(f"{where}: code 类型需要 codes 或 dictionary")
        if codes is not None and ftype not in ("code", "string", "integer"):
            raise SchemaError(f"{where}: {ftype} 类型不能带 codes")
        item_fields: tuple[FieldSpec, ...] = ()
        if ftype == "list":
            if not isinstance(raw.get("fields"), list):
                raise SchemaError(f"{where}: list 需要 fields（子节点字段）")
            item_fields = _parse_fields(raw["fields"], where)
        elif "fields" in raw:
            raise SchemaError(f"{where}: 只有 list 类型可以有 fields")
        return cls(
            name=name, type=ftype, title=raw.get("title", ""), required=raw.get("required", False),
            max_length=raw.get("max_length"), min_length=raw.get("min_length"), length=raw.get("length"),
            precision=precision, scale=scale, format=raw.get("format"),
            codes=dict(codes) if codes is not None else None, dictionary=dictionary,
            patient_identifier=raw.get("patient_identifier", False), note=raw.get("note", ""),
            optional_extension=raw.get("optional_extension", False), doc_type=raw.get("doc_type", ""),
            doc_spelling=raw.get("doc_spelling"), const=raw.get("const"), has_const="const" in raw,
            fields=item_fields, date_format=date_format,
        )

    def rule(self) -> str:
        """The type rule in words, for messages and the admin."""
        if self.type == "decimal":
            return f"decimal({self.precision},{self.scale})" if self.scale is not None \
                else f"decimal({self.precision})"
        if self.type in ("datetime", "date"):
            return f"{self.type} {self.format}"
        if self.max_length is not None and self.type == "string":
            return f"string({self.max_length})"
        return self.type


def _parse_fields(raw_fields: list[Any], where: str) -> tuple[FieldSpec, ...]:
    fields = tuple(FieldSpec.from_dict(raw, f"{where} 第{i + 1}个字段") for i, raw in enumerate(raw_fields))
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise SchemaError(f"{where}: 字段 {f.name} 重复")
        seen.add(f.name)
    return fields


class Schema:
    """One interface's field table."""

    def __init__(self, name: str, title: str, fields: tuple[FieldSpec, ...], *, source: str = "",
                 note: str = "", interface: Mapping[str, Any] | None = None,
                 constraints: tuple[Mapping[str, Any], ...] = ()) -> None:
        self.name = name
        self.title = title
        self.fields = fields
        self.source = source
        self.note = note
        self.interface: dict[str, Any] = dict(interface or {})
        self.constraints = constraints
        self._by_name = {f.name: f for f in fields}
        self._dictionaries = frozenset(_required_dictionaries(fields))

    def __repr__(self) -> str:
        return f"Schema({self.name!r}, {len(self.fields)} fields)"

    @classmethod
    def from_dict(cls, raw: Any, where: str = "schema") -> Schema:
        if not isinstance(raw, dict):
            raise SchemaError(f"{where}: 应为 JSON 对象")
        unknown = set(raw) - _SCHEMA_KEYS
        if unknown:
            raise SchemaError(f"{where}: 未知的属性 {', '.join(sorted(unknown))}")
        if not isinstance(raw.get("name"), str) or not raw["name"]:
            raise SchemaError(f"{where}: 缺少 name")
        if not isinstance(raw.get("fields"), list) or not raw["fields"]:
            raise SchemaError(f"{where}: 缺少 fields")
        fields = _parse_fields(raw["fields"], where)
        names = {f.name for f in fields}
        constraints = tuple(raw.get("constraints", ()))
        for c in constraints:
            if not isinstance(c, dict) or c.get("type") not in _CONSTRAINT_TYPES:
                raise SchemaError(f"{where}: 未知的约束 {c!r}")
            groups = c.get("groups")
            if not isinstance(groups, list) or not groups or not all(isinstance(g, list) and g for g in groups):
                raise SchemaError(f"{where}: one_group_required 需要 groups（字段名列表的列表）")
            missing = {n for g in groups for n in g} - names
            if missing:
                raise SchemaError(f"{where}: 约束引用了未定义的字段 {', '.join(sorted(missing))}")
        interface = raw.get("interface")
        if interface is not None and not isinstance(interface, dict):
            raise SchemaError(f"{where}: interface 应为 JSON 对象")
        return cls(raw["name"], raw.get("title", ""), fields, source=raw.get("source", ""),
                   note=raw.get("note", ""), interface=interface, constraints=constraints)

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SchemaError(f"无法读取字段表 {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise SchemaError(f"字段表 {path} 不是合法的 JSON: {exc}") from exc
        return cls.from_dict(raw, str(path))

    def field(self, name: str) -> FieldSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} 没有字段 {name}") from None

    def patient_fields(self) -> frozenset[str]:
        """Names of fields whose values must be masked (top level and inside lists)."""
        return frozenset(_patient_names(self.fields))

    def dictionaries(self) -> frozenset[str]:
        """Dictionaries a caller must supply (those of code fields); others are checked only if given."""
        return self._dictionaries

    def validate(self, record: Any, *, dictionaries: Mapping[str, Mapping[str, str]] | None = None,
                 index: int | None = None) -> list[Problem]:
        """Every problem of one record; an empty list means it may be sent.

        Raises ConfigurationError when a code field's dictionary was not supplied: sending unchecked
        codes would only move the failure to the regulator.
        """
        dictionaries = dictionaries or {}
        missing = self._dictionaries - set(dictionaries)
        if missing:
            raise ConfigurationError(f"{self.name} 校验需要代码字典 {', '.join(sorted(missing))}，但未提供")
        problems: list[Problem] = []
        if not isinstance(record, Mapping):
            return [Problem(None, "记录不是 JSON 对象", record_index=index)]
        _check_object(self._by_name, record, "", dictionaries, problems)
        for c in self.constraints:
            groups = c["groups"]
            if not any(all(not _empty(record.get(n)) for n in g) for g in groups):
                wording = " 或 ".join("+".join(g) for g in groups)
                problems.append(Problem(None, f"{wording} 至少一组必填"))
        for p in problems:
            p.record_index = index
        return problems

    def validate_records(self, records: list[Any], *,
                         dictionaries: Mapping[str, Mapping[str, str]] | None = None,
                         key_field: str | None = None) -> tuple[list[dict[str, Any]], list[Problem]]:
        """(records without problems, problems of the others), each problem with its record_index and,
        when ``key_field`` is given, that record's key (e.g. a settlement id)."""
        if key_field is not None:
            spec = self.field(key_field)
            if spec.patient_identifier:  # the key is shown next to every problem: no patient data there
                raise ValueError(f"{key_field} 是患者身份信息，不能作为记录标识")
        valid: list[dict[str, Any]] = []
        problems: list[Problem] = []
        for i, record in enumerate(records):
            found = self.validate(record, dictionaries=dictionaries, index=i)
            if not found:
                valid.append(record)
                continue
            if key_field is not None and isinstance(record, Mapping):
                key = record.get(key_field)
                for p in found:
                    p.record_key = None if _empty(key) else str(key)
            problems.extend(found)
        return valid, problems


def _patient_names(fields: tuple[FieldSpec, ...]) -> list[str]:
    names = []
    for f in fields:
        if f.patient_identifier:
            names.append(f.name)
        names.extend(_patient_names(f.fields))
    return names


def _required_dictionaries(fields: tuple[FieldSpec, ...]) -> list[str]:
    out = []
    for f in fields:
        if f.type == "code" and f.codes is None and f.dictionary:
            out.append(f.dictionary)
        out.extend(_required_dictionaries(f.fields))
    return out


def _empty(value: Any) -> bool:
    return value is None or value == ""


def _check_object(specs: Mapping[str, FieldSpec], record: Mapping[str, Any], prefix: str,
                  dictionaries: Mapping[str, Mapping[str, str]], problems: list[Problem]) -> None:
    for name in record:
        if name not in specs:
            problems.append(Problem(f"{prefix}{name}", "字段不在接口字段表中"))
    for name, spec in specs.items():
        where = f"{prefix}{name}"
        if spec.has_const:  # e.g. a field that must be sent as "": present, exactly that value
            if name not in record:
                problems.append(Problem(where, "必填字段缺失"))
            elif record[name] != spec.const:
                problems.append(Problem(where, f"{_shown(spec, record[name])} 应为固定值 "
                                               f"{json.dumps(spec.const, ensure_ascii=False)}"))
            continue
        value = record.get(name)
        if _empty(value):
            if spec.required:
                problems.append(Problem(where, "必填字段缺失"))
            continue  # optional and empty: nothing to check (IHS 1.3: 非必填字段，值为空可不传)
        reason = _check_value(spec, value, dictionaries)
        if reason:
            problems.append(Problem(where, reason))
        elif spec.type == "list":
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    _check_object({f.name: f for f in spec.fields}, item, f"{where}[{i}].", dictionaries,
                                  problems)
                else:
                    problems.append(Problem(f"{where}[{i}]", "不是 JSON 对象"))


def _shown(spec: FieldSpec, value: Any) -> str:
    """The value as quoted in a reason, or "值" for patient data (reasons are logged)."""
    if spec.patient_identifier:
        return "值"
    if isinstance(value, str):
        text = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "…"
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} 字节的二进制"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


_TYPE_WORDS = {
    "string": "字符串", "integer": "整数", "number": "数字", "decimal": "数值", "datetime": "日期时间字符串",
    "date": "日期字符串", "code": "代码字符串", "boolean": "布尔值", "list": "数组", "binary": "二进制内容",
}


def _check_value(spec: FieldSpec, value: Any, dictionaries: Mapping[str, Mapping[str, str]]) -> str | None:
    t = spec.type
    if t in ("string", "code", "datetime", "date") and not isinstance(value, str):
        return f"{_shown(spec, value)} 类型错误：应为{_TYPE_WORDS[t]}"
    if t == "string":
        reason = _check_length(spec, value)
        if reason:
            return reason
    elif t == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{_shown(spec, value)} 不是整数"
    elif t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{_shown(spec, value)} 不是数字"
    elif t == "decimal":
        return _check_decimal(spec, value)
    elif t in ("datetime", "date"):
        assert spec.date_format is not None
        if not spec.date_format.pattern.fullmatch(value):
            return f"{_shown(spec, value)} 不符合格式 {spec.format}"
        if not spec.date_format.check(value):
            what = "日期时间" if t == "datetime" else "日期"
            return f"{_shown(spec, value)} 不是有效的{what}（格式 {spec.format}）"
    elif t == "boolean":
        if not isinstance(value, bool):
            return f"{_shown(spec, value)} 不是布尔值"
    elif t == "list":
        if not isinstance(value, list):
            return f"{_shown(spec, value)} 类型错误：应为数组"
    elif t == "binary":
        if not isinstance(value, (bytes, bytearray)):
            return f"{_shown(spec, value)} 类型错误：应为二进制内容"
    return _check_code(spec, value, dictionaries)


def _check_length(spec: FieldSpec, value: str) -> str | None:
    n = len(value)  # characters: 张三 is 2, whatever the encoding on the wire
    if spec.length is not None and n != spec.length:
        return f"长度 {n} 不等于规定长度 {spec.length}"
    if spec.max_length is not None and n > spec.max_length:
        return f"长度 {n} 超过最大长度 {spec.max_length}"
    if spec.min_length is not None and n < spec.min_length:
        return f"长度 {n} 小于最小长度 {spec.min_length}"
    return None


def _check_decimal(spec: FieldSpec, value: Any) -> str | None:
    rule = spec.rule()
    if isinstance(value, bool):
        return f"{_shown(spec, value)} 不是数值（{rule}）"
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{_shown(spec, value)} 不是数值（{rule}）"
        number = Decimal(repr(value))  # the shortest text of the float: 0.1, not 0.1000000000000000055
    elif isinstance(value, str) and _NUMERIC_RE.fullmatch(value):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return f"{_shown(spec, value)} 不是数值（{rule}）"
    else:
        return f"{_shown(spec, value)} 不是数值（{rule}）"
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    int_digits = max(0, len(digits) + exponent) if any(digits) else 0
    frac_digits = max(0, -exponent)
    precision = spec.precision or 0
    if spec.scale is None:
        if int_digits + frac_digits > precision:
            return f"{_shown(spec, value)} 共 {int_digits + frac_digits} 位数字，超过 {rule} 允许的 {precision} 位"
        return None
    if int_digits > precision - spec.scale:
        return f"{_shown(spec, value)} 整数部分 {int_digits} 位，超过 {rule} 允许的 {precision - spec.scale} 位"
    if frac_digits > spec.scale:
        return f"{_shown(spec, value)} 小数部分 {frac_digits} 位，超过 {rule} 允许的 {spec.scale} 位"
    return None


def _check_code(spec: FieldSpec, value: Any, dictionaries: Mapping[str, Mapping[str, str]]) -> str | None:
    if spec.codes is not None:
        if str(value) not in spec.codes:
            shown = _shown(spec, value)
            allowed = ", ".join(f"{k}-{v}" for k, v in list(spec.codes.items())[:_MAX_CODES_SHOWN])
            more = " …" if len(spec.codes) > _MAX_CODES_SHOWN else ""
            return f"{shown} 不在代码表中（允许：{allowed}{more}）"
    elif spec.dictionary is not None and spec.dictionary in dictionaries:
        if str(value) not in dictionaries[spec.dictionary]:
            return f"{_shown(spec, value)} 不在代码字典 {spec.dictionary} 中"
    return None


@cache
def _load_cached(path: str) -> Schema:
    return Schema.load(path)


def load_schema(path: str | Path) -> Schema:
    """Schema.load, cached by resolved path (plugins load their schemas at import and per report type)."""
    return _load_cached(str(Path(path).resolve()))
