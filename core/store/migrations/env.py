"""Alembic environment: always run by core.store.migrate with an open connection (never from alembic.ini)."""

from alembic import context

from core.store.schema import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters a table by copying it, which Alembic's batch mode does for us.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
