"""The dashboard's derived numbers on hand-computed inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curation.config import Config, config_from_dict
from dashboard import analysis, queries


def _annotations(items: list[list[str]], language: str = "en") -> pd.DataFrame:
    rows = []
    for task, choices in enumerate(items):
        for k, choice in enumerate(choices):
            rows.append(
                {
                    "project_id": 1,
                    "task_id": task,
                    "example_id": f"x{task}",
                    "annotator": f"a{k}",
                    "choice": choice,
                    "lead_time": 10.0,
                    "language": language,
                    "is_gold": False,
                    "gold_label": None,
                    "label_now": None,
                }
            )
    return pd.DataFrame(rows)


def test_agreement_matches_hand_computation() -> None:
    # Two raters, four items: (a,a) (a,a) (b,b) (a,b).
    scores = analysis.agreement_scores(
        analysis.item_counts(_annotations([["a", "a"], ["a", "a"], ["b", "b"], ["a", "b"]]))
    )
    assert scores["items"] == 4 and scores["annotations"] == 8
    assert scores["percent"] == pytest.approx(0.75)
    # Fleiss: P_e = (5/8)^2 + (3/8)^2 = 34/64.
    assert scores["kappa"] == pytest.approx((0.75 - 34 / 64) / (1 - 34 / 64))
    # Krippendorff (nominal): 1 - (n - 1) * D_o / sum_{c != k} n_c n_k = 1 - 7 * 2 / 30.
    assert scores["alpha"] == pytest.approx(1 - 14 / 30)


def test_agreement_perfect_varying_raters_and_single_category() -> None:
    perfect = analysis.agreement_scores(
        analysis.item_counts(_annotations([["a", "a", "a"], ["b", "b"], ["c", "c", "c", "c"]]))
    )
    assert perfect["percent"] == 1 and perfect["alpha"] == pytest.approx(1)
    assert perfect["kappa"] == pytest.approx(1)
    single = analysis.agreement_scores(analysis.item_counts(_annotations([["a", "a"]])))
    assert single["percent"] == 1 and math.isnan(single["alpha"])  # undefined, not 1 or 0
    lonely = analysis.item_counts(_annotations([["a"], ["b"]]))
    assert lonely.empty  # single annotations give no agreement


def test_adjudication_queue_ties_and_low_agreement() -> None:
    table = _annotations([["a", "b"], ["a", "a", "b"], ["a", "b", "c"], ["a", "a"]])
    queue = analysis.adjudication_queue(table, min_agreement=0.7)
    assert list(queue["example_id"]) == ["x2", "x0", "x1"]  # lowest top share first
    assert list(analysis.adjudication_queue(table, min_agreement=0.5)["example_id"]) == ["x2", "x0"]
    table.loc[table["task_id"] == 0, "label_now"] = "a"  # resolved: leaves the queue
    assert "x0" not in set(analysis.adjudication_queue(table, 0.7)["example_id"])


def test_simulation_savings_interpolates() -> None:
    def curve(ys: list[float]) -> list[dict]:
        return [
            {"labels": 100 * (i + 1), "macro_f1": y, "worst_language_f1": y}
            for i, y in enumerate(ys)
        ]

    results = {
        "strategies": {
            "random": {"curves": [curve([0.5, 0.6, 0.7]), curve([0.5, 0.6, 0.7])]},
            "margin": {"curves": [curve([0.5, 0.8, 0.9])]},
            "bad": {"curves": [curve([0.4, 0.5, 0.6])]},
        }
    }
    savings = analysis.simulation_savings(results).set_index(["strategy", "metric"])
    # margin reaches 0.7 between 100 (0.5) and 200 (0.8) labels: at 166.7 of random's 300.
    assert savings.loc[("margin", "macro_f1"), "labels_needed"] == pytest.approx(500 / 3)
    assert savings.loc[("margin", "macro_f1"), "savings"] == pytest.approx(1 - 500 / 900)
    assert pd.isna(savings.loc[("bad", "macro_f1"), "savings"])
    assert analysis.simulation_savings({"strategies": {"margin": {}}}).empty


def test_run_summary_reads_training_runs_metrics_and_aliases() -> None:
    record = {
        "id": "r1",
        "status": "finished",
        "metrics": {
            "trainable_parameters": 10,
            "total_params": 1000,
            "peak_memory_bytes": 2 * 2**20,
            "wall_time_s": 12.5,
            "gpu_seconds": 120,
            "evaluations": [{"step": 5, "per_language": {"en": 0.5, "hi": 0.25}}],
        },
    }
    summary = analysis.run_summary(record)
    assert summary["trainable_params"] == 10 and summary["trainable_share"] == 0.01
    assert summary["peak_memory_mb"] == 2 and summary["wall_seconds"] == 12.5
    assert summary["gpu_minutes"] == 2
    assert summary["per_language"] == {"en": 0.5, "hi": 0.25}  # from the last evaluation
    assert summary["worst_language"] == "hi" and summary["mean_macro_f1"] == 0.375
    assert (
        analysis.run_summary({"id": "r2", "status": "running", "metrics": {}})["per_language"] == {}
    )
    gap = analysis.gap({"en": 0.8, "hi": 0.5, "de": 0.8})
    assert gap["worst_language"] == "hi" and gap["gap_to_best"] == pytest.approx(0.3)
    assert gap["gap_to_mean"] == pytest.approx(0.2)


def test_confusion_frame_uses_label_order() -> None:
    frame = analysis.confusion_frame({"en": [[3, 1], [0, 2]]}, ["neg", "pos"])
    assert frame.to_dict("records")[1] == {
        "language": "en",
        "true_label": "neg",
        "predicted_label": "pos",
        "count": 1,
    }


def test_budget_caps_from_training_section() -> None:
    assert analysis.budget_caps(Config())["gpu_minutes"] is None
    config = config_from_dict({"training": {"budget": {"max_gpu_hours": 1.5}}})
    caps = analysis.budget_caps(config)
    assert caps["gpu_minutes"] == 90 and caps["gpu_key"] == "[training.budget] max_gpu_hours"


def test_pca_projection_is_deterministic_and_keeps_structure() -> None:
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(0, 0.1, (50, 8)) + 3, rng.normal(0, 0.1, (50, 8))])
    points, method = queries._project(vectors.astype(np.float32), "pca")
    again, _ = queries._project(vectors.astype(np.float32), "pca")
    assert method == "pca" and points.shape == (100, 2)
    assert np.array_equal(points, again)
    assert abs(points[:50, 0].mean() - points[50:, 0].mean()) > 5  # the two blobs separate
    assert queries._project(np.zeros((1, 4), np.float32), "pca")[0].shape == (1, 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pca_map_matches_a_numpy_svd_reference_up_to_sign(seed: int) -> None:
    # Embedding-like data with distinct variances per direction, so the two leading components
    # are well defined; the reference is the textbook PCA: an SVD of the centered matrix.
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.1, 24)
    vectors = (rng.normal(size=(400, 24)) * scales) @ np.linalg.qr(rng.normal(size=(24, 24)))[0]
    vectors = (vectors + 0.5).astype(np.float32)
    points, method = queries._project(vectors, "pca", seed=seed)
    assert method == "pca" and points.shape == (400, 2) and points.dtype == np.float32
    centered = vectors.astype(np.float64) - vectors.astype(np.float64).mean(axis=0)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    reference = u[:, :2] * s[:2]
    for axis in range(2):
        sign = np.sign(points[:, axis] @ reference[:, axis])
        np.testing.assert_allclose(points[:, axis], sign * reference[:, axis], rtol=0, atol=1e-5)


def test_pca_map_of_degenerate_inputs_is_flat() -> None:
    assert queries._project(np.ones((5, 3), np.float32), "pca")[0].tolist() == [[0.0, 0.0]] * 5
    line = np.array([[0.0], [1.0], [3.0]], np.float32)  # one-dimensional vectors
    points, _ = queries._project(line, "pca")
    np.testing.assert_allclose(np.abs(points[:, 0]), [4 / 3, 1 / 3, 5 / 3], rtol=1e-6)
    assert points[:, 1].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.slow
def test_umap_projection_keeps_separate_blobs_apart() -> None:
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(0, 0.1, (60, 8)) + 3, rng.normal(0, 0.1, (60, 8))])
    points, method = queries._project(vectors.astype(np.float32), "umap")
    assert method == "umap" and points.shape == (120, 2) and np.isfinite(points).all()
    a, b = points[:60], points[60:]
    # Every point is nearer its own blob's centre than the other blob's.
    to_a = np.linalg.norm(points - a.mean(axis=0), axis=1)
    to_b = np.linalg.norm(points - b.mean(axis=0), axis=1)
    assert (to_a[:60] < to_b[:60]).all() and (to_b[60:] < to_a[60:]).all()


def _brute_force_components(unit: np.ndarray, threshold: float) -> np.ndarray:
    """Per row, the smallest row index reachable through pairs with cosine >= threshold."""
    similar = unit.astype(np.float64) @ unit.astype(np.float64).T >= threshold
    smallest = np.arange(len(unit))
    while True:  # spread the smallest index along edges until nothing changes
        spread = np.array([smallest[row].min() for row in similar])
        if np.array_equal(spread, smallest):
            return smallest
        smallest = spread


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_near_duplicate_components_match_brute_force(seed: int) -> None:
    # Chains of small steps away from a few centres: neighbours in a chain are near duplicates,
    # its two ends often are not, so only the transitive closure joins them.
    rng = np.random.default_rng(seed)
    rows = []
    for centre in rng.normal(size=(6, 12)):
        point = centre
        for _ in range(rng.integers(1, 7)):
            rows.append(point)
            point = point + rng.normal(scale=0.12, size=12)
    rows.extend(rng.normal(size=(20, 12)))  # loners
    vectors = np.array(rows)[rng.permutation(len(rows))]
    unit = np.ascontiguousarray(
        vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.float32
    )
    threshold = 0.97
    cosines = unit.astype(np.float64) @ unit.astype(np.float64).T
    # No pair sits within float32 rounding of the threshold, so the expectation is exact.
    assert np.abs(cosines - threshold).min() > 1e-4
    expected = _brute_force_components(unit, threshold)
    assert queries.similarity_components(unit, threshold).tolist() == expected.tolist()
    sizes = np.unique(expected, return_counts=True)[1]
    assert (sizes > 1).sum() >= 2  # the data has clusters to find, not only loners
    similar = cosines >= threshold
    chained = [
        root
        for root in np.unique(expected)
        if not similar[np.ix_(expected == root, expected == root)].all()
    ]
    assert chained  # some cluster holds a pair that only the transitive closure joins


def test_nightly_run_times_fit_a_metric_tile() -> None:
    assert analysis.short_time("2026-11-02T01:00:00+00:00") == "11-02 01:00"
    assert analysis.short_time("2026-11-02T03:30:00+02:00") == "11-02 01:30"  # shown in UTC
    assert analysis.short_time("2026-11-02T01:00:00") == "11-02 01:00"  # naive = UTC
    assert analysis.short_time(None) == "—"
    assert analysis.short_time("yesterday") == "yesterday"
    start = "2026-11-02T01:00:00+00:00"
    assert analysis.duration_text(start, "2026-11-02T01:00:42+00:00") == "42 s"
    assert analysis.duration_text(start, "2026-11-02T01:42:00+00:00") == "42 min"
    assert analysis.duration_text(start, "2026-11-02T03:05:00+00:00") == "2 h 05 min"
    assert analysis.duration_text(start, None) == "—"  # still running
    assert analysis.duration_text(start, "not a time") == "—"


def test_overview_summary_line_is_markdown_with_only_numbers_bold() -> None:
    totals = {"pool": 100_000, "labeled": 6_250, "in_label_studio": 1_500, "quarantined": 528}
    assert analysis.overview_summary(totals, languages=8, run=None) == (
        "**100,000** examples in **8** languages · **6,250** labeled · **1,500** in Label Studio"
        " · **528** quarantined · no nightly run recorded yet"
    )
    run = {"status": "finished", "started_at": "2026-11-02T03:30:00+02:00"}
    assert analysis.overview_summary(totals, languages=1, run=run).endswith(
        "examples in **1** language · **6,250** labeled · **1,500** in Label Studio"
        " · **528** quarantined · last nightly run finished, started 11-02 01:30 UTC"
    )
    # A status is a store value: Markdown and HTML in it are escaped, so they show literally.
    odd = {"status": "<b>*done*</b>", "started_at": None}
    assert analysis.overview_summary(totals, languages=2, run=odd).endswith(
        " · last nightly run \\<b\\>\\*done\\*\\</b\\>"
    )
    # Tasks only written to an import file (no Label Studio server) are a figure of their own.
    offline = {**totals, "written_to_file": 200}
    assert analysis.overview_summary(offline, languages=8, run=None) == (
        "**100,000** examples in **8** languages · **6,250** labeled · **1,500** in Label Studio"
        " · **200** written to file · **528** quarantined · no nightly run recorded yet"
    )
    unparsable = {"status": "failed", "started_at": "_yesterday_"}
    assert analysis.overview_summary(totals, languages=2, run=unparsable).endswith(
        " · last nightly run failed, started \\_yesterday\\_ UTC"
    )


def test_quarantined_rows_count_under_their_valid_language_tag(tmp_path: Path) -> None:
    from curation.store import Store

    tsv = tmp_path / "rows.tsv"
    tsv.write_text("\ufefftext\tlanguage\nfine\tde\n\tpt_br\n", encoding="utf-8")
    gone = tmp_path / "deleted.csv"  # its header can no longer be read
    rows = [
        (str(tmp_path / "a.jsonl"), '{"text": "", "language": "pt-br"}'),  # standard form
        (str(tmp_path / "a.jsonl"), '{"text": "", "language": "xx-QQ123"}'),  # not BCP-47
        (str(tmp_path / "a.jsonl"), '{"text": "", "language": 5}'),  # not a string
        (str(tmp_path / "a.jsonl"), '["not", "an", "object"]'),
        (str(tsv), "\tpt_br"),  # a TSV line, read with its file's header
        (str(tsv), "one\ttwo\tde"),  # a field more than the header: no language column
        (str(gone), ",en"),
        (str(tmp_path / "b.parquet"), None),
    ]
    with Store(tmp_path / "store") as store, store.transaction() as conn:
        conn.executemany(
            "INSERT INTO quarantine (file, line, field, reason, raw, created_at) "
            "VALUES (?, ?, 'text', 'empty text', ?, '2026-11-02T10:00:00+00:00')",
            [(file, line, raw) for line, (file, raw) in enumerate(rows, start=1)],
        )
    with Store(tmp_path / "store", read_only=True) as store:
        assert queries.quarantine_languages(store) == {"pt-BR": 2, "(unknown)": 6}
        shown = queries.quarantine_rows(store)["rows"].sort_values("line")
        assert shown["language"].tolist() == [
            "pt-BR",
            "(unknown)",
            "(unknown)",
            "(unknown)",
            "pt-BR",
            "(unknown)",
            "(unknown)",
            "(unknown)",
        ]


def test_calibration_frame_sorts_languages_and_puts_all_last() -> None:
    from dashboard.analysis import calibration_frame

    row = {"labels": 40, "temperature": 1.5, "source": "language", "ece_before": 0.2}
    frame = calibration_frame(
        {"fr": {**row, "ece_after": 0.05}, "all": {**row, "ece_after": 0.04}, "de": row}
    )
    assert list(frame["language"]) == ["de", "fr", "all"]
    assert list(frame.columns) == [
        "language",
        "labels",
        "temperature",
        "source",
        "ece_before",
        "ece_after",
    ]
    assert frame["ece_after"].tolist()[1:] == [0.05, 0.04]
    assert frame["ece_after"].isna().tolist()[0]
