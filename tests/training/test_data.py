"""Splits, the token cache, language sampling, length grouping and learning-rate groups."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from curation.errors import InputError
from tests.training.conftest import make_store, synthetic_rows
from training.config import DataConfig
from training.data import (
    LanguageBatchSampler,
    build_training_data,
    carve_validation,
    language_probabilities,
)
from training.model import load_tokenizer, parameter_depth, parameter_groups


def test_carve_validation_is_stratified_seeded_and_keeps_every_language() -> None:
    languages = ["de"] * 40 + ["en"] * 20 + ["hi"] * 1 + ["fr"] * 2
    labels = [i % 2 for i in range(40)] + [i % 4 for i in range(20)] + [0] + [0, 1]
    mask = carve_validation(languages, labels, 0.25, seed=3)
    assert np.array_equal(mask, carve_validation(languages, labels, 0.25, seed=3))
    assert not np.array_equal(mask, carve_validation(languages, labels, 0.25, seed=4))
    languages, labels = np.asarray(languages), np.asarray(labels)
    # de: 20 per label -> 5 each; en: 5 per label -> 1 each (rounded), per label.
    assert Counter(labels[mask & (languages == "de")].tolist()) == {0: 5, 1: 5}
    assert Counter(labels[mask & (languages == "en")].tolist()) == {0: 1, 1: 1, 2: 1, 3: 1}
    assert not mask[languages == "hi"].any()  # a single example stays in train
    assert mask[languages == "fr"].sum() == 1  # singleton labels: one carved, one kept
    for code in ("de", "en", "fr", "hi"):
        assert (~mask[languages == code]).any()


def test_language_probabilities_temperature() -> None:
    counts = {"en": 900, "de": 90, "hi": 10}
    assert language_probabilities(counts, 1.0) == pytest.approx({"de": 0.09, "en": 0.9, "hi": 0.01})
    assert language_probabilities(counts, 0.0) == pytest.approx({c: 1 / 3 for c in counts})
    half = language_probabilities(counts, 0.5)
    assert half["hi"] > 0.01 and half["en"] < 0.9  # flattened towards uniform


def test_sampler_epochs_are_deterministic_and_flatten_languages() -> None:
    languages = np.array(["en"] * 90 + ["hi"] * 10, dtype=object)
    lengths = np.arange(100) % 17 + 3
    sampler = LanguageBatchSampler(languages, lengths, batch_size=8, alpha=0.0, seed=1)
    first = sampler.epoch(0)
    again = LanguageBatchSampler(languages, lengths, batch_size=8, alpha=0.0, seed=1).epoch(0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, sampler.epoch(1), strict=False))
    drawn = np.concatenate(first)
    assert len(drawn) == 100
    assert Counter(languages[drawn].tolist()) == {"en": 50, "hi": 50}  # uniform: hi oversampled
    # every hi row shows up (cycled permutations), en is subsampled without repeats
    assert set(drawn[languages[drawn] == "hi"].tolist()) == set(range(90, 100))
    assert len(set(drawn[languages[drawn] == "en"].tolist())) == 50
    # the longest batch comes first
    assert lengths[first[0]].max() == lengths.max()


def test_length_grouping_and_per_language_batches() -> None:
    rng = np.random.default_rng(0)
    languages = np.array(["de", "en", "fr"] * 100, dtype=object)
    lengths = rng.integers(3, 120, size=300)
    grouped = LanguageBatchSampler(languages, lengths, batch_size=10, group_by_length=True)
    plain = LanguageBatchSampler(languages, lengths, batch_size=10, group_by_length=False)

    def padding(batches: list[np.ndarray]) -> int:
        return int(sum((lengths[b].max() - lengths[b]).sum() for b in batches))

    assert padding(grouped.epoch(0)) < padding(plain.epoch(0)) / 3
    per_language = LanguageBatchSampler(
        languages, lengths, batch_size=10, per_language_batches=True, alpha=1.0
    )
    for batch in per_language.epoch(0):
        assert len(set(languages[batch].tolist())) == 1
    assert "batch_size=10" in repr(per_language)


def test_build_training_data_caches_tokens(tmp_path: Path, tiny_backbone: Path) -> None:
    store = make_store(tmp_path / "data")
    tokenizer = load_tokenizer(str(tiny_backbone))
    config = DataConfig(max_length=16)
    data = build_training_data(store, config, tokenizer, seed=0)
    assert data.labels == ("negative", "neutral", "positive")
    assert data.languages == ("de", "en", "es", "fr")
    counts = data.counts()
    assert counts["validation"] == {"de": 6, "en": 6, "es": 6, "fr": 6}  # 15% of 10 per label
    assert sum(counts["train"].values()) == 120 - 24
    assert max(len(x) for x in data.train.input_ids) <= 16
    caches = list((store.path / "cache" / "training-tokens").iterdir())
    assert len(caches) == 1
    from training import data as data_module

    calls = []
    original = data_module.tokenize_cached

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(result[1])
        return result

    data_module.tokenize_cached = spy
    try:
        again = build_training_data(store, config, tokenizer, seed=0)
        build_training_data(store, DataConfig(max_length=20), tokenizer, seed=0)
    finally:
        data_module.tokenize_cached = original
    assert calls == [True, False]  # same settings: from the cache; new max_length: tokenized
    assert again.split_ids() == data.split_ids()
    store.close()


def test_validation_source_and_given_splits(tmp_path: Path, tiny_backbone: Path) -> None:
    store = make_store(tmp_path / "data", synthetic_rows(per_language=12))
    from curation.config import config_from_dict
    from curation.ingest import ingest_files

    held_out = [
        {**row, "id": "v-" + row["id"], "text": row["text"] + " held"}
        for row in synthetic_rows(per_language=6, seed=9)
    ]
    path = tmp_path / "val.jsonl"
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in held_out), "utf-8")
    config = config_from_dict({"store": {"path": str(store.path)}, "languages": {"detect": False}})
    ingest_files(store, config, [path], source="held-out", progress=False)
    tokenizer = load_tokenizer(str(tiny_backbone))
    data = build_training_data(store, DataConfig(validation_source="held-out"), tokenizer, seed=0)
    assert sorted(data.validation.ids) == sorted(r["id"] for r in held_out)
    assert len(data.train) == 48
    given = {"train": data.train.ids[:10], "validation": data.validation.ids[:5]}
    again = build_training_data(store, DataConfig(), tokenizer, seed=0, given_splits=given)
    assert again.split_ids() == given
    with pytest.raises(InputError, match="no labeled examples were ingested with --source"):
        build_training_data(store, DataConfig(validation_source="nope"), tokenizer, seed=0)
    store.close()


def test_layer_wise_learning_rate_decay_groups() -> None:
    import torch

    names = [
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.0.attention.self.query.lora_A.task.weight",
        "bert.encoder.layer.1.attention.self.query.lora_A.task.weight",
        "bert.encoder.layer.1.output.LayerNorm.bias",
        "classifier.modules_to_save.task.weight",
    ]
    named = [(name, torch.nn.Parameter(torch.zeros(2))) for name in names]
    assert [parameter_depth(n, 2) for n in names] == [0, 1, 2, 2, 3]
    groups = parameter_groups(named, lr=1.0, weight_decay=0.1, layer_decay=0.5, num_layers=2)
    by_name = {name: g for g in groups for name in g["names"]}
    assert by_name[names[0]]["lr"] == pytest.approx(0.125)
    assert by_name[names[1]]["lr"] == pytest.approx(0.25)
    assert by_name[names[2]]["lr"] == pytest.approx(0.5)
    assert by_name[names[4]]["lr"] == pytest.approx(1.0)
    assert by_name[names[3]]["weight_decay"] == 0.0 and by_name[names[2]]["weight_decay"] == 0.1
    flat = parameter_groups(named, lr=1.0, weight_decay=0.1, layer_decay=1.0, num_layers=2)
    assert {g["lr"] for g in flat} == {1.0} and len(flat) == 2
