"""LoRA vs full fine-tuning of the offline MiniLM on UMSAB, on CPU, through `curate`'s trainer.

Both variants train on the same stratified sample of UMSAB train (default 250 tweets per
language, 2,000 in all, 8 languages) for the same number of epochs, with the same seed, batch
size and sequence length, and are scored on the same stratified sample of UMSAB validation
(used as the test set: ingested with its own `--source` and set as `data.validation_source`).
Each variant runs in its own process, so its peak RSS (getrusage) is its own.

Reported per variant: trainable and total parameters, peak RSS and its growth during training,
training seconds per epoch (evaluation excluded), evaluation seconds, and macro-F1 per language,
their mean and the worst language.

    python benchmarks/training_lora_vs_full.py                  # ~6-10 min on 2 busy CPU cores
    python benchmarks/training_lora_vs_full.py --train-per-language 60 --eval-per-language 30
    python benchmarks/training_lora_vs_full.py --out /tmp/lora_vs_full.json

The UMSAB files are read from ../shared/data/umsab/ (never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UMSAB = REPO.parent / "shared" / "data" / "umsab"
VARIANTS = ("lora", "full")


def sample(path: Path, per_language: int) -> list[dict]:
    """The first rows of each (language, label), as even across labels as possible."""
    by_key: dict[tuple[str, str], list[dict]] = defaultdict(list)
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            by_key[(row["language"], row["label"])].append(row)
    rows = []
    for code in sorted({language for language, _ in by_key}):
        labels = sorted(label for language, label in by_key if language == code)
        for i, label in enumerate(labels):
            share = per_language // len(labels) + (1 if i < per_language % len(labels) else 0)
            rows.extend(by_key[(code, label)][:share])
    return rows


def prepare_store(folder: Path, train_per_language: int, eval_per_language: int) -> Path:
    from curation.config import config_from_dict
    from curation.ingest import ingest_files
    from curation.store import Store

    train = folder / "umsab-train.jsonl"
    test = folder / "umsab-validation.jsonl"
    for path, rows in (
        (train, sample(UMSAB / "train.jsonl", train_per_language)),
        (test, sample(UMSAB / "validation.jsonl", eval_per_language)),
    ):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    store_path = folder / "store"
    config = config_from_dict(
        {
            "store": {"path": str(store_path)},
            "languages": {"detect": False},
            "labels": {"names": ["negative", "neutral", "positive"]},
        }
    )
    with Store(store_path) as store:
        ingest_files(store, config, [train], source="umsab-train", progress=False)
        ingest_files(store, config, [test], source="umsab-validation", progress=False)
    return store_path


def child(args: argparse.Namespace) -> None:
    """Train one variant and print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from curation.store import Store
    from training.config import parse_training_config
    from training.trainer import Trainer

    lora = args.variant == "lora"
    raw = {
        "seed": args.seed,
        "device": "cpu",
        "log_every": 25,
        "adapter": {"kind": "lora", "r": args.rank, "alpha": 2 * args.rank}
        if lora
        else {"kind": "full"},
        "optimizer": {"lr": args.lora_lr if lora else args.full_lr, "warmup_ratio": 0.06},
        "data": {
            "batch_size": args.batch_size,
            "effective_batch_size": args.effective_batch_size,
            "max_length": args.max_length,
            "eval_batch_size": 64,
            "sampling_alpha": 1.0,
            "validation_source": "umsab-validation",
        },
        "evaluation": {"every": 10**6, "patience": None},  # one evaluation, at the end
        "budget": {"max_steps": 10**6, "max_epochs": args.epochs},
    }
    with Store(args.store) as store:
        result = Trainer(store, parse_training_config(raw)).train()
    metrics = result.metrics
    best = metrics["best"]
    print(
        json.dumps(
            {
                "variant": args.variant,
                "trainable_params": metrics["trainable_params"],
                "total_params": metrics["total_params"],
                "trainable_percent": round(100 * metrics["trainable_fraction"], 3),
                "peak_rss_mb": metrics["peak_rss_mb"],
                "rss_after_model_load_mb": metrics["rss_at_start_mb"],
                "training_rss_growth_mb": round(
                    metrics["peak_rss_mb"] - metrics["rss_at_start_mb"], 1
                ),
                "steps": metrics["steps"],
                "epochs": metrics["epochs"],
                "train_seconds": metrics["train_seconds"],
                "seconds_per_epoch": metrics["seconds_per_epoch"],
                "eval_seconds": metrics["eval_seconds"],
                "mean_macro_f1": best["mean_macro_f1"],
                "worst_language": best["worst_language"],
                "worst_language_f1": best["worst_language_f1"],
                "per_language": best["per_language"],
                "lr": metrics["resolved"]["lr"],
                "examples": metrics["examples"],
            }
        )
    )


