"""Two-stage selection from 10M synthetic vectors, shard by shard (selection/two_stage.py).

The pool (clustered unit vectors, 500 topics, 8 languages, Dirichlet 3-class probabilities) is
generated shard by shard from a seeded generator, so the 10M rows never sit in memory at once:
each shard is generated, reduced to its candidates and dropped, as a worker would. Steps, each
timed:

1. stats pass: per shard, per-language counts, mean uncertainty and best scores (probabilities
   only -- what the scoring pass yields anyway); merged on the driver; a plan per strategy;
2. candidate pass: per shard, :func:`shard_candidates` for ``margin`` and for the default
   ``hybrid`` (1,000 labeled examples given: warm stage);
3. driver: :func:`merge_candidates` and :func:`two_stage_select` for a budget of 2,000.

A second child process runs a 500k pool (8 shards of 62.5k) where the single-machine ``select``
also fits: time and peak memory of both paths, and their agreement (identical ids for margin;
for hybrid the overlap of ids, next to the overlap between two seeds of the single machine, and
the mean margin of the picks). Each measurement runs in a fresh child so its peak RSS is its own.

    OMP_NUM_THREADS=1 python benchmarks/two_stage_10m.py            # 10M x 64, 40 shards
    OMP_NUM_THREADS=1 python benchmarks/two_stage_10m.py --n 1000000 --shards 4   # quick

Writes ``benchmarks/results/two_stage_10m.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LANGS = np.array(["ar", "de", "en", "es", "fr", "hi", "it", "pt"], dtype=object)
N_TOPICS = 500


def topic_centres(dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 999]).normal(size=(N_TOPICS, dim)).astype(np.float32)


def shard_probs(index: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and languages of one shard (their own stream: the stats pass needs no
    vectors)."""
    rng = np.random.default_rng([seed, index, 0])
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=size)
    languages = LANGS[rng.integers(0, len(LANGS), size)]
    return probs, languages


