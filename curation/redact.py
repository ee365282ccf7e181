"""Credentials never leave the process: one helper for every URL inside a text.

A Label Studio URL may carry a secret (`http://user:pass@host`, `?token=...`, `?api_key=...`).
Wherever such a URL, or an error text that may quote it, leaves the process (log records,
reports, the store's `runs.warnings` and `run_steps.message`, error lines on stderr), it goes
through `redact_url` first: the userinfo and the values of secret-looking query (and fragment)
parameters become `***`; the scheme, host, port and path stay, so a message still says which
server it was about.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

# scheme://... up to whitespace, a quote, a bracket or a backslash (the end of a URL in prose,
# in a repr or in JSON).
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>\\`]+")
# Parameter names that hold secrets: substrings, since names vary (access_token, apiKey,
# client_secret, X-Amz-Signature, sessionid, ...). Redacting a harmless one costs nothing.
_SECRET_NAME = re.compile(
    r"token|key|secret|passw|pwd|auth|credential|signature|^sig$|session|jwt|cookie", re.IGNORECASE
)


def _redact_parameters(part: str) -> str:
    """`a=1&token=x` -> `a=1&token=***` (a query or a fragment, without its `?` / `#`)."""
    pieces = []
    for piece in re.split(r"([&;])", part):
        name, equals, value = piece.partition("=")
        if equals and value and _SECRET_NAME.search(name):
            piece = f"{name}={MASK}"
        pieces.append(piece)
    return "".join(pieces)


def _redact_one(match: re.Match[str]) -> str:
    url = match.group(0)
    scheme, _, rest = url.partition("://")
    # The authority ends at the first "/", "?" or "#"; userinfo is what precedes its last "@".
    end = len(rest)
    for mark in "/?#":
        position = rest.find(mark)
        if position != -1:
            end = min(end, position)
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = MASK + authority[authority.rfind("@") :]
    fragment = ""
    if "#" in tail:
        tail, fragment = tail.split("#", 1)
        fragment = "#" + _redact_parameters(fragment)
    if "?" in tail:
        path, query = tail.split("?", 1)
        tail = f"{path}?{_redact_parameters(query)}"
    return f"{scheme}://{authority}{tail}{fragment}"


def redact_url(text: str) -> str:
    """`text` with the userinfo and secret-looking query values of every URL in it as `***`.

    >>> redact_url("GET http://alice:s3cret@ls:8080/api?page=2&token=abc failed")
    'GET http://***@ls:8080/api?page=2&token=*** failed'
    """
    if "://" not in text:
        return text
    return _URL.sub(_redact_one, text)


def redact_data(value: Any) -> Any:  # noqa: ANN401 - any JSON-like value
    """`redact_url` on every string inside dicts, lists and tuples (keys included)."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {redact_data(key): redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_data(item) for item in value)
    return value


class RedactFilter(logging.Filter):
    """A handler filter: the record's message, traceback and stack as `redact_url` leaves them.

    The record is rewritten in place (its message rendered, its traceback formatted into
    `exc_text`), so every later handler sees the redacted text too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):
            record.msg = redact_data(record.msg)
        else:
            message = record.getMessage()
            redacted = redact_url(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            # Formatters use exc_text once exc_info is gone: the redacted traceback.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact_url(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_url(record.stack_info)
        return True
