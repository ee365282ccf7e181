"""Selection on the multilingual default (multilingual-e5-small), dev protocol, two tasks.

Neither task touches UMSAB's official validation split: each run holds out a seeded quarter of
the pool (per language for ``umsab``, per class for ``imbalanced``) as its test set, selects from
the rest, and pairs every strategy with random on the same seed set (``selection.simulation``).

Tasks:

* ``umsab`` — UMSAB train, 3 balanced sentiment classes, 8 languages of ~1,840 tweets each.
* ``imbalanced`` — a many-class task with uneven class and language sizes built from the same
  tweets: the label is ``language:sentiment`` (24 classes), language sizes fall as
  1/rank^0.8 from 1,800 (a seeded language order), and each language's three classes take
  Dirichlet(0.7) shares (at least 24 tweets each), so classes range from 24 to ~1,100 examples.
  Per-language macro-F1 averages over the classes that occur in that language.

The proxy is ``LogisticProxy`` with ``--C`` ("auto": chosen by cross-validation on every fit, as
``curate select`` and ``curate simulate`` do). Vectors come from the per-file cache of
``curate simulate`` in ``--store`` (embedded once per model).

    OMP_NUM_THREADS=1 python benchmarks/selection_dev_tasks.py --task umsab --splits 0 1 2 \
        --seeds 2 --strategies random default margin
    OMP_NUM_THREADS=1 python benchmarks/selection_dev_tasks.py --task imbalanced ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from selection_umsab import dev_test_mask as held_out  # noqa: E402  (a quarter of every group)

from selection.proxy import LogisticProxy  # noqa: E402
from selection.registry import get_strategy  # noqa: E402
from selection.simulation import simulate  # noqa: E402

HERE = Path(__file__).resolve().parent
UMSAB = HERE.parents[1] / "shared" / "data" / "umsab" / "train.jsonl"


def load(store: Path, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from curation.config import config_from_dict
    from curation.pipeline import labeled_arrays

    config = config_from_dict({"store": {"path": str(store)}, "embedding": {"model": model}})
    arrays = labeled_arrays(UMSAB, config, progress=True)
    return (
        arrays["vectors"],
        arrays["labels"].astype(object),
        arrays["languages"].astype(object),
    )


def imbalanced_task(
    y: np.ndarray, languages: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers and ``language:sentiment`` labels of the imbalanced many-class task."""
    keep: list[int] = []
    for rank, language in enumerate(rng.permutation(sorted(set(languages.tolist())))):
        total = int(1800 / (rank + 1) ** 0.8)
        shares = rng.dirichlet([0.7, 0.7, 0.7])
        for share, label in zip(shares, ["negative", "neutral", "positive"], strict=True):
            rows = np.flatnonzero((languages == language) & (y == label))
            n = max(24, min(len(rows), int(total * share)))
            keep.extend(rng.choice(rows, size=n, replace=False).tolist())
    rows = np.array(sorted(keep))
    labels = np.array([f"{a}:{b}" for a, b in zip(languages[rows], y[rows], strict=True)])
    return rows, labels.astype(object)


def parse_strategy(spec: str) -> Any:
    """``name`` or ``label=name{json params}``."""
    if "=" not in spec:
        return spec
    label, rest = spec.split("=", 1)
    name, _, params = rest.partition("{")
    return (label, get_strategy(name, **(json.loads("{" + params) if params else {})))


def summarize(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy: AULC median/mean over all runs, paired deltas against random."""
    names = list(parts[0]["strategies"])
    per_run = {
        name: [
            float(np.mean([p["macro_f1"] for p in curve]))
            for part in parts
            for curve in part["strategies"][name]["curves"]
        ]
        for name in names
    }
    worst = {
        name: [
            curve[-1]["worst_language_f1"]
            for part in parts
            for curve in part["strategies"][name]["curves"]
        ]
        for name in names
    }
    rows = []
    for name in names:
        aulc = np.array(per_run[name])
        row = {
            "strategy": name,
            "runs": len(aulc),
            "aulc_median": float(np.median(aulc)),
            "aulc_mean": float(aulc.mean()),
            "worst_language_f1_end_median": float(np.median(worst[name])),
        }
        if "random" in per_run:
            delta = aulc - np.array(per_run["random"])
            row |= {
                "delta_median": float(np.median(delta)),
                "delta_mean": float(delta.mean()),
                "delta_min": float(delta.min()),
                "delta_max": float(delta.max()),
                "wins": int((delta > 0).sum()),
                "worst_delta_median": float(
                    np.median(np.array(worst[name]) - np.array(worst["random"]))
                ),
            }
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=["umsab", "imbalanced"], default="umsab")
    ap.add_argument("--strategies", nargs="+", default=["random", "default", "margin"])
    ap.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed-size", type=int, default=100)
    ap.add_argument("--C", default="auto")
    ap.add_argument("--model", default="multilingual-e5-small")
    ap.add_argument("--store", type=Path, default=Path("/tmp/umsab_store"))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--prefix", default=None)
    args = ap.parse_args(argv)

    X, y, languages = load(args.store, args.model)
    strength = args.C if args.C == "auto" else float(args.C)
    specs = [parse_strategy(s) for s in args.strategies]
    parts = []
    started = time.perf_counter()
    for split in args.splits:
        if args.task == "umsab":
            rows, labels = np.arange(len(y)), y
            test = held_out(languages, np.random.default_rng([1000, split]))
        else:
            rows, labels = imbalanced_task(y, languages, np.random.default_rng([77, split]))
            test = held_out(labels, np.random.default_rng([1000, split]))
        Xs, langs = X[rows], languages[rows]
        parts.append(
            simulate(
                Xs[~test],
                labels[~test],
                langs[~test],
                Xs[test],
                labels[test],
                langs[test],
                strategies=specs,
                rounds=args.rounds,
                batch_size=args.batch_size,
                seed_size=args.seed_size,
                n_seeds=args.seeds,
                model_factory=lambda names: LogisticProxy(names, C=strength),
                seed=split,
                progress=True,
            )
        )
        parts[-1]["setup"] = {"split": split, "pool": int((~test).sum()), "test": int(test.sum())}
    rows_out = summarize(parts)
    meta = {
        "task": args.task,
        "model": args.model,
        "proxy_C": args.C,
        "splits": args.splits,
        "seeds": args.seeds,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "seed_size": args.seed_size,
        "seconds": round(time.perf_counter() - started, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python benchmarks/selection_dev_tasks.py " + " ".join(argv or sys.argv[1:]),
        "full_pool_macro_f1": [part["full_pool"]["macro_f1"] for part in parts],
    }
    prefix = args.prefix or f"selection_dev_{args.task}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{prefix}.json").write_text(
        json.dumps({"meta": meta, "summary": rows_out, "parts": parts}, indent=1)
    )
    print(
        f"{args.task}: {len(args.splits)} splits x {args.seeds} seeds, C={args.C}, "
        f"{meta['seconds']:.0f} s"
    )
    print(
        "| strategy | AULC median | Δ vs random median [min, max] | wins | worst-lang F1 @end Δ |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in rows_out:
        if r["strategy"] == "random" or "delta_median" not in r:
            print(f"| {r['strategy']} | {r['aulc_median']:.4f} | — | — | — |")
            continue
        print(
            f"| {r['strategy']} | {r['aulc_median']:.4f} | {r['delta_median']:+.4f} "
            f"[{r['delta_min']:+.4f}, {r['delta_max']:+.4f}] | {r['wins']}/{r['runs']} | "
            f"{r['worst_delta_median']:+.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
