"""twopath: drugs, diseases, filings, sign-ins and filing events (the plugin's first tables)

Revision ID: twopath_0000
Revises:
"""
from alembic import op
import sqlalchemy as sa


revision = "twopath_0000"
down_revision = None
branch_labels = ("twopath",)
depends_on = "9072698936cc"  # twopath_filings.last_upload_id and the events refer to the core's uploads


def upgrade():
    # A database made before the plugin had its own branch already has these tables (the core's initial
    # migration created them then): adopt them as they are; a new database gets them here.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'twopath_diseases' not in existing:
        op.create_table('twopath_diseases',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=30), nullable=False),
        sa.Column('name', sa.String(length=300), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('note', sa.String(length=200), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('code')
        )

    if 'twopath_drugs' not in existing:
        op.create_table('twopath_drugs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=30), nullable=False),
        sa.Column('name', sa.String(length=50), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('note', sa.String(length=200), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('code')
        )

    if 'twopath_filings' not in existing:
        op.create_table('twopath_filings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=24), nullable=False),
        sa.Column('psn_no', sa.String(length=30), nullable=False),
        sa.Column('psn_name', sa.String(length=50), nullable=False),
        sa.Column('certno', sa.String(length=30), nullable=False),
        sa.Column('card_no', sa.String(length=50), nullable=False),
        sa.Column('insuplc_admdvs', sa.String(length=6), nullable=False),
        sa.Column('item_code', sa.String(length=30), nullable=False),
        sa.Column('item_name', sa.String(length=300), nullable=False),
        sa.Column('appy_date', sa.String(length=10), nullable=False),
        sa.Column('begndate', sa.String(length=10), nullable=False),
        sa.Column('enddate', sa.String(length=10), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('doctor_code', sa.String(length=50), nullable=False),
        sa.Column('doctor_name', sa.String(length=100), nullable=False),
        sa.Column('doctor_approved_by', sa.String(length=80), nullable=True),
        sa.Column('doctor_approved_at', sa.DateTime(), nullable=True),
        sa.Column('appy_no', sa.String(length=30), nullable=False),
        sa.Column('platform_status', sa.String(length=40), nullable=False),
        sa.Column('last_upload_id', sa.Integer(), nullable=True),
        sa.Column('submissions', sa.Integer(), nullable=False),
        sa.Column('revocations', sa.Integer(), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('created_by', sa.String(length=80), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('submitted_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['last_upload_id'], ['uploads.id'], ),
        sa.PrimaryKeyConstraint('id')
        )
        with op.batch_alter_table('twopath_filings', schema=None) as batch_op:
            batch_op.create_index('ix_twopath_filings_appy_date', ['appy_date'], unique=False)
            batch_op.create_index(batch_op.f('ix_twopath_filings_appy_no'), ['appy_no'], unique=False)
            batch_op.create_index(batch_op.f('ix_twopath_filings_card_no'), ['card_no'], unique=False)
            batch_op.create_index(batch_op.f('ix_twopath_filings_certno'), ['certno'], unique=False)
            batch_op.create_index(batch_op.f('ix_twopath_filings_item_code'), ['item_code'], unique=False)
            batch_op.create_index(batch_op.f('ix_twopath_filings_psn_no'), ['psn_no'], unique=False)
            batch_op.create_index('ix_twopath_filings_status', ['status'], unique=False)

    if 'twopath_signins' not in existing:
        op.create_table('twopath_signins',
        sa.Column('opter', sa.String(length=30), nullable=False),
        sa.Column('sign_no', sa.String(length=30), nullable=False),
        sa.Column('sign_time', sa.String(length=19), nullable=False),
        sa.Column('obtained_at', sa.DateTime(), nullable=False),
        sa.Column('upload_id', sa.Integer(), nullable=True),
        sa.Column('invalidated_at', sa.DateTime(), nullable=True),
        sa.Column('renewals', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['upload_id'], ['uploads.id'], ),
        sa.PrimaryKeyConstraint('opter')
        )

    if 'twopath_filing_events' not in existing:
        op.create_table('twopath_filing_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('filing_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('actor', sa.String(length=80), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('from_status', sa.String(length=24), nullable=True),
        sa.Column('to_status', sa.String(length=24), nullable=True),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('upload_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['filing_id'], ['twopath_filings.id'], ),
        sa.ForeignKeyConstraint(['upload_id'], ['uploads.id'], ),
        sa.PrimaryKeyConstraint('id')
        )
        with op.batch_alter_table('twopath_filing_events', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_twopath_filing_events_at'), ['at'], unique=False)
            batch_op.create_index(batch_op.f('ix_twopath_filing_events_filing_id'), ['filing_id'], unique=False)
            batch_op.create_index(batch_op.f('ix_twopath_filing_events_upload_id'), ['upload_id'], unique=False)


def downgrade():
    with op.batch_alter_table('twopath_filing_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_twopath_filing_events_upload_id'))
        batch_op.drop_index(batch_op.f('ix_twopath_filing_events_filing_id'))
        batch_op.drop_index(batch_op.f('ix_twopath_filing_events_at'))

    op.drop_table('twopath_filing_events')
    op.drop_table('twopath_signins')
    with op.batch_alter_table('twopath_filings', schema=None) as batch_op:
        batch_op.drop_index('ix_twopath_filings_status')
        batch_op.drop_index(batch_op.f('ix_twopath_filings_psn_no'))
        batch_op.drop_index(batch_op.f('ix_twopath_filings_item_code'))
        batch_op.drop_index(batch_op.f('ix_twopath_filings_certno'))
        batch_op.drop_index(batch_op.f('ix_twopath_filings_card_no'))
        batch_op.drop_index(batch_op.f('ix_twopath_filings_appy_no'))
        batch_op.drop_index('ix_twopath_filings_appy_date')

    op.drop_table('twopath_filings')
    op.drop_table('twopath_drugs')
    op.drop_table('twopath_diseases')
