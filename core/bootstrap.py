"""Preparing a database for use: schema (Alembic migrations), scheduled tasks, demo settings."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from core.app import MIGRATIONS
from core.db import db


def init_db(app: Flask) -> None:
    """Bring the schema to the newest migration (creating it on a new database), then add a Task
    for each scheduled report type."""
    from core.plugins import registry
    from core.scheduler import ensure_tasks

    registry()  # import every plugin, so its tables are part of the schema
    with app.app_context():
        if any(Path(MIGRATIONS, "versions").glob("*.py")):
            from flask_migrate import upgrade

            upgrade(directory=MIGRATIONS)
        else:  # no migrations generated yet (development)
            db.create_all()
        ensure_tasks()
