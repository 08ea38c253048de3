"""Masking of patient identifiers (names, ID numbers, phone numbers, addresses) in the UI and logs."""

from __future__ import annotations

import re
from typing import Any

# Field names that carry patient identifiers across the regulators' tables.
PATIENT_FIELDS = frozenset(
    {
        "psn_name", "certno", "tel", "addr", "mdtrt_cert_no", "card_sn", "psn_no_name", "name",
        "id_number", "phone", "address", "insu_card_no", "patient_name", "coner_name", "conertel",
    }
)

_ID = re.compile(r"\b(\d{6})\d{8}(\d{3}[\dXx])\b")
_PHONE = re.compile(r"\b(1\d{2})\d{4}(\d{4})\b")


def mask_name(name: str) -> str:
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1) if len(name) > 1 else "*"


def mask_identifier(value: str) -> str:
    """ID numbers, card numbers, phones: keep a short head and tail only."""
    value = str(value)
    if len(value) <= 4:
        return "*" * len(value)
    head = 3 if len(value) >= 11 else 1
    return value[:head] + "*" * (len(value) - head - 4) + value[-4:]


def mask_field(field: str, value: Any) -> Any:
    if value in (None, ""):
        return value
    key = field.lower()
    if key in ("psn_name", "name", "patient_name", "coner_name"):
        return mask_name(str(value))
    if key in ("addr", "address"):
        text = str(value)
        return text[:3] + "****" if len(text) > 3 else "****"
    return mask_identifier(str(value))


def mask_record(record: Any, fields: frozenset[str] = PATIENT_FIELDS) -> Any:
    """A copy of a JSON-like value with every patient field masked (recursively)."""
    lowered = {f.lower() for f in fields}
    if isinstance(record, dict):
        return {
            k: mask_field(k, v) if k.lower() in lowered and not isinstance(v, dict | list) else mask_record(v, fields)
            for k, v in record.items()
        }
    if isinstance(record, list):
        return [mask_record(v, fields) for v in record]
    return record


def mask_text(text: str | None) -> str | None:
    """Mask ID-number and mobile-phone shaped numbers in free text (logs, error messages)."""
    if not text:
        return text
    text = _ID.sub(lambda m: m.group(1) + "********" + m.group(2), text)
    return _PHONE.sub(lambda m: m.group(1) + "****" + m.group(2), text)
