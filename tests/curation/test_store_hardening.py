"""The store under attack: a second writer, racing embedders, odd paths, a read-only folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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
