"""Per-language stopping: stabilizing predictions plus a flat validation curve."""

from __future__ import annotations

import pytest

from selection.allocation import allocate
from selection.stopping import LanguageHistory, StopDecision, StoppingRule

STOP_SET = 500


def _predictions(changes: list[int]) -> list[list[str]]:
    """Round 0 predicts 'neg' everywhere; round r flips the first changes[r-1] more to 'pos'."""
    rounds = [["neg"] * 250 + ["pos"] * 250]
    for changed in changes:
        previous = rounds[-1]
        current = list(previous)
        for i in range(changed):
            current[i] = "pos" if previous[i] == "neg" else "neg"
        rounds.append(current)
    return rounds


def test_stable_predictions_and_a_flat_curve_stop_a_language() -> None:
    history = LanguageHistory(
        stop_set_predictions=_predictions([40, 2, 2]),  # 8%, then 0.4% twice
        labels=[100, 200, 300, 400],
        f1=[0.50, 0.60, 0.602, 0.603],
    )
    decision = StoppingRule(window=2, min_kappa=0.98).decide({"fr": history})["fr"]
    assert decision.stopped
    assert decision.changed == pytest.approx(0.004)
    assert decision.slope_per_100 == pytest.approx(0.0015)
    assert decision.message == (
        "fr: stopped, predictions changed on 0.4% of the stop set over the last 2 round(s) "
        "(kappa 0.992); validation F1 +0.002 per 100 labels"
    )


def test_a_rising_curve_keeps_a_stable_language_going() -> None:
    history = LanguageHistory(
        stop_set_predictions=_predictions([1, 1]), labels=[100, 200, 300], f1=[0.5, 0.55, 0.6]
    )
    decision = StoppingRule().decide({"de": history})["de"]
    assert not decision.stopped
    assert decision.reason.startswith("continue, predictions changed on 0.2%")
    assert decision.reason.endswith("validation F1 +0.050 per 100 labels")


def test_unstable_predictions_keep_a_flat_language_going() -> None:
    history = LanguageHistory(
        stop_set_predictions=_predictions([30, 30]), labels=[100, 200, 300], f1=[0.6, 0.6, 0.6]
    )
    decision = StoppingRule().decide({"hi": history})["hi"]
    assert not decision.stopped
    assert decision.changed == pytest.approx(0.06)
    assert decision.kappa == pytest.approx(0.88)  # 30 of 500 flipped, balanced classes


def test_without_a_curve_enough_labels_and_stable_predictions_stop() -> None:
    few = LanguageHistory(stop_set_predictions=_predictions([0, 0]), labels=[20, 40, 60])
    many = LanguageHistory(stop_set_predictions=_predictions([0, 0]), labels=[100, 150, 200])
    decisions = StoppingRule(min_labels=100).decide({"ar": few, "es": many})
    assert [d.stopped for d in decisions.values()] == [False, True]
    assert decisions["ar"].reason.endswith("no validation curve yet, 60 labels (< 100)")
    assert decisions["es"].reason == (
        "stopped, predictions changed on 0.0% of the stop set over the last 2 round(s) "
        "(kappa 1.000); no validation curve yet, 200 labels (>= 100)"
    )


def test_too_few_rounds_to_judge() -> None:
    decision = StoppingRule(window=2).decide(
        {"it": LanguageHistory(stop_set_predictions=_predictions([0]), labels=[10, 20])}
    )["it"]
    assert decision == StopDecision(
        "it", False, "continue, 2 round(s) of stop-set predictions, 3 needed to judge"
    )


def test_bad_histories_and_settings() -> None:
    with pytest.raises(ValueError, match="pt: 3 rounds of stop-set predictions but 2 label"):
        StoppingRule().decide(
            {"pt": LanguageHistory(stop_set_predictions=_predictions([0, 0]), labels=[1, 2])}
        )
    with pytest.raises(ValueError, match="window must be >= 1"):
        StoppingRule(window=0)
    assert repr(StoppingRule()) == (
        "StoppingRule(window=2, min_kappa=0.99, min_gain_per_100=0.005, min_labels=100)"
    )


def test_the_allocator_gives_a_stopped_language_nothing_and_says_why() -> None:
    reason = "stopped, predictions changed on 0.4% of the stop set over the last 2 round(s)"
    result = allocate(
        90,
        {"fr": 1000, "de": 1000, "hi": 1000},
        method="equal",
        min_per_language=10,
        stopped={"fr": reason},
    )
    assert result.per_language == {"de": 45, "fr": 0, "hi": 45}
    assert result.explanations["fr"] == f"fr: 0 of 90, {reason}"
    assert result.total == 90


def test_without_redistribution_a_stopped_language_saves_its_share() -> None:
    reason = "stopped, predictions changed on 0.0% of the stop set over the last 2 round(s)"
    kept = allocate(90, {"fr": 1000, "de": 1000, "hi": 1000}, method="equal")
    saved = allocate(
        90,
        {"fr": 1000, "de": 1000, "hi": 1000},
        method="equal",
        stopped={"fr": reason},
        redistribute_stopped=False,
    )
    assert kept.per_language == {"de": 30, "fr": 30, "hi": 30}
    assert saved.per_language == {"de": 30, "fr": 0, "hi": 30}
    assert saved.total == 60
    assert saved.explanations["fr"] == f"fr: 0 of 90, {reason} (30 labels saved)"
    assert saved.explanations["de"] == kept.explanations["de"]
