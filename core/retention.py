"""Retention: after ``retention_days`` (platform flag, default 180) an attempt's plaintext, wire body
and answer — the patient data it carried — are removed; its metadata (times, URL, masked headers,
HTTP status, code, message, outcome) stays, and ``Attempt.pruned_at`` records when. The upload's
frozen rows stay too: a retry or a re-send of an old upload still needs them.

Run by ``baosong prune [--dry-run]`` and once a day after the sweep (``prune_if_due``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from core import clock, settings
from core.db import db
from core.models import Attempt

log = logging.getLogger("baosong.retention")
DAILY_KEY = "baosong:retention:last_run"
RETRY_AFTER_FAILURE_S = 3600  # a prune that failed is tried again within the hour, not the next day
BATCH = 1000  # attempts per transaction: a first prune of a big ledger does not lock it for long
PRUNED_BODIES = ("plaintext", "wire_body", "response_body")


def _prunable(before: datetime):
    bodies = sa.or_(*(getattr(Attempt, name).is_not(None) for name in PRUNED_BODIES))
    return sa.and_(Attempt.started_at < before, Attempt.pruned_at.is_(None), bodies)


def prune(*, now: datetime | None = None, days: int | None = None, dry_run: bool = False) -> dict:
    """Remove bodies of attempts started more than ``days`` ago. Returns {"attempts", "days", "before"}
    (``before`` in local time)."""
    days = days if days is not None else settings.flag_int("retention_days")
    moment = now or clock.now()
    before = clock.utc_naive(moment - timedelta(days=days))
    shown_before = clock.from_db(before).astimezone(clock.default_timezone())
    if dry_run:
        count = db.session.scalar(sa.select(sa.func.count(Attempt.id)).where(_prunable(before)))
        return {"attempts": count or 0, "days": days, "before": shown_before}
    total = 0
    stamp = clock.utc_naive(moment)
    while True:
        ids = list(db.session.scalars(sa.select(Attempt.id).where(_prunable(before)).order_by(Attempt.id)
                                      .limit(BATCH)))
        if not ids:
            break
        db.session.execute(sa.update(Attempt).where(Attempt.id.in_(ids))
                           .values(**{name: None for name in PRUNED_BODIES}, pruned_at=stamp))
        db.session.commit()
        total += len(ids)
    if total:
        log.info("retention: removed the bodies of %d attempts started before %s", total, shown_before)
    return {"attempts": total, "days": days, "before": shown_before}


def prune_if_due(conn=None) -> dict | None:
    """The daily run: the first caller of the day (any worker's sweep) prunes; others skip."""
    from core.health import redis_connection

    conn = conn or redis_connection()
    if not conn.set(DAILY_KEY, clock.now().isoformat(), nx=True, ex=24 * 3600):
        return None
    try:
        return prune()
    except Exception:
        db.session.rollback()
        conn.set(DAILY_KEY, "failed " + clock.now().isoformat(), ex=RETRY_AFTER_FAILURE_S)
        raise
