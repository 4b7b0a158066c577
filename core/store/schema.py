"""The tables of the store as SQLAlchemy Core objects, the one description both engines share.

    >>> from core.store.schema import corrections, masks, reviews
    >>> sa.select(corrections.c.image_id, corrections.c.version).where(corrections.c.deleted == 0)

This module describes the newest schema; each change to it is also an Alembic revision in
``core/store/migrations/versions`` (add the Table here, ``op.create_table`` there), so that existing databases
upgrade in place. Timestamps are ISO 8601 text in UTC (they sort as text on both engines).
"""

from __future__ import annotations

import sqlalchemy as sa

SOURCES = ("gt", "prediction", "correction", "import", "revert")
TAGS = ("model_error", "label_error", "ambiguous", "fine")
STATES = ("submitted", "accepted", "rejected")  # review state of a correction version
ROLES = ("annotator", "reviewer", "admin")  # lowest first

metadata = sa.MetaData()

# One row per distinct mask PNG, named by the SHA-256 of its bytes: identical masks share a row, and a
# correction row and its mask commit in the same transaction.
masks = sa.Table(
    "masks",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("png", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
)

# The corrections ledger: versions 1, 2, 3... per image, never reused. UNIQUE (image_id, version) is what makes
# the optimistic check hold across processes and machines: of two saves on top of the same version, the
# database accepts one.
corrections = sa.Table(
    "corrections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("image_id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, sa.CheckConstraint("version >= 1"), nullable=False),
    sa.Column("parent_version", sa.Integer),
    sa.Column("source", sa.Text, sa.CheckConstraint(f"source IN {SOURCES}"), nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("iou_gt", sa.Float),
    sa.Column("deleted", sa.Integer, sa.CheckConstraint("deleted IN (0, 1)"), nullable=False, server_default="0"),
    sa.Column("deleted_at", sa.Text),
    # Review (revision 0003): a version is accepted at once unless the store requires review; then it is submitted
    # and a reviewer (never its author) accepts or rejects it. Versions from before review existed are accepted.
    sa.Column("state", sa.Text, sa.CheckConstraint(f"state IN {STATES}", name="corrections_state"),
              nullable=False, server_default="accepted"),
    sa.Column("reviewer", sa.Text),
    sa.Column("reviewed_at", sa.Text),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("image_id", "version"),
    sa.Index("corrections_sha256", "sha256"),
    sa.Index("corrections_by_state", "state"),
)

# Review tag and note per image. ``revision`` counts the writes: a write names the revision it started from and
# the database updates only if it is still that one, so the last writer cannot silently win.
reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("image_id", sa.Text, primary_key=True),
    sa.Column("tag", sa.Text, sa.CheckConstraint(f"tag IS NULL OR tag IN {TAGS}")),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
)

# Who may do what (core.users). Emails are stored lower-case. A store with no rows here (and no PETSEG_ADMIN)
# is a single-user store: whoever runs PetSeg is its admin.
users = sa.Table(
    "users",
    metadata,
    sa.Column("email", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, sa.CheckConstraint(f"role IN {ROLES}", name="users_role"), nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

# Store-wide settings, one row per key (today: "review" = "required" | "off"; no row = the default).
store_settings = sa.Table(
    "store_settings",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

# Who is editing which image right now. ``expires_at`` is the database's clock in seconds (store.db_seconds):
# a lease nobody renews lapses by itself, and every app server compares against the same clock.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("image_id", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("leases_holder", "holder"),
)

# Work handed to an annotator: one assignee per image (assigning again moves it); ``position`` orders a batch.
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("image_id", sa.Text, primary_key=True),
    sa.Column("assignee", sa.Text, nullable=False),
    sa.Column("assigned_by", sa.Text, nullable=False),
    sa.Column("assigned_at", sa.Text, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Index("assignments_assignee", "assignee", "assigned_at", "position"),
)

# Append-only trail of every action: who, when (the database's clock), what. Nothing updates or deletes rows.
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("image_id", sa.Text),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    sa.Index("audit_image", "image_id", "id"),
    sa.Index("audit_actor", "actor", "at"),
)
