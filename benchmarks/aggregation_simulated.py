"""Majority vote vs Dawid-Skene on simulated annotators of known accuracy.

The true labels are UMSAB train's (real class priors: the three sentiment classes in their real
proportions); the answers are simulated. Each task gets ``--overlap`` answers. Two crowds:

* ``fixed``: the same three annotators answer every task (accuracies per scenario);
* ``pool``: each task is answered by ``overlap`` annotators drawn from a pool of six, as in Label
  Studio with overlap 3 (accuracies 0.9, 0.85, 0.8, 0.75, 0.65, 0.6).

A wrong answer is a uniformly chosen other class. Reported: accuracy of the resolved labels
(a majority tie counts as not resolved, i.e. wrong: it would go to a person), the share of ties,
and the error of the estimated annotator accuracies -- medians over seeds with min-max.

    OMP_NUM_THREADS=1 python benchmarks/aggregation_simulated.py --seeds 5
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

from labeling.aggregate import dawid_skene, majority_vote  # noqa: E402

SCENARIOS = {
    "fixed 0.9/0.8/0.6": ("fixed", {"a": 0.9, "b": 0.8, "c": 0.6}),
    "fixed 0.8/0.8/0.6": ("fixed", {"a": 0.8, "b": 0.8, "c": 0.6}),
    "fixed 0.7/0.7/0.6": ("fixed", {"a": 0.7, "b": 0.7, "c": 0.6}),
    "pool of 6, overlap 3": (
        "pool",
        {"a": 0.9, "b": 0.85, "c": 0.8, "d": 0.75, "e": 0.65, "f": 0.6},
    ),
}


def _truth(path: Path, limit: int) -> tuple[list[str], list[str]]:
    labels = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            labels.append(json.loads(line)["label"])
            if len(labels) == limit:
                break
    return labels, sorted(set(labels))


def _simulate(rng, truth, classes, kind, accuracies, overlap):
    names = sorted(accuracies)
    votes = {}
    for t, true in enumerate(truth):
        chosen = names if kind == "fixed" else rng.choice(names, size=overlap, replace=False)
        answers = {}
        for annotator in chosen:
            if rng.random() < accuracies[annotator]:
                answers[str(annotator)] = true
            else:
                others = [c for c in classes if c != true]
                answers[str(annotator)] = others[int(rng.integers(len(others)))]
        votes[f"t{t}"] = answers
    return votes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/umsab/train.jsonl"))
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    truth, classes = _truth(args.data, args.tasks)
    gold = {f"t{t}": label for t, label in enumerate(truth)}
    results = {}
    for name, (kind, accuracies) in SCENARIOS.items():
        rows = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            votes = _simulate(rng, truth, classes, kind, accuracies, args.overlap)
            started = time.perf_counter()
            ds = dawid_skene(votes)
            seconds = time.perf_counter() - started
            mv = majority_vote(votes)
            row = {"seed": seed, "dawid_skene_seconds": seconds}
            for method, result in (("majority", mv), ("dawid_skene", ds)):
                row[f"{method}_accuracy"] = float(
                    np.mean([result.labels.get(task) == label for task, label in gold.items()])
                )
                row[f"{method}_annotator_error"] = float(
                    max(abs(result.annotator_accuracy[a] - accuracies[a]) for a in accuracies)
                )
            row["majority_ties"] = float(np.mean([label is None for label in mv.labels.values()]))
            row["gain"] = row["dawid_skene_accuracy"] - row["majority_accuracy"]
            rows.append(row)
            print(
                f"[{name} seed {seed}] majority {row['majority_accuracy']:.4f} "
                f"(ties {row['majority_ties']:.3f}), Dawid-Skene {row['dawid_skene_accuracy']:.4f}"
                f" in {seconds:.1f}s",
                file=sys.stderr,
            )
        summary = {
            key: {
                "median": float(np.median([r[key] for r in rows])),
                "min": float(min(r[key] for r in rows)),
                "max": float(max(r[key] for r in rows)),
            }
            for key in rows[0]
            if key != "seed"
        }
        results[name] = {"accuracies": accuracies, "summary": summary, "per_seed": rows}
    report = {
        "truth": f"{args.data.name}, first {len(truth)} labels",
        "overlap": args.overlap,
        "seeds": args.seeds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "date": time.strftime("%Y-%m-%d"),
        "scenarios": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "aggregation_simulated.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name, result in results.items():
        s = result["summary"]
        print(
            f"{name}: majority {s['majority_accuracy']['median']:.4f}, Dawid-Skene "
            f"{s['dawid_skene_accuracy']['median']:.4f}, gain {s['gain']['median']:+.4f} "
            f"[{s['gain']['min']:+.4f}, {s['gain']['max']:+.4f}]"
        )
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
