"""app.py is the server: `streamlit run app.py` must find its st.App, and its start-up hook must
leave the dashboard's imports loaded and the Overview's reads cached before any page runs."""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from streamlit.web.server.app_discovery import discover_asgi_app

from curation.store import Store, utc_now
from dashboard import queries
from dashboard.source import fingerprint
from dashboard.warmup import MODULES, OVERVIEW_QUERIES, warm_overview
from dashboard.web import WEB
from tests.dashboard.browser_support import dashboard_server
from tests.dashboard.fixture_store import build_store

REPO = Path(__file__).resolve().parents[2]


def test_streamlit_run_finds_the_app_and_its_page() -> None:
    # The checkout's app.py and the package's (what `curate dashboard` runs) are both st.Apps
    # of the package's overview.py.
    for script in (REPO / "app.py", WEB / "app.py"):
        found = discover_asgi_app(script)
        assert found.is_asgi_app
        assert found.app_name == "app"
        assert found.import_string == "app:app"
    # overview.py is a plain page script: `streamlit run .../overview.py` keeps working.
    assert not discover_asgi_app(WEB / "overview.py").is_asgi_app


def test_sidebar_links_point_at_page_scripts() -> None:
    from dashboard.ui import PAGES

    assert PAGES[0][:2] == ("overview.py", "Overview")
    assert [path for path, _, _ in PAGES if not (WEB / path).is_file()] == []


def test_warm_up_reads_exactly_what_the_overview_loads() -> None:
    tree = ast.parse((WEB / "overview.py").read_text(encoding="utf-8"))
    loads = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "ctx"
    ]
    assert sorted(set(loads)) == sorted(OVERVIEW_QUERIES)
    assert all(callable(getattr(queries, name)) for name in OVERVIEW_QUERIES)


def test_startup_hook_loads_the_imports_in_a_fresh_interpreter(tmp_path: Path) -> None:
    child = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
import app
watched = ("pandas", "altair", "dashboard.ui")
before = [m for m in watched if m in sys.modules]
async def serve():
    async with app.warm_up_then_serve(app.app):
        return [m for m in watched if m in sys.modules]
after = asyncio.run(serve())
from dashboard.warmup import warm_up
print(json.dumps({"before": before, "after": after, "again": warm_up()}))
"""
    result = subprocess.run(
        [sys.executable, "-c", child, str(REPO)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "CURATE_STORE": str(tmp_path / "absent")},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["before"] == []  # importing app.py alone stays cheap
    assert out["after"] == ["pandas", "altair", "dashboard.ui"]
    assert sorted(out["again"]) == sorted([*MODULES, "altair_first_chart", "store"])
    assert out["again"]["store"] is None  # no store yet: nothing read, and no error


@pytest.fixture
def server_cache() -> Iterator[None]:
    """A runtime with one cache storage, as in `streamlit run` (AppTest does the same): without
    a runtime Streamlit's cache falls back to a throwaway store on every call."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager

    from dashboard import ui

    runtime = MagicMock(spec=Runtime)
    runtime.cache_storage_manager = MemoryCacheStorageManager()
    Runtime._instance = runtime
    ui._cached_query.clear()
    try:
        yield
    finally:
        ui._cached_query.clear()
        Runtime._instance = None


@pytest.mark.slow
@pytest.mark.usefixtures("server_cache")
def test_warm_up_fills_the_cache_the_overview_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashboard.source import resolve_source
    from dashboard.ui import Context

    expected = build_store(tmp_path / "project")
    monkeypatch.setenv("CURATE_CONFIG", str(expected["config"]))
    assert warm_overview() is not None
    calls: list[str] = []
    for name in OVERVIEW_QUERIES:
        original = getattr(queries, name)
        monkeypatch.setattr(
            queries, name, lambda *a, _f=original, _n=name, **k: (calls.append(_n), _f(*a, **k))[1]
        )
    source = resolve_source([])
    # What overview.py does: ctx.load(name) with the page's context.
    page = Context(source=source, fingerprint=fingerprint(source.db_path))
    assert int(page.load("overview")["per_language"]["pool"].sum()) == expected["pool"]
    for name in OVERVIEW_QUERIES:
        page.load(name)
    assert calls == []  # every Overview query came from the cache the warm-up filled
    # A write changes the fingerprint: the next visit reads the store, never stale data.
    with Store(Path(expected["store"])) as writer, writer.transaction() as conn:
        conn.execute(
            "INSERT INTO quarantine (file, line, field, reason, raw, source, created_at) "
            "VALUES ('late.jsonl', 1, 'text', 'empty text', '{}', 'test', ?)",
            (utc_now(),),
        )
    page = Context(source=source, fingerprint=fingerprint(source.db_path))
    for name in OVERVIEW_QUERIES:
        page.load(name)
    assert calls == list(OVERVIEW_QUERIES)


def test_unreadable_store_does_not_stop_the_warm_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "curate.db").write_bytes(b"this is not a database" * 10)
    monkeypatch.setenv("CURATE_STORE", str(store))
    monkeypatch.delenv("CURATE_CONFIG", raising=False)
    assert warm_overview() is None


def _own_non_loopback_address() -> str | None:
    """This machine's outward IPv4 address (a UDP "connect" sends nothing), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.slow
def test_server_listens_on_localhost_only_by_default(tmp_path: Path) -> None:
    """`streamlit run app.py` with no address flag: .streamlit/config.toml keeps it local."""
    outward = _own_non_loopback_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback IPv4 address to probe")
    with dashboard_server({"CURATE_STORE": str(tmp_path / "absent")}, address=None) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        with pytest.raises(OSError):
            socket.create_connection((outward, port), timeout=5).close()
