"""`curate simulate --stopping`: the same simulation without and with per-language stopping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, write_config
from tests.conftest import run_cli as run
from tests.conftest import run_cli_json as run_json


@pytest.fixture()
def project(tmp_path: Path, tiny_model_dir: Path) -> Path:
    write_config(
        tmp_path,
        f'[store]\npath = "store"\n[embedding]\nmodel = "{tiny_model_dir}"\n'
        "[languages]\ndetect = false\n[selection]\nmax_similarity = 1.0\n"
        "[selection.stopping]\nwindow = 1\nmin_kappa = 0.5\nmin_labels = 5\nstop_set_size = 10\n",
    )
    rows = [
        json.loads(line)
        for line in (SAMPLES / "pool.jsonl").open(encoding="utf-8")
        if json.loads(line).get("language") and json.loads(line).get("label")
    ]
    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows[::2]), encoding="utf-8"
    )
    (tmp_path / "test.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows[1::2]), encoding="utf-8"
    )
    return tmp_path


def test_simulate_with_stopping_compares_labels_and_f1(project: Path, capsys) -> None:
    args = ["simulate", "--train", "train.jsonl", "--test", "test.jsonl", "--strategy", "margin"]
    args += ["--rounds", "4", "--batch-size", "16", "--seed-size", "24", "--seeds", "2"]
    summary = run_json(capsys, *args, "--allocation", "equal", "--stopping")
    row = summary["stopping"]["margin"]
    assert row["labels_without"] == 24 + 4 * 16
    assert row["labels_saved"] == row["labels_without"] - row["labels_with"] >= 0
    assert row["macro_f1_change"] == pytest.approx(row["macro_f1_with"] - row["macro_f1_without"])
    results = json.loads(Path("results.json").read_text(encoding="utf-8"))
    assert results["setup"]["stopping"] is True
    assert results["stopping"]["rule"] == (
        "StoppingRule(window=1, min_kappa=0.5, min_gain_per_100=0.005, min_labels=5)"
    )
    assert len(results["strategies"]["margin"]["stopped_at"]) == 2

    code, _, err = run(capsys, *args, "--stopping")
    assert code == 2
    assert err.strip() == "error: --stopping is per language: give --allocation too"


def test_simulate_two_stage_compares_the_ray_engines_selection_with_local(
    project: Path, capsys
) -> None:
    """`--two-stage-shards N`: the same seeds once locally and once the way the Ray engine
    selects. Margin's union holds every row it would pick, so the AULCs are equal; hybrid on
    languages small enough to be kept whole is equal too."""
    args = ["simulate", "--train", "train.jsonl", "--test", "test.jsonl"]
    args += ["--strategy", "margin", "--strategy", "default", "--allocation", "need"]
    args += ["--rounds", "3", "--batch-size", "12", "--seed-size", "24", "--seeds", "2"]
    summary = run_json(capsys, *args, "--two-stage-shards", "4")
    per_strategy = summary["two_stage"]["per_strategy"]
    assert summary["two_stage"]["shards"] == 4 and sorted(per_strategy) == ["default", "margin"]
    for row in per_strategy.values():
        assert row["aulc_two_stage"] == row["aulc_local"] and row["difference"] == 0.0
    results = json.loads(Path("results.json").read_text(encoding="utf-8"))
    assert results["setup"]["two_stage_shards"] == 4
    assert results["two_stage"] == summary["two_stage"]

    code, _, err = run(capsys, *args, "--two-stage-shards", "0")
    assert code == 2 and "--two-stage-shards" in err
    code, _, err = run(capsys, *args, "--two-stage-shards", "2", "--stopping")
    assert code == 2
    assert err.strip() == (
        "error: --stopping and --two-stage-shards each compare against a run of their own: pick one"
    )
