"""One rule for the Label Studio URL and key: the environment over the file, for both."""

from __future__ import annotations

import pytest

from curation.config import config_from_dict
from curation.errors import InputError
from labeling.client import connection_settings, resolve_connection

FILE = {"labelstudio": {"url": "http://file:8080/", "api_key": "file-key"}}


@pytest.fixture()
def no_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    return monkeypatch


def test_the_environment_wins_over_the_file_for_url_and_key(
    no_environment: pytest.MonkeyPatch,
) -> None:
    # Only the file: the file's URL and key.
    assert resolve_connection(config_from_dict(FILE)) == ("http://file:8080", "file-key")
    # Both: the environment's URL and key (the URL used to be the file's, the key the
    # environment's).
    no_environment.setenv("LABEL_STUDIO_URL", "http://env:8080/")
    no_environment.setenv("LABEL_STUDIO_API_KEY", "env-key")
    assert resolve_connection(config_from_dict(FILE)) == ("http://env:8080", "env-key")
    assert resolve_connection(config_from_dict({})) == ("http://env:8080", "env-key")
    # An empty variable counts as unset.
    no_environment.setenv("LABEL_STUDIO_URL", "")
    no_environment.setenv("LABEL_STUDIO_API_KEY", "")
    assert resolve_connection(config_from_dict(FILE)) == ("http://file:8080", "file-key")


def test_each_setting_falls_back_to_the_file_on_its_own(
    no_environment: pytest.MonkeyPatch,
) -> None:
    no_environment.setenv("LABEL_STUDIO_URL", "http://env:8080")
    assert resolve_connection(config_from_dict(FILE)) == ("http://env:8080", "file-key")
    no_environment.delenv("LABEL_STUDIO_URL")
    no_environment.setenv("LABEL_STUDIO_API_KEY", "env-key")
    assert resolve_connection(config_from_dict(FILE)) == ("http://file:8080", "env-key")
    only_url = config_from_dict({"labelstudio": {"url": "http://file:8080"}})
    no_environment.delenv("LABEL_STUDIO_API_KEY")
    assert connection_settings(only_url) == ("http://file:8080", None)
    with pytest.raises(
        InputError, match="^no Label Studio server configured: set LABEL_STUDIO_API_KEY "
    ):
        resolve_connection(only_url)
