"""a store's high-water marks: run ids are never handed out twice on SQLite

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 22:20:00

SQLite gave a new run the id after the largest one present, so the newest run deleted gave its id to the next
new run, and `--resume 13`, a watcher, a dashboard link or `run13.csv` then named another run. ``store_marks``
keeps the largest run id deleted; a new run on SQLite takes the next id past it. (The runs table itself keeps its
schema: rebuilding it with AUTOINCREMENT would drop it, and its children with it, by their cascading keys.)
"""

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'store_marks',
        sa.Column('name', sa.String(length=50), nullable=False),
        sa.Column('value', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('store_marks')
