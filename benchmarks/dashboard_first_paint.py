"""Dashboard first paint on a large store: 100k examples, 20 selection rounds.

The store is written directly through the store API (`Store.transaction()`, `record_round`,
`EmbeddingCache.add`): 100k examples in 8 languages with 384-d vectors, ~6k labels, 20 rounds
of 150 picks with stored allocation decisions, Label Studio tasks and annotations, quarantined
and duplicate rows, and 5 training runs.

Two measurements, each in fresh processes:

* AppTest: a child process runs `AppTest.from_file("overview.py").run()` (cold: imports, an empty
  query cache) and then again (warm), then every other page, timing each run.
* Browser (unless --no-browser, and only where /usr/bin/chromium exists): `streamlit run
  app.py` on 127.0.0.1, a fresh headless Chromium opens the Overview; "first number" is the
  time from navigation until the page's first line (the pool figures, plain Markdown) is on
  screen, "metric tiles" until the first `st.metric` value is (Streamlit loads tiles, charts
  and grids as lazy components and reveals them together), "complete" until the script run has
  finished and every chart has drawn. Measured on a freshly started server (cold); again
  in a new browser (warm server, warm cache); in a second tab of that browser (its HTTP cache
  holds Streamlit's `immutable` static files, as for a returning visitor); after a write to the
  store (warm server, cache invalidated); and, for scale, a one-metric Streamlit app in a new
  browser (Streamlit's own floor). The baseline in the same run: a cold visit to `streamlit run
  overview.py`, the same page without app.py's start-up warm-up. Server start (launch until
  /_stcore/health answers) is recorded for each server: the warm-up moves work from the first
  visit to the start.

    python benchmarks/dashboard_first_paint.py              # builds the store in a temp folder
    python benchmarks/dashboard_first_paint.py --keep /tmp/big --repeats 3
    python benchmarks/dashboard_first_paint.py --keep /tmp/big --trace   # where the time goes
    python benchmarks/dashboard_first_paint.py --keep /tmp/big --pages   # every page

Writes benchmarks/results/dashboard_first_paint.json and prints the same JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
LANGUAGES = ("ar", "de", "en", "es", "fr", "hi", "ru", "zh")
LABELS = ("negative", "neutral", "positive")
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# The Overview's first line (plain Markdown, the figures in bold): the first number on screen.
SUMMARY = ".st-key-overview-summary strong"


def build(folder: Path, examples: int, rounds: int, dim: int, seed: int = 0) -> dict:
    from curation.config import load_config
    from curation.embeddings import EmbeddingCache
    from curation.pool import RoundItem, record_round
    from curation.store import Store, utc_now

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "curate.toml").write_text(
        '[store]\npath = "store"\n[labels]\nnames = ["negative", "neutral", "positive"]\n',
        encoding="utf-8",
    )
    config = load_config(folder / "curate.toml")
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    now = utc_now()
    ids = [f"b{i:07d}" for i in range(examples)]
    languages = [LANGUAGES[i % len(LANGUAGES)] for i in range(examples)]
    truth = rng.integers(0, 3, size=examples)
    with Store(config.store.path) as store:
        conn = store.conn
        with store.transaction():
            conn.executemany(
                "INSERT INTO label_set (name, position) VALUES (?, ?)",
                [(name, i) for i, name in enumerate(LABELS)],
            )
            rows = []
            for i, example_id in enumerate(ids):
                detected = i % 40 == 0
                text = f"synthetic review {i} about product {i % 997} in {languages[i]}"
                rows.append(
                    (
                        example_id,
                        text,
                        text,
                        f"{i:064x}",
                        languages[i],
                        "detected" if detected else "given",
                        float(0.5 + 0.5 * rng.random()) if detected else None,
                        languages[i] if detected else None,
                        "bench",
                        "bench.jsonl",
                        i + 1,
                        None,
                        now,
                    )
                )
            conn.executemany(
                "INSERT INTO examples (id, text, raw_text, text_hash, language, language_source,"
                " language_confidence, detected_guess, source, file, line, metadata, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            labeled = rng.choice(examples, size=examples // 16, replace=False)
            conn.executemany(
                "INSERT INTO labels (example_id, label, source, updated_at) VALUES (?,?,?,?)",
                [
                    (ids[i], LABELS[truth[i]], "import" if k % 3 else "labelstudio", now)
                    for k, i in enumerate(labeled)
                ],
            )
            conn.executemany(
                "INSERT INTO duplicates (example_id, given_id, label, source, file, line, "
                "created_at) VALUES (?, NULL, NULL, 'bench', 'dupes.jsonl', ?, ?)",
                [(ids[int(i)], k + 1, now) for k, i in enumerate(rng.choice(examples, 1000))],
            )
            conn.executemany(
                "INSERT INTO quarantine (file, line, field, reason, raw, source, created_at) "
                "VALUES ('bad.jsonl', ?, 'text', ?, ?, 'bench', ?)",
                [
                    (
                        k + 1,
                        ["empty text", "text too long", "invalid language"][k % 3],
                        json.dumps({"text": "", "language": LANGUAGES[k % 8]}),
                        now,
                    )
                    for k in range(500)
                ],
            )
        cache = EmbeddingCache.for_config(store, config)
        centres = rng.standard_normal((3, dim)).astype(np.float32)
        for start in range(0, examples, 4096):
            stop = min(start + 4096, examples)
            block = centres[truth[start:stop]] + rng.standard_normal((stop - start, dim)).astype(
                np.float32
            )
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            cache.add(ids[start:stop], block)
        unlabeled = np.setdiff1d(np.arange(examples), labeled)
        order = rng.permutation(unlabeled)
        per_round = 150
        for r in range(rounds):
            picks = order[r * per_round : (r + 1) * per_round]
            per_language: dict[str, int] = {}
            items = []
            for rank, i in enumerate(picks, start=1):
                per_language[languages[i]] = per_language.get(languages[i], 0) + 1
                control = rank % 20 == 0
                items.append(
                    RoundItem(
                        ids[i],
                        rank,
                        None if control else float(rng.random()),
                        "random control" if control else "margin 0.12: uncertain",
                        LABELS[int(rng.integers(3))],
                        float(rng.random()),
                        control,
                    )
                )
            decision = {
                "method": "need",
                "budget": per_round,
                "total": per_round,
                "per_language": per_language,
                "explanations": {
                    c: f"{c}: {n} of {per_round}, validation F1 0.7"
                    for c, n in per_language.items()
                },
                "validation_f1": {
                    c: float(0.5 + 0.02 * r + 0.01 * k) for k, c in enumerate(LANGUAGES)
                },
            }
            record_round(
                store,
                strategy=["margin", "hybrid"][r % 2],
                allocation="need",
                budget=per_round,
                decision=decision,
                proxy_model_version="bench",
                items=items,
            )
        with store.transaction():
            pushed = order[: rounds * per_round // 2]
            conn.executemany(
                "INSERT INTO tasks (example_id, project_id, task_id, round_id, is_gold, "
                "pushed_at) VALUES (?, 1, ?, 1, 0, ?)",
                [(ids[i], 10_000 + k, now) for k, i in enumerate(pushed)],
            )
            annotations = []
            for k, i in enumerate(pushed[: len(pushed) * 2 // 3]):
                for a, annotator in enumerate(("ana", "ben")):
                    choice = LABELS[truth[i]] if (k + a) % 7 else LABELS[(truth[i] + 1) % 3]
                    annotations.append(
                        (
                            len(annotations) + 1,
                            10_000 + k,
                            ids[i],
                            annotator,
                            choice,
                            12.0 + (k % 30),
                            now,
                            now,
                        )
                    )
            conn.executemany(
                "INSERT INTO annotations (annotation_id, project_id, task_id, example_id, "
                "annotator, choice, was_cancelled, lead_time, created_at, pulled_at) "
                "VALUES (?, 1, ?, ?, ?, ?, 0, ?, ?, ?)",
                annotations,
            )
            for n in range(5):
                per = {c: 0.5 + 0.05 * n + 0.01 * k for k, c in enumerate(LANGUAGES)}
                metrics = {
                    "trainable_params": 73_731,
                    "total_params": 22_786_051,
                    "peak_memory_mb": 900.0 + n,
                    "wall_seconds": 600.0 + n,
                    "gpu_hours": 0.2,
                    "steps": 1000,
                    "examples": {"train": {c: 500 * (n + 1) for c in LANGUAGES}},
                    "best": {
                        "per_language": per,
                        "confusion_matrices": {
                            c: [[30, 5, 2], [4, 28, 6], [1, 5, 31]] for c in LANGUAGES
                        },
                    },
                }
                conn.execute(
                    "INSERT INTO training_runs (id, started_at, finished_at, status, config, "
                    "metrics) VALUES (?, ?, ?, 'finished', '{}', ?)",
                    (f"run-{n}", now, now, json.dumps(metrics)),
                )
    return {
        "examples": examples,
        "rounds": rounds,
        "dim": dim,
        "build_seconds": round(time.perf_counter() - started, 1),
        "config": str(folder / "curate.toml"),
    }


APPTEST_CHILD = r"""
import json, os, sys, time
os.environ["CURATE_CONFIG"] = sys.argv[1]
t0 = time.perf_counter()
from streamlit.testing.v1 import AppTest
imported = time.perf_counter() - t0
at = AppTest.from_file(sys.argv[2], default_timeout=300)
out = {"import_streamlit_s": round(imported, 3)}
t = time.perf_counter(); at.run(); out["overview_cold_s"] = round(time.perf_counter() - t, 3)
assert not at.exception, [e.value for e in at.exception]
out["pool_size_shown"] = next(m.value for m in at.metric if m.label == "Pool size")
t = time.perf_counter(); at.run(); out["overview_warm_s"] = round(time.perf_counter() - t, 3)
for page in ("1_Selection", "2_Labeling", "3_Model", "4_Quality"):
    t = time.perf_counter(); at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, (page, [e.value for e in at.exception])
    out[page.split("_")[1].lower() + "_cold_s"] = round(time.perf_counter() - t, 3)
