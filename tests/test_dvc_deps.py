"""dvc.yaml's code deps are the import closures of the stage modules (tests/dvc_deps.py derives them).

If this fails after a change to the package, run `python -m tests.dvc_deps --write` and commit dvc.yaml.
"""

from __future__ import annotations

import importlib.util
import shutil
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dvc_deps", REPO / "tests/dvc_deps.py")
dvc_deps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dvc_deps)


def test_every_stage_lists_exactly_the_project_files_it_runs() -> None:
    stale = dvc_deps.check(REPO)
    assert stale == {}, f"stale dvc.yaml deps (run `python -m tests.dvc_deps --write`): {stale}"


def test_the_summary_reruns_when_ranking_or_statistics_code_changes() -> None:
    """summarize ranks heads and reads statistics: the files that define them must be its deps."""
    known = dvc_deps.module_files(REPO)
    need = dvc_deps.closure("analysis.summarize", known, REPO)
    defining = {
        f for f in known.values()
        if f.name == "stats.py" or "def rank(" in (REPO / f).read_text(encoding="utf-8")
    }
    assert defining and defining <= need, sorted(map(str, defining - need))


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    """A hand-made package whose closures are known: packages, relative, lazy and literal imports."""
    _write(tmp_path, {
        "analysis/__init__.py": "",
        "analysis/errors.py": "import json\n",
        "analysis/cli.py": """
            import sys
            from analysis.core import engine
            def main():
                from analysis import lazy  # a lazy import still runs when the stage runs
                import importlib
                importlib.import_module("analysis.plugin")
            """,
        "analysis/core/__init__.py": "from .. import errors\n",
        "analysis/core/engine.py": "from .util import helper\nimport numpy\n",
        "analysis/core/util.py": "def helper(): ...\n",
        "analysis/lazy.py": "",
        "analysis/plugin.py": "",
        "analysis/unused.py": "import analysis.cli\n",
        "analysis/other.py": "import analysis.errors\n",
        "dvc.yaml": """
            # the comment survives --write
            stages:
              a:
                cmd: python -m analysis.cli --x 1
                deps:
                  - analysis/cli.py
                  - data/in.txt
                outs:
                  - out.json
              b:
                matrix:
                  m: [x, y]
                cmd: python -m analysis.other --m ${item.m}
                deps:
                  - analysis
                  - data/in.txt
            """,
    })
    return tmp_path


def test_closure_follows_packages_relative_lazy_and_literal_imports(mini: Path) -> None:
    known = dvc_deps.module_files(mini)
    got = sorted(map(str, dvc_deps.closure("analysis.cli", known, mini)))
    assert got == [
        "analysis/__init__.py", "analysis/cli.py", "analysis/core/__init__.py", "analysis/core/engine.py",
        "analysis/core/util.py", "analysis/errors.py", "analysis/lazy.py", "analysis/plugin.py",
    ]
    assert sorted(map(str, dvc_deps.closure("analysis.other", known, mini))) == [
        "analysis/__init__.py", "analysis/errors.py", "analysis/other.py",
    ]


def test_a_stale_stage_fails_and_a_folder_dep_covers_its_files(mini: Path) -> None:
    stale = dvc_deps.check(mini)
    assert list(stale) == ["a"]  # b lists the whole package folder
    missing, extra = stale["a"]
    assert missing == [
        "analysis/__init__.py", "analysis/core/__init__.py", "analysis/core/engine.py", "analysis/core/util.py",
        "analysis/errors.py", "analysis/lazy.py", "analysis/plugin.py",
    ]
    assert extra == []


def test_write_regenerates_deps_and_keeps_data_deps_and_comments(mini: Path) -> None:
    assert dvc_deps.main(["--root", str(mini), "--write"]) == 0
    assert dvc_deps.check(mini) == {}
    text = (mini / "dvc.yaml").read_text()
    assert text.startswith("# the comment survives --write")
    import yaml

    stages = yaml.safe_load(text)["stages"]
    assert stages["a"]["deps"][-1] == "data/in.txt" and len(stages["a"]["deps"]) == 9
    assert stages["b"]["deps"] == ["analysis/__init__.py", "analysis/errors.py", "analysis/other.py", "data/in.txt"]
    assert stages["b"]["cmd"] == "python -m analysis.other --m ${item.m}" and stages["a"]["outs"] == ["out.json"]


def test_the_projects_dvc_yaml_with_a_dep_removed_fails(tmp_path: Path) -> None:
    """The deliberately stale case: summarize without the statistics module."""
    shutil.copytree(REPO / "analysis", tmp_path / "analysis", ignore=shutil.ignore_patterns("__pycache__"))
    stats = next(str(f) for f in dvc_deps.module_files(REPO).values() if f.name == "stats.py")
    head, sep, summarize = (REPO / "dvc.yaml").read_text().partition("\n  summarize:\n")
    assert sep and f"      - {stats}\n" in summarize
    (tmp_path / "dvc.yaml").write_text(head + sep + summarize.replace(f"      - {stats}\n", "", 1))
    stale = dvc_deps.check(tmp_path)
    assert stale == {"summarize": ([stats], [])}, stale
    assert dvc_deps.main(["--root", str(tmp_path)]) == 1
