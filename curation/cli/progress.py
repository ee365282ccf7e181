"""Progress on stderr that a log file and a pipe can hold, and that `--quiet` silences.

On a terminal tqdm redraws one line in place ("\\r" + the bar). Off a terminal (cron, CI, `2>
log`, a pipe) the same redraws would pile up as one endless line of carriage returns, so `curate`
used to switch its bars off there, and a newcomer piping a minutes-long `curate embed` saw
nothing at all. Instead, `install()` puts a thin filter in front of `sys.stderr` that turns the
redraws of any tqdm bar (ours, and the libraries' we call: datasets, sentence-transformers) into
plain lines:

- a step that finishes within `FIRST_LINE_AFTER` seconds prints nothing;
- a longer one prints a line once it has run that long, then at most one line every
  `$CURATE_PROGRESS_INTERVAL` seconds (default 10), and its final state when it ends.

Under `--quiet` the filter drops every redraw, on a terminal too. Everything that is not a redraw
(log records, error lines, tracebacks) passes through unchanged: tqdm's redraws are the only
writes that start with a carriage return.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

INTERVAL_ENV = "CURATE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0
# "every step over ~2 s": shorter steps stay silent, so quick commands keep a clean stderr.
FIRST_LINE_AFTER = 2.0
# tqdm moves the cursor up for nested bars; meaningless in a file.
_CURSOR_MOVES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _without_timing(state: str) -> str:
    """A bar's state without tqdm's "[elapsed<remaining, rate]" part, which changes on every
    redraw even when the count does not."""
    head, bracket, _ = state.rpartition(" [")
    return head if bracket else state


def interval_seconds() -> float:
    """Seconds between two progress lines off a terminal ($CURATE_PROGRESS_INTERVAL)."""
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    return max(value, 0.0)


class ProgressLines:
    """A text stream in front of stderr: progress redraws become throttled lines (or vanish).

    Attributes other than `write` and `flush` are the wrapped stream's, so `isatty()`,
    `fileno()` and `encoding` still describe the real stderr.
    """

    def __init__(self, stream: TextIO, *, drop: bool, interval: float) -> None:
        self.stream = stream
        self.drop = drop
        self.interval = interval
        self.first_line_after = min(FIRST_LINE_AFTER, interval)
        self._lock = threading.RLock()
        self._newlines = ""  # newline-only writes held back (see write)
        self._reset()

    def __repr__(self) -> str:
        return f"ProgressLines({self.stream!r}, drop={self.drop}, interval={self.interval})"

    def __getattr__(self, name: str):  # noqa: ANN204 - whatever the wrapped stream has
        return getattr(self.stream, name)

    def _reset(self) -> None:
        self._started: float | None = None  # the current bar's first redraw
        self._last_line: float | None = None  # when it last printed a line
        self._pending: str | None = None  # its latest state, not printed yet
        self._last_text = ""

    def _line(self, text: str, now: float) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_line = now
        self._last_text = text
        self._pending = None

    def _finish_bar(self, now: float) -> None:
        # The final state, but only for a bar that printed before (short steps stay silent) and
        # not again when the last line already showed it (tqdm redraws once more on close).
        pending = self._pending
        if (
            not self.drop
            and self._last_line is not None
            and pending
            and _without_timing(pending) != _without_timing(self._last_text)
        ):
            self._line(pending, now)
        self._reset()

    def write(self, text: str) -> int:
        with self._lock:
            now = time.monotonic()
            if text.startswith("\r"):
                self._newlines = ""  # they moved down to this bar's line
                state = _CURSOR_MOVES.sub("", text.rsplit("\r", 1)[-1]).rstrip()
                if not state:  # a cleared line: tqdm closing a leave=False bar
                    if self._started is not None:
                        self._finish_bar(now)
                    return len(text)
                if self._started is None:
                    self._started = now
                self._pending = state
                if self.drop:
                    return len(text)
                due = (
                    now - self._started >= self.first_line_after
                    if self._last_line is None
                    else now - self._last_line >= self.interval
                )
                if due and _without_timing(state) != _without_timing(self._last_text):
                    self._line(state, now)
                return len(text)
            if text == "\n" and self._started is not None:
                self._finish_bar(now)  # tqdm closing a bar that stays (leave=True)
                return len(text)
            if _CURSOR_MOVES.search(text):
                # tqdm positioning a nested bar (cursor up): meaningless in a file, and the
                # newlines it wrote just before were the same move down.
                self._newlines = ""
                rest = _CURSOR_MOVES.sub("", text)
                return self.stream.write(rest) if rest.strip() else len(text)
            if text and not text.strip("\n"):
                # Only newlines: tqdm moving down to a nested bar's line, or the end of a
                # print(). Held until the next write tells which (see above).
                self._newlines += text
                return len(text)
            self._release_newlines()
            return self.stream.write(text)

    def _release_newlines(self) -> None:
        if self._newlines:
            self.stream.write(self._newlines)
            self._newlines = ""

    def flush(self) -> None:
        with self._lock:
            self._release_newlines()
        self.stream.flush()


def install(*, quiet: bool) -> None:
    """Put the filter in front of `sys.stderr` where it is needed (idempotent).

    Off a terminal: redraws become lines (none with `quiet`). On a terminal: untouched, except
    that `quiet` drops every redraw.
    """
    current = sys.stderr
    if isinstance(current, ProgressLines):
        current.drop = quiet
        current.interval = interval_seconds()
        current.first_line_after = min(FIRST_LINE_AFTER, current.interval)
        return
    if current is None:
        return
    try:
        terminal = current.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if terminal and not quiet:
        return
    sys.stderr = ProgressLines(current, drop=quiet, interval=interval_seconds())


@contextmanager
def working(description: str, *, enabled: bool) -> Iterator[None]:
    """Progress for a step that reports none of its own (loading a model, fitting the proxy):
    "DESCRIPTION: 00:07", redrawn every second, and "DESCRIPTION: done in 00:09" at the end.
    Through the filter above, a step under 2 s prints nothing off a terminal."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    bar = tqdm(desc=description, bar_format="{desc}: {elapsed}", file=sys.stderr)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, name="curate-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        bar.bar_format = "{desc}: done in {elapsed}"
        bar.close()
