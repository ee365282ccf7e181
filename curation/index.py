"""A FAISS vector index over the cached embeddings, restricted by language when asked.

Kinds: exact inner product (IndexFlatIP) up to `[index] exact_max` vectors, above it
`[index] approximate`: HNSW (IndexHNSWFlat), IVF (IndexIVFFlat), or a compressed IVF for pools
that do not fit in RAM as float32 vectors: IVF-PQ (`pq_m` bytes per vector) or IVF-SQ8 (one byte
per dimension). All use inner product; with L2-normalized vectors that is cosine similarity.

Building (`update_index`) never holds the pool in memory: the IVF kinds train their quantizers
on a seeded sample of `[index] train_sample` vectors read row by row from the cache's shards,
and every kind is then filled one shard at a time, so the peak is the index plus one shard
(plus the training sample, freed before filling). `benchmarks/index_memory.py` measures the
memory per million vectors of each kind.

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

import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from curation.config import Config, IndexConfig
from curation.embeddings import EmbeddingCache, model_slug
from curation.errors import ConfigError, StoreError
from curation.store import Store

# Vectors per FAISS add call: small enough for a progress bar to move, large enough not to cost.
ADD_BLOCK = 20000
KINDS = ("flat", "ivf", "hnsw", "ivfpq", "ivfsq8")
#: Kinds with quantizers trained before anything is added (inverted lists, PQ / SQ codebooks).
TRAINED_KINDS = frozenset({"ivf", "ivfpq", "ivfsq8"})
#: Codebook entries per PQ sub-quantizer (8 bits): its k-means needs at least this many vectors.
PQ_CENTROIDS = 256
#: The training sample is drawn with this seed: the same cache trains the same index.
TRAIN_SEED = 0


def _as_float32(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype="float32")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    return x


def _shared_strings(values: Sequence[str | None]) -> np.ndarray:
    """An object array whose equal entries point to one string object: a million language codes
    read from SQLite are a million separate str objects (~59 MB), shared they are 8 MB."""
    array = np.asarray(list(values), dtype=object)
    if len(array) == 0 or any(value is None for value in array):
        return array
    unique, inverse = np.unique(array.astype(str), return_inverse=True)
    return unique.astype(object)[inverse.reshape(-1)]


def default_pq_m(dim: int) -> int:
    """One PQ byte per 8 dimensions (48 for 384-d e5). Sub-vectors of 8 or more dimensions
    train fast: on 20k x 384-d, measured, 8-d sub-vectors (pq_m 48) took 1.7 s, 6-d (64) 23 s,
    4-d (96) 35 s (FAISS's k-means is far slower below 8 dimensions)."""
    return max(1, dim // 8)


def default_nlist(pool_size: int, training_size: int) -> int:
    """4 * sqrt(pool) inverted lists, at most one per 39 training vectors, at least one."""
    return max(1, min(int(4 * np.sqrt(pool_size)), training_size // 39))


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
        pq_m: int | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, not {kind!r}")
        pq_m = pq_m or default_pq_m(dim)
        if kind == "ivfpq" and dim % pq_m != 0:
            divisors = [m for m in range(2, min(dim, 128) + 1) if dim % m == 0]
            raise ConfigError(
                f"[index] pq_m = {pq_m} does not divide the vector dimension {dim}: "
                f"use one of {divisors}"
            )
        self.dim = dim
        self.kind = kind
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.nlist = nlist
        self.pq_m = pq_m
        self.index_ = None
        # Added in parts (one per shard) and joined when read: joining on every add would copy
        # the whole id array once per shard.
        self._id_parts: list[np.ndarray] = []
        self._language_parts: list[np.ndarray] = []

    def __repr__(self) -> str:
        return (
            f"VectorIndex(dim={self.dim}, kind={self.kind!r}, nprobe={self.nprobe}, "
            f"hnsw_m={self.hnsw_m}, ef_search={self.ef_search}, nlist={self.nlist}, "
            f"pq_m={self.pq_m}, size={len(self)})"
        )

    def __len__(self) -> int:
        return sum(len(part) for part in self._id_parts)

    @property
    def ids_(self) -> np.ndarray:
        """Example id of each FAISS position (object array)."""
        if len(self._id_parts) != 1:
            joined = np.concatenate(self._id_parts) if self._id_parts else np.empty(0, object)
            self._id_parts = [joined]
        return self._id_parts[0]

    @ids_.setter
    def ids_(self, values: Sequence[str]) -> None:
        self._id_parts = [np.asarray(values, dtype=object)]

    @property
    def languages_(self) -> np.ndarray:
        """Language code of each FAISS position (object array, None where unknown)."""
        if len(self._language_parts) != 1:
            parts = self._language_parts
            joined = np.concatenate(parts) if parts else np.empty(0, object)
            self._language_parts = [joined]
        return self._language_parts[0]

    @languages_.setter
    def languages_(self, values: Sequence[str | None]) -> None:
        self._language_parts = [_shared_strings(values)]

    @property
    def is_trained(self) -> bool:
        """Whether vectors can be added (a trained kind needs `train` or a first `add`)."""
        return self.index_ is not None and bool(self.index_.is_trained)

    def train(self, sample: np.ndarray, *, pool_size: int | None = None) -> None:
        """Create the FAISS index and train its quantizers on `sample` (a no-op for flat and
        hnsw); `pool_size` (default: the sample's size) sets the default nlist."""
        if self.index_ is not None:
            raise ValueError("the index is already built; make a new VectorIndex to retrain")
        self.index_ = self._new_faiss_index(_as_float32(sample), pool_size=pool_size)

    def _new_faiss_index(  # noqa: ANN202 - faiss.Index
        self, training: np.ndarray, *, pool_size: int | None = None
    ):
        import faiss

        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = max(40, 2 * self.hnsw_m)
            return index
        if training.shape[1] != self.dim:
            raise ValueError(f"vectors are {training.shape[1]}-d, the index is {self.dim}-d")
        nlist = self.nlist or default_nlist(pool_size or len(training), len(training))
        if len(training) < nlist:
            raise ConfigError(
                f"[index] nlist = {nlist} needs at least {nlist} training vectors, "
                f"{len(training)} given: lower nlist or raise [index] train_sample"
            )
        if self.kind == "ivfpq" and len(training) < PQ_CENTROIDS:
            raise ConfigError(
                f"[index] kind: ivfpq needs at least {PQ_CENTROIDS} vectors to train its "
                f"codebooks, {len(training)} given: use flat (exact) for a pool this small"
            )
        self.nlist = nlist
        spec = {"ivf": "Flat", "ivfpq": f"PQ{self.pq_m}", "ivfsq8": "SQ8"}[self.kind]
        index = faiss.index_factory(self.dim, f"IVF{nlist},{spec}", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.downcast_index(index)
        # FAISS prints a warning per k-means run below 39 points a centroid: one line per
        # sub-quantizer (48 lines on a pool of 300); a small pool is what it is, stay quiet.
        ivf.cp.min_points_per_centroid = 1
        if self.kind == "ivfpq":
            ivf.pq.cp.min_points_per_centroid = 1
            # The factory turns on polysemous training (codes ordered for Hamming filtering, a
            # search mode not used here): 25 of 33 s of training 10k x 64-d vectors, measured.
            ivf.do_polysemous_training = False
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
            # Not trained yet: a trained kind learns its quantizers from these vectors.
            self.index_ = self._new_faiss_index(vectors)
        for start in range(0, len(vectors), ADD_BLOCK):
            block = vectors[start : start + ADD_BLOCK]
            self.index_.add(block)
            if on_added is not None:
                on_added(len(block))
        self._id_parts.append(np.asarray(list(ids), dtype=object))
        langs = list(languages) if languages is not None else [None] * len(ids)
        self._language_parts.append(_shared_strings(langs))

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
        elif self.kind in TRAINED_KINDS:
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
            "pq_m": self.pq_m,
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
                # Saved before pq_m existed: not an ivfpq index, the default does.
                pq_m=meta.get("pq_m"),
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


def load_shard(path: Path, *, rows: int, dim: int) -> np.ndarray:
    """One vector shard, memory-mapped (rows are read when indexed), shape checked."""
    try:
        data = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise StoreError(f"vector shard {path} is unreadable: {exc}") from None
    if data.shape != (rows, dim):
        raise StoreError(f"vector shard {path} has shape {data.shape}, expected ({rows}, {dim})")
    return data


def iter_shards(
    store: Store, cache: EmbeddingCache, *, skip: Callable[[str], bool] | None = None
) -> Iterator[tuple[list[str], list[str | None], np.ndarray]]:
    """(ids, languages, float32 vectors) of the cache one shard at a time, in (shard, row)
    order, leaving out the ids `skip` accepts; a shard with nothing left is not read."""
    shards = {
        row["shard"]: row
        for row in store.conn.execute(
            "SELECT shard, path, rows, dim FROM embedding_shards WHERE model = ?", (cache.key,)
        )
    }
    # One ordered pass with the language joined in: no id -> language dict of the whole pool.
    cursor = store.conn.execute(
        "SELECT m.shard, m.row, m.example_id, e.language FROM embeddings m "
        "JOIN examples e ON e.id = m.example_id WHERE m.model = ? ORDER BY m.shard, m.row",
        (cache.key,),
    )
    for shard, group in itertools.groupby(cursor, key=lambda row: row[0]):
        rows = [row for row in group if skip is None or not skip(row[2])]
        if not rows:
            continue
        info = shards[shard]
        data = load_shard(cache.folder / info["path"], rows=info["rows"], dim=info["dim"])
        positions = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
        vectors = np.ascontiguousarray(data[positions], dtype="float32")
        yield [row[2] for row in rows], [row[3] for row in rows], vectors


def training_sample(store: Store, cache: EmbeddingCache, size: int, *, seed: int) -> np.ndarray:
    """`size` vectors drawn without replacement (seeded) from the whole cache, read from each
    shard's memory map row by row: the sample, never the pool, is in memory."""
    counts = store.conn.execute(
        "SELECT shard, path, rows, dim FROM embedding_shards WHERE model = ? ORDER BY shard",
        (cache.key,),
    ).fetchall()
    total = sum(row["rows"] for row in counts)
    size = min(size, total)
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))
    dim = counts[0]["dim"] if counts else 0
    out = np.empty((size, dim), dtype=np.float32)
    offset = filled = 0
    for row in counts:
        low, high = np.searchsorted(chosen, [offset, offset + row["rows"]])
        if high > low:
            data = load_shard(cache.folder / row["path"], rows=row["rows"], dim=row["dim"])
            out[filled : filled + high - low] = data[chosen[low:high] - offset]
            filled += high - low
        offset += row["rows"]
    return out


def _needs_rebuild(index: VectorIndex | None, kind: str, config: IndexConfig) -> bool:
    """A missing index, another kind, or a trained index whose structure the config changed."""
    if index is None or index.kind != kind:
        return True
    if kind == "ivfpq" and index.pq_m != (config.pq_m or default_pq_m(index.dim)):
        return True
    return kind in TRAINED_KINDS and config.nlist is not None and index.nlist != config.nlist


def update_index(
    store: Store, config: Config, *, progress: bool = False
) -> tuple[VectorIndex | None, dict]:
    """Bring the persisted index up to date with the cache; returns it with counts.

    A rebuild trains a trained kind on `[index] train_sample` vectors drawn from the cache
    (seeded), then adds the cache one shard at a time; an update adds, shard by shard, only the
    vectors not yet indexed. `progress`: a bar on stderr while vectors are added."""
    from tqdm import tqdm

    cache = EmbeddingCache.for_config(store, config)
    folder = index_folder(store, cache)
    total = cache.count()
    index = VectorIndex.load(folder)
    wanted_kind = choose_kind(total, config.index)
    rebuilt = _needs_rebuild(index, wanted_kind, config.index)
    if total == 0:
        return None, {"indexed": 0, "added": 0, "kind": None, "rebuilt": False}
    if rebuilt:
        index = VectorIndex(
            cache.dim(),
            kind=wanted_kind,
            nprobe=config.index.nprobe,
            hnsw_m=config.index.hnsw_m,
            ef_search=config.index.ef_search,
            nlist=config.index.nlist,
            pq_m=config.index.pq_m,
        )
        sample = (
            training_sample(store, cache, config.index.train_sample, seed=TRAIN_SEED)
            if wanted_kind in TRAINED_KINDS
            else np.empty((0, index.dim), dtype=np.float32)
        )
        index.train(sample, pool_size=total)
        del sample  # trained: the codebooks are in the index, the sample is not needed
        shards = iter_shards(store, cache)
        to_add = total
    else:
        # Search-time settings follow the config without a rebuild.
        index.nprobe = config.index.nprobe
        index.ef_search = config.index.ef_search
        known = set(index.ids_.tolist())
        shards = iter_shards(store, cache, skip=known.__contains__)
        to_add = max(0, total - len(known))
    added = 0
    with _bar(tqdm, to_add, progress and to_add > 0) as bar:
        for ids, languages, vectors in shards:
            index.add(vectors, ids, languages, on_added=bar.update)
            added += len(ids)
    if added or rebuilt:
        index.save(folder)
    return index, {"indexed": len(index), "added": added, "kind": index.kind, "rebuilt": rebuilt}
