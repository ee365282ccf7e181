"""Two-stage selection (selection/two_stage.py): per-shard candidates, then the strategy on
their union, against the single-machine ``select`` on the whole pool."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from selection import EmptyPoolError, InvalidBudgetError, MissingInputError, ShapeError
from selection.registry import get_strategy
from selection.two_stage import (
    Candidates,
    LanguageStats,
    language_stats,
    merge_candidates,
    plan_shards,
    score_function_for,
    shard_candidates,
    stats_top_k,
    two_stage_select,
)
from selection.uncertainty import margin_scores, margins
from selection.vectors import l2_normalize

LANGS = ("de", "en", "hi")
N_SHARDS = 4


def make_pool(seed: int, *, n: int = 4000, dim: int = 16) -> dict[str, np.ndarray]:
    """Clustered vectors (40 topics), three languages, Dirichlet 3-class probabilities."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = (centres[rng.integers(0, 40, n)] + 0.8 * rng.normal(size=(n, dim))).astype("float32")
    labeled = centres[rng.integers(0, 40, 200)] + 0.8 * rng.normal(size=(200, dim))
    return {
        "ids": np.arange(n),
        "probs": rng.dirichlet(np.full(3, 0.7), size=n),
        "embeddings": x,
        "languages": np.array(LANGS, dtype=object)[rng.integers(0, len(LANGS), n)],
        "labeled": labeled.astype("float32"),
    }


def _parts(n: int, n_shards: int = N_SHARDS) -> list[np.ndarray]:
    return np.array_split(np.arange(n), n_shards)


def two_stage(
    pool: dict[str, np.ndarray],
    strategy,
    budget: int,
    *,
    seed: int,
    thresholds: bool = True,
    reference_per_language: int | None = None,
    labeled: np.ndarray | None = None,
    guard_slack: float = 0.5,
) -> tuple[object, Candidates]:
    """The whole path as the engine runs it: a stats pass, a plan, shards, the driver."""
    parts = _parts(len(pool["ids"]))
    top_k = stats_top_k(strategy, budget, guard_slack=guard_slack) if thresholds else 0
    stats = LanguageStats.merge(
        [
            language_stats(
                pool["languages"][p],
                probs=pool["probs"][p],
                n_rows=len(p),
                strategy_score=score_function_for(strategy),
                top_k=top_k,
            )
            for p in parts
        ]
    )
    plan = plan_shards(
        strategy,
        budget,
        stats=stats,
        n_shards=len(parts),
        reference_per_language=reference_per_language,
        guard_slack=guard_slack,
    )
    rng = np.random.default_rng(seed)
    shards = [
        shard_candidates(
            pool["ids"][p],
            probs=pool["probs"][p],
            embeddings=pool["embeddings"][p],
            languages=pool["languages"][p],
            rng=rng,
            labeled_embeddings=labeled,
            **plan.kwargs(),
        )
        for p in parts
    ]
    union = merge_candidates(shards)
    selection = two_stage_select(
        union, strategy, budget, labeled_embeddings=labeled, rng=np.random.default_rng(seed)
    )
    return selection, union


def single(pool, strategy, budget: int, *, seed: int, labeled=None):
    return strategy.select(
        pool["ids"],
        budget,
        probs=pool["probs"],
        embeddings=pool["embeddings"],
        languages=pool["languages"],
        labeled_embeddings=labeled,
        rng=np.random.default_rng(seed),
    )


def _only(pool: dict[str, np.ndarray], code: str) -> dict[str, np.ndarray]:
    rows = np.flatnonzero(pool["languages"] == code)
    return {k: (v[rows] if k != "labeled" else v) for k, v in pool.items()}


