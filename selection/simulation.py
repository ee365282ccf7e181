"""Pure pool-based active-learning simulation (used by ``curate simulate``).

The caller loads data and embeddings; this module only runs the loop:

for each seed k: draw the same random seed set for every strategy; then for each strategy and
round: fit the proxy on the labeled set, evaluate on the test split (macro-F1 overall, per
language, worst language), ask the strategy for ``batch_size`` more ids, reveal their labels.
AULC is the mean macro-F1 over the ``rounds + 1`` evaluation points (seed set included),
averaged over seeds.

With ``two_stage_shards`` every query goes through the two-stage path of the Ray engine
(``[engine] kind = "ray"``, curation.ray_engine.distributed_pool feeding
curation.pipeline.select_round), run here in one process: the unlabeled rows are split into
contiguous shards in pool order, each keeps its local candidates
(:func:`selection.two_stage.shard_candidates` with :func:`selection.two_stage.per_language_plan`),
and the ordinary selection runs on their union, with the full unlabeled pool's per-language sizes
and mean uncertainty for the allocation. Comparing its AULC with the local run's measures what the
two-stage approximation costs.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from selection.allocation import allocate
from selection.base import QueryStrategy
from selection.hybrid import Hybrid
from selection.proxy import LogisticProxy, ProbabilityModel
from selection.stopping import LanguageHistory, StoppingRule
from selection.uncertainty import margin_scores

if TYPE_CHECKING:
    from selection.two_stage import Candidates

__all__ = ["evaluate", "plot_curves", "simulate"]

StrategySpec = str | tuple[str, QueryStrategy]


def _stable_hash(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def evaluate(
    model: ProbabilityModel,
    X: np.ndarray,
    y: Sequence[Any],
    languages: Sequence[str],
) -> dict[str, Any]:
    """Macro-F1 overall and per language, plus the worst language's macro-F1.

    A language's macro-F1 averages over the classes that occur in its test rows: in a task
    whose classes are language-specific (intents of one market, language-tagged labels), a
    class a language never has would otherwise count as an F1 of 0 there."""
    from sklearn.metrics import f1_score

    classes = list(model.classes_)
    proba = model.predict_proba(X)
    pred = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    y_arr = np.asarray([str(v) for v in y], dtype=object)
    langs = np.asarray(languages, dtype=object)

    def f1(mask: np.ndarray | slice, labels: list[str]) -> float:
        return float(
            f1_score(y_arr[mask], pred[mask], labels=labels, average="macro", zero_division=0)
        )

    per_language = {}
    for lang in sorted(set(langs.tolist())):
        mask = langs == lang
        present = [c for c in classes if c in set(y_arr[mask].tolist())]
        per_language[str(lang)] = f1(mask, present or classes)
    return {
        "macro_f1": f1(slice(None), classes),
        "per_language": per_language,
        "worst_language_f1": min(per_language.values()) if per_language else float("nan"),
    }


def simulate(
    pool_embeddings: np.ndarray,
    pool_labels: Sequence[Any],
    pool_languages: Sequence[str],
    test_embeddings: np.ndarray,
    test_labels: Sequence[Any],
    test_languages: Sequence[str],
    *,
    strategies: Sequence[StrategySpec],
    rounds: int = 10,
    batch_size: int = 100,
    seed_size: int = 100,
    n_seeds: int = 5,
    pool_ids: Sequence[Hashable] | None = None,
    allocation: str | None = None,
    allocation_params: Mapping[str, Any] | None = None,
    strategy_params: Mapping[str, Mapping[str, Any]] | None = None,
    model_factory: Callable[[Sequence[str]], ProbabilityModel] | None = None,
    seed: int = 0,
    progress: bool = True,
    stopping: StoppingRule | None = None,
    stop_set_size: int = 200,
    two_stage_shards: int | None = None,
) -> dict[str, Any]:
    """Run the simulation; see the module docstring.

    Args:
        strategies: registry names as given (``"default"`` stays ``"default"`` as a key), or
            ``(name, QueryStrategy)`` pairs for custom/baseline strategies.
        rounds: number of query rounds R (R + 1 evaluation points).
        batch_size: labels bought per round B.
        seed_size: random seed set size S (identical for all strategies within a seed).
        n_seeds: number of seeds K.
        pool_ids: ids of the pool rows (default: row numbers).
        allocation: None, or an allocation method (``equal``/``proportional``/``need``) to split
            each round's batch over languages before calling the strategy per language.
        allocation_params: extra keyword arguments for :func:`selection.allocation.allocate`.
        strategy_params: per-name constructor parameters for registry strategies.
        model_factory: ``labels -> ProbabilityModel``; default :class:`LogisticProxy`.
        seed: base seed; seed k uses ``numpy.random.default_rng([seed, k])``.
        progress: show a tqdm bar on stderr.
        stopping: per-language stopping (needs ``allocation``): each language gets a stop set
            of ``stop_set_size`` pool rows (seeded, outside the seed set), every round's model
            predicts it, and ``stopping.decide`` runs on those histories before each query;
            stopped languages go to the allocator as ``stopped`` (with
            ``allocation_params["redistribute_stopped"]``, default False: their share is not
            bought). The simulation gives the rule no validation curve -- the test split must
            not steer the run -- so a language stops on stable predictions plus
            ``stopping.min_labels``.
        two_stage_shards: None (default): each query sees the whole unlabeled pool. An int
            ``n >= 1``: each query is the Ray engine's two-stage selection over ``n`` contiguous
            shards of the unlabeled rows (see the module docstring); with ``allocation`` None the
            union goes to :func:`selection.two_stage.two_stage_select`.

    Returns:
        ``{"strategies": {name: {"aulc_macro_f1", "curves"}}, "full_pool": {...}}``; with
        ``stopping``, each strategy also has ``"stopped_at"``: per seed, language -> the
        round it stopped in; with ``two_stage_shards``, ``"settings": {"two_stage_shards": n}``.
    """
    from selection.registry import get_strategy

    X = np.ascontiguousarray(pool_embeddings, dtype="float32")
    y = np.asarray([str(v) for v in pool_labels], dtype=object)
    langs = np.asarray(pool_languages, dtype=object)
    Xt = np.ascontiguousarray(test_embeddings, dtype="float32")
    n = X.shape[0]
    if not (len(y) == len(langs) == n) or X.ndim != 2:
        raise ValueError("pool embeddings, labels and languages must have the same length")
    if not (len(test_labels) == len(test_languages) == Xt.shape[0]):
        raise ValueError("test embeddings, labels and languages must have the same length")
    if seed_size < 1 or seed_size > n:
        raise ValueError(f"seed_size must be in [1, {n}]")
    if rounds < 0 or batch_size < 1 or n_seeds < 1:
        raise ValueError("rounds >= 0, batch_size >= 1 and n_seeds >= 1 are required")
    if stopping is not None and allocation is None:
        raise ValueError("stopping is per language: give an allocation method too")
    if two_stage_shards is not None and (
        isinstance(two_stage_shards, bool)
        or not isinstance(two_stage_shards, (int, np.integer))
        or two_stage_shards < 1
    ):
        raise ValueError(f"two_stage_shards must be None or an int >= 1, got {two_stage_shards!r}")
    ids = list(range(n)) if pool_ids is None else list(pool_ids)
    if len(ids) != n:
        raise ValueError("pool_ids must have one id per pool row")
    labels = sorted(set(y.tolist()) | {str(v) for v in test_labels})
    factory = model_factory or (lambda lab: LogisticProxy(lab))

    resolved: list[tuple[str, QueryStrategy]] = []
    for spec in strategies:
        if isinstance(spec, tuple):
            resolved.append(spec)
        else:
            params = dict((strategy_params or {}).get(spec, {}))
            resolved.append((spec, get_strategy(spec, **params)))
    names = [name for name, _ in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy names must be unique, got {names}")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=n_seeds * len(resolved) * rounds,
            desc="simulate",
            unit=" rounds",
            file=sys.stderr,
        )

    curves: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in names}
    stopped_at: dict[str, list[dict[str, int]]] = {name: [] for name in names}
    for k in range(n_seeds):
        seed_rng = np.random.default_rng([seed, k])
        seed_set = np.sort(seed_rng.choice(n, size=seed_size, replace=False))
        stop_sets = _stop_sets(langs, seed_set, stop_set_size, seed_rng) if stopping else {}
        for name, strategy in resolved:
            labeled = np.zeros(n, dtype=bool)
            labeled[seed_set] = True
            curve: list[dict[str, Any]] = []
            history: dict[str, tuple[list, list]] = {c: ([], []) for c in stop_sets}
            stopped: dict[str, str] = {}
            stops: dict[str, int] = {}
            if bar is not None:
                bar.set_postfix_str(f"seed {k + 1}/{n_seeds}, {name}", refresh=False)
            for r in range(rounds + 1):
                model = factory(labels)
                lab_idx = np.flatnonzero(labeled)
                model.fit(X[lab_idx], y[lab_idx])
                point = evaluate(model, Xt, test_labels, test_languages)
                curve.append({"labels": int(labeled.sum()), **point})
                if r == rounds:
                    break
                if stopping is not None:
                    classes = np.asarray(model.classes_, dtype=object)
                    for code, rows in stop_sets.items():
                        predictions, counts = history[code]
                        predictions.append(classes[model.predict_proba(X[rows]).argmax(axis=1)])
                        counts.append(int((labeled & (langs == code)).sum()))
                    decisions = stopping.decide(
                        {c: LanguageHistory(p, n_) for c, (p, n_) in history.items()}
                    )
                    for code, decision in decisions.items():
                        if decision.stopped and code not in stopped:
                            stopped[code] = decision.reason
                            stops[code] = r
                unl = np.flatnonzero(~labeled)
                if len(unl) == 0:
                    if bar is not None:
                        bar.update(1)
                    continue
                rng = np.random.default_rng([seed, k, r, _stable_hash(name)])
                probs = model.predict_proba(X[unl])
                params = dict(allocation_params or {})
                if stopped:
                    params = {"redistribute_stopped": False, **params, "stopped": stopped}
                chosen = _query(
                    strategy,
                    unl,
                    probs,
                    X,
                    langs,
                    lab_idx,
                    batch_size,
                    rng,
                    allocation,
                    params,
                    two_stage_shards=two_stage_shards,
                )
                labeled[chosen] = True
                if bar is not None:
                    bar.update(1)
            curves[name].append(curve)
            stopped_at[name].append(stops)
    if bar is not None:
        bar.close()

    full = factory(labels)
    full.fit(X, y)
    full_eval = evaluate(full, Xt, test_labels, test_languages)
    result: dict[str, Any] = {
        "strategies": {
            name: {
                "aulc_macro_f1": float(
                    np.mean([np.mean([p["macro_f1"] for p in c]) for c in curves[name]])
                ),
                "curves": curves[name],
                **({"stopped_at": stopped_at[name]} if stopping is not None else {}),
            }
            for name in names
        },
        "full_pool": {
            "macro_f1": full_eval["macro_f1"],
            "per_language": full_eval["per_language"],
        },
    }
    if two_stage_shards is not None:
        result["settings"] = {"two_stage_shards": int(two_stage_shards)}
    return result


def _stop_sets(
    langs: np.ndarray, seed_set: np.ndarray, size: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per language, a fixed sample of pool rows outside the seed set."""
    outside = np.ones(len(langs), dtype=bool)
    outside[seed_set] = False
    sets = {}
    for code in sorted(set(langs.tolist())):
        rows = np.flatnonzero(outside & (langs == code))
        if len(rows):
            sets[str(code)] = np.sort(rng.choice(rows, size=min(size, len(rows)), replace=False))
    return sets


