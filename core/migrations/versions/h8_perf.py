"""statistics aggregates and indexes for a hospital's tenth year

Revision ID: h8_perf
Revises: 9072698936cc
"""
import sqlalchemy as sa
from alembic import op

revision = "h8_perf"
down_revision = "h5_plugin_boundary"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "stat_counters",
        sa.Column("report_type", sa.String(length=80), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=120), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("report_type", "day", "metric"),
    )
    op.create_index("ix_stat_counters_metric", "stat_counters", ["metric", "report_type", "day", "value"])
    op.create_table(
        "stat_indicators",
        sa.Column("report_type", sa.String(length=80), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=64), nullable=False),
        sa.Column("upload_id", sa.Integer(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("report_type", "day", "department"),
    )
    with op.batch_alter_table("uploads") as batch_op:
        batch_op.add_column(sa.Column("counted_status", sa.String(length=24), nullable=True))
        batch_op.create_index("ix_uploads_type_status_created", ["report_type", "status", "created_at"])
        batch_op.create_index("ix_uploads_parent", ["parent_id"])
        batch_op.drop_index("ix_uploads_department")
        batch_op.create_index("ix_uploads_department_created", ["department", "created_at"])
        batch_op.create_index("ix_uploads_department_status_created", ["department", "status", "created_at"])
    op.create_index("ix_attempts_started", "attempts", ["started_at"])
    # Existing uploads are counted by `baosong stats rebuild` (init-db runs it after this migration).


def downgrade():
    op.drop_index("ix_attempts_started", table_name="attempts")
    with op.batch_alter_table("uploads") as batch_op:
        batch_op.drop_index("ix_uploads_department_status_created")
        batch_op.drop_index("ix_uploads_department_created")
        batch_op.create_index("ix_uploads_department", ["department"])
        batch_op.drop_index("ix_uploads_parent")
        batch_op.drop_index("ix_uploads_type_status_created")
        batch_op.drop_column("counted_status")
    op.drop_table("stat_indicators")
    op.drop_index("ix_stat_counters_metric", table_name="stat_counters")
    op.drop_table("stat_counters")
