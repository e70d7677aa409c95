"""Alembic environment. Runs on the connection tracker hands over (tracker.db.engine.upgrade_schema),
or on `sqlalchemy.url` when run by the alembic command line during development."""

from alembic import context
from sqlalchemy import engine_from_config, pool

import tracker.db.tables  # noqa: F401  (registers every table on SQLModel.metadata)
from sqlmodel import SQLModel

config = context.config
target_metadata = SQLModel.metadata


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables instead
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as conn:
        run_migrations(conn)
