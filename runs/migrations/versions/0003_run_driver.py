"""which driver process runs a run, and when it last said so

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 12:00:00

``driver`` (host:pid) and ``heartbeat_at`` let `l2l search --resume` refuse a run whose driver is still
alive, instead of requeueing its children under it.
"""

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs') as batch_op:
        batch_op.add_column(sa.Column('driver', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch_op:
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('driver')
