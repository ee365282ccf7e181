"""Per-language temperature scaling of the selection proxy on UMSAB, judged on held-out tweets.

The proxy (logistic regression on multilingual-e5-small vectors, C chosen by cross-validation
as in `curate select`) is fitted on a seeded sample of UMSAB train (``--labels`` tweets); its
per-language temperatures are fitted exactly as `curate select` does, on its 5-fold out-of-fold
probabilities of that sample (curation.quality / curation.calibration, one global temperature
below 30 labels). Then the proxy fitted on the whole sample predicts UMSAB *validation* (never
used for fitting anything), and the top-label ECE (15 bins) per language is measured before and
after the temperatures, with the log loss, next to the usual baseline of one temperature for all
languages. Medians over seeds with min-max.

    OMP_NUM_THREADS=1 python benchmarks/calibration_umsab.py --store /tmp/umsab_store
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.selection_umsab import embeddings  # noqa: E402
from curation.calibration import (  # noqa: E402
    PerLanguageTemperature,
    apply_temperature,
    expected_calibration_error,
)
from curation.quality import MIN_LABELS_FOR_TEMPERATURE, out_of_fold_probabilities  # noqa: E402
from selection.proxy import LogisticProxy  # noqa: E402

LABELS = ["negative", "neutral", "positive"]


def main() -> None:
    from sklearn.metrics import log_loss

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/umsab"))
    parser.add_argument("--store", type=Path, default=Path("/tmp/umsab_store"))
    parser.add_argument("--model", default="multilingual-e5-small")
    parser.add_argument("--labels", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    _, y, lang, X = embeddings(args.data_dir / "train.jsonl", args.model, args.store)
    _, yt, lt, Xt = embeddings(args.data_dir / "validation.jsonl", args.model, args.store)
    y, lang, yt, lt = (np.asarray(a, dtype=object) for a in (y, lang, yt, lt))
    test_index = np.array([LABELS.index(v) for v in yt])
    rows = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        sample = rng.choice(len(y), size=args.labels, replace=False)
        oof = out_of_fold_probabilities(X[sample], y[sample], LABELS, seed=seed)
        calibrator = PerLanguageTemperature(min_labels=MIN_LABELS_FOR_TEMPERATURE).fit(
            oof, [LABELS.index(v) for v in y[sample]], lang[sample]
        )
        proxy = LogisticProxy(LABELS, random_state=seed).fit(X[sample], y[sample])
        raw = proxy.predict_proba(Xt)
        calibrated = calibrator.transform(raw, lt)
        # Baseline: one temperature for every language (the usual temperature scaling).
        one = apply_temperature(raw, calibrator.global_temperature_)
        row = {"seed": seed, "temperatures": calibrator.temperatures_, "per_language": {}}
        for code in [*sorted(set(lt.tolist())), "all"]:
            mask = np.ones(len(lt), dtype=bool) if code == "all" else lt == code
            row["per_language"][code] = {
                "test": int(mask.sum()),
                "ece_before": expected_calibration_error(raw[mask], test_index[mask]),
                "ece_after": expected_calibration_error(calibrated[mask], test_index[mask]),
                "ece_global": expected_calibration_error(one[mask], test_index[mask]),
                "log_loss_before": log_loss(test_index[mask], raw[mask], labels=[0, 1, 2]),
                "log_loss_after": log_loss(test_index[mask], calibrated[mask], labels=[0, 1, 2]),
                "log_loss_global": log_loss(test_index[mask], one[mask], labels=[0, 1, 2]),
            }
        rows.append(row)
        overall = row["per_language"]["all"]
        print(
            f"[seed {seed}] ECE {overall['ece_before']:.4f} -> {overall['ece_after']:.4f}, "
            f"log loss {overall['log_loss_before']:.4f} -> {overall['log_loss_after']:.4f}",
            file=sys.stderr,
        )
    summary = {}
    for code in rows[0]["per_language"]:
        summary[code] = {}
        for key in (
            "ece_before",
            "ece_after",
            "ece_global",
            "log_loss_before",
            "log_loss_after",
            "log_loss_global",
        ):
            values = [r["per_language"][code][key] for r in rows]
            summary[code][key] = {
                "median": float(np.median(values)),
                "min": float(min(values)),
                "max": float(max(values)),
            }
        summary[code]["temperature_median"] = (
            None
            if code == "all"
            else float(np.median([r["temperatures"].get(code, np.nan) for r in rows]))
        )
    report = {
        "train_labels": args.labels,
        "test": "UMSAB validation",
        "seeds": args.seeds,
        "model": args.model,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "date": time.strftime("%Y-%m-%d"),
        "summary": summary,
        "per_seed": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "calibration_umsab.json"
    path.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    for code, s in summary.items():
        print(
            f"{code}: ECE {s['ece_before']['median']:.4f} -> {s['ece_after']['median']:.4f} "
            f"(one T: {s['ece_global']['median']:.4f}); log loss "
            f"{s['log_loss_before']['median']:.4f} -> {s['log_loss_after']['median']:.4f} "
            f"(one T: {s['log_loss_global']['median']:.4f}); T {s['temperature_median']}"
        )
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
