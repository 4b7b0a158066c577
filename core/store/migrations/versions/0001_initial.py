"""The schema of PRAGMA user_version 1: the corrections ledger (mask files on disk) and review tags/notes.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, sa.CheckConstraint("version >= 1"), nullable=False),
        sa.Column("parent_version", sa.Integer),
        sa.Column("source", sa.Text, sa.CheckConstraint(
            "source IN ('gt', 'prediction', 'correction', 'import', 'revert')"), nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("iou_gt", sa.Float),
        sa.Column("deleted", sa.Integer, sa.CheckConstraint("deleted IN (0, 1)"), nullable=False,
                  server_default="0"),
        sa.Column("deleted_at", sa.Text),
        sa.UniqueConstraint("image_id", "version"),
    )
    op.create_index("corrections_sha256", "corrections", ["sha256"])
    op.create_table(
        "reviews",
        sa.Column("image_id", sa.Text, primary_key=True),
        sa.Column("tag", sa.Text, sa.CheckConstraint(
            "tag IS NULL OR tag IN ('model_error', 'label_error', 'ambiguous', 'fine')")),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
