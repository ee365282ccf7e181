"""Every dashboard page under `streamlit.testing.v1.AppTest`, against a fixture store built with
the project's own ingest / embed-cache / select code (see fixture_store.py).

The numbers the pages show are checked against independent reads of the store (plain SQL or
`Store.status()`), and the empty, missing, older and locked store cases must show states, never
an exception.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curation.store import Store
from dashboard import queries
from tests.dashboard.fixture_store import XSS_TEXT, build_store

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "dashboard" / "web" / "overview.py")
PAGES = ["pages/1_Selection.py", "pages/2_Labeling.py", "pages/3_Model.py", "pages/4_Quality.py"]
TIMEOUT = 120  # a loaded 2-core CI machine; the app itself takes ~2 s cold


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_store(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture()
def project(built: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("CURATE_CONFIG", str(built["config"]))
    monkeypatch.delenv("CURATE_STORE", raising=False)
    return built


def run(page: str | None = None, at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def sql(store: Path, query: str, *args) -> list[tuple]:
    with Store(store, read_only=True) as s:
        return [tuple(r) for r in s.conn.execute(query, args).fetchall()]


# -- pages against the fixture store -------------------------------------------------------------


def test_overview_numbers_match_the_store(project: dict) -> None:
    at = run()
    shown = metrics(at)
    assert shown["Pool size"] == str(project["pool"]) == "322"
    assert shown["Labeled"] == str(project["labeled"])
    assert shown["In Label Studio"] == str(project["in_label_studio"])
    assert shown["Quarantined"] == str(project["quarantined"]) == "8"
    assert shown["Exact duplicates linked"] == str(project["duplicates"]) == "4"
    assert shown["Embedded"] == "322"
    assert shown["Ever selected"] == "88"  # rounds of 40 and 48
    assert shown["Languages"] == "8"
    assert shown["Labels bought"] == str(
        sql(project["store"], "SELECT COUNT(*) FROM labels WHERE source != 'import'")[0][0]
    )
    assert shown["Labels requested"] == "88"
    assert shown["GPU minutes"] == "45.0"  # 0.25 h + 0.5 h recorded by two runs
    table = at.dataframe[0].value.set_index("language")
    for code, counts in project["per_language"].items():
        assert table.loc[code, "pool"] == counts["examples"]
        assert table.loc[code, "labeled"] == counts["labeled"]
    assert table["quarantined"].sum() == 8
    # By the language tag in the rejected row (a CSV line read with its file's header), when it
    # is valid BCP-47: samples/pool_bad.csv's rows 4 (fr), 6, 7, 10, 12 (en); its row 9
    # ('xx-QQ123'), its malformed row 11 and the JSON row tagged 'xx-notalanguage' have none.
    quarantined = table.loc[table["quarantined"] > 0, "quarantined"].to_dict()
    assert quarantined == {"(unknown)": 3, "en": 4, "fr": 1}
    assert charts(at) == 2
    assert not at.error
    # The first line of the page repeats the figures as plain Markdown (it paints first).
    nightly = (
        "no nightly run recorded yet"
        if project["nightly"] is None
        else "last nightly run finished, started 11-02 01:00 UTC"
    )
    assert at.markdown[0].value == (
        f"**322** examples in **8** languages · **{project['labeled']}** labeled · "
        f"**{project['in_label_studio']}** in Label Studio · **8** quarantined · {nightly}"
    )
    if project["nightly"] is not None:
        assert shown["Status"] == "finished"
        assert shown["Started (UTC)"] == "11-02 01:00"
        assert shown["Took"] == "42 min"
        assert shown["Runs recorded"] == "1"
        assert any(
            t.value
            == "run night-2026-11-02: 2026-11-02T01:00:00+00:00 -> 2026-11-02T01:42:00+00:00"
            for t in at.text
        )
        assert any("hi: fewer than 10 validation labels" in t.value for t in at.text)


def test_selection_rounds_items_decision_and_map(project: dict) -> None:
    at = run(PAGES[0])
    first, second = project["rounds"]
    shown = metrics(at)
    assert shown["Rounds"] == "2"
    assert shown["Examples selected"] == str(first["selected"] + second["selected"])
    assert shown["Random control"] == str(first["control"] + second["control"])
    assert shown["Latest round"] == "#2"
    # The latest round's picks, with language, score and reason, in rank order.
    items = at.dataframe[1].value
    assert len(items) == second["selected"] == int(shown["Examples shown"])
    assert list(items["rank"]) == list(range(1, len(items) + 1))
    assert items["reason"].map(bool).all()
    assert items.groupby("language").size().to_dict() == second["per_language"]
    # The allocator's decision as stored: per-language counts and explanations.
    assert shown["Method"] == "need" and shown["Budget"] == "48" and shown["Allocated"] == "48"
    decision = at.dataframe[2].value.set_index("language")
    for code, text in second["explanations"].items():
        assert decision.loc[code, "explanation"] == text
    assert charts(at) == 3  # rounds, allocation, map

    at.selectbox(key="selection_round").select_index(1).run()  # round 1
    items = at.dataframe[1].value
    assert len(items) == 40 and metrics(at)["Method"] == "equal"
    assert items["control"].sum() == first["control"] == 8
    at.multiselect(key="selection_strategy").set_value(["margin"]).run()
    options = at.selectbox(key="selection_round").options
    assert len(options) == 1 and options[0].startswith("#1 · margin")
    at.multiselect(key="selection_round_languages").set_value(["ar", "zh"]).run()
    assert set(at.dataframe[1].value["language"]) == {"ar", "zh"}
    assert metrics(at)["Examples shown"] == "10"


def test_selection_map_marks_latest_picks(project: dict) -> None:
    at = run(PAGES[0])
    spec = json.loads(at.get("vega_lite_chart")[2].proto.spec)
    assert spec["encoding"]["shape"]["field"] == "status"
    assert any("322 embedded" in c.value for c in at.caption)


@pytest.mark.slow
def test_selection_map_switches_to_umap(project: dict) -> None:
    # umap-learn is a dev dependency, so the UMAP branch runs here, not only PCA.
    at = run(PAGES[0])
    radio = at.radio(key="selection_map_method")
    assert radio.options == ["PCA", "UMAP"] and radio.value == "PCA"
    radio.set_value("UMAP").run(timeout=180)
    assert not at.exception
    captions = [c.value for c in at.caption if "points (" in c.value]
    assert len(captions) == 1 and captions[0].startswith("UMAP of 322 points")
    spec = json.loads(at.get("vega_lite_chart")[2].proto.spec)
    assert spec["encoding"]["shape"]["field"] == "status"


def test_global_language_filter_survives_page_switches(project: dict) -> None:
    at = run()
    at.multiselect(key="language_filter").set_value(["hi"]).run()
    assert metrics(at)["Pool size"] == str(project["per_language"]["hi"]["examples"])
    at.switch_page(PAGES[0]).run()
    assert at.multiselect(key="language_filter").value == ["hi"]
    items = at.dataframe[1].value
    assert set(items["language"]) == {"hi"}
    assert metrics(at)["Examples selected"] == str(
        project["rounds"][0]["per_language"]["hi"] + project["rounds"][1]["per_language"]["hi"]
    )


def _check_labeling(at: AppTest, project: dict, store: Path) -> dict[str, str]:
    """What the Labeling page shows whatever the source of its per-language tables."""
    shown = metrics(at)
    expected = project["labelstudio"]
    assert shown["Tasks pushed"] == str(expected["tasks"]) == "44"
    assert shown["Annotated"] == "36"  # every 5th round task is not annotated yet
    assert shown["Waiting"] == str(project["in_label_studio"])
    assert shown["Waiting for adjudication"] == str(expected["queue"]) == "5"
    assert shown["Annotators"] == "4"  # ana, ben, chen, and dee who only skipped
    # Overall agreement, recomputed here from the raw annotations with a direct formula.
    rows = sql(
        store, "SELECT task_id, choice FROM annotations WHERE was_cancelled = 0 AND deleted = 0"
    )
    by_task: dict[int, list[str]] = {}
    for task, choice in rows:
        by_task.setdefault(task, []).append(choice)
    overlap = [c for c in by_task.values() if len(c) >= 2]
    percent = sum(
        sum(a == b for i, a in enumerate(c) for j, b in enumerate(c) if i != j)
        / (len(c) * (len(c) - 1))
        for c in overlap
    ) / len(overlap)
    assert shown["Items with overlap"] == str(len(overlap))
    assert shown["Percent agreement"] == f"{100 * percent:.1f}%"
    annotators = at.dataframe[2].value.set_index("annotator")
    assert annotators.loc["dee", "annotations"] == 0 and annotators.loc["dee", "skipped"] == 1
    assert charts(at) == 2
    return shown


def test_labeling_reads_what_the_last_pull_stored(project: dict) -> None:
    at = run(PAGES[1])
    shown = _check_labeling(at, project, project["store"])
    if not project["labelstudio"]["stored"]:
        pytest.skip("this store has no agreement_stats / annotator_gold / adjudication_queue")
    # The latest pull's rows, not the older one's.
    latest = sql(
        project["store"],
        "SELECT language, krippendorff_alpha, fleiss_kappa, percent_agreement FROM "
        "agreement_stats WHERE computed_at = (SELECT MAX(computed_at) FROM agreement_stats) "
        "ORDER BY language",
    )
    table = at.dataframe[1].value
    assert [tuple(r) for r in table[["language", "alpha", "kappa", "percent"]].to_numpy()] == [
        tuple(r) for r in latest
    ]
    annotators = at.dataframe[2].value.set_index("annotator")
    assert annotators.loc["ana", "gold_accuracy"] == 1.0
    assert annotators.loc["ben", "gold_accuracy"] == 0.5
    assert shown["Gold accuracy"] == "75.0%"  # 3 of 4 gold answers at the latest pull
    queue = at.dataframe[3].value
    assert len(queue) == project["labelstudio"]["queue"] and set(queue["reason"]) == {"tie"}
    assert queue["votes"].str.contains(": 1").all()


def test_labeling_computes_from_annotations_without_pull_tables(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(built["store"], tmp_path / "store")
    conn = sqlite3.connect(tmp_path / "store" / "curate.db")
    for table in ("agreement_stats", "annotator_gold", "adjudication_queue"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.commit()
    conn.close()
    monkeypatch.setenv("CURATE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CURATE_CONFIG", str(built["config"]))
    at = run(PAGES[1])
    shown = _check_labeling(at, built, tmp_path / "store")
    gold = sql(
        tmp_path / "store",
        "SELECT a.choice = l.label FROM annotations a JOIN tasks t ON t.project_id = "
        "a.project_id AND t.task_id = a.task_id JOIN labels l ON l.example_id = a.example_id "
        "WHERE t.is_gold = 1 AND a.was_cancelled = 0",
    )
    assert shown["Gold accuracy"] == f"{100 * sum(g[0] for g in gold) / len(gold):.1f}%"
    annotators = at.dataframe[2].value.set_index("annotator")
    assert annotators.loc["ana", "gold_accuracy"] == 1.0
    assert annotators.loc["ben", "gold_accuracy"] == 0.75
    per_language = at.dataframe[1].value
    assert per_language["items"].sum() == int(shown["Items with overlap"])
    queue = at.dataframe[3].value
    assert len(queue) == built["labelstudio"]["queue"]
    assert (queue["top_share"] == 0.5).all()  # ana and ben split


def test_model_curves_gap_confusion_costs_savings(project: dict) -> None:
    at = run(PAGES[2])
    shown = metrics(at)
    best = project["training_runs"][-1]["metrics"]["best"]["per_language"]
    worst = min(best, key=best.get)
    assert shown["Worst language"] == worst == "hi"
    assert shown["Worst-language macro-F1"] == f"{best[worst]:.3f}"
    mean = sum(best.values()) / len(best)
    assert shown["Gap to the mean"] == f"{mean - best[worst]:.3f}"
    assert shown["Runs"] == "2"
    assert shown["Trainable parameters (latest)"] == "147,462"
    assert shown["Peak memory MB (latest)"] == "1012"
    assert shown["Wall time s (latest)"] == "190"
    assert shown["Best label saving vs random (macro-F1)"] == "33.3%"
    # runs curve, (evaluations curve,) proxy curve, confusion, cost, simulation
    assert charts(at) == 5 + project["evaluations"]
    frames = [frame.value for frame in at.dataframe]
    (runs,) = [f for f in frames if "trainable_params" in f.columns]
    assert list(runs["trainable_params"]) == [73_731, 147_462]
    # Calibration: the fixture's training runs have none, so the proxy's latest is shown.
    (calibration,) = [f for f in frames if "ece_after" in f.columns]
    with Store(project["store"], read_only=True) as store:
        stored = queries.proxy_calibration(store)
    assert stored is not None
    assert list(calibration["language"]) == [*sorted(set(stored["report"]) - {"all"}), "all"]
    for row in calibration.itertuples():
        assert (row.ece_before, row.ece_after) == (
            stored["report"][row.language]["ece_before"],
            stored["report"][row.language]["ece_after"],
        )
    # Strategy picks vs random control picks, on labels bought since (round_items + labels).
    control = at.dataframe[-1].value
    bought = sql(
        project["store"],
        "SELECT r.is_control, COUNT(*) FROM round_items r JOIN labels l ON l.example_id = "
        "r.example_id WHERE l.source != 'import' AND r.predicted_label IS NOT NULL GROUP BY 1",
    )
    assert (control["strategy_labeled"].sum(), control["control_labeled"].sum()) == (
        dict(bought)[0],
        dict(bought)[1],
    )


def test_quality_quarantine_duplicates_detection(project: dict) -> None:
    at = run(PAGES[3])
    shown = metrics(at)
    assert shown["Quarantined rows"] == "8"
    assert shown["Texts seen more than once"] == "4"
    assert shown["Clusters"] == "1" and shown["Examples in clusters"] == "3"  # planted
    assert shown["Detected"] == str(project["detected"]) == "24"
    assert shown["Given by the data"] == "298"
    quarantine = at.dataframe[0].value
    reasons = {r[0] for r in sql(project["store"], "SELECT reason FROM quarantine")}
    assert set(quarantine["reason"]) == reasons
    by_line = dict(zip(quarantine["line"], quarantine["language"], strict=True))
    assert by_line == {
        4: "fr",
        6: "en",
        7: "en",
        9: "(unknown)",
        10: "en",
        11: "(unknown)",
        12: "en",
        322: "(unknown)",
    }
    # A row holding markup is kept as the literal text, for a grid cell to show as text.
    assert quarantine["raw"].str.contains("<script>alert('xss')</script>", regex=False).any()
    near = at.dataframe[2].value
    assert sorted(near["example_id"]) == ["de-0020", "en-0020", "fr-0020"]
    assert charts(at) == 2


def test_store_text_is_never_rendered_as_markup(project: dict) -> None:
    """No data goes through Markdown/HTML: the XSS row only ever appears inside data cells."""
    for page in [None, *PAGES]:
        at = run(page)
        for element in [*at.markdown, *at.caption, *at.title, *at.subheader, *at.info]:
            assert "<script>" not in element.value
    sources = [
        REPO / "app.py",
        *sorted((REPO / "dashboard").rglob("*.py")),
    ]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for banned in ("unsafe_allow_html", "st.html(", "components.html", "components.v1"):
            assert banned not in text, f"{path.name} uses {banned}"
    assert XSS_TEXT.startswith("<script>")


def test_tasks_written_to_an_import_file_are_counted_apart(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no Label Studio server, push writes an import file and records the tasks under
    project 0: they are "written to file", not "in Label Studio" (issue 16)."""
    from curation.config import load_config
    from labeling.push import write_import_file

    project = tmp_path / "project"
    shutil.copytree(built["config"].parent, project)
    config = load_config(project / "curate.toml")
    with Store(config.store.path) as store:
        written = write_import_file(store, config, tmp_path / "tasks.json", round_id=2)
    second = built["rounds"][1]
    assert written["pushed"] == second["selected"] == 48
    monkeypatch.setenv("CURATE_CONFIG", str(project / "curate.toml"))
    monkeypatch.delenv("CURATE_STORE", raising=False)
    at = run()
    shown = metrics(at)
    assert shown["In Label Studio"] == str(built["in_label_studio"])  # project 1 only, as before
    assert shown["Written to file"] == "48"
    table = at.dataframe[0].value.set_index("language")
    assert table["written to file"][table["written to file"] > 0].to_dict() == {
        code: count for code, count in second["per_language"].items() if count
    }
    assert at.markdown[0].value.startswith(
        f"**322** examples in **8** languages · **{built['labeled']}** labeled · "
        f"**{built['in_label_studio']}** in Label Studio · **48** written to file · "
        "**8** quarantined · "
    )
    # The pool chart's statuses stay disjoint: the written examples left "selected, not pushed".
    with Store(config.store.path, read_only=True) as store:
        status = queries.pool_status(store).groupby("status")["examples"].sum().to_dict()
    assert status["written to file"] == 48
    assert sum(status.values()) == 322
    assert status["in Label Studio"] == built["in_label_studio"]


