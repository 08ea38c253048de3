"""Field mappings (字段映射配置): how rows read from the hospital become interface fields, with versions.

A mapping belongs to one report type and is a list of rules. Each rule fills one column (``target``,
usually an interface field of the report type's schema) of the rows one query returns (``query``; empty =
every query of the report type) from:

    column      a column of the query's row                      source = column name
    constant    a fixed value                                    source = the value (text)
    dictionary  a registered code dictionary (core.pipeline)     source = column; dictionary = its name;
                                                                 lookup = "meaning" (code -> meaning) or
                                                                 "code" (meaning -> code)
    expression  a small safe expression over the row's columns   source = e.g. round(amount / 100, 2)
                numbers, 'text', column names, + - * / ( ), round(x[, n]), coalesce(a, b, ...),
                concat(a, b, ...), abs(x). Parsed by a tiny parser below: nothing is ever eval'ed.
                NULL in arithmetic gives NULL, and so does division by zero (as in SQL).

then converted (``convert``):

    ""/none     as it is (Decimal results become int/float so rows stay JSON)
    integer     a whole number (half-up rounding of a fractional value)
    decimal     a number rounded half-up to ``scale`` places; decimal_text: the same as text ("12.50")
    string      text, cut to ``length`` characters when given
    date        ``from_format`` (the hospital's; empty = common ISO shapes) -> ``to_format`` (the
    datetime    interface's; empty = the schema field's format). Both accept strptime (%Y-%m-%d) or the
                documents' own style (yyyy-MM-dd HH:mm:ss, YYYY/MM/DD HH24:MI:SS).
    code        translation by the rule's ``codes`` table {hospital value: interface code}; a value
                missing from the table is an error naming it (never sent untranslated)

Columns without a rule pass through unchanged, so a plugin whose SQL already names its columns after the
interface works with no mapping at all. Rules read the query's original columns, never each other's
results, so their order does not matter.

Versions: every save is a new ``FieldMappingVersion`` (author, time, comment); the highest version of a
report type is the active one. Restoring an old version saves a new version equal to it. ``core.scheduler``
wraps the hospital source in ``MappedHospitalData`` and records the version each planned upload used
(``Upload.mapping_version``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core import clock
from core.db import db
from core.errors import ConfigurationError

KINDS = {"column": "查询列", "constant": "常量", "dictionary": "字典查找", "expression": "表达式"}
CONVERSIONS = {
    "": "不转换", "integer": "整数", "decimal": "数值（保留小数位）", "decimal_text": "数值文本（保留小数位）",
    "string": "字符串（限长）", "date": "日期", "datetime": "日期时间", "code": "代码转换",
}
LOOKUPS = {"meaning": "代码 → 名称", "code": "名称 → 代码"}
RULE_KEYS = ("target", "query", "kind", "source", "dictionary", "lookup", "convert", "scale", "length",
             "from_format", "to_format", "codes", "note")
_AUTO_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M",
                      "%Y/%m/%d %H:%M:%S", "%Y%m%d%H%M%S", "%Y-%m-%d", "%Y/%m/%d", "%Y%m%d")


class MappingError(ConfigurationError):
    """A mapping cannot be saved or applied; the message names the field and says why (in Chinese)."""


def _now() -> datetime:
    return clock.utc_naive(clock.now())


class FieldMappingVersion(db.Model):
    __tablename__ = "field_mapping_versions"
    __table_args__ = (sa.UniqueConstraint("report_type", "version", name="uq_field_mapping_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_type: Mapped[str] = mapped_column(sa.String(80), index=True)
    version: Mapped[int] = mapped_column()
    rules: Mapped[Any] = mapped_column(sa.JSON, default=list)
    author: Mapped[str] = mapped_column(sa.String(80), default="")
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    restored_from: Mapped[int | None] = mapped_column()  # the version this one restores, if any
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)


# --- rules -----------------------------------------------------------------------------------------

def clean_rule(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A rule with only known keys, text trimmed, numbers as int, codes as a dict."""
    rule: dict[str, Any] = {}
    for key in RULE_KEYS:
        value = raw.get(key)
        if key in ("scale", "length"):
            if value in (None, ""):
                continue
            try:
                rule[key] = int(value)
            except (TypeError, ValueError):
                raise MappingError(f"字段 {raw.get('target') or '?'}：{key} 应为整数，而不是 {value!r}") from None
        elif key == "codes":
            table = parse_codes(value) if isinstance(value, str) else dict(value or {})
            if table:
                rule[key] = {str(k): str(v) for k, v in table.items()}
        elif value not in (None, ""):
            rule[key] = value.strip() if isinstance(value, str) else value
    rule.setdefault("kind", "column")
    return rule