# ---------------------------------------------------------------------------------------------
# pure uncertainty strategies: identical
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["margin", "entropy", "least_confidence"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("thresholds", [True, False])
def test_uncertainty_two_stage_is_identical(name: str, seed: int, thresholds: bool) -> None:
    pool = make_pool(seed)
    strategy = get_strategy(name, max_similarity=None)
    for budget in (1, 17, 150, 1200):
        want = single(pool, strategy, budget, seed=seed)
        got, _ = two_stage(pool, strategy, budget, seed=seed, thresholds=thresholds)
        assert got.ids == want.ids
        assert got.scores == want.scores
        assert got.reasons == want.reasons
        # per language: the same on each language's own pool
        for code in LANGS:
            sub = _only(pool, code)
            want_l = single(sub, strategy, budget, seed=seed)
            got_l, _ = two_stage(sub, strategy, budget, seed=seed, thresholds=thresholds)
            assert got_l.ids == want_l.ids


def test_uncertainty_ties_break_by_pool_order_across_shards() -> None:
    # every row has the same margin: single-machine takes the first `budget` in pool order
    pool = make_pool(0, n=400)
    pool["probs"] = np.tile([0.5, 0.3, 0.2], (400, 1))
    strategy = get_strategy("margin", max_similarity=None)
    want = single(pool, strategy, 30, seed=0)
    got, _ = two_stage(pool, strategy, 30, seed=0, thresholds=False)
    assert want.ids == tuple(range(30))
    assert got.ids == want.ids


def test_margin_with_guard_on_is_identical_when_the_slack_covers_the_skips() -> None:
    # 60 exact duplicates of the 60 most uncertain rows: the single machine skips them and
    # walks 160 rows for 100 picks. The shards keep budget * (1 + guard_slack) rows.
    pool = make_pool(3)
    unc = margin_scores(pool["probs"])
    top = np.argsort(-unc, kind="stable")[:60]
    dup_rows = np.argsort(unc, kind="stable")[:60]  # the most confident rows, overwritten
    pool["embeddings"][dup_rows] = pool["embeddings"][top]
    pool["probs"][dup_rows] = pool["probs"][top]
    strategy = get_strategy("margin")  # max_similarity=0.95
    want = single(pool, strategy, 100, seed=0)
    assert want.skipped_near_duplicates == 60
    # slack 0.5: 150 rows kept, 60 skipped -> the first 90 picks, and the shortfall says so
    short, _ = two_stage(pool, strategy, 100, seed=0, guard_slack=0.5)
    assert short.ids == want.ids[:90]
    assert (short.shortfall, short.skipped_near_duplicates) == (10, 60)
    # slack 1.0: 200 rows kept -> identical
    for thresholds in (True, False):
        got, _ = two_stage(pool, strategy, 100, seed=0, guard_slack=1.0, thresholds=thresholds)
        assert got.ids == want.ids
        assert (got.shortfall, got.skipped_near_duplicates) == (0, 60)


def test_thresholds_keep_exactly_budget_score_rows() -> None:
    # first pass records the best scores; the shards together keep exactly `budget` rows
    pool = make_pool(1)
    strategy = get_strategy("margin", max_similarity=None)
    _, with_bar = two_stage(pool, strategy, 150, seed=0, thresholds=True)
    _, without = two_stage(pool, strategy, 150, seed=0, thresholds=False)
    assert len(with_bar) == 150
    assert len(without) == N_SHARDS * 150


# ---------------------------------------------------------------------------------------------
# hybrid (the default)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_similarity", [None, 0.95])
@pytest.mark.parametrize("seed", [0, 1])
def test_hybrid_identical_when_each_language_fits_the_reference(
    max_similarity: float | None, seed: int
) -> None:
    # every language (~1,333 rows) is below max_reference (20,000): the shards keep each
    # language whole, the allocation comes from the pool's stats -> the single-machine result
    pool = make_pool(seed)
    strategy = get_strategy("hybrid", max_similarity=max_similarity)
    want = single(pool, strategy, 60, seed=seed, labeled=pool["labeled"])
    got, union = two_stage(pool, strategy, 60, seed=seed, labeled=pool["labeled"])
    assert len(union) == len(pool["ids"])
    assert got.ids == want.ids
    assert got.reasons == want.reasons


def test_hybrid_sampled_reference_is_as_close_as_another_seed() -> None:
    # Languages of ~4,000 rows, max_reference=1,500: both paths cover against a uniform sample
    # of 1,500 (the single machine draws it from the language, the shards draw 375 each), the
    # prefilter is exact. Measured over seeds 0-3, budget 30 / 90: overlap with the
    # single-machine picks 0.47 / 0.41, against 0.44 / 0.35 between two seeds of the single
    # machine itself; mean margin of the picks 1.14x / 1.01x the single machine's (mean 1.08).
    overlap_two, overlap_seeds, ratio = [], [], []
    for budget in (30, 90):
        for seed in range(4):
            pool = make_pool(seed, n=12_000)
            strategy = get_strategy("hybrid", max_reference=1500, coverage_knn=20)
            lab = pool["labeled"]
            want = single(pool, strategy, budget, seed=seed, labeled=lab)
            other = single(pool, strategy, budget, seed=seed + 100, labeled=lab)
            got, union = two_stage(pool, strategy, budget, seed=seed, labeled=lab)
            assert len(got) == budget
            assert len(union) < 12_000 * 0.6
            overlap_two.append(len(set(got.ids) & set(want.ids)) / budget)
            overlap_seeds.append(len(set(other.ids) & set(want.ids)) / budget)
            ratio.append(
                margins(pool["probs"][list(got.ids)]).mean()
                / margins(pool["probs"][list(want.ids)]).mean()
            )
    assert np.mean(overlap_two) >= np.mean(overlap_seeds) - 0.10
    assert 0.85 <= np.mean(ratio) <= 1.15


@pytest.mark.parametrize("balance", ["need", "proportional", "equal"])
def test_hybrid_shares_come_from_the_whole_pool_not_the_union(balance: str) -> None:
    # 8,000 de / 2,000 en / 2,000 hi; the union holds ~500 sampled rows + the prefilter per
    # language, so its proportions are nearly equal: the shares must come from the pool's stats
    pool = make_pool(4, n=12_000)
    rng = np.random.default_rng(9)
    pool["languages"] = rng.permutation(np.array(["de"] * 8000 + ["en"] * 2000 + ["hi"] * 2000))
    strategy = get_strategy("hybrid", language_balance=balance, max_reference=500)
    want = single(pool, strategy, 60, seed=0, labeled=pool["labeled"])
    got, union = two_stage(pool, strategy, 60, seed=0, labeled=pool["labeled"])
    rows = {c: int(n) for c, n in zip(*np.unique(union.languages, return_counts=True), strict=True)}
    assert max(rows.values()) < 2 * min(rows.values())  # the pool is 4:1:1, the union is not

    def per_language(sel) -> dict[str, int]:
        codes, counts = np.unique(pool["languages"][list(sel.ids)], return_counts=True)
        return {str(c): int(k) for c, k in zip(codes, counts, strict=True)}

    assert per_language(got) == per_language(want)
    if balance == "proportional":
        assert per_language(want) == {"de": 40, "en": 10, "hi": 10}


# ---------------------------------------------------------------------------------------------
# diversity strategies: measured quality
# ---------------------------------------------------------------------------------------------
def _distance_to_picks(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(l2_normalize(centres))
    d2, _ = index.search(l2_normalize(x), 1)
    return np.sqrt(np.maximum(d2[:, 0], 0.0))


def test_kcenter_covering_radius_within_ten_percent() -> None:
    # Measured (seeds 0-4, budget 40, 6,000 rows, union 480 rows): radius ratio two-stage /
    # single 1.000, 1.038, 1.000, 1.000, 1.002.
    ratios = []
    for seed in range(5):
        pool = make_pool(seed, n=6000)
        strategy = get_strategy("kcenter", max_similarity=None)
        lab = pool["labeled"]
        want = single(pool, strategy, 40, seed=seed, labeled=lab)
        got, union = two_stage(pool, strategy, 40, seed=seed, labeled=lab)
        assert len(union) == N_SHARDS * len(LANGS) * 40
        x = pool["embeddings"]
        r_two = _distance_to_picks(x, np.vstack([x[list(got.ids)], lab])).max()
        r_one = _distance_to_picks(x, np.vstack([x[list(want.ids)], lab])).max()
        ratios.append(r_two / r_one)
    assert max(ratios) <= 1.10


def test_kmeans_mean_distance_within_eight_percent() -> None:
    # Measured (seeds 0-4, budget 40, 6,000 rows, a uniform sample of 400 per language):
    # mean distance of the pool to its nearest pick, two-stage / single 1.045, 1.044, 1.022,
    # 1.036, 1.035.
    ratios = []
    for seed in range(5):
        pool = make_pool(seed, n=6000)
        strategy = get_strategy("kmeans", max_similarity=None)
        want = single(pool, strategy, 40, seed=seed)
        got, union = two_stage(pool, strategy, 40, seed=seed, reference_per_language=400)
        assert len(union) == len(LANGS) * 400
        x = pool["embeddings"]
        ratios.append(
            _distance_to_picks(x, x[list(got.ids)]).mean()
            / _distance_to_picks(x, x[list(want.ids)]).mean()
        )
    assert max(ratios) <= 1.08


# ---------------------------------------------------------------------------------------------
# candidates
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["uniform", "farthest"])
def test_candidate_counts_per_language(method: str) -> None:
    rng = np.random.default_rng(0)
    # 500 "de", 300 "en", 12 "hi": hi has fewer than k + sample rows and is kept whole
    languages = np.array(["de"] * 500 + ["en"] * 300 + ["hi"] * 12, dtype=object)
    rng.shuffle(languages)
    n = len(languages)
    cand = shard_candidates(
        np.arange(n),
        probs=rng.dirichlet(np.ones(3), size=n),
        embeddings=rng.normal(size=(n, 8)),
        languages=languages,
        strategy_score=margin_scores,
        per_language_k=10,
        diversity_sample=5,
        rng=np.random.default_rng(1),
        diversity_method=method,
    )
    assert cand.counts() == {"de": 15, "en": 15, "hi": 12}
    assert int(cand.by_score.sum()) == 30
    # uniform: 5 per language drawn from the whole language (a row can be both); farthest:
    # drawn from the rest, of which "hi" has only 2
    assert int(cand.sampled.sum()) == (15 if method == "uniform" else 12)
    assert cand.embeddings is not None and cand.embeddings.dtype == np.float32
    assert cand.embeddings.flags.c_contiguous
    assert cand.stats.rows == {"de": 500, "en": 300, "hi": 12}
    assert list(cand.ids) == sorted(cand.ids)  # shard order kept


def test_candidates_per_language_mapping_and_total_cap() -> None:
    rng = np.random.default_rng(0)
    languages = np.array(["de", "en"] * 100, dtype=object)
    probs = rng.dirichlet(np.ones(3), size=200)
    cand = shard_candidates(
        np.arange(200),
        probs=probs,
        embeddings=None,
        languages=languages,
        strategy_score=margin_scores,
        per_language_k={"de": 30, "en": 5},
        diversity_sample=0,
        rng=np.random.default_rng(0),
        max_score_total=20,
    )
    scores = margin_scores(probs)
    de_best = np.flatnonzero(languages == "de")[np.argsort(-scores[languages == "de"])[:30]]
    en_best = np.flatnonzero(languages == "en")[np.argsort(-scores[languages == "en"])[:5]]
    both = np.concatenate([de_best, en_best])
    want = np.sort(both[np.argsort(-scores[both], kind="stable")[:20]])
    assert cand.ids.tolist() == want.tolist()


def test_without_a_score_the_head_is_a_seeded_uniform_sample() -> None:
    kw = {
        "probs": None,
        "embeddings": np.ones((100, 4)),
        "languages": None,
        "strategy_score": None,
        "per_language_k": 7,
        "diversity_sample": 0,
    }
    a = shard_candidates(np.arange(100), rng=np.random.default_rng(5), **kw)
    b = shard_candidates(np.arange(100), rng=np.random.default_rng(5), **kw)
    assert len(a) == 7
    assert a.ids.tolist() == b.ids.tolist()
    assert a.counts() == {"": 7}


def test_global_random_state_is_never_used() -> None:
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    pool = make_pool(0, n=800)
    two_stage(pool, get_strategy("hybrid"), 20, seed=0, labeled=pool["labeled"])
    assert np.array_equal(np.random.get_state()[1], before)


# ---------------------------------------------------------------------------------------------
# errors and settings
# ---------------------------------------------------------------------------------------------
def _empty_candidates() -> Candidates:
    return shard_candidates(
        np.zeros(0, dtype=np.int64),
        probs=np.zeros((0, 3)),
        embeddings=np.zeros((0, 4)),
        languages=np.zeros(0, dtype=object),
        strategy_score=margin_scores,
        per_language_k=5,
        diversity_sample=5,
        rng=np.random.default_rng(0),
    )


def test_all_shards_empty_is_an_empty_pool() -> None:
    empty = _empty_candidates()
    assert len(empty) == 0
    with pytest.raises(EmptyPoolError, match="^no candidates: every shard was empty$"):
        two_stage_select([empty, empty], "margin", 3, rng=np.random.default_rng(0))
    with pytest.raises(EmptyPoolError, match="^no shards: nothing to merge$"):
        merge_candidates([])


def test_input_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(MissingInputError, match="strategy_score needs probs"):
        shard_candidates(
            np.arange(3),
            probs=None,
            embeddings=None,
            languages=None,
            strategy_score=margin_scores,
            per_language_k=1,
            diversity_sample=0,
            rng=rng,
        )
    with pytest.raises(InvalidBudgetError, match=r"^per_language_k must be an int >= 0, got -1$"):
        shard_candidates(
            np.arange(3),
            probs=np.full((3, 2), 0.5),
            embeddings=None,
            languages=None,
            strategy_score=margin_scores,
            per_language_k=-1,
            diversity_sample=0,
            rng=rng,
        )
    with pytest.raises(ValueError, match="diversity_method must be one of"):
        shard_candidates(
            np.arange(3),
            probs=None,
            embeddings=None,
            languages=None,
            strategy_score=None,
            per_language_k=1,
            diversity_sample=1,
            rng=rng,
            diversity_method="kmeans++",
        )
    a = shard_candidates(
        np.arange(3),
        probs=None,
        embeddings=np.ones((3, 4)),
        languages=None,
        strategy_score=None,
        per_language_k=3,
        diversity_sample=0,
        rng=rng,
    )
    b = shard_candidates(
        np.arange(3, 6),
        probs=None,
        embeddings=np.ones((3, 5)),
        languages=None,
        strategy_score=None,
        per_language_k=3,
        diversity_sample=0,
        rng=rng,
    )
    with pytest.raises(ShapeError, match=r"^shards disagree on the embedding dimension: \[4, 5\]$"):
        merge_candidates([a, b])
    with pytest.raises(InvalidBudgetError):
        two_stage_select([a], "kcenter", 0, rng=rng)


def test_plan_repr_and_settings() -> None:
    stats = LanguageStats(rows={"de": 100, "en": 300}, uncertainty_sum={"de": 50.0, "en": 60.0})
    plan = plan_shards(get_strategy("margin", max_similarity=None), 20, stats=stats, n_shards=4)
    assert repr(plan) == (
        "ShardPlan(strategy_score=margin_scores, per_language_k={'de': 20, 'en': 20}, "
        "diversity_sample=0, diversity_method='uniform', max_score_total=20, "
        "score_threshold=None)"
    )
    hybrid = plan_shards("default", 20, stats=stats, n_shards=4)
    # "need": mean uncertainty de 0.5, en 0.2 -> shares 14 / 6; prefilter 10x the share
    assert hybrid.per_language_k == {"de": 140, "en": 60}
    assert hybrid.diversity_sample == 5000
    kcenter = plan_shards("kcenter", 20, stats=stats, n_shards=4)
    assert (kcenter.diversity_method, kcenter.diversity_sample) == ("farthest", 20)


def _two_clusters(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """40 rows near axis 0 (rows 0-39) and 40 near axis 1 (rows 40-79), equal margins, and 30
    labeled rows far from both."""
    d = 8
    x = np.zeros((80, d), dtype=np.float32)
    x[:40, 0] = 1.0
    x[40:, 1] = 1.0
    x += 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    probs = np.tile([0.4, 0.35, 0.25], (80, 1))
    labeled = np.zeros((30, d), dtype=np.float32)
    labeled[:, 2] = 1.0
    return x, probs, labeled


@pytest.mark.parametrize("cluster", [0, 1])
def test_hybrid_coverage_counts_the_reference_rows_only(cluster: int) -> None:
    """`Hybrid.select(reference=mask)`: coverage is counted on the masked rows (the Ray
    engine's uniform sample), so with the reference inside one cluster every pick covering
    it is from that cluster; the reasons say the count is an estimate."""
    x, probs, labeled = _two_clusters(np.random.default_rng(0))
    reference = np.zeros(80, dtype=bool)
    reference[cluster * 40 : cluster * 40 + 40 : 2] = True  # 20 rows of one cluster
    strategy = get_strategy(
        "default",
        max_similarity=None,
        coverage_similarity=0.5,
        language_balance=None,
        candidate_factor=30,  # every row passes the margin prefilter (equal margins)
    )
    chosen = strategy.select(
        np.arange(80),
        3,
        probs=probs,
        embeddings=x,
        labeled_embeddings=labeled,
        rng=np.random.default_rng(1),
        reference=reference,
    )
    assert chosen.ids[0] // 40 == cluster
    assert chosen.reasons[0].endswith("covers ~20 sampled unlabeled neighbours")
    whole = strategy.select(
        np.arange(80),
        3,
        probs=probs,
        embeddings=x,
        labeled_embeddings=labeled,
        rng=np.random.default_rng(1),
    )
    assert whole.reasons[0].endswith("covers 40 unlabeled neighbours")
    with pytest.raises(ShapeError, match=r"reference must be a boolean mask of 80 rows"):
        strategy.select(
            np.arange(80),
            3,
            probs=probs,
            embeddings=x,
            labeled_embeddings=labeled,
            rng=np.random.default_rng(1),
            reference=reference[:10],
        )