def _query(
    strategy: QueryStrategy,
    unl: np.ndarray,
    probs: np.ndarray,
    X: np.ndarray,
    langs: np.ndarray,
    lab_idx: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    allocation: str | None,
    allocation_params: Mapping[str, Any] | None,
    *,
    two_stage_shards: int | None = None,
) -> np.ndarray:
    """One query; returns pool row numbers to label.

    With ``two_stage_shards`` the strategy sees only the union of the shards' candidates
    (:func:`_two_stage_union`), and the allocation the full unlabeled pool's sizes and mean
    uncertainty (the shards' :class:`selection.two_stage.LanguageStats`), as
    curation.pipeline.select_round does with the Ray engine."""
    lab_emb = X[lab_idx]
    union = None
    if two_stage_shards is not None:
        union = _two_stage_union(strategy, unl, probs, X, langs, batch_size, rng, two_stage_shards)
    if allocation is None:
        if union is not None:
            from selection.two_stage import two_stage_select

            sel = two_stage_select(union, strategy, batch_size, labeled_embeddings=lab_emb, rng=rng)
            return np.asarray(sel.ids, dtype=np.int64)
        sel = strategy.select(
            unl,
            batch_size,
            probs=probs,
            embeddings=X[unl],
            labeled_embeddings=lab_emb,
            languages=langs[unl],
            rng=rng,
        )
        return np.asarray(sel.ids, dtype=np.int64)
    if union is None:
        rows, row_probs = unl, probs
        row_langs = langs[unl]
        codes = sorted(set(row_langs.tolist()))
        pool_sizes = {c: int((row_langs == c).sum()) for c in codes}
        unc = margin_scores(probs)
        uncertainty = {c: float(unc[row_langs == c].mean()) for c in codes}
    else:
        # the candidates are the union; the allocation sees the whole unlabeled pool, whose
        # proportions and uncertainties the shards' top-k filter would skew
        rows, row_probs = np.asarray(union.ids, dtype=np.int64), union.probs
        assert row_probs is not None
        row_langs = union.languages
        codes = sorted(union.stats.rows)
        pool_sizes = dict(union.stats.rows)
        uncertainty = union.stats.mean_uncertainty()
    labeled_counts = {c: int((langs[lab_idx] == c).sum()) for c in codes}
    alloc = allocate(
        batch_size,
        pool_sizes,
        method=allocation,
        uncertainty=uncertainty,
        labeled_counts=labeled_counts,
        **dict(allocation_params or {}),
    )
    chosen: list[int] = []
    for c in codes:
        b = alloc.per_language[c]
        if b < 1:
            continue
        m = row_langs == c
        sub = rows[m]
        extra = {}
        if union is not None and isinstance(strategy, Hybrid) and m.sum() < pool_sizes[c]:
            # a sampled language: the shards' uniform sample is its coverage reference, as
            # select_round passes it with the Ray engine
            extra["reference"] = union.sampled[m]
        sel = strategy.select(
            sub,
            b,
            probs=row_probs[m],
            embeddings=X[sub],
            labeled_embeddings=lab_emb,
            languages=row_langs[m],
            rng=rng,
            **extra,
        )
        chosen.extend(int(i) for i in sel.ids)
    return np.asarray(chosen, dtype=np.int64)


