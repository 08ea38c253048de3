"""The Alembic migrations build exactly the schema the models describe, so an upgrade keeps a
hospital's data and a new install gets every table (core, plugins, admin)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.db import db


def _not_search_index(obj, name, type_, reflected, compare_to) -> bool:
    return not (name or "").startswith(("uploads_search_fts", "ix_uploads_search_trgm"))


def test_init_db_upgrades_a_new_database_to_the_models_schema(unmigrated_app):
    from core import mapping, models  # noqa: F401
    from core.bootstrap import init_db
    from core.plugins import registry

    registry()
    import web.models  # noqa: F401

    app = unmigrated_app
    init_db(app)
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _not_search_index})
        differences = compare_metadata(context, db.metadata)
        tables = set(sa.inspect(conn).get_table_names())
    assert differences == []
    assert {"uploads", "attempts", "tasks", "keydata_department_mappings", "twopath_filings",
            "web_users", "field_mapping_versions"} <= tables
