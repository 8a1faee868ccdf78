"""The --metadata URL forms that open_store accepts (no database is contacted here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chunkd.metadata import open_store
from chunkd.metadata.sql import SqlSessionStore


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://postgres@127.0.0.1:5432/chunkd", "postgresql+psycopg://postgres@127.0.0.1:5432/chunkd"),
    ("postgres://u:p@db:5433/x?sslmode=require", "postgresql+psycopg://u:p@db:5433/x?sslmode=require"),
    ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
])
def test_postgresql_urls(url: str, expected: str, tmp_path: Path) -> None:
    store = open_store(url, str(tmp_path))
    assert isinstance(store, SqlSessionStore)
    assert store.url == expected and store.name == "postgresql"


def test_sqlite_default_lives_in_the_data_dir(tmp_path: Path) -> None:
    for url in ("", "sqlite"):
        store = open_store(url, str(tmp_path))
        assert isinstance(store, SqlSessionStore)
        assert store.name == "sqlite" and store.url == f"sqlite:///{tmp_path.resolve() / 'chunkd.db'}"


@pytest.mark.parametrize("url", ["mysql://root@localhost/db", "postgresql", "sqlite://relative-without-slash"])
def test_unknown_urls_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown metadata store"):
        open_store(url, str(tmp_path))


@pytest.mark.parametrize(("durable", "level"), [(True, 2), (False, 1)])
def test_sqlite_fsyncs_its_record_commits_only_when_durable(durable: bool, level: int, tmp_path: Path) -> None:
    # PRAGMA synchronous: 2 = FULL (every commit fsyncs the WAL), 1 = NORMAL (only checkpoints do)
    store = open_store("sqlite", str(tmp_path), durable=durable)
    assert isinstance(store, SqlSessionStore)
    with store._writer.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
    writer = store._sqlite_writer  # the one connection of the hot-path writes, its level set per transaction
    assert writer is not None
    for soft, expected in ((True, 1), (False, level), (True, 1)):  # claims are leases: never fsynced
        with store._serialized(), writer.transaction(soft=soft):
            assert writer._raw is not None
            assert writer._raw.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0] == expected
