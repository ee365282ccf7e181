"""Diversity and typicality strategies over embeddings (FAISS at the boundary).

All three work on L2-normalised vectors by default (cosine geometry, the same geometry as the
near-duplicate guard); pass ``normalize=False`` for plain Euclidean.
"""

from __future__ import annotations

import faiss
import numpy as np

from selection.base import Pool, QueryStrategy, Ranking, l2_normalize

__all__ = [
    "KCenterGreedy",
    "KMeansDiversity",
    "TypiClust",
    "coverage_greedy",
    "coverage_radius",
    "kcenter_greedy",
    "kmeans_fit",
    "typicality",
]


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype="float32")


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


# ---------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------
def kcenter_greedy(
    x: np.ndarray,
    budget: int,
    *,
    labeled: np.ndarray | None = None,
    rng: np.random.Generator,
    min_distance: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (Sener & Savarese 2018, Alg. 1): repeatedly take the point farthest
    (Euclidean) from the labeled set and the points taken so far.

    Returns (row indices in pick order, each pick's distance to its nearest center at pick
    time). Without labeled points the first pick is uniform at random (``rng``). Stops early
    when the farthest remaining point is at distance <= ``min_distance`` (everything left is
    covered, e.g. near-duplicates).
    """
    x = _f32(x)
    n, d = x.shape
    budget = min(int(budget), n)
    picks: list[int] = []
    dists: list[float] = []
    sq_norms = np.einsum("ij,ij->i", x, x).astype(np.float64)
    if labeled is not None and len(labeled) > 0:
        index = faiss.IndexFlatL2(d)
        index.add(_f32(labeled))
        min_d2 = index.search(x, 1)[0][:, 0].astype(np.float64)
    else:
        first = int(rng.integers(n))
        picks.append(first)
        dists.append(float("inf"))
        min_d2 = _sq_dist_to(x, first, sq_norms)
    min_d2 = np.maximum(min_d2, 0.0)
    min_d2[picks] = -1.0
    thr = float(min_distance) ** 2
    while len(picks) < budget:
        i = int(np.argmax(min_d2))
        if min_d2[i] <= thr:
            break
        picks.append(i)
        dists.append(float(np.sqrt(min_d2[i])))
        np.minimum(min_d2, _sq_dist_to(x, i, sq_norms), out=min_d2)
        min_d2[i] = -1.0
    return np.asarray(picks, dtype=np.int64), np.asarray(dists)


def _sq_dist_to(x: np.ndarray, center: int, sq_norms: np.ndarray) -> np.ndarray:
    """Squared L2 distances of all rows to row ``center``: one matrix-vector product (BLAS).

    The same ||x||^2 + ||c||^2 - 2 x.c expansion FAISS's flat index uses, without building an
    index per step; ``sq_norms`` are the rows' squared norms; clipped at 0 against rounding.
    """
    products = (x @ x[center]).astype(np.float64)
    return np.maximum(sq_norms + sq_norms[center] - 2.0 * products, 0.0)


def kmeans_fit(
    x: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    niter: int = 20,
    max_points_per_centroid: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FAISS k-means (training sub-samples to ``max_points_per_centroid * k`` points).

    Returns (centroids (k, d), assignment per row, squared distance of each row to its
    centroid).
    """
    x = _f32(x)
    n, d = x.shape
    k = int(min(k, n))
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        seed=_seed(rng),
        verbose=False,
        max_points_per_centroid=max_points_per_centroid,
        min_points_per_centroid=1,
    )
    km.train(x)
    d2, assign = km.index.search(x, 1)
    return km.centroids.copy(), assign[:, 0].astype(np.int64), np.maximum(d2[:, 0], 0.0)


def typicality(x: np.ndarray, k: int = 20) -> np.ndarray:
    """TypiClust typicality: ``1 / mean distance to the k nearest neighbours`` (self excluded)
    -- Hacohen, Dekel & Weinshall (2022), *Active learning on a budget*, ICML."""
    x = _f32(x)
    n = x.shape[0]
    if n <= 1:
        return np.ones(n)
    k = min(k, n - 1)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    d2, _ = index.search(x, k + 1)
    d = np.sqrt(np.maximum(d2[:, 1:], 0.0)).mean(axis=1)
    return 1.0 / (d + 1e-8)


