"""Faults a sandbox regulator injects on request, so tests can check that delivery holds when the
network and the regulator misbehave. Every plugin's sandbox uses this one plan.

A fault names what happens and when, relative to storing what the request carried:

    error_before_store     HTTP 500, nothing stored
    drop_before_store      the request is read, then the connection is closed; nothing stored
    error_after_store      stored, then HTTP 500 (the answer is lost)
    drop_after_store       stored, then the connection is closed without an answer
    truncated_after_store  stored, then the answer's body is cut short (Content-Length not met)
    slow_after_store       stored, then the answer waits ``seconds`` (beyond the client's timeout)

Rules (``POST /<sandbox>/_sandbox/faults {"inject": [rule, ...]}``), tried in order, the first that
strikes applies to the request:

    {"fault": "drop_after_store", "count": 3}           the next 3 requests
    {"fault": "error_after_store", "p": 0.3, "seed": 7}  each request with probability 0.3 (seeded)
    optional "path": "dept_daily"                        only requests whose path contains it
    optional "seconds": 3                                for slow_after_store (default 5)

``{"inject": []}`` or ``{"reset": true}`` clears them. ``struck`` counts what was injected.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Response

FAULTS = ("error_before_store", "drop_before_store", "error_after_store", "drop_after_store",
          "truncated_after_store", "slow_after_store")
BEFORE_STORE = frozenset({"error_before_store", "drop_before_store"})


@dataclass
class Rule:
    fault: str
    count: int | None = None
    p: float | None = None
    path: str = ""
    seconds: float = 5.0
    random: random.Random | None = None

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"fault": self.fault}
        if self.count is not None:
            shown["count"] = self.count
        if self.p is not None:
            shown["p"] = self.p
        if self.path:
            shown["path"] = self.path
        if self.fault == "slow_after_store":
            shown["seconds"] = self.seconds
        return shown


def parse_rule(raw: dict[str, Any]) -> Rule:
    """One rule from JSON; ValueError names what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("每条故障规则应为对象")
    unknown = set(raw) - {"fault", "count", "p", "seed", "path", "seconds"}
    if unknown:
        raise ValueError(f"未知的故障规则参数：{', '.join(sorted(unknown))}")
    fault = raw.get("fault")
    if fault not in FAULTS:
        raise ValueError(f"fault 应为 {', '.join(FAULTS)} 之一")
    count, p = raw.get("count"), raw.get("p")
    if (count is None) == (p is None):
        raise ValueError("每条故障规则需要 count（接下来 N 次）或 p（概率）之一")
    if count is not None and (not isinstance(count, int) or count < 0):
        raise ValueError("count 应为非负整数")
    if p is not None and not (isinstance(p, int | float) and 0 <= p <= 1):
        raise ValueError("p 应在 0 到 1 之间")
    return Rule(fault=fault, count=count, p=None if p is None else float(p), path=str(raw.get("path") or ""),
                seconds=float(raw.get("seconds", 5.0)),
                random=random.Random(raw.get("seed")) if p is not None else None)


class FaultPlan:
    """The rules in force for one sandbox; shared by its request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.struck: Counter[str] = Counter()

    def configure(self, raw_rules: list[dict[str, Any]] | dict[str, Any]) -> None:
        rules = [parse_rule(r) for r in (raw_rules if isinstance(raw_rules, list) else [raw_rules])]
        with self.lock:
            self.rules = rules

    def clear(self) -> None:
        with self.lock:
            self.rules = []

    def draw(self, path: str) -> Rule | None:
        """The fault for this request, if one strikes (a counted rule is used up)."""
        with self.lock:
            for rule in self.rules:
                if rule.path and rule.path not in path:
                    continue
                if rule.count is not None:
                    if rule.count <= 0:
                        continue
                    rule.count -= 1
                elif rule.random.random() >= rule.p:
                    continue
                self.struck[rule.fault] += 1
                return rule
        return None

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {"inject": [r.as_dict() for r in self.rules], "struck": dict(self.struck)}


def before_store(rule: Rule | None, environ: dict) -> Response | None:
    """The answer for a fault that strikes before anything is stored (None: go on and store)."""
    if rule is None or rule.fault not in BEFORE_STORE:
        return None
    if rule.fault == "error_before_store":
        return plain_500()
    return dropped(environ)


def after_store(rule: Rule | None, environ: dict, answer: Response) -> Response:
    """What the client gets once the record is stored: the answer, or the fault's replacement."""
    if rule is None or rule.fault in BEFORE_STORE:
        return answer
    if rule.fault == "error_after_store":
        return plain_500()
    if rule.fault == "drop_after_store":
        return dropped(environ)
    if rule.fault == "slow_after_store":
        time.sleep(rule.seconds)
        return answer
    return truncated(environ, answer)


def plain_500() -> Response:
    return Response("<html><body><h1>500 Internal Server Error</h1></body></html>", status=500,
                    content_type="text/html")


def _close(environ: dict) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is None:
        raise RuntimeError("沙箱故障需要 werkzeug 服务器（environ 中没有 werkzeug.socket）")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def dropped(environ: dict) -> Response:
    """Close the connection without answering: the client sees a disconnect (RemoteDisconnected)."""
    _close(environ)
    return Response(b"", status=200)  # never reaches the client; werkzeug ignores the broken pipe


def truncated(environ: dict, answer: Response) -> Response:
    """Send the status, headers (the full Content-Length) and half the body, then close."""
    body = answer.get_data()

    def half_then_close():
        yield body[: max(1, len(body) // 2)]
        _close(environ)

    cut = Response(half_then_close(), status=answer.status_code, content_type=answer.content_type)
    cut.headers["Content-Length"] = str(len(body) + 10)
    return cut
