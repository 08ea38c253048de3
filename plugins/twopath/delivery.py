"""Two-channel resend strategy: a filing (2511 / 2503) has no idempotency key the platform honours
(each call carries a fresh msgid), and a platform may accept an overlapping filing as a second
application. So the platform is asked before any filing that might repeat an earlier one::

    this upload, or an earlier submission of the same filing, may have reached the platform*
        -> query (5311 / 5301) first:
              the platform holds the filing  -> success without filing (code QUERY_FIRST)
              it does not                     -> file
              the query itself fails          -> retry later, never file blind
    nothing of this filing can have reached it -> file

    * may have reached it: delivery "maybe_delivered" / "unknown" (dropped connection, timeout,
      truncated answer, dead worker), or answered without a definite refusal (5xx, garbage), or the
      ledger's delivery_uncertain; the submission's ``query_first`` flag.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.db import db
from core.hook_types import UploadContext
from core.models import Attempt, Upload, UploadStatus

FILING_INTERFACES = ("2511", "2503")
_LANDED_DELIVERY = {"maybe_delivered", "unknown"}


def may_have_landed(attempt: Any) -> bool:
    """Could this attempt have filed without our knowing? (A success is known: it gave an application
    number; a definite refusal filed nothing.)"""
    delivery = getattr(attempt, "delivery", None)
    if delivery in _LANDED_DELIVERY:
        return True
    if delivery != "answered":  # "not_sent", or None: it stopped before sending
        return False
    return getattr(attempt, "outcome", None) in ("retry", "unknown")


def this_upload_may_have_landed(upload: UploadContext) -> bool:
    if upload.resend or getattr(upload, "delivery_uncertain", False):
        return True
    return any(may_have_landed(a) for a in getattr(upload, "history", ()))


def earlier_submission_may_have_landed(upload: UploadContext, filing_id: Any) -> bool:
    """Another upload filing the same application (an earlier submission, not known to have succeeded:
    a success gave an application number, and a refiling after a rejection is a new application)."""
    if filing_id is None:
        return False
    earlier = [u for u in db.session.execute(
        sa.select(Upload).where(Upload.report_type == upload.report_type.name, Upload.id != upload.id,
                                Upload.business_key.like(f"filing-{filing_id}-submit-%"),
                                Upload.status != UploadStatus.SUCCEEDED)
    ).scalars()]
    if any(u.delivery_uncertain for u in earlier):
        return True
    ids = [u.id for u in earlier]
    if not ids:
        return False
    attempts = db.session.execute(sa.select(Attempt).where(Attempt.upload_id.in_(ids))).scalars()
    return any(may_have_landed(a) for a in attempts)


def must_query_first(upload: UploadContext, infno: str, row: dict[str, Any]) -> bool:
    if infno not in FILING_INTERFACES:
        return False
    return bool(row.get("query_first")) or this_upload_may_have_landed(upload) \
        or earlier_submission_may_have_landed(upload, row.get("filing_id"))


# A revoke (2512 / 2504) re-sent after a lost answer is refused ("已撤销或已审核") when the lost one did
# arrive: ask the platform whether the filing is still there before calling it a refusal.
REVOKE_INTERFACES = {"2512": "2511", "2504": "2503"}


def submitted_row(upload: UploadContext, filing_id: Any) -> dict[str, Any] | None:
    """The row of the filing's succeeded submission: what the platform was given."""
    filing_type = f"twopath.{REVOKE_INTERFACES[upload.report_type.name.removeprefix('twopath.')]}"
    done = db.session.execute(
        sa.select(Upload).where(Upload.report_type == filing_type, Upload.status == UploadStatus.SUCCEEDED,
                                Upload.business_key.like(f"filing-{filing_id}-submit-%"))
        .order_by(Upload.id.desc()).limit(1)
    ).scalar_one_or_none()
    return (done.rows or [None])[0] if done is not None else None


def revocation_took_effect(upload: UploadContext, infno: str, row: dict[str, Any]) -> bool:
    """After an attempt of this revoke may have landed, a refusal is checked with 5311 / 5301: the
    filing no longer listed means the earlier attempt revoked it. Unknown (no submission found): False."""
    from plugins.twopath import client

    if infno not in REVOKE_INTERFACES or not this_upload_may_have_landed(upload):
        return False
    submitted = submitted_row(upload, row.get("filing_id"))
    if submitted is None:
        return False
    return client.query_before_resend(upload, REVOKE_INTERFACES[infno], submitted) is None
