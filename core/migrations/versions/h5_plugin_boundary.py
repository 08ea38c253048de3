"""upload dependencies (ordering between uploads, core.ordering)

Revision ID: h5_plugin_boundary
Revises: 9072698936cc
"""
from alembic import op
import sqlalchemy as sa


revision = 'h5_plugin_boundary'
down_revision = '9072698936cc'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('upload_dependencies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.Integer(), nullable=False),
    sa.Column('requires_report_type', sa.String(length=80), nullable=False),
    sa.Column('requires_business_key', sa.String(length=200), nullable=False),
    sa.Column('requires_upload_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['requires_upload_id'], ['uploads.id'], ),
    sa.ForeignKeyConstraint(['upload_id'], ['uploads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('upload_id', 'requires_report_type', 'requires_business_key', name='uq_upload_dependency')
    )
    with op.batch_alter_table('upload_dependencies', schema=None) as batch_op:
        batch_op.create_index('ix_upload_dependencies_requires', ['requires_report_type', 'requires_business_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_upload_dependencies_upload_id'), ['upload_id'], unique=False)


def downgrade():
    with op.batch_alter_table('upload_dependencies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upload_dependencies_upload_id'))
        batch_op.drop_index('ix_upload_dependencies_requires')
    op.drop_table('upload_dependencies')
