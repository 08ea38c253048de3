"""Forms that carry patient identifiers to a user whose role may not see them.

Such a user gets the form with the identifiers masked, plus a sealed copy of the real values
(``core.settings.secret_box``, bound to the user and valid for a few hours) in a hidden field. When the
form comes back, a field still showing its mask is replaced by the sealed original; a field the user
typed over keeps what they typed. So an operator can file for a patient the HIS or the 1101 lookup
found without ever seeing the full ID number in the page (or in its source).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from flask import g

from core.errors import ConfigurationError
from core.masking import mask_field

SEALED_FIELD = "sealed_identifiers"
SEAL_LIFETIME_SECONDS = 4 * 3600


def _user_id() -> int | None:
    user = getattr(g, "user", None)
    return user.id if user is not None else None


def mask_values(values: Mapping[str, Any], fields: Iterable[str]) -> tuple[dict[str, Any], str]:
    """(values with ``fields`` masked, the sealed originals for the hidden field)."""
    from core.settings import secret_box

    fields = set(fields)
    originals = {k: str(v) for k, v in values.items() if k in fields and v not in (None, "")}
    masked = {k: (mask_field(k, v) if k in originals else v) for k, v in values.items()}
    if not originals:
        return masked, ""
    sealed = secret_box().seal(json.dumps({"u": _user_id(), "t": int(time.time()), "v": originals},
                                          ensure_ascii=False))
    return masked, sealed


def restore_values(submitted: Mapping[str, Any], sealed: Iterable[str]) -> dict[str, Any]:
    """``submitted`` with every still-masked field put back to its sealed original. ``sealed`` are the
    form's hidden values, oldest first (a later lookup may add its own)."""
    from core.settings import secret_box

    values = dict(submitted)
    values.pop(SEALED_FIELD, None)
    for token in sealed:
        if not token:
            continue
        try:
            content = json.loads(secret_box().open(token))
        except (ConfigurationError, ValueError):
            continue
        if content.get("u") != _user_id() or time.time() - content.get("t", 0) > SEAL_LIFETIME_SECONDS:
            continue
        for field, original in (content.get("v") or {}).items():
            if field in values and values[field] == mask_field(field, original):
                values[field] = original
    return values
