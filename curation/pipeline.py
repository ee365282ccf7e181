"""The front room that wires the steps: store arrays -> proxy -> allocation -> strategy -> round.

Like the CLI and the dashboard, this module may import every step (`selection`, later
`labeling` and `training`); the steps never import it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.adapter_proxy import AdapterProxy
from curation.config import Config, max_similarity_for
from curation.errors import InputError
from curation.pool import PoolArrays, RoundItem, load_pool, record_round
from curation.quality import (
    calibrate,
    calibration_summary,
    labeled_out_of_fold,
    labels_fingerprint,
    proxy_calibration,
)
from curation.store import Store

log = logging.getLogger(__name__)

# A language's validation F1 is estimated only with this many labels, else it is "unknown".
MIN_LABELS_FOR_F1 = 10


class NoCandidatesError(InputError):
    """Every embedded example is labeled, pending or already selected."""


@dataclass(frozen=True)
class SelectionRequest:
    budget: int
    strategy: str
    allocation: str
    languages: tuple[str, ...] | None = None
    reselect: bool = False
    seed: int = 0
    # Queue top-up (the nightly job): `budget` is the target size of the pending queue, split
    # per language by the allocator; each language then gets target minus what is pending.
    pending: dict[str, int] | None = None
    target_overrides: dict[str, int] | None = None


def _per_language_f1(
    probabilities: np.ndarray,
    labels: np.ndarray,
    languages: np.ndarray,
    label_names: list[str],
) -> dict[str, float]:
    """Per-language macro-F1 of the proxy from its out-of-fold probabilities (languages with
    at least MIN_LABELS_FOR_F1 labels)."""
    from sklearn.metrics import f1_score

    predicted = np.asarray(label_names, dtype=object)[probabilities.argmax(axis=1)]
    scores = {}
    for language in sorted(set(languages.tolist())):
        mask = languages == language
        if mask.sum() >= MIN_LABELS_FOR_F1:
            scores[language] = float(
                f1_score(labels[mask], predicted[mask], average="macro", zero_division=0)
            )
    return scores


PROXY_MODEL = "proxy:logistic-regression"


def _stored_evaluation(store: Store, fingerprint: str) -> dict | None:
    row = store.conn.execute(
        "SELECT id, labels, mean_macro_f1, worst_language_f1, per_language FROM evaluations "
        "WHERE model = ? AND fingerprint = ? ORDER BY id DESC LIMIT 1",
        (PROXY_MODEL, fingerprint),
    ).fetchone()
    if row is None:
        return None
    per_language = json.loads(row[4])
    return {
        "model": PROXY_MODEL,
        "labels": int(row[1]),
        "mean_macro_f1": row[2],
        "worst_language_f1": row[3],
        "worst_language": min(per_language, key=per_language.get),
        "per_language": per_language,
        "fingerprint": fingerprint,
        "reused_evaluation": int(row[0]),
    }


def embed_store(store: Store, config: Config, *, progress: bool = True) -> dict:
    """Embed every example without a vector, on the configured engine (`curate embed` and the
    nightly embed stage)."""
    if config.engine.kind == "ray":
        from curation.ray_engine import embed_pool_ray

        return embed_pool_ray(store, config, progress=progress)
    from curation.embeddings import embed_pool

    return embed_pool(store, config, progress=progress)


def select_round(
    store: Store, config: Config, request: SelectionRequest, *, pool: PoolArrays | None = None
) -> dict:
    """Train the proxy, allocate per language, select, and store the round (`curate select`).

    ``pool``: the arrays of :func:`load_pool` when the caller has them already (the nightly job
    loads them once for evaluate and select).
    """
    from selection.allocation import allocate
    from selection.base import EmptyPoolError
    from selection.hybrid import Hybrid
    from selection.proxy import LogisticProxy
    from selection.registry import get_strategy
    from selection.uncertainty import margins

    try:
        strategy = get_strategy(request.strategy, max_similarity=max_similarity_for(config))
    except (KeyError, TypeError) as exc:
        raise InputError(str(exc).strip("'\"")) from None
    view = None
    if config.engine.kind == "ray":
        # Scored on the cluster; `pool` is then the labeled examples plus the union of the
        # shards' candidates, and `view` what is known of the full pool (curation.ray_engine).
        from curation.ray_engine import distributed_pool

        pool, view = distributed_pool(
            store,
            config,
            candidate_mask=lambda full: candidate_mask(full, request),
            strategy=strategy,
            budget=request.budget,
            seed=request.seed,
        )
    pool = load_pool(store, config) if pool is None else pool
    if len(pool) == 0:
        raise InputError("no embedded examples: run `curate ingest` and `curate embed` first")
    if pool.not_embedded:
        log.warning("%d examples have no vector yet and are not candidates", pool.not_embedded)
    label_names = store.label_names()
    labeled = pool.labeled
    candidates = candidate_mask(pool, request) if view is None else view.candidates
    if not candidates.any():
        raise NoCandidatesError(
            "no candidates left: every embedded example is labeled or already selected; add "
            "unlabeled texts (`curate ingest FILE`, then `curate embed`), or `--reselect` to "
            "offer already-selected ones again"
        )
    rng = np.random.default_rng(request.seed)

    candidate_languages = pool.languages[candidates]
    pool_sizes = (
        dict(Counter(candidate_languages.tolist())) if view is None else dict(view.pool_sizes)
    )
    labeled_counts = {
        language: int((pool.languages[labeled] == language).sum()) for language in pool_sizes
    }
    f1 = None
    if request.allocation == "need":
        # Reuses the stored evaluation of this very labeled set (the nightly evaluate stage
        # has just computed it), else cross-validates now.
        evaluation = evaluate_proxy(store, config, pool, seed=request.seed)
        if evaluation is not None:
            f1 = {k: v for k, v in evaluation["per_language"].items() if k in pool_sizes} or None

    # The proxy: logistic regression on the labeled vectors, or the trained adapter. Fitted
    # lazily: a queue already at its targets needs neither it nor its probabilities.
    proxy = None
    probs = None
    calibration = None

    def fit_proxy() -> None:
        nonlocal proxy, probs, calibration
        if proxy is not None:
            return  # fitted already (need-allocation and stopping both ask for it)
        if config.selection.proxy == "adapter":
            proxy = AdapterProxy.latest(store)
            if view is not None and view.probs is not None:
                probs = view.probs[candidates]  # computed on the cluster
            else:
                probs = proxy.predict_pool(store, pool.ids[candidates].tolist())
        elif labeled.sum() >= 2 and len(label_names) >= 2:
            proxy = (
                view.proxy  # fitted on these very labeled rows before the cluster scored
                if view is not None and view.proxy is not None
                else LogisticProxy(label_names).fit(
                    pool.vectors[labeled], pool.labels[labeled], ids=pool.ids[labeled].tolist()
                )
            )
            if not proxy.degenerate_:
                probs = _predict_rows(proxy, pool.vectors, np.flatnonzero(candidates))
                if config.selection.calibrate:
                    # Per-language temperatures from the proxy's held-out predictions: the
                    # uncertainty scores and the pre-annotation scores are probabilities then.
                    calibration = proxy_calibration(store, config, pool, seed=request.seed)
                    probs = calibrate(probs, pool.languages[candidates], calibration)

    uncertainty = None
    if request.allocation == "need" and f1 is None:
        fit_proxy()
        if view is not None:
            uncertainty = view.uncertainty  # the full pool's, from the shards
        elif probs is not None:
            margin_uncertainty = 1.0 - margins(probs)
            uncertainty = {
                language: float(margin_uncertainty[candidate_languages == language].mean())
                for language in pool_sizes
            }
    control_share = config.selection.control_share
    sizes = dict(pool_sizes)
    if request.pending is not None:
        for language, n in request.pending.items():
            sizes[language] = sizes.get(language, 0) + n

    def split(stopped: dict[str, str]):  # noqa: ANN202 - an Allocation
        allocation = allocate(
            request.budget,
            sizes,
            method=request.allocation,
            f1=f1,
            uncertainty=uncertainty,
            labeled_counts={language: labeled_counts.get(language, 0) for language in sizes},
            min_per_language=config.selection.min_per_language,
            max_per_language=config.selection.max_per_language,
            cold_start_share=config.selection.cold_start_share,
            stopped=stopped,
            redistribute_stopped=config.selection.stopping.redistribute,
        )
        return allocation if request.pending is None else top_up(allocation, request, pool_sizes)

    allocation = split({})
    stopping = None
    # Stopping only where something would be bought: a queue already at its targets fits no
    # proxy and takes no snapshot.
    if (
        allocation.total > 0
        and config.selection.stopping.enabled
        and config.selection.proxy == "logistic"
    ):
        fit_proxy()
        if proxy is not None and probs is not None:
            stopping = _stopping_decisions(store, config, pool, proxy, pool_sizes, f1, request)
            stopped = {
                language: decision.reason
                for language, decision in stopping.items()
                if decision.stopped
            }
            if stopped:
                allocation = split(stopped)
    if proxy is None and allocation.total > 0:
        fit_proxy()
    candidate_index = np.flatnonzero(candidates)
    candidate_position = np.cumsum(candidates) - 1  # pool row -> row of `probs`
    chosen_vectors = [pool.vectors[labeled]]
    items: list[RoundItem] = []
    per_language: dict[str, int] = {}
    skipped = 0
    for language, quota in sorted(allocation.per_language.items()):
        if quota <= 0:
            continue
        in_language = candidate_languages == language
        rows = candidate_index[in_language]
        n_control = int(round(control_share * quota)) if quota >= 2 else 0
        n_strategy = quota - n_control
        picked_rows: list[int] = []
        if n_strategy > 0:
            extra = {}
            if view is not None and isinstance(strategy, Hybrid) and not view.control[rows].all():
                # A language the shards sampled: its union rows are mostly the ones kept for
                # their margin; the uniform sample drawn along stands for its population.
                extra["reference"] = view.control[rows]
            try:
                selection = strategy.select(
                    pool.ids[rows].tolist(),
                    n_strategy,
                    probs=None if probs is None else probs[in_language],
                    embeddings=pool.vectors[rows],
                    # Every language's labels and earlier picks: translations add little.
                    labeled_embeddings=np.concatenate(chosen_vectors),
                    languages=candidate_languages[in_language].tolist(),
                    rng=rng,
                    **extra,
                )
            except EmptyPoolError:
                continue
            position = {example_id: i for i, example_id in enumerate(pool.ids[rows].tolist())}
            skipped += selection.skipped_near_duplicates
            for example_id, score, reason in zip(
                selection.ids, selection.scores, selection.reasons, strict=True
            ):
                row = rows[position[example_id]]
                picked_rows.append(row)
                items.append(
                    _item(
                        pool,
                        row,
                        len(items) + 1,
                        score,
                        reason,
                        probs,
                        candidate_position,
                        proxy,
                        is_control=False,
                    )
                )
        if n_control > 0:
            # A random control slice per language: realized savings against random can later
            # be measured on real annotations.
            # With the Ray engine only the shards' uniform sample is a fair draw of the language.
            pickable = rows if view is None else rows[view.control[rows]]
            remaining = np.setdiff1d(pickable, np.asarray(picked_rows, dtype=np.int64))
            take = rng.choice(remaining, size=min(n_control, len(remaining)), replace=False)
            for row in take:
                picked_rows.append(int(row))
                items.append(
                    _item(
                        pool,
                        int(row),
                        len(items) + 1,
                        None,
                        "random control",
                        probs,
                        candidate_position,
                        proxy,
                        is_control=True,
                    )
                )
        if picked_rows:
            chosen_vectors.append(pool.vectors[np.asarray(picked_rows)])
        per_language[language] = len(picked_rows)

    decision = allocation.to_dict()
    if calibration is not None:
        decision["calibration"] = calibration_summary(calibration)
    if stopping:
        decision["stopping"] = {
            language: {
                "stopped": d.stopped,
                "reason": d.reason,
                "changed": d.changed,
                "kappa": d.kappa,
                "slope_per_100": d.slope_per_100,
            }
            for language, d in stopping.items()
        }
    if f1:
        decision["validation_f1"] = f1
    if uncertainty:
        decision["mean_uncertainty"] = uncertainty
    if not items:
        # A queue already at its targets: nothing to record, nothing to push.
        return {
            "round_id": None,
            "selected": 0,
            "per_language": {},
            "strategy": request.strategy,
            "strategy_settings": repr(strategy),
            "allocation": request.allocation,
            "explanations": allocation.explanations,
            "proxy_model_version": None if proxy is None else proxy.version,
            "candidates": sum(pool_sizes.values()),
            "engine": config.engine.kind,
            "scoring_tasks": None if view is None else view.shards,
            "candidates_kept": None if view is None else view.kept,
            "control": 0,
            "shortfall": 0,
            "skipped_near_duplicates": skipped,
            "calibration": decision.get("calibration"),
            "stopping": decision.get("stopping"),
        }
    round_id = record_round(
        store,
        strategy=request.strategy,
        allocation=request.allocation,
        budget=request.budget,
        decision=decision,
        proxy_model_version=None if proxy is None else proxy.version,
        items=items,
    )
    return {
        "round_id": round_id,
        "selected": len(items),
        "per_language": per_language,
        "strategy": request.strategy,
        "strategy_settings": repr(strategy),
        "allocation": request.allocation,
        "explanations": allocation.explanations,
        "proxy_model_version": None if proxy is None else proxy.version,
        "candidates": sum(pool_sizes.values()),
        "engine": config.engine.kind,
        "scoring_tasks": None if view is None else view.shards,
        "candidates_kept": None if view is None else view.kept,
        "control": sum(item.is_control for item in items),
        # Fewer than the budget when the candidates (or the near-duplicate guard) ran out.
        "shortfall": request.budget - len(items),
        "skipped_near_duplicates": skipped,
        "calibration": decision.get("calibration"),
        "stopping": decision.get("stopping"),
    }


def candidate_mask(pool: PoolArrays, request: SelectionRequest) -> np.ndarray:
    """The rows a selection may pick: unlabeled, not waiting for a label, not picked before
    (unless ``reselect``), in the requested languages."""
    candidates = ~pool.labeled & ~pool.pending
    if not request.reselect:
        candidates &= ~pool.selected_before
    if request.languages:
        candidates &= np.isin(pool.languages, list(request.languages))
    return candidates


def _stopping_decisions(
    store: Store,
    config: Config,
    pool: PoolArrays,
    proxy,  # noqa: ANN001 - a fitted LogisticProxy
    pool_sizes: dict[str, int],
    f1: dict[str, float] | None,
    request: SelectionRequest,
) -> dict:
    """Snapshot the proxy on the stop sets (once per labeled set), then decide per language
    whether more labels still pay (curation.stop_set, selection.stopping)."""
    from curation import stop_set

    if f1 is None:
        evaluation = evaluate_proxy(store, config, pool, seed=request.seed)
        f1 = None if evaluation is None else evaluation["per_language"]
    stop_set.record_snapshot(
        store,
        config,
        pool,
        proxy.predict,
        fingerprint=labels_fingerprint(pool, config, request.seed),
        f1=f1,
        seed=request.seed,
    )
    return stop_set.decide(store, config, pool_sizes)


def _predict_rows(proxy, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """``proxy.predict_proba(vectors[rows])`` without gathering all rows at once (a 1M-row
    pool would need a second 1.5 GiB copy of its vectors)."""
    from selection.proxy import PREDICT_CHUNK

    out = np.empty((len(rows), len(proxy.classes_)), dtype=np.float64)
    for start in range(0, len(rows), PREDICT_CHUNK):
        chunk = rows[start : start + PREDICT_CHUNK]
        out[start : start + len(chunk)] = proxy.predict_proba(vectors[chunk])
    return out


def top_up(allocation, request: SelectionRequest, pool_sizes: dict[str, int]):  # noqa: ANN001
    """Per-language targets minus the pending queue: what this run must add."""
    from selection.allocation import Allocation

    targets = dict(allocation.per_language)
    targets.update(request.target_overrides or {})
    quotas, explanations = {}, {}
    for language, target in sorted(targets.items()):
        pending = (request.pending or {}).get(language, 0)
        quota = min(max(0, target - pending), pool_sizes.get(language, 0))
        quotas[language] = quota
        why = allocation.explanations.get(language, f"{language}: target {target}")
        explanations[language] = f"{why}; queue target {target}, {pending} pending, {quota} new"
    return Allocation(
        per_language=quotas,
        explanations=explanations,
        method=f"{allocation.method} (queue top-up)",
        budget=request.budget,
        total=sum(quotas.values()),
    )


def _item(
    pool: PoolArrays,
    row: int,
    rank: int,
    score: float | None,
    reason: str,
    probs: np.ndarray | None,
    candidate_position: np.ndarray,
    proxy,
    *,
    is_control: bool,
) -> RoundItem:
    predicted_label = predicted_score = None
    if probs is not None and proxy is not None:
        row_probs = probs[candidate_position[row]]
        predicted_label = proxy.classes_[int(row_probs.argmax())]
        predicted_score = float(row_probs.max())
    return RoundItem(
        example_id=str(pool.ids[row]),
        rank=rank,
        score=None if score is None else float(score),
        reason=reason,
        predicted_label=predicted_label,
        predicted_score=predicted_score,
        is_control=is_control,
    )


def round_rows(store: Store, round_id: int) -> list[dict]:
    """The items of a round with text and language, in rank order (for --output and tables)."""
    return [
        dict(row)
        for row in store.conn.execute(
            "SELECT r.rank, r.example_id AS id, e.language, e.text, r.score, r.reason, "
            "r.predicted_label, r.predicted_score, r.is_control, r.round_id "
            "FROM round_items r JOIN examples e ON e.id = r.example_id "
            "WHERE r.round_id = ? ORDER BY r.rank",
            (round_id,),
        )
    ]


# -- simulation ---------------------------------------------------------------------------------


def _scratch_store(config: Config, path: Path) -> tuple[Store, Config]:
    """A store of its own per simulation file (keyed by content), so vectors are cached across
    runs and a test file's rows are never linked as duplicates of the pool's."""
    from curation.normalize import file_sha256

    digest = file_sha256(str(path))[:16]
    folder = config.store.path / "simulations" / f"{path.stem}-{digest}"
    scratch = config.model_copy(update={"store": config.store.model_copy(update={"path": folder})})
    return Store(folder), scratch


def labeled_arrays(path: Path, config: Config, *, progress: bool) -> dict:
    """Ingest (once) and embed (once) a labeled file; its labeled, embedded rows as arrays."""
    from curation.embeddings import embed_pool
    from curation.ingest import ingest_files

    store, scratch = _scratch_store(config, path)
    with store:
        ingest_files(store, scratch, [path], progress=progress)
        embed_pool(store, scratch, progress=progress)
        pool = load_pool(store, scratch)
        mask = pool.labeled
        return {
            "ids": pool.ids[mask],
            "labels": pool.labels[mask],
            "languages": pool.languages[mask],
            "vectors": pool.vectors[mask],
            "unlabeled": int((~mask).sum()),
            "label_names": store.label_names(),
        }


def simulate_files(
    config: Config,
    *,
    train: Path,
    test: Path,
    strategies: list[str],
    rounds: int,
    batch_size: int,
    seed_size: int,
    seeds: int,
    allocation: str | None,
    progress: bool,
    stopping: bool = False,
    two_stage_shards: int | None = None,
) -> dict:
    """`curate simulate`. With ``stopping``, the same simulation runs without and with
    ``[selection.stopping]``'s rule, and ``results["stopping"]`` compares them per strategy:
    final labels, labels saved, final macro-F1 change, the rounds languages stopped in.

    With ``two_stage_shards``, it runs on one machine and again the way the Ray engine selects
    (that many shards keep local candidates, the selection runs on their union; no Ray needed,
    the same functions), and ``results["two_stage"]`` compares their AULC per strategy."""
    from selection.simulation import simulate
    from selection.stopping import StoppingRule

    pool = labeled_arrays(train, config, progress=progress)
    held_out = labeled_arrays(test, config, progress=progress)
    if len(pool["ids"]) <= seed_size:
        raise InputError(
            f"{train}: {len(pool['ids'])} labeled rows, need more than the seed set ({seed_size})"
        )
    if len(held_out["ids"]) == 0:
        raise InputError(f"{test}: no labeled rows to evaluate on")
    if stopping and allocation is None:
        raise InputError("--stopping is per language: give --allocation too")
    if stopping and two_stage_shards is not None:
        raise InputError(
            "--stopping and --two-stage-shards each compare against a run of their own: pick one"
        )

    def run(rule: StoppingRule | None, shards: int | None = None) -> dict:
        return simulate(
            pool["vectors"],
            pool["labels"],
            pool["languages"],
            held_out["vectors"],
            held_out["labels"],
            held_out["languages"],
            strategies=strategies,
            rounds=rounds,
            batch_size=batch_size,
            seed_size=seed_size,
            n_seeds=seeds,
            pool_ids=pool["ids"].tolist(),
            allocation=allocation,
            strategy_params={
                name: {"max_similarity": max_similarity_for(config)} for name in strategies
            },
            seed=config.selection.seed,
            progress=progress,
            stopping=rule,
            stop_set_size=config.selection.stopping.stop_set_size,
            two_stage_shards=shards,
        )

    if stopping:
        from curation.stop_set import stopping_rule

        rule = stopping_rule(config)
        without = run(None)
        results = run(rule)
        results["stopping"] = {
            "rule": repr(rule),
            "per_strategy": {
                name: _stopping_comparison(without["strategies"][name], values)
                for name, values in results["strategies"].items()
            },
        }
    elif two_stage_shards is not None:
        results = run(None)
        distributed = run(None, two_stage_shards)
        results["two_stage"] = {
            "shards": two_stage_shards,
            "per_strategy": {
                name: {
                    "aulc_local": values["aulc_macro_f1"],
                    "aulc_two_stage": distributed["strategies"][name]["aulc_macro_f1"],
                    "difference": distributed["strategies"][name]["aulc_macro_f1"]
                    - values["aulc_macro_f1"],
                }
                for name, values in results["strategies"].items()
            },
        }
    else:
        results = run(None)
    results["setup"] = {
        "train": str(train),
        "test": str(test),
        "pool_size": int(len(pool["ids"])),
        "test_size": int(len(held_out["ids"])),
        "model": config.embedding.model,
        "rounds": rounds,
        "batch_size": batch_size,
        "seed_size": seed_size,
        "seeds": seeds,
        "allocation": allocation,
        "stopping": stopping,
        "two_stage_shards": two_stage_shards,
        "config_hash": hashlib.sha256(
            json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()[:12],
    }
    return results


# -- nightly helpers ----------------------------------------------------------------------------


def _stopping_comparison(without: dict, with_stopping: dict) -> dict:
    """Means over seeds of the final point: labels bought, saved, and macro-F1 change."""
    pairs = list(zip(without["curves"], with_stopping["curves"], strict=True))
    labels_without = float(np.mean([a[-1]["labels"] for a, _ in pairs]))
    labels_with = float(np.mean([b[-1]["labels"] for _, b in pairs]))
    return {
        "labels_without": labels_without,
        "labels_with": labels_with,
        "labels_saved": labels_without - labels_with,
        "macro_f1_without": float(np.mean([a[-1]["macro_f1"] for a, _ in pairs])),
        "macro_f1_with": float(np.mean([b[-1]["macro_f1"] for _, b in pairs])),
        "macro_f1_change": float(
            np.mean([b[-1]["macro_f1"] - a[-1]["macro_f1"] for a, b in pairs])
        ),
        "stopped_at": with_stopping["stopped_at"],
    }


def pending_per_language(store: Store) -> dict[str, int]:
    """Selected (any round) or pushed examples that have no label yet, per language."""
    rows = store.conn.execute(
        "SELECT e.language, COUNT(DISTINCT e.id) FROM examples e "
        "LEFT JOIN labels l ON l.example_id = e.id "
        "WHERE l.example_id IS NULL AND (e.id IN (SELECT example_id FROM round_items) "
        "OR e.id IN (SELECT example_id FROM tasks)) GROUP BY e.language"
    ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


def evaluate_proxy(
    store: Store, config: Config, pool: PoolArrays | None = None, *, seed: int | None = None
) -> dict | None:
    """Cross-validated per-language macro-F1 of the logistic-regression proxy on all labels.

    When an evaluation of the same labeled set (same fingerprint) is already stored, it is
    returned with ``reused_evaluation`` = its id instead of being computed again.
    """
    pool = load_pool(store, config) if pool is None else pool
    labeled = pool.labeled
    if labeled.sum() < MIN_LABELS_FOR_F1:
        return None
    seed = config.selection.seed if seed is None else seed
    fingerprint = labels_fingerprint(pool, config, seed)
    stored = _stored_evaluation(store, fingerprint)
    if stored is not None:
        return stored
    # Memoized per labeled set: calibration and the label review reuse these predictions.
    oof = labeled_out_of_fold(pool, config, store.label_names(), seed=seed)
    if oof is None:
        return None
    per_language = _per_language_f1(
        oof.probabilities, oof.labels, oof.languages, list(oof.label_names)
    )
    if not per_language:
        return None
    values = list(per_language.values())
    return {
        "model": PROXY_MODEL,
        "labels": int(labeled.sum()),
        "mean_macro_f1": round(sum(values) / len(values), 4),
        "worst_language_f1": round(min(values), 4),
        "worst_language": min(per_language, key=per_language.get),
        "per_language": {k: round(v, 4) for k, v in sorted(per_language.items())},
        "fingerprint": fingerprint,
        "reused_evaluation": None,
    }
