"""Memory per million vectors of the index kinds: flat vs IVF-SQ8 vs IVF-PQ (issue 14).

A seeded synthetic pool of L2-normalised 384-d vectors (the e5 dimension; `--centres`, spread
along a 48-d subspace plus a little noise in every dimension, since real sentence embeddings
have a low intrinsic dimension too) is written to a temporary .npy file. Each kind is then built
in a fresh child process the way `curation.index.update_index` builds it: a `VectorIndex`
trained on a seeded sample of `--train-sample` vectors (trained kinds), then filled one shard of
`--shard` vectors at a time from the memory-mapped file, with 16-character example ids and 8
language codes. The child reports:

* the serialized FAISS index size (`faiss.serialize_index`),
* the growth of the process's anonymous RSS (`RssAnon` in /proc/self/status, after
  `malloc_trim`) from before the build to after it: the FAISS index plus the id and language
  arrays the `VectorIndex` keeps in Python; the peak of that growth during the build (index +
  training sample or one shard); and, in another fresh process, the growth from loading the
  saved index (`VectorIndex.load`, what a later `curate search` holds: FAISS's inverted lists
  grow by doubling while filled, and are read back at their exact size),
* the time of 1,000 queries (k = 10) at each `--nprobe`, and the ids found.

The parent computes recall@10 of every kind against flat (exact) on the same queries, and the
ratios against flat. `--vectors FILE.npy` runs on real vectors instead of synthetic ones.

    OMP_NUM_THREADS=1 python benchmarks/index_memory.py --n 1000000 \\
        --out benchmarks/results/index_memory.json
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LANGUAGES = ("en", "de", "ar", "hi", "zh", "es", "sw", "ru")


def write_pool(path: Path, n: int, dim: int, *, seed: int, centres: int = 1000) -> None:
    """Seeded clustered unit vectors, written in chunks (no float64 copy of the pool)."""
    rng = np.random.default_rng(seed)
    centre_vectors = rng.standard_normal((centres, dim)).astype(np.float32)
    rank = 48
    basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(rank)
    pool = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    chunk = 65_536
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        block = (
            centre_vectors[rng.integers(0, centres, m)]
            + rng.standard_normal((m, rank), dtype=np.float32) @ basis
            + np.float32(0.05) * rng.standard_normal((m, dim), dtype=np.float32)
        )
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        pool[start : start + m] = block
    pool.flush()
    del pool


def rss_anon_bytes() -> int:
    """Anonymous resident memory of this process (file-backed pages of the memory-mapped pool
    are not counted: they belong to the page cache, not to the index)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def trimmed_rss_anon() -> int:
    gc.collect()
    # Give freed heap pages (training sample, shard copies) back before measuring.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_anon_bytes()


def python_metadata_bytes(index: Any) -> int:
    """Bytes of the id and language arrays (pointers plus the distinct str objects)."""
    total = 0
    for array in (index.ids_, index.languages_):
        total += array.nbytes
        seen: set[int] = set()
        for value in array:
            if id(value) not in seen:
                seen.add(id(value))
                total += sys.getsizeof(value)
    return total


def warmed_baseline(queries: np.ndarray) -> int:
    """RSS after FAISS's code paths ran once: the baseline holds the library, not an index."""
    from curation.index import VectorIndex

    warm = VectorIndex(queries.shape[1], kind="flat")
    warm.add(queries[:2], ["a", "b"], ["en", "en"])
    warm.search(queries[:1], 1)
    del warm
    return trimmed_rss_anon()


def load_child(args: argparse.Namespace) -> None:
    from curation.index import VectorIndex

    queries = np.load(args.queries)
    baseline = warmed_baseline(queries)
    index = VectorIndex.load(args.load)
    assert index is not None, args.load
    index.search(queries[:1], 10, language="en")  # builds nothing lazily, but prove it works
    print(json.dumps({"rss_anon_growth_bytes": trimmed_rss_anon() - baseline}))


