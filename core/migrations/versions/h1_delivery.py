"""delivery on attempts, slot states and re-plans, back-fill runs

Attempts record how far each request got (delivery, operation_sent); slots get a claim time and a run
count, held-back records their slot; back-fill runs keep their progress.

Revision ID: h1_delivery
Revises: 9072698936cc
Create Date: 2026-12-01 15:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "h1_delivery"
down_revision = "h4_production"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("operation_sent", sa.String(length=16), nullable=True))

    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("runs", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_slots_type_status", ["report_type", "status"], unique=False)

    with op.batch_alter_table("held_back", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slot_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_held_back_slot_id"), ["slot_id"], unique=False)
        batch_op.create_foreign_key("fk_held_back_slot_id", "slots", ["slot_id"], ["id"])

    op.create_table(
        "backfill_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_type", sa.String(length=80), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=False),
        sa.Column("end_at", sa.DateTime(), nullable=False),
        sa.Column("replan", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("uploads", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("cursor_at", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("backfill_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backfill_runs_report_type"), ["report_type"], unique=False)


def downgrade():
    with op.batch_alter_table("backfill_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backfill_runs_report_type"))
    op.drop_table("backfill_runs")
    with op.batch_alter_table("held_back", schema=None) as batch_op:
        batch_op.drop_constraint("fk_held_back_slot_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_held_back_slot_id"))
        batch_op.drop_column("slot_id")
    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.drop_index("ix_slots_type_status")
        batch_op.drop_column("runs")
        batch_op.drop_column("claimed_at")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("operation_sent")
        batch_op.drop_column("delivery")