print(json.dumps(out))
"""


def apptest(config: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", APPTEST_CHILD, config, str(REPO / "overview.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


# Paint times, recorded in the page itself. A MutationObserver notes when each target first
# matches; two animation frames later, the frame that contains it has been painted. Those times
# are `performance.now()`, i.e. milliseconds since the navigation started. (Polling from
# Playwright, as `wait_for_selector` does, saw the first number up to ~1.2 s late while the
# browser was busy; BENCHMARKS.md.)
PAINT_RECORDER = """
(targets) => {
  window.__painted = {};
  const ready = {
    first_number: () => document.querySelector(targets.first_number),
    metric_tiles: () => document.querySelector("[data-testid='stMetricValue']"),
    // Every chart on the page drawn (and at least `charts` of them), the script run over.
    complete: () => {
      if (!document.querySelector(
        "[data-testid='stApp'][data-test-script-state='notRunning'] h1")) return false;
      const charts = document.querySelectorAll("[data-testid='stVegaLiteChart']");
      const drawn = document.querySelectorAll("[data-testid='stVegaLiteChart'] canvas, " +
        "[data-testid='stVegaLiteChart'] svg.marks");
      return charts.length >= targets.charts && drawn.length >= charts.length;
    },
  };
  const seen = new Set();
  const check = () => {
    for (const [name, test] of Object.entries(ready)) {
      if (!seen.has(name) && test()) {
        seen.add(name);
        requestAnimationFrame(() => requestAnimationFrame(() => {
          window.__painted[name] = performance.now();
        }));
      }
    }
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true,
    attributes: true, attributeFilter: ["data-test-script-state"]});
}
"""
PAINTED = ("first_number", "metric_tiles", "complete")


def record_paint(page, *, first_number: str, charts: int) -> None:
    """Before the page loads: record when `first_number` (a CSS selector), the first metric
    tile and the complete page (at least `charts` charts) are painted; see `painted`."""
    targets = {"first_number": first_number, "charts": charts}
    page.add_init_script(f"({PAINT_RECORDER})({json.dumps(targets)})")


def painted(page) -> dict[str, float]:
    """Seconds from navigation until each target was painted; waits for all of them."""
    page.wait_for_function(
        f"() => window.__painted && {' && '.join(f'window.__painted.{n}' for n in PAINTED)}",
        timeout=120_000,
    )
    assert page.locator("[data-testid='stException']").count() == 0
    times = page.evaluate("() => window.__painted")
    return {name: round(times[name] / 1000, 3) for name in PAINTED}


def browser(config: str, store: Path) -> dict:
    from tests.dashboard.browser_support import chromium, dashboard_server

    out: dict = {}

    def timed(page, label: str, *, charts: int = 2) -> None:
        record_paint(page, first_number=SUMMARY, charts=charts)
        start = time.perf_counter()
        page.goto(url + "/", wait_until="commit")
        # The earlier way, kept for comparison: Playwright polls until a tile is visible.
        page.wait_for_selector("[data-testid='stMetricValue']", timeout=120_000)
        out[f"{label}_metric_tiles_polled_s"] = round(time.perf_counter() - start, 3)
        for name, seconds in painted(page).items():
            out[f"{label}_{name}_s"] = seconds

    def visit(label: str, *, returning: bool = False) -> None:
        with chromium() as page:
            timed(page, label)
            if returning:
                # The same browser opens the dashboard again in a new tab: Streamlit's static
                # files are `immutable` and come from its cache, as for a data lead's daily visit.
                timed(page.context.new_page(), "returning_browser")

    # Streamlit's own floor on this machine: a line of Markdown and one metric, measured the
    # same way.
    started: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        hello = Path(scratch) / "hello.py"
        hello.write_text(
            "import streamlit as st\n"
            'st.title("hello")\n'
            'with st.container(key="overview-summary"):\n'
            '    st.markdown("**1** example")\n'
            'st.metric("n", 1)\n'
        )
        with dashboard_server({}, script=hello, started=started) as url, chromium() as page:
            timed(page, "hello_world", charts=0)
        out["hello_world_server_start_s"] = round(started["server_start_s"], 3)

    # Baseline: the page served directly, without app.py's warm-up.
    overview = REPO / "overview.py"
    with dashboard_server({"CURATE_CONFIG": config}, script=overview, started=started) as url:
        out["no_warmup_server_start_s"] = round(started["server_start_s"], 3)
        visit("no_warmup_cold_server")

    with dashboard_server({"CURATE_CONFIG": config}, started=started) as url:
        out["server_start_s"] = round(started["server_start_s"], 3)
        visit("cold_server")
        visit("warm_server", returning=True)
        # A write changes the WAL: every cached query is read again.
        from curation.store import Store, utc_now

        with Store(store) as writer, writer.transaction() as conn:
            conn.execute(
                "INSERT INTO quarantine (file, line, field, reason, raw, source, created_at) "
                "VALUES ('late.jsonl', ?, 'text', 'empty text', '{}', 'bench', ?)",
                (time.time_ns() % 2**62, utc_now()),
            )
        visit("after_write")
    return out


def every_page(config: str) -> dict:
    """Each page opened directly by a new browser (warm server), then in a second tab of that
    browser (static files cached, as when a data lead moves between pages): its title, its
    first metric tile and the whole page (every chart drawn), painted."""
    from tests.dashboard.browser_support import PAGES, chromium, dashboard_server

    out: dict = {}

    def timed(page, url: str, label: str) -> None:
        record_paint(page, first_number="h1", charts=1)
        page.goto(url, wait_until="commit")
        for name, seconds in painted(page).items():
            out[f"{label}_{'title' if name == 'first_number' else name}_s"] = seconds

    with dashboard_server({"CURATE_CONFIG": config}) as url:
        for path, _, _ in PAGES:  # warm the server's caches first
            with chromium() as page:
                page.goto(url + path)
                page.wait_for_selector("[data-testid='stMetricValue']", timeout=120_000)
        for path, title, _ in PAGES:
            with chromium() as page:
                timed(page, url + path, f"{title.lower()}_new_browser")
                timed(page.context.new_page(), url + path, f"{title.lower()}_second_tab")
    return out


# Records, in the page, when an element of each kind first entered the DOM (ms since navigation).
APPEARED = """
window.__appeared = {};
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[data-testid]')) {
    const kind = el.getAttribute('data-testid');
    if (!(kind in window.__appeared)) window.__appeared[kind] = Math.round(performance.now());
  }
}).observe(document, {subtree: true, childList: true});
"""
# Plain elements (in Streamlit's main bundle) and lazily loaded ones, as the Overview uses them.
ELEMENT_KINDS = (
    "stHeading",
    "stMarkdownContainer",
    "stCaptionContainer",
    "stSkeleton",
    "stPageLink",
    "stMultiSelect",
    "stMetric",
    "stVegaLiteChart",
    "stDataFrame",
)


def trace(config: str) -> dict:
    """Where a warm visit's time goes: when the last WebSocket frame (the script's elements)
    arrived, when the last static file finished loading, when the first number and the first
    metric tile showed, and when each kind of element first entered the page."""
    from tests.dashboard.browser_support import chromium, dashboard_server

    with dashboard_server({"CURATE_CONFIG": config}) as url:
        with chromium() as page:  # warm the server's caches first
            page.goto(url + "/")
            page.wait_for_selector("[data-testid='stMetricValue']", timeout=120_000)
        with chromium() as page:
            frames: list[float] = []
            files: list[float] = []
            page.add_init_script(APPEARED)
            start = time.perf_counter()

            def on_socket(socket) -> None:
                socket.on("framereceived", lambda _: frames.append(time.perf_counter() - start))

            page.on("websocket", on_socket)
            page.on("requestfinished", lambda _: files.append(time.perf_counter() - start))
            page.goto(url + "/", wait_until="commit")
            page.wait_for_selector(SUMMARY, timeout=120_000)
            first_number = time.perf_counter() - start
            page.wait_for_selector("[data-testid='stMetricValue']", timeout=120_000)
            first_metric = time.perf_counter() - start
            page.wait_for_timeout(2500)
            appeared = page.evaluate("() => window.__appeared")
    before = [t for t in files if t <= first_metric]
    return {
        "first_websocket_frame_s": round(min(frames), 3),
        "last_websocket_frame_s": round(max(frames), 3),
        "static_files_before_metric": len(before),
        "last_static_file_before_metric_s": round(max(before), 3),
        "first_number_polled_s": round(first_number, 3),
        "first_metric_polled_s": round(first_metric, 3),
        "element_first_in_dom_ms": {kind: appeared.get(kind) for kind in ELEMENT_KINDS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the store in this folder")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="only trace one warm visit (WebSocket frames, static files) and print it",
    )
    parser.add_argument(
        "--pages",
        action="store_true",
        help="only time every page (new browser, then a second tab); "
        "writes benchmarks/results/dashboard_pages.json",
    )
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    if (folder / "store" / "curate.db").is_file():
        setup = {
            "examples": args.examples,
            "rounds": args.rounds,
            "dim": args.dim,
            "reused": str(folder),
            "config": str(folder / "curate.toml"),
        }
    else:
        setup = build(folder, args.examples, args.rounds, args.dim)
    config = setup["config"]
    if args.trace:
        print(json.dumps({"setup": setup, "trace": trace(config)}, indent=2))
        return
    if args.pages:
        runs = [every_page(config) for _ in range(args.repeats)]
        result = {
            "benchmark": "dashboard_pages",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]},
            "setup": setup,
            "median": {key: statistics.median(r[key] for r in runs) for key in runs[0]},
            "runs": runs,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "dashboard_pages.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    runs = [apptest(config) for _ in range(args.repeats)]
    summary = {
        key: statistics.median(r[key] for r in runs)
        for key in runs[0]
        if isinstance(runs[0][key], float)
    }
    result = {
        "benchmark": "dashboard_first_paint",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m": os.getloadavg()[0],
        },
        "setup": setup,
        "apptest_median": summary,
        "apptest_runs": runs,
    }
    if not args.no_browser and Path("/usr/bin/chromium").exists():
        browser_runs = [browser(config, folder / "store") for _ in range(args.repeats)]
        result["browser_median"] = {
            key: statistics.median(r[key] for r in browser_runs) for key in browser_runs[0]
        }
        result["browser_runs"] = browser_runs
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dashboard_first_paint.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
