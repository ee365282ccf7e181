"""A FAISS vector index over the cached embeddings, restricted by language when asked.

Kinds: exact inner product (IndexFlatIP) up to `[index] exact_max` vectors, above it HNSW
(IndexHNSWFlat, inner product) or IVF (IndexIVFFlat, trained on the vectors at build time).
With L2-normalized vectors inner product is cosine similarity.

FAISS ids are the positions 0..n-1 in insertion order; `ids_` maps them to example ids and
`languages_` to language codes, so a language filter is an `IDSelectorBatch` of positions passed
in the search parameters (supported by all three kinds), not a separate index per language.

Persistence: `<store>/index/<model-slug>/` holds `index.faiss`, `ids.npy`, `languages.npy` and
`meta.json`, each written to a temporary name and renamed; `meta.json` goes last and names the
vector count, so a half-written update is detected and the index rebuilt from the cache.
`update_index()` adds only vectors not yet indexed, and rebuilds when the pool outgrows the exact
index.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from curation.config import Config, IndexConfig
from curation.embeddings import EmbeddingCache, model_slug
from curation.store import Store

# Vectors per FAISS add call: small enough for a progress bar to move, large enough not to cost.
ADD_BLOCK = 20000


def _as_float32(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype="float32")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    return x


class VectorIndex:
    """Inner-product search over example vectors, with an optional language restriction."""

    def __init__(
        self,
        dim: int,
        *,
        kind: str = "flat",
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 64,
        nlist: int | None = None,
    ) -> None:
        if kind not in {"flat", "ivf", "hnsw"}:
            raise ValueError(f"kind must be 'flat', 'ivf' or 'hnsw', not {kind!r}")
        self.dim = dim
        self.kind = kind
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.nlist = nlist
        self.index_ = None
        self.ids_: np.ndarray = np.empty(0, dtype=object)
        self.languages_: np.ndarray = np.empty(0, dtype=object)

    def __repr__(self) -> str:
        return (
            f"VectorIndex(dim={self.dim}, kind={self.kind!r}, nprobe={self.nprobe}, "
            f"hnsw_m={self.hnsw_m}, ef_search={self.ef_search}, size={len(self)})"
        )

    def __len__(self) -> int:
        return len(self.ids_)

    def _new_faiss_index(self, training: np.ndarray):  # noqa: ANN202 - faiss.Index
        import faiss

        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = max(40, 2 * self.hnsw_m)
            return index
        nlist = self.nlist or max(1, min(int(4 * np.sqrt(len(training))), len(training) // 39))
        self.nlist = nlist
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(training)
        return index

    def add(
        self,
        vectors: np.ndarray,
        ids: Sequence[str],
        languages: Sequence[str] | None = None,
        *,
        on_added: Callable[[int], object] | None = None,
    ) -> None:
        """Append vectors; `on_added(n)` is told after every block of ADD_BLOCK vectors (a
        progress bar: an HNSW graph over a large pool takes minutes to build)."""
        vectors = _as_float32(vectors)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors are {vectors.shape[1]}-d, the index is {self.dim}-d")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if languages is not None and len(languages) != len(ids):
            raise ValueError(f"{len(languages)} languages for {len(ids)} ids")
        if self.index_ is None:
            self.index_ = self._new_faiss_index(vectors)
        for start in range(0, len(vectors), ADD_BLOCK):
            block = vectors[start : start + ADD_BLOCK]
            self.index_.add(block)
            if on_added is not None:
                on_added(len(block))
        self.ids_ = np.concatenate([self.ids_, np.asarray(list(ids), dtype=object)])
        langs = list(languages) if languages is not None else [None] * len(ids)
        self.languages_ = np.concatenate([self.languages_, np.asarray(langs, dtype=object)])

    def _search_parameters(self, language: str | Sequence[str] | None):  # noqa: ANN202
        import faiss

        selector = None
        if language is not None:
            wanted = {language} if isinstance(language, str) else set(language)
            positions = np.flatnonzero(np.isin(self.languages_, list(wanted))).astype("int64")
            selector = faiss.IDSelectorBatch(positions)
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = self.ef_search
        elif self.kind == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = self.nprobe
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        # Keep the selector alive as long as the parameters are used (SWIG holds a raw pointer).
        return params, selector

    def search(
        self, queries: np.ndarray, k: int, *, language: str | Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k similarities (float32, shape (q, k), -inf where fewer exist) and example ids."""
        queries = _as_float32(queries)
        if self.index_ is None or len(self) == 0:
            return np.full((len(queries), k), -np.inf, dtype=np.float32), [[] for _ in queries]
        params, _selector = self._search_parameters(language)
        scores, positions = self.index_.search(queries, k, params=params)
        found = []
        for row_scores, row_positions in zip(scores, positions, strict=True):
            keep = row_positions >= 0
            row_scores[~keep] = -np.inf
            found.append([self.ids_[p] for p in row_positions[keep]])
        return scores, found

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "dim": self.dim,
            "kind": self.kind,
            "nprobe": self.nprobe,
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "size": len(self),
        }
        tmp = folder / "index.faiss.tmp"
        if self.index_ is not None:
            faiss.write_index(self.index_, str(tmp))
            os.replace(tmp, folder / "index.faiss")
        for name, array in (("ids", self.ids_), ("languages", self.languages_)):
            with open(folder / f"{name}.npy.tmp", "wb") as handle:
                np.save(handle, np.asarray(array, dtype=str))
            os.replace(folder / f"{name}.npy.tmp", folder / f"{name}.npy")
        (folder / "meta.json.tmp").write_text(json.dumps(meta))
        os.replace(folder / "meta.json.tmp", folder / "meta.json")

    @classmethod
    def load(cls, folder: str | Path) -> VectorIndex | None:
        """The saved index, or None when missing or inconsistent (then rebuild it)."""
        import faiss

        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            index = cls(
                meta["dim"],
                kind=meta["kind"],
                nprobe=meta["nprobe"],
                hnsw_m=meta["hnsw_m"],
                ef_search=meta["ef_search"],
                nlist=meta["nlist"],
            )
            index.ids_ = np.load(folder / "ids.npy").astype(object)
            index.languages_ = np.load(folder / "languages.npy").astype(object)
            if meta["size"]:
                index.index_ = faiss.read_index(str(folder / "index.faiss"))
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        sizes = {meta["size"], len(index.ids_), len(index.languages_)}
        if index.index_ is not None:
            sizes.add(index.index_.ntotal)
        return index if len(sizes) == 1 else None


