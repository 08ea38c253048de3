"""What the key-data platform's document (keydata-key-indicators.txt 五, 六) fixes, shared by the plugin
and its sandbox regulator: field lists, the schemas, the CT08.00.002 dictionary, statDate arithmetic,
the SM4 profile and the body wrapping. Nothing here touches the database.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from core.crypto import CryptoError, SM4Profile, sm4_decrypt, sm4_encrypt
from core.errors import ConfigurationError
from core.schema import Schema, load_schema

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
DICTIONARY_FILE = HERE / "ct08_00_002.json"
DICTIONARY = "CT08.00.002"
STAT_DATE_FORMAT = "%Y/%m/%d %H:%M:%S"  # the document's YYYY/MM/DD HH24:MI:SS

# Report kinds (the part of the report type name after "keydata.") and the endpoint path the sandbox serves.
HOSPITAL_DAILY = "hospital_daily"
DEPT_DAILY = "dept_daily"
MONTHLY = "monthly"
KINDS = (HOSPITAL_DAILY, DEPT_DAILY, MONTHLY)

# 五.1 field table (order as in the document), plus totalPersonTimes which only its example shows.
HOSPITAL_DAILY_FIELDS = (
    "clinicPersonTimes", "emerPersonTimes", "feverPersonTimes", "clinicMediFreq", "presCount",
    "enterPersonTimes", "outPersonTimes",
)
TOTAL_PERSON_TIMES = "totalPersonTimes"

# 五.3: the figures a SQL query returns (proportions are computed, not queried).
MONTHLY_QUERIED_FIELDS = (
    "keyDiseaseCount", "aveCmi", "surgGrande3Num", "surgTotalNum", "surgGrade4Num", "downPersonTimes",
    "upPersonTimes", "downPriPersonTimes", "upPriPersonTimes", "nursbedNum", "psybedNum",
)
# Every indicator field of the monthly report in the document's order.
MONTHLY_FIELDS = (
    "keyDiseaseCount", "aveCmi", "surgGrade3Prop", "surgGrande3Num", "surgTotalNum", "surgGrade4Prop",
    "surgGrade4Num", "downPersonTimes", "upPersonTimes", "downPriPersonTimes", "upPriPersonTimes",
    "nursbedNum", "psybedNum",
)
# Proportion field -> (numerator field, denominator field), as 五.3 defines them.
PROPORTIONS = {
    "surgGrade3Prop": ("surgGrande3Num", "surgTotalNum"),
    "surgGrade4Prop": ("surgGrade4Num", "surgTotalNum"),
}
# Fields the document marks 必填 but whose notes let some hospitals leave them out:
GRADE3_FIELDS = ("surgGrade3Prop", "surgGrande3Num")  # 仅二级医疗机构需报送
GRADE4_FIELDS = ("surgGrade4Prop", "surgGrade4Num")  # 仅三级医疗机构需报送
PILOT_OPTIONAL_FIELDS = ("keyDiseaseCount", "aveCmi")  # 试点期间可暂时不报
# What a hospital may withhold with the "暂不报送" setting: the pilot-optional ones, and psybedNum whose
# 必填 column is empty. Withholding a field the document requires is refused before anything is sent.
WITHHOLDABLE_FIELDS = (*PILOT_OPTIONAL_FIELDS, "psybedNum")
CONDITIONAL_FIELDS = frozenset(GRADE3_FIELDS + GRADE4_FIELDS + PILOT_OPTIONAL_FIELDS)

DATA_FLAGS = {"new": "1", "update": "2", "delete": "3"}


@cache
def schema(kind: str) -> Schema:
    """The field table of one report kind, as the plugin and the sandbox both check it.

    The monthly table marks every indicator 必填, but its own notes exempt the grade-3 figures for
    tertiary hospitals, the grade-4 figures for secondary ones and two items during the pilot: those
    fields are relaxed to optional here, and the plugin decides per hospital which it sends.
    """
    loaded = load_schema(SCHEMAS / f"{kind}.json")
    if kind != MONTHLY:
        return loaded
    fields = tuple(dataclasses.replace(f, required=False) if f.name in CONDITIONAL_FIELDS else f
                   for f in loaded.fields)
    return Schema(loaded.name, loaded.title, fields, source=loaded.source, note=loaded.note,
                  interface=loaded.interface, constraints=loaded.constraints)


@cache
def dictionary_entries() -> tuple[dict[str, Any], ...]:
    """Every CT08.00.002 code of 六 with its meaning and parent code, as shipped with the plugin."""
    return tuple(json.loads(DICTIONARY_FILE.read_text("utf-8")))


def dictionary_file_codes() -> dict[str, str]:
    return {entry["code"]: entry["name"] for entry in dictionary_entries()}


# --- statDate: the last second of the period covered ------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Period:
    """The figures' window [start, end) in local wall-clock time and the statDate it is sent under."""

    start: datetime
    end: datetime
    stat_date: datetime

    @property
    def stat_date_text(self) -> str:
        return self.stat_date.strftime(STAT_DATE_FORMAT)


