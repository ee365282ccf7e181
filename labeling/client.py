"""A narrow, retrying client for the few Label Studio calls the bridge makes.

Authentication is the SDK's (`label_studio_sdk.LabelStudio`): it accepts both a legacy API token
and a personal access token (a JWT refresh token, exchanged for short-lived access tokens). The
key is never printed or logged: error messages carry the status, the call and the server's
`detail` only (the SDK's own error text would include response headers). Credentials inside the
URL (`http://user:pass@host`, `?token=...`) are shown as `***` in every message and in `url`.

Connection settings, one rule for both: the environment over the file. `$LABEL_STUDIO_URL` wins
over `[labelstudio] url` and `$LABEL_STUDIO_API_KEY` over `[labelstudio] api_key`; each falls back
to the file when its variable is unset or empty (`connection_settings`).

Retries: connection errors, timeouts, 5xx, 408 and 429 are retried with exponential backoff
(`[labelstudio] max_retries`, 1 s doubling to 30 s, with jitter). The SDK's own retries are off, so
that a non-idempotent call (importing tasks) is never repeated blindly: `import_tasks` makes one
attempt, and the caller reconciles with the server's task list before trying again.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from curation.config import Config
from curation.errors import CurateError, InputError
from curation.redact import redact_url

log = logging.getLogger("curate.labeling")

T = TypeVar("T")

# Django refuses a request with more than 1000 query parameters (DATA_UPLOAD_MAX_NUMBER_FIELDS):
# ids[]=.. counts once per id, so export pages stay well below that.
EXPORT_PAGE = 500
TASK_LIST_PAGE = 1000
_BACKOFF_FIRST = 1.0
_BACKOFF_MAX = 30.0


class LabelStudioError(CurateError):
    """Label Studio refused a request, or stayed unreachable through every retry."""


class LabelStudioUnavailable(LabelStudioError):
    """Network errors, timeouts or 5xx answers outlasted the retries: try again later."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        # The request may still be running on the server (see labeling.push).
        self.timed_out = timed_out


class LabelStudioNotFound(LabelStudioError):
    """HTTP 404: no such project or task (and Label Studio's answer past the last page)."""


def _is_transient(exc: BaseException) -> bool:
    from label_studio_sdk.core.api_error import ApiError

    if isinstance(exc, httpx.TransportError):  # connect/read errors, timeouts, protocol errors
        return True
    if isinstance(exc, ApiError):
        status = exc.status_code or 0
        return status >= 500 or status in (408, 429)
    return False


def _detail(exc: BaseException) -> str:
    """A short, key-free description of a failed call (any URL in it redacted)."""
    from label_studio_sdk.core.api_error import ApiError

    if isinstance(exc, ApiError):
        body = exc.body
        if isinstance(body, dict):
            parts = [body.get("detail"), body.get("validation_errors")]
            parts = [part for part in parts if part] or [body]
            text = " ".join(
                part if isinstance(part, str) else json.dumps(part, ensure_ascii=False, default=str)
                for part in parts
            )
        else:
            text = str(body or "").strip()
            if text.lstrip().startswith("<"):  # an HTML error page: its title is enough
                text = text.split("<title>", 1)[-1].split("</title>", 1)[0].strip()
        # Redacted before it is cut: a cut could split a URL and hide its "@" from the redaction.
        return f"HTTP {exc.status_code}: {redact_url(text)[:300]}"
    return redact_url(f"{type(exc).__name__}: {exc}")[:300]


def backoff_seconds(attempt: int) -> float:
    """Delay before retry number `attempt` (1-based): 1, 2, 4, ... capped at 30 s, +-25 % jitter."""
    base = min(_BACKOFF_FIRST * 2 ** (attempt - 1), _BACKOFF_MAX)
    return base * random.uniform(0.75, 1.25)


@dataclass(frozen=True)
class ServerTask:
    """A task as listed by the server (only what reconciliation and pull need)."""

    id: int
    data: dict
    overlap: int | None
    annotations: int | None = None  # submitted + cancelled, as counted by the server

    @property
    def example_id(self) -> str | None:
        value = self.data.get("example_id") if isinstance(self.data, dict) else None
        return str(value) if value is not None else None


URL_ENV = "LABEL_STUDIO_URL"
KEY_ENV = "LABEL_STUDIO_API_KEY"


