"""indexes for the dashboard's queries on big runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 18:40:00

`l2l dashboard` reads a run's rewards in child order, counts its children by status and pages through them
sorted by reward. The first index holds every column the rewards and counts need, so on a run of 100,000
children they are read from it without touching the rows (whose specs and metrics are most of the file).
"""

from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_children_run_status_number', 'children', ['run_id', 'status', 'number', 'batch', 'reward'])
    op.create_index('ix_children_run_reward', 'children', ['run_id', 'reward'])


def downgrade() -> None:
    op.drop_index('ix_children_run_reward', table_name='children')
    op.drop_index('ix_children_run_status_number', table_name='children')
