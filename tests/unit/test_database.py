"""Choosing Prefect's database, and making and dropping PostgreSQL databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from api.database import (
    POSTGRES_URL,
    create_test_database,
    database_url,
    drop_database,
    ensure_database,
    is_postgresql,
)


class TestDatabaseUrl:
    def test_sqlite_under_the_home_by_default(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.delenv("WORKJET_DATABASE_URL", raising=False)
        monkeypatch.delenv("WORKJET_DATABASE", raising=False)

        url = database_url(tmp_path)

        assert url == f"sqlite+aiosqlite:///{tmp_path}/prefect/prefect.db"
        assert not is_postgresql(url)

    def test_one_setting_picks_the_local_postgresql(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.delenv("WORKJET_DATABASE_URL", raising=False)
        monkeypatch.setenv("WORKJET_DATABASE", "postgresql")

        assert database_url(tmp_path) == POSTGRES_URL
        assert is_postgresql(POSTGRES_URL)

    def test_an_explicit_url_wins(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        url = "postgresql+asyncpg://app:secret@db.internal:5432/prefect"
        monkeypatch.setenv("WORKJET_DATABASE", "sqlite")
        monkeypatch.setenv("WORKJET_DATABASE_URL", url)

        assert database_url(tmp_path) == url


def _databases() -> set[str] | None:
    """The local PostgreSQL server's database names, or None if it is not there."""

    async def names() -> set[str]:
        connection = await asyncpg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", timeout=3
        )
        try:
            rows = await connection.fetch("SELECT datname FROM pg_database")
        finally:
            await connection.close()
        return {row[0] for row in rows}

    try:
        return asyncio.run(names())
    except (OSError, asyncpg.PostgresError):
        return None


class TestPostgresDatabases:
    def test_a_test_database_is_made_then_dropped(self) -> None:
        if _databases() is None:
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")

        url = create_test_database()
        name = url.rsplit("/", 1)[1]
        made = _databases() or set()
        ensure_database(url)  # already there: nothing to do
        drop_database(url)

        assert name.startswith("workjet_test_")
        assert name in made
        assert name not in (_databases() or set())

    def test_a_missing_database_is_created(self) -> None:
        if _databases() is None:
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")
        url = create_test_database()
        drop_database(url)

        ensure_database(url)
        made = _databases() or set()
        drop_database(url)

        assert url.rsplit("/", 1)[1] in made