def _rank_within_groups(groups: np.ndarray, key: np.ndarray) -> np.ndarray:
    """0-based rank of each element within its group by ascending ``key``."""
    order = np.lexsort((key, groups))
    ranks = np.empty(len(groups), dtype=np.int64)
    g_sorted = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    ranks[order] = np.arange(len(order)) - np.repeat(starts, counts)
    return ranks


def _subsample(n: int, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(rng.choice(n, size=cap, replace=False))


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------
class KCenterGreedy(QueryStrategy):
    """Greedy k-center core-set (Sener & Savarese, 2018, *Active Learning for Convolutional
    Neural Networks: A Core-Set Approach*, ICLR), seeded from the labeled set.

    Distances are Euclidean on L2-normalised vectors (``normalize=True``). The near-duplicate
    guard is exact here: a candidate within cosine ``max_similarity`` of a labeled example or a
    pick is within the corresponding distance, so the greedy loop stops before taking it.

    Args:
        normalize: L2-normalise vectors first (cosine geometry).
        max_similarity: near-duplicate ceiling (cosine); None = off.
    """

    name = "kcenter"
    requires = frozenset({"embeddings"})

    def __init__(self, *, normalize: bool = True, max_similarity: float | None = 0.95) -> None:
        super().__init__(max_similarity=max_similarity)
        self.normalize = normalize

    def rank(self, pool: Pool, budget: int, rng: np.random.Generator) -> Ranking:
        assert pool.embeddings is not None
        x = pool.unit_rows() if self.normalize else pool.embeddings
        lab = pool.labeled_embeddings
        if lab is not None and self.normalize and len(lab):
            lab = l2_normalize(lab)
        if self.max_similarity is not None and self.normalize:
            min_dist = float(np.sqrt(max(0.0, 2.0 - 2.0 * self.max_similarity)))
            picks, dists = kcenter_greedy(x, budget, labeled=lab, rng=rng, min_distance=min_dist)
            n_covered = pool.size - len(picks) if len(picks) < budget else 0
            reasons = [f"k-center distance {d:.2f}" for d in dists]
            return Ranking(picks, dists, reasons, prechecked=True, skipped=n_covered)
        picks, dists = kcenter_greedy(x, budget, labeled=lab, rng=rng)
        reasons = [f"k-center distance {d:.2f}" for d in dists]
        return Ranking(picks, dists, reasons)


class KMeansDiversity(QueryStrategy):
    """k-means diversity sampling: cluster the candidates into ``budget`` groups (FAISS k-means)
    and take the example nearest each centroid -- as in Zhdanov (2019), *Diverse mini-batch
    active learning*, and BERT-KM (Yuan, Lin & Boyd-Graber, 2020). If a pick is a
    near-duplicate, the next-nearest member of the same cluster is tried.

    Args:
        normalize: L2-normalise vectors first (spherical geometry).
        niter: k-means iterations.
        max_candidates: uniform sub-sample of the pool clustered for very large pools
            (None = all).
        max_similarity: near-duplicate ceiling (cosine); None = off.
    """

    name = "kmeans"
    requires = frozenset({"embeddings"})

    def __init__(
        self,
        *,
        normalize: bool = True,
        niter: int = 20,
        max_candidates: int | None = 200_000,
        max_similarity: float | None = 0.95,
    ) -> None:
        super().__init__(max_similarity=max_similarity)
        self.normalize = normalize
        self.niter = niter
        self.max_candidates = max_candidates

    def rank(self, pool: Pool, budget: int, rng: np.random.Generator) -> Ranking:
        assert pool.embeddings is not None
        cand = _subsample(pool.size, self.max_candidates, rng)
        x = pool.unit_rows(cand) if self.normalize else _f32(pool.embeddings[cand])
        return kmeans_ranking(x, cand, budget, rng=rng, niter=self.niter)


def kmeans_ranking(
    x: np.ndarray,
    positions: np.ndarray,
    budget: int,
    *,
    rng: np.random.Generator,
    niter: int = 20,
    priority: np.ndarray | None = None,
    label: str = "k-means",
) -> Ranking:
    """Cluster ``x`` into ``budget`` groups and rank round-robin over clusters.

    Within a cluster members are ordered by ``priority`` (lower first) if given, else by
    distance to the centroid; round r holds every cluster's r-th member, clusters ordered by
    their first member's priority/distance. ``positions`` maps rows of ``x`` to pool positions.
    """
    k = min(budget, x.shape[0])
    _, assign, d2 = kmeans_fit(x, k, rng=rng, niter=niter)
    key = d2.astype(np.float64) if priority is None else np.asarray(priority, dtype=np.float64)
    within = _rank_within_groups(assign, key)
    # order clusters by their best member's key (best clusters first)
    best = np.full(k, np.inf)
    np.minimum.at(best, assign, key)
    cluster_rank = np.empty(k, dtype=np.int64)
    cluster_rank[np.argsort(best, kind="stable")] = np.arange(k)
    order = np.lexsort((cluster_rank[assign], within))
    dist = np.sqrt(d2[order])
    reasons = []
    for j in order:
        c, r = int(assign[j]), int(within[j])
        if priority is None:
            reasons.append(
                f"{label} cluster {c} centre" if r == 0 else f"{label} cluster {c}, #{r + 1}"
            )
        else:
            reasons.append(f"{label} group {c}, #{r + 1}")
    scores = -dist if priority is None else -key[order]
    return Ranking(positions[order], scores, reasons)


class TypiClust(QueryStrategy):
    """TypiClust cold-start selection (Hacohen, Dekel & Weinshall, 2022, *Active Learning on a
    Budget: Opposite Strategies Suit High and Low Budgets*, ICML).

    Cluster labeled + unlabeled into ``min(n_labeled + budget, max_clusters)`` k-means clusters;
    repeatedly take the cluster with the fewest labeled/picked members (largest first among
    ties, clusters smaller than ``min_cluster_size`` last) and pick its most typical unlabeled
    point, typicality = inverse mean distance to the ``knn`` nearest neighbours in the cluster.

    Args:
        knn: neighbours for typicality (paper: 20).
        max_clusters: cap on clusters (paper: 500).
        min_cluster_size: clusters smaller than this are used only when others are exhausted.
        niter: k-means iterations.
        max_candidates: uniform sub-sample of the unlabeled pool for very large pools.
        normalize: L2-normalise vectors first.
        max_similarity: near-duplicate ceiling (cosine); None = off.
    """

    name = "typiclust"
    requires = frozenset({"embeddings"})

    def __init__(
        self,
        *,
        knn: int = 20,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        niter: int = 20,
        max_candidates: int | None = 100_000,
        normalize: bool = True,
        max_similarity: float | None = 0.95,
    ) -> None:
        super().__init__(max_similarity=max_similarity)
        self.knn = knn
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.niter = niter
        self.max_candidates = max_candidates
        self.normalize = normalize

    def rank(self, pool: Pool, budget: int, rng: np.random.Generator) -> Ranking:
        assert pool.embeddings is not None
        cand = _subsample(pool.size, self.max_candidates, rng)
        xu = pool.unit_rows(cand) if self.normalize else _f32(pool.embeddings[cand])
        lab = pool.labeled_embeddings
        n_lab = 0 if lab is None else lab.shape[0]
        if n_lab:
            xl = l2_normalize(lab) if self.normalize else _f32(lab)
            x = np.vstack([xu, xl])
        else:
            x = xu
        n_u = xu.shape[0]
        k = max(1, min(n_lab + budget, self.max_clusters, x.shape[0]))
        _, assign, _ = kmeans_fit(x, k, rng=rng, niter=self.niter)
        sizes = np.bincount(assign, minlength=k)
        covered = np.bincount(assign[n_u:], minlength=k) if n_lab else np.zeros(k, np.int64)

        # per cluster: unlabeled members sorted by typicality (descending)
        members: list[np.ndarray] = []
        typ_of: list[np.ndarray] = []
        by_cluster = np.argsort(assign, kind="stable")
        bounds = np.r_[0, np.cumsum(sizes)]
        for c in range(k):
            rows = by_cluster[bounds[c] : bounds[c + 1]]
            t = typicality(x[rows], self.knn)
            unl = rows < n_u
            rows_u, t_u = rows[unl], t[unl]
            o = np.argsort(-t_u, kind="stable")
            members.append(rows_u[o])
            typ_of.append(t_u[o])
        cursor = np.zeros(k, dtype=np.int64)
        guard = self._guard(pool)

        picks: list[int] = []
        scores: list[float] = []
        reasons: list[str] = []
        small = sizes < self.min_cluster_size
        while len(picks) < budget:
            avail = cursor < np.array([len(m) for m in members])
            if not avail.any():
                break
            # fewest covered first, then big clusters first; small clusters last
            key = np.lexsort((-sizes, covered, small.astype(int), ~avail))
            c = int(key[0])
            row = int(members[c][cursor[c]])
            t = float(typ_of[c][cursor[c]])
            cursor[c] += 1
            pos = int(cand[row])
            if guard is not None and not guard.accept(pos):
                continue
            was_uncovered = covered[c] == 0
            covered[c] += 1
            picks.append(pos)
            scores.append(t)
            reasons.append(
                f"most typical of {'uncovered ' if was_uncovered else ''}cluster {c}"
                f" (typicality {t:.2f})"
            )
        return Ranking(
            np.asarray(picks, dtype=np.int64),
            np.asarray(scores),
            reasons,
            prechecked=True,
            skipped=0 if guard is None else guard.skipped,
        )


def coverage_radius(
    ref: np.ndarray, knn: int, *, rng: np.random.Generator, probe: int = 2000
) -> float:
    """Data-adaptive ball radius (as a cosine similarity) for coverage: the median, over up to
    ``probe`` sampled points, of the similarity to their ``knn``-th nearest neighbour in ``ref``
    (unit vectors). A ball then holds about ``knn`` reference points in the median."""
    ref = _f32(ref)
    n = ref.shape[0]
    if n < 2:
        return 1.0
    rows = np.arange(n) if n <= probe else np.sort(rng.choice(n, size=probe, replace=False))
    index = faiss.IndexFlatIP(ref.shape[1])
    index.add(ref)
    sims, _ = index.search(ref[rows], min(knn + 1, n))
    return float(np.median(sims[:, -1]))


def coverage_greedy(
    cand: np.ndarray,
    ref: np.ndarray,
    *,
    similarity: float,
    labeled: np.ndarray | None = None,
    priority: np.ndarray | None = None,
    max_picks: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximum coverage (ProbCover; Yehuda et al., 2022, *Active Learning Through a
    Covering Lens*, NeurIPS).

    Each candidate's ball holds the reference points with cosine similarity > ``similarity``
    (unit vectors). Points in a labeled example's ball start covered. Repeatedly take the
    candidate whose ball holds the most uncovered reference points; ties (including "covers
    nothing new") go to the lower ``priority``. After ``max_picks`` greedy steps the remaining
    candidates follow in priority order.

    Returns (candidate rows in pick order, newly covered count at pick time).
    """
    import scipy.sparse as sp

    cand, ref = _f32(cand), _f32(ref)
    nc, nr = cand.shape[0], ref.shape[0]
    prio = np.zeros(nc) if priority is None else np.asarray(priority, dtype=np.float64)
    if nc == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    index = faiss.IndexFlatIP(ref.shape[1])
    index.add(ref)
    lims, _, cols = index.range_search(cand, float(similarity))
    balls = sp.csr_matrix((np.ones(len(cols), np.int32), cols, lims), shape=(nc, nr))
    members_of = balls.T.tocsr()
    uncovered = np.ones(nr, dtype=bool)
    if labeled is not None and len(labeled):
        _, _, lab_cols = index.range_search(_f32(labeled), float(similarity))
        uncovered[lab_cols] = False
    gain = np.asarray(balls @ uncovered.astype(np.int32)).ravel().astype(np.float64)
    # tie-break strictly inside one unit of gain: lower priority first
    span = prio.max() - prio.min()
    tie = 0.5 * (prio.max() - prio) / span if span > 0 else np.zeros(nc)
    steps = nc if max_picks is None else min(nc, max_picks)
    chosen = np.zeros(nc, dtype=bool)
    order: list[int] = []
    gains: list[float] = []
    for _ in range(steps):
        g = gain + tie
        g[chosen] = -np.inf
        i = int(np.argmax(g))
        order.append(i)
        gains.append(float(gain[i]))
        chosen[i] = True
        new = balls.indices[balls.indptr[i] : balls.indptr[i + 1]]
        new = new[uncovered[new]]
        if len(new):
            uncovered[new] = False
            gain -= np.asarray(members_of[new].sum(axis=0)).ravel()
    rest = np.flatnonzero(~chosen)
    rest = rest[np.argsort(prio[rest], kind="stable")]
    return (
        np.concatenate([np.asarray(order, dtype=np.int64), rest]),
        np.concatenate([np.asarray(gains), np.zeros(len(rest))]),
    )
