"""The `curate` command line: JSON contracts, exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, write_config
from tests.conftest import run_cli as run  # noqa: E402
from tests.conftest import run_cli_json as run_json  # noqa: E402


@pytest.fixture()
def project(tmp_path: Path, tiny_model_dir: Path) -> Path:
    write_config(
        tmp_path,
        f"""
[store]
path = "store"

[embedding]
model = "{tiny_model_dir}"

[labels]
names = ["negative", "neutral", "positive"]
""",
    )
    return tmp_path


def test_ingest_status_embed_quarantine_json(project: Path, capsys) -> None:
    ingest = run_json(capsys, "ingest", str(SAMPLES / "pool.jsonl"), str(SAMPLES / "pool_bad.csv"))
    assert {k: ingest[k] for k in ("read", "added", "duplicates", "quarantined")} == {
        "read": 332,
        "added": 321,
        "duplicates": 4,
        "quarantined": 7,
    }
    assert ingest["per_language"] == {
        "ar": 40,
        "de": 41,
        "en": 40,
        "es": 40,
        "fr": 40,
        "hi": 39,
        "ru": 41,
        "zh": 40,
    }
    status = run_json(capsys, "status")
    assert (status["examples"], status["labeled"]) == (321, 321)
    assert status["per_language"]["hi"] == {"examples": 39, "labeled": 39, "embedded": 0}
    embed = run_json(capsys, "embed")
    assert (embed["embedded"], embed["already_embedded"]) == (321, 0)
    assert embed["model"].endswith("st")
    again = run_json(capsys, "embed")
    assert (again["embedded"], again["already_embedded"]) == (0, 321)
    quarantine = run_json(capsys, "quarantine")
    assert [(Path(r["file"]).name, r["line"], r["field"]) for r in quarantine["rows"]] == [
        ("pool_bad.csv", 4, "text"),
        ("pool_bad.csv", 6, "text"),
        ("pool_bad.csv", 7, "label"),
        ("pool_bad.csv", 9, "language"),
        ("pool_bad.csv", 10, "text"),
        ("pool_bad.csv", 11, "line"),
        ("pool_bad.csv", 12, "text"),
    ]
    assert set(quarantine["rows"][0]) >= {"file", "line", "field", "reason"}
    index = run_json(capsys, "index")
    assert index == {"indexed": 321, "added": 321, "kind": "flat", "rebuilt": True}
    hits = run_json(capsys, "search", "Vielen Dank", "-k", "3", "--language", "de")
    assert len(hits["hits"]) == 3 and {h["language"] for h in hits["hits"]} == {"de"}
    exported = run_json(capsys, "export", str(project / "out"))
    assert exported["rows"] == 321 and exported["per_language"]["zh"] == 40
    from datasets import load_from_disk

    dataset = load_from_disk(str(project / "out"))
    assert dataset.features["label"].names == ["negative", "neutral", "positive"]
    assert len(dataset) == 321
    code, _, err = run(capsys, "export", str(project / "out"))
    assert code == 2 and "already exists" in err


def test_status_on_empty_store(tmp_path: Path, capsys) -> None:
    assert run_json(capsys, "status") == {
        "examples": 0,
        "labeled": 0,
        "quarantined": 0,
        "per_language": {},
    }
    code, out, _ = run(capsys, "status")
    assert code == 0 and "empty" in out


def test_human_output_is_a_table(project: Path, capsys) -> None:
    code, out, _ = run(capsys, "ingest", str(SAMPLES / "pool_bad.csv"))
    assert code == 0 and "quarantined" in out and "curate quarantine" in out
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "language" in out and "examples" in out and "labeled" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ingest", "nope.jsonl"], 2, "error: nope.jsonl: no such file"),
        (["ingest"], 2, "error: Missing argument"),
        (["status", "--bogus"], 2, "error: No such option: --bogus"),
        (["frobnicate"], 2, "error: No such command 'frobnicate'"),
        (["--config", "missing.toml", "status"], 2, "error: config file not found: missing.toml"),
    ],
)
def test_bad_usage_and_input_exit_2_with_one_line(
    tmp_path: Path, capsys, args: list[str], code: int, message: str
) -> None:
    got, out, err = run(capsys, *args)
    assert got == code
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""


def test_bad_config_names_the_key(tmp_path: Path, capsys) -> None:
    write_config(tmp_path, "[embedding]\nbatch_size = -1\n")
    code, _, err = run(capsys, "status")
    assert code == 2
    assert "[embedding] batch_size: Input should be greater than or equal to 1" in err


def test_subprocess_exit_codes_and_debug_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("id,body\n1,hello\n")
    command = [sys.executable, "-m", "curation.cli"]
    done = subprocess.run(
        [*command, "ingest", str(bad)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {bad}: no 'text' column (columns: id, body)"
    debug = subprocess.run(
        [*command, "--debug", "ingest", str(bad)], capture_output=True, text=True, cwd=tmp_path
    )
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    helped = subprocess.run([*command, "ingest", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--source" in helped.stdout and "--json" in helped.stdout


def test_version_prints_the_installed_distribution_version(capsys) -> None:
    from importlib.metadata import version

    code, out, err = run(capsys, "--version")
    assert (code, out, err) == (0, f"curate {version('multilingual-curate')}\n", "")


def _complete(words: str, *, cword: int) -> list[str]:
    """Ask a real `curate` process for bash completions, as bash's completion function does."""
    env = {
        **os.environ,
        "_CURATE_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    done = subprocess.run(
        [sys.executable, "-m", "curation.cli"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_shell_completion_of_commands_and_strategy_names() -> None:
    assert _complete("curate s", cword=1) == ["status", "search", "select", "simulate"]
    assert _complete("curate select --strategy k", cword=3) == ["kcenter", "kmeans"]
    script = subprocess.run(
        [sys.executable, "-m", "curation.cli", "--show-completion", "bash"],
        capture_output=True,
        text=True,
    )
    assert script.returncode == 0
    assert "_CURATE_COMPLETE=complete_bash" in script.stdout


# -- progress on a stderr that is not a terminal (issue 16, "the first hour") -------------------


def _second_project(folder: Path, tiny_model_dir: Path, store: str) -> Path:
    """Another project file beside the fixture's, with its own store, same tiny model."""
    path = folder / f"{store}.toml"
    path.write_text(
        f'[store]\npath = "{store}"\n[embedding]\nmodel = "{tiny_model_dir}"\n'
        '[labels]\nnames = ["negative", "neutral", "positive"]\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.slow
def test_embed_progress_reaches_a_piped_stderr_as_lines_and_quiet_silences_it(
    project: Path, tiny_model_dir: Path, capsys
) -> None:
    quiet_config = _second_project(project, tiny_model_dir, "quiet-store")
    for config in ("curate.toml", str(quiet_config)):
        run_json(capsys, "--config", config, "ingest", str(SAMPLES / "pool.jsonl"))
    # Every redraw becomes a line at once with a zero interval, so a small store shows it.
    env = {**os.environ, "CURATE_PROGRESS_INTERVAL": "0"}
    command = [sys.executable, "-m", "curation.cli"]
    shown = subprocess.run(
        [*command, "embed", "--json"], capture_output=True, text=True, cwd=project, env=env
    )
    assert shown.returncode == 0, shown.stderr
    assert '"embedded": 316' in shown.stdout and len(shown.stdout.splitlines()) == 1
    assert "\r" not in shown.stderr
    lines = shown.stderr.splitlines()
    assert len(lines) == 2, shown.stderr
    assert lines[0].startswith("embed:   0%|") and " 0/316 [" in lines[0]
    assert lines[1].startswith("embed: 100%|") and " 316/316 [" in lines[1]
    quiet = subprocess.run(
        [*command, "--config", str(quiet_config), "--quiet", "embed", "--json"],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
    )
    assert quiet.returncode == 0
    assert '"embedded": 316' in quiet.stdout
    assert quiet.stderr == ""


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_are_throttled_and_short_steps_stay_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from curation.cli import progress

    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    sink = io.StringIO()
    stream = progress.ProgressLines(sink, drop=False, interval=10.0)

    def redraw(state: str, at: float) -> None:
        clock.now = 1000.0 + at
        stream.write("\r" + state + "   ")

    # A step of 1.5 s: nothing at all, not even its final state.
    redraw("ingest a.csv: 0 rows [00:00]", 0.0)
    redraw("ingest a.csv: 500 rows [00:01]", 1.5)
    stream.write("\n")
    assert sink.getvalue() == ""
    # A long step: a line once it ran 2 s, then one per 10 s, then its final state.
    redraw("embed:   0%| 0/100 [00:00]", 0.0)
    redraw("embed:  10%| 10/100 [00:01]", 1.0)
    redraw("embed:  20%| 20/100 [00:02]", 2.0)
    redraw("embed:  30%| 30/100 [00:05]", 5.0)
    redraw("embed:  90%| 90/100 [00:12]", 12.0)
    redraw("embed: 100%| 100/100 [00:13]", 13.0)
    stream.write("\n")
    stream.write("error: something else\n")
    assert sink.getvalue().splitlines() == [
        "embed:  20%| 20/100 [00:02]",
        "embed:  90%| 90/100 [00:12]",
        "embed: 100%| 100/100 [00:13]",
        "error: something else",
    ]
    # --quiet: redraws vanish, everything else passes.
    quiet_sink = io.StringIO()
    quiet = progress.ProgressLines(quiet_sink, drop=True, interval=10.0)
    clock.now = 2000.0
    quiet.write("\rembed:   0%| 0/100")
    clock.now = 2060.0
    quiet.write("\rembed: 100%| 100/100")
    quiet.write("\n")
    quiet.write("warning: kept\n")
    assert quiet_sink.getvalue() == "warning: kept\n"


# -- tables off a terminal (issue 16, "the first hour") -----------------------------------------

LONG_FOLDER = "exports-" + "-".join(f"part{i:02d}" for i in range(20))  # 167 characters


def _long_path_project(tmp_path: Path, capsys) -> tuple[Path, Path]:
    """A store and a quarantined file, both under a folder name far wider than 80 columns."""
    folder = tmp_path / LONG_FOLDER
    folder.mkdir()
    bad = folder / "pool_bad.csv"
    bad.write_bytes((SAMPLES / "pool_bad.csv").read_bytes())
    store = folder / "curation-data"
    write_config(
        tmp_path,
        f'[store]\npath = "{store}"\n[labels]\nnames = ["negative", "neutral", "positive"]\n'
        "[languages]\ndetect = false\n",
    )
    run_json(capsys, "ingest", str(bad))
    return bad, store


def test_tables_keep_long_paths_whole_through_a_pipe(tmp_path: Path, capsys) -> None:
    bad, store = _long_path_project(tmp_path, capsys)
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    outputs = {}
    for command in ("quarantine", "status"):
        done = subprocess.run(
            [sys.executable, "-m", "curation.cli", command],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        assert "…" not in done.stdout
        outputs[command] = done.stdout.splitlines()
    assert outputs["status"][0].strip() == f"store {store}"
    rows = [line.split("│") for line in outputs["quarantine"] if line.startswith("│")]
    assert [row[1].strip() for row in rows] == [str(bad)] * 7
    assert [row[2].strip() for row in rows] == ["4", "6", "7", "9", "10", "11", "12"]


def test_a_narrow_columns_folds_cells_instead_of_cutting_them(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad, _ = _long_path_project(tmp_path, capsys)
    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = run(capsys, "quarantine", "--limit", "1")
    assert code == 0 and "…" not in out
    lines = out.splitlines()
    assert max(len(line) for line in lines) == 60
    cells = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    # The first column of the one row, folded over several lines, is the whole path.
    assert "".join(cells) == str(bad)


def test_a_step_without_progress_of_its_own_shows_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import re

    from curation.cli import progress

    sink = io.StringIO()
    monkeypatch.setattr(sys, "stderr", progress.ProgressLines(sink, drop=False, interval=0.0))
    with progress.working("search: loading a model", enabled=False):
        pass
    assert sink.getvalue() == ""
    with progress.working("search: loading a model", enabled=True):
        pass
    lines = sink.getvalue().splitlines()
    assert lines[0] == "search: loading a model: 00:00"
    assert re.fullmatch(r"search: loading a model: done in \d\d:\d\d", lines[-1])


def test_dashboard_flags_are_the_checkouts_streamlit_config() -> None:
    import tomllib

    from curation.cli.serve import STREAMLIT_FLAGS, dashboard_command
    from tests.conftest import REPO

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text("utf-8"))
    flat = {
        f"{section}.{key}": str(value).lower() if isinstance(value, bool) else str(value)
        for section, values in config.items()
        for key, value in values.items()
    }
    assert flat == {**STREAMLIT_FLAGS, "server.address": "127.0.0.1"}
    command = dashboard_command(store=Path("/data/store"), host="0.0.0.0", port=9000, config=None)
    assert command[1:4] == ["-m", "streamlit", "run"]
    assert command[4].endswith("dashboard/web/app.py")
    assert command[-3:] == ["--", "--store", "/data/store"]
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
    assert command[command.index("--server.port") + 1] == "9000"
