"""Near-duplicate guard shared by every strategy that receives embeddings.

Walk the candidates in rank order and accept one only if its cosine similarity to every
already-labeled example and to every earlier pick is at most ``max_similarity``. The check is
language-agnostic on purpose: with a multilingual encoder a translation of a labeled text lands
next to it and adds little information.

Implementation: FAISS inner product on L2-normalised float32 vectors for the labeled set
(which can be large), dense matrix products for the (small) set of picks.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

from selection.vectors import l2_normalize

__all__ = ["NearDuplicateGuard", "greedy_deduplicate"]


class NearDuplicateGuard:
    """Greedy rank-order acceptance under a cosine-similarity ceiling.

    Args:
        unit_rows: callable mapping an index array to L2-normalised float32 rows.
        labeled_unit: (m, d) L2-normalised labeled vectors, or None.
        max_similarity: candidates more similar than this (strictly) are skipped.
    """

    def __init__(
        self,
        unit_rows: Callable[[np.ndarray], np.ndarray],
        labeled_unit: np.ndarray | None,
        *,
        max_similarity: float,
    ) -> None:
        self._unit_rows = unit_rows
        self.max_similarity = float(max_similarity)
        self._labeled_index: faiss.IndexFlatIP | None = None
        if labeled_unit is not None and labeled_unit.shape[0] > 0:
            lab = np.ascontiguousarray(labeled_unit, dtype="float32")
            self._labeled_index = faiss.IndexFlatIP(lab.shape[1])
            self._labeled_index.add(lab)
        self._accepted: list[np.ndarray] = []
        self._accepted_mat: np.ndarray | None = None
        self._seen: set[int] = set()
        self.skipped = 0

    # -- internals ----------------------------------------------------------------------------
    def _labeled_max(self, vecs: np.ndarray) -> np.ndarray:
        if self._labeled_index is None:
            return np.full(vecs.shape[0], -np.inf, dtype=np.float32)
        sims, _ = self._labeled_index.search(np.ascontiguousarray(vecs, dtype="float32"), 1)
        return sims[:, 0]

    def _accepted_matrix(self) -> np.ndarray | None:
        if not self._accepted:
            return None
        if self._accepted_mat is None or self._accepted_mat.shape[0] != len(self._accepted):
            self._accepted_mat = np.vstack(self._accepted)
        return self._accepted_mat

    # -- API ----------------------------------------------------------------------------------
    def accept(self, index: int) -> bool:
        """Check one candidate (a pool position); remember it if accepted."""
        index = int(index)
        if index in self._seen:
            return False
        vec = self._unit_rows(np.array([index]))
        if self._labeled_max(vec)[0] > self.max_similarity:
            self._seen.add(index)
            self.skipped += 1
            return False
        acc = self._accepted_matrix()
        if acc is not None and float((acc @ vec[0]).max()) > self.max_similarity:
            self._seen.add(index)
            self.skipped += 1
            return False
        self._seen.add(index)
        self._accepted.append(vec[0].copy())
        return True

    def walk(self, order: np.ndarray, limit: int) -> list[int]:
        """Accept candidates of ``order`` greedily; return accepted positions *within order*.

        Stops once ``limit`` are accepted; repeated entries of ``order`` are ignored (not
        counted as near-duplicates).
        """
        order = np.asarray(order, dtype=np.int64)
        kept: list[int] = []
        start = 0
        thr = self.max_similarity
        while start < len(order) and len(kept) < limit:
            need = limit - len(kept)
            stop = min(len(order), start + max(2 * need, 256))
            chunk = order[start:stop]
            vecs = self._unit_rows(chunk)
            lab = self._labeled_max(vecs)
            acc = self._accepted_matrix()
            prev = (vecs @ acc.T).max(axis=1) if acc is not None else np.full(len(chunk), -np.inf)
            inner = vecs @ vecs.T
            chosen_local: list[int] = []
            for j in range(len(chunk)):
                idx = int(chunk[j])
                if idx in self._seen:
                    continue
                self._seen.add(idx)
                dup = lab[j] > thr or prev[j] > thr
                if not dup and chosen_local:
                    dup = bool(inner[j, chosen_local].max() > thr)
                if dup:
                    self.skipped += 1
                    continue
                chosen_local.append(j)
                kept.append(start + j)
                self._accepted.append(vecs[j].copy())
                if len(kept) >= limit:
                    break
            start = stop
        return kept


def greedy_deduplicate(
    vectors: np.ndarray,
    order: np.ndarray | None = None,
    *,
    labeled: np.ndarray | None = None,
    max_similarity: float = 0.95,
    limit: int | None = None,
) -> tuple[list[int], int]:
    """Pure helper: rank-order greedy near-duplicate filtering of ``vectors``.

    Returns (accepted row indices in rank order, number skipped as near-duplicates).
    Vectors are L2-normalised here, so similarity is cosine.
    """

    unit = l2_normalize(np.asarray(vectors))
    lab = None if labeled is None or len(labeled) == 0 else l2_normalize(np.asarray(labeled))
    order = np.arange(unit.shape[0]) if order is None else np.asarray(order, dtype=np.int64)
    guard = NearDuplicateGuard(lambda rows: unit[rows], lab, max_similarity=max_similarity)
    pos = guard.walk(order, len(order) if limit is None else limit)
    return [int(order[p]) for p in pos], guard.skipped
