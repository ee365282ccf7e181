"""The dashboard in a real browser: `streamlit run app.py --server.headless true` on a free
127.0.0.1 port, driven by Debian's headless Chromium through Playwright.

Every page: no Streamlit exception block, its charts drawn, a known number on screen; the
global language filter applied and kept across a sidebar navigation; a pool row holding
`<script>` shown as literal text (no dialog, no injected element). Screenshots of every page are
saved under artifacts/dashboard/ (gitignored) for a person to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboard.browser_support import (
    CHROMIUM,
    PAGES,
    REPO,
    chromium,
    dashboard_server,
    free_port,
    screenshot,
    serve,
    wait_rendered,
)
from tests.dashboard.fixture_store import build_store

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is absent: run scripts/install-browser.sh (Debian chromium)",
    ),
]

ARTIFACTS = REPO / "artifacts" / "dashboard"


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_store(tmp_path_factory.mktemp("browser") / "project")


def test_every_page_in_headless_chromium(expected: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    with (
        dashboard_server(
            {"CURATE_CONFIG": str(expected["config"])}, log_path=ARTIFACTS / "streamlit.log"
        ) as url,
        chromium() as page,
    ):
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        for path, title, charts in PAGES:
            charts += title == "Model" and expected["evaluations"]  # a curve more with v2
            page.goto(url + path)
            wait_rendered(page, charts=charts)
            screenshot(page, ARTIFACTS / f"{title.lower()}.png")
            assert page.locator("[data-testid='stException']").count() == 0, title
            assert page.locator("h1", has_text=title).count() == 1
            assert page.locator("[data-testid='stVegaLiteChart']").count() == charts, title
            assert page.locator("[data-testid='stDataFrame']").count() >= 1, title

        # Markup in the store is text: the grid's cell holds it literally, nothing runs.
        page.goto(url + "/Quality")
        wait_rendered(page, charts=2)
        cell = page.locator("[role='gridcell']", has_text="<script>alert('xss')</script>")
        cell.first.wait_for(state="attached", timeout=60_000)  # drawn after the script run
        assert page.locator("b", has_text="bold").count() == 0
        assert (
            page.evaluate(
                "() => [...document.scripts].filter(s => s.text.includes(\"alert('xss')\")).length"
            )
            == 0
        )
        # Known numbers, read off the screen.
        page.goto(url + "/")
        wait_rendered(page, charts=2)
        values = dict(
            zip(
                page.locator("[data-testid='stMetricLabel']").all_inner_texts(),
                page.locator("[data-testid='stMetricValue']").all_inner_texts(),
                strict=True,
            )
        )
        assert values["Pool size"] == str(expected["pool"]) == "322"
        assert values["Quarantined"] == "8"
        summary = page.locator(".st-key-overview-summary").inner_text()
        assert summary.startswith("322 examples in 8 languages · ")
        assert " · 8 quarantined · " in summary and "**" not in summary

        # The global language filter, then a sidebar link: the filter holds on the next page
        # (and, as Streamlit keeps the session per tab, on a reload too: so this comes last).
        sidebar_filter = page.locator("[data-testid='stSidebar'] [data-testid='stMultiSelect']")
        sidebar_filter.click()
        page.keyboard.type("hi")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        page.wait_for_function(
            "() => [...document.querySelectorAll(\"[data-testid='stMetricValue']\")]"
            ".some(e => e.innerText === '39')",
            timeout=60_000,
        )
        wait_rendered(page, charts=1)  # no quarantined row is in Hindi: one chart left
        summary = page.locator(".st-key-overview-summary").inner_text()
        assert summary.startswith("39 examples in 1 language · ")  # follows the filter
        page.locator("[data-testid='stSidebar'] a", has_text="Selection").click()
        page.wait_for_url("**/Selection")
        wait_rendered(page, charts=3)
        assert "hi" in sidebar_filter.inner_text()
        first, second = expected["rounds"]
        selected = first["per_language"]["hi"] + second["per_language"]["hi"]
        labels = page.locator("[data-testid='stMetricLabel']").all_inner_texts()
        values = page.locator("[data-testid='stMetricValue']").all_inner_texts()
        assert values[labels.index("Examples selected")] == str(selected)
        screenshot(page, ARTIFACTS / "selection-filtered-hi.png")

    assert dialogs == []


def test_store_argument_reaches_every_page(expected: dict) -> None:
    """`streamlit run app.py -- --store PATH` (app.py serves overview.py as an st.App): the
    argument after `--` picks the store on the main page and on a page reached by its link."""
    store = Path(expected["store"])
    with dashboard_server({}, script_args=["--store", str(store)]) as url, chromium() as page:
        page.goto(url + "/")
        wait_rendered(page, charts=2)
        sidebar = page.locator("[data-testid='stSidebar']")
        assert "Chosen by: --store" in sidebar.inner_text()
        labels = page.locator("[data-testid='stMetricLabel']").all_inner_texts()
        values = page.locator("[data-testid='stMetricValue']").all_inner_texts()
        assert values[labels.index("Pool size")] == "322"
        sidebar.locator("a", has_text="Quality").click()
        page.wait_for_url("**/Quality")
        wait_rendered(page, charts=2)
        assert "Chosen by: --store" in sidebar.inner_text()
        assert page.locator("[data-testid='stException']").count() == 0


def test_curate_dashboard_serves_the_packaged_app_from_any_folder(
    expected: dict, tmp_path: Path
) -> None:
    """`curate dashboard` runs the package's app (dashboard/web/app.py) with the settings as
    flags: from a folder with no .streamlit/ and no app.py, every page renders the store."""
    import sys

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "curation.cli",
        "--config",
        str(expected["config"]),
        "dashboard",
        "--port",
        str(port),
    ]
    with serve(command, port, env={}, cwd=tmp_path) as url, chromium() as page:
        page.goto(url + "/")
        wait_rendered(page, charts=2)
        sidebar = page.locator("[data-testid='stSidebar']")
        assert "Chosen by: --store" in sidebar.inner_text()
        labels = page.locator("[data-testid='stMetricLabel']").all_inner_texts()
        values = page.locator("[data-testid='stMetricValue']").all_inner_texts()
        assert values[labels.index("Pool size")] == "322"
        for path, title, _ in PAGES[1:]:
            page.goto(url + path)
            page.locator("h1", has_text=title).wait_for()
            assert page.locator("[data-testid='stException']").count() == 0, title
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written where it ran
    # `curate dashboard` became the server (exec): stopping it stopped Streamlit, no orphan
    # holds the port.
    import socket

    with socket.socket() as probe:
        # SO_REUSEADDR: closed connections may linger in TIME_WAIT; only a listener fails this.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
