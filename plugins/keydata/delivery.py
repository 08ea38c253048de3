"""keydata's resend strategy: which dataFlag to send, and what an answer means, whichever way the
platform reads its document (it defines only 1 新增 / 2 更新 / 3 删除 and "200 成功，非200 失败").

The ledger's knowledge decides (``UploadContext.history``, ``delivery_uncertain``, ``result``), so a
retry by the machine, by a person or in bulk runs the same steps::

    next flag:  withdrawal -> 3;  the strategy's own decision (result["keydata_next_flag"]) -> it;
                correction (operation "update") -> 2;  an earlier attempt may have landed -> 2;  else 1

    sent  answer                          uncertain*  ->
    1|2   200                             any         success (next flag 2: the platform holds it)
    1|2   retry (5xx, lost, garbage)      any         retry; next flag 2 unless it certainly never left
    2     "不存在" (update does not insert) any         follow-up: send 1 now (its own attempt)
    1     "重复" (already held)             yes         delivered; follow-up 2 unless the figures that
                                                      may have landed are known to be ours
    1     "重复"                            no          follow-up 2: the platform holds another record for
                                                      this statDate (an earlier upload of the slot): ours wins
    2     other refusal (first of round)  any         follow-up: send 1 now. The document defines no error
                                                      codes or words, so "not held" may come in words we
                                                      cannot read; a 1 is safe either way
    1|2   other refusal after that        any         reject (both flags refused); the next retry starts
                                                      again from the top
    3     200                             any         success
    3     "不存在"                          yes         success (the lost withdrawal did arrive)
    3     "不存在"                          no          reject (nothing of ours was held)
    any   other non-200 / HTTP 4xx        any         reject with the platform's message (next flag kept,
                                                      so a retry after the fix re-runs this table)

    * uncertain: some earlier attempt of this upload may have stored the record.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from typing import Any

from core.hook_types import Outcome, Response, UploadContext

NEW, UPDATE, DELETE = "1", "2", "3"
NEXT_FLAG = "keydata_next_flag"  # result key: the flag the strategy decided the next attempt sends
LANDED_DIGEST = "keydata_landed_digest"  # result key: digest of figures that may be (or are) held
UPDATE_REFUSED = "keydata_update_refused"  # result key: a 2 was refused in words we could not read; 1 follows

_NOT_HELD = re.compile(r"不存在|没有已上报|无此|未找到|找不到|查无|not\s*found|not\s*exist", re.I)
_DUPLICATE = re.compile(r"重复|已存在|已上报|已经上报|已有|already|duplicate|exist", re.I)
_LANDED_DELIVERY = {"maybe_delivered", "unknown"}


def may_have_landed(attempt: Any) -> bool:
    """Could this earlier attempt have stored the record? Anything but a certain "never left" or a
    definite refusal."""
    delivery = getattr(attempt, "delivery", None)
    if delivery in _LANDED_DELIVERY:
        return True
    if delivery != "answered":  # "not_sent", or None: it stopped before sending
        return False
    return getattr(attempt, "outcome", None) in ("success", "retry", "unknown")


def uncertain(upload: UploadContext) -> bool:
    """Some earlier attempt of this upload may have stored the record."""
    if upload.resend and upload.operation != "update":  # a correction is always a "resend"
        return True
    return bool(getattr(upload, "delivery_uncertain", False)) \
        or any(may_have_landed(a) for a in getattr(upload, "history", ()))


def flag_to_send(upload: UploadContext) -> str:
    if upload.operation == "delete":
        return DELETE
    decided = (upload.result or {}).get(NEXT_FLAG)
    if decided in (NEW, UPDATE):
        return decided
    if upload.operation == "update" or uncertain(upload):
        return UPDATE
    return NEW


def digest(rows: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def names_held_or_not(message: str) -> bool:
    """Does a platform's message say the record is held ("重复") or not ("不存在")?"""
    return bool(_NOT_HELD.search(message) or _DUPLICATE.search(message))


