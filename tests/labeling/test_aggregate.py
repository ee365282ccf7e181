"""Dawid-Skene (crowd-kit) against majority vote on simulated annotators of known accuracy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from labeling.aggregate import dawid_skene, majority_vote

LABELS = ("negative", "neutral", "positive")


def simulate(seed: int, accuracies: dict[str, float], tasks: int = 1500):
    """Every annotator answers every task: right with its accuracy, else a uniform wrong label."""
    rng = np.random.default_rng(seed)
    truth, votes = {}, {}
    for t in range(tasks):
        true = int(rng.integers(3))
        truth[f"t{t}"] = LABELS[true]
        votes[f"t{t}"] = {
            annotator: LABELS[
                true if rng.random() < accuracy else (true + int(rng.integers(1, 3))) % 3
            ]
            for annotator, accuracy in accuracies.items()
        }
    return truth, votes


def accuracy(labels: dict[str, str | None], truth: dict[str, str]) -> float:
    return float(np.mean([labels.get(task) == label for task, label in truth.items()]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dawid_skene_beats_majority_with_one_weak_annotator(seed: int) -> None:
    truth, votes = simulate(seed, {"ann": 0.9, "bob": 0.75, "cyd": 0.6})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the library's pandas deprecations stay inside
        ds = dawid_skene(votes)
    mv = majority_vote(votes)
    # Majority leaves every 3-way split undecided (counted wrong); Dawid-Skene trusts "ann".
    assert accuracy(ds.labels, truth) >= accuracy(mv.labels, truth) + 0.03
    # The estimated annotator accuracies recover the planted ones.
    for annotator, planted in {"ann": 0.9, "bob": 0.75, "cyd": 0.6}.items():
        assert ds.annotator_accuracy[annotator] == pytest.approx(planted, abs=0.04)
    assert set(ds.confidence) == set(truth)
    assert all(0.33 < value <= 1.0 for value in ds.confidence.values())


def test_gold_tasks_keep_their_label_and_anchor_the_model() -> None:
    truth, votes = simulate(3, {"ann": 0.8, "bob": 0.8, "cyd": 0.55}, tasks=300)
    gold = {task: truth[task] for task in list(truth)[:30]}
    # Make every gold task look wrong to the crowd: the known label must still win.
    for task in gold:
        wrong = LABELS[(LABELS.index(gold[task]) + 1) % 3]
        votes[task] = {"ann": wrong, "bob": wrong, "cyd": wrong}
    result = dawid_skene(votes, gold=gold)
    assert {task: result.labels[task] for task in gold} == gold


def test_majority_vote_by_hand() -> None:
    votes = {
        "a": {"x": "neutral", "y": "neutral", "z": "positive"},
        "b": {"x": "negative", "y": "positive", "z": "neutral"},  # 3-way tie
        "c": {"x": "positive", "y": "positive"},
    }
    result = majority_vote(votes)
    assert result.labels == {"a": "neutral", "b": None, "c": "positive"}
    assert result.confidence == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 3), "c": 1.0}
    # agreement with decided majorities (a and c): x 2 of 2, y 2 of 2, z 0 of 1
    assert result.annotator_accuracy == {"x": 1.0, "y": 1.0, "z": 0.0}


def test_no_votes() -> None:
    assert dawid_skene({}).labels == {}
    assert majority_vote({}).labels == {}
