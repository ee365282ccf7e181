"""Resolving one example's votes."""

from __future__ import annotations

from labeling.resolve import resolve_votes


def test_majority_resolves() -> None:
    result = resolve_votes(["pos", "pos", "neg"], min_agreement=0.5, required=3)
    assert result.status == "resolved" and result.label == "pos"
    assert result.votes == {"pos": 2, "neg": 1}
    assert abs(result.agreement - 2 / 3) < 1e-9


def test_single_annotator_resolves_when_one_is_required() -> None:
    assert resolve_votes(["neg"], min_agreement=0.5).label == "neg"


def test_ties_need_adjudication() -> None:
    assert resolve_votes(["pos", "neg"], min_agreement=0.5, required=2).status == "tie"
    three_way = resolve_votes(["a", "b", "c"], min_agreement=0.3, required=3)
    assert three_way.status == "tie" and three_way.needs_adjudication


def test_low_agreement_below_the_minimum() -> None:
    result = resolve_votes(["a", "a", "b", "c"], min_agreement=0.75, required=4)
    assert result.status == "low_agreement" and result.label is None
    assert resolve_votes(["a", "a", "b", "c"], min_agreement=0.5, required=4).label == "a"


def test_pending_until_enough_answers() -> None:
    assert resolve_votes(["pos"], min_agreement=0.5, required=3).status == "pending"
    # A skip counts as an answer but not as a vote.
    result = resolve_votes(["pos", "pos"], min_agreement=0.5, required=3, skips=1)
    assert result.status == "resolved" and result.label == "pos"


def test_all_skipped_needs_a_person() -> None:
    result = resolve_votes([], min_agreement=0.5, required=1, skips=1)
    assert result.status == "skipped" and result.needs_adjudication
    assert resolve_votes([], min_agreement=0.5, required=2, skips=1).status == "pending"
