"""Shangrao's resend strategy: the msgid is the only idempotency means (document 3.2.4: 40005
请勿重复提交 "检查msgid是否重复报送"), and the document does not say whether a refused msgid is taken.

Every attempt of a batch sends the same msgid (fixed at planning) until the strategy retires it::

    answer   earlier attempt with this msgid may have landed*   ->
    200      any                                                success
    40005    yes                                                success: "already received" (ours)
    40005    no (first, or only certain refusals before)        a real collision (another message, or a
                                                                platform that keeps refused msgids):
                                                                follow-up with a new msgid now
    others   -                                                  plugin.parse_response's table

    * may have landed: delivery "maybe_delivered" / "unknown" (a dead worker), or answered without a
      definite refusal (5xx, 40000/50000, garbage).

The msgid in use and the attempt it started at are kept in ``result`` (``shangrao_msgid``,
``shangrao_msgid_from``), so manual and bulk retries continue with it.
"""

from __future__ import annotations

from typing import Any

from core.hook_types import Outcome, UploadContext

from . import common

MSGID = "shangrao_msgid"
MSGID_FROM = "shangrao_msgid_from"  # the first attempt number that sent the current msgid
RETIRED = "shangrao_retired_msgids"
_LANDED_DELIVERY = {"maybe_delivered", "unknown"}


def msgid(upload: UploadContext) -> str:
    return (upload.result or {}).get(MSGID) or upload.idempotency_key


def may_have_landed(attempt: Any) -> bool:
    delivery = getattr(attempt, "delivery", None)
    if delivery in _LANDED_DELIVERY:
        return True
    if delivery != "answered":  # "not_sent", or None: it stopped before sending
        return False
    return getattr(attempt, "outcome", None) in ("success", "retry", "unknown")


def current_msgid_may_have_landed(upload: UploadContext) -> bool:
    """Did an earlier attempt that sent the current msgid possibly reach the regulator?"""
    history = getattr(upload, "history", None)
    if history is None:  # a core without attempt history: its resend flag is all it knows
        return bool(upload.resend)
    since = int((upload.result or {}).get(MSGID_FROM) or 0)
    if not since and getattr(upload, "delivery_uncertain", False):
        return True
    return any(may_have_landed(a) for a in history if a.number >= since)


def on_duplicate(upload: UploadContext, message: str) -> Outcome:
    """40005 for the msgid this attempt sent."""
    sent = msgid(upload)
    if current_msgid_may_have_landed(upload):
        return Outcome("success", code=common.DUPLICATE_CODE, message=f"重发的同一批次已被接收（{message}）",
                       result={"msgid": sent, "duplicate": True})
    fresh = common.new_msgid(sent[: common.CODE_LENGTH])
    retired = [*(upload.result or {}).get(RETIRED, []), sent]
    return Outcome(
        "retry", code=common.DUPLICATE_CODE, follow_up=True, search_keys=[fresh],
        message=f"{message}：msgid {sent} 此前未由本批次送达（与其它报文冲突），改用新 msgid {fresh} 重发",
        result={MSGID: fresh, MSGID_FROM: upload.attempt_no + 1, RETIRED: retired},
    )
