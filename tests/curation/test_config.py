from __future__ import annotations

from pathlib import Path

import pytest

from curation.config import Config, config_from_dict, load_config
from curation.errors import ConfigError
from tests.conftest import write_config


def test_defaults_without_any_file() -> None:
    config = load_config()
    assert config == Config()
    assert config.store.path == Path("curation-data")
    assert config.embedding.model == "multilingual-e5-small"
    assert config.embedding.backend == "auto" and config.embedding.threads is None
    assert config.selection.max_similarity == "auto"
    assert config.embedding.dtype == "float32"
    assert config.labels.names is None
    assert config.languages.allowed is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stor": {"path": "x"}}, "config: [stor]: unknown key"),
        ({"embedding": {"modle": "x"}}, "config: [embedding] modle: unknown key"),
        (
            {"embedding": {"batch_size": "big"}},
            "config: [embedding] batch_size: Input should be a valid integer",
        ),
        # quoted numbers and booleans are typos, not values to coerce (issue 16)
        (
            {"embedding": {"batch_size": "64"}},
            "config: [embedding] batch_size: Input should be a valid integer",
        ),
        (
            {"embedding": {"normalize": "yes"}},
            "config: [embedding] normalize: Input should be a valid boolean",
        ),
        (
            {"selection": {"control_share": "0.1"}},
            "config: [selection] control_share: Input should be a valid number",
        ),
        (
            {"embedding": {"batch_size": 0}},
            "config: [embedding] batch_size: Input should be greater than or equal to 1",
        ),
        (
            {"languages": {"min_confidence": 1.5}},
            "config: [languages] min_confidence: Input should be less than or equal to 1",
        ),
        (
            {"languages": {"allowed": ["en", "xx-QQ123"]}},
            "config: [languages] allowed: 'xx-QQ123' is not a valid BCP-47 language tag",
        ),
        (
            {"labels": {"names": ["yes"]}},
            "config: [labels] names: a classification task needs at least 2 labels",
        ),
        (
            {"labels": {"names": ["a", "b", "a"]}},
            "config: [labels] names: label names must be distinct",
        ),
        (
            {"embedding": {"device": "gpu"}},
            "config: [embedding] device: must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'",
        ),
        (
            {"embedding": {"dtype": "int8"}},
            "config: [embedding] dtype: Input should be 'float32' or 'float16'",
        ),
    ],
)
def test_invalid_settings_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert str(caught.value).startswith(message)


def test_strict_types_still_take_paths_as_strings_and_integers_as_floats() -> None:
    config = config_from_dict(
        {"store": {"path": "data"}, "run": {"inbox": ["in"]}, "selection": {"cold_start_share": 1}}
    )
    assert config.store.path == Path("data") and config.run.inbox == [Path("in")]
    assert config.selection.cold_start_share == 1.0


def test_allowed_languages_are_standardized() -> None:
    config = config_from_dict({"languages": {"allowed": ["EN", "pt-br", "zh-hant"]}})
    assert config.languages.allowed == ["en", "pt-BR", "zh-Hant"]


def test_relative_store_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "project"
    sub.mkdir()
    path = write_config(sub, '[store]\npath = "data/store"\n')
    config = load_config(path)
    assert config.store.path == sub.resolve() / "data" / "store"


def test_config_env_and_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, '[labels]\nnames = ["a", "b"]\n')
    assert load_config().labels.names == ["a", "b"]  # ./curate.toml
    other = tmp_path / "other.toml"
    other.write_text('[labels]\nnames = ["x", "y", "z"]\n')
    monkeypatch.setenv("CURATE_CONFIG", str(other))
    assert load_config().labels.names == ["x", "y", "z"]
    monkeypatch.setenv("CURATE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml .from CURATE_CONFIG"):
        load_config()


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[store\npath = 1\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_sample_config_is_valid() -> None:
    from tests.conftest import SAMPLES

    config = load_config(SAMPLES / "curate.toml")
    assert config.labels.names == ["negative", "neutral", "positive"]
    assert config.store.path == (SAMPLES.parent / "curation-data" / "demo").resolve()


def test_unknown_strategy_fails_at_load_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tests.conftest import run_cli

    write_config(tmp_path, '[selection]\nstrategy = "margn"\n')
    code, out, err = run_cli(capsys, "status")
    assert code == 2 and out == ""
    assert "curate.toml: [selection] strategy: unknown strategy 'margn'; valid: default," in err
    write_config(tmp_path, '[selection]\nstrategy = "margin"\n')
    assert run_cli(capsys, "status")[0] == 0


def test_curate_store_environment_wins_over_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CURATE_STORE", raising=False)
    path = write_config(tmp_path, '[store]\npath = "from-file"\n\n[labels]\nnames = ["a", "b"]\n')
    assert load_config(path).store.path == tmp_path.resolve() / "from-file"
    monkeypatch.setenv("CURATE_STORE", str(tmp_path / "from-env"))
    config = load_config(path)
    assert config.store.path == (tmp_path / "from-env").resolve()
    assert config.labels.names == ["a", "b"]  # the rest of the file still applies
    monkeypatch.setenv("CURATE_STORE", "relative/store")  # against the working directory
    assert load_config(path).store.path == Path.cwd() / "relative" / "store"
    (tmp_path / "curate.toml").unlink()
    assert load_config().store.path == Path.cwd() / "relative" / "store"  # no file: defaults
    monkeypatch.setenv("CURATE_STORE", "")  # empty: not set
    assert load_config().store.path == Path("curation-data")


def test_cli_honours_curate_store(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from tests.conftest import run_cli

    write_config(tmp_path, '[store]\npath = "from-file"\n')
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "hello there", "language": "en"}\n', encoding="utf-8")
    monkeypatch.setenv("CURATE_STORE", str(tmp_path / "from-env"))
    code, _, err = run_cli(capsys, "ingest", str(pool))
    assert (code, err) == (0, "")
    assert (tmp_path / "from-env" / "curate.db").is_file()
    assert not (tmp_path / "from-file").exists()
    code, out, err = run_cli(capsys, "status", "--json")
    assert (code, err) == (0, "")
    status = json.loads(out)
    assert (status["store"], status["examples"]) == (str((tmp_path / "from-env").resolve()), 1)
