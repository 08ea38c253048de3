"""delivery knowledge on attempts (how far each request got)

Revision ID: h1_delivery
Revises: 9072698936cc
Create Date: 2026-12-01 15:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "h1_delivery"
down_revision = "9072698936cc"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("operation_sent", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("operation_sent")
        batch_op.drop_column("delivery")