def parse_codes(text: str) -> dict[str, str]:
    """'M=1' lines (or 'M:1', 'M,1') as {"M": "1"}."""
    table: dict[str, str] = {}
    for number, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = re.split(r"\s*(?:=|:|：|,|，|\t)\s*", line, maxsplit=1)
        if len(parts) != 2 or not parts[0]:
            raise MappingError(f"代码转换表第 {number} 行「{line}」应写成 院内值=接口代码")
        table[parts[0]] = parts[1]
    return table


def codes_text(codes: Mapping[str, str] | None) -> str:
    return "\n".join(f"{k}={v}" for k, v in (codes or {}).items())


def rule_key(rule: Mapping[str, Any]) -> str:
    """How a rule is identified across versions: its query (or *) and target."""
    return f"{rule.get('query') or '*'}:{rule.get('target', '')}"


def describe(rule: Mapping[str, Any]) -> str:
    """One line in words, for lists and comparisons."""
    kind = rule.get("kind", "column")
    source = rule.get("source", "")
    if kind == "column":
        what = f"列 {source}"
    elif kind == "constant":
        what = f"常量 {json.dumps(source, ensure_ascii=False)}"
    elif kind == "dictionary":
        what = f"字典 {rule.get('dictionary', '')}（{LOOKUPS.get(rule.get('lookup', 'meaning'), '')}）查 {source}"
    else:
        what = f"表达式 {source}"
    convert = rule.get("convert", "")
    if convert:
        extra = {"decimal": f"{rule.get('scale', 0)} 位", "decimal_text": f"{rule.get('scale', 0)} 位",
                 "string": f"≤{rule['length']}" if rule.get("length") else "",
                 "date": f"{rule.get('from_format') or '自动'} → {rule.get('to_format') or '字段格式'}",
                 "datetime": f"{rule.get('from_format') or '自动'} → {rule.get('to_format') or '字段格式'}",
                 "code": f"{len(rule.get('codes') or {})} 项"}.get(convert, "")
        what += f"，转为{CONVERSIONS.get(convert, convert)}" + (f"（{extra}）" if extra else "")
    return what


def check_rule(rule: Mapping[str, Any]) -> list[str]:
    """Problems that make a rule unusable (syntax, missing parts), in words."""
    problems: list[str] = []
    target = rule.get("target", "")
    if not target:
        problems.append("缺少接口字段名")
    elif not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", target):
        problems.append(f"字段名「{target}」只能含字母、数字和下划线")
    kind = rule.get("kind", "column")
    if kind not in KINDS:
        problems.append(f"未知的来源类型 {kind}")
    if kind in ("column", "dictionary", "expression") and not rule.get("source"):
        problems.append(f"{KINDS.get(kind, kind)}缺少来源")
    if kind == "expression" and rule.get("source"):
        try:
            parse_expression(rule["source"])
        except MappingError as exc:
            problems.append(str(exc))
    if kind == "dictionary":
        if not rule.get("dictionary"):
            problems.append("字典查找缺少字典名")
        if rule.get("lookup", "meaning") not in LOOKUPS:
            problems.append(f"未知的查找方向 {rule.get('lookup')}")
    convert = rule.get("convert", "")
    if convert not in CONVERSIONS:
        problems.append(f"未知的类型转换 {convert}")
    if convert in ("decimal", "decimal_text") and not 0 <= int(rule.get("scale", 0)) <= 12:
        problems.append("小数位应在 0 到 12 之间")
    if convert == "string" and rule.get("length") is not None and int(rule["length"]) <= 0:
        problems.append("字符串长度应大于 0")
    if convert == "code" and not rule.get("codes"):
        problems.append("代码转换缺少对照表")
    for key in ("from_format", "to_format"):
        if convert in ("date", "datetime") and rule.get(key):
            try:
                strptime_format(rule[key])
            except MappingError as exc:
                problems.append(str(exc))
    return problems


