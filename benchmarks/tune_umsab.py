"""Budget-capped tuning on UMSAB: does `curate tune`'s best setting beat the defaults on data
the search never saw?

Per seed: a scratch store with a stratified sample of UMSAB train (``--per-language`` labeled
tweets in each language); `[training]` with the multilingual-e5-small backbone on CPU and small
caps (``--max-steps``); the training split's own per-language validation share steers early
stopping and the tuner. Then:

* ``default``: one `curate train` run with the defaults;
* ``tuned``: `curate tune --max-trials N` (Optuna TPE, median pruning), then one `curate train`
  run with the stored best setting (what `curate train` does after a tune);

both scored on a held-out sample of UMSAB *validation* (``--test-per-language`` per language),
never used by training, tuning or early stopping: macro-F1 per language, mean and worst.
Reported: medians over seeds with min-max of tuned minus default, and the tuning time.

    OMP_NUM_THREADS=2 python benchmarks/tune_umsab.py --seeds 3 --max-trials 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LABELS = ["negative", "neutral", "positive"]


def _sample(path: Path, per_language: int, seed: int) -> list[dict]:
    by_language: dict[str, list[dict]] = defaultdict(list)
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            by_language[row["language"]].append(row)
    rows = []
    for code in sorted(by_language):
        pool = by_language[code]
        random.Random(seed).shuffle(pool)
        rows.extend(pool[:per_language])
    return rows


def _macro_f1(model, rows: list[dict]) -> dict[str, float]:  # noqa: ANN001
    from sklearn.metrics import f1_score

    predicted = model.predict([r["text"] for r in rows], [r["language"] for r in rows])
    scores = {}
    for code in sorted({r["language"] for r in rows}):
        mask = [i for i, r in enumerate(rows) if r["language"] == code]
        scores[code] = float(
            f1_score(
                [rows[i]["label"] for i in mask],
                [predicted[i] for i in mask],
                labels=LABELS,
                average="macro",
                zero_division=0,
            )
        )
    return scores


def _summary(scores: dict[str, float]) -> dict:
    return {
        "mean": float(np.mean(list(scores.values()))),
        "worst": min(scores.values()),
        "per_language": scores,
    }


def run_seed(args: argparse.Namespace, seed: int, folder: Path) -> dict:
    from curation.config import config_from_dict
    from curation.ingest import ingest_files
    from curation.store import Store
    from training.config import parse_training_config
    from training.predict import AdapterModel
    from training.trainer import Trainer
    from training.tune import apply_best, tune

    train_rows = _sample(args.data_dir / "train.jsonl", args.per_language, seed)
    test_rows = _sample(args.data_dir / "validation.jsonl", args.test_per_language, seed)
    folder.mkdir(parents=True, exist_ok=True)
    pool = folder / "train.jsonl"
    pool.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train_rows))
    config = config_from_dict(
        {
            "store": {"path": str(folder / "store")},
            "languages": {"detect": False},
            "labels": {"names": LABELS},
        }
    )
    base = parse_training_config(
        {
            "seed": seed,
            "data": {"batch_size": 16, "max_length": 64},
            "evaluation": {"every": args.eval_every, "patience": 4},
            "budget": {"max_steps": args.max_steps},
        }
    )
    row: dict = {"seed": seed, "train": len(train_rows), "test": len(test_rows)}
    with Store(config.store.path) as store:
        ingest_files(store, config, [pool], progress=False)
        started = time.perf_counter()
        default = Trainer(store, base).train()
        row["default_seconds"] = time.perf_counter() - started
        row["default"] = _summary(_macro_f1(AdapterModel.load(default.run_dir), test_rows))
        started = time.perf_counter()
        result = tune(store, base, max_trials=args.max_trials, objective="mean", seed=seed)
        row["tune_seconds"] = time.perf_counter() - started
        row["trials"] = result.trials
        tuned_config, best = apply_best(store, base)
        row["best_params"] = None if best is None else best["params"]
        row["best_validation"] = None if best is None else best["value"]
        tuned = Trainer(store, tuned_config).train()
        row["tuned"] = _summary(_macro_f1(AdapterModel.load(tuned.run_dir), test_rows))
    row["gain_mean"] = row["tuned"]["mean"] - row["default"]["mean"]
    row["gain_worst"] = row["tuned"]["worst"] - row["default"]["worst"]
    print(
        f"[seed {seed}] default {row['default']['mean']:.4f} tuned {row['tuned']['mean']:.4f} "
        f"(worst {row['default']['worst']:.4f} -> {row['tuned']['worst']:.4f}); "
        f"tune {row['tune_seconds']:.0f}s {row['trials']}",
        file=sys.stderr,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/umsab"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/tune_umsab"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-language", type=int, default=150)
    parser.add_argument("--test-per-language", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--max-trials", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows = [run_seed(args, seed, args.work / f"seed{seed}") for seed in range(args.seeds)]

    def summary(key: str) -> dict:
        values = [r[key] for r in rows]
        return {"median": float(np.median(values)), "min": min(values), "max": max(values)}

    report = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "date": time.strftime("%Y-%m-%d"),
        "summary": {
            "gain_mean_macro_f1": summary("gain_mean"),
            "gain_worst_language_f1": summary("gain_worst"),
            "tune_seconds": summary("tune_seconds"),
            "default_seconds": summary("default_seconds"),
        },
        "per_seed": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "tune_umsab.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
