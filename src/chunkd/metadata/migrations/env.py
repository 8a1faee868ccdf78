"""Alembic environment: migrations run on a connection handed over by chunkd (see sql.py)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
