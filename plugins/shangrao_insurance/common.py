"""What the client and the sandbox share: services, schemas, response codes, the SM2 profile from
settings, msgid rules, the exact size of an encrypted ``data`` field and batch cutting by that size.

The wire format (shangrao-insurance-supervision.txt 3.2): ``POST {base}/metadata/receive/{service}``
with ``{"infno", "msgid", "fixmedins_code", "fixmedins_name", "data"}``, where ``data`` is the JSON
array of rows encrypted with SM2 under the regulator's public key (profile per settings; the document
does not state order, 04 prefix or encoding, see specs/README.md).
"""

from __future__ import annotations

import json
import math
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.crypto import SM2Profile
from core.errors import ConfigurationError
from core.hook_types import Settings
from core.schema import Schema, load_schema

REGULATOR = "shangrao_insurance"
PLUGIN_PREFIX = "shangrao"
SCHEMA_DIR = Path(__file__).with_name("schemas")
SERVICES = ("fee_list_d", "setl_d", "mdtrt_d")
SERVICE_TITLES = {"fee_list_d": "费用明细", "setl_d": "结算信息", "mdtrt_d": "就诊信息"}
# The row field that names a record in held-back problems and the admin (never a patient identifier).
KEY_FIELDS = {"fee_list_d": "BKKP_SN", "setl_d": "SETL_ID", "mdtrt_d": "MDTRT_ID"}

CODE_LENGTH = 12  # 定点医药机构编号(12)
MSGID_RANDOM_LENGTH = 24  # + 随机24位字符串
MSGID_LENGTH = CODE_LENGTH + MSGID_RANDOM_LENGTH
_MSGID_ALPHABET = string.ascii_letters + string.digits
DEFAULT_MAX_DATA_CHARS = 50000  # 3.2.1: data varchar(50000)

# 3.2.4 响应码说明: code -> (描述, 解决方案).
RESPONSE_CODES: dict[str, tuple[str, str]] = {
    "200": ("成功", ""),
    "40000": ("通用业务异常", "根据提示信息进行数据检查"),
    "40001": ("业务数据序列化失败", "检查data节点是否是标准JSON格式或者加密不正确"),
    "40002": ("授权信息有误", "检查授权信息是否填充正确"),
    "40003": ("数据格式校验失败", "根据本文档检查入参格式、长度等规范"),
    "40004": ("服务类型不存在", "检查服务类型是否在服务清单中"),
    "40005": ("请勿重复提交", "检查msgid是否重复报送"),
    "40006": ("解密失败", "检查签名是否依据签名规范"),
    "50000": ("系统错误", ""),
}
SUCCESS_CODE = "200"
DUPLICATE_CODE = "40005"
RETRY_CODES = frozenset({"40000", "50000"})  # 通用业务异常 / 系统错误: transient on the regulator's side
REJECT_CODES = frozenset({"40001", "40002", "40003", "40004", "40006"})  # a person must fix something


def code_explanations() -> dict[str, str]:
    """Regulator.codes for the admin: '描述：解决方案'."""
    return {code: f"{text}：{fix}" if fix else text for code, (text, fix) in RESPONSE_CODES.items()}


def report_type_name(service: str) -> str:
    return f"{PLUGIN_PREFIX}.{service}"


def service_of(report_type_name: str) -> str:
    service = report_type_name.removeprefix(f"{PLUGIN_PREFIX}.")
    if service not in SERVICES:
        raise ConfigurationError(f"未知的上饶医保服务 {report_type_name}")
    return service


def schema_for(service: str) -> Schema:
    return load_schema(SCHEMA_DIR / f"{service}.json")


# --- settings -----------------------------------------------------------------------------------

def sm2_profile(settings: Settings | Mapping[str, str]) -> SM2Profile:
    """The SM2 wire profile from the regulator's settings (defaults: C1C3C2, 04 prefix, lower hex)."""
    get = settings.get
    prefix = (get("sm2_c1_prefix", "true") or "true").strip().lower()
    if prefix not in ("true", "false"):
        raise ConfigurationError(f"SM2 设置 sm2_c1_prefix 应为 true 或 false，实际为 {prefix!r}")
    try:
        return SM2Profile(order=get("sm2_order", "C1C3C2") or "C1C3C2", c1_prefix=prefix == "true",
                          format=get("sm2_format", "raw") or "raw", output=get("sm2_output", "hex") or "hex")
    except Exception as exc:  # CryptoError names the bad value
        raise ConfigurationError(f"SM2 加密设置有误：{exc}") from None


