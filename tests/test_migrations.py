"""The Alembic migrations build exactly the schema the models describe, so an upgrade keeps a
hospital's data and a new install gets every table (core, plugins, admin)."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.db import db


def _not_search_index(obj, name, type_, reflected, compare_to) -> bool:
    return not (name or "").startswith(("uploads_search_fts", "ix_uploads_search_trgm"))


def test_init_db_upgrades_a_new_database_to_the_models_schema(tmp_path, redis_conn, monkeypatch):
    from core import mapping, models  # noqa: F401
    from core.app import create_app
    from core.bootstrap import init_db
    from core.plugins import registry

    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'migrated.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    registry()
    import web.models  # noqa: F401

    app = create_app()
    if url.startswith("postgresql"):
        with app.app_context():
            db.drop_all()
            with db.engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))

    init_db(app)
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _not_search_index})
        differences = compare_metadata(context, db.metadata)
        tables = set(sa.inspect(conn).get_table_names())
    assert differences == []
    assert {"uploads", "attempts", "tasks", "keydata_department_mappings", "twopath_filings",
            "web_users", "field_mapping_versions"} <= tables
