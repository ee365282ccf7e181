"""One real run: the offline MiniLM with LoRA on a few hundred UMSAB tweets in 8 languages.

Pinned to the MiniLM baseline (the default backbone is multilingual-e5-small since it became
available offline; tests/training/test_e5.py trains that one): this keeps the English baseline's
real training covered, in about half the e5 run's time (this test: 34 s vs 59 s on 1 thread).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import UMSAB
from tests.training.conftest import make_store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (UMSAB / "train.jsonl").is_file(), reason="UMSAB data not present"),
]

LANGUAGES = ("ar", "de", "en", "es", "fr", "hi", "it", "pt")


def _sample(path: Path, per_language_label: int) -> list[dict]:
    taken: dict[tuple[str, str], int] = defaultdict(int)
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            key = (row["language"], row["label"])
            if taken[key] < per_language_label:
                taken[key] += 1
                rows.append(row)
    return rows


def test_minilm_lora_beats_the_majority_baseline_in_every_language_mean(tmp_path: Path) -> None:
    from curation.config import config_from_dict
    from curation.embeddings import packaged_model_path
    from curation.ingest import ingest_files
    from training.config import parse_training_config
    from training.metrics import majority_baseline
    from training.trainer import Trainer

    if packaged_model_path() is None:
        pytest.skip("the packaged MiniLM is not installed")
    store = make_store(tmp_path / "data", _sample(UMSAB / "train.jsonl", 14), source="umsab-train")
    validation = tmp_path / "validation.jsonl"
    validation.write_text(
        "".join(json.dumps(r) + "\n" for r in _sample(UMSAB / "validation.jsonl", 8)), "utf-8"
    )
    config = config_from_dict({"store": {"path": str(store.path)}, "languages": {"detect": False}})
    ingest_files(store, config, [validation], source="umsab-validation", progress=False)

    training = parse_training_config(
        {
            "seed": 0,
            "backbone": "all-MiniLM-L6-v2",
            "optimizer": {"lr": 3e-3, "warmup_ratio": 0.1},
            "data": {
                "batch_size": 16,
                "max_length": 64,
                "validation_source": "umsab-validation",
            },
            "evaluation": {"every": 20, "patience": None},
            "budget": {"max_steps": 60},
        }
    )
    trainer = Trainer(store, training)
    result = trainer.train()
    best = result.metrics["best"]
    assert set(best["per_language"]) == set(LANGUAGES)
    assert result.metrics["examples"]["train"] == {code: 42 for code in LANGUAGES}
    assert result.metrics["trainable_params"] < 0.02 * result.metrics["total_params"]
    assert result.metrics["resolved"]["backbone_source"] == str(packaged_model_path())
    assert result.metrics["resolved"]["text_prefix"] == ""

    data = trainer.data
    baseline = majority_baseline(
        data.train.labels, data.validation.labels, data.validation.languages
    )
    assert best["mean_macro_f1"] > baseline["mean_macro_f1"] + 0.05, (best, baseline)
    probabilities = trainer.adapter_model().predict_proba(["I love this!", "Das ist furchtbar"])
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1.0)
    store.close()