def child(args: argparse.Namespace) -> None:
    import faiss

    from curation.index import VectorIndex

    faiss.omp_set_num_threads(args.threads)
    pool = np.load(args.pool, mmap_mode="r")[: args.n]
    queries = np.load(args.queries)
    n, dim = pool.shape
    baseline = warmed_baseline(queries)
    peak = 0
    kind, pq_m = args.child, args.pq_m
    index = VectorIndex(dim, kind=kind, pq_m=pq_m)
    started = time.perf_counter()
    if kind in {"ivf", "ivfpq", "ivfsq8"}:
        rng = np.random.default_rng(0)
        chosen = np.sort(rng.choice(n, size=min(args.train_sample, n), replace=False))
        sample = np.ascontiguousarray(pool[chosen], dtype=np.float32)
        index.train(sample, pool_size=n)
        peak = max(peak, rss_anon_bytes() - baseline)
        del sample
    else:
        index.train(np.empty((0, dim), dtype=np.float32))
    trained = time.perf_counter()
    for start in range(0, n, args.shard):
        stop = min(n, start + args.shard)
        vectors = np.ascontiguousarray(pool[start:stop], dtype=np.float32)
        ids = [f"{i:016x}" for i in range(start, stop)]
        languages = [LANGUAGES[i % len(LANGUAGES)] for i in range(start, stop)]
        index.add(vectors, ids, languages)
        peak = max(peak, rss_anon_bytes() - baseline)
        del vectors, ids, languages
    index.ids_  # noqa: B018 - join the per-shard parts, as the first search does
    built = time.perf_counter()
    grown = trimmed_rss_anon() - baseline
    metadata = python_metadata_bytes(index)
    serialized = int(faiss.serialize_index(index.index_).nbytes)
    index.save(args.found_prefix + "-index")
    searches = {}
    for nprobe in args.nprobe:
        index.nprobe = nprobe
        index.search(queries[:10], 10)  # warm caches
        t0 = time.perf_counter()
        _, found = index.search(queries, 10)
        seconds = time.perf_counter() - t0
        out = Path(args.found_prefix + f"-{nprobe}.npy")
        np.save(out, np.asarray([row + [""] * (10 - len(row)) for row in found], dtype="<U16"))
        searches[str(nprobe)] = {"seconds": round(seconds, 3), "found": str(out)}
        if kind in {"flat", "hnsw"}:
            break  # nprobe means nothing to them
    print(
        json.dumps(
            {
                "kind": kind,
                "pq_m": pq_m if kind == "ivfpq" else None,
                "nlist": index.nlist,
                "vectors": len(index),
                "train_seconds": round(trained - started, 2),
                "add_seconds": round(built - trained, 2),
                "serialized_bytes": serialized,
                "rss_anon_growth_bytes": grown,
                "peak_build_rss_anon_growth_bytes": max(peak, grown),
                "python_metadata_bytes": metadata,
                "searches": searches,
            }
        )
    )


