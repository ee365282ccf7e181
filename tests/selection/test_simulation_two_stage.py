"""`simulate(two_stage_shards=...)`: the Ray engine's two-stage selection, in one process.

The pool is sorted by language (as UMSAB's train file is), so contiguous shards hold one or two
languages each and the shards' top-k filter really shrinks what the strategy sees.
"""

from __future__ import annotations

import numpy as np
import pytest

from selection import get_strategy
from selection.hybrid import Hybrid
from selection.simulation import simulate
from selection.uncertainty import Margin

N_PER_LANGUAGE = 300
BATCH = 10
SHARDS = 4


def _split(
    n_per_language: int, seed: int, *, n_hi: int | None = None
) -> tuple[np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    langs = np.repeat(
        np.array(["en", "hi"]), [n_per_language, n_per_language if n_hi is None else n_hi]
    )
    n = len(langs)
    classes = np.array(["neg", "neu", "pos"])
    y = classes[rng.integers(0, 3, n)]
    X = rng.normal(size=(n, 8))
    for i, c in enumerate(y):
        X[i, {"neg": 0, "neu": 1, "pos": 2}[c]] += 1.5
        X[i, 3 + (langs[i] == "hi")] += 1.0
    return X.astype("float32"), y.tolist(), langs.tolist()


@pytest.fixture(scope="module")
def data() -> tuple:
    return _split(N_PER_LANGUAGE, 0), _split(60, 1)


def _recording(cls: type) -> type:
    """``cls`` that records the size of each pool it selects from and the ids it picks (in
    ``_finish``, the last step of ``select`` and of ``two_stage_select``'s per-language
    hybrid, which does not go through ``select``)."""

    class Recording(cls):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.pool_sizes: list[int] = []
            self.picked: list[int] = []

        def _finish(self, pool, budget, ranking):  # type: ignore[no-untyped-def]
            selection = super()._finish(pool, budget, ranking)
            self.pool_sizes.append(pool.size)
            self.picked.extend(int(i) for i in selection.ids)
            return selection

    return Recording


def _run(data: tuple, strategy: object, **kwargs: object) -> dict:
    (X, y, lang), (Xt, yt, lt) = data
    common: dict = dict(rounds=3, batch_size=BATCH, seed_size=12, n_seeds=2, progress=False)
    common.update(kwargs)
    return simulate(X, y, lang, Xt, yt, lt, strategies=[("s", strategy)], **common)


@pytest.mark.parametrize("allocation", ["need", None])
def test_margin_two_stage_picks_the_local_rows_from_a_smaller_union(
    data: tuple, allocation: str | None
) -> None:
    local_strategy = _recording(Margin)()
    sharded_strategy = _recording(Margin)()
    local = _run(data, local_strategy, allocation=allocation)
    sharded = _run(data, sharded_strategy, allocation=allocation, two_stage_shards=SHARDS)

    assert sharded["strategies"] == local["strategies"]
    assert sharded_strategy.picked == local_strategy.picked
    # each shard kept at most ceil(1.5 * batch) = 15 rows (the near-duplicate guard's slack) per
    # language it holds, and SHARDS contiguous shards of a pool sorted by 2 languages hold at
    # most SHARDS + 1 (shard, language) pairs; locally the strategy sees a whole language
    assert max(sharded_strategy.pool_sizes) <= (SHARDS + 1) * 15
    assert min(local_strategy.pool_sizes) >= N_PER_LANGUAGE - 12 - 3 * BATCH
    assert sharded["settings"] == {"two_stage_shards": SHARDS}
    assert "settings" not in local


def test_allocation_sees_the_full_pool_not_the_union() -> None:
    # en 500 rows, hi 100, batch 20, 4 shards of 150: proportional quotas from the pool are
    # 17:3; from the union (ceil(1.5 * 20) = 30 kept per shard and language: en in 4 shards,
    # hi in 1) they would be 16:4. Identical picks mean the pool's sizes were used.
    data = _split(500, 2, n_hi=100), _split(60, 3)
    local_strategy = _recording(Margin)()
    sharded_strategy = _recording(Margin)()
    kwargs: dict = dict(allocation="proportional", rounds=3, batch_size=20)
    local = _run(data, local_strategy, **kwargs)
    sharded = _run(data, sharded_strategy, two_stage_shards=SHARDS, **kwargs)
    assert sharded_strategy.picked == local_strategy.picked
    assert sharded["strategies"] == local["strategies"]
    # the union really was smaller than the language (en: <= 4 * 30 of ~480 unlabeled)
    assert max(sharded_strategy.pool_sizes) <= 4 * 30


@pytest.mark.parametrize("allocation", ["need", None])
def test_hybrid_with_languages_kept_whole_gives_the_local_curves(
    data: tuple, allocation: str | None
) -> None:
    # each shard's share of a language (<= 150 rows) fits in candidate_factor * batch (100)
    # plus max_reference / SHARDS (5000): kept whole. Seed set 12 < 3 classes * 10: the first
    # two rounds are hybrid's cold start (k-means, which draws from the rng), the rest warm.
    local_strategy = _recording(Hybrid)()
    sharded_strategy = _recording(Hybrid)()
    local = _run(data, local_strategy, allocation=allocation, rounds=4)
    sharded = _run(data, sharded_strategy, allocation=allocation, rounds=4, two_stage_shards=SHARDS)

    assert sharded["strategies"] == local["strategies"]
    assert sharded_strategy.picked == local_strategy.picked
    assert sharded_strategy.pool_sizes == local_strategy.pool_sizes


def test_hybrid_with_sampled_languages_buys_the_budget_from_unlabeled_rows(data: tuple) -> None:
    # max_reference 20: a shard keeps 100 prefiltered rows + 5 sampled of its ~150 per language
    strategy = _recording(Hybrid)(max_reference=20)
    out = _run(data, strategy, allocation="need", rounds=4, two_stage_shards=SHARDS)

    for curve in out["strategies"]["s"]["curves"]:
        # each round bought exactly BATCH new labels: no labeled row and no row twice
        assert [p["labels"] for p in curve] == [12, 22, 32, 42, 52]
    per_seed = len(strategy.picked) // 2
    for seed_picks in (strategy.picked[:per_seed], strategy.picked[per_seed:]):
        assert len(seed_picks) == 4 * BATCH
        assert len(set(seed_picks)) == 4 * BATCH
    assert max(strategy.pool_sizes) < N_PER_LANGUAGE - 12 - 4 * BATCH


def test_registry_strategy_params_reach_the_two_stage_path(data: tuple) -> None:
    (X, y, lang), (Xt, yt, lt) = data
    out = simulate(
        X, y, lang, Xt, yt, lt, strategies=["default"], rounds=2, batch_size=BATCH,
        seed_size=12, n_seeds=1, allocation="need", progress=False, two_stage_shards=SHARDS,
        strategy_params={"default": {"max_reference": 20}},
    )  # fmt: skip
    assert [p["labels"] for p in out["strategies"]["default"]["curves"][0]] == [12, 22, 32]
    assert out["settings"] == {"two_stage_shards": SHARDS}


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_invalid_two_stage_shards(data: tuple, bad: object) -> None:
    with pytest.raises(ValueError, match=r"two_stage_shards must be None or an int >= 1, got "):
        _run(data, get_strategy("margin"), two_stage_shards=bad)