def connection_settings(config: Config) -> tuple[str | None, str | None]:
    """The Label Studio URL and API key, each by one rule: the environment over the file.

    `$LABEL_STUDIO_URL` over `[labelstudio] url`, `$LABEL_STUDIO_API_KEY` over `[labelstudio]
    api_key`: the environment of the process (a cron line, a systemd unit, a CI job) is the more
    specific setting, and it keeps the key out of files. None where neither is set.
    """
    settings = config.labelstudio
    url = os.environ.get(URL_ENV) or settings.url
    key = os.environ.get(KEY_ENV) or settings.api_key
    return url or None, key or None


def resolve_connection(config: Config) -> tuple[str, str]:
    """URL and API key by `connection_settings`' rule (environment over file, for both), or an
    InputError naming what is missing."""
    url, key = connection_settings(config)
    if not url or not key:
        missing = " and ".join(
            name for name, value in ((URL_ENV, url), (KEY_ENV, key)) if not value
        )
        raise InputError(
            f"no Label Studio server configured: set {missing} (or [labelstudio] url / api_key), "
            "or work offline with --to FILE / --from FILE"
        )
    return url.rstrip("/"), key


class LabelStudioClient:
    """The calls the bridge makes, each retried on transient failures (see module docstring)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 120.0,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from label_studio_sdk import LabelStudio
        from label_studio_sdk.core.api_error import ApiError

        # The URL as given goes to the SDK only; `url` is what messages and links show: any
        # credentials in it (`user:pass@`, `?token=`) as `***` (curation.redact).
        self._base_url = url.rstrip("/")
        self.url = redact_url(self._base_url)
        self.timeout = timeout
        self.max_retries = max_retries
        self.sleep = sleep
        try:
            # max_retries=0: retries are ours (see module docstring).
            self.sdk = LabelStudio(
                base_url=self._base_url, api_key=api_key, timeout=timeout, max_retries=0
            )
        except ApiError as exc:  # e.g. an expired personal access token
            raise InputError(f"Label Studio API key refused: {_detail(exc)}") from None

    def __repr__(self) -> str:  # never show the key
        return f"LabelStudioClient({self.url!r})"

    @classmethod
    def from_config(cls, config: Config) -> LabelStudioClient:
        url, key = resolve_connection(config)
        settings = config.labelstudio
        return cls(url, key, timeout=settings.timeout_seconds, max_retries=settings.max_retries)

    # -- retry core -----------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one SDK call, retrying transient failures; `what` names it in errors and logs."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                self._raise_unless_transient(what, exc)
                attempt += 1
                if attempt > self.max_retries:
                    raise LabelStudioUnavailable(
                        f"Label Studio at {self.url} unavailable ({what}, {attempt} attempts): "
                        f"{_detail(exc)}"
                    ) from None
                delay = backoff_seconds(attempt)
                log.warning(
                    "%s failed (%s); retry %d in %.1f s", what, _detail(exc), attempt, delay
                )
                self.sleep(delay)

    def once(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One attempt, errors mapped like `call` (transient ones to LabelStudioUnavailable)."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self._raise_unless_transient(what, exc)
            raise LabelStudioUnavailable(
                f"Label Studio at {self.url} unavailable ({what}): {_detail(exc)}",
                timed_out=isinstance(exc, httpx.TimeoutException),
            ) from None

    def _raise_unless_transient(self, what: str, exc: Exception) -> None:
        from label_studio_sdk.core.api_error import ApiError

        if _is_transient(exc):
            return
        if isinstance(exc, ApiError) and exc.status_code in (401, 403):
            raise InputError(
                f"Label Studio at {self.url} refused the API key ({what}): {_detail(exc)}"
            ) from None
        if isinstance(exc, ApiError) and exc.status_code == 404:
            raise LabelStudioNotFound(f"Label Studio at {self.url}: not found ({what})") from None
        if isinstance(exc, ApiError):
            raise LabelStudioError(
                f"Label Studio at {self.url} refused {what}: {_detail(exc)}"
            ) from None
        raise exc

    def _options(self, **extra: Any) -> dict:
        return {"timeout": self.timeout, "max_retries": 0, **extra}

    # -- the calls ------------------------------------------------------------------------------
    def whoami(self) -> dict:
        user = self.call("whoami", self.sdk.users.whoami, request_options=self._options())
        return {"id": user.id, "email": getattr(user, "email", None)}

    def find_projects(self, title: str) -> list[dict]:
        """Projects whose title is exactly `title`, oldest first."""
        found: list[dict] = []
        page = 1
        while True:
            try:
                pager = self.call(
                    "list projects",
                    self.sdk.projects.list,
                    title=title,
                    page=page,
                    page_size=100,
                    request_options=self._options(),
                )
            except LabelStudioNotFound:  # past the last page
                break
            items = list(pager.items or [])
            found.extend(
                {"id": p.id, "title": p.title} for p in items if getattr(p, "title", None) == title
            )
            if len(items) < 100:
                break
            page += 1
        return sorted(found, key=lambda p: p["id"])

    def get_project(self, project_id: int) -> dict:
        project = self.call(
            f"get project {project_id}",
            self.sdk.projects.get,
            project_id,
            request_options=self._options(),
        )
        return {
            "id": project.id,
            "title": project.title,
            "label_config": project.label_config,
            "model_version": getattr(project, "model_version", None),
            "maximum_annotations": getattr(project, "maximum_annotations", None),
            "sampling": getattr(project, "sampling", None),
        }

    def create_project(self, **fields: Any) -> int:
        # Retried: a timeout after the server created it leaves one extra empty project at worst,
        # and the next run reuses the oldest project with this title.
        project = self.call(
            "create project", self.sdk.projects.create, **fields, request_options=self._options()
        )
        return int(project.id)

    def update_project(self, project_id: int, **fields: Any) -> None:
        self.call(
            f"update project {project_id}",
            self.sdk.projects.update,
            project_id,
            **fields,
            request_options=self._options(),
        )

    def list_tasks(self, project_id: int) -> Iterator[ServerTask]:
        """Every task of a project, page by page: only id, data, overlap and annotation counts
        (the Data Manager's full task rows cost ~10 ms a task; these ~0.6 ms)."""
        page, seen = 1, 0
        while True:
            try:
                pager = self.call(
                    f"list tasks of project {project_id} (page {page})",
                    self.sdk.tasks.list,
                    project=project_id,
                    page=page,
                    page_size=TASK_LIST_PAGE,
                    fields="task_only",
                    request_options=self._options(
                        additional_query_parameters={
                            "include": "id,data,overlap,total_annotations,cancelled_annotations"
                        }
                    ),
                )
            except LabelStudioNotFound:  # Label Studio answers 404 past the last page
                return
            items = list(pager.items or [])
            for task in items:
                total = getattr(task, "total_annotations", None)
                cancelled = getattr(task, "cancelled_annotations", None)
                yield ServerTask(
                    id=int(task.id),
                    data=dict(task.data or {}),
                    overlap=getattr(task, "overlap", None),
                    annotations=None if total is None else total + (cancelled or 0),
                )
            seen += len(items)
            # Stop on the count the server reports, not on a short page: a server with
            # TASK_API_PAGE_SIZE_MAX set returns smaller pages than asked for.
            total = getattr(pager.response, "total", None)
            if not items or (total is not None and seen >= total):
                return
            page += 1

    def import_tasks(self, project_id: int, tasks: Sequence[dict]) -> list[int]:
        """Import tasks in one request (no retry: see module docstring); their ids, in order."""
        response = self.once(
            f"import {len(tasks)} tasks into project {project_id}",
            self.sdk.projects.import_tasks,
            project_id,
            request=list(tasks),
            return_task_ids=True,
            request_options=self._options(),
        )
        ids = [int(i) for i in (response.task_ids or [])]
        if len(ids) != len(tasks):
            raise LabelStudioError(
                f"Label Studio created {len(ids)} tasks for an import of {len(tasks)}"
            )
        return ids

    def set_overlap(self, task_id: int, overlap: int) -> None:
        self.call(
            f"set overlap of task {task_id}",
            self.sdk.tasks.update,
            str(task_id),
            overlap=overlap,
            request_options=self._options(),
        )

    def export_tasks(self, project_id: int, task_ids: Sequence[int]) -> list[dict]:
        """Label Studio's JSON export (tasks with their annotations) of these tasks."""
        out: list[dict] = []
        for start in range(0, len(task_ids), EXPORT_PAGE):
            page = [int(i) for i in task_ids[start : start + EXPORT_PAGE]]

            def fetch(ids: list[int] = page) -> bytes:
                chunks = self.sdk.projects.exports.download_sync(
                    project_id,
                    export_type="JSON",
                    download_all_tasks=True,
                    request_options=self._options(additional_query_parameters={"ids[]": ids}),
                )
                return b"".join(chunks)

            raw = self.call(f"export {len(page)} tasks of project {project_id}", fetch)
            out.extend(json.loads(raw))
        return out

    def user_emails(self) -> dict[int, str]:
        users = self.call("list users", self.sdk.users.list, request_options=self._options())
        return {int(u.id): u.email for u in users if getattr(u, "email", None)}
