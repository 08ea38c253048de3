"""Users: a display name, an insurance operator identity (opter, name, type) and the doctor permission

Revision ID: h7_users
Revises: h8_perf
"""
from alembic import op
import sqlalchemy as sa


revision = "h7_users"
down_revision = "h8_perf"
branch_labels = None
depends_on = None

_USER_TEXT = (("display_name", 50, ""), ("opter", 30, ""), ("opter_name", 50, ""), ("opter_type", 3, "1"),
              ("doctor_code", 30, ""), ("doctor_name", 50, ""), ("doctor_insu_code", 50, ""))


def upgrade():
    with op.batch_alter_table("web_users", schema=None) as batch_op:
        for name, length, default in _USER_TEXT:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=False, server_default=default))
        batch_op.add_column(sa.Column("doctor_granted_by", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("doctor_granted_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("web_users", schema=None) as batch_op:
        for name in ("doctor_granted_at", "doctor_granted_by"):
            batch_op.drop_column(name)
        for name, _length, _default in reversed(_USER_TEXT):
            batch_op.drop_column(name)
