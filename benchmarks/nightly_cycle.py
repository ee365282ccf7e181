"""One full `curate run` cycle on a large pool: stage timings and peak memory.

Setup (not timed as part of the run): a store with POOL distinct texts (real UMSAB tweets,
suffixed beyond the file's size), LABELED of them with their real labels, whose vectors are
written through `EmbeddingCache.add` as if embedded on earlier nights (random unit vectors: the
real model at ~150 texts/s on this 2-core machine would take hours for 1M). Then NEW fresh texts
are dropped into the inbox and `curate run` is timed: it must ingest and embed only the NEW ones
(with the real offline MiniLM), snapshot, evaluate, and select from the whole pool. A second run
right after must do nothing.

    python benchmarks/nightly_cycle.py --pool 200000 --new 5000 --labeled 2000
    python benchmarks/nightly_cycle.py --pool 1000000 --new 0   # selection only: time + memory
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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
UMSAB = REPO.parent / "shared" / "data" / "umsab" / "train.jsonl"
RESULTS = REPO / "benchmarks" / "results"

PEAK_WRAPPER = r"""
import atexit, resource, sys
peak_file = sys.argv.pop(1)
atexit.register(lambda: open(peak_file, "w").write(
    str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
from curation.cli import main
main()
"""


def tweets() -> list[dict]:
    with open(UMSAB, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def rows(base: list[dict], start: int, count: int, tag: str) -> list[dict]:
    out = []
    for i in range(start, start + count):
        row = base[i % len(base)]
        out.append(
            {
                "id": f"{tag}{i}",
                "text": f"{row['text']} [{tag}{i}]",
                "language": row["language"],
                "label": row["label"],
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=200_000)
    parser.add_argument("--new", type=int, default=5_000)
    parser.add_argument("--labeled", type=int, default=2_000)
    parser.add_argument("--queue-target", type=int, default=400)
    args = parser.parse_args()
    from curation.config import load_config
    from curation.embeddings import EmbeddingCache
    from curation.ingest import ingest_files
    from curation.store import Store

    base = tweets()
    report: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "pool": args.pool,
        "new": args.new,
        "labeled": args.labeled,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "inbox").mkdir()
        (root / "curate.toml").write_text(
            "[languages]\ndetect = false\n"
            '[labels]\nnames = ["negative", "neutral", "positive"]\n'
            f'[run]\ninbox = ["inbox"]\nqueue_target = {args.queue_target}\n'
            '[embedding]\ndevice = "cpu"\n'
        )
        config = load_config(root / "curate.toml")
        old = root / "old.jsonl"
        with open(old, "w", encoding="utf-8") as handle:
            for i, row in enumerate(rows(base, 0, args.pool, "o")):
                if i >= args.labeled:
                    row = {k: v for k, v in row.items() if k != "label"}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        started = time.perf_counter()
        with Store(config.store.path) as store:
            ingest_files(store, config, [old], progress=False)
            cache = EmbeddingCache.for_config(store, config)
            rng = np.random.default_rng(0)
            ids = [row[0] for row in store.conn.execute("SELECT id FROM examples ORDER BY rowid")]
            for start in range(0, len(ids), 50_000):
                part = ids[start : start + 50_000]
                vectors = rng.standard_normal((len(part), 384)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                cache.add(part, vectors)
        report["setup_seconds"] = round(time.perf_counter() - started, 1)
        if args.new:  # --new 0: no inbox file, the run only evaluates and selects
            with open(root / "inbox" / "new.jsonl", "w", encoding="utf-8") as handle:
                for row in rows(base, args.pool, args.new, "n"):
                    row.pop("label")
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        for name in ("first", "second"):
            peak_file = root / "peak.txt"
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", PEAK_WRAPPER, str(peak_file), "--quiet", "run", "--json"],
                cwd=root,
                capture_output=True,
                text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
            wall = time.perf_counter() - started
            payload = json.loads(done.stdout)
            report[f"{name}_run"] = {
                "exit_code": done.returncode,
                "wall_seconds": round(wall, 1),
                "peak_rss_mb": round(int(peak_file.read_text()) / 1024, 1),
                "stages": {
                    stage: {
                        "status": values["status"],
                        "seconds": values["counts"].get("seconds"),
                        **{
                            k: v
                            for k, v in values["counts"].items()
                            if k
                            in (
                                "added",
                                "embedded",
                                "already_embedded",
                                "selected",
                                "rows",
                                "files",
                            )
                        },
                    }
                    for stage, values in payload["stages"].items()
                },
            }
            print(
                f"{name} run: {wall:.1f} s, peak RSS {report[f'{name}_run']['peak_rss_mb']} MiB",
                file=sys.stderr,
            )
            for stage, values in report[f"{name}_run"]["stages"].items():
                print(f"  {stage:9s} {values}", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"nightly_cycle_{args.pool}_new{args.new}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
