"""The wire protocol the document does define (1.3, 1.4, 2.1.2), shared by the client and the sandbox.

Headers ``service`` (the interface number), ``appid``, ``randomstr`` (at most 32 characters; ours are
32 hex characters from ``secrets``) and ``sign``; body ``{"uptime": "YYYY-MM-DD HH24:MI:SS", "data":
"<the rows as a JSON array, serialised to a string>"}``; answer ``{"code": "0"}`` on success, otherwise
``code`` and ``message``. The large-attachment interface (A0001) is a multipart form with every field
at the top level and ``data`` = "" in the signature (2.1.2 特殊说明).

Sizes: a batch holds at most ``batch_size`` rows (1.3: 100 recommended, 10,000 at most) and its body
at most 30 MB (修改记录 1.1.8, not for A0001). JSON escaping is per character, so the body size of a
batch is the sum of its rows' escaped sizes plus a constant, and batches are cut by it exactly.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SUCCESS = "0"
SYSTEM_ERROR = "SYSTEM_ERROR"  # 1.4 失败示例: {"code": "SYSTEM_ERROR", "message": "系统错误"}
HARD_MAX_ROWS = 10000  # 1.3 item 4 / 修改记录 1.1.8
DEFAULT_BATCH_ROWS = 100  # 1.3 item 4: 建议一次传输不超过 100 条
HARD_MAX_BYTES = 30 * 1024 * 1024  # 修改记录 1.1.8: 普通接口单次请求数据限制为 30MB
RANDOMSTR_MAX = 32
UPTIME_FORMAT = "%Y-%m-%d %H:%M:%S"
HEADER_NAMES = ("service", "appid", "randomstr", "sign")


def new_randomstr() -> str:
    return secrets.token_hex(RANDOMSTR_MAX // 2)


def uptime(moment: datetime) -> str:
    return moment.strftime(UPTIME_FORMAT)


def encode_data(rows: list[dict[str, Any]]) -> str:
    """The ``data`` string: the rows as a compact JSON array."""
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def encode_body(uptime_text: str, data: str) -> str:
    return json.dumps({"uptime": uptime_text, "data": data}, ensure_ascii=False, separators=(",", ":"))


def sign_values(service: str, appid: str, randomstr: str, uptime_text: str, data: str) -> dict[str, str]:
    return {"service": service, "appid": appid, "randomstr": randomstr, "uptime": uptime_text, "data": data}


_EMPTY_BODY_BYTES = len(encode_body("0000-00-00 00:00:00", "[]").encode("utf-8"))


def row_body_bytes(row: dict[str, Any]) -> int:
    """What one row adds to the body: its JSON, escaped again inside the ``data`` string."""
    return len(json.dumps(encode_data([row])[1:-1], ensure_ascii=False).encode("utf-8")) - 2


def body_bytes(rows: list[dict[str, Any]]) -> int:
    return _EMPTY_BODY_BYTES + sum(row_body_bytes(r) for r in rows) + max(len(rows) - 1, 0)


@dataclass
class Cut:
    batches: list[list[int]]  # indexes into the input, in order
    oversized: list[tuple[int, int]]  # (index, bytes) of rows too big for a request on their own


def cut_batches(rows: Iterable[dict[str, Any]], max_rows: int, max_bytes: int | None) -> Cut:
    """Greedy, in order: as many rows as fit both limits."""
    cut = Cut([], [])
    size = 0
    for index, row in enumerate(rows):
        extra = row_body_bytes(row)
        if max_bytes is not None and _EMPTY_BODY_BYTES + extra > max_bytes:
            cut.oversized.append((index, _EMPTY_BODY_BYTES + extra))
            continue
        current = cut.batches[-1] if cut.batches else None
        if current is not None and len(current) < max_rows and (
                max_bytes is None or size + 1 + extra <= max_bytes):
            current.append(index)
            size += 1 + extra
        else:
            cut.batches.append([index])
            size = _EMPTY_BODY_BYTES + extra
    return cut


def answer_code(body: str) -> tuple[str | None, str]:
    """(code, message) of an answer, or (None, "") when it is not the documented JSON."""
    try:
        answer = json.loads(body)
    except (TypeError, ValueError):
        return None, ""
    if not isinstance(answer, dict) or answer.get("code") is None or isinstance(answer.get("code"), bool):
        return None, ""
    message = answer.get("message")
    return str(answer["code"]).strip(), message if isinstance(message, str) else ""
