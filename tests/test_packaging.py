"""What the shipped code imports is what pyproject.toml declares, and the other way round.

A dependency that is only present because another package pulls it in breaks the day that
package drops it; a declared one nobody imports is weight every install pays for.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, version

import pytest

from tests.conftest import REPO

SHIPPED = ("curation", "selection", "labeling", "training", "dashboard")
ENTRY_SCRIPTS = ("app.py",)
# Declared but used without an import statement, each for a stated reason.
USED_WITHOUT_IMPORT = {
    # the CPU/GPU math under sentence-transformers and peft; pinned first by the Makefile
    "torch": "imported",
    # polars.read_parquet and datasets' Arrow tables need it; ingest reads Parquet through it
    "pyarrow": "imported",
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalize(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    optional = {
        _requirement_name(r) for group in project["optional-dependencies"].values() for r in group
    }
    return runtime, optional


def _imported_distributions() -> dict[str, set[str]]:
    """Distribution -> the shipped files that import it."""
    files = [path for root in SHIPPED for path in (REPO / root).rglob("*.py")]
    files += [REPO / name for name in ENTRY_SCRIPTS]
    by_module = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in SHIPPED:
                    continue
                for distribution in by_module.get(top, [top]):
                    found.setdefault(_normalize(distribution), set()).add(
                        str(path.relative_to(REPO))
                    )
    return found


def test_every_imported_distribution_is_declared() -> None:
    runtime, optional = _declared()
    undeclared = {
        name: sorted(files)
        for name, files in _imported_distributions().items()
        if name not in runtime | optional
    }
    assert undeclared == {}


def test_every_declared_runtime_dependency_is_imported() -> None:
    runtime, _ = _declared()
    imported = set(_imported_distributions())
    assert runtime - imported == set()


def test_optional_imports_are_guarded() -> None:
    """umap-learn is optional: the shipped code must catch its absence (or look for it first)."""
    _, optional = _declared()
    runtime, _ = _declared()
    for name, files in _imported_distributions().items():
        if name in optional and name not in runtime:
            for file in files:
                source = (REPO / file).read_text("utf-8")
                assert "except ImportError" in source or "find_spec" in source, (name, file)


def test_streamlit_floor_has_st_app() -> None:
    """app.py serves an st.App; streamlit 1.56.0's wheel has none, 1.57.0's has."""
    runtime_requirements = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"][
        "dependencies"
    ]
    (streamlit,) = [r for r in runtime_requirements if _requirement_name(r) == "streamlit"]
    floor = tuple(int(part) for part in streamlit.split(">=")[1].split(".")[:2])
    assert floor >= (1, 57)
    import streamlit as st

    assert hasattr(st, "App"), version("streamlit")


@pytest.mark.slow
def test_the_wheel_ships_the_dashboard_scripts(tmp_path) -> None:
    """`curate dashboard` runs dashboard/web/ from the installed package: the wheel has it."""
    import subprocess
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + [str(REPO), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    web = {name for name in names if name.startswith("dashboard/web/")}
    assert web == {
        "dashboard/web/__init__.py",
        "dashboard/web/app.py",
        "dashboard/web/overview.py",
        *(f"dashboard/web/pages/{page}.py" for page in ("1_Selection", "2_Labeling", "3_Model")),
        "dashboard/web/pages/4_Quality.py",
    }
    assert "curation/cli/serve.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "curate = curation.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
