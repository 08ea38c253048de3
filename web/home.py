"""The admin's landing page: plugins, report types and the latest uploads."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template

from core.db import db
from core.models import Upload
from core.plugins import registry

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    latest = db.session.execute(sa.select(Upload).order_by(Upload.id.desc()).limit(20)).scalars().all()
    return render_template("home.html", listing=registry().listing(), latest=latest)
