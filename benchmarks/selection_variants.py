"""Exploratory selection variants on UMSAB, held-out quarters of train (the dev protocol).

The variants tried while chasing the selection issue's +0.015 AULC target; none is in the
registry, because none beat the default by more than noise. Kept so the figures in BENCHMARKS.md
can be reproduced and the next idea can be compared the same way.

* ``--set hybrid``: random, default, BADGE per language (Ash et al., 2020: k-means++ seeding on
  gradient embeddings (p - onehot(argmax p)) (x) x of the logistic proxy), margin x typicality,
  the hybrid with ``need`` language balance, with candidate factor 3, with the adaptive radius.
* ``--set balance``: random, default, and the default stratified by predicted class within each
  language (``ClassBalanced``), with margin + coverage or with random picks per bucket.
* ``--set confident``: random among the candidates the proxy is most confident about
  (``Confident``), the realisable stand-in for the ``clean`` oracle probe.
* ``--set oracle``: headroom probes that peek at the labels (``OracleProbe``): random among
  examples a cross-validated model gets right, and the smallest margin under the full-pool model.
* ``--set committee``: random, default, and epistemic uncertainty from a bootstrap committee of
  7 logistic regressions (BALD = H(mean) - mean(H), Houlsby et al. 2011; vote entropy), with and
  without the hybrid's coverage step. The evaluation model stays the plain proxy.

Protocol: for split k, a quarter of each language of train (``default_rng(1000 + k)``) is the
test set and the rest the pool; ``simulate`` with 5 seeds (base seed k), 10 rounds of 100, seed
set 100; Δ is paired by (split, seed).

    OMP_NUM_THREADS=1 python benchmarks/selection_variants.py --set hybrid --splits 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/selection_variants.py --set committee --splits 0 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from selection_umsab import embeddings, load_split  # noqa: E402

from selection.allocation import allocate  # noqa: E402
from selection.base import QueryStrategy, Ranking  # noqa: E402
from selection.diversity import coverage_greedy, typicality  # noqa: E402
from selection.hybrid import Hybrid  # noqa: E402
from selection.proxy import LogisticProxy  # noqa: E402
from selection.simulation import simulate  # noqa: E402
from selection.uncertainty import margin_scores  # noqa: E402


def _language_shares(languages: np.ndarray, budget: int) -> Iterator[tuple[np.ndarray, int]]:
    """(candidate rows of one language, its share of the budget), split in proportion to the
    languages' candidates; languages whose share is 0 are left out."""
    codes = sorted(set(languages.tolist()))
    sizes = {c: int((languages == c).sum()) for c in codes}
    for code, share in allocate(budget, sizes, method="proportional").per_language.items():
        if share > 0:
            yield np.flatnonzero(languages == code), share


