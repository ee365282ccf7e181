"""Two-stage selection quality: AULC of `curate simulate` local vs through the Ray engine's path.

Issue 14 asks that the distributed selection's AULC be within 0.005 of the local one on a pool
where both fit. ``simulate(two_stage_shards=n)`` runs every query the way ``[engine] kind = "ray"``
does (contiguous shards of the unlabeled rows in pool order, each keeping
``per_language_plan`` candidates; the ordinary per-language selection on their union, with the
full pool's sizes and mean uncertainty for the allocation), in this one process -- no Ray.

Pool: UMSAB train (8 languages x 1,839, in file order: sorted by language, so 8 contiguous shards
are nearly one language each); test: UMSAB validation. Vectors: multilingual-e5-small from the
`curate simulate` cache under ``--store`` (read, never re-embedded when present). The same seed
sets and per-round generators are used for local and two-stage, so the differences are paired.

Variants: ``margin`` (provably identical), ``default`` (hybrid) as shipped (``max_reference``
20,000: a shard's language part fits in its prefilter plus its reference slice, so every language
is kept whole), and ``default`` with a small ``max_reference`` (``--max-reference``) so that
each shard keeps only ``candidate_factor * batch`` rows by margin plus a uniform slice and the
union really is a sample. The local run also has that last variant under a second name (
``... (other rng)``): the same seed sets, other per-round generators -- the single machine's own
run-to-run spread, against which the two-stage difference is read.

    OMP_NUM_THREADS=1 python benchmarks/two_stage_aulc.py \\
        --data-dir /work/shared/data/umsab --store /work/e5cache/store
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.selection_umsab import embeddings  # noqa: E402
from selection.base import QueryStrategy  # noqa: E402
from selection.registry import get_strategy  # noqa: E402
from selection.simulation import simulate  # noqa: E402

OTHER_RNG = " (other rng)"


def recording(name: str, **params: Any) -> QueryStrategy:
    """The registry strategy ``name`` (with ``params``) that also counts the rows it selects
    from (in ``_finish``, the last step of every selection, two_stage_select's per-language
    hybrid included): how much the union shrank the pool the strategy sees."""
    base = type(get_strategy(name))

    class Recording(base):  # type: ignore[misc, valid-type]
        seen: list[int]

        def _finish(self, pool, budget, ranking):  # type: ignore[no-untyped-def]
            self.seen.append(pool.size)
            return super()._finish(pool, budget, ranking)

    strategy = Recording(**params)
    strategy.seen = []
    return strategy


def summarize(
    runs: dict[str, dict[str, Any]], *, target: float
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Per two-stage setting and strategy: the seeds' AULC, local and two-stage (median, and
    mean: what `curate simulate` reports as ``aulc_macro_f1``), the paired differences
    (two-stage minus local, same seed), and the local run-to-run spread."""
    local = runs["local"]["strategies"]
    table = []
    for label, run in runs.items():
        if label == "local":
            continue
        for name, values in run["strategies"].items():
            a = np.asarray(local[name]["aulc_per_seed"])
            b = np.asarray(values["aulc_per_seed"])
            diff = b - a
            table.append(
                {
                    "strategy": name,
                    "shards": int(label.split()[1]),
                    "aulc_local_median": float(np.median(a)),
                    "aulc_two_stage_median": float(np.median(b)),
                    "aulc_local_mean": float(a.mean()),
                    "aulc_two_stage_mean": float(b.mean()),
                    "diff_median": float(np.median(diff)),
                    "diff_mean": float(diff.mean()),
                    "diff_min": float(diff.min()),
                    "diff_max": float(diff.max()),
                    "identical_seeds": int((diff == 0).sum()),
                    "seeds_two_stage_higher": int((diff > 0).sum()),
                    "seeds": len(diff),
                    "rows_seen_local": local[name]["mean_rows_seen_per_call"],
                    "rows_seen_two_stage": values["mean_rows_seen_per_call"],
                    "within_target": bool(abs(float(np.median(diff))) <= target),
                }
            )
    noise = None
    for name in local:
        if name.endswith(OTHER_RNG):
            a = np.asarray(local[name.removesuffix(OTHER_RNG)]["aulc_per_seed"])
            b = np.asarray(local[name]["aulc_per_seed"])
            noise = {
                "what": f"local {name!r} minus local {name.removesuffix(OTHER_RNG)!r}: the "
                "same strategy and seed sets, other per-round generators",
                "diff_median": float(np.median(b - a)),
                "diff_mean": float((b - a).mean()),
                "diff_min": float((b - a).min()),
                "diff_max": float((b - a).max()),
                "abs_diff_median": float(np.median(np.abs(b - a))),
            }
    return table, noise


