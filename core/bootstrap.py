"""Preparing a database for use: schema (Alembic migrations), scheduled tasks, demo settings."""

from __future__ import annotations

import sqlalchemy as sa
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
        from flask_migrate import stamp, upgrade

        tables = set(sa.inspect(db.engine).get_table_names())
        if "uploads" in tables and "alembic_version" not in tables:
            # Made by create_all (tests, a development copy) with the current models: adopt it.
            stamp(directory=MIGRATIONS)
        upgrade(directory=MIGRATIONS)
        ensure_tasks()
        from core import aggregates

        if aggregates.needs_rebuild():  # uploads recorded before the aggregates existed
            aggregates.rebuild()
        aggregates.optimize_planner(full=True)
