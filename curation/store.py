"""The embedded store: one SQLite database in WAL mode, plus vector shards beside it.

Why SQLite in WAL mode: many readers (the dashboard) and one writer (a job) work at once, and a
writer killed mid-transaction leaves the database exactly as before that transaction. Every write
path in this tool runs inside `Store.transaction()` (BEGIN IMMEDIATE ... COMMIT).

Layout under the store folder (`[store] path`, default `./curation-data/`)::

    curate.db               the database (plus curate.db-wal / -shm while open)
    vectors/<model-slug>/   float32/float16 .npy shards, see curation.embeddings
    index/<model-slug>/     persisted FAISS index, see curation.index

Schema (version 1). Migrations are applied in order at open; `schema_version` records each.

``examples``       one row per distinct normalized text.
    id TEXT PK               the given id, else ``h`` + 20 hex of sha256(normalized text)
    text TEXT                normalized text (NFC, whitespace collapsed)
    raw_text TEXT            the text exactly as read
    text_hash TEXT UNIQUE    sha256 of `text`: the exact-duplicate key
    language TEXT            BCP-47 tag, or 'und' when detection was not confident
    language_source TEXT     'given' | 'detected' | 'undetermined'
    language_confidence REAL detector confidence (NULL when given)
    detected_guess TEXT      the detector's best guess, even below the threshold
    source TEXT              `--source` name (default: the file name)
    file TEXT, line INTEGER  where it was first read (line: 1-based, see curation.ingest)
    metadata TEXT            JSON of the extra columns
    created_at TEXT          ISO-8601 UTC
``duplicates``     rows whose normalized text was already stored, linked to the first occurrence.
``quarantine``     rejected rows: file, line, field, reason and the raw row; never dropped.
``ingested_files`` each ingested file by content hash (re-ingest is a no-op), with its counts.
``label_set``      label names in order: from `[labels] names`, else as first seen in imports.
``labels``         the current verified label per example and where it came from
                   ('import', 'labelstudio', 'adjudicated').
``embedding_shards`` / ``embeddings``  which shard and row holds each example's vector per model.
``selection_rounds`` / ``round_items``  selection rounds and what each chose, with scores, reasons.
``tasks``          examples pushed to Label Studio with their task ids (exactly-once bookkeeping).
``annotations``    every raw annotation pulled back (annotator, choice, times, ids).
``training_runs``  adapter training runs: config, metrics, where the adapter lives.

Schema version 2 adds the nightly job's bookkeeping:

``runs`` / ``run_steps``  each `curate run` and each of its stages: times, status, counts (JSON).
``dataset_versions``  curated snapshots (Hugging Face datasets + Parquet + card), never rewritten.
``evaluations``   per-language macro-F1 of a model over time (the proxy, or an adapter).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from curation.errors import StoreError

DB_NAME = "curate.db"

MIGRATIONS: list[str] = [
    # version 1
    """
    CREATE TABLE examples (
        id TEXT PRIMARY KEY,
        text TEXT NOT NULL,
        raw_text TEXT NOT NULL,
        text_hash TEXT NOT NULL UNIQUE,
        language TEXT NOT NULL,
        language_source TEXT NOT NULL
            CHECK (language_source IN ('given', 'detected', 'undetermined')),
        language_confidence REAL,
        detected_guess TEXT,
        source TEXT NOT NULL,
        file TEXT NOT NULL,
        line INTEGER NOT NULL,
        metadata TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX examples_language ON examples(language);

    CREATE TABLE duplicates (
        id INTEGER PRIMARY KEY,
        example_id TEXT NOT NULL REFERENCES examples(id),
        given_id TEXT,
        label TEXT,
        source TEXT NOT NULL,
        file TEXT NOT NULL,
        line INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (file, line, example_id)
    );

    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        file TEXT NOT NULL,
        line INTEGER,
        field TEXT NOT NULL,
        reason TEXT NOT NULL,
        raw TEXT,
        source TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (file, line, field, reason)
    );

    CREATE TABLE ingested_files (
        content_hash TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        source TEXT NOT NULL,
        rows_read INTEGER NOT NULL,
        added INTEGER NOT NULL,
        duplicates INTEGER NOT NULL,
        quarantined INTEGER NOT NULL,
        ingested_at TEXT NOT NULL
    );

    CREATE TABLE label_set (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    );

    CREATE TABLE labels (
        example_id TEXT PRIMARY KEY REFERENCES examples(id),
        label TEXT NOT NULL,
        source TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );

    CREATE TABLE embedding_shards (
        model TEXT NOT NULL,
        shard INTEGER NOT NULL,
        path TEXT NOT NULL,
        rows INTEGER NOT NULL,
        dim INTEGER NOT NULL,
        dtype TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (model, shard)
    );

    CREATE TABLE embeddings (
        model TEXT NOT NULL,
        example_id TEXT NOT NULL REFERENCES examples(id),
        shard INTEGER NOT NULL,
        row INTEGER NOT NULL,
        PRIMARY KEY (model, example_id)
    );

    CREATE TABLE selection_rounds (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        strategy TEXT NOT NULL,
        allocation TEXT NOT NULL,
        budget INTEGER NOT NULL,
        allocation_decision TEXT,
        proxy_model_version TEXT,
        status TEXT NOT NULL DEFAULT 'selected'
    );

    CREATE TABLE round_items (
        round_id INTEGER NOT NULL REFERENCES selection_rounds(id),
        example_id TEXT NOT NULL REFERENCES examples(id),
        rank INTEGER NOT NULL,
        score REAL,
        reason TEXT,
        predicted_label TEXT,
        predicted_score REAL,
        is_control INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (round_id, example_id)
    );

    CREATE TABLE tasks (
        example_id TEXT NOT NULL REFERENCES examples(id),
        project_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        round_id INTEGER REFERENCES selection_rounds(id),
        is_gold INTEGER NOT NULL DEFAULT 0,
        pushed_at TEXT NOT NULL,
        PRIMARY KEY (project_id, example_id)
    );

    CREATE TABLE annotations (
        annotation_id INTEGER NOT NULL,
        project_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        example_id TEXT NOT NULL REFERENCES examples(id),
        annotator TEXT NOT NULL,
        choice TEXT,
        was_cancelled INTEGER NOT NULL DEFAULT 0,
        lead_time REAL,
        created_at TEXT,
        updated_at TEXT,
        deleted INTEGER NOT NULL DEFAULT 0,
        pulled_at TEXT NOT NULL,
        PRIMARY KEY (project_id, annotation_id)
    );

    CREATE TABLE training_runs (
        id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        config TEXT NOT NULL,
        metrics TEXT,
        adapter_path TEXT,
        stopped_because TEXT
    );
    """,
    # version 2: the nightly job (`curate run`), curated dataset versions, evaluations
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        pid INTEGER NOT NULL,
        dry_run INTEGER NOT NULL DEFAULT 0,
        warnings TEXT,
        report_path TEXT
    );

    CREATE TABLE run_steps (
        run_id TEXT NOT NULL REFERENCES runs(id),
        stage TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        counts TEXT,
        message TEXT,
        PRIMARY KEY (run_id, stage)
    );

    CREATE TABLE dataset_versions (
        version INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        path TEXT NOT NULL,
        rows INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        per_language TEXT NOT NULL,
        per_label TEXT NOT NULL,
        source_rounds TEXT NOT NULL,
        run_id TEXT
    );

    CREATE TABLE evaluations (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        run_id TEXT,
        model TEXT NOT NULL,
        labels INTEGER NOT NULL,
        mean_macro_f1 REAL,
        worst_language_f1 REAL,
        per_language TEXT NOT NULL
    );
    """,
    # version 3: the Label Studio bridge (labeling/). tasks.overlap: how many annotators a task
    # asked for (a label is resolved only once that many have answered); the adjudication queue;
    # per-language agreement and per-annotator gold accuracy at each pull, for the dashboard.
    """
    ALTER TABLE tasks ADD COLUMN overlap INTEGER;

    CREATE TABLE adjudication_queue (
        example_id TEXT PRIMARY KEY REFERENCES examples(id),
        reason TEXT NOT NULL,
        votes TEXT NOT NULL,
        agreement REAL,
        updated_at TEXT NOT NULL
    );

    CREATE TABLE agreement_stats (
        computed_at TEXT NOT NULL,
        language TEXT NOT NULL,
        examples INTEGER NOT NULL,
        annotations INTEGER NOT NULL,
        annotators INTEGER NOT NULL,
        units INTEGER NOT NULL,
        krippendorff_alpha REAL,
        fleiss_kappa REAL,
        percent_agreement REAL,
        labels INTEGER NOT NULL,
        needs_adjudication INTEGER NOT NULL,
        PRIMARY KEY (computed_at, language)
    );

    CREATE TABLE annotator_gold (
        computed_at TEXT NOT NULL,
        annotator TEXT NOT NULL,
        language TEXT NOT NULL,
        answered INTEGER NOT NULL,
        correct INTEGER NOT NULL,
        accuracy REAL,
        PRIMARY KEY (computed_at, annotator, language)
    );
    """,
    # version 4: evaluations.fingerprint: a hash of the labeled set (ids and labels), the
    # embedding model and the seed an evaluation was computed on, so a run whose labels did not
    # change reuses it instead of cross-validating again.
    """
    ALTER TABLE evaluations ADD COLUMN fingerprint TEXT;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    """A handle on the store folder. Open one per process; `read_only=True` for dashboards."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.db_path = self.path / DB_NAME
        if read_only:
            if not self.db_path.exists():
                raise StoreError(f"no store at {self.path} (run `curate ingest` first)")
            uri = f"file:{self.db_path}?mode=ro"
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30.0)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self.conn.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            # WAL: readers never block the writer and see the last committed state.
            # synchronous=FULL: a committed label survives power loss, not only a killed process.
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self._migrate()
        else:
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.db_path} has schema version {version}; this code knows {SCHEMA_VERSION}"
                )

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, read_only={self.read_only})"

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------------
    def schema_version(self) -> int:
        row = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        if row is None:
            return 0
        value = self.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        return int(value or 0)

    def _migrate(self) -> None:
        with self.transaction():
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.db_path} has schema version {current}; this code knows "
                    f"{SCHEMA_VERSION}: upgrade the tool"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _split_sql(MIGRATIONS[version - 1]):
                    self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, utc_now()),
                )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; any exception (or a kill) leaves nothing half-written."""
        if self.conn.in_transaction:
            # Nested use joins the outer transaction: the outer one decides.
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- small shared queries ----------------------------------------------------------------
    def label_names(self) -> list[str]:
        rows = self.conn.execute("SELECT name FROM label_set ORDER BY position").fetchall()
        return [row[0] for row in rows]

    def status(self) -> dict:
        """Counts per language: examples and labeled examples (what `curate status` prints)."""
        per_language: dict[str, dict[str, int]] = {}
        for row in self.conn.execute(
            "SELECT e.language AS language, COUNT(*) AS examples, COUNT(l.example_id) AS labeled "
            "FROM examples e LEFT JOIN labels l ON l.example_id = e.id "
            "GROUP BY e.language ORDER BY e.language"
        ):
            per_language[row["language"]] = {
                "examples": row["examples"],
                "labeled": row["labeled"],
            }
        quarantined = self.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        duplicates = self.conn.execute("SELECT COUNT(*) FROM duplicates").fetchone()[0]
        return {
            "examples": sum(v["examples"] for v in per_language.values()),
            "labeled": sum(v["labeled"] for v in per_language.values()),
            "quarantined": quarantined,
            "duplicates": duplicates,
            "per_language": per_language,
            "labels": self.label_names(),
        }


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our DDL literals)."""
    return [part.strip() for part in script.split(";") if part.strip()]
