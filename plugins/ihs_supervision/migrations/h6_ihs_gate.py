"""ihs_supervision: sign gate and entity index

Revision ID: h6_ihs_gate
Revises: (first of the ihs_supervision branch)
"""
from alembic import op
import sqlalchemy as sa


revision = 'h6_ihs_gate'
down_revision = None
branch_labels = ('ihs_supervision',)
depends_on = None


def upgrade():
    op.create_table('ihs_sign_gate',
    sa.Column('regulator', sa.String(length=80), nullable=False),
    sa.Column('appid', sa.String(length=64), nullable=False),
    sa.Column('service', sa.String(length=32), nullable=False),
    sa.Column('randomstr', sa.String(length=64), nullable=False),
    sa.Column('uptime', sa.String(length=32), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('expected_sign', sa.String(length=512), nullable=False),
    sa.Column('example_key', sa.Text(), nullable=False),
    sa.Column('verified_recipe', sa.String(length=300), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=True),
    sa.Column('verified_at', sa.DateTime(), nullable=True),
    sa.Column('verified_by', sa.String(length=80), nullable=True),
    sa.Column('last_result', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('regulator')
    )
    op.create_table('ihs_entities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=40), nullable=False),
    sa.Column('entity_key', sa.String(length=128), nullable=False),
    sa.Column('report_type', sa.String(length=80), nullable=False),
    sa.Column('business_key', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('step', 'entity_key', 'report_type', 'business_key', name='uq_ihs_entity_upload')
    )
    with op.batch_alter_table('ihs_entities', schema=None) as batch_op:
        batch_op.create_index('ix_ihs_entities_step_key', ['step', 'entity_key'], unique=False)


def downgrade():
    with op.batch_alter_table('ihs_entities', schema=None) as batch_op:
        batch_op.drop_index('ix_ihs_entities_step_key')
    op.drop_table('ihs_entities')
    op.drop_table('ihs_sign_gate')
