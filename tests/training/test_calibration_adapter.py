"""The adapter's per-language temperatures: fitted on the validation split at the end of
`train`, saved next to the adapter, used by predict_proba, shown by `curate train --report`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.training.conftest import tiny_config
from training.predict import AdapterModel
from training.trainer import Trainer


def test_trained_adapter_is_calibrated_per_language(store, tiny_backbone: Path) -> None:
    trainer = Trainer(store, tiny_config(tiny_backbone, budget={"max_steps": 12}))
    result = trainer.train()
    saved = json.loads((result.run_dir / "adapter" / "calibration.json").read_text("utf-8"))
    report = result.metrics["calibration"]
    assert report == saved["report"]
    languages = sorted(result.metrics["examples"]["validation"])
    assert sorted(report) == sorted([*languages, "all"])
    for code in languages:
        row = report[code]
        assert row["labels"] == result.metrics["examples"]["validation"][code]
        # 30 validation labels are needed for a language's own temperature; fewer: global.
        expected_source = "language" if row["labels"] >= 30 else "global"
        assert row["source"] == expected_source
        assert row["temperature"] > 0

    model = AdapterModel.load(result.run_dir)
    texts = ["alpha beta gamma", "delta epsilon"]
    raw = model.predict_proba(texts, ["de", "fr"], calibrated=False)
    calibrated = model.predict_proba(texts, ["de", "fr"])
    np.testing.assert_array_equal(raw.argmax(axis=1), calibrated.argmax(axis=1))
    for row, code in enumerate(["de", "fr"]):
        temperature = saved["temperatures"].get(code, saved["global_temperature"])
        expected = np.exp(np.log(raw[row]) / temperature)
        np.testing.assert_allclose(calibrated[row], expected / expected.sum(), atol=1e-9)


def test_report_shows_temperature_and_ece(store, tiny_backbone: Path) -> None:
    from training import runs

    result = Trainer(store, tiny_config(tiny_backbone, budget={"max_steps": 4})).train()
    rows = runs.report_rows(runs.get_run(store, result.run_id))
    calibration = result.metrics["calibration"]
    for row in rows:
        assert row["temperature"] == calibration[row["language"]]["temperature"]
        assert row["ece_before"] == calibration[row["language"]]["ece_before"]
        assert row["ece_after"] == calibration[row["language"]]["ece_after"]
    assert rows and all(row["ece_before"] is not None for row in rows)
