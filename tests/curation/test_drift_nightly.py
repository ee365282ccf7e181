"""Drift alerts of the nightly job on real data: UMSAB tweets with the default e5 embedder.

A fresh sample of the same tweets raises no alert; a batch of another domain (the shipped
product and service reviews) with languages the pool never had (ru, zh) raises the language-mix
alert and embedding drift in the languages both share, each naming the language and signal.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, UMSAB, write_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not UMSAB.exists(), reason="../shared/data/umsab is not present"),
]

CLI = [sys.executable, "-m", "curation.cli"]
LANGUAGES = ("en", "es")


def curate(cwd: Path, *args: str) -> tuple[int, dict]:
    done = subprocess.run([*CLI, *args, "--json"], cwd=cwd, capture_output=True, text=True)
    assert done.returncode in (0, 3), done.stderr  # 3: finished with warnings
    return done.returncode, json.loads(done.stdout)


def _tweets() -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {code: [] for code in LANGUAGES}
    with (UMSAB / "train.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["language"] in rows:
                rows[row["language"]].append(row)
    for code in rows:
        random.Random(0).shuffle(rows[code])
    return rows


def _write(path: Path, rows: list[dict], *, labeled: bool) -> Path:
    keep = ("id", "text", "language", "label") if labeled else ("id", "text", "language")
    path.write_text(
        "".join(json.dumps({k: r[k] for k in keep}, ensure_ascii=False) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def test_drift_alerts_name_language_and_signal(tmp_path: Path) -> None:
    tweets = _tweets()
    write_config(
        tmp_path,
        '[store]\npath = "store"\n[labels]\nnames = ["negative", "neutral", "positive"]\n'
        '[languages]\ndetect = false\n[run]\ninbox = ["inbox"]\nqueue_target = 20\n',
    )
    labeled = [r for code in LANGUAGES for r in tweets[code][:300]]
    seed_file = _write(tmp_path / "seed.jsonl", labeled, labeled=True)
    assert curate(tmp_path, "ingest", str(seed_file))[1]["added"] > 550
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    # Night 1: a fresh sample of the same tweets.
    same = [r for code in LANGUAGES for r in tweets[code][300:450]]
    _write(inbox / "night1.jsonl", same, labeled=False)
    _, night1 = curate(tmp_path, "run")
    evaluate = night1["stages"]["evaluate"]["counts"]
    assert evaluate["drift_alerts"] == []
    # The same out-of-fold predictions reviewed the labels: tweets' own noisy labels yield
    # suspects, at most 20 per language.
    issues = evaluate["label_issues"]
    assert issues["checked"] == evaluate["labels"]
    assert 0 < issues["flagged"] <= 40 and set(issues["per_language"]) <= set(LANGUAGES)
    tested = {(t["signal"], t["language"]) for t in evaluate["drift_tested"]}
    assert {("language_mix", None), ("embedding", "en"), ("embedding", "es")} <= tested
    assert not [w for w in night1["warnings"] if "drift" in w]

    # Night 2: product reviews (another domain) in en/es, plus ru and zh (new languages).
    reviews = [
        json.loads(line)
        for line in (SAMPLES / "pool.jsonl").open(encoding="utf-8")
        if json.loads(line).get("language") in ("en", "es", "ru", "zh")
    ]
    _write(inbox / "night2.jsonl", reviews, labeled=False)
    code, night2 = curate(tmp_path, "run")
    alerts = night2["stages"]["evaluate"]["counts"]["drift_alerts"]
    assert code == 3  # warnings
    assert any(a.startswith("language_mix drift, total variation") for a in alerts)
    assert "en: embedding drift, a classifier tells the batch from the reference" in " ".join(
        alerts
    )
    assert any(a.startswith("es: embedding drift") for a in alerts)
    assert [w for w in night2["warnings"] if w.startswith("drift in tonight's batch: ")] == [
        f"drift in tonight's batch: {a}" for a in alerts
    ]
