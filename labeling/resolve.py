"""From several annotators' answers to one final label per example.

Rules, per example (one vote per annotator: an annotator's latest non-deleted annotation):
- skipped/cancelled annotations are not votes; they only count towards "enough answers";
- `pending`: fewer answers (votes + skips) than the overlap the task asked for: wait;
- `skipped`: enough answers but none is a label (everyone skipped): needs a person;
- `tie`: two or more labels share the most votes: needs a person;
- `low_agreement`: the winning label's share of the votes is below `min_agreement`;
- `resolved`: otherwise, the majority label.

What happens to a resolution (see labeling.pull): a crowd label (source `labelstudio`) never
replaces an `import` or `adjudicated` label; a disagreement with an `import` label goes to the
adjudication queue instead of overwriting it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["resolved", "pending", "skipped", "tie", "low_agreement"]

# Statuses a person must settle with `curate adjudicate --set`.
NEEDS_ADJUDICATION: frozenset[str] = frozenset({"skipped", "tie", "low_agreement"})


@dataclass(frozen=True)
class Resolution:
    status: Status
    label: str | None  # the majority label when resolved
    votes: dict[str, int]  # label -> count, most voted first
    agreement: float | None  # share of votes for the winning label(s)
    skips: int = 0

    @property
    def needs_adjudication(self) -> bool:
        return self.status in NEEDS_ADJUDICATION


def resolve_votes(
    votes: Sequence[str],
    *,
    min_agreement: float,
    required: int = 1,
    skips: int = 0,
) -> Resolution:
    """Resolve one example's votes (labels, one per annotator) as described in the module doc."""
    counts = Counter(votes)
    ordered = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    total = len(votes)
    if total + skips < max(required, 1):
        share = max(counts.values()) / total if total else None
        return Resolution("pending", None, ordered, share, skips)
    if total == 0:
        return Resolution("skipped", None, ordered, None, skips)
    top = max(counts.values())
    winners = [label for label, count in counts.items() if count == top]
    share = top / total
    if len(winners) > 1:
        return Resolution("tie", None, ordered, share, skips)
    if share < min_agreement:
        return Resolution("low_agreement", None, ordered, share, skips)
    return Resolution("resolved", winners[0], ordered, share, skips)
