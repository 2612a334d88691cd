"""the epochs of weight-sharing searches

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 13:00:00

A weight-sharing search (`l2l search --weight-sharing`) records per epoch the shared weights' training
loss and what its controller learned; its sampled architectures are children with status ``shared``.
"""

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'shared_epochs',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('epoch', sa.Integer(), nullable=False),
        sa.Column('train_loss', sa.Float(), nullable=False),
        sa.Column('train_steps', sa.Integer(), nullable=False),
        sa.Column('mean_reward', sa.Float(), nullable=True),
        sa.Column('entropy', sa.Float(), nullable=True),
        sa.Column('updates', sa.Integer(), nullable=False),
        sa.Column('wall_time', sa.Float(), nullable=False),
        sa.Column('extra', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('run_id', 'epoch', name='uq_shared_epochs_run_epoch'),
    )
    op.create_index(op.f('ix_shared_epochs_run_id'), 'shared_epochs', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_shared_epochs_run_id'), table_name='shared_epochs')
    op.drop_table('shared_epochs')
