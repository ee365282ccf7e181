"""Temperature scaling per language: checked against scikit-learn's own temperature calibrator,
against planted temperatures, and the ECE against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from curation.calibration import (
    PerLanguageTemperature,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _planted(rng: np.random.Generator, n: int, *, temperature: float, classes: int = 3):
    """Labels drawn from softmax(z); the model reports softmax(z / temperature) instead."""
    z = rng.normal(scale=2.0, size=(n, classes))
    truth = _softmax(z)
    labels = np.array([rng.choice(classes, p=row) for row in truth])
    reported = _softmax(z / temperature)
    return reported, labels


def test_fit_temperature_matches_scikit_learns_temperature_calibrator() -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=1.5, size=600) > 0).astype(int)
    y[x[:, 2] > 1.0] = 2
    # Weak regularisation on few rows: over-confident, so T > 1 is expected.
    model = LogisticRegression(C=100.0).fit(x[:200], y[:200])
    held_x, held_y = x[200:], y[200:]
    reference = CalibratedClassifierCV(FrozenEstimator(model), method="temperature").fit(
        held_x, held_y
    )
    beta = float(reference.calibrated_classifiers_[0].calibrators[0].beta_)
    ours = fit_temperature(model.predict_proba(held_x), held_y)
    assert ours == pytest.approx(1.0 / beta, rel=1e-4)
    assert ours > 1.0


@pytest.mark.parametrize("planted", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_a_planted_temperature(planted: float) -> None:
    reported, labels = _planted(np.random.default_rng(1), 20_000, temperature=1.0 / planted)
    # reported = softmax(z * planted): dividing its logits by `planted` restores softmax(z).
    assert fit_temperature(reported, labels) == pytest.approx(planted, rel=0.05)


def test_temperature_never_changes_the_argmax() -> None:
    reported, _ = _planted(np.random.default_rng(2), 500, temperature=0.4)
    for temperature in (0.2, 1.0, 7.0):
        scaled = apply_temperature(reported, temperature)
        np.testing.assert_array_equal(scaled.argmax(axis=1), reported.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
    np.testing.assert_allclose(apply_temperature(reported, 1.0), reported, atol=1e-9)


def test_expected_calibration_error_by_hand() -> None:
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1])  # right at 0.9, wrong at 0.6, right at 0.7
    # Three bins of one row each: (|1 - 0.9| + |0 - 0.6| + |1 - 0.7|) / 3
    assert expected_calibration_error(probabilities, labels, n_bins=10) == pytest.approx(1 / 3)
    # One bin: |accuracy 2/3 - mean confidence 2.2/3|
    assert expected_calibration_error(probabilities, labels, n_bins=1) == pytest.approx(0.2 / 3)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, np.array([0, 1])) == 0.0


def test_per_language_temperatures_with_a_global_fallback_and_held_out_gain() -> None:
    rng = np.random.default_rng(3)
    parts = {"fr": 3.0, "hi": 0.5, "ar": 2.0}  # planted temperatures (reported = z / T_model)
    sizes = {"fr": 4000, "hi": 4000, "ar": 20}  # ar: too few labels for its own temperature
    probabilities, labels, languages = [], [], []
    for language, planted in parts.items():
        p, y = _planted(rng, sizes[language], temperature=1.0 / planted)
        probabilities.append(p)
        labels.append(y)
        languages += [language] * len(y)
    p, y, lang = np.vstack(probabilities), np.concatenate(labels), np.array(languages)

    calibrator = PerLanguageTemperature(min_labels=30).fit(p, y, lang)
    assert sorted(calibrator.temperatures_) == ["fr", "hi"]
    assert calibrator.temperatures_["fr"] == pytest.approx(3.0, rel=0.1)
    assert calibrator.temperatures_["hi"] == pytest.approx(0.5, rel=0.1)
    assert calibrator.temperature_for("ar") == calibrator.global_temperature_
    assert calibrator.counts_ == {"ar": 20, "fr": 4000, "hi": 4000}

    # On a fresh sample of the same languages, calibrated ECE is lower for fr and hi.
    fresh_p, fresh_y, fresh_lang = [], [], []
    for language in ("fr", "hi"):
        q, z = _planted(rng, 3000, temperature=1.0 / parts[language])
        fresh_p.append(q)
        fresh_y.append(z)
        fresh_lang += [language] * len(z)
    report = calibrator.report(np.vstack(fresh_p), np.concatenate(fresh_y), np.array(fresh_lang))
    for language in ("fr", "hi"):
        row = report[language]
        assert row["source"] == "language"
        assert row["labels"] == 3000
        assert row["ece_after"] < row["ece_before"] / 3
    assert report["all"]["labels"] == 6000


def test_settings_repr_and_errors() -> None:
    assert repr(PerLanguageTemperature()) == "PerLanguageTemperature(min_labels=30, n_bins=15)"
    with pytest.raises(ValueError, match="min_labels must be >= 1"):
        PerLanguageTemperature(min_labels=0)
    with pytest.raises(ValueError, match="2 rows, 1 labels, 2 langs"):
        PerLanguageTemperature().fit(np.full((2, 2), 0.5), [0], ["en", "fr"])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        apply_temperature(np.full((1, 2), 0.5), 0.0)
    with pytest.raises(ValueError, match="no labels"):
        fit_temperature(np.empty((0, 2)), [])


def test_cross_fitted_report_judges_each_half_with_the_other_halfs_temperature() -> None:
    from curation.calibration import cross_fitted_report

    rng = np.random.default_rng(5)
    p_fr, y_fr = _planted(rng, 2000, temperature=1 / 3.0)  # over-confident
    p_de, y_de = _planted(rng, 40, temperature=1.0)  # too few for its own temperature
    p = np.vstack([p_fr, p_de])
    y = np.concatenate([y_fr, y_de])
    lang = np.array(["fr"] * 2000 + ["de"] * 40)
    calibrator, report = cross_fitted_report(p, y, lang, min_labels=100, seed=0)
    assert sorted(report) == ["all", "de", "fr"]
    assert report["fr"]["source"] == "language" and report["de"]["source"] == "global"
    assert report["fr"]["temperature"] == pytest.approx(calibrator.temperatures_["fr"], abs=1e-4)
    assert report["fr"]["ece_after"] < report["fr"]["ece_before"] / 3
    assert (report["fr"]["labels"], report["de"]["labels"], report["all"]["labels"]) == (
        2000,
        40,
        2040,
    )
    # Deterministic for a seed.
    assert cross_fitted_report(p, y, lang, min_labels=100, seed=0)[1] == report


def test_perfectly_separated_labels_stop_at_the_temperature_floor() -> None:
    """All held-out predictions right: the likelihood wants T -> 0 (certainty); the floor
    keeps probabilities probabilities."""
    from curation.calibration import MIN_TEMPERATURE

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=40)
    probabilities = np.full((40, 3), 0.2)
    probabilities[np.arange(40), labels] = 0.6
    temperature = fit_temperature(probabilities, labels)
    assert temperature == pytest.approx(MIN_TEMPERATURE, rel=1e-3)
    scaled = apply_temperature(probabilities, temperature)
    assert scaled.max() == pytest.approx(0.6**4 / (0.6**4 + 2 * 0.2**4))  # 0.976, not 1.0
