"""Scale benchmark: the default strategy selecting from large synthetic pools.

For each pool size (default 100k, 300k, 1M x 384 float32, clustered, L2-normalised, 8
languages, 3-class probabilities) a fresh child process generates the pool and times
``hybrid.select(budget=1000)`` (warm stage: 1,000 labeled examples given) and records the peak
RSS of that process (pool included). In the same run small-text 1.4.1's ``GreedyCoreset`` (the
k-center baseline) selects the same budget from the 100k pool under a time limit, next to our
FAISS ``kcenter`` for a like-for-like algorithm; the ratios are printed.

    python benchmarks/selection_scale.py --sizes 100000 300000 1000000

Writes ``scale_results.json`` and ``scale_results.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_pool(n: int, dim: int, *, n_labeled: int, seed: int) -> dict[str, Any]:
    """Clustered unit vectors (500 topics), 8 languages, Dirichlet probabilities; built in
    chunks so no float64 copy of the pool ever exists."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(500, dim)).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    chunk = 65_536
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        c = centres[rng.integers(0, len(centres), m)]
        block = c + 1.5 * rng.standard_normal((m, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[s : s + m] = block
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    languages = np.array(["ar", "de", "en", "es", "fr", "hi", "it", "pt"])[rng.integers(0, 8, n)]
    lab = centres[rng.integers(0, len(centres), n_labeled)] + 1.5 * rng.standard_normal(
        (n_labeled, dim), dtype=np.float32
    )
    lab /= np.linalg.norm(lab, axis=1, keepdims=True)
    return {"x": x, "probs": probs, "languages": languages, "labeled": lab.astype(np.float32)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in a fresh process: one measurement, printed as JSON on the last line."""
    from selection import get_strategy

    t0 = time.perf_counter()
    data = make_pool(args.n, args.dim, n_labeled=args.labeled, seed=args.seed)
    gen_s = time.perf_counter() - t0
    rss_data = peak_rss_mib()
    ids = np.arange(args.n)
    out: dict[str, Any] = {
        "n": args.n,
        "dim": args.dim,
        "task": args.task,
        "generate_s": gen_s,
        "pool_mib": data["x"].nbytes / 2**20,
        "rss_after_generate_mib": rss_data,
    }
    if args.task in ("hybrid", "hybrid_cold", "kcenter"):
        name = "hybrid" if args.task.startswith("hybrid") else args.task
        strategy = get_strategy(name)
        probs = None if args.task == "hybrid_cold" else data["probs"]
        t = time.perf_counter()
        sel = strategy.select(
            ids,
            args.budget,
            probs=probs,
            embeddings=data["x"],
            labeled_embeddings=data["labeled"],
            languages=data["languages"],
            rng=np.random.default_rng(args.seed),
        )
        out["select_s"] = time.perf_counter() - t
        out["chosen"] = len(sel.ids)
        out["skipped_near_duplicates"] = sel.skipped_near_duplicates
        out["strategy"] = sel.strategy
    elif args.task == "small_text_coreset":
        from small_text.data import SklearnDataset
        from small_text.query_strategies.coresets import GreedyCoreset

        x = np.vstack([data["x"], data["labeled"]])
        n_lab = data["labeled"].shape[0]
        dataset = SklearnDataset(x, np.zeros(len(x), dtype=np.int64))
        qs = GreedyCoreset()
        t = time.perf_counter()
        idx = qs.query(
            None,
            dataset,
            np.arange(args.n),
            np.arange(args.n, args.n + n_lab),
            np.zeros(n_lab, dtype=np.int64),
            n=args.budget,
            embeddings=x,
        )
        out["select_s"] = time.perf_counter() - t
        out["chosen"] = len(idx)
        out["strategy"] = "small-text 1.4.1 GreedyCoreset(distance_metric='euclidean')"
    out["peak_rss_mib"] = peak_rss_mib()
    out["select_rss_increase_mib"] = out["peak_rss_mib"] - rss_data
    return out


def run_child(task: str, n: int, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--task",
        task,
        "--n",
        str(n),
        "--dim",
        str(args.dim),
        "--budget",
        str(args.budget),
        "--labeled",
        str(args.labeled),
        "--seed",
        str(args.seed),
    ]
    env = dict(os.environ)
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {
            "n": n,
            "task": task,
            "timed_out": True,
            "limit_s": timeout,
            "wall_s": time.perf_counter() - t,
        }
    if proc.returncode != 0:
        return {"n": n, "task": task, "error": proc.stderr[-2000:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t
    return res


def fmt_row(r: dict[str, Any]) -> str:
    if r.get("timed_out"):
        return f"| {r['task']} | {r['n']:,} | > {r['limit_s']:.0f} (timed out) | — | — | — |"
    if "error" in r:
        return f"| {r['task']} | {r['n']:,} | error | — | — | — |"
    return (
        f"| {r['task']} | {r['n']:,} | {r['select_s']:.1f} | {r['peak_rss_mib'] / 1024:.2f} | "
        f"{r['pool_mib'] / 1024:.2f} | {r['chosen']} |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--labeled", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small-text-size", type=int, default=100_000)
    ap.add_argument("--small-text-timeout", type=float, default=1800.0)
    ap.add_argument("--no-small-text", action="store_true")
    ap.add_argument("--cold", action="store_true", help="also time the cold stage (no probs)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per hybrid measurement")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    # child mode
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task", default="hybrid", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(child(args)))
        return 0

    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        r = run_child("hybrid", n, args, args.timeout)
        rows.append(r)
        print(fmt_row(r), flush=True)
        if args.cold:
            r = run_child("hybrid_cold", n, args, args.timeout)
            rows.append(r)
            print(fmt_row(r), flush=True)
    comparison: dict[str, Any] = {}
    if not args.no_small_text:
        n = args.small_text_size
        ours = run_child("kcenter", n, args, args.timeout)
        rows.append(ours)
        print(fmt_row(ours), flush=True)
        theirs = run_child("small_text_coreset", n, args, args.small_text_timeout)
        rows.append(theirs)
        print(fmt_row(theirs), flush=True)
        hyb = next((r for r in rows if r["task"] == "hybrid" and r["n"] == n), None)
        st_s = theirs.get("select_s", theirs.get("limit_s"))
        bound = ">" if theirs.get("timed_out") else ""
        if hyb is not None and "select_s" in hyb and st_s:
            comparison["small_text_over_hybrid"] = f"{bound}{st_s / hyb['select_s']:.0f}x"
        if "select_s" in ours and st_s:
            comparison["small_text_over_kcenter"] = f"{bound}{st_s / ours['select_s']:.0f}x"

    md = [
        "# Selection scale benchmark",
        "",
        f"Budget {args.budget}, {args.labeled} labeled, dim {args.dim}, 3 classes, 8 languages; "
        f"synthetic clustered unit vectors; {platform.machine()}, {os.cpu_count()} CPUs. "
        "Peak RSS is the whole child process (pool, probabilities and labeled set included).",
        "",
        "| task | pool | select seconds | peak RSS GiB | pool GiB | chosen |",
        "|---|---|---|---|---|---|",
        *[fmt_row(r) for r in rows],
        "",
    ]
    if comparison:
        md.append(
            "small-text GreedyCoreset vs ours on the same 100k pool: "
            + ", ".join(f"{k} = {v}" for k, v in comparison.items())
        )
    text = "\n".join(md) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_results.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "comparison": comparison,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            },
            indent=1,
        )
    )
    (args.out / "scale_results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