def shard_vectors(index: int, size: int, centres: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, index, 1])
    x = centres[rng.integers(0, len(centres), size)]
    x += 1.5 * rng.standard_normal(x.shape, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def labeled_vectors(centres: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 777])
    x = centres[rng.integers(0, len(centres), n)]
    x += 1.5 * rng.standard_normal(x.shape, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def strategies() -> dict[str, Any]:
    from selection.registry import get_strategy

    return {"margin": get_strategy("margin"), "hybrid": get_strategy("default")}


def run_two_stage(args: argparse.Namespace, *, keep_pool: bool = False) -> dict[str, Any]:
    """The shard-by-shard path. ``keep_pool`` also returns the shards (for the comparison)."""
    from selection.two_stage import (
        LanguageStats,
        language_stats,
        merge_candidates,
        plan_shards,
        score_function_for,
        shard_candidates,
        stats_top_k,
        two_stage_select,
    )

    centres = topic_centres(args.dim, args.seed)
    labeled = labeled_vectors(centres, args.labeled, args.seed)
    strats = strategies()
    shard_size = args.n // args.shards
    out: dict[str, Any] = {"n": shard_size * args.shards, "shards": args.shards}

    # 1. stats pass (probabilities only); margin and hybrid rank by the same score
    top_k = max(stats_top_k(s, args.budget) for s in strats.values())
    t0 = time.perf_counter()
    parts = []
    for i in range(args.shards):
        probs, languages = shard_probs(i, shard_size, args.seed)
        score = score_function_for(strats["hybrid"])
        parts.append(
            language_stats(
                languages, probs=probs, n_rows=shard_size, strategy_score=score, top_k=top_k
            )
        )
    stats = LanguageStats.merge(parts)
    plans = {
        name: plan_shards(s, args.budget, stats=stats, n_shards=args.shards)
        for name, s in strats.items()
    }
    out["stats_pass_s"] = time.perf_counter() - t0
    out["stats_top_k"] = top_k

    # 2. candidate pass (vectors generated here: a worker reading its shard)
    candidates: dict[str, list] = {name: [] for name in strats}
    pool: list[tuple[np.ndarray, ...]] = []
    generate_s = 0.0
    shard_s = dict.fromkeys(strats, 0.0)
    rng = np.random.default_rng([args.seed, 5])
    for i in range(args.shards):
        t = time.perf_counter()
        probs, languages = shard_probs(i, shard_size, args.seed)
        x = shard_vectors(i, shard_size, centres, args.seed)
        ids = np.arange(i * shard_size, (i + 1) * shard_size)
        generate_s += time.perf_counter() - t
        for name, plan in plans.items():
            t = time.perf_counter()
            candidates[name].append(
                shard_candidates(
                    ids,
                    probs=probs,
                    embeddings=x,
                    languages=languages,
                    rng=rng,
                    labeled_embeddings=labeled,
                    **plan.kwargs(),
                )
            )
            shard_s[name] += time.perf_counter() - t
        if keep_pool:
            pool.append((ids, probs, x, languages))
        del probs, x, languages
    out["generate_s"] = generate_s
    out["rss_after_shards_mib"] = peak_rss_mib()

    # 3. driver
    selections = {}
    for name, s in strats.items():
        tracemalloc.start()
        t = time.perf_counter()
        union = merge_candidates(candidates[name])
        merge_s = time.perf_counter() - t
        t = time.perf_counter()
        sel = two_stage_select(
            union, s, args.budget, labeled_embeddings=labeled, rng=np.random.default_rng(args.seed)
        )
        select_s = time.perf_counter() - t
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        selections[name] = sel
        out[name] = {
            "plan": {k: v for k, v in plans[name].kwargs().items() if k != "strategy_score"},
            "shard_candidates_s_total": shard_s[name],
            "shard_candidates_s_per_shard": shard_s[name] / args.shards,
            "candidates_kept": len(union),
            "candidates_per_language": union.counts(),
            "candidates_mib": (
                union.embeddings.nbytes + union.probs.nbytes  # type: ignore[union-attr]
            )
            / 2**20,
            "merge_s": merge_s,
            "driver_select_s": select_s,
            "driver_traced_peak_mib": traced_peak / 2**20,
            "selected": len(sel),
            "shortfall": sel.shortfall,
            "skipped_near_duplicates": sel.skipped_near_duplicates,
        }
        del union
    out["peak_rss_mib"] = peak_rss_mib()
    if keep_pool:
        out["_selections"] = selections
        out["_pool"] = pool
        out["_labeled"] = labeled
    return out


def run_compare(args: argparse.Namespace) -> dict[str, Any]:
    """The same generator at a size where the single machine fits: both paths, agreement."""
    out = run_two_stage(args, keep_pool=True)
    pool, labeled, two = out.pop("_pool"), out.pop("_labeled"), out.pop("_selections")
    ids = np.concatenate([p[0] for p in pool])
    probs = np.concatenate([p[1] for p in pool])
    x = np.concatenate([p[2] for p in pool])
    languages = np.concatenate([p[3] for p in pool])
    del pool
    from selection.uncertainty import margins

    for name, s in strategies().items():
        tracemalloc.start()
        t = time.perf_counter()
        one = s.select(
            ids,
            args.budget,
            probs=probs,
            embeddings=x,
            languages=languages,
            labeled_embeddings=labeled,
            rng=np.random.default_rng(args.seed),
        )
        one_s = time.perf_counter() - t
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        got = two[name]
        res = out[name]
        res["single_select_s"] = one_s
        res["single_traced_peak_mib"] = traced_peak / 2**20
        res["pool_mib"] = (x.nbytes + probs.nbytes) / 2**20
        res["identical_ids"] = got.ids == one.ids
        res["overlap_with_single"] = len(set(got.ids) & set(one.ids)) / args.budget
        res["mean_margin_two_stage"] = float(margins(probs[list(got.ids)]).mean())
        res["mean_margin_single"] = float(margins(probs[list(one.ids)]).mean())
        if name == "hybrid":
            other = s.select(
                ids,
                args.budget,
                probs=probs,
                embeddings=x,
                languages=languages,
                labeled_embeddings=labeled,
                rng=np.random.default_rng(args.seed + 1),
            )
            res["overlap_single_two_seeds"] = len(set(other.ids) & set(one.ids)) / args.budget
            res["mean_margin_single_other_seed"] = float(margins(probs[list(other.ids)]).mean())
            res["languages_two_stage"] = _per_language(got.ids, ids, languages)
            res["languages_single"] = _per_language(one.ids, ids, languages)
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def _per_language(chosen: tuple, ids: np.ndarray, languages: np.ndarray) -> dict[str, int]:
    rows = np.searchsorted(ids, np.asarray(chosen))
    codes, counts = np.unique(languages[rows], return_counts=True)
    return {str(c): int(k) for c, k in zip(codes, counts, strict=True)}


def child_main(args: argparse.Namespace) -> None:
    t = time.perf_counter()
    res = run_compare(args) if args.mode == "compare" else run_two_stage(args)
    res["wall_s"] = time.perf_counter() - t
    print(json.dumps(res, default=float))


def spawn(mode: str, n: int, shards: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--mode",
        mode,
        "--n",
        str(n),
        "--shards",
        str(shards),
        "--dim",
        str(args.dim),
        "--budget",
        str(args.budget),
        "--labeled",
        str(args.labeled),
        "--seed",
        str(args.seed),
    ]
    print("running", " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=40)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--labeled", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare-n", type=int, default=500_000)
    ap.add_argument("--compare-shards", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="ten_m", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
        return
    result: dict[str, Any] = {
        "command": "OMP_NUM_THREADS="
        + os.environ.get("OMP_NUM_THREADS", "")
        + " python benchmarks/two_stage_10m.py "
        + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "note": "2-core VM shared with other jobs; one process, OMP_NUM_THREADS=1",
        },
        "settings": {
            "dim": args.dim,
            "budget": args.budget,
            "labeled": args.labeled,
            "languages": len(LANGS),
            "seed": args.seed,
        },
    }
    result["compare"] = spawn("compare", args.compare_n, args.compare_shards, args)
    result["two_stage"] = spawn("ten_m", args.n, args.shards, args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("two_stage_10m.json" if args.n == 10_000_000 else f"two_stage_{args.n}.json")
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps(result, indent=2, default=float))
    print("wrote", path)


if __name__ == "__main__":
    main()
