"""Per-language stopping through `curate select`: stop sets, snapshots, the allocator's zero."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curation import quality
from curation.config import load_config
from curation.embeddings import EmbeddingCache
from curation.ingest import ingest_files
from curation.store import Store
from labeling.adjudicate import set_label
from tests.conftest import run_cli_json as run_json
from tests.conftest import write_config

LANGS = ("en", "es", "hi")
LABELS = ("negative", "neutral", "positive")


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """Well-separated classes: the proxy's predictions settle after the first labels."""
    write_config(
        tmp_path,
        '[store]\npath = "store"\n[labels]\nnames = ["negative", "neutral", "positive"]\n'
        "[languages]\ndetect = false\n[selection]\ncontrol_share = 0.0\nseed = 7\n"
        "max_similarity = 1.0\n"
        'allocation = "equal"\ncold_start_share = 0.0\n'
        "[selection.stopping]\nstop_set_size = 40\nwindow = 2\nmin_kappa = 0.95\n"
        "min_gain_per_100 = 0.05\nmin_labels = 30\n",
    )
    rng = np.random.default_rng(0)
    centres = 6.0 * rng.standard_normal((3, 16)).astype(np.float32)
    rows, vectors = [], []
    for i in range(600):
        label = i % 3
        row = {"id": f"x{i:03d}", "text": f"example {i}", "language": LANGS[(i // 3) % 3]}
        if i < 90:
            row["label"] = LABELS[label]
        rows.append(row)
        vectors.append(centres[label] + rng.standard_normal(16).astype(np.float32))
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = load_config(tmp_path / "curate.toml")
    with Store(config.store.path) as store:
        ingest_files(store, config, [pool], progress=False)
        EmbeddingCache.for_config(store, config).add(
            [r["id"] for r in rows], np.asarray(vectors, dtype=np.float32)
        )
    quality._memo.clear()
    return tmp_path


def _label_round(project: Path, round_id: int) -> None:
    """Annotators answer the round with the true label (id number mod 3)."""
    config = load_config(project / "curate.toml")
    with Store(config.store.path) as store:
        ids = [
            row[0]
            for row in store.conn.execute(
                "SELECT example_id FROM round_items WHERE round_id = ?", (round_id,)
            )
        ]
        for example_id in ids:
            set_label(store, config, example_id, LABELS[int(example_id[1:]) % 3])


def _counts(project: Path) -> tuple[int, int, int]:
    with Store(project / "store") as store:
        return tuple(
            store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("stop_set", "stop_snapshots", "stop_predictions")
        )


def test_languages_stop_once_predictions_and_curves_settle(project: Path, capsys) -> None:
    first = run_json(capsys, "select", "--budget", "30")
    # One stop set of 40 per language; one snapshot (3 languages x 40 predictions).
    assert _counts(project) == (120, 3, 120)
    assert {d["stopped"] for d in first["stopping"].values()} == {False}
    assert first["stopping"]["en"]["reason"] == (
        "continue, 1 round(s) of stop-set predictions, 3 needed to judge"
    )
    # No new labels: no new snapshot (it would fake stability).
    quality._memo.clear()
    run_json(capsys, "select", "--budget", "30")
    assert _counts(project) == (120, 3, 120)

    _label_round(project, first["round_id"])
    second = run_json(capsys, "select", "--budget", "30")
    assert _counts(project)[1:] == (6, 240)
    assert {d["stopped"] for d in second["stopping"].values()} == {False}
    _label_round(project, second["round_id"])
    third = run_json(capsys, "select", "--budget", "30")
    assert _counts(project)[1:] == (9, 360)
    en = third["stopping"]["en"]
    assert en["stopped"] is True
    assert en["kappa"] == pytest.approx(1.0)
    assert en["reason"].startswith(
        "stopped, predictions changed on 0.0% of the stop set over the last 2 round(s) "
        "(kappa 1.000); validation F1 "
    )
    # Every language stopped and the shares are saved, not redistributed: nothing selected.
    assert {d["stopped"] for d in third["stopping"].values()} == {True}
    assert third["selected"] == 0
    assert third["explanations"]["hi"].endswith("(10 labels saved)")


def test_human_select_output_lists_stopped_languages_and_calibration(project: Path, capsys) -> None:
    from tests.conftest import run_cli as run

    first = run_json(capsys, "select", "--budget", "30")
    _label_round(project, first["round_id"])
    second = run_json(capsys, "select", "--budget", "30")
    _label_round(project, second["round_id"])
    code, out, _ = run(capsys, "select", "--budget", "30")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "no round stored (default, equal allocation): nothing to select"
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if "│" in line]
    assert [row[:2] for row in rows] == [["en", "0"], ["es", "0"], ["hi", "0"]]
    for row in rows:
        assert row[2].startswith(
            f"{row[0]}: 0 of 30, stopped, predictions changed on 0.0% of the stop set"
        )
        assert row[2].endswith("(10 labels saved)")
    assert (
        lines[-2]
        == "selected 0 of 450 candidates (0 random control); proxy "
        + (lines[-2].rsplit(" ", 1)[-1])
    )
    assert lines[-1].startswith(
        "calibrated per language (temperature, held-out ECE before -> after): en T "
    )