def _local_naive(slot: datetime) -> datetime:
    # Slots arrive aware in the report type's zone; arithmetic on wall-clock time (Shanghai has no DST).
    return slot.replace(tzinfo=None)


def hourly_period(slot: datetime) -> Period:
    """An hourly run: statDate is the second before the (floored) hour; figures are cumulative from
    00:00 of statDate's day. The 00:00 run therefore sends the whole previous day as 23:59:59."""
    end = _local_naive(slot).replace(minute=0, second=0, microsecond=0)
    stat_date = end - timedelta(seconds=1)
    start = stat_date.replace(hour=0, minute=0, second=0)
    return Period(start, end, stat_date)


def monthly_period(slot: datetime) -> Period:
    """A monthly run (due 00:00 on the 1st): last month, statDate its last second."""
    end = _local_naive(slot).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    stat_date = end - timedelta(seconds=1)
    start = stat_date.replace(day=1, hour=0, minute=0, second=0)
    return Period(start, end, stat_date)


def period_of_stat_date(kind: str, stat_date_text: str) -> Period:
    """The window a statDate stands for (for a re-send of an earlier slot)."""
    stat_date = parse_stat_date(stat_date_text)
    slot = stat_date + timedelta(seconds=1)
    return monthly_period(slot) if kind == MONTHLY else hourly_period(slot)


def parse_stat_date(text: str) -> datetime:
    return datetime.strptime(text, STAT_DATE_FORMAT)


def is_period_end(kind: str, stat_date: datetime) -> bool:
    """Is statDate the last second of an hour (hourly kinds) or of a month (monthly)?"""
    if (stat_date.minute, stat_date.second) != (59, 59):
        return False
    if kind != MONTHLY:
        return True
    return stat_date.hour == 23 and (stat_date + timedelta(seconds=1)).day == 1


# --- SM4 and the body -----------------------------------------------------------------------------

def sm4_profile(values: dict[str, str] | Any) -> SM4Profile:
    """The SM4 profile from settings (a core Settings or a plain dict with the same keys)."""
    get = values.get
    mode = get("sm4_mode") or "ECB"
    try:
        return SM4Profile(
            mode=mode,
            padding=get("sm4_padding") or "pkcs7",
            key_format=get("sm4_key_format") or "hex",
            output=get("sm4_output") or "hex",
            iv=(get("sm4_iv") or None) if mode == "CBC" else None,  # the IV setting means nothing in ECB
        )
    except CryptoError as exc:
        raise ConfigurationError(f"SM4 加密参数设置有误：{exc}") from None


def encode_document(document: dict[str, Any]) -> str:
    """The plaintext the platform decrypts: compact UTF-8 JSON, Chinese unescaped."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def encrypt_body(plaintext: str, key: str, profile: SM4Profile, wrapping: str, wrap_field: str) -> str:
    """The HTTP body: the SM4 ciphertext itself ("raw") or a JSON object carrying it in one field."""
    try:
        ciphertext = sm4_encrypt(plaintext.encode("utf-8"), key, profile)
    except CryptoError as exc:
        raise ConfigurationError(f"SM4 加密失败：{exc}") from None
    if wrapping == "json_field":
        return json.dumps({wrap_field or "data": ciphertext}, ensure_ascii=False)
    if wrapping in ("", "raw"):
        return ciphertext
    raise ConfigurationError(f"请求体封装方式「{wrapping}」无效，可选 raw / json_field")


def decrypt_body(body: str, key: str, profile: SM4Profile, wrapping: str, wrap_field: str) -> dict[str, Any]:
    """The regulator's side of ``encrypt_body``. Raises CryptoError or ValueError with a reason."""
    ciphertext = body.strip()
    if wrapping == "json_field":
        try:
            envelope = json.loads(ciphertext)
        except json.JSONDecodeError:
            raise ValueError(f"请求体不是 JSON，无法取出字段 {wrap_field}") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get(wrap_field), str):
            raise ValueError(f"请求体缺少密文字段 {wrap_field}")
        ciphertext = envelope[wrap_field]
    plaintext = sm4_decrypt(ciphertext, key, profile)
    try:
        document = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("解密结果不是 JSON（密钥或加密参数不符）") from None
    if not isinstance(document, dict):
        raise ValueError("解密结果不是 JSON 对象")
    return document