def positive_int(settings: Settings, key: str, default: int) -> int:
    raw = settings.get(key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"设置 {key} 应为正整数，实际为 {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"设置 {key} 应为正整数，实际为 {value}")
    return value


def institution_code(settings: Settings) -> str:
    code = settings.get("fixmedins_code").strip()
    if len(code) != CODE_LENGTH:
        raise ConfigurationError(
            f"定点医药机构编号 fixmedins_code 应为 {CODE_LENGTH} 位（msgid 以它开头），当前为 {len(code)} 位"
        )
    return code


def check_ready(settings: Settings, service: str) -> None:
    """Refuse to plan or send while a setting the regulator needs is missing."""
    missing = [label for key, label in (
        ("base_url", "接口地址 base_url"), ("fixmedins_name", "机构名称 fixmedins_name"),
        ("public_key", "监管平台 SM2 公钥 public_key"), (f"infno_{service}", f"接口类别代码 infno_{service}"),
    ) if not settings.get(key).strip()]
    if missing:
        raise ConfigurationError("上饶医保监管设置不完整，缺少：" + "、".join(missing))
    institution_code(settings)
    if len(settings.get(f"infno_{service}")) > 4:
        raise ConfigurationError(f"接口类别代码 infno_{service} 最长 4 位（文档 3.2.1 varchar(4)）")
    sm2_profile(settings)


def new_msgid(code: str) -> str:
    """12-character institution code + 24 random characters, drawn from ``secrets``."""
    if len(code) != CODE_LENGTH:
        raise ConfigurationError(f"定点医药机构编号应为 {CODE_LENGTH} 位")
    return code + "".join(secrets.choice(_MSGID_ALPHABET) for _ in range(MSGID_RANDOM_LENGTH))


def load_dictionaries(settings: Settings) -> dict[str, dict[str, str]]:
    """Optional code dictionaries (Jiangxi platform codes the document refers to but does not include):
    a JSON file ``{"GEND": {"1": "男", ...}, ...}``. Without it code fields are checked for length only."""
    path = settings.get("dictionaries_path").strip()
    if not path:
        return {}
    try:
        raw = json.loads(Path(path).read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"无法读取代码字典文件 {path}：{exc}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigurationError(f"代码字典文件 {path} 应为 {{字典名: {{代码: 含义}}}}")
    return {str(name): {str(k): str(v) for k, v in codes.items()} for name, codes in raw.items()}


# --- rows and sizes -----------------------------------------------------------------------------

def normalise_value(value: Any) -> Any:
    """A database value as it goes on the wire: decimals as JSON numbers, times in the document's
    formats (datetime yyyy-MM-dd HH:mm:ss, date yyyy-MM-dd)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 \
            else float(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    """The plaintext of ``data``: the rows as a compact JSON array in UTF-8. Planning and sending use
    this one function, so the size computed when cutting batches is the size that is encrypted."""
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def row_size(row: dict[str, Any]) -> int:
    return len(encode_rows([row])) - 2  # without the enclosing brackets


def _der_length_size(n: int) -> int:
    return 1 if n < 0x80 else 1 + (n.bit_length() + 7) // 8


def ciphertext_chars(plaintext_bytes: int, profile: SM2Profile) -> int:
    """Characters of the encrypted ``data`` for a plaintext of this many bytes.

    Exact for the raw formats (C1 is 64 bytes, or 65 with 04; C3 32; C2 as long as the plaintext).
    For ASN.1 (GM/T 0009) the INTEGERs x and y vary by a byte or two with the random point, so this is
    the largest possible size: a batch cut by it always fits.
    """
    n = plaintext_bytes
    if profile.format == "asn1":
        content = 2 * (2 + 33) + (2 + 32) + (1 + _der_length_size(n) + n)
        total = 1 + _der_length_size(content) + content
    else:
        total = (65 if profile.c1_prefix else 64) + 32 + n
    return 2 * total if profile.output in ("hex", "HEX") else 4 * math.ceil(total / 3)


def max_plaintext_bytes(max_chars: int, profile: SM2Profile) -> int:
    """The largest plaintext whose ciphertext fits in ``max_chars`` (0 if none does)."""
    lo, hi = 0, max_chars  # the ciphertext is never shorter than the plaintext
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ciphertext_chars(mid, profile) <= max_chars:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class Batch:
    start: int  # index of the first row in the input
    rows: list[dict[str, Any]]
    plaintext_bytes: int


@dataclass
class Oversized:
    index: int
    row: dict[str, Any]
    ciphertext_chars: int


def cut_batches(rows: Iterable[dict[str, Any]], profile: SM2Profile, max_chars: int) \
        -> tuple[list[Batch], list[Oversized]]:
    """Cut rows (in order) into batches whose encrypted ``data`` is at most ``max_chars`` characters,
    greedily: as many rows as fit. A row that does not fit even alone is returned as oversized."""
    limit = max_plaintext_bytes(max_chars, profile)
    batches: list[Batch] = []
    oversized: list[Oversized] = []
    current: Batch | None = None
    for index, row in enumerate(rows):
        size = row_size(row)
        if 2 + size > limit:
            oversized.append(Oversized(index, row, ciphertext_chars(2 + size, profile)))
            continue
        if current is not None and current.plaintext_bytes + 1 + size <= limit:
            current.rows.append(row)
            current.plaintext_bytes += 1 + size
            continue
        current = Batch(start=index, rows=[row], plaintext_bytes=2 + size)
        batches.append(current)
    return batches, oversized