def answer_kind(outcome: Outcome, response: Response) -> str:
    """"ok", "retry", "not_held", "duplicate" or "reject" for a classified answer."""
    if outcome.kind == "success":
        return "ok"
    if outcome.kind == "retry":
        return "retry"
    text = f"{outcome.message} {outcome.code or ''}"
    if _NOT_HELD.search(text) or (response.status == 404 and outcome.code in (None, "404", "HTTP 404")):
        return "not_held"
    if _DUPLICATE.search(text) or outcome.code in ("409", "HTTP 409"):
        return "duplicate"
    return "reject"


def _certainly_not_sent(response: Response) -> bool:
    return getattr(response, "transport", None) == "not_sent"


def decide(upload: UploadContext, response: Response, outcome: Outcome) -> Outcome:
    """Apply the table above to one classified answer (``outcome`` from ``plugin.classify``)."""
    sent = flag_to_send(upload)
    kind = answer_kind(outcome, response)
    ours = digest(upload.rows)
    landed_before = uncertain(upload)
    result = dict(outcome.result)
    refused_update = bool((upload.result or {}).get(UPDATE_REFUSED))
    new_round = {UPDATE_REFUSED: None} if refused_update else {}  # an answer other than a refusal

    def with_state(o: Outcome, **state: Any) -> Outcome:
        return replace(o, result={**o.result, **state})

    if sent == DELETE:
        if kind == "not_held" and landed_before:
            return Outcome("success", code=outcome.code, result=result,
                           message=f"平台已无此记录（前次撤回已生效）：{outcome.message}")
        return outcome
    if kind == "ok":
        return with_state(outcome, **{NEXT_FLAG: UPDATE, LANDED_DIGEST: ours, **new_round})
    if kind == "retry":
        state = {} if _certainly_not_sent(response) else {NEXT_FLAG: UPDATE, LANDED_DIGEST: ours, **new_round}
        return with_state(outcome, **state)
    if kind == "reject":
        if sent == UPDATE and not refused_update:
            # The document defines no error codes or words: "not held" may come in words we cannot read.
            # A 1 is safe either way (held: answered duplicate, or overwritten with the same figures).
            return with_state(follow_up(outcome, NEW, f"平台拒绝了 dataFlag=2（{outcome.message}），"
                                                       f"可能是没有该记录；改以 dataFlag=1 新增"),
                              **{UPDATE_REFUSED: True})
        if refused_update:
            # Both refused: a real rejection. The next retry (after the fix) starts from the top again.
            return replace(outcome, message=f"{outcome.message}（dataFlag=2 与 dataFlag=1 均被拒绝）",
                           result={**result, NEXT_FLAG: None, UPDATE_REFUSED: None})
        return outcome
    if sent == UPDATE and kind == "not_held":
        return follow_up(outcome, NEW, f"平台没有该记录（更新不新增）：{outcome.message}；改以 dataFlag=1 新增")
    if sent == NEW and kind == "duplicate":
        held = (upload.result or {}).get(LANDED_DIGEST)
        if landed_before and held == ours:
            return Outcome("success", code=outcome.code, result={**result, NEXT_FLAG: UPDATE, **new_round},
                           message=f"前次发送已送达，平台已有该记录：{outcome.message}")
        why = ("前次发送可能已送达，平台已有该记录" if landed_before
               else "平台已有该统计日期的记录（此前的上报）")
        return follow_up(outcome, UPDATE, f"{why}：{outcome.message}；以 dataFlag=2 更新为本次数据")
    return outcome


def follow_up(outcome: Outcome, flag: str, message: str) -> Outcome:
    """Another attempt right away, sending ``flag`` (recorded as its own attempt by the core)."""
    return Outcome("retry", code=outcome.code, message=message, result={**outcome.result, NEXT_FLAG: flag},
                   follow_up=True)