def _two_stage_union(
    strategy: QueryStrategy,
    unl: np.ndarray,
    probs: np.ndarray,
    X: np.ndarray,
    langs: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    n_shards: int,
) -> Candidates:
    """The union of the candidates of ``n_shards`` contiguous shards of the unlabeled rows
    (:class:`selection.two_stage.Candidates`; ids are pool row numbers, in pool order).

    The per-shard settings are the Ray engine's (``per_language_plan`` for ``batch_size``,
    no control sample: the simulation draws none). Each shard gets a child generator spawned
    from the round's ``rng``; spawning leaves ``rng``'s own stream untouched, so the strategy
    afterwards draws exactly what it draws in the local run -- on a union that is the whole
    pool the two paths pick the same rows."""
    from selection.two_stage import merge_candidates, per_language_plan, shard_candidates

    plan = per_language_plan(
        strategy, batch_size, n_shards=n_shards, has_probs=True, control=0
    ).kwargs()
    shard_rngs = rng.spawn(n_shards)
    parts = []
    for positions, shard_rng in zip(
        np.array_split(np.arange(len(unl)), n_shards), shard_rngs, strict=True
    ):
        rows = unl[positions]
        parts.append(
            shard_candidates(
                rows,
                probs=probs[positions],
                embeddings=X[rows],
                languages=langs[rows],
                rng=shard_rng,
                **plan,
            )
        )
    return merge_candidates(parts)


