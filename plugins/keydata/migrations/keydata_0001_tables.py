"""keydata: the department mapping tables (the plugin's own migration branch)

Revision ID: keydata_0001
Revises:
"""
from alembic import op
import sqlalchemy as sa


revision = "keydata_0001"
down_revision = None
branch_labels = ("keydata",)
depends_on = "9072698936cc"  # created alongside the core's first tables


def upgrade():
    # A database made before the plugin had its own branch already has these tables (the core's initial
    # migration created them then): adopt them as they are; a new database gets them here.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'keydata_department_mappings' not in existing:
        op.create_table('keydata_department_mappings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('local_code', sa.String(length=64), nullable=False),
        sa.Column('local_name', sa.String(length=200), nullable=False),
        sa.Column('national_code', sa.String(length=20), nullable=True),
        sa.Column('updated_by', sa.String(length=80), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('local_code')
        )

    if 'keydata_national_departments' not in existing:
        op.create_table('keydata_national_departments',
        sa.Column('code', sa.String(length=20), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('parent', sa.String(length=20), nullable=True),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('code')
        )


def downgrade():
    op.drop_table('keydata_national_departments')
    op.drop_table('keydata_department_mappings')