def test_labeling_shows_estimated_annotator_accuracy_and_suspected_label_errors(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a pull with Dawid-Skene and the label review stored (issue 15)."""
    if not built["labelstudio"]["stored"]:
        pytest.skip("this store has no pull tables")
    project = tmp_path / "project"
    shutil.copytree(built["config"].parent, project)
    store_path = project / Path(built["store"]).relative_to(built["config"].parent)
    with Store(store_path) as store, store.transaction() as conn:
        for annotator, accuracy in (("ana", 0.91), ("ben", 0.62)):
            conn.execute(
                "INSERT INTO annotator_quality (computed_at, annotator, method, answers, "
                "accuracy) VALUES ('2026-11-29T10:00:00+00:00', ?, 'dawid_skene', 10, ?)",
                (annotator, accuracy),
            )
        suspects = [
            row[0]
            for row in conn.execute(
                "SELECT l.example_id FROM labels l JOIN examples e ON e.id = l.example_id "
                "WHERE e.language IN ('de', 'fr') AND l.example_id NOT IN "
                "(SELECT example_id FROM adjudication_queue) ORDER BY l.example_id LIMIT 3"
            )
        ]
        for example_id in suspects:
            conn.execute(
                "INSERT INTO adjudication_queue (example_id, reason, votes, agreement, "
                "updated_at) VALUES (?, 'suspected_label_error: given: negative, model: "
                "positive 0.90, self-confidence 0.05', '{}', NULL, '2026-11-29')",
                (example_id,),
            )
        languages = [
            row[0]
            for row in conn.execute(
                f"SELECT language FROM examples WHERE id IN ({','.join('?' * len(suspects))})",
                suspects,
            )
        ]
    monkeypatch.setenv("CURATE_CONFIG", str(project / "curate.toml"))
    monkeypatch.delenv("CURATE_STORE", raising=False)
    at = run(PAGES[1])
    annotators = at.dataframe[2].value.set_index("annotator")
    assert annotators.loc["ana", "estimated_accuracy"] == 0.91
    assert annotators.loc["ben", "estimated_accuracy"] == 0.62
    assert any("Dawid-Skene" in c.value for c in at.caption)
    counted = {code: languages.count(code) for code in sorted(set(languages))}
    expected = f"**{len(suspects)}** suspected label errors: " + ", ".join(
        f"{code} **{n}**" for code, n in counted.items()
    )
    assert expected in [m.value for m in at.markdown]


def test_the_import_file_project_is_the_one_push_writes() -> None:
    from labeling.push import OFFLINE_PROJECT

    assert queries.IMPORT_FILE_PROJECT == OFFLINE_PROJECT


# -- store states: empty, missing, older schema, newer schema, locked, changed -----------------


def test_empty_store_shows_empty_states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(tmp_path / "store").close()
    monkeypatch.setenv("CURATE_STORE", str(tmp_path / "store"))
    at = run()
    assert metrics(at)["Pool size"] == "0"
    assert at.markdown[0].value == (
        "**0** examples in **0** languages · **0** labeled · **0** in Label Studio · "
        "**0** quarantined · no nightly run recorded yet"
    )
    assert any("no examples yet" in i.value for i in at.info)
    for page in PAGES:
        at = run(page, at)
        assert at.info, page  # each page says what is missing
        assert not at.error, page


def test_missing_store_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURATE_STORE", str(tmp_path / "nowhere"))
    at = run()
    assert any("No store yet" in i.value for i in at.info)
    assert not at.metric
    for page in PAGES:
        at = run(page, at)
        assert any("No store yet" in i.value for i in at.info)
    assert not (tmp_path / "nowhere").exists()  # a reader creates nothing


def test_tables_not_there_yet_give_empty_states(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store without the labeling/training tables (or with other columns) must not crash."""
    shutil.copytree(built["store"], tmp_path / "store")
    conn = sqlite3.connect(tmp_path / "store" / "curate.db")
    for table in (
        "annotations",
        "tasks",
        "training_runs",
        "runs",
        "run_steps",
        "evaluations",
        "duplicates",
        "agreement_stats",
        "annotator_gold",
        "adjudication_queue",
    ):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute("ALTER TABLE round_items DROP COLUMN predicted_score")
    conn.commit()
    conn.close()
    monkeypatch.setenv("CURATE_STORE", str(tmp_path / "store"))
    at = run()
    assert metrics(at)["Pool size"] == "322" and metrics(at)["In Label Studio"] == "0"
    assert not at.error
    for page in PAGES:
        at = run(page, at)
        assert not at.error, (page, [e.value for e in at.error])
    assert any("Nothing pushed to Label Studio" in i.value for i in run(PAGES[1], at).info)


def test_newer_schema_is_an_error_box_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(tmp_path / "store").close()
    conn = sqlite3.connect(tmp_path / "store" / "curate.db")
    conn.execute("INSERT INTO schema_version VALUES (99, '2030-01-01')")
    conn.commit()
    conn.close()
    monkeypatch.setenv("CURATE_STORE", str(tmp_path / "store"))
    at = run()
    assert [e.value for e in at.error] == ["The store could not be opened read-only."]
    assert any("schema version 99" in t.value for t in at.text)


def test_reads_while_a_writer_holds_the_lock_and_sees_commits(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(built["store"], tmp_path / "store")
    monkeypatch.setenv("CURATE_STORE", str(tmp_path / "store"))
    writer = Store(tmp_path / "store")
    try:
        writer.conn.execute("BEGIN IMMEDIATE")  # a nightly job mid-transaction
        writer.conn.execute(
            "INSERT INTO quarantine (file, line, field, reason, raw, source, created_at) "
            "VALUES ('late.jsonl', 1, 'text', 'empty text', NULL, 'job', '2026-11-03')"
        )
        at = run()  # must not wait for the writer nor fail with "database is locked"
        assert metrics(at)["Quarantined"] == "8"  # the last committed state
        writer.conn.execute("COMMIT")
        at.run()  # the WAL changed: the cached reads are invalidated
        assert metrics(at)["Quarantined"] == "9"
    finally:
        writer.close()


# -- store resolution ----------------------------------------------------------------------------


def test_store_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.source import fingerprint, resolve_source

    (tmp_path / "curate.toml").write_text('[store]\npath = "from-config"\n')
    monkeypatch.setenv("CURATE_CONFIG", str(tmp_path / "curate.toml"))
    assert resolve_source([]).store_path == (tmp_path / "from-config").resolve()
    monkeypatch.setenv("CURATE_STORE", str(tmp_path / "from-env"))
    assert resolve_source([]).store_path == (tmp_path / "from-env").resolve()
    source = resolve_source(["--store", str(tmp_path / "from-argv")])
    assert source.store_path == (tmp_path / "from-argv").resolve()
    assert source.origin == "--store"
    monkeypatch.setenv("CURATE_CONFIG", str(tmp_path / "missing.toml"))
    assert "config file not found" in resolve_source([]).config_error
    assert fingerprint(tmp_path / "none.db") == (0, 0, 0, 0)


def test_fingerprint_ignores_the_empty_wal_a_reader_creates(tmp_path: Path) -> None:
    from dashboard.source import fingerprint, open_read_only

    with Store(tmp_path / "store") as writer, writer.transaction() as conn:
        conn.execute(
            "INSERT INTO quarantine (file, line, field, reason, raw, source, created_at) "
            "VALUES ('a.jsonl', 1, 'text', 'empty text', '{}', 'test', 'now')"
        )
    db = tmp_path / "store" / "curate.db"
    wal = db.with_name("curate.db-wal")
    assert not wal.exists()  # the writer checkpointed and removed it on close
    before = fingerprint(db)
    with open_read_only(tmp_path / "store") as reader:
        reader.conn.execute("SELECT count(*) FROM quarantine").fetchone()
        assert wal.exists() and wal.stat().st_size == 0  # SQLite made it for the reader
        assert fingerprint(db) == before
    with Store(tmp_path / "store") as writer, writer.transaction() as conn:
        conn.execute("DELETE FROM quarantine")
    assert fingerprint(db) != before


def test_streamlit_config_is_local_and_private() -> None:
    import tomllib

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
