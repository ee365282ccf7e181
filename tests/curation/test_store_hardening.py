"""The store under attack: a second writer, racing embedders, odd paths, a read-only folder."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from curation.embeddings import EmbeddingCache
from curation.errors import StoreError
from curation.store import HOLDER_NAME, Store, utc_now
from tests.conftest import REPO, run_cli, write_config

#: Holds the store's write lock in a child process until its stdin closes.
HOLD_WITH_STORE = """
import sys
from curation.store import Store
store = Store(sys.argv[1])
with store.transaction():
    print("holding", flush=True)
    sys.stdin.read()
"""

#: A `curate run` (its run.lock) whose write transaction comes from a plain SQLite connection,
#: so that only run.lock can name it.
HOLD_AS_CURATE_RUN = """
import sqlite3, sys
from pathlib import Path
from curation.nightly import run_lock
store = Path(sys.argv[1])
with run_lock(store):
    conn = sqlite3.connect(store / "curate.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("holding", flush=True)
    sys.stdin.read()
    conn.execute("ROLLBACK")
"""


@contextmanager
def holding(script: str, store: Path) -> Iterator[subprocess.Popen]:
    """A child process that holds the write lock of `store` while the block runs."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(store)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "holding\n"
        yield child
    finally:
        child.stdin.close()
        assert child.wait(timeout=60) == 0


@pytest.fixture()
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CURATE_STORE", raising=False)
    monkeypatch.delenv("CURATE_BUSY_TIMEOUT", raising=False)
    Store(tmp_path / "store").close()
    return tmp_path / "store"


# -- 1. a second writer is told who holds the store ---------------------------------------------


def test_second_writer_names_the_curate_process_holding_the_write_lock(store_path: Path) -> None:
    with holding(HOLD_WITH_STORE, store_path) as child:
        record = json.loads((store_path / HOLDER_NAME).read_text())
        assert (record["pid"], record["command"]) == (child.pid, "python")
        with pytest.raises(StoreError) as caught:
            Store(store_path, busy_timeout=0.05)
    assert str(caught.value) == (
        f"store {store_path} is busy: python (pid {child.pid}, writing since "
        f"{record['since']}) holds its write lock; gave up after 0.05 s. Try again when it has "
        "finished, or wait longer with CURATE_BUSY_TIMEOUT=SECONDS"
    )
    # The holder record goes with the transaction: the lock is free and nobody is named.
    assert not (store_path / HOLDER_NAME).exists()
    with Store(store_path, busy_timeout=0.05) as store, store.transaction():
        assert json.loads((store_path / HOLDER_NAME).read_text())["pid"] == os.getpid()
    assert not (store_path / HOLDER_NAME).exists()


def test_second_writer_names_the_curate_run_from_its_lock_file(store_path: Path) -> None:
    with (
        Store(store_path, busy_timeout=0.05) as store,
        holding(HOLD_AS_CURATE_RUN, store_path) as child,
    ):
        since = (store_path / "run.lock").read_text().split()[3]
        with pytest.raises(StoreError) as caught, store.transaction():
            pass
    assert str(caught.value) == (
        f"store {store_path} is busy: `curate run` (pid {child.pid}, running since {since}) "
        "holds its write lock; gave up after 0.05 s. Try again when it has finished, or wait "
        "longer with CURATE_BUSY_TIMEOUT=SECONDS"
    )


def test_unknown_holder_and_stale_records_say_another_curate_process(store_path: Path) -> None:
    # A dead pid in both records (a killed job) must not be named.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(dead.stdout)
    (store_path / "run.lock").write_text(f"pid {pid} since 2026-01-01T00:00:00+00:00")
    (store_path / HOLDER_NAME).write_text(
        json.dumps({"pid": pid, "command": "`curate embed`", "since": utc_now()})
    )
    other = Store(store_path)
    other.conn.execute("BEGIN IMMEDIATE")  # a plain write transaction: no holder record
    try:
        with pytest.raises(StoreError) as caught:
            Store(store_path, busy_timeout=0)
    finally:
        other.conn.execute("ROLLBACK")
        other.close()
    assert str(caught.value).startswith(
        f"store {store_path} is busy: another curate process holds its write lock; gave up "
        "after 0 s."
    )


def test_cli_second_writer_exits_1_naming_the_holder(
    store_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(store_path.parent, f'[store]\npath = "{store_path}"\n')
    pool = store_path.parent / "pool.jsonl"
    pool.write_text('{"text": "hello there", "language": "en"}\n', encoding="utf-8")
    monkeypatch.setenv("CURATE_BUSY_TIMEOUT", "0.05")
    with holding(HOLD_WITH_STORE, store_path) as child:
        since = json.loads((store_path / HOLDER_NAME).read_text())["since"]
        code, out, err = run_cli(capsys, "ingest", str(pool))
    assert (code, out) == (1, "")
    assert err == (
        f"error: store {store_path} is busy: python (pid {child.pid}, writing since {since}) "
        "holds its write lock; gave up after 0.05 s. Try again when it has finished, or wait "
        "longer with CURATE_BUSY_TIMEOUT=SECONDS\n"
    )


def test_busy_timeout_from_the_environment_is_checked(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curation.errors import ConfigError

    monkeypatch.setenv("CURATE_BUSY_TIMEOUT", "soon")
    with pytest.raises(ConfigError) as caught:
        Store(store_path)
    assert str(caught.value) == "$CURATE_BUSY_TIMEOUT: 'soon' is not a number of seconds"
    monkeypatch.setenv("CURATE_BUSY_TIMEOUT", "2.5")
    with Store(store_path) as store:
        assert store.busy_timeout == 2.5
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500


# -- 2. two writers embedding the same examples -------------------------------------------------


def _add_examples(store: Store, ids: list[str]) -> None:
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO examples (id, text, raw_text, text_hash, language, language_source, "
            "source, file, line, created_at) VALUES (?, ?, ?, ?, 'en', 'given', 's', 'f', 1, ?)",
            [(i, i, i, "hash-" + i, utc_now()) for i in ids],
        )


def _shard_files_without_rows(store: Store, cache: EmbeddingCache) -> list[str]:
    recorded = {row[0] for row in store.conn.execute("SELECT path FROM embedding_shards")}
    return sorted(p.name for p in cache.folder.iterdir() if p.name not in recorded)


def test_racing_embedders_store_each_vector_once_and_leave_no_orphan_shard(
    store_path: Path,
) -> None:
    ids = [f"e{i}" for i in range(6)]
    with Store(store_path) as store:
        _add_examples(store, ids)
    rng = np.random.default_rng(0)
    first_vectors = rng.standard_normal((4, 8)).astype(np.float32)
    second_vectors = rng.standard_normal((6, 8)).astype(np.float32)
    # `curate run` and `curate embed` both found e0..e5 missing; `run` commits e0..e3 first
    # (its chunk), then `embed` commits its vectors of all six, computed before that commit.
    with Store(store_path) as run_store, Store(store_path) as embed_store:
        run_cache = EmbeddingCache(run_store, "model-x")
        embed_cache = EmbeddingCache(embed_store, "model-x")
        run_written = run_cache.add(ids[:4], first_vectors)
        embed_written = embed_cache.add(ids, second_vectors)  # was: UNIQUE constraint failed
        assert (run_written, embed_written) == (4, 2)
        assert embed_cache.add(ids, second_vectors) == 0  # all stored: nothing, not even a shard
        per_example = embed_store.conn.execute(
            "SELECT example_id, COUNT(*) FROM embeddings WHERE model = 'model-x' "
            "GROUP BY example_id ORDER BY example_id"
        ).fetchall()
        assert [tuple(row) for row in per_example] == [(i, 1) for i in ids]
        assert sorted(p.name for p in embed_cache.folder.iterdir()) == [
            "shard-000001.npy",
            "shard-000002.npy",
        ]
        assert _shard_files_without_rows(embed_store, embed_cache) == []
        loaded_ids, loaded = embed_cache.load(ids)
        # The first committed vector of each example wins; the loser's duplicates are dropped.
        np.testing.assert_array_equal(loaded[:4], first_vectors)
        np.testing.assert_array_equal(loaded[4:], second_vectors[4:])


def test_shard_whose_rows_do_not_commit_is_deleted(store_path: Path) -> None:
    with Store(store_path) as store:
        _add_examples(store, ["e0"])
        cache = EmbeddingCache(store, "model-x")
        # "ghost" is no example: the foreign key fails after the shard file was written.
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
            cache.add(["e0", "ghost"], np.ones((2, 8), dtype=np.float32))
        assert list(cache.folder.iterdir()) == []
        assert store.conn.execute("SELECT COUNT(*) FROM embedding_shards").fetchone()[0] == 0
        assert cache.add(["e0"], np.ones((1, 8), dtype=np.float32)) == 1
        assert [p.name for p in cache.folder.iterdir()] == ["shard-000001.npy"]


def test_orphan_sweep_never_deletes_the_shard_of_a_writer_mid_transaction(
    store_path: Path,
) -> None:
    with Store(store_path) as writer, Store(store_path, busy_timeout=0) as sweeper:
        cache = EmbeddingCache(writer, "model-x")
        cache.folder.mkdir(parents=True)
        with writer.transaction():
            # What add() does before its rows commit: the shard is on disk, its rows are not.
            (cache.folder / "shard-000001.npy").write_bytes(b"written, rows pending")
            with pytest.raises(StoreError, match="is busy"):
                EmbeddingCache(sweeper, "model-x").remove_orphan_files()
            assert (cache.folder / "shard-000001.npy").exists()
        # After the writer is done (here: it committed no rows), the sweep may remove it.
        assert EmbeddingCache(sweeper, "model-x").remove_orphan_files() == 1


# -- 3. store paths that cannot be a store ------------------------------------------------------

_MOUNTED: list[Path] = []


def _make_read_only(folder: Path) -> None:
    """`chmod -R a-w folder`; as root, which writes through permissions (CI runs as root), a
    read-only bind mount of the folder onto itself instead (skipped where mounts are denied)."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"root, and no bind mount here: {bind.stderr.decode().strip()}")
    _MOUNTED.append(folder)
    remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True)
    if remount.returncode != 0:
        pytest.skip(f"root, and no read-only remount here: {remount.stderr.decode().strip()}")


@pytest.fixture()
def restore_write(tmp_path: Path) -> Iterator[None]:
    yield
    while _MOUNTED:
        subprocess.run(["umount", str(_MOUNTED.pop())], check=True)
    for path in [tmp_path, *tmp_path.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux procfs")
def test_store_under_proc_names_the_path_and_the_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curation.errors import InputError

    monkeypatch.delenv("CURATE_STORE", raising=False)
    expected = (
        "cannot create the store folder /proc/curate-store (/proc does not allow new folders): "
        "set [store] path or $CURATE_STORE to a writable folder"
    )
    with pytest.raises(InputError) as caught:
        Store("/proc/curate-store")
    assert str(caught.value) == expected
    write_config(tmp_path, '[store]\npath = "/proc/curate-store"\n')
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "hello there", "language": "en"}\n', encoding="utf-8")
    assert run_cli(capsys, "ingest", str(pool)) == (2, "", f"error: {expected}\n")


def test_store_path_that_is_a_file_is_refused_for_writing_and_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curation.errors import InputError

    monkeypatch.delenv("CURATE_STORE", raising=False)
    a_file = tmp_path / "store.db"
    a_file.write_text("not a folder")
    expected = (
        f"store path {a_file} is a file, not a folder: set [store] path or $CURATE_STORE to a "
        "writable folder"
    )
    for read_only in (False, True):
        with pytest.raises(InputError) as caught:
            Store(a_file, read_only=read_only)
        assert str(caught.value) == expected
    write_config(tmp_path, f'[store]\npath = "{a_file}"\n')
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "hello there", "language": "en"}\n', encoding="utf-8")
    assert run_cli(capsys, "ingest", str(pool)) == (2, "", f"error: {expected}\n")
    assert a_file.read_text() == "not a folder"


def test_store_folder_on_a_read_only_file_system_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from curation.errors import InputError

    target = tmp_path / "mnt" / "store"

    def read_only_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    with pytest.raises(InputError) as caught:
        Store(target)
    assert str(caught.value) == (
        f"cannot create the store folder {target} (read-only file system): set [store] path or "
        "$CURATE_STORE to a writable folder"
    )


def test_writing_to_a_read_only_store_says_it_is_read_only(
    store_path: Path, restore_write: None
) -> None:
    from curation.errors import InputError

    _make_read_only(store_path)
    # The cause as the system gives it: permissions (a normal user) or a read-only mount (root).
    cause = "read-only file system" if os.geteuid() == 0 else "the folder is not writable"
    with pytest.raises(InputError) as caught:
        Store(store_path)
    assert str(caught.value) == (
        f"store is read-only: {store_path} ({cause}); commands that only "
        "read it (status, quarantine, export, the dashboard) still work"
    )
    empty = store_path.parent / "empty"
    empty.mkdir()
    _make_read_only(empty)
    with pytest.raises(InputError) as caught:
        Store(empty)
    assert str(caught.value) == (
        f"cannot create {empty / 'curate.db'} ({cause}): set [store] path or "
        "$CURATE_STORE to a writable folder"
    )


# -- 4. reading a read-only store ---------------------------------------------------------------


@pytest.fixture()
def read_only_project(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    restore_write: None,
) -> Path:
    """A store with 3 labeled examples and 1 quarantined row, then `chmod -R a-w`."""
    monkeypatch.delenv("CURATE_STORE", raising=False)
    project = tmp_path / "project"
    project.mkdir()
    write_config(project, '[store]\npath = "store"\n\n[labels]\nnames = ["neg", "pos"]\n')
    pool = project / "pool.jsonl"
    rows = [
        {"id": "a", "text": "good phone", "language": "en", "label": "pos"},
        {"id": "b", "text": "bad phone", "language": "en", "label": "neg"},
        {"id": "c", "text": "gutes Telefon", "language": "de", "label": "pos"},
        {"id": "d", "text": "", "language": "en", "label": "pos"},
    ]
    pool.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    monkeypatch.chdir(project)
    code, _, err = run_cli(capsys, "ingest", str(pool))
    assert code == 0, err
    assert sorted(p.name for p in (project / "store").iterdir()) == ["curate.db"]
    _make_read_only(project / "store")
    return project


def test_status_quarantine_and_export_read_a_read_only_store(
    read_only_project: Path, capsys: pytest.CaptureFixture
) -> None:
    store = read_only_project / "store"
    code, out, err = run_cli(capsys, "status", "--json")
    assert (code, err) == (0, "")
    status = json.loads(out)
    assert (status["examples"], status["labeled"], status["quarantined"]) == (3, 3, 1)
    assert status["per_language"] == {
        "de": {"examples": 1, "labeled": 1, "embedded": 0},
        "en": {"examples": 2, "labeled": 2, "embedded": 0},
    }
    code, out, err = run_cli(capsys, "quarantine", "--json")
    assert (code, err) == (0, "")
    assert [(r["line"], r["field"]) for r in json.loads(out)["rows"]] == [(4, "text")]
    exported = read_only_project / "out.jsonl"
    code, out, err = run_cli(capsys, "export", str(exported), "--format", "jsonl", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["rows"] == 3
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert sorted((row["id"], row["label"]) for row in lines) == [
        ("a", "pos"),
        ("b", "neg"),
        ("c", "pos"),
    ]
    # Read as it was: SQLite could create no -wal / -shm, and nothing else was written.
    assert sorted(p.name for p in store.iterdir()) == ["curate.db"]


def test_dashboard_opens_a_read_only_store(read_only_project: Path) -> None:
    from dashboard.source import open_read_only, resolve_source

    source = resolve_source(["--store", str(read_only_project / "store")])
    with open_read_only(source.store_path) as store:
        assert store.status()["examples"] == 3


def test_read_only_store_with_commits_left_in_its_wal_says_what_to_do(
    store_path: Path, restore_write: None
) -> None:
    writer = Store(store_path)
    _add_examples(writer, ["a"])
    # A copy taken while a writer had it open: the commit is in curate.db-wal, no -shm.
    copy = store_path.parent / "copy"
    copy.mkdir()
    for name in ("curate.db", "curate.db-wal"):
        (copy / name).write_bytes((store_path / name).read_bytes())
    writer.close()
    _make_read_only(copy)
    with pytest.raises(StoreError) as caught:
        Store(copy, read_only=True)
    assert str(caught.value) == (
        f"store is read-only: {copy}, and curate.db-wal holds commits not yet in curate.db, "
        "which SQLite cannot read without writing curate.db-shm; make the folder writable (or "
        "copy it somewhere writable) and read it there"
    )
