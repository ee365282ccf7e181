"""The Ray engine on a real local Ray cluster (a head and a worker node, started by the
`ray_cluster` fixture): the same vectors and the same selections as the local engine, resumable
embedding, and a job that survives a killed worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curation.config import Config, config_from_dict
from curation.embeddings import EmbeddingCache, embed_pool
from curation.ingest import ingest_files
from curation.pipeline import SelectionRequest, round_rows, select_round
from curation.pool_shards import pool_shards
from curation.store import Store
from tests.conftest import SAMPLES

pytestmark = pytest.mark.slow

FILES = [SAMPLES / "pool.jsonl", SAMPLES / "pool_unlabeled.jsonl"]
CLI = [sys.executable, "-m", "curation.cli"]


def make_config(store: Path, address: str | None = None, **engine: object) -> Config:
    data: dict = {
        "store": {"path": str(store)},
        "labels": {"names": ["negative", "neutral", "positive"]},
        "embedding": {"chunk_size": 64},
    }
    if address is not None:
        data["engine"] = {
            "kind": "ray",
            "address": address,
            "batch_size": 32,
            "pool_shard_rows": 100,
            **engine,
        }
    return config_from_dict(data)


def vectors_by_id(store_path: Path, config: Config) -> dict[str, np.ndarray]:
    with Store(store_path) as store:
        ids, vectors = EmbeddingCache.for_config(store, config).load()
    return dict(zip(ids, vectors, strict=True))


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """The samples ingested and embedded by the local engine (the reference)."""
    path = tmp_path_factory.mktemp("local") / "store"
    config = make_config(path)
    with Store(path) as store:
        ingest_files(store, config, FILES, progress=False)
        embed_pool(store, config, progress=False)
    return path, vectors_by_id(path, config)


def ingest_for_ray(path: Path, address: str) -> tuple[Config, list[int]]:
    config = make_config(path, address)
    with Store(path) as store:
        reports = ingest_files(store, config, FILES, progress=False)
    return config, [report.added for report in reports]


def shards_fully_embedded(path: Path, config: Config) -> int:
    with Store(path) as store:
        key = EmbeddingCache.for_config(store, config).key
        return sum(
            store.conn.execute(
                "SELECT COUNT(*) FROM examples e JOIN embeddings m ON m.example_id = e.id "
                "AND m.model = ? WHERE e.rowid BETWEEN ? AND ?",
                (key, shard.first_rowid, shard.last_rowid),
            ).fetchone()[0]
            == shard.rows
            for shard in pool_shards(store)
        )


class StopAfterFirstBatch(Exception):
    pass


def test_ray_embedding_equals_local_and_a_rerun_embeds_only_what_is_missing(
    ray_cluster: str, local_store: tuple[Path, dict], tmp_path: Path
) -> None:
    _, reference = local_store
    path = tmp_path / "store"
    config, added = ingest_for_ray(path, ray_cluster)
    total = sum(added)
    assert total == len(reference)
    # ingest wrote the pool as Parquet shards of at most 100 rows, one series per file
    with Store(path) as store:
        shards = pool_shards(store)
    assert [shard.rows for shard in shards] == [
        min(100, n - start) for n in added for start in range(0, n, 100)
    ]
    assert all(shard.path.is_file() for shard in shards)

    from curation.ray_engine import embed_pool_ray

    def interrupt(_: int) -> None:
        raise StopAfterFirstBatch

    with Store(path) as store, pytest.raises(StopAfterFirstBatch):
        embed_pool_ray(store, config, progress=False, on_batch=interrupt)
    with Store(path) as store:
        first = EmbeddingCache.for_config(store, config).count()
    assert 0 < first < total
    done_shards = shards_fully_embedded(path, config)

    with Store(path) as store:
        second = embed_pool_ray(store, config, progress=False)
    assert second["embedded"] == total - first
    assert second["already_embedded"] == first
    assert second["pool_shards_skipped"] == done_shards
    assert second["pool_shards_read"] == len(shards) - done_shards

    with Store(path) as store:
        third = embed_pool_ray(store, config, progress=False)
    assert (third["embedded"], third["pool_shards_read"]) == (0, 0)
    assert third["pool_shards_skipped"] == len(shards)

    got = vectors_by_id(path, config)
    assert sorted(got) == sorted(reference)
    assert max(float(np.abs(got[i] - reference[i]).max()) for i in got) <= 1e-6


def _embedding_actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "MapBatches(EmbedActor)" in command:
            pids.append(int(entry.name))
    return pids


def test_an_embedding_worker_killed_mid_job_is_replaced_and_the_job_completes(
    ray_cluster: str, local_store: tuple[Path, dict], tmp_path: Path
) -> None:
    _, reference = local_store
    path = tmp_path / "store"
    config, _ = ingest_for_ray(path, ray_cluster)
    from curation.ray_engine import embed_pool_ray

    killed: list[int] = []

    def kill_one_worker(_: int) -> None:
        if not killed:
            (victim, *_) = _embedding_actor_pids()
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    with Store(path) as store:
        result = embed_pool_ray(store, config, progress=False, on_batch=kill_one_worker)
    assert len(killed) == 1
    assert not Path(f"/proc/{killed[0]}").exists()
    assert result["embedded"] == len(reference)
    got = vectors_by_id(path, config)
    assert sorted(got) == sorted(reference)
    assert max(float(np.abs(got[i] - reference[i]).max()) for i in got) <= 1e-6


@pytest.mark.parametrize("strategy", ["margin", "entropy", "default"])
def test_select_on_ray_picks_exactly_what_the_local_engine_picks(
    ray_cluster: str, local_store: tuple[Path, dict], tmp_path: Path, strategy: str
) -> None:
    """Same store, two engines: the same ids, ranks, scores and control rows. (The samples'
    languages are small enough for every shard to keep them whole, so hybrid is exact too.)"""
    reference_path, _ = local_store
    picked = {}
    for engine in ("local", "ray"):
        path = tmp_path / engine
        shutil.copytree(reference_path, path)
        config = make_config(
            path, ray_cluster if engine == "ray" else None, pool_shard_rows=100_000
        )
        config = config.model_copy(
            update={"selection": config.selection.model_copy(update={"control_share": 0.2})}
        )
        request = SelectionRequest(budget=40, strategy=strategy, allocation="need", seed=3)
        with Store(path) as store:
            result = select_round(store, config, request)
            picked[engine] = [
                (row["id"], row["rank"], row["score"], row["is_control"])
                for row in round_rows(store, result["round_id"])
            ]
        assert result["engine"] == engine
        assert result["selected"] == 40
        if engine == "ray":
            # every candidate in one task of at most 100 000 rows
            assert result["scoring_tasks"] == 1
    assert picked["ray"] == picked["local"]
    # a random control slice of 20% of each language's quota (of at least 2)
    controls = sum(round(0.2 * quota) for quota in result["per_language"].values() if quota >= 2)
    assert sum(control for *_, control in picked["local"]) == controls > 0


def test_select_on_ray_with_many_scoring_tasks_still_picks_what_local_picks(
    ray_cluster: str, local_store: tuple[Path, dict], tmp_path: Path
) -> None:
    """One task per vector shard (tasks of at most 1 row take one shard each): margin's union
    of 10 tasks' candidates is exact."""
    reference_path, _ = local_store
    picked = {}
    for engine in ("local", "ray"):
        path = tmp_path / engine
        shutil.copytree(reference_path, path)
        config = make_config(path, ray_cluster if engine == "ray" else None, pool_shard_rows=1)
        config = config.model_copy(
            update={"selection": config.selection.model_copy(update={"control_share": 0.0})}
        )
        request = SelectionRequest(budget=25, strategy="margin", allocation="equal", seed=0)
        with Store(path) as store:
            result = select_round(store, config, request)
            picked[engine] = [row["id"] for row in round_rows(store, result["round_id"])]
            with_candidates = store.conn.execute(
                "SELECT COUNT(DISTINCT m.shard) FROM embeddings m LEFT JOIN labels l "
                "ON l.example_id = m.example_id WHERE l.example_id IS NULL"
            ).fetchone()[0]
            per_language = store.conn.execute(
                "SELECT e.language, COUNT(*) FROM examples e LEFT JOIN labels l "
                "ON l.example_id = e.id WHERE l.example_id IS NULL GROUP BY e.language"
            ).fetchall()
        if engine == "ray":
            assert result["scoring_tasks"] == with_candidates > 1
            # The first pass sets each language's bar at its pool-wide 38th best margin score
            # (25 plus half for the near-duplicate guard): all tasks together keep 38 rows of a
            # language, not 38 each.
            assert result["candidates_kept"] == sum(min(38, n) for _, n in per_language)
    assert picked["ray"] == picked["local"]


