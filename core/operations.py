"""Housekeeping run after every sweep (core.scheduler.sweep_job, once a minute): alert evaluation, the
daily retention prune and each plugin's ``housekeeping`` hook. Each part fails alone, logged, never the
sweep."""

from __future__ import annotations

import logging

log = logging.getLogger("baosong.operations")


def periodic() -> None:
    from core import alerts, retention
    from core.plugins import registry

    steps = [("alerts", alerts.evaluate), ("retention", retention.prune_if_due)]
    steps += [(f"housekeeping of {impl.plugin_name}", impl.function)
              for impl in registry().pm.hook.housekeeping.get_hookimpls()]
    for name, step in steps:
        try:
            step()
        except Exception:
            log.exception("periodic %s failed", name)
            from core.db import db

            db.session.rollback()
