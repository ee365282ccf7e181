"""The embedded store: one SQLite database in WAL mode, plus vector shards beside it.

Why SQLite in WAL mode: many readers (the dashboard) and one writer (a job) work at once, and a
writer killed mid-transaction leaves the database exactly as before that transaction. Every write
path in this tool runs inside `Store.transaction()` (BEGIN IMMEDIATE ... COMMIT).

Layout under the store folder (`[store] path`, or `$CURATE_STORE`; default `./curation-data/`)::

    curate.db               the database (plus curate.db-wal / -shm while open)
    write.holder            who holds the write transaction right now (pid, command, since);
                            written after BEGIN IMMEDIATE, removed before COMMIT
    vectors/<model-slug>/   float32/float16 .npy shards, see curation.embeddings
    pool/                   the pool as Parquet shards for the Ray engine, see curation.pool_shards
    index/<model-slug>/     persisted FAISS index, see curation.index

One writer at a time: a second writer waits up to `$CURATE_BUSY_TIMEOUT` seconds (default 30)
for the write lock, then fails with a StoreError that names the holder (from `write.holder`, or
the `curate run` that holds `run.lock`) instead of SQLite's bare "database is locked".

A read-only store folder (a snapshot, a mount, `chmod -R a-w`) can still be read: SQLite's WAL
mode needs a writable `-shm` index even to read, so when it cannot create one the store is opened
`immutable=1` instead, which is exact as long as no `-wal` file holds commits (a cleanly closed
store has none). See https://www.sqlite.org/wal.html, "Read-Only Databases".

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

import errno
import json
import math
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from curation.errors import ConfigError, InputError, StoreError

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
    # version 5: each pull's per-annotator quality estimate (Dawid-Skene's, or agreement with
    # the majority); the proxy's per-language temperatures, per labeled set (fingerprint), with the
    # cross-fitted calibration report; the stop set (a fixed sample of each language's pool) and
    # the proxy's predictions on it once per labeled set (fingerprint: a select that saw no new
    # labels adds no snapshot, which would fake stability), for per-language stopping.
    """
    CREATE TABLE proxy_calibrations (
        fingerprint TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        payload TEXT NOT NULL
    );

    CREATE TABLE annotator_quality (
        computed_at TEXT NOT NULL,
        annotator TEXT NOT NULL,
        method TEXT NOT NULL CHECK (method IN ('majority', 'dawid_skene')),
        answers INTEGER NOT NULL,
        accuracy REAL,
        PRIMARY KEY (computed_at, annotator)
    );

    CREATE TABLE stop_set (
        example_id TEXT PRIMARY KEY REFERENCES examples(id),
        language TEXT NOT NULL,
        added_at TEXT NOT NULL
    );

    CREATE TABLE stop_snapshots (
        fingerprint TEXT NOT NULL,
        language TEXT NOT NULL,
        created_at TEXT NOT NULL,
        labels INTEGER NOT NULL,
        f1 REAL,
        PRIMARY KEY (fingerprint, language)
    );

    CREATE TABLE stop_predictions (
        fingerprint TEXT NOT NULL,
        example_id TEXT NOT NULL REFERENCES examples(id),
        predicted TEXT NOT NULL,
        PRIMARY KEY (fingerprint, example_id)
    );
    """,
    # version 6: the pool as Parquet shards (id, text, language) for a distributed engine to
    # read (curation.pool_shards): each covers the examples of one rowid range; examples are
    # never deleted or rewritten, so a shard is final once written.
    """
    CREATE TABLE pool_shards (
        shard INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        rows INTEGER NOT NULL,
        first_rowid INTEGER NOT NULL,
        last_rowid INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

#: Seconds a writer waits for another writer's transaction before giving up.
BUSY_TIMEOUT_ENV = "CURATE_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT = 30.0
#: Who holds the write transaction: JSON {"pid", "command", "since"}; see Store.transaction.
HOLDER_NAME = "write.holder"
#: The nightly job's lock file (curation.nightly.run_lock writes "pid N since T" into it).
RUN_LOCK_NAME = "run.lock"
STORE_PATH_HINT = "set [store] path or $CURATE_STORE to a writable folder"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def delete_unrecorded_files(folder: Path, recorded: set[str]) -> int:
    """Delete the files of ``folder`` whose name is not in ``recorded`` (a killed writer's shard,
    or its ``.tmp``); returns how many. Call it inside the write transaction that read
    ``recorded``: outside it, another writer's shard is on disk before its row commits."""
    if not folder.exists():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.name not in recorded:
            path.unlink()
            removed += 1
    return removed


def busy_timeout_seconds(explicit: float | None = None) -> float:
    """`explicit`, else `$CURATE_BUSY_TIMEOUT`, else 30 s."""
    if explicit is not None:
        value, origin = float(explicit), "busy_timeout"
    else:
        raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_BUSY_TIMEOUT
        origin = f"${BUSY_TIMEOUT_ENV}"
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{origin}: {raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{origin}: {value!r} must be a number of seconds >= 0")
    return value


class Store:
    """A handle on the store folder. Open one per process; `read_only=True` for dashboards.

    `busy_timeout`: seconds to wait for another process's write transaction (default
    `$CURATE_BUSY_TIMEOUT`, else 30).
    """

    def __init__(
        self, path: str | Path, *, read_only: bool = False, busy_timeout: float | None = None
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.db_path = self.path / DB_NAME
        self.busy_timeout = busy_timeout_seconds(busy_timeout)
        # Fixed at open: `curate run --dry-run` re-points `path` of a scratch copy at the real
        # store (for its vectors), and its transactions must not leave marks there.
        self._holder_path = self.path / HOLDER_NAME
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"store path {self.path} is a file, not a folder: {STORE_PATH_HINT}")
        self.conn = self._open_read_only() if read_only else self._open_writer()

    def _connect(self, target: str, *, uri: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(target, uri=uri, isolation_level=None, timeout=self.busy_timeout)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.db_path.is_file():
            raise StoreError(f"no store at {self.path} (run `curate ingest` first)")
        uri = self.db_path.resolve().as_uri()
        conn = self._connect(f"{uri}?mode=ro", uri=True)
        self.conn = conn
        try:
            version = self.schema_version()  # the first read: here SQLite opens the WAL index
        except sqlite3.OperationalError as exc:
            conn.close()
            if not _cannot_write(exc):
                raise StoreError(f"cannot read {self.db_path}: {exc}") from None
            # A read-only folder: a WAL reader needs a -shm file SQLite cannot create here.
            # With no commits waiting in a -wal file, curate.db alone is the whole store and
            # nothing can change it while the folder is read-only: read it as immutable.
            wal = self.db_path.with_name(DB_NAME + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise StoreError(
                    f"store is read-only: {self.path}, and {wal.name} holds commits not yet in "
                    f"{DB_NAME}, which SQLite cannot read without writing {DB_NAME}-shm; make "
                    "the folder writable (or copy it somewhere writable) and read it there"
                ) from None
            conn = self._connect(f"{uri}?mode=ro&immutable=1", uri=True)
            self.conn = conn
            try:
                version = self.schema_version()
            except sqlite3.OperationalError as again:
                conn.close()
                raise StoreError(f"cannot read {self.db_path}: {again}") from None
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"{self.db_path} has schema version {version}; this code knows {SCHEMA_VERSION}"
            )
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot create the store folder {self.path} ({_mkdir_failure(self.path, exc)}): "
                f"{STORE_PATH_HINT}"
            ) from None
        existed = self.db_path.exists()
        conn: sqlite3.Connection | None = None
        try:
            # Opening a new file fails here already, an existing one at the first write.
            conn = self.conn = self._connect(str(self.db_path))
            # WAL: readers never block the writer and see the last committed state.
            # synchronous=FULL: a committed label survives power loss, not only a killed process.
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            if _is_busy(exc):
                raise self._busy_error() from None
            if not _cannot_write(exc):
                raise
            cause = _write_failure(self.path, self.db_path)
            if not existed:
                raise InputError(
                    f"cannot create {self.db_path} ({cause}): {STORE_PATH_HINT}"
                ) from None
            raise InputError(
                f"store is read-only: {self.path} ({cause}); commands that only read it "
                "(status, quarantine, export, the dashboard) still work"
            ) from None
        except StoreError:
            self.conn.close()
            raise
        return self.conn

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
        """BEGIN IMMEDIATE ... COMMIT; any exception (or a kill) leaves nothing half-written.

        Waits up to `busy_timeout` seconds for another writer, then raises a StoreError naming
        it. While the transaction is open, `write.holder` says who holds it.
        """
        if self.conn.in_transaction:
            # Nested use joins the outer transaction: the outer one decides.
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise self._busy_error() from None
            raise
        self._record_holder()
        try:
            yield self.conn
        except BaseException:
            self._clear_holder()
            self.conn.execute("ROLLBACK")
            raise
        # Cleared while the lock is still ours: after COMMIT the next writer may write its own.
        self._clear_holder()
        self.conn.execute("COMMIT")

    # -- who holds the write lock ----------------------------------------------------------------
    def _record_holder(self) -> None:
        record = {"pid": os.getpid(), "command": _command_name(sys.argv), "since": utc_now()}
        # Only a courtesy for a second writer's error message: never a reason to fail.
        with suppress(OSError):
            self._holder_path.write_text(json.dumps(record), encoding="utf-8")

    def _clear_holder(self) -> None:
        with suppress(OSError):
            self._holder_path.unlink(missing_ok=True)

    def holder(self) -> str:
        """Who holds the store's write lock, as words for an error message."""
        me = os.getpid()
        run = _run_lock_holder(self.path / RUN_LOCK_NAME)
        record = _read_holder(self._holder_path)
        if record is not None and record["pid"] != me and _alive(record["pid"]):
            if run is not None and run[0] == record["pid"]:
                return f"`curate run` (pid {run[0]}, running since {run[1]})"
            return f"{record['command']} (pid {record['pid']}, writing since {record['since']})"
        if run is not None and run[0] != me:
            return f"`curate run` (pid {run[0]}, running since {run[1]})"
        return "another curate process"

    def _busy_error(self) -> StoreError:
        return StoreError(
            f"store {self.path} is busy: {self.holder()} holds its write lock; gave up after "
            f"{self.busy_timeout:g} s. Try again when it has finished, or wait longer with "
            f"{BUSY_TIMEOUT_ENV}=SECONDS"
        )

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


# -- error helpers ------------------------------------------------------------------------------


def _is_busy(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(exc)


def _cannot_write(exc: sqlite3.Error) -> bool:
    """SQLite could not create or write a file of the store (folder or file not writable)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM"))


def _read_only_file_system(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _mkdir_failure(path: Path, exc: OSError) -> str:
    """Why `path` could not be created, in words."""
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    existing = next((parent for parent in path.parents if parent.is_dir()), None)
    if exc.errno == errno.ENOENT and existing is not None and existing == path.parent:
        # procfs and sysfs answer ENOENT to mkdir although the parent is there.
        return f"{existing} does not allow new folders"
    return (exc.strerror or str(exc)).lower()


def _write_failure(folder: Path, db_path: Path) -> str:
    """Why SQLite could not write the store, in words."""
    if _read_only_file_system(folder):
        return "read-only file system"
    if not os.access(folder, os.W_OK):
        return "the folder is not writable"
    if db_path.exists() and not os.access(db_path, os.W_OK):
        return f"{db_path.name} is not writable"
    return "permission denied"


def _command_name(argv: list[str]) -> str:
    """`curate <command>` for the holder record; never the arguments (they may hold secrets)."""
    program = Path(argv[0]).name if argv else "python"
    if program in ("", "-c", "-m"):
        return "python"
    if program == "__main__.py" or program == "curate" or "curation" in Path(argv[0]).parts:
        words = iter(argv[1:])
        for word in words:
            if word in ("-c", "--config"):
                next(words, None)
            elif not word.startswith("-"):
                return f"`curate {word}`" if word.isidentifier() else "`curate`"
        return "`curate`"
    return program


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    except OSError:
        return False
    return True


def _read_holder(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return {
            "pid": int(record["pid"]),
            "command": str(record["command"]),
            "since": str(record["since"]),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _run_lock_holder(path: Path) -> tuple[int, str] | None:
    """(pid, since) of a live `curate run` from its lock file ("pid N since T"), else None."""
    try:
        words = path.read_text(encoding="utf-8").split()
    except OSError:
        return None
    if len(words) != 4 or words[0] != "pid" or words[2] != "since" or not words[1].isdigit():
        return None
    pid = int(words[1])
    return (pid, words[3]) if _alive(pid) else None
