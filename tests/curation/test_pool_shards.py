"""The pool's Parquet shards (curation.pool_shards), the `[engine]` section, and the single-pass
shard plan the Ray engine's select uses (selection.two_stage.per_language_plan). No Ray here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.config import Config, config_from_dict
from curation.errors import ConfigError
from curation.ingest import ingest_files
from curation.pool_shards import pool_folder, pool_shards, sync_pool_shards
from curation.store import Store
from selection.registry import get_strategy
from selection.two_stage import per_language_plan


def write_pool(path: Path, start: int, count: int) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(start, start + count):
            language = ("en", "de", "fr")[i % 3]
            handle.write(json.dumps({"id": f"x{i}", "text": f"text {i}", "language": language}))
            handle.write("\n")
    return path


def engine_config(store: Path, kind: str = "ray", rows: int = 10) -> Config:
    return config_from_dict(
        {
            "store": {"path": str(store)},
            "languages": {"detect": False},
            "engine": {"kind": kind, "pool_shard_rows": rows},
        }
    )


def shard_contents(store: Store) -> list[tuple[list[str], list[str], list[str]]]:
    out = []
    for shard in pool_shards(store):
        table = pq.read_table(shard.path)
        out.append(
            (
                table.column("id").to_pylist(),
                table.column("text").to_pylist(),
                table.column("language").to_pylist(),
            )
        )
    return out


def test_ingest_writes_the_new_examples_as_shards_of_at_most_n_rows(tmp_path: Path) -> None:
    config = engine_config(tmp_path / "store")
    with Store(config.store.path) as store:
        ingest_files(store, config, [write_pool(tmp_path / "a.jsonl", 0, 25)], progress=False)
        assert [(s.shard, s.rows, s.first_rowid, s.last_rowid) for s in pool_shards(store)] == [
            (1, 10, 1, 10),
            (2, 10, 11, 20),
            (3, 5, 21, 25),
        ]
        ingest_files(store, config, [write_pool(tmp_path / "b.jsonl", 25, 3)], progress=False)
        shards = pool_shards(store)
        assert [(s.shard, s.rows, s.first_rowid, s.last_rowid) for s in shards] == [
            (1, 10, 1, 10),
            (2, 10, 11, 20),
            (3, 5, 21, 25),
            (4, 3, 26, 28),
        ]
        assert [shard.path.name for shard in shards] == [
            f"part-00000{i}.parquet" for i in (1, 2, 3, 4)
        ]
        ids = [i for part in shard_contents(store) for i in part[0]]
        assert ids == [f"x{i}" for i in range(28)]
        assert shard_contents(store)[3] == (
            ["x25", "x26", "x27"],
            ["text 25", "text 26", "text 27"],
            ["de", "fr", "en"],
        )
        # covered: nothing more to write
        assert sync_pool_shards(store, rows_per_shard=10) == []


def test_the_local_engine_writes_no_pool_shards_until_ray_syncs_them(tmp_path: Path) -> None:
    config = engine_config(tmp_path / "store", kind="local")
    with Store(config.store.path) as store:
        ingest_files(store, config, [write_pool(tmp_path / "a.jsonl", 0, 7)], progress=False)
        assert pool_shards(store) == [] and not pool_folder(store).exists()
        # a store made on the local engine gets its shards when Ray first reads it
        written = sync_pool_shards(store, rows_per_shard=4)
        assert [(s.rows, s.first_rowid, s.last_rowid) for s in written] == [(4, 1, 4), (3, 5, 7)]
        assert pool_shards(store) == written


def test_a_file_no_shard_row_names_is_deleted_and_recorded_ones_are_kept(tmp_path: Path) -> None:
    config = engine_config(tmp_path / "store")
    with Store(config.store.path) as store:
        ingest_files(store, config, [write_pool(tmp_path / "a.jsonl", 0, 12)], progress=False)
        orphan = pool_folder(store) / "part-000009.parquet"
        orphan.write_bytes(b"left by a killed writer")
        leftover = pool_folder(store) / "part-000003.parquet.tmp"
        leftover.write_bytes(b"half written")
        assert sync_pool_shards(store, rows_per_shard=10) == []
        assert sorted(p.name for p in pool_folder(store).iterdir()) == [
            "part-000001.parquet",
            "part-000002.parquet",
        ]


def test_a_sync_that_fails_before_commit_leaves_no_file_and_no_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = engine_config(tmp_path / "store", kind="local")
    with Store(config.store.path) as store:
        ingest_files(store, config, [write_pool(tmp_path / "a.jsonl", 0, 15)], progress=False)
        import curation.pool_shards as module

        calls = []

        def fail_on_second(*args: object) -> str:
            calls.append(1)
            if len(calls) == 2:
                raise OSError("disk full")
            return "2026-11-29T00:00:00Z"

        monkeypatch.setattr(module, "utc_now", fail_on_second)
        with pytest.raises(OSError, match="disk full"):
            sync_pool_shards(store, rows_per_shard=10)
        assert pool_shards(store) == []
        assert sorted(pool_folder(store).iterdir()) == []


def test_engine_section_is_strict_and_round_trips() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"engine": {"kind": "spark"}}, origin="curate.toml")
    assert str(caught.value) == ("curate.toml: [engine] kind: Input should be 'local' or 'ray'")
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"engine": {"kind": "ray", "workers": 2}}, origin="curate.toml")
    assert str(caught.value) == "curate.toml: [engine] workers: unknown key"
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"engine": {"num_cpus": 0}}, origin="curate.toml")
    assert str(caught.value) == "curate.toml: [engine] num_cpus: Input should be greater than 0"
    config = config_from_dict(
        {"engine": {"kind": "ray", "address": "auto", "num_cpus": 2, "num_gpus": 0.5}}
    )
    assert config.engine.num_cpus == 2.0 and config.engine.num_gpus == 0.5
    assert Config.model_validate(config.model_dump()) == config
    assert Config().engine.kind == "local" and Config().engine.num_gpus is None


def test_per_language_plan_keeps_what_a_quota_of_the_whole_budget_needs() -> None:
    margin = per_language_plan(
        get_strategy("margin", max_similarity=0.9), 40, n_shards=3, control=8
    ).kwargs()
    assert margin["per_language_k"] == 60  # 40 plus half for the near-duplicate guard
    assert margin["max_score_total"] is None and margin["score_threshold"] is None
    assert margin["diversity_sample"] == 3  # ceil(8 controls / 3 shards), uniform
    assert margin["diversity_method"] == "uniform"
    exact = per_language_plan(get_strategy("margin", max_similarity=None), 40, n_shards=3)
    assert exact.kwargs()["per_language_k"] == 40 and exact.kwargs()["diversity_sample"] == 0

    hybrid = get_strategy("default")
    plan = per_language_plan(hybrid, 40, n_shards=7).kwargs()
    assert plan["per_language_k"] == hybrid.candidate_factor * 40
    assert plan["diversity_sample"] == math.ceil(hybrid.max_reference / 7)
    cold = per_language_plan(hybrid, 40, n_shards=7, has_probs=False).kwargs()
    assert (cold["strategy_score"], cold["per_language_k"]) == (None, 0)
    assert cold["diversity_sample"] == math.ceil(hybrid.max_reference / 7)

    kcenter = per_language_plan("kcenter", 40, n_shards=4, control=8).kwargs()
    assert kcenter["diversity_method"] == "farthest" and kcenter["diversity_sample"] == 42


def test_an_address_where_no_ray_head_answers_fails_fast_naming_it() -> None:
    """ray.init would retry for minutes; a nightly job must fail at once with the address."""
    import socket

    from curation.config import EngineConfig
    from curation.ray_engine import ray_session

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    with (
        pytest.raises(ConfigError) as caught,
        ray_session(EngineConfig(kind="ray", address=address)),
    ):
        pass
    assert str(caught.value) == (
        f"[engine] address = '{address}': no Ray head node answers there ([Errno 111] "
        "Connection refused); start one with `ray start --head`, or fix the address"
    )


def test_shards_are_written_in_row_groups_that_workers_read_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray worker reads one row group (curation.ray_engine.read_pool_shards), so a single
    large shard still feeds every actor."""
    import curation.pool_shards as module
    from curation.ray_engine import read_pool_shards

    monkeypatch.setattr(module, "ROW_GROUP_ROWS", 4)
    config = engine_config(tmp_path / "store", rows=100)
    with Store(config.store.path) as store:
        ingest_files(store, config, [write_pool(tmp_path / "a.jsonl", 0, 10)], progress=False)
        (shard,) = pool_shards(store)
    assert [pq.ParquetFile(shard.path).metadata.row_group(i).num_rows for i in range(3)] == [
        4,
        4,
        2,
    ]
    import numpy as np

    batch = read_pool_shards(
        {"path": np.asarray([str(shard.path)] * 2), "row_group": np.asarray([2, 0])}
    )
    assert batch["id"].tolist() == ["x8", "x9", "x0", "x1", "x2", "x3"]
    assert batch["text"].tolist()[:2] == ["text 8", "text 9"]
    assert batch["language"].tolist()[:2] == ["fr", "en"]