def plot_curves(results: Mapping[str, Any], path: str | Path) -> Path:
    """Two panels (macro-F1 and worst-language F1 vs labels), one line per strategy (mean over
    seeds) with a min-max band. Writes a PNG (Agg canvas, no global backend change)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    panels = [("macro_f1", "macro-F1"), ("worst_language_f1", "worst-language macro-F1")]
    full = results.get("full_pool", {})
    palette = [tuple(c) for c in matplotlib.colormaps["tab20"].colors]  # 20 distinct colours
    for ax, (key, title) in zip(axes, panels, strict=True):
        for j, (name, res) in enumerate(results["strategies"].items()):
            curves = res["curves"]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            xs = np.mean([[p["labels"] for p in c[:length]] for c in curves], axis=0)
            ys = np.array([[p[key] for p in c[:length]] for c in curves])
            (line,) = ax.plot(
                xs,
                ys.mean(axis=0),
                marker="o",
                markersize=3,
                label=name,
                color=palette[(2 * j) % 20 + (2 * j) // 20 % 2],
                linewidth=2.2 if name in ("default", "hybrid") else 1.2,
            )
            ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), alpha=0.15, color=line.get_color())
        if key == "macro_f1" and "macro_f1" in full:
            ax.axhline(
                full["macro_f1"], color="black", linestyle="--", linewidth=1, label="full pool"
            )
        elif key == "worst_language_f1" and full.get("per_language"):
            ax.axhline(
                min(full["per_language"].values()),
                color="black",
                linestyle="--",
                linewidth=1,
                label="full pool",
            )
        ax.set_title(title)
        ax.set_xlabel("labels")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    return out
