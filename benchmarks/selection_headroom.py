"""How much could any selector gain on UMSAB with MiniLM + logistic regression, and from what?

Companion to ``selection_variants.py --set oracle``, which showed (dev protocol, 15 paired runs)
that random picks among examples a model trained on the rest of the pool labels correctly
("clean") beat random by ~+0.02 AULC, while uncertainty under the *final* model's boundary loses
~-0.02. A selector sees no labels, so the question is whether anything it does see predicts
"clean". This script measures ROC AUC of label-free signals against the clean flag
(5-fold cross-validated logistic regression on all of UMSAB train):

* typicality (inverse mean distance to the 20 nearest neighbours, per language: TypiClust);
* text length in characters;
* the proxy's confidence (largest margin) after 100 / 500 / 1,100 random labels, on the rest;
* a second, lexical view after 500 / 1,100 random labels (character 2–4-gram TF-IDF + logistic
  regression, which sees emojis and scripts that MiniLM's vocabulary drops): its confidence,
  and whether it agrees with the MiniLM proxy (co-training style evidence of an easy label).

AUC 0.5 = no information. Writes benchmarks/results/selection_headroom.json.

    OMP_NUM_THREADS=2 python benchmarks/selection_headroom.py
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from selection_umsab import embeddings, load_split  # noqa: E402

from selection.diversity import typicality  # noqa: E402
from selection.uncertainty import margin_scores  # noqa: E402


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    umsab = Path(__file__).resolve().parents[2] / "shared" / "data" / "umsab"
    ap.add_argument("--data-dir", type=Path, default=umsab)
    ap.add_argument("--emb-cache", type=Path, default=Path("/tmp/umsab_emb"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    ids, texts, labels, languages = load_split(args.data_dir / "train.jsonl")
    X = embeddings("train", ids, texts, args.emb_cache).astype(np.float64)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.asarray(labels, dtype=object)
    langs = np.asarray(languages, dtype=object)
    codes = sorted(set(langs.tolist()))

    clean = cross_val_predict(LogisticRegression(max_iter=1000), X, y, cv=5) == y
    typical = np.zeros(len(y))
    for code in codes:
        rows = np.flatnonzero(langs == code)
        typical[rows] = typicality(X[rows].astype(np.float32), 20)
    lengths = np.asarray([len(t) for t in texts], dtype=float)
    result: dict = {
        "benchmark": "selection_headroom",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "pool": len(y),
        "clean_fraction": round(float(clean.mean()), 4),
        "clean_fraction_per_language": {
            c: round(float(clean[langs == c].mean()), 3) for c in codes
        },
        "auc_typicality": round(float(roc_auc_score(clean, typical)), 4),
        "auc_text_length": round(float(roc_auc_score(clean, lengths)), 4),
        "auc_proxy_confidence": {},
    }
    rng = np.random.default_rng(0)
    for n in (100, 500, 1100):
        aucs = []
        for _ in range(args.repeats):
            labeled = rng.choice(len(y), n, replace=False)
            model = LogisticRegression(max_iter=1000).fit(X[labeled], y[labeled])
            confidence = 1.0 - margin_scores(model.predict_proba(X))
            rest = np.setdiff1d(np.arange(len(y)), labeled)
            aucs.append(round(float(roc_auc_score(clean[rest], confidence[rest])), 4))
        result["auc_proxy_confidence"][str(n)] = aucs

    from sklearn.feature_extraction.text import TfidfVectorizer

    chars = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True
    ).fit_transform(texts)
    result["char_view_cv_accuracy"] = round(
        float(
            (cross_val_predict(LogisticRegression(max_iter=1000, C=5), chars, y, cv=5) == y).mean()
        ),
        4,
    )
    result["auc_char_view_confidence"], result["auc_views_agree"] = {}, {}
    for n in (500, 1100):
        confident, agree = [], []
        for _ in range(args.repeats):
            labeled = rng.choice(len(y), n, replace=False)
            rest = np.setdiff1d(np.arange(len(y)), labeled)
            embedded = LogisticRegression(max_iter=1000).fit(X[labeled], y[labeled])
            lexical = LogisticRegression(max_iter=1000, C=5).fit(chars[labeled], y[labeled])
            p_lexical = lexical.predict_proba(chars)
            both = embedded.predict_proba(X).argmax(1) == p_lexical.argmax(1)
            margin = 1.0 - margin_scores(p_lexical)
            confident.append(round(float(roc_auc_score(clean[rest], margin[rest])), 4))
            agree.append(round(float(roc_auc_score(clean[rest], both[rest])), 4))
        result["auc_char_view_confidence"][str(n)] = confident
        result["auc_views_agree"][str(n)] = agree
    out = Path(__file__).resolve().parent / "results" / "selection_headroom.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
