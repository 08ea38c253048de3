"""exact search keys of uploads (ID number, phone, visit number...) for the upload log's search

``upload_search_keys(key, upload_id)``: the whole identifiers in each upload's search text, so a search
by an 18-digit ID number is one b-tree seek at any size of the ledger (core/search_keys.py). The
triggers on ``uploads`` keep it; the existing uploads are back-filled here, ``search_keys.BATCH``
uploads per statement. A later migration that re-creates ``uploads`` (SQLite's batch mode copies the
table, which drops its triggers) must call ``search_keys.install_triggers`` again.

Revision ID: h9_search_keys
Revises: h1_delivery
"""
import sqlalchemy as sa
from alembic import op

revision = "h9_search_keys"
down_revision = "h1_delivery"
branch_labels = None
depends_on = None


def upgrade():
    from core import search_keys

    op.create_table(
        "upload_search_keys",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("upload_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("key", "upload_id"),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    search_keys.install_triggers(conn)  # first: nothing written from now on is missed
    search_keys.backfill(conn)


def downgrade():
    from core import search_keys

    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for name in search_keys.SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    elif conn.dialect.name == "postgresql":
        for statement in search_keys.postgres_drop_ddl():
            op.execute(statement)
    op.drop_table("upload_search_keys")
