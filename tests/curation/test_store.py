from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from curation.errors import StoreError
from curation.store import SCHEMA_VERSION, Store, utc_now


def _add_example(store: Store, example_id: str) -> None:
    store.conn.execute(
        "INSERT INTO examples (id, text, raw_text, text_hash, language, language_source, source,"
        " file, line, created_at) VALUES (?, ?, ?, ?, 'en', 'given', 's', 'f', 1, ?)",
        (example_id, example_id, example_id, "hash-" + example_id, utc_now()),
    )


def test_new_store_is_wal_with_schema_version(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.schema_version() == SCHEMA_VERSION
        tables = {
            row[0]
            for row in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert {
            "examples",
            "duplicates",
            "quarantine",
            "ingested_files",
            "labels",
            "label_set",
            "embeddings",
            "embedding_shards",
            "selection_rounds",
            "round_items",
            "tasks",
            "annotations",
            "training_runs",
            "schema_version",
        } <= tables
    with Store(tmp_path / "s") as again:  # reopening applies nothing twice
        rows = again.conn.execute("SELECT version FROM schema_version").fetchall()
        assert [row[0] for row in rows] == list(range(1, SCHEMA_VERSION + 1))


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        with pytest.raises(ValueError), store.transaction():
            _add_example(store, "a")
            raise ValueError("boom")
        assert store.conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0] == 0


def test_reader_sees_last_commit_while_writer_holds_a_transaction(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as writer:
        with writer.transaction():
            _add_example(writer, "committed")
        reader = Store(tmp_path / "s", read_only=True)
        with writer.transaction():
            _add_example(writer, "pending")
            # The dashboard reads during a job's open write transaction: no "database is locked".
            ids = [row[0] for row in reader.conn.execute("SELECT id FROM examples")]
            assert ids == ["committed"]
        ids = [row[0] for row in reader.conn.execute("SELECT id FROM examples ORDER BY id")]
        assert ids == ["committed", "pending"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.conn.execute("DELETE FROM examples")
        reader.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        store.conn.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION + 1, "x"))
    with pytest.raises(StoreError, match="upgrade the tool"):
        Store(tmp_path / "s")


def test_read_only_store_must_exist(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "nothing", read_only=True)
