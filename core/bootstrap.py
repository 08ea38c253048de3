"""Preparing a database for use: schema (Alembic migrations), scheduled tasks, demo settings.

The schema is the core's migration history (``core/migrations/versions``: the core's tables only) plus
every plugin's own version location (hook ``migrations_location``, each its own Alembic branch; the
built-in plugins' first migrations adopt the tables older releases created in the core's history). ``init-db`` upgrades
all heads, so a plugin installed later gets its tables and an existing database keeps its data.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

from core.app import MIGRATIONS, migrate
from core.db import db

CORE_VERSIONS = str(Path(MIGRATIONS) / "versions")


def version_locations() -> list[str]:
    """The core's versions folder and each installed plugin's migrations folder."""
    from core.plugins import registry

    return [CORE_VERSIONS, *(loc for loc in registry().migration_locations() if loc != CORE_VERSIONS)]


@migrate.configure
def _with_plugin_migrations(config):
    """Every command Flask-Migrate runs (init-db, ``flask db ...``) sees the plugins' migrations too."""
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(version_locations()))
    return config


def init_db(app: Flask) -> None:
    """Bring the schema to the newest migration of every branch (creating it on a new database), then
    add a Task for each scheduled report type."""
    from core.plugins import registry
    from core.scheduler import ensure_tasks

    registry()  # import every plugin, so its tables are part of the schema
    with app.app_context():
        from flask_migrate import stamp, upgrade

        tables = set(sa.inspect(db.engine).get_table_names())
        if "uploads" in tables and "alembic_version" not in tables:
            # Made by create_all (tests, a development copy) with the current models: adopt it.
            stamp(directory=MIGRATIONS, revision="heads")
        upgrade(directory=MIGRATIONS, revision="heads")
        ensure_tasks()
        from core import aggregates

        if aggregates.needs_rebuild():  # uploads recorded before the aggregates existed
            aggregates.rebuild()
        aggregates.optimize_planner(full=True)
