from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curation.config import config_from_dict
from curation.embeddings import EmbeddingCache
from curation.index import VectorIndex, choose_kind, index_folder, update_index
from curation.store import Store, utc_now

LANGS = ("en", "ar", "hi")


def _data(n: int, dim: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"x{i}" for i in range(n)]
    languages = [LANGS[i % 3] for i in range(n)]
    queries = rng.standard_normal((15, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return vectors, ids, languages, queries


def _brute(vectors, ids, queries, k, mask=None):
    scores = queries @ vectors.T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), [[ids[j] for j in row] for row in order]


def test_flat_search_equals_brute_force() -> None:
    vectors, ids, languages, queries = _data(500)
    index = VectorIndex(24, kind="flat")
    index.add(vectors, ids, languages)
    scores, found = index.search(queries, 10)
    expected_scores, expected_ids = _brute(vectors, ids, queries, 10)
    assert found == expected_ids
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_language_restriction_equals_brute_force_on_the_subset(kind: str) -> None:
    vectors, ids, languages, queries = _data(3000)
    index = VectorIndex(24, kind=kind, nprobe=64, ef_search=256)
    index.add(vectors, ids, languages)
    mask = np.array([lang == "ar" for lang in languages])
    _, found = index.search(queries, 10, language="ar")
    _, expected = _brute(vectors, ids, queries, 10, mask)
    assert all(languages[int(i[1:])] == "ar" for row in found for i in row)
    hits = sum(len(set(a) & set(b)) for a, b in zip(found, expected, strict=True))
    recall = hits / (10 * len(queries))
    if kind == "flat":
        assert found == expected
    else:
        assert recall >= 0.9, recall


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_against_brute_force(kind: str) -> None:
    vectors, ids, languages, queries = _data(5000, seed=3)
    index = VectorIndex(24, kind=kind, nprobe=32, ef_search=128)
    index.add(vectors, ids, languages)
    _, found = index.search(queries, 10)
    _, expected = _brute(vectors, ids, queries, 10)
    hits = sum(len(set(a) & set(b)) for a, b in zip(found, expected, strict=True))
    assert hits / (10 * len(queries)) >= 0.9


def test_save_load_round_trip_and_incremental_add(tmp_path: Path) -> None:
    vectors, ids, languages, queries = _data(400)
    index = VectorIndex(24, kind="flat")
    index.add(vectors[:300], ids[:300], languages[:300])
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded is not None and len(loaded) == 300 and loaded.kind == "flat"
    loaded.add(vectors[300:], ids[300:], languages[300:])
    _, found = loaded.search(queries, 5, language=["en", "hi"])
    mask = np.array([lang in {"en", "hi"} for lang in languages])
    assert found == _brute(vectors, ids, queries, 5, mask)[1]


def test_inconsistent_saved_index_is_rebuilt(tmp_path: Path) -> None:
    vectors, ids, languages, _ = _data(50)
    index = VectorIndex(24)
    index.add(vectors, ids, languages)
    index.save(tmp_path / "idx")
    np.save(tmp_path / "idx" / "ids.npy", np.asarray(ids[:10], dtype=str))
    assert VectorIndex.load(tmp_path / "idx") is None
    assert VectorIndex.load(tmp_path / "missing") is None


def test_search_on_empty_index_and_fewer_than_k() -> None:
    empty = VectorIndex(4)
    scores, found = empty.search(np.ones(4), 3)
    assert found == [[]] and np.isneginf(scores).all()
    index = VectorIndex(4)
    index.add(np.eye(4, dtype=np.float32)[:2], ["a", "b"], ["en", "en"])
    scores, found = index.search(np.array([1, 0, 0, 0], dtype=np.float32), 3)
    assert found == [["a", "b"]]
    assert scores[0, 0] == pytest.approx(1.0) and np.isneginf(scores[0, 2])


def test_choose_kind() -> None:
    config = config_from_dict({"index": {"exact_max": 100}}).index
    assert choose_kind(100, config) == "flat"
    assert choose_kind(101, config) == "hnsw"
    ivf = config_from_dict({"index": {"exact_max": 100, "approximate": "ivf"}}).index
    assert choose_kind(101, ivf) == "ivf"
    forced = config_from_dict({"index": {"kind": "flat"}}).index
    assert choose_kind(10**7, forced) == "flat"


def _fill_store(store: Store, config, vectors, ids, languages) -> None:
    now = utc_now()
    with store.transaction():
        store.conn.executemany(
            "INSERT INTO examples (id, text, raw_text, text_hash, language, language_source, "
            "source, file, line, created_at) VALUES (?, ?, ?, ?, ?, 'given', 's', 'f', 1, ?)",
            [(i, i, i, "h" + i, lang, now) for i, lang in zip(ids, languages, strict=True)],
        )
    EmbeddingCache.for_config(store, config).add(ids, vectors)


def test_update_index_adds_only_new_vectors_and_switches_kind(tmp_path: Path) -> None:
    vectors, ids, languages, queries = _data(260)
    config = config_from_dict({"index": {"exact_max": 200}})
    with Store(tmp_path / "s") as store:
        _fill_store(store, config, vectors[:150], ids[:150], languages[:150])
        index, counts = update_index(store, config)
        assert counts == {"indexed": 150, "added": 150, "kind": "flat", "rebuilt": True}
        _, counts = update_index(store, config)
        assert counts == {"indexed": 150, "added": 0, "kind": "flat", "rebuilt": False}
    with Store(tmp_path / "s2") as store:
        _fill_store(store, config, vectors[:150], ids[:150], languages[:150])
        update_index(store, config)
        _fill_store(store, config, vectors[150:180], ids[150:180], languages[150:180])
        index, counts = update_index(store, config)
        assert counts == {"indexed": 180, "added": 30, "kind": "flat", "rebuilt": False}
        _, found = index.search(queries, 5)
        assert found == _brute(vectors[:180], ids[:180], queries, 5)[1]
        _fill_store(store, config, vectors[180:], ids[180:], languages[180:])
        index, counts = update_index(store, config)
        assert counts == {"indexed": 260, "added": 260, "kind": "hnsw", "rebuilt": True}
        assert (
            index_folder(store, EmbeddingCache.for_config(store, config)) / "meta.json"
        ).exists()
