"""Alembic's environment for the moderation schema.

``pipelines.store.migrations.upgrade`` runs it on a connection it has already locked and opened
a transaction on, handed over in ``config.attributes["connection"]``; the revisions then run
inside that transaction and commit with it. Without a connection (Alembic's own command line,
``python -m pipelines.store.dba``), it connects to the configuration's ``sqlalchemy.url`` and
takes the same lock.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from pipelines.store.migrations import locked_transaction


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    try:
        with locked_transaction(engine) as connection:
            run_on(connection)
    finally:
        engine.dispose()


run()