def test_curate_embed_select_and_run_go_through_the_ray_cluster(
    ray_cluster: str, local_store: tuple[Path, dict], tmp_path: Path
) -> None:
    """The commands a user runs, with `[engine] kind = "ray"` in curate.toml: the vectors, the
    selection and the nightly job's queue equal the local engine's."""
    reference_path, reference = local_store
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(SAMPLES / "pool.jsonl", inbox / "pool.jsonl")
    shutil.copy(SAMPLES / "pool_unlabeled.jsonl", inbox / "pool_unlabeled.jsonl")
    # The two stores hold the same vectors in a different order (local embeds longest first,
    # Ray as batches return). Hybrid's clustering, the control draw and the cross-validation
    # folds behind "need" allocation and calibration see that order; margin with an equal split
    # does not.
    common = (
        '[labels]\nnames = ["negative", "neutral", "positive"]\n'
        '[selection]\nstrategy = "margin"\ncontrol_share = 0.0\nallocation = "equal"\n'
        "calibrate = false\n"
        '[run]\ninbox = ["inbox"]\nqueue_target = 24\n'
    )
    for name, engine in (
        ("local", ""),
        ("ray", f'[engine]\nkind = "ray"\naddress = "{ray_cluster}"\npool_shard_rows = 100\n'),
    ):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copytree(inbox, folder / "inbox")
        (folder / "curate.toml").write_text(common + engine)

    def curate(folder: Path, *args: str) -> dict:
        done = subprocess.run(
            [*CLI, *args, "--json"], cwd=folder, capture_output=True, text=True, timeout=600
        )
        assert done.returncode in (0, 3), done.stderr  # 3: success with warnings (no server)
        return json.loads(done.stdout)

    runs = {name: curate(tmp_path / name, "run") for name in ("local", "ray")}
    for name, run in runs.items():
        assert run["stages"]["embed"]["counts"]["embedded"] == len(reference), name
        assert run["stages"]["select"]["counts"]["selected"] == 24, name
    ray_folder = tmp_path / "ray"
    with Store(ray_folder / "curation-data") as store:
        assert len(pool_shards(store)) == 8  # 316 + 320 new examples in shards of <= 100
    queues = {}
    for name in ("local", "ray"):
        db = sqlite3.connect(tmp_path / name / "curation-data" / "curate.db")
        queues[name] = db.execute(
            "SELECT example_id, rank, is_control FROM round_items ORDER BY round_id, rank"
        ).fetchall()
        db.close()
    assert queues["ray"] == queues["local"]

    # `curate select` and `curate embed` by hand, after the nightly run
    picks = {name: curate(tmp_path / name, "select", "--budget", "12") for name in queues}
    assert picks["ray"]["engine"] == "ray" and picks["local"]["engine"] == "local"
    assert picks["ray"]["per_language"] == picks["local"]["per_language"]
    assert sum(picks["ray"]["per_language"].values()) == 12
    embedded = curate(ray_folder, "embed")
    assert (embedded["embedded"], embedded["engine"]) == (0, "ray")
    assert embedded["already_embedded"] == len(reference)
    got = vectors_by_id(ray_folder / "curation-data", make_config(ray_folder / "curation-data"))
    assert max(float(np.abs(got[i] - reference[i]).max()) for i in got) <= 1e-6
    del reference_path
