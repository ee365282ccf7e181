"""k-center, k-means, TypiClust and hybrid against NumPy brute force on seeded data."""

from __future__ import annotations

import numpy as np
import pytest

from selection import KCenterGreedy, KMeansDiversity, TypiClust, get_strategy
from selection.base import l2_normalize
from selection.diversity import kcenter_greedy, kmeans_fit, typicality


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_kcenter(x: np.ndarray, labeled: np.ndarray, budget: int) -> list[int]:
    d = np.sqrt(((x[:, None, :] - labeled[None, :, :]) ** 2).sum(-1)).min(axis=1)
    picks: list[int] = []
    for _ in range(budget):
        i = int(np.argmax(d))
        picks.append(i)
        d = np.minimum(d, np.sqrt(((x - x[i]) ** 2).sum(-1)))
        d[picks] = -1
    return picks


def test_kcenter_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 10)).astype("float32")
    lab = rng.normal(size=(25, 10)).astype("float32")
    picks, dists = kcenter_greedy(x, 30, labeled=lab, rng=np.random.default_rng(0))
    assert picks.tolist() == _brute_kcenter(x.astype(np.float64), lab.astype(np.float64), 30)
    assert np.all(np.diff(dists) <= 1e-5)  # greedy radii never increase


def test_kcenter_strategy_uses_cosine_geometry() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)).astype("float32")
    lab = rng.normal(size=(10, 6)).astype("float32")
    ids = [f"i{k}" for k in range(200)]
    sel = KCenterGreedy(max_similarity=None).select(
        ids, 12, embeddings=x, labeled_embeddings=lab, rng=np.random.default_rng(0)
    )
    expected = _brute_kcenter(_unit(x.astype(np.float64)), _unit(lab.astype(np.float64)), 12)
    assert list(sel.ids) == [ids[i] for i in expected]
    # with the guard on (nothing is that close here) the answer is the same
    guarded = KCenterGreedy().select(
        ids, 12, embeddings=x, labeled_embeddings=lab, rng=np.random.default_rng(0)
    )
    assert guarded.ids == sel.ids


def test_kcenter_without_labeled_starts_at_random_point() -> None:
    x = np.random.default_rng(2).normal(size=(50, 4)).astype("float32")
    a, _ = kcenter_greedy(x, 5, rng=np.random.default_rng(7))
    b, _ = kcenter_greedy(x, 5, rng=np.random.default_rng(7))
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 5


def test_kmeans_assignment_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 8)).astype("float32")
    centroids, assign, d2 = kmeans_fit(x, 7, rng=np.random.default_rng(0))
    brute = ((x[:, None, :].astype(np.float64) - centroids[None].astype(np.float64)) ** 2).sum(-1)
    assert np.array_equal(assign, brute.argmin(axis=1))
    assert np.allclose(d2, brute.min(axis=1), atol=1e-4)


