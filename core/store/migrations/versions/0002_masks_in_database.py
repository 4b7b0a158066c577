"""Mask PNGs move into the database (content-addressed), reviews get a revision for the optimistic check.

The files of an existing workspace's ``masks/`` folder are copied into the new ``masks`` table, each verified
against its SHA-256 (a missing or damaged file is left out: that version then reads as missing, as before).
The folder itself is left alone; ``python -m core gc`` lists its files once the database holds them.

Revision ID: 0002
Revises: 0001
"""

import hashlib
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_MASK_PATH = re.compile(r"masks/[0-9a-f]{2}/([0-9a-f]{64})\.png")


def upgrade() -> None:
    masks = op.create_table(
        "masks",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("png", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    bind = op.get_bind()
    workspace = context.config.attributes.get("workspace")
    if workspace is not None:
        rows = bind.execute(sa.text("SELECT DISTINCT sha256, path, MIN(created_at) FROM corrections "
                                    "GROUP BY sha256, path")).all()
        seen = set()
        for digest, path, created_at in rows:
            match = _MASK_PATH.fullmatch(path or "")
            if digest in seen or not match or match.group(1) != digest:
                continue
            try:
                data = (Path(workspace) / path).read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == digest:
                bind.execute(masks.insert().values(sha256=digest, png=data, created_at=created_at))
                seen.add(digest)
    # SQLite drops a column by copying the table; its unnamed CHECK constraints must be restated for the copy.
    checks = (sa.CheckConstraint("version >= 1"), sa.CheckConstraint("deleted IN (0, 1)"),
              sa.CheckConstraint("source IN ('gt', 'prediction', 'correction', 'import', 'revert')"))
    with op.batch_alter_table("corrections", table_args=checks if bind.dialect.name == "sqlite" else ()) as batch:
        batch.drop_column("path")
        batch.alter_column("sha256", type_=sa.String(64), existing_nullable=False)
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="1"))
    if bind.dialect.name == "sqlite":
        # PetSeg before Alembic checks this number: it now refuses the database instead of misreading it.
        bind.exec_driver_sql("PRAGMA user_version = 2")
