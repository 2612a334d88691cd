"""what a run's space measured once (a placement's profiled op graph), kept with the run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 22:40:00

A space that measures something when a run starts (placement profiles its model's ops on this machine)
gave other rewards when it was rebuilt in another process: on resume, and for `l2l runs best --retrain`.
The measurement is now stored with the run, and the rebuilt space reuses it.
"""

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'space_data',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id'),
    )


def downgrade() -> None:
    op.drop_table('space_data')