def check_rules(rules: list[Mapping[str, Any]]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for number, rule in enumerate(rules, 1):
        label = f"第 {number} 条（{rule.get('target') or '?'}）"
        problems.extend(f"{label}：{p}" for p in check_rule(rule))
        key = rule_key(rule)
        if key in seen:
            problems.append(f"{label}：同一查询的字段 {rule.get('target')} 有两条规则")
        seen.add(key)
    return problems


# --- expressions: a tiny parser, never eval ----------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")|([A-Za-z_\u4e00-\u9fff]"
                    r"[A-Za-z0-9_\u4e00-\u9fff]*)|(\S))")
FUNCTIONS = {"round": (1, 2), "coalesce": (1, 32), "concat": (1, 32), "abs": (1, 1)}
MAX_EXPRESSION = 500


@dataclass(frozen=True)
class Node:
    kind: str  # num / str / col / neg / bin / call
    value: Any = None
    args: tuple[Node, ...] = ()

    def columns(self) -> set[str]:
        found = {self.value} if self.kind == "col" else set()
        for arg in self.args:
            found |= arg.columns()
        return found


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        number, string, name, symbol = m.groups()
        if number is not None:
            out.append(("num", number))
        elif string is not None:
            out.append(("str", re.sub(r"\\(.)", r"\1", string[1:-1])))
        elif name is not None:
            out.append(("name", name))
        elif symbol is not None:
            if symbol not in "+-*/(),":
                raise MappingError(f"表达式中不允许的字符「{symbol}」（只能用 + - * / ( ) , 和函数 "
                                   f"{', '.join(FUNCTIONS)}）")
            out.append(("op", symbol))
    return out


def parse_expression(text: str) -> Node:
    """Parse ``text`` into a tree; raises MappingError saying what is wrong."""
    if len(text) > MAX_EXPRESSION:
        raise MappingError(f"表达式超过 {MAX_EXPRESSION} 个字符")
    tokens = _tokens(text)
    if not tokens:
        raise MappingError("表达式为空")
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> tuple[str, str]:
        nonlocal pos
        token = peek()
        if token is None:
            raise MappingError(f"表达式「{text}」不完整" + (f"，缺少「{expected}」" if expected else ""))
        if expected is not None and token != ("op", expected):
            raise MappingError(f"表达式「{text}」在「{token[1]}」处应为「{expected}」")
        pos += 1
        return token

    def expression(depth: int = 0) -> Node:
        if depth > 40:
            raise MappingError("表达式嵌套过深")
        node = term(depth)
        while peek() in (("op", "+"), ("op", "-")):
            op = take()[1]
            node = Node("bin", op, (node, term(depth)))
        return node

    def term(depth: int) -> Node:
        node = factor(depth)
        while peek() in (("op", "*"), ("op", "/")):
            op = take()[1]
            node = Node("bin", op, (node, factor(depth)))
        return node

    def factor(depth: int) -> Node:
        kind, value = take()
        if (kind, value) == ("op", "-"):
            return Node("neg", None, (factor(depth),))
        if (kind, value) == ("op", "+"):
            return factor(depth)
        if (kind, value) == ("op", "("):
            node = expression(depth + 1)
            take(")")
            return node
        if kind == "num":
            return Node("num", Decimal(value))
        if kind == "str":
            return Node("str", value)
        if kind == "name":
            if peek() == ("op", "("):
                name = value.lower()
                if name not in FUNCTIONS:
                    raise MappingError(f"不支持的函数 {value}（可用：{', '.join(FUNCTIONS)}）")
                take("(")
                args: list[Node] = []
                if peek() != ("op", ")"):
                    args.append(expression(depth + 1))
                    while peek() == ("op", ","):
                        take(",")
                        args.append(expression(depth + 1))
                take(")")
                low, high = FUNCTIONS[name]
                if not low <= len(args) <= high:
                    raise MappingError(f"函数 {name} 需要 {low}" + (f"-{high}" if high != low else "") + " 个参数")
                if name == "round" and len(args) == 2 and args[1].kind != "num":
                    raise MappingError("round 的小数位数应为数字")
                return Node("call", name, tuple(args))
            return Node("col", value)
        raise MappingError(f"表达式「{text}」在「{value}」处有误")

    node = expression()
    if peek() is not None:
        raise MappingError(f"表达式「{text}」在「{peek()[1]}」处有多余内容")
    return node


