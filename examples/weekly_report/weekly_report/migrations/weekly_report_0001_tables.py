"""weekly_report: receipts and department group mappings (the example plugin's own branch)

Revision ID: weekly_report_0001
Revises:
"""
from alembic import op
import sqlalchemy as sa


revision = 'weekly_report_0001'
down_revision = None
branch_labels = ('weekly_report',)
depends_on = '9072698936cc'  # weekly_report_receipts.upload_id refers to the core's uploads


def upgrade():
    op.create_table('weekly_report_receipts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.Integer(), nullable=False),
    sa.Column('week', sa.String(length=32), nullable=False),
    sa.Column('visits', sa.Integer(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('checked_by', sa.String(length=80), nullable=True),
    sa.Column('checked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['upload_id'], ['uploads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('upload_id')
    )
    with op.batch_alter_table('weekly_report_receipts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_weekly_report_receipts_week'), ['week'], unique=False)
    op.create_table('weekly_report_group_mappings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('local_code', sa.String(length=64), nullable=False),
    sa.Column('local_name', sa.String(length=200), nullable=False),
    sa.Column('national_code', sa.String(length=20), nullable=True),
    sa.Column('updated_by', sa.String(length=80), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('local_code')
    )


def downgrade():
    op.drop_table('weekly_report_group_mappings')
    with op.batch_alter_table('weekly_report_receipts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_weekly_report_receipts_week'))
    op.drop_table('weekly_report_receipts')
