"""twopath: the application sheet kept with a filing, the institution list, API tokens for a mini-program
(the plugin's own migration branch, after its first tables in twopath_0000)

Revision ID: twopath_0001
Revises: twopath_0000
"""
from alembic import op
import sqlalchemy as sa


revision = "twopath_0001"
down_revision = "twopath_0000"
branch_labels = None
depends_on = "h7_users"  # twopath_api_tokens.user_id refers to web_users


def upgrade():
    with op.batch_alter_table("twopath_filings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("doctor_his_code", sa.String(length=30), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("sheet", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("sheet_generated_at", sa.DateTime(), nullable=True))
    op.create_table(
        "twopath_institutions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=30), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("poolarea_no", sa.String(length=30), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "twopath_api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["web_users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("twopath_api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_twopath_api_tokens_user_id"), ["user_id"], unique=False)




def downgrade():
    with op.batch_alter_table("twopath_api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_twopath_api_tokens_user_id"))
    op.drop_table("twopath_api_tokens")
    op.drop_table("twopath_institutions")
    with op.batch_alter_table("twopath_filings", schema=None) as batch_op:
        for name in ("sheet_generated_at", "sheet", "doctor_his_code"):
            batch_op.drop_column(name)
