"""Near-duplicate guard: exact cases, for every strategy."""

from __future__ import annotations

import numpy as np
import pytest

from selection import available, get_strategy, greedy_deduplicate

ALL = available()


def test_candidate_identical_to_labeled_is_never_chosen() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype="float32")
    probs = np.array([[0.5, 0.5], [0.6, 0.4], [0.9, 0.1]])  # "a" is the most uncertain
    sel = get_strategy("margin").select(
        ["a", "b", "c"],
        2,
        probs=probs,
        embeddings=emb,
        labeled_embeddings=np.array([[2.0, 0.0]]),  # same direction as "a" (cosine 1)
        rng=np.random.default_rng(0),
    )
    assert sel.ids == ("b", "c")
    assert sel.skipped_near_duplicates == 1
    assert sel.shortfall == 0


def test_two_identical_candidates_only_one_taken() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype="float32")
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]])
    sel = get_strategy("margin").select(
        ["a", "b", "c"], 3, probs=probs, embeddings=emb, rng=np.random.default_rng(0)
    )
    assert sel.ids == ("a", "c")
    assert sel.skipped_near_duplicates == 1
    assert sel.shortfall == 1


def test_threshold_is_strict_and_language_agnostic() -> None:
    # cosine(a, labeled) = 0.8 exactly in exact arithmetic (3-4-5 triangle)
    emb = np.array([[0.8, 0.6], [0.0, 1.0]], dtype="float32")
    lab = np.array([[1.0, 0.0]], dtype="float32")
    probs = np.array([[0.5, 0.5], [0.9, 0.1]])
    kw = dict(
        probs=probs,
        embeddings=emb,
        labeled_embeddings=lab,
        languages=["en", "en"],
        rng=np.random.default_rng(0),
    )
    loose = get_strategy("margin", max_similarity=0.85).select(["a", "b"], 1, **kw)
    strict = get_strategy("margin", max_similarity=0.75).select(["a", "b"], 1, **kw)
    off = get_strategy("margin", max_similarity=None).select(["a", "b"], 1, **kw)
    assert loose.ids == ("a",)
    assert strict.ids == ("b",) and strict.skipped_near_duplicates == 1
    assert off.ids == ("a",)


def test_disabled_guard_allows_duplicates() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0]], dtype="float32")
    sel = get_strategy("random", max_similarity=None).select(
        ["a", "b"], 2, embeddings=emb, rng=np.random.default_rng(0)
    )
    assert sorted(sel.ids) == ["a", "b"]


def test_greedy_deduplicate_pure() -> None:
    v = np.array([[1, 0], [0.99, 0.01], [0, 1], [0, 2], [-1, 0]], dtype="float32")
    kept, skipped = greedy_deduplicate(v, max_similarity=0.95)
    assert kept == [0, 2, 4]
    assert skipped == 2
    kept, skipped = greedy_deduplicate(v, order=[4, 3, 2, 1, 0], labeled=[[0, 1]])
    assert kept == [4, 1]
    assert skipped == 3
    kept, _ = greedy_deduplicate(v, max_similarity=0.95, limit=2)
    assert kept == [0, 2]


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_skips_copies_of_labeled(name: str) -> None:
    rng = np.random.default_rng(5)
    fresh = rng.normal(size=(20, 6)).astype("float32")
    labeled = rng.normal(size=(20, 6)).astype("float32")
    emb = np.vstack([fresh, labeled * 3.0])  # rows 20..39 are copies (scaled) of labeled
    ids = [f"f{i}" for i in range(20)] + [f"copy{i}" for i in range(20)]
    probs = np.full((40, 3), 1 / 3)
    probs[20:] = [0.34, 0.33, 0.33]  # make the copies *more* attractive to uncertainty sampling
    probs[:20] = [0.6, 0.2, 0.2]
    sel = get_strategy(name).select(
        ids,
        40,
        probs=probs,
        embeddings=emb,
        labeled_embeddings=labeled,
        rng=np.random.default_rng(0),
    )
    assert not any(str(i).startswith("copy") for i in sel.ids)
    assert len(sel.ids) == 20
    assert sel.shortfall == 20
    assert sel.skipped_near_duplicates >= 20


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_takes_one_of_each_identical_pair(name: str) -> None:
    rng = np.random.default_rng(6)
    base = rng.normal(size=(15, 6)).astype("float32")
    emb = np.vstack([base, base])
    ids = [f"a{i}" for i in range(15)] + [f"b{i}" for i in range(15)]
    probs = np.random.default_rng(1).dirichlet([1, 1, 1], size=30)
    sel = get_strategy(name).select(
        ids, 30, probs=probs, embeddings=emb, rng=np.random.default_rng(0)
    )
    numbers = [str(i)[1:] for i in sel.ids]
    assert len(numbers) == len(set(numbers)) == 15
    assert sel.shortfall == 15