def test_kmeans_strategy_picks_member_nearest_each_centroid() -> None:
    rng = np.random.default_rng(4)
    centres = np.eye(5, 8) * 10  # orthogonal blobs: separated in cosine geometry too
    x = np.vstack([c + rng.normal(size=(40, 8)) for c in centres]).astype("float32")
    ids = list(range(len(x)))
    sel = KMeansDiversity(max_similarity=None).select(
        ids, 5, embeddings=x, rng=np.random.default_rng(0)
    )
    # one pick per blob
    assert sorted(i // 40 for i in sel.ids) == [0, 1, 2, 3, 4]
    # each pick is the member nearest (brute force) to its blob's k-means centroid
    centroids, assign, _ = kmeans_fit(l2_normalize(x), 5, rng=np.random.default_rng(0))
    unit = _unit(x.astype(np.float64))
    for i in sel.ids:
        members = np.flatnonzero(assign == assign[i])
        d = ((unit[members] - centroids[assign[i]]) ** 2).sum(-1)
        assert members[int(np.argmin(d))] == i
    assert all(r.endswith("centre") for r in sel.reasons)


def test_typicality_matches_brute_force() -> None:
    x = np.random.default_rng(5).normal(size=(60, 5)).astype("float32")
    d = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    expected = 1.0 / np.sort(d, axis=1)[:, :7].mean(axis=1)
    assert np.allclose(typicality(x, 7), expected, rtol=1e-4)


def test_typiclust_prefers_uncovered_dense_clusters() -> None:
    rng = np.random.default_rng(6)
    centres = np.eye(4, 16) * 20
    x = np.vstack([c + rng.normal(size=(50, 16)) for c in centres]).astype("float32")
    labeled = (centres[:2] + rng.normal(size=(2, 16))).astype("float32")  # blobs 0, 1 covered
    sel = TypiClust(max_similarity=None).select(
        list(range(200)), 2, embeddings=x, labeled_embeddings=labeled, rng=np.random.default_rng(0)
    )
    assert sorted(i // 50 for i in sel.ids) == [2, 3]
    assert all("uncovered" in r for r in sel.reasons)
    # the pick is the most typical member of its blob
    for i in sel.ids:
        blob = np.arange(50) + 50 * (i // 50)
        t = typicality(l2_normalize(x[blob]), 20)
        assert blob[int(np.argmax(t))] == i


def test_hybrid_cold_then_warm() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 8)).astype("float32")
    probs = rng.dirichlet([1, 1, 1], size=300)
    ids = list(range(300))
    hybrid = get_strategy("hybrid", min_labeled_per_class=5, candidate_factor=4)
    cold = hybrid.select(
        ids,
        10,
        probs=probs,
        embeddings=x,
        labeled_embeddings=x[:3] + 5,
        rng=np.random.default_rng(0),
    )
    assert all(r.startswith("cold start") for r in cold.reasons)
    warm = hybrid.select(
        ids,
        10,
        probs=probs,
        embeddings=x,
        labeled_embeddings=rng.normal(size=(15, 8)) + 5,
        rng=np.random.default_rng(0),
    )
    assert all(r.startswith("margin") for r in warm.reasons)
    # warm picks come from the 40 smallest-margin candidates, one per k-means group
    margin_rank = np.argsort(np.argsort(-(1 - np.abs(np.diff(np.sort(probs)[:, -2:])[:, 0]))))
    assert all(margin_rank[i] < 40 for i in warm.ids)
    # no probs -> cold start whatever the label count
    noprob = hybrid.select(ids, 5, embeddings=x, rng=np.random.default_rng(0))
    assert all(r.startswith("cold start") for r in noprob.reasons)
    # no embeddings -> margin
    noemb = hybrid.select(ids, 5, probs=probs, rng=np.random.default_rng(0))
    assert (
        noemb.ids
        == get_strategy("margin").select(ids, 5, probs=probs, rng=np.random.default_rng(0)).ids
    )


@pytest.mark.parametrize("name", ["kmeans", "typiclust"])
def test_large_pool_subsampling_is_seeded(name: str) -> None:
    x = np.random.default_rng(8).normal(size=(3000, 6)).astype("float32")
    s = get_strategy(name, max_candidates=500)
    a = s.select(list(range(3000)), 8, embeddings=x, rng=np.random.default_rng(1))
    b = s.select(list(range(3000)), 8, embeddings=x, rng=np.random.default_rng(1))
    assert a.ids == b.ids and len(a.ids) == 8


def _brute_coverage(cand, ref, sim, labeled, prio):  # type: ignore[no-untyped-def]
    balls = (cand @ ref.T) > sim
    uncovered = np.ones(ref.shape[0], bool)
    if labeled is not None:
        uncovered[((labeled @ ref.T) > sim).any(axis=0)] = False
    tie = 0.5 * (prio.max() - prio) / (prio.max() - prio.min())
    order, left = [], list(range(len(cand)))
    while left:
        gains = np.array([balls[i][uncovered].sum() for i in left]) + tie[left]
        i = left[int(np.argmax(gains))]
        order.append(i)
        left.remove(i)
        uncovered &= ~balls[i]
    return order


def test_coverage_greedy_matches_brute_force() -> None:
    from selection.diversity import coverage_greedy

    rng = np.random.default_rng(9)
    ref = _unit(rng.normal(size=(150, 5))).astype("float32")
    cand = ref[:40]
    lab = _unit(rng.normal(size=(3, 5))).astype("float32")
    prio = rng.uniform(size=40)
    order, gains = coverage_greedy(cand, ref, similarity=0.6, labeled=lab, priority=prio)
    expected = _brute_coverage(
        cand.astype(np.float64), ref.astype(np.float64), 0.6, lab.astype(np.float64), prio
    )
    assert order.tolist() == expected
    assert gains[0] >= gains[1] >= gains[2]


def test_hybrid_kmeans_variant_and_language_shares() -> None:
    rng = np.random.default_rng(10)
    x = rng.normal(size=(400, 8)).astype("float32")
    probs = rng.dirichlet([1, 1, 1], size=400)
    langs = np.array(["en"] * 300 + ["hi"] * 100)
    lab = rng.normal(size=(40, 8)).astype("float32")
    inputs = dict(probs=probs, embeddings=x, labeled_embeddings=lab, languages=langs)
    for diversity in ("coverage", "kmeans"):
        sel = get_strategy("hybrid", diversity=diversity, language_balance="proportional").select(
            list(range(400)), 20, rng=np.random.default_rng(0), **inputs
        )
        # proportional shares: 15 en, 5 hi
        assert sum(i < 300 for i in sel.ids) == 15
        assert sum(i >= 300 for i in sel.ids) == 5
        assert sel.reasons[0].startswith(("en share 15", "hi share 5"))
    # the default splits by need: the languages' mean margin uncertainty
    from selection.allocation import allocate
    from selection.uncertainty import margin_scores

    unc = margin_scores(probs)
    expected = allocate(
        20,
        {"en": 300, "hi": 100},
        method="need",
        uncertainty={"en": float(unc[:300].mean()), "hi": float(unc[300:].mean())},
    ).per_language
    default = get_strategy("hybrid")
    assert default.language_balance == "need"
    sel = default.select(list(range(400)), 20, rng=np.random.default_rng(0), **inputs)
    assert sum(i < 300 for i in sel.ids) == expected["en"]
    assert sum(i >= 300 for i in sel.ids) == expected["hi"]
    assert expected["en"] + expected["hi"] == 20 and expected["hi"] >= 9
    with pytest.raises(ValueError):
        get_strategy("hybrid", diversity="nope")


def test_hybrid_coverage_follows_an_e5_like_geometry() -> None:
    # Two tight clusters of 100 texts on top of a large shared direction, as e5 places texts:
    # every cosine is above 0.8, so a fixed 0.7 ball covers the whole pool and the coverage step
    # degenerates to margin order (both picks from the more uncertain cluster A). The adaptive
    # radius (the default: similarity to the 50th neighbour) sees two groups and takes one text
    # of each (the one whose ball covers most of its group).
    rng = np.random.default_rng(11)
    shared, centre_a, centre_b = np.zeros(16), np.zeros(16), np.zeros(16)
    shared[0], centre_a[1], centre_b[2] = 3.0, 1.0, 1.0
    x = np.vstack(
        [
            shared + centre_a + 0.05 * rng.normal(size=(100, 16)),
            shared + centre_b + 0.05 * rng.normal(size=(100, 16)),
        ]
    )
    unit = _unit(x)
    assert (unit @ unit.T).min() > 0.8
    margin = np.concatenate([np.linspace(0.01, 0.05, 100), np.linspace(0.06, 0.10, 100)])
    probs = np.stack([0.5 + margin / 2, 0.5 - margin / 2], axis=1)
    kw = dict(probs=probs, embeddings=x, labeled_embeddings=x[:0], rng=np.random.default_rng(0))
    ids = list(range(200))
    settings = dict(min_labeled_per_class=0, max_similarity=None, candidate_factor=100)
    adaptive = get_strategy("hybrid", **settings)
    assert adaptive.coverage_similarity is None
    picks = sorted(adaptive.select(ids, 2, **kw).ids)
    assert picks[0] < 100 <= picks[1], picks
    fixed = get_strategy("hybrid", coverage_similarity=0.7, **settings)
    assert sorted(fixed.select(ids, 2, **kw).ids) == [0, 1]
