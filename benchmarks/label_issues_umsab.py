"""How well do suspected label errors find real flips? UMSAB train, 5% of labels flipped.

For each seed: flip ``--flip`` of UMSAB train's labels to another class (seeded), compute the
proxy's out-of-fold probabilities (logistic regression on multilingual-e5-small vectors, C chosen
once by cross-validation as in `curate select`, then 5-fold out-of-fold predictions), and flag
suspects with ``labeling.label_issues.find_label_issues_per_language`` (cleanlab). Reported:
precision and recall of the flagged set against the flipped set, overall and per language, with
no cap and with the default cap of 20 per language, next to the plain baseline "flag every label
the model disagrees with" -- medians over seeds with the min-max spread.

The data are tweets with noisy gold labels of their own, so "precision" counts only our flips:
a flagged example whose *original* label is wrong counts against us here.

    OMP_NUM_THREADS=1 python benchmarks/label_issues_umsab.py --store /tmp/umsab_store
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.selection_umsab import embeddings  # noqa: E402
from labeling.label_issues import find_label_issues_per_language  # noqa: E402
from selection.proxy import LogisticProxy  # noqa: E402

LABELS = ["negative", "neutral", "positive"]


def _out_of_fold(vectors: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """5-fold out-of-fold probabilities (columns in LABELS order), C chosen once on all rows
    and fixed in every fold, as the pipeline's evaluation does."""
    from sklearn.model_selection import StratifiedKFold

    strength = LogisticProxy(LABELS, random_state=seed).choose_C(vectors, labels)
    probabilities = np.zeros((len(labels), len(LABELS)))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    for train, test in folds.split(vectors, labels):
        proxy = LogisticProxy(LABELS, C=strength, random_state=seed).fit(
            vectors[train], labels[train]
        )
        assert list(proxy.classes_) == LABELS
        probabilities[test] = proxy.predict_proba(vectors[test])
    return probabilities


def _scores(found: set[str], flipped: set[str]) -> dict:
    hit = len(found & flipped)
    return {
        "flagged": len(found),
        "precision": hit / len(found) if found else float("nan"),
        "recall": hit / len(flipped) if flipped else float("nan"),
    }


def run(args: argparse.Namespace) -> dict:
    train = args.data_dir / "train.jsonl"
    ids, labels, languages, vectors = embeddings(train, args.model, args.store)
    ids_a, labels_a, lang_a = np.array(ids), np.array(labels, dtype=object), np.array(languages)
    per_seed = []
    for seed in range(args.seeds):
        t = time.perf_counter()
        rng = np.random.default_rng(seed)
        given = labels_a.copy()
        flip = rng.choice(len(given), size=int(round(args.flip * len(given))), replace=False)
        for position in flip:
            others = [name for name in LABELS if name != given[position]]
            given[position] = others[rng.integers(0, 2)]
        flipped = set(ids_a[flip].tolist())
        probabilities = _out_of_fold(vectors, given, seed)
        row: dict = {"seed": seed}
        for cap_name, cap in (("uncapped", 10**9), ("cap20", 20)):
            issues = find_label_issues_per_language(
                ids_a, given, lang_a, probabilities, LABELS, max_per_language=cap
            )
            found = {issue.example_id for issue in issues}
            row[cap_name] = _scores(found, flipped)
            row[cap_name]["per_language"] = {
                language: _scores(
                    {i.example_id for i in issues if i.language == language},
                    {e for e in flipped if lang_a[ids_a == e][0] == language},
                )
                for language in sorted(set(languages))
            }
        disagree = np.asarray(LABELS, dtype=object)[probabilities.argmax(axis=1)] != given
        row["baseline_disagreement"] = _scores(set(ids_a[disagree].tolist()), flipped)
        # The same cap without cleanlab's pruning: the 20 least self-confident per language.
        self_confidence = probabilities[np.arange(len(given)), [LABELS.index(g) for g in given]]
        lowest: set[str] = set()
        for language in sorted(set(languages)):
            members = np.flatnonzero(lang_a == language)
            lowest |= set(ids_a[members[np.argsort(self_confidence[members])[:20]]].tolist())
        row["baseline_lowest_self_confidence_cap20"] = _scores(lowest, flipped)
        row["seconds"] = time.perf_counter() - t
        per_seed.append(row)
        print(
            f"[seed {seed}] cleanlab P {row['uncapped']['precision']:.3f} "
            f"R {row['uncapped']['recall']:.3f} ({row['uncapped']['flagged']} flagged); "
            f"disagreement P {row['baseline_disagreement']['precision']:.3f} "
            f"R {row['baseline_disagreement']['recall']:.3f}; {row['seconds']:.0f}s",
            file=sys.stderr,
        )

    def summary(path: list[str]) -> dict:
        values = []
        for row in per_seed:
            value = row
            for key in path:
                value = value[key]
            values.append(value)
        return {"median": float(np.median(values)), "min": min(values), "max": max(values)}

    report = {
        "data": "UMSAB train",
        "rows": len(ids),
        "flip": args.flip,
        "seeds": args.seeds,
        "model": args.model,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs, no GPU",
        "date": time.strftime("%Y-%m-%d"),
        "summary": {
            name: {metric: summary([name, metric]) for metric in ("precision", "recall", "flagged")}
            for name in (
                "uncapped",
                "cap20",
                "baseline_disagreement",
                "baseline_lowest_self_confidence_cap20",
            )
        },
        "per_language_uncapped": {
            language: {
                metric: summary(["uncapped", "per_language", language, metric])
                for metric in ("precision", "recall")
            }
            for language in sorted(set(languages))
        },
        "per_seed": per_seed,
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/umsab"))
    parser.add_argument("--store", type=Path, default=Path("/tmp/umsab_store"))
    parser.add_argument("--model", default="multilingual-e5-small")
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "label_issues_umsab.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
