"""Housekeeping run after every sweep (core.scheduler.sweep_job, once a minute): alert evaluation and
the daily retention prune. Each part fails alone, logged, never the sweep."""

from __future__ import annotations

import logging

log = logging.getLogger("baosong.operations")


def periodic() -> None:
    from core import alerts, retention

    for name, step in (("alerts", alerts.evaluate), ("retention", retention.prune_if_due)):
        try:
            step()
        except Exception:
            log.exception("periodic %s failed", name)
            from core.db import db

            db.session.rollback()
