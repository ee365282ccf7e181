"""The retrying client: what is retried, what is not, and that the key never shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from curation.config import config_from_dict
from curation.errors import InputError
from labeling.client import (
    LabelStudioClient,
    LabelStudioError,
    LabelStudioNotFound,
    LabelStudioUnavailable,
    backoff_seconds,
    resolve_connection,
)

KEY = "secret-legacy-token-42"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def client() -> LabelStudioClient:
    return LabelStudioClient("http://127.0.0.1:9", KEY, max_retries=3, sleep=lambda s: None)


def flaky(failures: list[BaseException], value: object = "ok"):  # noqa: ANN201
    calls = []

    def fn() -> object:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return value

    return fn, calls


def test_transient_errors_are_retried_then_succeed(client: LabelStudioClient) -> None:
    request = httpx.Request("GET", "http://x")
    fn, calls = flaky(
        [
            httpx.ConnectError("refused", request=request),
            ApiError(status_code=502, body="bad gateway"),
            httpx.ReadTimeout("slow", request=request),
        ]
    )
    assert client.call("thing", fn) == "ok" and len(calls) == 4


def test_retries_run_out(client: LabelStudioClient) -> None:
    fn, calls = flaky([ApiError(status_code=503, body={"detail": "down"})] * 10)
    with pytest.raises(LabelStudioUnavailable, match="down"):
        client.call("thing", fn)
    assert len(calls) == 4  # one try and three retries


def test_client_errors_are_not_retried(client: LabelStudioClient) -> None:
    fn, calls = flaky(
        [
            ApiError(
                status_code=400,
                body={"detail": "Validation error", "validation_errors": {"title": ["long"]}},
            )
        ]
    )
    with pytest.raises(LabelStudioError, match="title") as caught:
        client.call("create project", fn)
    assert not isinstance(caught.value, LabelStudioUnavailable) and len(calls) == 1
    fn, _ = flaky([ApiError(status_code=404, body={"detail": "Invalid page."})])
    with pytest.raises(LabelStudioNotFound):
        client.call("list", fn)
    fn, _ = flaky([ApiError(status_code=401, body={"detail": "Invalid token."})])
    with pytest.raises(InputError, match="refused the API key") as refused:
        client.call("whoami", fn)
    assert KEY not in str(refused.value) and KEY not in repr(client)


def test_single_attempt_reports_timeouts(client: LabelStudioClient) -> None:
    request = httpx.Request("POST", "http://x")
    fn, calls = flaky([httpx.ReadTimeout("slow", request=request)])
    with pytest.raises(LabelStudioUnavailable) as caught:
        client.once("import", fn)
    assert caught.value.timed_out and len(calls) == 1


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)):
        assert base * 0.75 <= backoff_seconds(attempt) <= base * 1.25


def test_connection_settings_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(InputError, match="LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"):
        resolve_connection(config_from_dict({}))
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://env:8080/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "env-key")
    config = config_from_dict({"labelstudio": {"url": "http://file:8080", "api_key": "file-key"}})
    # One rule for both: the environment over the file (tests/labeling/test_connection_precedence).
    assert resolve_connection(config) == ("http://env:8080", "env-key")
    assert resolve_connection(config_from_dict({})) == ("http://env:8080", "env-key")


def test_labeling_never_imports_training_or_selection() -> None:
    code = (
        "import sys, labeling.push, labeling.pull, labeling.adjudicate, labeling.client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'selection')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
