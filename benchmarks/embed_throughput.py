"""`curate embed` throughput against a plain `SentenceTransformer.encode`, and peak memory.

Part 1 (throughput): the same N real tweets (UMSAB train) are embedded by
  (a) `SentenceTransformer(model).encode(texts, batch_size, normalize_embeddings=True)` and
  (b) `curation.embeddings.embed_pool` (reads the store, sorts by length, writes shards),
alternating a/b/a/b so machine noise hits both; each run in a fresh process. The ratio is the
median rate of (b) over the median rate of (a) and must not fall below 0.95.

Part 2 (memory, optional --pool-rows): a synthetic pool of that many distinct rows built from the
tweets is ingested and embedded by the `curate` CLI in child processes; the peak RSS of each child
is read from getrusage.

    python benchmarks/embed_throughput.py --texts 3000 --repeats 3
    python benchmarks/embed_throughput.py --texts 0 --pool-rows 200000 \
        --output benchmarks/results/embed_pool_200000.json
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

CHILD = r"""
import json, resource, sys, time
mode, texts_path, store_dir, batch_size = sys.argv[1:5]
texts = json.load(open(texts_path, encoding="utf-8"))
if mode == "plain":
    from sentence_transformers import SentenceTransformer
    from curation.embeddings import resolve_model_source
    model = SentenceTransformer(resolve_model_source("sentence-transformers/all-MiniLM-L6-v2"),
                                device="cpu")
    model.encode(texts[:64], batch_size=int(batch_size))  # warm-up, as embed_pool's first chunk
    start = time.perf_counter()
    model.encode(texts, batch_size=int(batch_size), normalize_embeddings=True,
                 convert_to_numpy=True)
    seconds = time.perf_counter() - start
else:
    from curation.config import config_from_dict
    from curation.embeddings import Embedder, embed_pool
    from curation.ingest import ingest_files
    from curation.store import Store
    config = config_from_dict({"store": {"path": store_dir},
                               "embedding": {"batch_size": int(batch_size), "device": "cpu"},
                               "languages": {"detect": False}})
    pool = store_dir + ".jsonl"
    with open(pool, "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"id": f"t{i}", "text": text, "language": "en"}) + "\n")
    store = Store(store_dir)
    ingest_files(store, config, [pool], progress=False)
    embedder = Embedder(config.embedding)
    embedder.encode(texts[:64])  # same warm-up as the plain run
    start = time.perf_counter()
    result = embed_pool(store, config, embedder=embedder, progress=False)
    seconds = time.perf_counter() - start
    assert result["embedded"] == len(texts), result
print(json.dumps({"seconds": seconds, "rate": len(texts) / seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def distinct_texts(n: int) -> list[str]:
    """N distinct real tweets; beyond the file's size, suffixed copies keep them distinct."""
    from curation.normalize import normalize_text

    base, seen = [], set()
    with open(UMSAB, encoding="utf-8") as handle:
        for line in handle:
            text = normalize_text(json.loads(line)["text"])
            if text and text not in seen:
                seen.add(text)
                base.append(text)
    return [
        base[i % len(base)] + ("" if i < len(base) else f" #{i // len(base)}") for i in range(n)
    ]


def run_child(mode: str, texts_path: Path, store_dir: Path, batch_size: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(texts_path), str(store_dir), str(batch_size)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


PEAK_WRAPPER = r"""
import atexit, resource, sys
peak_file = sys.argv.pop(1)
atexit.register(lambda: open(peak_file, "w").write(
    str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
from curation.cli import main
main()
"""


def peak_of(args: list[str], cwd: Path) -> tuple[float, float, dict]:
    """Run `curate ARGS` in a child; its wall seconds, its own peak RSS (MiB), its JSON output."""
    peak_file = cwd / "peak.txt"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, str(peak_file), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"curate {' '.join(args)} failed: {done.stderr}")
    return seconds, int(peak_file.read_text()) / 1024, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pool-rows", type=int, default=0, help="0 skips the memory part")
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "embed_throughput.json", help="results JSON"
    )
    args = parser.parse_args()
    if args.texts < 1 and args.pool_rows < 1:
        parser.error("nothing to do: --texts 0 skips throughput, --pool-rows 0 skips memory")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.machine()}",
        "texts": args.texts,
        "batch_size": args.batch_size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        texts_path = tmp_path / "texts.json"
        texts_path.write_text(json.dumps(distinct_texts(args.texts), ensure_ascii=False))
        plain, ours = [], []
        for repeat in range(args.repeats if args.texts > 0 else 0):
            plain.append(run_child("plain", texts_path, tmp_path / f"p{repeat}", args.batch_size))
            ours.append(run_child("curate", texts_path, tmp_path / f"c{repeat}", args.batch_size))
            print(
                f"repeat {repeat}: plain {plain[-1]['rate']:.1f}/s, "
                f"curate embed {ours[-1]['rate']:.1f}/s",
                file=sys.stderr,
            )
        if plain:
            plain_rate = statistics.median(r["rate"] for r in plain)
            ours_rate = statistics.median(r["rate"] for r in ours)
            report["throughput"] = {
                "plain_encode_texts_per_s": round(plain_rate, 1),
                "curate_embed_texts_per_s": round(ours_rate, 1),
                "ratio": round(ours_rate / plain_rate, 3),
                "runs": {"plain": plain, "curate": ours},
            }
        if args.pool_rows:
            pool = tmp_path / "pool.jsonl"
            with open(pool, "w", encoding="utf-8") as handle:
                for text in distinct_texts(args.pool_rows):
                    handle.write(
                        json.dumps({"text": text, "language": "en"}, ensure_ascii=False) + "\n"
                    )
            cli = ["--quiet"]
            (tmp_path / "curate.toml").write_text(
                '[languages]\ndetect = false\n[embedding]\ndevice = "cpu"\n'
            )
            memory = {}
            for name, command in (
                ("ingest", [*cli, "ingest", str(pool), "--json"]),
                ("embed", [*cli, "embed", "--json"]),
                ("index", [*cli, "index", "--json"]),
            ):
                seconds, peak, output = peak_of(command, tmp_path)
                memory[name] = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak, 1)}
                print(f"{name}: {seconds:.1f} s, peak RSS {peak:.0f} MiB", file=sys.stderr)
            report["pool"] = {"rows": args.pool_rows, "stages": memory}
    out = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    if "throughput" in report:
        t = report["throughput"]
        print(
            f"plain encode {t['plain_encode_texts_per_s']}/s | curate embed "
            f"{t['curate_embed_texts_per_s']}/s | ratio {t['ratio']}"
        )
    if "pool" in report:
        for name, values in report["pool"]["stages"].items():
            print(
                f"{report['pool']['rows']} rows {name}: {values['seconds']} s, "
                f"peak RSS {values['peak_rss_mb']} MiB"
            )
    print(f"written {out}")


if __name__ == "__main__":
    main()
