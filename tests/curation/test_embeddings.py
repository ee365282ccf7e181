from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curation.config import EmbeddingConfig, config_from_dict
from curation.embeddings import (
    Embedder,
    EmbeddingCache,
    embed_pool,
    is_e5,
    model_key,
    packaged_model_path,
    passage_prefix,
    query_prefix,
    resolve_model_source,
)
from curation.errors import StoreError
from curation.ingest import ingest_files
from curation.store import Store


def _pool(tmp_path: Path, n: int = 30) -> Path:
    path = tmp_path / "pool.jsonl"
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta"]
    with open(path, "w") as handle:
        for i in range(n):
            text = " ".join(words[(i + j) % len(words)] for j in range(1 + i % 9)) + f" {i}"
            handle.write(json.dumps({"id": f"e{i:03d}", "text": text, "language": "en"}) + "\n")
    return path


def _config(model_dir: Path, **embedding):
    return config_from_dict({"embedding": {"model": str(model_dir), "chunk_size": 8, **embedding}})


def test_embed_once_then_never_again(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = _config(tiny_model_dir)
    with Store(tmp_path / "s") as store:
        ingest_files(store, config, [_pool(tmp_path)], progress=False)
        first = embed_pool(store, config, progress=False)
        assert (first["embedded"], first["already_embedded"], first["dim"]) == (30, 0, 32)
        second = embed_pool(store, config, progress=False)
        assert (second["embedded"], second["already_embedded"]) == (0, 30)
        cache = EmbeddingCache.for_config(store, config)
        ids, vectors = cache.load()
        assert sorted(ids) == [f"e{i:03d}" for i in range(30)]
        assert vectors.dtype == np.float32 and vectors.shape == (30, 32)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        # 30 texts in chunks of 8 -> 4 shards
        assert store.conn.execute("SELECT COUNT(*) FROM embedding_shards").fetchone()[0] == 4
        # cached vectors equal a fresh encode of the same texts
        texts = dict(store.conn.execute("SELECT id, text FROM examples").fetchall())
        fresh = Embedder(config.embedding).encode([texts[i] for i in ids])
        np.testing.assert_allclose(vectors, fresh, atol=1e-5)


def test_load_by_ids_keeps_the_order_and_names_missing_ids(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    config = _config(tiny_model_dir)
    with Store(tmp_path / "s") as store:
        ingest_files(store, config, [_pool(tmp_path, 12)], progress=False)
        embed_pool(store, config, progress=False)
        cache = EmbeddingCache.for_config(store, config)
        all_ids, all_vectors = cache.load()
        position = {example_id: i for i, example_id in enumerate(all_ids)}
        wanted = ["e011", "e000", "e005"]
        ids, vectors = cache.load(wanted)
        assert ids == wanted
        np.testing.assert_array_equal(vectors, all_vectors[[position[i] for i in wanted]])
        with pytest.raises(KeyError, match="e999"):
            cache.load(["e000", "e999"])


def test_new_examples_only_are_embedded(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = _config(tiny_model_dir)
    with Store(tmp_path / "s") as store:
        ingest_files(store, config, [_pool(tmp_path, 10)], progress=False)
        embed_pool(store, config, progress=False)
        more = tmp_path / "more.jsonl"
        more.write_text(json.dumps({"text": "a brand new text", "language": "en"}) + "\n")
        ingest_files(store, config, [more], progress=False)
        result = embed_pool(store, config, progress=False)
        assert (result["embedded"], result["already_embedded"]) == (1, 10)


def test_float16_storage(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = _config(tiny_model_dir, dtype="float16")
    with Store(tmp_path / "s") as store:
        ingest_files(store, config, [_pool(tmp_path, 5)], progress=False)
        embed_pool(store, config, progress=False)
        shard = next((store.path / "vectors").rglob("shard-*.npy"))
        assert np.load(shard).dtype == np.float16
        _, vectors = EmbeddingCache.for_config(store, config).load()
        assert vectors.dtype == np.float32


def test_orphan_shard_from_a_killed_writer_is_ignored_and_removed(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    config = _config(tiny_model_dir)
    with Store(tmp_path / "s") as store:
        ingest_files(store, config, [_pool(tmp_path, 10)], progress=False)
        cache = EmbeddingCache.for_config(store, config)
        cache.folder.mkdir(parents=True)
        (cache.folder / "shard-000001.npy").write_bytes(b"half written")
        (cache.folder / "shard-000001.npy.tmp").write_bytes(b"half written")
        result = embed_pool(store, config, progress=False)
        assert result["embedded"] == 10
        ids, vectors = cache.load()
        assert len(ids) == 10 and np.isfinite(vectors).all()
        assert sorted(p.name for p in cache.folder.iterdir()) == [
            "shard-000001.npy",
            "shard-000002.npy",
        ]


def test_dimension_mismatch_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = _config(tiny_model_dir)
    with Store(tmp_path / "s") as store:
        ingest_files(store, config, [_pool(tmp_path, 4)], progress=False)
        embed_pool(store, config, progress=False)
        cache = EmbeddingCache.for_config(store, config)
        with pytest.raises(StoreError, match="gave 16-d vectors; the cache holds 32-d"):
            cache.add(["e000"], np.zeros((1, 16), dtype=np.float32))


def test_model_keys_and_prefixes() -> None:
    e5 = EmbeddingConfig(model="intfloat/multilingual-e5-small")
    assert is_e5(e5.model) and not is_e5("sentence-transformers/all-MiniLM-L6-v2")
    assert passage_prefix(e5) == "passage: " and query_prefix(e5) == "query: "
    assert model_key(e5) == "intfloat/multilingual-e5-small|prefix='passage: '"
    plain = EmbeddingConfig(model="sentence-transformers/all-MiniLM-L6-v2")
    assert passage_prefix(plain) == "" and model_key(plain) == plain.model
    explicit = EmbeddingConfig(model="intfloat/multilingual-e5-small", text_prefix="")
    assert passage_prefix(explicit) == "" and model_key(explicit) == explicit.model
    assert model_key(EmbeddingConfig(model="x", normalize=False)).endswith("|unnormalized")


def test_default_model_resolves_to_the_packaged_copy(tmp_path: Path) -> None:
    packaged = packaged_model_path()
    assert packaged is not None and (packaged / "model.safetensors").is_file()
    assert resolve_model_source("sentence-transformers/all-MiniLM-L6-v2") == str(packaged)
    assert resolve_model_source(str(tmp_path)) == str(tmp_path.resolve())
    # Names with no local copy go to the hub unchanged.
    assert (
        resolve_model_source("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2")
        == "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
    )
