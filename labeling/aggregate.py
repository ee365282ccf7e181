"""Annotator-aware aggregation: Dawid-Skene (crowd-kit) next to majority vote.

Majority vote counts every annotator the same. With overlap >= 2 and annotators of unequal skill,
that is wasteful: a careful annotator outvoted by two careless ones loses, and a tie needs a
person. The Dawid-Skene model (Dawid & Skene, 1979) estimates, by EM over *all* tasks at once,
each annotator's confusion matrix and the class priors, then the posterior of every task's true
label given its votes: a reliable annotator's vote weighs more, and most ties resolve. crowd-kit's
``DawidSkene`` does the fitting; gold tasks (known truth) are passed as ``true_labels`` and pin
the posteriors of those tasks, which anchors every confusion matrix.

:func:`dawid_skene` returns per example the label, its posterior probability (used where majority
vote uses the winning share, e.g. against ``min_agreement``), and per annotator an estimated
accuracy (``sum_c prior[c] * P(answer c | truth c)``) for the Labeling page.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Aggregated", "dawid_skene", "majority_vote"]


@dataclass(frozen=True)
class Aggregated:
    """Per example: ``labels`` (None where undecided: a majority tie) and ``confidence`` (the
    posterior, or the winning share for majority vote); per annotator: ``annotator_accuracy``
    (estimated by Dawid-Skene; for majority vote, agreement with the majority label)."""

    labels: dict[str, str | None]
    confidence: dict[str, float]
    annotator_accuracy: dict[str, float]
    method: str


def majority_vote(votes: Mapping[str, Mapping[str, str]]) -> Aggregated:
    """``votes[example][annotator] = label``; ties are undecided (None)."""
    labels: dict[str, str | None] = {}
    confidence: dict[str, float] = {}
    for example, answers in votes.items():
        counts = Counter(answers.values())
        if not counts:
            continue
        top = max(counts.values())
        winners = sorted(label for label, count in counts.items() if count == top)
        labels[example] = winners[0] if len(winners) == 1 else None
        confidence[example] = top / len(answers)
    agree: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for example, answers in votes.items():
        if labels.get(example) is None:
            continue
        for annotator, label in answers.items():
            seen[annotator] += 1
            agree[annotator] += int(label == labels[example])
    accuracy = {annotator: agree[annotator] / seen[annotator] for annotator in sorted(seen)}
    return Aggregated(labels, confidence, accuracy, "majority")


def dawid_skene(
    votes: Mapping[str, Mapping[str, str]],
    *,
    gold: Mapping[str, str] | None = None,
    n_iter: int = 100,
) -> Aggregated:
    """Dawid-Skene over every example's votes (``votes[example][annotator] = label``).

    ``gold``: examples whose true label is known (gold tasks); they anchor the annotators'
    confusion matrices and keep their known label.
    """
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    rows = [
        (example, annotator, label)
        for example, answers in votes.items()
        for annotator, label in answers.items()
    ]
    if not rows:
        return Aggregated({}, {}, {}, "dawid_skene")
    data = pd.DataFrame(rows, columns=["task", "worker", "label"])
    true_labels = None
    if gold:
        known = {example: label for example, label in gold.items() if example in votes}
        if known:
            true_labels = pd.Series(known, name="true_label")
            true_labels.index.name = "task"
    with warnings.catch_warnings():
        # crowd-kit 1.4 calls pandas APIs that pandas 3.x deprecates (inplace=, copy=): the
        # library's to fix, not the user's to read on every pull.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        model = DawidSkene(n_iter=n_iter).fit(data, true_labels=true_labels)
    probabilities = model.probas_
    labels = {
        str(example): str(probabilities.loc[example].idxmax()) for example in probabilities.index
    }
    confidence = {
        str(example): float(probabilities.loc[example].max()) for example in probabilities.index
    }
    priors = model.priors_
    errors = model.errors_  # index (worker, observed label), columns: true label
    accuracy: dict[str, float] = {}
    for annotator in sorted(set(data["worker"])):
        matrix = errors.loc[annotator]
        accuracy[annotator] = float(
            sum(
                priors[label] * (matrix.loc[label, label] if label in matrix.index else 0.0)
                for label in priors.index
            )
        )
    return Aggregated(labels, confidence, accuracy, "dawid_skene")
