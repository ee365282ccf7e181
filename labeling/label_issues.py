"""Suspected label errors (cleanlab), per language, onto the adjudication queue.

After a pull, the front room (curation.pipeline) computes out-of-fold probabilities of the proxy
for every labeled example -- each example scored by a model that never saw its label -- and hands
them here. :func:`find_label_issues_per_language` runs cleanlab's confident learning
(``cleanlab.filter.find_label_issues``, pruning by the estimated noise rate per class pair, ranked
by self-confidence: the model's probability of the given label) over all languages at once, so the
noise estimate has every label behind it, and then keeps the most severe ``max_per_language``
per language: annotators of one language are never flooded by another's noise.

:func:`queue_label_issues` adds them to the adjudication queue, with the reason spelled out
("given: negative, model: positive 0.93, self-confidence 0.04"). A person's word is final:
adjudicated labels are never flagged again, and an example already on the queue for another
reason (a tie, a conflict) keeps that reason. Pull rebuilds the queue, so the front room runs
this after every pull; a flag that no longer holds (the label was fixed, the model changed its
mind) disappears with the rebuild.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from curation.store import Store, utc_now

REASON = "suspected_label_error"


@dataclass(frozen=True)
class LabelIssue:
    example_id: str
    language: str
    given: str
    suggested: str
    suggested_probability: float
    self_confidence: float  # the model's probability of the given label

    @property
    def reason(self) -> str:
        return (
            f"{REASON}: given: {self.given}, model: {self.suggested} "
            f"{self.suggested_probability:.2f}, self-confidence {self.self_confidence:.2f}"
        )


def find_label_issues_per_language(
    example_ids: Sequence[str],
    labels: Sequence[str],
    languages: Sequence[str],
    out_of_fold_probabilities: np.ndarray,
    label_names: Sequence[str],
    *,
    max_per_language: int = 20,
) -> list[LabelIssue]:
    """The suspected errors, most severe first within each language, at most
    ``max_per_language`` per language (languages in sorted order).

    ``out_of_fold_probabilities[i, k]`` is the probability of ``label_names[k]`` for example
    ``i`` from a model that was not trained on example ``i``. Classes with fewer than two
    labels cannot be judged and are left alone (cleanlab needs each class to be estimable).
    """
    from cleanlab.filter import find_label_issues

    ids = np.asarray(example_ids, dtype=object)
    given = np.asarray(labels, dtype=object)
    lang = np.asarray(languages, dtype=object)
    probabilities = np.asarray(out_of_fold_probabilities, dtype=np.float64)
    names = list(label_names)
    if not len(ids) == len(given) == len(lang) == len(probabilities):
        raise ValueError(
            f"lengths differ: {len(ids)} ids, {len(given)} labels, {len(lang)} languages, "
            f"{len(probabilities)} probability rows"
        )
    if probabilities.ndim != 2 or probabilities.shape[1] != len(names):
        raise ValueError(
            f"probabilities have shape {probabilities.shape}; expected (n, {len(names)})"
        )
    if max_per_language < 1:
        raise ValueError(f"max_per_language must be >= 1, got {max_per_language}")
    unknown = sorted(set(given.tolist()) - set(names))
    if unknown:
        raise ValueError(f"labels outside the label set: {', '.join(map(str, unknown))}")

    counts = Counter(given.tolist())
    judged = [name for name in names if counts.get(name, 0) >= 2]
    if len(judged) < 2:
        return []
    # Restrict to the judgeable classes and renormalise: cleanlab expects every column to be a
    # class that occurs in `labels`.
    columns = [names.index(name) for name in judged]
    keep = np.isin(given, judged)
    sub = probabilities[keep][:, columns]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    label_index = np.array([judged.index(label) for label in given[keep]], dtype=np.int64)
    ranked = find_label_issues(
        labels=label_index,
        pred_probs=sub,
        return_indices_ranked_by="self_confidence",
        n_jobs=1,  # cleanlab's multiprocessing costs more than it saves at these sizes
    )
    positions = np.flatnonzero(keep)[ranked]
    per_language: dict[str, list[LabelIssue]] = {}
    for position in positions:
        language = str(lang[position])
        if len(per_language.setdefault(language, [])) >= max_per_language:
            continue
        row = probabilities[position]
        suggested = int(np.argmax(row))
        per_language[language].append(
            LabelIssue(
                example_id=str(ids[position]),
                language=language,
                given=str(given[position]),
                suggested=names[suggested],
                suggested_probability=float(row[suggested]),
                self_confidence=float(row[names.index(given[position])]),
            )
        )
    return [issue for language in sorted(per_language) for issue in per_language[language]]


def queue_label_issues(store: Store, issues: Sequence[LabelIssue]) -> dict:
    """Put the issues on the adjudication queue; returns counts (queued per language, skipped).

    Skipped: examples whose label was adjudicated (a person's final word), whose label changed
    since the probabilities were computed, or that are already queued for another reason.
    """
    queued: Counter[str] = Counter()
    skipped = 0
    now = utc_now()
    with store.transaction() as conn:
        for issue in issues:
            row = conn.execute(
                "SELECT label, source FROM labels WHERE example_id = ?", (issue.example_id,)
            ).fetchone()
            on_queue = conn.execute(
                "SELECT 1 FROM adjudication_queue WHERE example_id = ?", (issue.example_id,)
            ).fetchone()
            if row is None or row[1] == "adjudicated" or row[0] != issue.given or on_queue:
                skipped += 1
                continue
            conn.execute(
                "INSERT INTO adjudication_queue (example_id, reason, votes, agreement, "
                "updated_at) VALUES (?, ?, ?, NULL, ?)",
                (
                    issue.example_id,
                    issue.reason,
                    # No crowd vote is behind the flag (the reason carries the model's view).
                    "{}",
                    now,
                ),
            )
            queued[issue.language] += 1
    return {
        "flagged": sum(queued.values()),
        "per_language": dict(sorted(queued.items())),
        "skipped": skipped,
    }
