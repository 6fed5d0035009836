"""Alembic environment: the engine is handed in by ``collateral.db.upgrade``.

``target_metadata`` is every package's tables, so ``alembic revision --autogenerate`` and
the drift test compare the migrated schema with the code's. Revisions themselves never
read these definitions: each is frozen as explicit ``op.*`` steps.
"""

from alembic import context

from collateral.db import all_metadata

target_metadata = all_metadata()
engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
