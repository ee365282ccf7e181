"""Drift tests: no alert on a fresh sample of the same distribution, an alert on a shifted one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curation.drift import (
    DriftThresholds,
    classifier_two_sample_test,
    distribution_shift,
    mix_shift,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classifier_two_sample_test(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(800, 32))
    same = rng.normal(size=(400, 32))
    shifted = rng.normal(size=(400, 32))
    shifted[:, :4] += 1.0  # another "topic": four directions move by one standard deviation
    quiet = classifier_two_sample_test(same, reference, language="fr", rng=rng)
    loud = classifier_two_sample_test(shifted, reference, language="fr", rng=rng)
    assert not quiet.alert
    assert 0.4 < quiet.statistic < 0.6
    assert loud.alert
    assert loud.statistic > 0.85
    assert loud.p_value < 1e-6
    assert loud.message.startswith("fr: embedding drift, a classifier tells the batch from")
    assert (loud.batch_rows, loud.reference_rows) == (400, 800)


def test_classifier_test_subsamples_big_inputs_and_skips_small_ones() -> None:
    rng = np.random.default_rng(0)
    big = classifier_two_sample_test(
        rng.normal(size=(5000, 8)), rng.normal(size=(5000, 8)), rng=rng
    )
    assert (big.batch_rows, big.reference_rows, big.alert) == (5000, 5000, False)
    small = classifier_two_sample_test(rng.normal(size=(10, 8)), rng.normal(size=(500, 8)), rng=rng)
    assert not small.alert
    assert math.isnan(small.statistic)
    assert small.detail == "too few rows to test"


def test_mix_shift_total_variation_by_hand() -> None:
    reference = {"en": 500, "fr": 300, "de": 200}
    # Same proportions: TVD 0, no alert.
    same = mix_shift("language_mix", {"en": 50, "fr": 30, "de": 20}, reference)
    assert same.statistic == pytest.approx(0.0)
    assert not same.alert
    # A new language arrives: half the batch is Swahili. TVD = 0.5 exactly.
    new = mix_shift("language_mix", {"en": 25, "fr": 15, "de": 10, "sw": 50}, reference)
    assert new.statistic == pytest.approx(0.5)
    assert new.alert
    assert new.detail.startswith(
        "total variation 0.50 (batch: de 10%, en 25%, fr 15%, sw 50%; "
        "reference: de 20%, en 50%, fr 30%)"
    )
    # A real but small change (TVD 0.05) on a big batch: significant, yet below the threshold.
    small = mix_shift("predicted_labels", {"neg": 5500, "pos": 4500}, {"neg": 5000, "pos": 5000})
    assert small.p_value < 0.01
    assert small.statistic == pytest.approx(0.05)
    assert not small.alert


def test_distribution_shift_on_lengths() -> None:
    rng = np.random.default_rng(4)
    tweets = rng.normal(90, 30, size=1000).clip(5)
    more_tweets = rng.normal(90, 30, size=300).clip(5)
    articles = rng.normal(900, 200, size=300).clip(5)
    assert not distribution_shift("text_length", more_tweets, tweets, unit=" chars").alert
    loud = distribution_shift("text_length", articles, tweets, language="de", unit=" chars")
    assert loud.alert
    assert loud.statistic == pytest.approx(1.0)
    assert loud.message.startswith("de: text_length drift, KS 1.00, median")


def test_thresholds_are_settings() -> None:
    strict = DriftThresholds(total_variation=0.01)
    small = mix_shift(
        "predicted_labels",
        {"neg": 5500, "pos": 4500},
        {"neg": 5000, "pos": 5000},
        thresholds=strict,
    )
    assert small.alert
