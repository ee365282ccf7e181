"""Deployment helpers: merging the adapter into the backbone, dynamic int8 with its F1 change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import tiny_config
from training import runs
from training.deploy import merge_adapter, quantization_report
from training.predict import AdapterModel
from training.trainer import Trainer


@pytest.fixture()
def trained(store, tiny_backbone: Path):
    config = tiny_config(tiny_backbone, adapter={"r": 8, "alpha": 16}, budget={"max_steps": 6})
    return Trainer(store, config).train()


def test_merged_model_predicts_like_the_adapter(store, trained, tmp_path: Path) -> None:
    texts, labels, languages = runs.validation_examples(store, trained.run_dir)
    adapter = AdapterModel.load(trained.run_dir)
    out = merge_adapter(trained.run_dir, tmp_path / "merged")
    merged = AdapterModel.load(out)
    assert merged.meta["method"] == "merged" and merged.classes_ == adapter.classes_
    assert not any("lora" in name for name, _ in merged.model.named_parameters())
    np.testing.assert_allclose(merged.predict_proba(texts), adapter.predict_proba(texts), atol=1e-5)
    with pytest.raises(FileExistsError):
        merge_adapter(trained.run_dir, out)


def test_int8_report_per_language(store, trained) -> None:
    texts, labels, languages = runs.validation_examples(store, trained.run_dir)
    report = quantization_report(trained.run_dir, texts, labels, languages)
    assert set(report["per_language"]) == {"de", "en", "es", "fr"}
    for row in report["per_language"].values():
        assert row["change"] == pytest.approx(row["int8"] - row["fp32"], abs=1e-6)
        assert 0.0 <= row["agreement"] <= 1.0
    assert report["size_mb"]["int8"] < report["size_mb"]["fp32"]
    int8 = AdapterModel.load(trained.run_dir, int8=True)
    assert int8.quantized and "int8=True" in repr(int8)
    probabilities = int8.predict_proba(texts)
    assert probabilities.shape == (len(texts), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