def test_the_nightly_view_of_a_pool_is_its_labeled_rows_the_batch_and_a_sample(
    tmp_path: Path,
) -> None:
    """`load_pool_view` (the nightly evaluate stage with the Ray engine): every labeled row
    with the vectors and order `load_pool` gives, every row of tonight's files, and at most
    `per_language` of each language's other rows, seeded; the labeled set's fingerprint (what
    the stored evaluation is keyed by) is the full pool's."""
    import numpy as np

    from curation.embeddings import EmbeddingCache
    from curation.pool import load_pool, load_pool_view
    from curation.quality import labels_fingerprint

    config = engine_config(tmp_path / "store", kind="local")
    labeled = tmp_path / "labeled.jsonl"
    with open(labeled, "w", encoding="utf-8") as handle:
        for i in range(12):
            row = {"id": f"l{i}", "text": f"labeled {i}", "language": ("en", "de")[i % 2]}
            handle.write(json.dumps({**row, "label": ("neg", "pos")[i % 3 % 2]}) + "\n")
    with Store(config.store.path) as store:
        ingest_files(
            store,
            config,
            [
                labeled,
                write_pool(tmp_path / "old.jsonl", 0, 30),
                write_pool(tmp_path / "new.jsonl", 30, 6),
            ],
            progress=False,
            new_labels=True,
        )
        ids = [row[0] for row in store.conn.execute("SELECT id FROM examples ORDER BY rowid")]
        vectors = np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32)
        cache = EmbeddingCache.for_config(store, config)
        cache.add(ids[::-1][:20], vectors[::-1][:20])  # two shards, not in rowid order
        cache.add(ids, vectors)
        full = load_pool(store, config)
        view = load_pool_view(
            store, config, files=[str(tmp_path / "new.jsonl")], per_language=4, seed=7
        )
        again = load_pool_view(
            store, config, files=[str(tmp_path / "new.jsonl")], per_language=4, seed=7
        )
    assert view.ids.tolist() == again.ids.tolist()
    order = {example_id: i for i, example_id in enumerate(full.ids.tolist())}
    assert [order[i] for i in view.ids] == sorted(order[i] for i in view.ids)  # pool order
    assert view.ids[view.labeled].tolist() == full.ids[full.labeled].tolist()
    np.testing.assert_array_equal(view.vectors[view.labeled], full.vectors[full.labeled])
    assert labels_fingerprint(view, config, 0) == labels_fingerprint(full, config, 0)
    batch = {f"x{i}" for i in range(30, 36)}
    assert batch <= set(view.ids.tolist())
    rest = [i for i in view.ids[~view.labeled].tolist() if i not in batch]
    counts = {c: sum(1 for i in rest if full.languages[order[i]] == c) for c in ("en", "de", "fr")}
    assert counts == {"en": 4, "de": 4, "fr": 4}  # 10 of each in old.jsonl
    assert len(view) == 12 + 6 + 12 and view.not_embedded == 0
