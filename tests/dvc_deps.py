"""Each dvc.yaml stage's Python deps, derived from the code: the import closure of its `cmd` module.

A stage reruns only when one of its deps changes, so a project file the stage imports but does
not list lets `dvc status` stay clean while the committed output goes stale. This module reads
the imports by AST (no import is executed): `python -m analysis.x` runs `analysis/__init__.py`
and `analysis/x.py`; every `import analysis.a.b` / `from analysis.a import b` / relative import
adds the module and every package `__init__` on its way, transitively. Only files under
`analysis/` count (third-party code is pinned by requirements.lock, not by deps).

    python -m tests.dvc_deps            # print each stage's missing / extra project files; exit 1 if any
    python -m tests.dvc_deps --write    # rewrite every stage's deps: its closure, then its data deps

`--write` keeps comments and layout (ruamel.yaml round trip, which DVC itself uses) and keeps every
dep outside `analysis/` (data, results) as it is, in order, after the sorted code deps.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from ruamel.yaml import YAML

PACKAGE = "analysis"
_CMD_MODULE = re.compile(rf"-m\s+({PACKAGE}(?:\.\w+)*)")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file (repo-relative), for every .py under the package."""
    out = {}
    for p in sorted((root / PACKAGE).rglob("*.py")):
        rel = p.relative_to(root)
        parts = rel.with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = rel
    return out


def _with_parents(name: str) -> list[str]:
    """`a.b.c` → [a, a.b, a.b.c]: importing a submodule runs every package __init__ above it."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules that module `name` (file `path`) imports anywhere in its body, lazily or not."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from . import x`, `from ..a import b`
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # `from pkg import submodule`
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)  # importlib.import_module("analysis.x") with a literal name
    return {m for f in found for m in _with_parents(f) if m in known}


def closure(module: str, known: dict[str, Path], root: Path) -> set[Path]:
    """Every project file that `python -m module` runs, transitively."""
    seen: set[str] = set()
    todo = [m for m in _with_parents(module) if m in known]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += imported_modules(m, root / known[m], known) - seen
    return {known[m] for m in seen}


def stage_bodies(dvc: dict) -> Iterable[tuple[str, dict]]:
    """(stage name, the mapping that holds cmd and deps), for plain, matrix and foreach stages."""
    for name, stage in (dvc.get("stages") or {}).items():
        yield name, stage.get("do", stage)


def stage_module(body: dict) -> str | None:
    cmds = body.get("cmd", "")
    for cmd in [cmds] if isinstance(cmds, str) else cmds:
        hit = _CMD_MODULE.search(cmd)
        if hit:
            return hit.group(1)
    return None


def covered(f: Path, deps: Iterable[str]) -> bool:
    """A dep lists `f` itself or a folder above it (DVC hashes a folder dep's every file)."""
    return any(f == Path(d) or Path(d) in f.parents for d in deps)


def _is_code(dep: str) -> bool:
    return Path(dep).parts[:1] == (PACKAGE,)


def check(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Stage → (closure files its deps miss, project .py files it lists but does not run)."""
    known = module_files(root)
    dvc = YAML(typ="safe").load((root / "dvc.yaml").read_text(encoding="utf-8"))
    out = {}
    for name, body in stage_bodies(dvc):
        module = stage_module(body)
        if module is None:
            continue
        if module not in known:
            raise SystemExit(f"error: dvc stage {name} runs {module}, which is no module under {PACKAGE}/")
        deps = [d for d in body.get("deps", []) if isinstance(d, str)]
        need = closure(module, known, root)
        missing = sorted(str(f) for f in need if not covered(f, deps))
        extra = sorted(d for d in deps if _is_code(d) and d.endswith(".py") and Path(d) not in need)
        if missing or extra:
            out[name] = (missing, extra)
    return out


def write(root: Path) -> list[str]:
    """Rewrite each stage's deps to its closure (sorted) + its non-code deps; return changed stages."""
    known = module_files(root)
    yaml = YAML()  # round trip: comments, order and quoting survive
    yaml.width = 4096  # never re-wrap the long `cmd` lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = root / "dvc.yaml"
    dvc = yaml.load(path.read_text(encoding="utf-8"))
    changed = []
    for name, body in stage_bodies(dvc):
        module = stage_module(body)
        if module is None:
            continue
        deps = list(body.get("deps", []))
        code = sorted(str(f) for f in closure(module, known, root))
        new = code + [d for d in deps if not (isinstance(d, str) and _is_code(d))]
        if new != deps:
            body["deps"].clear()
            body["deps"].extend(new)
            changed.append(name)
    with path.open("w", encoding="utf-8") as f:
        yaml.dump(dvc, f)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.dvc_deps", description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite dvc.yaml's deps to the import closures")
    ap.add_argument("--root", type=Path, default=Path("."), help="project root (holds dvc.yaml and analysis/)")
    a = ap.parse_args(argv)
    if a.write:
        changed = write(a.root)
        print(f"rewrote the deps of {len(changed)} stage(s): {', '.join(changed) or '-'}")
        return 0
    stale = check(a.root)
    for name, (missing, extra) in stale.items():
        if missing:
            print(f"{name}: deps miss {len(missing)} file(s) it runs: {', '.join(missing)}")
        if extra:
            print(f"{name}: deps list {len(extra)} file(s) it does not run: {', '.join(extra)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