def table(results: list[dict]) -> str:
    languages = sorted(results[0]["per_language"])
    header = ["", *[r["variant"] for r in results]]
    rows = [
        ["trainable parameters"] + [f"{r['trainable_params']:,}" for r in results],
        ["total parameters"] + [f"{r['total_params']:,}" for r in results],
        ["trainable %"] + [f"{r['trainable_percent']:.2f}" for r in results],
        ["peak RSS (MB)"] + [f"{r['peak_rss_mb']:.0f}" for r in results],
        ["RSS growth in training (MB)"] + [f"{r['training_rss_growth_mb']:.0f}" for r in results],
        ["seconds per epoch"] + [f"{r['seconds_per_epoch']:.1f}" for r in results],
        ["optimizer steps"] + [str(r["steps"]) for r in results],
        ["eval seconds"] + [f"{r['eval_seconds']:.1f}" for r in results],
    ]
    rows += [[f"macro-F1 {code}"] + [f"{r['per_language'][code]:.3f}" for r in results]
             for code in languages]  # fmt: skip
    rows.append(["macro-F1 mean"] + [f"{r['mean_macro_f1']:.3f}" for r in results])
    rows.append(
        ["worst language"]
        + [f"{r['worst_language']} {r['worst_language_f1']:.3f}" for r in results]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-per-language", type=int, default=250)
    parser.add_argument("--eval-per-language", type=int, default=100)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--effective-batch-size", type=int, default=16)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lora-lr", type=float, default=2e-3)
    parser.add_argument("--full-lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy CPU)"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    if not (UMSAB / "train.jsonl").is_file():
        sys.exit(f"UMSAB not found under {UMSAB}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="curate-bench-") as tmp:
        store = prepare_store(Path(tmp), args.train_per_language, args.eval_per_language)
        passthrough = []
        for name, value in vars(args).items():
            if name in {"variant", "store", "out"} or value is None:
                continue
            passthrough += [f"--{name.replace('_', '-')}", str(value)]
        for variant in VARIANTS:
            command = [sys.executable, __file__, *passthrough, "--variant", variant,
                       "--store", str(store)]  # fmt: skip
            print(f"training {variant} ...", file=sys.stderr, flush=True)
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-4000:])
                sys.exit(f"{variant} failed with exit code {done.returncode}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    wall = time.perf_counter() - started
    report = {
        "benchmark": "training_lora_vs_full",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "settings": {k: v for k, v in vars(args).items() if k not in {"variant", "store", "out"}},
        "wall_seconds": round(wall, 1),
        "results": results,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n", "utf-8")
    print(table(results))
    print(f"\nwall time {wall:.0f} s; settings {json.dumps(report['settings'], default=str)}")
    lora, full = results
    print(
        f"LoRA trains {lora['trainable_percent']:.2f}% of the parameters "
        f"({'under' if lora['trainable_percent'] < 2 else 'NOT under'} 2%) and peaks at "
        f"{lora['peak_rss_mb']:.0f} MB vs {full['peak_rss_mb']:.0f} MB for full fine-tuning "
        f"({'less' if lora['peak_rss_mb'] < full['peak_rss_mb'] else 'NOT less'})."
    )


if __name__ == "__main__":
    main()
