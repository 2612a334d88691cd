"""keep only each run's latest checkpoint

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00

Stores written before l2l kept one checkpoint per run held one per controller update (a 3,000-child
run: 300 rows of about 1 MB); resume reads only the newest. No schema change: the older rows go.
"""

from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM checkpoints WHERE id NOT IN "
        "(SELECT keep FROM (SELECT MAX(id) AS keep FROM checkpoints GROUP BY run_id) AS latest)"
    )


def downgrade() -> None:
    pass  # the deleted checkpoints cannot come back, and nothing reads them
