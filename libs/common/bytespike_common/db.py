"""SQL storage shared by auth and metering: one async engine factory and Alembic migrations.

SQLite by default (one file per service under the data dir), PostgreSQL by DSN; the same
SQLAlchemy Core schema and the same migrations serve both. Each service keeps its own
Alembic version table so services can share one PostgreSQL database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def normalize_dsn(dsn: str) -> str:
    """Accepts plain `postgresql://` and `sqlite:///` DSNs and picks the async driver."""
    url = make_url(dsn)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+asyncpg")
    elif url.drivername == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    return url.render_as_string(hide_password=False)


def create_engine(dsn: str, **kwargs: Any) -> AsyncEngine:
    url = make_url(normalize_dsn(dsn))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # The pool hands out the connection used last: each SQLite connection has its own
        # page cache, emptied when another connection wrote since its last transaction, and
        # first-in-first-out two connections (a health check's, a writer's) took turns and
        # every transaction re-read its pages from the file (docs/metering.md).
        engine = create_async_engine(url, **{"pool_use_lifo": True, **kwargs})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; busy_timeout rides out short write locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def migrate(engine: AsyncEngine, script_location: Path, version_table: str) -> None:
    """Applies the service's Alembic migrations up to head (called at start-up)."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["version_table"] = version_table
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, config)


def _upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def run_migrations_online(target_metadata: Any) -> None:
    """Body of every service's migrations/env.py."""
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=context.config.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def ping(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return True


def insert_ignoring_duplicates(table: Any, conn: Any) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` for the connection's dialect (SQLite, PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()
