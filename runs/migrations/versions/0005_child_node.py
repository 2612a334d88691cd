"""the node a child ran on, as a column of its own

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 14:00:00

``node`` (the Ray node id) was buried in ``metrics.runtime``; `l2l runs show` lists it, and a cluster's
children can be counted by node. Children recorded before keep theirs in ``metrics`` and are copied over.
"""

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('children') as batch_op:
        batch_op.add_column(sa.Column('node', sa.String(length=200), nullable=True))
    children = sa.table('children', sa.column('id', sa.Integer()), sa.column('metrics', sa.JSON()),
                        sa.column('node', sa.String()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(children.c.id, children.c.metrics)).all()
    updates = [
        {'child_id': id_, 'value': str(metrics['runtime']['node'])}
        for id_, metrics in rows
        if isinstance(metrics, dict) and isinstance(metrics.get('runtime'), dict) and metrics['runtime'].get('node')
    ]
    if updates:
        conn.execute(children.update().where(children.c.id == sa.bindparam('child_id'))
                     .values(node=sa.bindparam('value')), updates)


def downgrade() -> None:
    with op.batch_alter_table('children') as batch_op:
        batch_op.drop_column('node')
