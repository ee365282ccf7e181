"""Per-language stopping on UMSAB: labels saved and F1 lost, through `selection.simulation`.

Pool: UMSAB train (8 languages), test: UMSAB validation (held out; the stopping rule never sees
it). multilingual-e5-small vectors from the `curate simulate` cache. The same simulation (same
seed sets, strategy, per-language ``equal`` allocation) runs with and without a StoppingRule;
without a validation curve in the simulation, a language stops when its proxy's predictions on
its stop set changed on fewer than (1 - kappa) of it for ``window`` rounds and it has
``min_labels`` labels. Reported per seed and as medians with min-max: labels bought, final
macro-F1 (all and per language), and the rounds languages stopped in.

    OMP_NUM_THREADS=1 python benchmarks/stopping_umsab.py --store /tmp/umsab_store
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.selection_umsab import embeddings  # noqa: E402
from selection.simulation import simulate  # noqa: E402
from selection.stopping import StoppingRule  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/umsab"))
    parser.add_argument("--store", type=Path, default=Path("/tmp/umsab_store"))
    parser.add_argument("--model", default="multilingual-e5-small")
    parser.add_argument("--strategy", default="margin")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=240)
    parser.add_argument("--seed-size", type=int, default=240)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--min-kappa", type=float, default=0.95)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--min-labels", type=int, default=200)
    parser.add_argument("--stop-set-size", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    _, y, lang, X = embeddings(args.data_dir / "train.jsonl", args.model, args.store)
    _, yt, lt, Xt = embeddings(args.data_dir / "validation.jsonl", args.model, args.store)
    common = dict(
        strategies=[args.strategy],
        rounds=args.rounds,
        batch_size=args.batch_size,
        seed_size=args.seed_size,
        n_seeds=args.seeds,
        allocation="equal",
        progress=True,
    )
    rule = StoppingRule(window=args.window, min_kappa=args.min_kappa, min_labels=args.min_labels)
    started = time.perf_counter()
    plain = simulate(X, y, lang, Xt, yt, lt, **common)["strategies"][args.strategy]
    stopped = simulate(
        X, y, lang, Xt, yt, lt, stopping=rule, stop_set_size=args.stop_set_size, **common
    )["strategies"][args.strategy]
    per_seed = []
    for k, (a, b) in enumerate(zip(plain["curves"], stopped["curves"], strict=True)):
        per_seed.append(
            {
                "seed": k,
                "labels_without": a[-1]["labels"],
                "labels_with": b[-1]["labels"],
                "labels_saved": a[-1]["labels"] - b[-1]["labels"],
                "saved_share": (a[-1]["labels"] - b[-1]["labels"]) / a[-1]["labels"],
                "macro_f1_without": a[-1]["macro_f1"],
                "macro_f1_with": b[-1]["macro_f1"],
                "macro_f1_change": b[-1]["macro_f1"] - a[-1]["macro_f1"],
                "per_language_change": {
                    c: b[-1]["per_language"][c] - a[-1]["per_language"][c]
                    for c in sorted(a[-1]["per_language"])
                },
                "stopped_at": stopped["stopped_at"][k],
            }
        )

    def summary(key: str) -> dict:
        values = [row[key] for row in per_seed]
        return {"median": float(np.median(values)), "min": min(values), "max": max(values)}

    report = {
        "pool": "UMSAB train",
        "test": "UMSAB validation",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rule": repr(rule),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started, 1),
        "summary": {
            key: summary(key)
            for key in ("labels_saved", "saved_share", "macro_f1_change", "macro_f1_without")
        },
        "per_seed": per_seed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"stopping_umsab_kappa{args.min_kappa:g}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["summary"], indent=2))
    for row in per_seed:
        print(row["seed"], row["labels_saved"], round(row["macro_f1_change"], 4), row["stopped_at"])
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
