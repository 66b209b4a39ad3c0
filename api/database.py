"""Which database Prefect's server keeps its data in: SQLite or PostgreSQL.

`WORKJET_DATABASE_URL` names it outright. Otherwise `WORKJET_DATABASE=postgresql`
picks the PostgreSQL of this machine (`POSTGRES_URL` below) and anything else, or
nothing, SQLite under `WORKJET_HOME`. Prefect migrates an empty database by itself
but does not create one, so the stack creates a missing PostgreSQL database before
the server starts.

    python -m api.database create-test [SERVER_URL]   print the URL of a new database
    python -m api.database drop URL                    drop it (connections closed)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from pathlib import Path

from sqlalchemy.engine import URL, make_url

logger = logging.getLogger(__name__)

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/workjet"
# The database every PostgreSQL server has, to connect to while creating others.
MAINTENANCE_DATABASE = "postgres"


def database_url(home: Path) -> str:
    """Prefect's database URL from the environment (see the module's docstring)."""
    explicit = os.environ.get("WORKJET_DATABASE_URL")
    if explicit:
        return explicit
    if os.environ.get("WORKJET_DATABASE", "").lower() in ("postgresql", "postgres"):
        return POSTGRES_URL
    return f"sqlite+aiosqlite:///{home / 'prefect' / 'prefect.db'}"


def is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def _connect_dsn(url: URL, database: str) -> str:
    """asyncpg's form of the URL (no `+asyncpg` driver suffix), on `database`."""
    plain = url.set(drivername="postgresql", database=database)
    return plain.render_as_string(hide_password=False)


async def _execute(url: URL, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_connect_dsn(url, MAINTENANCE_DATABASE))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _exists(url: URL) -> bool:
    import asyncpg

    connection = await asyncpg.connect(_connect_dsn(url, MAINTENANCE_DATABASE))
    try:
        found = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", url.database
        )
    finally:
        await connection.close()
    return found is not None


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of `url` if it does not exist yet."""
    if not is_postgresql(url):
        return
    parsed = make_url(url)
    if not parsed.database:
        raise ValueError("the PostgreSQL URL names no database")
    if asyncio.run(_exists(parsed)):
        return
    asyncio.run(_execute(parsed, f"CREATE DATABASE {_quoted(parsed.database)}"))
    logger.info("database created name=%s", parsed.database)


def create_test_database(
    server_url: str = POSTGRES_URL, prefix: str = "workjet_test_"
) -> str:
    """A new, uniquely named database on the server of `server_url`; its URL."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    url = make_url(server_url).set(database=name)
    asyncio.run(_execute(url, f"CREATE DATABASE {_quoted(name)}"))
    return url.render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the database of `url`, closing any connection still open to it."""
    parsed = make_url(url)
    if not parsed.database:
        raise ValueError("the PostgreSQL URL names no database")
    statement = f"DROP DATABASE IF EXISTS {_quoted(parsed.database)} WITH (FORCE)"
    asyncio.run(_execute(parsed, statement))


def main(argv: list[str]) -> int:
    if len(argv) in (1, 2) and argv[0] == "create-test":
        print(create_test_database(*argv[1:]))
        return 0
    if len(argv) == 2 and argv[0] == "drop":
        drop_database(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