def show(table: list[dict[str, Any]], noise: dict[str, Any] | None) -> None:
    for row in table:
        print(
            f"{row['strategy']:<28} {row['shards']:>3} shards  AULC median "
            f"{row['aulc_local_median']:.4f} -> {row['aulc_two_stage_median']:.4f}, mean "
            f"{row['aulc_local_mean']:.4f} -> {row['aulc_two_stage_mean']:.4f}  paired diff "
            f"{row['diff_median']:+.4f} [{row['diff_min']:+.4f}, {row['diff_max']:+.4f}]"
            f"  rows seen {row['rows_seen_local']:.0f} -> {row['rows_seen_two_stage']:.0f}"
            f"  {'OK' if row['within_target'] else 'MISSED'}"
        )
    if noise is not None:
        print(
            f"local, other rng: diff {noise['diff_median']:+.4f} "
            f"[{noise['diff_min']:+.4f}, {noise['diff_max']:+.4f}], mean {noise['diff_mean']:+.4f}"
            f", median |diff| {noise['abs_diff_median']:.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/umsab"))
    parser.add_argument("--store", type=Path, default=Path("/tmp/umsab_store"))
    parser.add_argument("--model", default="multilingual-e5-small")
    parser.add_argument("--shards", type=int, nargs="+", default=[8])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--allocation",
        default="need",
        help='"need" (as `curate select`), "equal", "proportional", or "none": no allocation, '
        "the union goes to two_stage_select (hybrid then balances languages itself, with the "
        "shards' uniform sample as a sampled language's coverage reference)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="run only these variants (names as in the table); default all",
    )
    parser.add_argument("--max-reference", type=int, default=500)
    parser.add_argument("--target", type=float, default=0.005)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/two_stage_aulc.json"))
    parser.add_argument(
        "--summarize-only",
        action="store_true",
        help="recompute the table of an existing --out from its per-seed runs; simulate nothing",
    )
    args = parser.parse_args()
    if args.summarize_only:
        report = json.loads(args.out.read_text(encoding="utf-8"))
        table, noise = summarize(report["runs"], target=report["settings"]["target"])
        report.update(table=table, local_rng_spread=noise)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        show(table, noise)
        return

    _, y, lang, X = embeddings(args.data_dir / "train.jsonl", args.model, args.store)
    _, yt, lt, Xt = embeddings(args.data_dir / "validation.jsonl", args.model, args.store)
    variants: dict[str, tuple[str, dict[str, Any]]] = {
        "margin": ("margin", {}),
        "default": ("default", {}),
        f"default, max_reference={args.max_reference}": (
            "default",
            {"max_reference": args.max_reference},
        ),
    }
    if args.variants:
        unknown = sorted(set(args.variants) - set(variants))
        if unknown:
            parser.error(f"unknown variants {unknown}; valid: {sorted(variants)}")
        variants = {name: variants[name] for name in args.variants}
    allocation = None if args.allocation == "none" else args.allocation
    sampled = f"default, max_reference={args.max_reference}"
    # simulate derives each round's generator from the strategy's name: a second name is a
    # second draw of the same strategy on the same seed sets
    other_rng = f"{sampled}{OTHER_RNG}"
    started = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    for shards in [None, *args.shards]:
        label = "local" if shards is None else f"two-stage, {shards} shards"
        names = dict(variants)
        if shards is None and sampled in variants:
            names[other_rng] = variants[sampled]
        strategies = {
            name: recording(registry_name, **params)
            for name, (registry_name, params) in names.items()
        }
        t = time.perf_counter()
        result = simulate(
            X,
            y,
            lang,
            Xt,
            yt,
            lt,
            strategies=list(strategies.items()),
            rounds=args.rounds,
            batch_size=args.batch_size,
            seed_size=args.seed_size,
            n_seeds=args.seeds,
            allocation=allocation,
            progress=True,
            two_stage_shards=shards,
        )
        seconds = round(time.perf_counter() - t, 1)
        runs[label] = {
            "seconds": seconds,
            "strategies": {
                name: {
                    "aulc_per_seed": [
                        float(np.mean([p["macro_f1"] for p in curve]))
                        for curve in result["strategies"][name]["curves"]
                    ],
                    "final_macro_f1_per_seed": [
                        curve[-1]["macro_f1"] for curve in result["strategies"][name]["curves"]
                    ],
                    "mean_rows_seen_per_call": float(np.mean(strategies[name].seen)),
                }
                for name in names
            },
        }
        print(f"[{label}] {seconds}s", file=sys.stderr)

    table, noise = summarize(runs, target=args.target)
    report = {
        "pool": f"UMSAB train ({len(y)} rows, file order)",
        "test": f"UMSAB validation ({len(yt)} rows)",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "variants": {name: {"strategy": s, "params": p} for name, (s, p) in variants.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started, 1),
        "table": table,
        "local_rng_spread": noise,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    show(table, noise)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