def choose_kind(size: int, config: IndexConfig) -> str:
    if config.kind != "auto":
        return config.kind
    return "flat" if size <= config.exact_max else config.approximate


def index_folder(store: Store, cache: EmbeddingCache) -> Path:
    return store.path / "index" / model_slug(cache.key)


def _bar(tqdm, total: int, enabled: bool):  # noqa: ANN001, ANN202 - tqdm class and instance
    return tqdm(total=total, desc="index", unit=" vectors", disable=not enabled, file=sys.stderr)


def update_index(
    store: Store, config: Config, *, progress: bool = False
) -> tuple[VectorIndex | None, dict]:
    """Bring the persisted index up to date with the cache; returns it with counts.

    `progress`: a bar on stderr while vectors are added (only when there are any to add)."""
    from tqdm import tqdm

    cache = EmbeddingCache.for_config(store, config)
    folder = index_folder(store, cache)
    total = cache.count()
    index = VectorIndex.load(folder)
    wanted_kind = choose_kind(total, config.index)
    rebuilt = index is None or index.kind != wanted_kind
    if total == 0:
        return None, {"indexed": 0, "added": 0, "kind": None, "rebuilt": False}
    language_of = dict(store.conn.execute("SELECT id, language FROM examples").fetchall())
    if rebuilt:
        ids, vectors = cache.load()
        index = VectorIndex(
            vectors.shape[1],
            kind=wanted_kind,
            nprobe=config.index.nprobe,
            hnsw_m=config.index.hnsw_m,
            ef_search=config.index.ef_search,
        )
        with _bar(tqdm, len(ids), progress) as bar:
            index.add(vectors, ids, [language_of[i] for i in ids], on_added=bar.update)
        added = len(ids)
    else:
        known = set(index.ids_.tolist())
        all_ids = [
            row[0]
            for row in store.conn.execute(
                "SELECT example_id FROM embeddings WHERE model = ? ORDER BY shard, row",
                (cache.key,),
            )
        ]
        new_ids = [i for i in all_ids if i not in known]
        if new_ids:
            _, vectors = cache.load(new_ids)
            with _bar(tqdm, len(new_ids), progress) as bar:
                index.add(vectors, new_ids, [language_of[i] for i in new_ids], on_added=bar.update)
        added = len(new_ids)
    if added or rebuilt:
        index.save(folder)
    return index, {"indexed": len(index), "added": added, "kind": index.kind, "rebuilt": rebuilt}