def _number(value: Any, where: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise MappingError(f"{where}：「{str(value)[:40]}」不是数字") from None


def evaluate(node: Node, row: Mapping[str, Any], where: str = "表达式") -> Any:
    if node.kind == "num" or node.kind == "str":
        return node.value
    if node.kind == "col":
        if node.value not in row:
            raise MappingError(f"{where}：查询结果没有列 {node.value}（有：{', '.join(map(str, row)) or '无'}）")
        return row[node.value]
    if node.kind == "neg":
        value = _number(evaluate(node.args[0], row, where), where)
        return None if value is None else -value
    if node.kind == "bin":
        left = _number(evaluate(node.args[0], row, where), where)
        right = _number(evaluate(node.args[1], row, where), where)
        if left is None or right is None:
            return None
        if node.value == "+":
            return left + right
        if node.value == "-":
            return left - right
        if node.value == "*":
            return left * right
        return None if right == 0 else left / right
    name = node.value
    if name == "coalesce":
        for arg in node.args:
            value = evaluate(arg, row, where)
            if value not in (None, ""):
                return value
        return None
    if name == "concat":
        return "".join(_text(evaluate(arg, row, where)) for arg in node.args)
    value = _number(evaluate(node.args[0], row, where), where)
    if value is None:
        return None
    if name == "abs":
        return abs(value)
    places = int(node.args[1].value) if len(node.args) == 2 else 0
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- conversions -------------------------------------------------------------------------------------

def strptime_format(text: str) -> str:
    """A strptime format from either strptime style or the documents' style (yyyy-MM-dd HH:mm:ss)."""
    if "%" in text:
        return text
    from core.schema import DateFormat, SchemaError

    try:
        return DateFormat.parse(text).strptime
    except SchemaError as exc:
        raise MappingError(f"日期格式「{text}」无法识别：{exc}") from None


def _parse_moment(value: Any, from_format: str, where: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = str(value).strip()
    formats = (strptime_format(from_format),) if from_format else _AUTO_DATE_FORMATS
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    wanted = from_format or "常见日期格式"
    raise MappingError(f"{where}：「{text[:40]}」不符合日期格式 {wanted}")


def convert(value: Any, rule: Mapping[str, Any], field_format: str | None, where: str) -> Any:
    """Apply the rule's conversion to one value (None stays None)."""
    kind = rule.get("convert", "")
    if value is None or (value == "" and kind not in ("", "string", "code")):
        return None
    if kind == "":
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral() else float(value)
        return value
    if kind == "integer":
        number = _number(value, where)
        return int(number.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if kind in ("decimal", "decimal_text"):
        number = _number(value, where).quantize(Decimal(1).scaleb(-int(rule.get("scale", 0))),
                                               rounding=ROUND_HALF_UP)
        return format(number, "f") if kind == "decimal_text" else float(number)
    if kind == "string":
        text = _text(value)
        length = rule.get("length")
        return text[:int(length)] if length else text
    if kind in ("date", "datetime"):
        moment = _parse_moment(value, rule.get("from_format", ""), where)
        target = rule.get("to_format") or field_format or ("%Y-%m-%d" if kind == "date" else "%Y-%m-%d %H:%M:%S")
        return moment.strftime(strptime_format(target))
    if kind == "code":
        codes = rule.get("codes") or {}
        key = _text(value)
        if key not in codes:
            raise MappingError(f"{where}：值「{key[:40]}」不在代码转换表中（请在字段映射中补充）")
        return codes[key]
    raise MappingError(f"{where}：未知的类型转换 {kind}")


# --- applying a mapping ------------------------------------------------------------------------------

@dataclass
class CompiledMapping:
    """One version's rules, parsed once, applied to the rows of every query of the report type."""

    report_type: str
    version: int | None
    rules: list[dict[str, Any]]
    schema: Any = None
    dictionary_source: Callable[[str], Mapping[str, str]] | None = None
    _expressions: dict[int, Node] = field(default_factory=dict)
    _dictionaries: dict[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = check_rules(self.rules)
        if problems:
            raise MappingError(f"{self.report_type} 字段映射 v{self.version} 有误：" + "；".join(problems))
        for i, rule in enumerate(self.rules):
            if rule.get("kind") == "expression":
                self._expressions[i] = parse_expression(rule["source"])

    def rules_for(self, query: str) -> list[tuple[int, dict[str, Any]]]:
        return [(i, r) for i, r in enumerate(self.rules) if r.get("query") in (None, "", "*", query)]

    def apply(self, query: str, rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        applicable = self.rules_for(query)
        if not applicable:
            return [dict(r) for r in rows]
        label = f"字段映射 v{self.version}" if self.version is not None else "字段映射（未保存）"
        out: list[dict[str, Any]] = []
        for number, row in enumerate(rows, 1):
            mapped = dict(row)
            for i, rule in applicable:
                where = f"{label} 查询 {query} 第 {number} 行 {rule['target']}"
                mapped[rule["target"]] = convert(self._value(i, rule, row, where), rule,
                                                 self._field_format(rule["target"]), where)
            out.append(mapped)
        return out

    def _value(self, index: int, rule: Mapping[str, Any], row: Mapping[str, Any], where: str) -> Any:
        kind = rule.get("kind", "column")
        if kind == "constant":
            return rule.get("source", "")
        if kind == "expression":
            return evaluate(self._expressions[index], row, where)
        column = rule["source"]
        if column not in row:
            raise MappingError(f"{where}：查询结果没有列 {column}（有：{', '.join(map(str, row)) or '无'}）")
        value = row[column]
        if kind == "column" or value in (None, ""):
            return value
        table = self._dictionary(rule["dictionary"])
        key = _text(value)
        if rule.get("lookup", "meaning") == "code":
            reverse = {meaning: code for code, meaning in table.items()}
            return reverse.get(key)
        return table.get(key)

    def _dictionary(self, name: str) -> Mapping[str, str]:
        if name not in self._dictionaries:
            source = self.dictionary_source or _registered_dictionary
            self._dictionaries[name] = source(name)
        return self._dictionaries[name]

    def _field_format(self, target: str) -> str | None:
        spec = _field_spec(self.schema, target)
        return spec.format if spec is not None else None


def _registered_dictionary(name: str) -> Mapping[str, str]:
    from core.pipeline import _dictionary_providers, dictionary_codes

    if name not in _dictionary_providers:
        raise MappingError(f"代码字典 {name} 未注册（可用：{', '.join(sorted(_dictionary_providers)) or '无'}）")
    return dictionary_codes(name)


def registered_dictionaries() -> list[str]:
    from core.pipeline import _dictionary_providers

    return sorted(_dictionary_providers)


def _field_spec(schema: Any, name: str) -> Any:
    if schema is None:
        return None
    try:
        return schema.field(name)
    except KeyError:
        return None


# --- versions ---------------------------------------------------------------------------------------

def versions(report_type: str) -> list[FieldMappingVersion]:
    return list(db.session.execute(
        sa.select(FieldMappingVersion).filter_by(report_type=report_type).order_by(FieldMappingVersion.version.desc())
    ).scalars())


def get_version(report_type: str, version: int) -> FieldMappingVersion | None:
    return db.session.execute(
        sa.select(FieldMappingVersion).filter_by(report_type=report_type, version=version)
    ).scalar_one_or_none()


def active_version(report_type: str) -> FieldMappingVersion | None:
    return db.session.execute(
        sa.select(FieldMappingVersion).filter_by(report_type=report_type)
        .order_by(FieldMappingVersion.version.desc()).limit(1)
    ).scalar_one_or_none()


def save_version(report_type: str, rules: list[Mapping[str, Any]], author: str, comment: str = "", *,
                 restored_from: int | None = None) -> FieldMappingVersion:
    """Store the rules as the report type's next version (it becomes active). The caller commits.
    Raises MappingError listing every problem, or when nothing changed."""
    cleaned = [clean_rule(r) for r in rules]
    problems = check_rules(cleaned)
    if problems:
        raise MappingError("；".join(problems))
    current = active_version(report_type)
    if current is not None and _canonical(current.rules) == _canonical(cleaned):
        raise MappingError(f"与当前版本 v{current.version} 相同，没有保存新版本")
    if current is None and not cleaned:
        raise MappingError("没有任何规则，无需保存")
    row = FieldMappingVersion(report_type=report_type, version=(current.version if current else 0) + 1,
                              rules=cleaned, author=author, comment=(comment or "").strip()[:2000],
                              restored_from=restored_from)
    db.session.add(row)
    db.session.flush()
    return row


def restore(report_type: str, version: int, author: str, comment: str = "") -> FieldMappingVersion:
    """Make an earlier version active again by saving a new version equal to it. The caller commits."""
    old = get_version(report_type, version)
    if old is None:
        raise MappingError(f"{report_type} 没有字段映射版本 v{version}")
    return save_version(report_type, list(old.rules or []), author, comment or f"恢复 v{version}",
                        restored_from=version)


def restore_plugin_default(report_type: str, author: str) -> FieldMappingVersion:
    """Go back to the plugin's own mapping (no rules: the plugin's SQL columns pass through unchanged),
    saved as a new, empty version so the history keeps what was used before. The caller commits."""
    current = active_version(report_type)
    if current is None or not (current.rules or []):
        raise MappingError("当前已经是插件默认映射，无需恢复")
    return save_version(report_type, [], author, "恢复插件默认映射")


def _canonical(rules: list[Mapping[str, Any]]) -> str:
    return json.dumps(sorted((dict(r) for r in rules), key=rule_key), ensure_ascii=False, sort_keys=True)


@dataclass
class RuleDiff:
    key: str
    target: str
    query: str
    status: str  # added / removed / changed / same
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    changed: list[str]  # the rule keys that differ

    @property
    def status_label(self) -> str:
        return {"added": "新增", "removed": "删除", "changed": "修改", "same": "相同"}[self.status]


def compare(old_rules: list[Mapping[str, Any]], new_rules: list[Mapping[str, Any]]) -> list[RuleDiff]:
    """Field-by-field comparison of two rule lists (matched on query + target)."""
    old = {rule_key(r): dict(r) for r in old_rules}
    new = {rule_key(r): dict(r) for r in new_rules}
    out: list[RuleDiff] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        rule = after or before
        query, target = rule.get("query") or "", rule.get("target", "")
        if before is None:
            out.append(RuleDiff(key, target, query, "added", None, after, []))
        elif after is None:
            out.append(RuleDiff(key, target, query, "removed", before, None, []))
        else:
            changed = [k for k in RULE_KEYS if before.get(k) != after.get(k)]
            out.append(RuleDiff(key, target, query, "changed" if changed else "same", before, after, changed))
    return out


# --- validation against the interface ------------------------------------------------------------------

@dataclass
class Issue:
    level: str  # error / warning / info
    target: str
    message: str


_COMPATIBLE = {
    "": None,  # anything
    "integer": {"integer", "number", "decimal", "string", "code"},
    "decimal": {"number", "decimal"},
    "decimal_text": {"decimal", "string"},
    "string": {"string", "code", "decimal"},
    "date": {"date", "datetime", "string"},
    "datetime": {"datetime", "date", "string"},
    "code": {"code", "string", "integer"},
}


def validate(report_type: Any, rules: list[Mapping[str, Any]]) -> list[Issue]:
    """Check rules against the report type's queries and field schema: syntax, unknown queries, targets
    that are not interface fields, conversions that cannot produce the field's type, date formats, and
    required fields without a rule (fine when the query's columns already carry them: see the preview)."""
    issues: list[Issue] = []
    cleaned = []
    for rule in rules:
        try:
            cleaned.append(clean_rule(rule))
        except MappingError as exc:
            issues.append(Issue("error", rule.get("target", "?"), str(exc)))
    for problem in check_rules(cleaned):
        issues.append(Issue("error", "", problem))
    schema = getattr(report_type, "schema", None)
    queries = dict(getattr(report_type, "queries", {}) or {})
    for rule in cleaned:
        target = rule.get("target", "")
        query = rule.get("query") or ""
        if query and query not in ("*",) and queries and query not in queries:
            issues.append(Issue("error", target, f"报表类型没有查询 {query}（有：{', '.join(queries)}）"))
        spec = _field_spec(schema, target)
        if schema is not None and spec is None and target:
            issues.append(Issue("warning", target, f"{target} 不是接口字段：作为查询结果的列提供给插件"))
            continue
        if spec is None:
            continue
        allowed = _COMPATIBLE.get(rule.get("convert", ""))
        if allowed is not None and spec.type not in allowed:
            issues.append(Issue("error", target, f"转换为{CONVERSIONS[rule['convert']]}不能得到接口要求的 "
                                                 f"{spec.rule()}"))
        if rule.get("convert") in ("date", "datetime") and rule.get("to_format") and spec.format:
            if strptime_format(rule["to_format"]) != strptime_format(spec.format):
                issues.append(Issue("error", target, f"输出格式 {rule['to_format']} 与接口格式 {spec.format} 不同"))
        if spec.type in ("date", "datetime") and rule.get("convert", "") not in ("date", "datetime"):
            issues.append(Issue("warning", target, f"接口要求 {spec.rule()}：建议使用日期转换，确保格式一致"))
        if rule.get("convert") == "string" and spec.max_length and rule.get("length", 10 ** 9) > spec.max_length:
            issues.append(Issue("warning", target, f"接口最大长度 {spec.max_length}：建议设置长度以免超长"))
        if rule.get("convert") in ("decimal", "decimal_text") and spec.scale is not None \
                and rule.get("scale", 0) > spec.scale:
            issues.append(Issue("error", target, f"保留 {rule.get('scale')} 位小数，超过接口允许的 {spec.scale} 位"))
        if rule.get("kind") == "constant" and spec.type in ("integer", "number", "decimal") \
                and rule.get("convert", "") == "":
            issues.append(Issue("warning", target, "常量是文本：数值字段请选择整数或数值转换"))
        if rule.get("convert") == "code" and spec.codes:
            unknown = sorted(set(rule.get("codes", {}).values()) - set(spec.codes))
            if unknown:
                issues.append(Issue("error", target, f"代码 {', '.join(unknown[:8])} 不在接口代码表中"))
    if schema is not None:
        covered = {r.get("target") for r in cleaned}
        for spec in schema.fields:
            if spec.required and spec.name not in covered and not spec.has_const:
                issues.append(Issue("info", spec.name, f"必填字段 {spec.name}（{spec.title}）没有规则：使用查询结果中的"
                                                       "同名列或由插件填写，请用预览确认"))
    return issues


# --- the hospital source, mapped ---------------------------------------------------------------------------

class MappedHospitalData:
    """A hospital data source whose ``query`` returns rows transformed by the report type's active mapping.

    The version is read once per report type per source, so one planning run uses one version throughout
    and ``version_for`` says which (None: no mapping saved). ``with_rules`` makes a source that applies
    unsaved rules instead (the admin's preview). Everything else is delegated to the wrapped source.
    """

    def __init__(self, source: Any, overrides: Mapping[str, list[Mapping[str, Any]]] | None = None) -> None:
        self.source = source
        self._overrides = {name: [clean_rule(r) for r in rules] for name, rules in (overrides or {}).items()}
        self._compiled: dict[str, CompiledMapping | None] = {}

    def with_rules(self, report_type: str, rules: list[Mapping[str, Any]]) -> MappedHospitalData:
        return MappedHospitalData(self.source, {**self._overrides, report_type: list(rules)})

    def mapping_for(self, report_type: str) -> CompiledMapping | None:
        if report_type not in self._compiled:
            self._compiled[report_type] = self._load(report_type)
        return self._compiled[report_type]

    def version_for(self, report_type: str) -> int | None:
        mapping = self.mapping_for(report_type)
        return mapping.version if mapping is not None else None

    def query(self, report_type: Any, name: str, /, **params: Any) -> list[dict[str, Any]]:
        rows = self.source.query(report_type, name, **params)
        type_name = report_type if isinstance(report_type, str) else report_type.name
        mapping = self.mapping_for(type_name)
        return mapping.apply(name, rows) if mapping is not None else rows

    def scalar(self, report_type: Any, name: str, /, **params: Any) -> Any:
        """The first column of the first mapped row (a rule targeting that column replaces it in place)."""
        rows = self.query(report_type, name, **params)
        return next(iter(rows[0].values()), None) if rows else None

    def __getattr__(self, attr: str) -> Any:
        if attr == "source":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(attr)
        return getattr(self.source, attr)

    def _load(self, report_type: str) -> CompiledMapping | None:
        schema = _schema_of(report_type)
        if report_type in self._overrides:
            return CompiledMapping(report_type, None, self._overrides[report_type], schema=schema)
        row = active_version(report_type)
        if row is None:
            return None
        return CompiledMapping(report_type, row.version, list(row.rules or []), schema=schema)


def _schema_of(report_type: str) -> Any:
    from core.plugins import registry

    declared = registry().report_types.get(report_type)
    return getattr(declared, "schema", None)


# --- preview: what a mapping would produce, recording nothing ---------------------------------------------

@dataclass
class PreviewPlan:
    business_key: str
    period: str
    department: str | None
    rows: list[dict[str, Any]]
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Preview:
    report_type: str
    slot: datetime
    version: int | None  # None: unsaved rules (or no mapping)
    plans: list[PreviewPlan] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)
    total_plans: int = 0
    error: str | None = None


def preview(report_type_name: str, slot: datetime, rules: list[Mapping[str, Any]] | None = None, *,
            limit: int = 20) -> Preview:
    """Run the plugin's ``schedule`` for ``slot`` on the hospital data through the mapping (``rules``, or
    the active version), then ``build_payload`` and schema validation for each plan. Nothing is recorded:
    whatever the plugin added to the session (held-back records) is rolled back."""
    from zoneinfo import ZoneInfo

    from core import settings as core_settings
    from core.hook_types import UploadContext
    from core.pipeline import validate_payload
    from core.plugins import registry
    from core.scheduler import hospital_data

    reg = registry()
    report_type = reg.report_type(report_type_name)
    source = hospital_data()
    if not isinstance(source, MappedHospitalData):
        source = MappedHospitalData(source)
    if rules is not None:
        source = source.with_rules(report_type_name, rules)
    local_slot = slot.astimezone(ZoneInfo(report_type.timezone))
    result = Preview(report_type_name, local_slot, None)
    regulator_settings = core_settings.regulator_settings(report_type.regulator)
    try:
        result.version = source.version_for(report_type_name)
        plans = reg.hook(report_type_name, "schedule")(
            report_type=report_type, slot=local_slot, source=source, settings=regulator_settings) or []
    except Exception as exc:  # shown to the admin: a mapping or SQL error is what the preview is for
        result.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ConfigurationError) else str(exc)
        plans = []
    finally:
        db.session.rollback()
    result.total_plans = len(plans)
    for plan in plans:
        result.held_back.extend(str(p) if not p.record_key else f"{p.record_key}：{p.reason}" for p in plan.held_back)
    build = reg.hook(report_type_name, "build_payload")
    for plan in plans[:limit]:
        shown = PreviewPlan(plan.business_key, plan.period, plan.department, list(plan.rows))
        context = UploadContext(
            id=0, report_type=report_type, business_key=plan.business_key, period=plan.period,
            department=plan.department, rows=list(plan.rows), idempotency_key=plan.idempotency_key or "preview",
            operation=plan.operation, attempt_no=1, resend=False, settings=regulator_settings,
            mapping_version=result.version,
        )
        try:
            payload = build(upload=context)
            if payload is not None:
                shown.records = list(payload.records)
                shown.problems = [str(p) for p in validate_payload(report_type, payload)]
        except Exception as exc:
            shown.error = str(exc) if isinstance(exc, ConfigurationError) or exc.args else type(exc).__name__
        finally:
            db.session.rollback()
        result.plans.append(shown)
    return result