def run_child(
    args: argparse.Namespace, kind: str, pq_m: int, pool: Path, queries: Path, tmp: Path
) -> dict:
    label = f"{kind}{pq_m}" if kind == "ivfpq" else kind
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--pq-m",
        str(pq_m),
        "--pool",
        str(pool),
        "--queries",
        str(queries),
        "--found-prefix",
        str(tmp / label),
        "--train-sample",
        str(args.train_sample),
        "--shard",
        str(args.shard),
        "--n",
        str(args.n),
        "--threads",
        str(args.threads),
        "--nprobe",
        *map(str, args.nprobe),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["label"] = label
    load = [sys.executable, __file__, "--load", str(tmp / f"{label}-index"), "--queries"]
    done = subprocess.run([*load, str(queries)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"loading {label} failed:\n{done.stderr[-3000:]}")
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    result["loaded_rss_anon_growth_bytes"] = loaded["rss_anon_growth_bytes"]
    shutil.rmtree(tmp / f"{label}-index")
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(f"{label}: {json.dumps({k: v for k, v in result.items() if k != 'searches'})}")
    return result


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len((set(a) - {""}) & (set(b) - {""})) for a, b in zip(found, exact, strict=True))
    return hits / (10 * len(exact))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=str, default="1000")
    parser.add_argument("--train-sample", type=int, default=100_000)
    parser.add_argument("--shard", type=int, default=50_000)
    parser.add_argument("--pq-m", type=int, nargs="+", default=[24, 48])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivfsq8", "ivfpq"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    # More centres: smaller clusters, neighbours spread over more inverted lists (harder).
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--vectors", type=Path, help="a .npy of real vectors instead")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/index_memory.json")
    # child-process arguments
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--pool", help=argparse.SUPPRESS)
    parser.add_argument("--found-prefix", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_child(args)
        return
    if args.child:
        args.pq_m = args.pq_m[0]
        child(args)
        return

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="index_memory_") as folder:
        tmp = Path(folder)
        pool_path, query_path = tmp / "pool.npy", tmp / "queries.npy"
        n_queries = int(args.queries)
        if args.vectors:
            real = np.load(args.vectors, mmap_mode="r")
            order = np.random.default_rng(args.seed).permutation(len(real))
            np.save(query_path, np.ascontiguousarray(real[np.sort(order[:n_queries])], "float32"))
            np.save(pool_path, np.ascontiguousarray(real[np.sort(order[n_queries:])], "float32"))
            source = str(args.vectors)
        else:
            # The queries are drawn from the same distribution but are not pool vectors: the
            # file's last rows, which the children do not index.
            write_pool(
                pool_path, args.n + n_queries, args.dim, seed=args.seed, centres=args.centres
            )
            both = np.load(pool_path, mmap_mode="r")
            np.save(query_path, np.ascontiguousarray(both[args.n :]))
            del both
            source = "synthetic"
        n = len(np.load(pool_path, mmap_mode="r")) - (0 if args.vectors else n_queries)
        dim = np.load(query_path).shape[1]
        args.n = n
        generated = time.perf_counter()
        print(f"pool: {n} x {dim} ({source}) in {generated - started:.1f} s")
        runs = []
        for kind in args.kinds:
            for pq_m in args.pq_m if kind == "ivfpq" else [0]:
                runs.append(run_child(args, kind, pq_m, pool_path, query_path, tmp))
        flat = next(run for run in runs if run["kind"] == "flat")
        exact = np.load(flat["searches"]["16"]["found"])
        per_million = 1_000_000 / n
        for run in runs:
            for search in run["searches"].values():
                search["recall_at_10"] = round(recall_at_10(np.load(search["found"]), exact), 4)
                search["ms_per_query"] = round(1000 * search["seconds"] / n_queries, 3)
                del search["found"]
            run["serialized_mib_per_million"] = round(
                run["serialized_bytes"] * per_million / 2**20, 1
            )
            run["rss_mib_per_million"] = round(
                run["rss_anon_growth_bytes"] * per_million / 2**20, 1
            )
            run["loaded_rss_mib_per_million"] = round(
                run["loaded_rss_anon_growth_bytes"] * per_million / 2**20, 1
            )
            run["peak_build_rss_mib"] = round(run["peak_build_rss_anon_growth_bytes"] / 2**20, 1)
            run["python_metadata_mib_per_million"] = round(
                run["python_metadata_bytes"] * per_million / 2**20, 1
            )
            run["serialized_ratio_to_flat"] = round(
                run["serialized_bytes"] / flat["serialized_bytes"], 4
            )
            run["loaded_rss_ratio_to_flat"] = round(
                run["loaded_rss_anon_growth_bytes"] / flat["loaded_rss_anon_growth_bytes"], 4
            )
    result = {
        "benchmark": "index_memory",
        "command": f"OMP_NUM_THREADS={args.threads} python benchmarks/index_memory.py "
        + " ".join(sys.argv[1:]),
        "vectors": n,
        "dim": dim,
        "source": source,
        "centres": None if args.vectors else args.centres,
        "queries": n_queries,
        "train_sample": args.train_sample,
        "shard": args.shard,
        "threads": args.threads,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "faiss": __import__("faiss").__version__,
        },
        "total_seconds": round(time.perf_counter() - started, 1),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("MiB per million vectors: serialized / RSS loaded / RSS after build; peak build MiB")
    for run in runs:
        searches = ", ".join(
            f"nprobe {p}: recall {s['recall_at_10']:.3f} {s['ms_per_query']} ms/q"
            for p, s in run["searches"].items()
        )
        print(
            f"{run['label']:<8} {run['serialized_mib_per_million']:>7} / "
            f"{run['loaded_rss_mib_per_million']:>7} / {run['rss_mib_per_million']:>7}; "
            f"{run['peak_build_rss_mib']:>7}; x{run['serialized_ratio_to_flat']:.3f} of flat; "
            f"{searches}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
