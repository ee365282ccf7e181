"""Run the dashboard for real and drive it with Debian's headless Chromium through Playwright.

Used by the browser test, `scripts/screenshots.py` and `benchmarks/dashboard_first_paint.py`.
Playwright only drives `/usr/bin/chromium` (`executable_path`); it never downloads a browser.
The server binds to 127.0.0.1 on a free port and every request stays on this machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CURATE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
# (url path, page title, charts the page draws against the fixture store)
PAGES = [
    ("/", "Overview", 2),
    ("/Selection", "Selection", 3),
    ("/Labeling", "Labeling", 2),
    ("/Model", "Model", 5),
    ("/Quality", "Quality", 2),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dashboard_server(
    env: dict[str, str],
    *,
    log_path: Path | None = None,
    timeout: float = 90.0,
    script: Path = REPO / "app.py",
    script_args: Sequence[str] = (),
    started: dict[str, float] | None = None,
    address: str | None = "127.0.0.1",
) -> Iterator[str]:
    """`streamlit run app.py --server.headless true [-- ARGS]` on 127.0.0.1:<free port>.

    Yields its URL once `/_stcore/health` answers; `started["server_start_s"]` gets the seconds
    from launch to that answer (app.py's warm-up runs before the server accepts connections).
    ``address=None`` leaves the bind address to .streamlit/config.toml.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.headless",
        "true",
        *(["--server.address", address] if address else []),
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    if script_args:
        command += ["--", *script_args]
    with serve(command, port, env=env, log_path=log_path, timeout=timeout, started=started) as url:
        yield url


@contextmanager
def serve(
    command: Sequence[str],
    port: int,
    *,
    env: dict[str, str],
    cwd: Path = REPO,
    log_path: Path | None = None,
    timeout: float = 90.0,
    started: dict[str, float] | None = None,
) -> Iterator[str]:
    """Run a dashboard server command; yield its URL once `/_stcore/health` answers."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        list(command), cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    launched = time.perf_counter()
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {process.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        if started is not None:
                            started["server_start_s"] = time.perf_counter() - launched
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer on {url} in {timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            log.close()


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A Playwright page in a fresh headless Chromium (an empty profile each time)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(
                viewport={"width": width, "height": height}, device_scale_factor=1
            )
            yield context.new_page()
        finally:
            browser.close()


def wait_rendered(page, *, charts: int = 0, timeout_ms: int = 60_000) -> None:
    """Until the script run is over, and `charts` Vega charts have drawn."""
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms
    )
    page.wait_for_selector("h1", timeout=timeout_ms)
    if charts:
        page.wait_for_function(
            "n => document.querySelectorAll(\"[data-testid='stVegaLiteChart'] canvas, "
            "[data-testid='stVegaLiteChart'] svg.marks\").length >= n",
            arg=charts,
            timeout=timeout_ms,
        )
    page.wait_for_timeout(400)  # let the data grids paint their canvases


def screenshot(page, path: Path, *, max_height: int = 4200) -> None:
    """The whole page, not just the viewport: Streamlit scrolls inside its main block, so the
    viewport grows to the content's height (at most `max_height`) for the picture."""
    height = page.evaluate(
        "() => { const m = document.querySelector(\"[data-testid='stMainBlockContainer']\");"
        " return m ? Math.ceil(m.getBoundingClientRect().height) + 120 : 1000; }"
    )
    size = page.viewport_size or {"width": 1400, "height": 1000}
    page.set_viewport_size(
        {"width": size["width"], "height": max(size["height"], min(height, max_height))}
    )
    page.wait_for_timeout(600)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
