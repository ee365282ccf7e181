"""Regenerate the README's dashboard screenshots: docs/screenshots/<page>.png.

Builds the dashboard's test store (the shipped multilingual sample pool, two selection rounds,
Label Studio activity, training runs; see tests/dashboard/fixture_store.py) in a scratch folder,
serves `streamlit run app.py` on 127.0.0.1 and photographs every page with Debian's headless
Chromium through Playwright.

    scripts/install-browser.sh --fonts      # once: chromium + Noto fonts (Devanagari, CJK)
    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--width 1400]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.dashboard.browser_support import (  # noqa: E402
    CHROMIUM,
    PAGES,
    chromium,
    dashboard_server,
    screenshot,
    wait_rendered,
)
from tests.dashboard.fixture_store import build_store  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--max-height", type=int, default=4200)
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} not found: run scripts/install-browser.sh --fonts", file=sys.stderr)
        return 2
    # A fixed scratch path: the sidebar shows the store path, so pictures differ less per run.
    scratch = Path(tempfile.gettempdir()) / "curate-demo"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        project = scratch
        expected = build_store(project)
        args.out.mkdir(parents=True, exist_ok=True)
        with (
            dashboard_server({"CURATE_CONFIG": str(expected["config"])}) as url,
            chromium(width=args.width) as page,
        ):
            for path, title, charts in PAGES:
                charts += title == "Model" and expected["evaluations"]
                page.goto(url + path)
                wait_rendered(page, charts=charts)
                if page.locator("[data-testid='stException']").count():
                    print(f"{title}: the page shows an exception", file=sys.stderr)
                    return 1
                target = args.out / f"{title.lower()}.png"
                screenshot(page, target, max_height=args.max_height)
                print(f"{target.relative_to(REPO)}  ({target.stat().st_size // 1024} KiB)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
