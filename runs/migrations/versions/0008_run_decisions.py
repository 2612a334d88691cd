"""the decisions a run's space declared when it started, kept with the run

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 16:20:00

A run's tokens are indices into its space's decisions. A plugin whose decisions were edited after a run
started read those tokens as other architectures: a resumed REINFORCE run failed loading its controller
(a size mismatch, as a traceback), a resumed evolution run mixed children of the two spaces silently.
The decisions are now stored with the run, and a resume of a changed space is refused naming the change.
"""

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('space_data') as batch:
        batch.add_column(sa.Column('decisions', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('space_data') as batch:
        batch.drop_column('decisions')