def badge_pick(g: np.ndarray, x: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on g_i (x) x_i without materialising the outer products:
    ||a(x)b - c(x)d||^2 = |a|^2|b|^2 + |c|^2|d|^2 - 2 (a.c)(b.d)."""
    n = len(x)
    norms = (g * g).sum(1) * (x * x).sum(1)
    chosen = [int(np.argmax(norms))]
    c = chosen[0]
    d2 = np.maximum(norms + norms[c] - 2 * (g @ g[c]) * (x @ x[c]), 0)
    d2[c] = 0
    while len(chosen) < min(budget, n):
        total = d2.sum()
        if total <= 0:
            c = int(rng.choice(np.setdiff1d(np.arange(n), chosen)))
        else:
            c = int(rng.choice(n, p=d2 / total))
        chosen.append(c)
        d2 = np.minimum(d2, np.maximum(norms + norms[c] - 2 * (g @ g[c]) * (x @ x[c]), 0))
        d2[chosen] = 0
    return np.asarray(chosen)


class Badge(QueryStrategy):
    """BADGE (Ash et al., 2020), run per language with a proportional split."""

    name = "badge"

    def rank(self, pool: Any, budget: int, rng: np.random.Generator) -> Ranking:
        p, x = pool.probs, pool.unit_rows()
        g = p.copy()
        g[np.arange(len(p)), p.argmax(1)] -= 1
        order: list[int] = []
        for rows, share in _language_shares(pool.languages, budget):
            order += list(rows[badge_pick(g[rows], x[rows], share, rng)])
        return Ranking(np.asarray(order), np.zeros(len(order)), ["badge"] * len(order))


class DensityMargin(QueryStrategy):
    """Margin uncertainty x min-max-scaled typicality, per language (information density)."""

    name = "density_margin"

    def rank(self, pool: Any, budget: int, rng: np.random.Generator) -> Ranking:
        unc, x = margin_scores(pool.probs), pool.unit_rows()
        order, scores = [], []
        for code in sorted(set(pool.languages.tolist())):
            rows = np.flatnonzero(pool.languages == code)
            t = typicality(x[rows], 20)
            s = unc[rows] * (t - t.min()) / (t.max() - t.min() + 1e-9)
            o = np.argsort(-s)
            order += list(rows[o])
            scores += list(s[o])
        o = np.argsort(-np.asarray(scores), kind="stable")
        return Ranking(np.asarray(order)[o], np.asarray(scores)[o], ["dm"] * len(o))


COMMITTEE: dict[str, np.ndarray] = {}  # member probabilities of the last pool prediction


class CommitteeProxy:
    """Evaluates exactly like LogisticProxy; also fits 7 bootstrap members whose probabilities
    on the last ``predict_proba`` call are left in COMMITTEE for CommitteeStrategy."""

    def __init__(self, labels: Any, members: int = 7) -> None:
        self.main, self.labels, self.members = LogisticProxy(labels), labels, members

    @property
    def classes_(self) -> tuple[str, ...]:
        return self.main.classes_

    def fit(self, X: np.ndarray, y: Any) -> CommitteeProxy:
        self.main.fit(X, y)
        y = np.asarray(y, dtype=object)
        rng = np.random.default_rng([0, len(y)])
        self.committee = []
        for _ in range(self.members):
            for _ in range(20):
                idx = rng.integers(len(y), size=len(y))
                if len(set(y[idx].tolist())) >= 2:
                    break
            self.committee.append(LogisticProxy(self.labels).fit(X[idx], y[idx]))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        COMMITTEE["probs"] = np.stack([member.predict_proba(X) for member in self.committee])
        return self.main.predict_proba(X)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1))).sum(-1)


class CommitteeStrategy(QueryStrategy):
    """BALD or vote entropy of the committee, per language, optionally + coverage."""

    name = "committee"

    def __init__(self, *, score: str = "bald", diversity: bool = True) -> None:
        super().__init__()
        self.score, self.diversity = score, diversity

    def rank(self, pool: Any, budget: int, rng: np.random.Generator) -> Ranking:
        com = COMMITTEE["probs"]
        bald = _entropy(com.mean(0)) - _entropy(com).mean(0)
        if self.score == "bald":
            unc = bald
        else:
            votes = com.argmax(2)
            frac = np.stack([(votes == c).mean(0) for c in range(com.shape[2])], 1)
            unc = _entropy(frac) + 1e-3 * bald
        order: list[int] = []
        scores: list[float] = []
        for rows, share in _language_shares(pool.languages, budget):
            top = np.argsort(-unc[rows], kind="stable")
            if not self.diversity:
                order += list(rows[top])
                scores += list(unc[rows][top])
                continue
            top = top[: min(len(rows), 10 * share)]
            picks, _ = coverage_greedy(
                pool.unit_rows(rows[top]),
                pool.unit_rows(rows),
                similarity=0.7,
                labeled=pool.labeled_unit(),
                priority=-unc[rows][top],
                max_picks=min(len(top), 3 * share),
            )
            order += list(rows[top][picks])
            scores += list(unc[rows][top][picks])
        return Ranking(np.asarray(order), np.asarray(scores), ["c"] * len(order))


class ClassBalanced(QueryStrategy):
    """The default's margin + coverage, stratified by language *and* predicted class.

    Uncertainty sampling skews the labeled set's classes (Aggarwal et al., 2020, "Active
    learning for imbalanced datasets"); on a class-balanced benchmark random keeps them balanced
    for free. Here each language's share is split evenly over the proxy's predicted classes,
    and each (language, predicted class) bucket takes its smallest-margin candidates through
    the coverage step. ``margin=False`` makes it stratified random sampling instead.
    """

    name = "class_balanced"

    def __init__(self, *, margin: bool = True) -> None:
        super().__init__()
        self.margin = margin

    def rank(self, pool: Any, budget: int, rng: np.random.Generator) -> Ranking:
        p = pool.probs
        unc = margin_scores(p) if self.margin else rng.random(len(p))
        predicted = p.argmax(1)
        order: list[int] = []
        scores: list[float] = []
        for rows, share in _language_shares(pool.languages, budget):
            classes = np.arange(p.shape[1])
            rng.shuffle(classes)  # who gets the remainder
            quotas = np.full(len(classes), share // len(classes))
            quotas[: share % len(classes)] += 1
            for cls, quota in zip(classes, quotas, strict=True):
                bucket = rows[predicted[rows] == cls]
                if quota < 1 or len(bucket) == 0:
                    continue
                top = bucket[np.argsort(-unc[bucket], kind="stable")[: 10 * quota]]
                if not self.margin:
                    order += list(top[:quota])
                    scores += list(unc[top[:quota]])
                    continue
                picks, _ = coverage_greedy(
                    pool.unit_rows(top),
                    pool.unit_rows(rows),
                    similarity=0.7,
                    labeled=pool.labeled_unit(),
                    priority=-unc[top],
                    max_picks=min(len(top), quota),
                )
                order += list(top[picks])
                scores += list(unc[top][picks])
        # Buckets that ran short leave the rest of the budget to the plain margin order.
        rest = np.setdiff1d(np.argsort(-unc, kind="stable"), order, assume_unique=True)
        rest = rest[np.argsort(-unc[rest], kind="stable")]
        order_arr = np.concatenate([np.asarray(order, dtype=np.int64), rest])
        return Ranking(order_arr, unc[order_arr], ["cb"] * len(order_arr))


class Confident(QueryStrategy):
    """A realisable stand-in for the ``clean`` probe below: per language (proportional split),
    random picks among the ``keep`` fraction of candidates the proxy is most confident about
    (largest margin), optionally stratified by predicted class; ``keep=0`` takes the most
    confident outright. The bet: where labels are noisy and features weak, examples the model
    already roughly understands are more often learnable than the ambiguous ones.
    """

    name = "confident"

    def __init__(self, *, keep: float = 0.5, by_class: bool = False) -> None:
        super().__init__()
        self.keep, self.by_class = keep, by_class

    def rank(self, pool: Any, budget: int, rng: np.random.Generator) -> Ranking:
        p = pool.probs
        confidence = 1.0 - margin_scores(p)
        predicted = p.argmax(1)
        order: list[int] = []
        for rows, share in _language_shares(pool.languages, budget):
            groups = [rows]
            quotas = [share]
            if self.by_class:
                groups = [rows[predicted[rows] == c] for c in range(p.shape[1])]
                quotas = list(np.full(len(groups), share // len(groups)))
                for extra in rng.permutation(len(groups))[: share % len(groups)]:
                    quotas[extra] += 1
            for group, quota in zip(groups, quotas, strict=True):
                if quota < 1 or len(group) == 0:
                    continue
                ranked = group[np.argsort(-confidence[group], kind="stable")]
                if self.keep > 0:
                    top = ranked[: max(quota, int(round(self.keep * len(group))))]
                    ranked = rng.permutation(top)
                order += list(ranked[:quota])
        rest = np.setdiff1d(np.arange(len(p)), order)
        order_arr = np.concatenate([np.asarray(order, dtype=np.int64), rng.permutation(rest)])
        return Ranking(order_arr, confidence[order_arr], ["confident"] * len(order_arr))


ORACLE: dict[str, np.ndarray] = {}  # per pool row, filled by main() for each split


class OracleProbe(QueryStrategy):
    """Headroom probes that peek at the pool's labels: no one can run these, they bound what a
    strategy could gain on this data with this proxy. Per language, proportional split.

    * ``kind="clean"``: random picks, but only among examples whose label a logistic model
      trained on the rest of the pool (5-fold cross-validation) predicts correctly: what
      avoiding noisy or unlearnable labels would be worth.
    * ``kind="boundary"``: smallest margin under a logistic model trained on the *whole* pool:
      uncertainty sampling with the final model's boundary instead of a guess.
    """

    name = "oracle"

    def __init__(self, *, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def rank(self, pool: Any, budget: int, rng: np.random.Generator) -> Ranking:
        rows = np.asarray(pool.ids, dtype=np.int64)
        if self.kind == "clean":
            key = rng.random(len(rows)) + (~ORACLE["clean"][rows]).astype(float)
        else:
            key = -ORACLE["uncertainty"][rows]
        order: list[int] = []
        for rows, share in _language_shares(pool.languages, budget):
            order += list(rows[np.argsort(key[rows], kind="stable")[:share]])
        return Ranking(np.asarray(order), -key[order], [self.kind] * len(order))


def fill_oracle(X: np.ndarray, y: np.ndarray) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    model = LogisticRegression(max_iter=1000)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    ORACLE["clean"] = cross_val_predict(model, unit, y, cv=5) == y
    ORACLE["uncertainty"] = margin_scores(model.fit(unit, y).predict_proba(unit))


SETS = {
    "confident": lambda: [
        "random",
        "default",
        ("conf_top", Confident(keep=0)),
        ("conf_q50", Confident(keep=0.5)),
        ("conf_q50_cls", Confident(keep=0.5, by_class=True)),
        ("conf_q30_cls", Confident(keep=0.3, by_class=True)),
    ],
    "oracle": lambda: [
        "random",
        "default",
        ("oracle_clean", OracleProbe(kind="clean")),
        ("oracle_boundary", OracleProbe(kind="boundary")),
    ],
    "balance": lambda: [
        "random",
        "default",
        ("class_bal", ClassBalanced()),
        ("class_bal_random", ClassBalanced(margin=False)),
    ],
    "hybrid": lambda: [
        "random",
        "default",
        ("badge_lang", Badge()),
        ("dm1", DensityMargin()),
        ("hyb_need", Hybrid(language_balance="need")),
        ("hyb_cf3", Hybrid(candidate_factor=3)),
        ("hyb_adaptive", Hybrid(coverage_similarity=None)),
    ],
    "committee": lambda: [
        "random",
        "default",
        ("bald_cov", CommitteeStrategy()),
        ("bald_plain", CommitteeStrategy(diversity=False)),
        ("vote_cov", CommitteeStrategy(score="vote")),
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    umsab = Path(__file__).resolve().parents[2] / "shared" / "data" / "umsab"
    ap.add_argument("--data-dir", type=Path, default=umsab)
    ap.add_argument("--emb-cache", type=Path, default=Path("/tmp/umsab_emb"))
    ap.add_argument("--set", choices=sorted(SETS), default="hybrid")
    ap.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    ids, texts, y, langs = load_split(args.data_dir / "train.jsonl")
    X = embeddings("train", ids, texts, args.emb_cache)
    y, langs = np.asarray(y, dtype=object), np.asarray(langs, dtype=object)
    factory = (lambda labels: CommitteeProxy(labels)) if args.set == "committee" else None
    aulc: dict[str, list[float]] = {}
    started = time.perf_counter()
    for split in args.splits:
        rng = np.random.default_rng(1000 + split)
        test = np.zeros(len(y), dtype=bool)
        for code in sorted(set(langs.tolist())):
            rows = np.flatnonzero(langs == code)
            test[rng.choice(rows, size=len(rows) // 4, replace=False)] = True
        if args.set == "oracle":
            fill_oracle(X[~test], y[~test])
        result = simulate(
            X[~test], y[~test], langs[~test], X[test], y[test], langs[test],
            strategies=SETS[args.set](), rounds=10, batch_size=100, seed_size=100, n_seeds=5,
            seed=split, model_factory=factory, progress=False,
        )  # fmt: skip
        for name, r in result["strategies"].items():
            aulc.setdefault(name, []).extend(
                float(np.mean([p["macro_f1"] for p in c])) for c in r["curves"]
            )
    base = np.asarray(aulc["random"])
    for name, values in aulc.items():
        delta = np.asarray(values) - base
        print(
            f"{name:14s} AULC {np.mean(values):.4f}  Δ vs random {delta.mean():+.4f} "
            f"[{delta.min():+.4f}, {delta.max():+.4f}]  ({len(values)} paired runs)"
        )
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
