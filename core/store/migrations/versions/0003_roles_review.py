"""Roles and the review workflow: a ``users`` table, store-wide ``store_settings``, and a review state per version.

Every existing version becomes ``accepted`` (what it was in effect: the ground truth), so upgrading changes
nothing that training, evaluation or export use.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATE_CHECK = "state IN ('submitted', 'accepted', 'rejected')"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("email", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, sa.CheckConstraint("role IN ('annotator', 'reviewer', 'admin')",
                                                      name="users_role"), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_table(
        "store_settings",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    bind = op.get_bind()
    columns = [
        sa.Column("state", sa.Text, nullable=False, server_default="accepted"),
        sa.Column("reviewer", sa.Text),
        sa.Column("reviewed_at", sa.Text),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    ]
    if bind.dialect.name == "sqlite":
        # SQLite adds a CHECK only by copying the table, and the copy must restate the unnamed ones it has.
        checks = (sa.CheckConstraint("version >= 1"), sa.CheckConstraint("deleted IN (0, 1)"),
                  sa.CheckConstraint("source IN ('gt', 'prediction', 'correction', 'import', 'revert')"),
                  sa.CheckConstraint(_STATE_CHECK, name="corrections_state"))
        with op.batch_alter_table("corrections", recreate="always", table_args=checks) as batch:
            for column in columns:
                batch.add_column(column)
    else:
        for column in columns:
            op.add_column("corrections", column)
        op.create_check_constraint("corrections_state", "corrections", _STATE_CHECK)
    op.create_index("corrections_by_state", "corrections", ["state"])
