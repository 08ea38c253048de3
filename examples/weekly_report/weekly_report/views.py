"""The example plugin's admin page (menu entry 门诊周报), registered through ``register_blueprints``:
its accepted weeks (its own table) next to the ledger's uploads of its two report types."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template

from core.db import db
from core.hook_types import AdminPages, NavEntry
from core.models import Upload
from weekly_report.models import WeeklyReceipt

bp = Blueprint("weekly_report", __name__, url_prefix="/weekly", template_folder="templates")
PAGES = AdminPages(bp, nav=(NavEntry("门诊周报", "weekly_report.index"),))


@bp.get("/")
def index():
    """Every signed-in role may look (the admin's login guard applies to plugin pages too)."""
    receipts = db.session.execute(sa.select(WeeklyReceipt).order_by(WeeklyReceipt.week.desc()).limit(100)).scalars()
    uploads = db.session.execute(
        sa.select(Upload).where(Upload.report_type.like("weekly.%")).order_by(Upload.id.desc()).limit(100)
    ).scalars()
    return render_template("weekly_report/index.html", receipts=list(receipts), uploads=list(uploads))
