"""House rules of the package, read from the source (AST scans; nothing is imported to check them).

Each rule is a function `breaches(root) -> list[str]` over a source tree, so it runs on the
package (must be empty) and on a deliberately broken copy (must catch the breach): a rule that
cannot fail is no rule.

- no stage module (a dvc.yaml `python -m` module, or a seed command) imports another stage module;
- no import circle inside analysis/;
- each schema string, hook name, positions literal and emotion list is defined once;
- every ranking of heads or units by |score| goes through `analysis.base.contract.rank`;
- the top of analysis/ holds only doors (commands; `report.py`, the report's data layer), no door
  imports another; the libraries stand in rooms (sub-packages) whose imports never run back up
  (the rooms' import graph has no circle); no module name occurs twice (issue 22 item 3);
- a model family is described once, in its module under analysis/modelfacts/families/: no code
  elsewhere compares a family (or `model_type`) with a family's name (issue 22 item 7).
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SEED_COMMANDS = {"head_screening", "head_ablation", "head_patching", "head_plots"}
EMOTION_SET = {"gratitude", "anger", "apology"}
POSITION_SET = {"all", "last", "span"}
SCHEMA_RE = re.compile(r"^emotion-heads/[a-z-]+/v\d+$")
HOOK_RE = re.compile(r"^blocks\.")
# Sorting by |attribution| to pick which components get exact patching is a selection inside
# the screening, not a ranking anyone reads: it stays unrounded so the committed screening
# (which components were patched) does not change with this refactor.
RANKING_ALLOWED = {
    ("analysis/screening/heads.py", "screen"),
    ("analysis/screening/units.py", "screen"),
    ("analysis/screening/units.py", "layer_summary"),  # screen's per-layer top units, on the attribution array itself
    # where a layer's dots sit in its column of the unit figure (largest in the middle): layout
    ("analysis/plots/figures.py", "_unit_offsets"),
}


def _modules(root: Path) -> dict[str, Path]:
    pkg = root / "analysis"
    return {".".join(p.relative_to(pkg).with_suffix("").parts): p for p in sorted(pkg.rglob("*.py"))}


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """Project modules `path` imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "analysis" and node.level == 0:
            base = node.module.removeprefix("analysis").lstrip(".")
            if base in mods:
                out.add(base)
            for a in node.names:  # `from analysis.x import y` where y is a module
                sub = f"{base}.{a.name}" if base else a.name
                if sub in mods:
                    out.add(sub)
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("analysis.") for a in node.names if a.name.removeprefix("analysis.") in mods}
    return out


def _graph(root: Path) -> dict[str, set[str]]:
    mods = _modules(root)
    return {m: _imports(p, mods) - {m} for m, p in mods.items() if not m.endswith("__init__")}


def stage_modules(root: Path) -> set[str]:
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    out = set(SEED_COMMANDS)
    for st in stages.values():
        for cmd in [st["cmd"]] if isinstance(st["cmd"], str) else st["cmd"]:
            out |= set(re.findall(r"-m\s+analysis\.([\w.]+)", cmd))
    return out


def stage_import_breaches(root: Path) -> list[str]:
    graph, stages = _graph(root), stage_modules(root)
    return [f"stage module {a} imports stage module {b}" for a in sorted(stages) for b in sorted(graph.get(a, ())) if b in stages]


def _circles(graph: dict[str, set[str]]) -> list[str]:
    """Every back edge of a depth-first walk over `graph`, as the circle it closes."""
    found: list[str] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, set()) - {m}):
            if state.get(n) == 1:
                found.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def circle_breaches(root: Path) -> list[str]:
    return [f"import circle: {c}" for c in _circles(_graph(root))]

def _literal_strings(node: ast.AST) -> list[str] | None:
    """The strings of a tuple/list/set literal (or Literal[...] subscript) of strings only."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
        node = node.slice
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return [e.value for e in node.elts]
    return None


def vocabulary_breaches(root: Path) -> list[str]:
    """Schema strings outside analysis/base/contract.py (or twice in it); hook names, the positions
    literal and the emotion list outside analysis/base/vocabulary.py."""
    say: list[str] = []
    schemas: dict[str, list[str]] = {}
    for p in sorted((root / "analysis").rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SCHEMA_RE.match(node.value):
                schemas.setdefault(node.value, []).append(rel)
            texts = []
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts = [node.value]
            elif isinstance(node, ast.JoinedStr):
                texts = ["".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)]
            if rel != "analysis/base/vocabulary.py" and any(HOOK_RE.match(t) and "hook_" in t for t in texts):
                say.append(f"{rel}:{node.lineno}: hook name {texts[0]!r} outside analysis/base/vocabulary.py")
            strings = _literal_strings(node)
            if strings and rel != "analysis/base/vocabulary.py":
                if set(strings) == POSITION_SET:
                    say.append(f"{rel}:{node.lineno}: positions literal outside analysis/base/vocabulary.py")
                if set(strings) == EMOTION_SET:
                    say.append(f"{rel}:{node.lineno}: emotion list outside analysis/base/vocabulary.py")
    for schema, where in sorted(schemas.items()):
        if where != ["analysis/base/contract.py"]:
            say.append(f"schema {schema} defined in {', '.join(where)} (only analysis/base/contract.py, once)")
    return list(dict.fromkeys(say))  # a Literal[...] and its tuple are one finding


def _sorts_by_magnitude(call: ast.Call) -> bool:
    """sorted/min/max/.sort/.sort_values/argsort whose key or argument takes an abs()."""
    f = call.func
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    if name not in {"sorted", "sort", "min", "max", "sort_values", "argsort", "nlargest", "nsmallest"}:
        return False
    # min/max pick by magnitude only with a key (max(abs(x)) is a colour limit, not a ranking)
    parts = [k.value for k in call.keywords if k.arg == "key"] if name in {"min", "max"} else [*call.args, *(k.value for k in call.keywords)]
    return any(
        isinstance(n, ast.Call) and (getattr(n.func, "id", None) == "abs" or getattr(n.func, "attr", None) == "abs")
        for part in parts for n in ast.walk(part)
    )


def ranking_breaches(root: Path) -> list[str]:
    say = []
    for p in sorted((root / "analysis").rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel == "analysis/base/contract.py":
            continue
        for top in ast.parse(p.read_text()).body:
            # each call is charged to its top-level function (or class method, or the module)
            units = [(m.name, m) for m in top.body if isinstance(m, ast.FunctionDef)] if isinstance(top, ast.ClassDef) else []
            units = units or [(getattr(top, "name", "<module>"), top)]
            for name, unit in units:
                for node in ast.walk(unit):
                    if isinstance(node, ast.Call) and _sorts_by_magnitude(node) and (rel, name) not in RANKING_ALLOWED:
                        say.append(f"{rel}:{node.lineno} ({name}): ranks by |score| without analysis.base.contract.rank")
    return sorted(set(say))


# --- the hall holds only doors; rooms in floors; each name once (issue 22 item 3) -------------
# The report's data layer is imported by report/index.qmd, not run: the one door without a __main__.
NOT_RUN_DOORS = {"report"}


def _is_command(path: Path) -> bool:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name) \
                and node.test.left.id == "__name__":
            return True
    return False


def door_breaches(root: Path) -> list[str]:
    mods, graph = _modules(root), _graph(root)
    doors = {m for m in mods if "." not in m and m != "__init__"}
    say = [f"analysis/{m}.py is a library at the top of analysis/ (no `if __name__ == \"__main__\"`): move it into its room"
           for m in sorted(doors - NOT_RUN_DOORS) if not _is_command(mods[m])]
    say += [f"door {a} imports door {b}" for a in sorted(doors) for b in sorted(graph.get(a, ())) if b in doors]
    return say


def room_breaches(root: Path) -> list[str]:
    """Rooms are analysis/'s sub-packages; an import from a room into one that imports it back (through
    any path) runs back up a floor. Reported as the rooms' circles."""
    rooms: dict[str, set[str]] = {}
    for m, deps in _graph(root).items():
        if "." in m:
            rooms.setdefault(m.split(".")[0], set()).update(d.split(".")[0] for d in deps if "." in d)
    return [f"rooms import each other (an import runs back up a floor): {c}" for c in _circles(rooms)]


def name_breaches(root: Path) -> list[str]:
    where: dict[str, list[str]] = {}
    for p in sorted((root / "analysis").rglob("*.py")):
        if p.name != "__init__.py":
            where.setdefault(p.name, []).append(str(p.relative_to(root)))
    return [f"module name {n} twice: {', '.join(ps)}" for n, ps in sorted(where.items()) if len(ps) > 1]


# --- each family described once (issue 22 item 7) --------------------------------------------
FAMILY_ROOM = "analysis/modelfacts/families/"


def _family_names(root: Path) -> set[str]:
    """The names the family modules register (`Family(name="...")`), read from their source."""
    names = set()
    for p in sorted((root / FAMILY_ROOM).glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Family":
                names |= {k.value.value for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)}
    return names


def family_breaches(root: Path) -> list[str]:
    names, say = _family_names(root), []
    for p in sorted((root / "analysis").rglob("*.py")):
        rel = str(p.relative_to(root))
        if rel.startswith(FAMILY_ROOM):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            consts = {c.value for side in sides for c in ast.walk(side) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
            text = " ".join(ast.unparse(side) for side in sides if not isinstance(side, ast.Constant))
            if consts & names and ("family" in text or "model_type" in text):
                say.append(f"{rel}:{node.lineno}: branches on a family name ({ast.unparse(node)}): describe it in {FAMILY_ROOM}")
    if not names:
        say.append(f"no Family(name=...) registered under {FAMILY_ROOM}")
    return say


RULES = {
    "stage imports": stage_import_breaches,
    "import circles": circle_breaches,
    "vocabulary": vocabulary_breaches,
    "rankings": ranking_breaches,
    "doors": door_breaches,
    "rooms": room_breaches,
    "names": name_breaches,
    "families": family_breaches,
}


@pytest.mark.parametrize("rule", RULES)
def test_the_package_keeps_the_rule(rule: str) -> None:
    assert RULES[rule](REPO) == []


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "analysis", tmp_path / "analysis", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text((path.read_text() if path.exists() else "") + "\n" + text + "\n")


# Each rule, broken on purpose in a copy of the package: the rule must name the breach.
BREAKS = {
    "stage imports": ("analysis/summarize.py", "from analysis.head_screening import main as _m", "summarize imports stage module head_screening"),
    "import circles": ("analysis/base/vocabulary.py", "from analysis.core.sites import Site", "core.sites -> base.vocabulary"),
    "vocabulary": ("analysis/plots/style.py", 'ORDER = ("gratitude", "anger", "apology")', "emotion list outside"),
    "rankings": ("analysis/reporting/summary.py", "def f(rows):\n    return sorted(rows, key=lambda s: -abs(s['exact']))", "without analysis.base.contract.rank"),
    "doors": ("analysis/helpers.py", "def helper() -> None: ...", "analysis/helpers.py is a library"),
    "rooms": ("analysis/base/io.py", "from analysis.core.cli import Parser", "base -> core -> base"),
    "names": ("analysis/plots/stats.py", "X = 1", "module name stats.py twice"),
    "families": ("analysis/core/loading.py", "def rotary(spec):\n    return spec.family == \"gpt_neox\"", "branches on a family name"),
}


@pytest.mark.parametrize("rule", BREAKS)
def test_the_rule_catches_a_breach(rule: str, copy: Path) -> None:
    path, line, needle = BREAKS[rule]
    assert RULES[rule](copy) == []
    _append(copy / path, line)
    found = RULES[rule](copy)
    assert any(needle in f for f in found), found


def test_a_second_schema_string_is_caught(copy: Path) -> None:
    _append(copy / "analysis/plots/data.py", 'X = "emotion-heads/head-scores/v1"')
    assert vocabulary_breaches(copy) == ["schema emotion-heads/head-scores/v1 defined in analysis/base/contract.py, analysis/plots/data.py (only analysis/base/contract.py, once)"]


def test_a_hook_name_and_a_positions_literal_are_caught(copy: Path) -> None:
    _append(copy / "analysis/screening/heads.py", 'H = f"blocks.{0}.attn.hook_z"\nP = ("all", "last", "span")')
    found = vocabulary_breaches(copy)
    assert len(found) == 2 and "hook name" in found[0] and "positions literal" in found[1], found


# --- the one ranking -------------------------------------------------------------------------


def test_rank_breaks_float_noise_ties_by_layer_then_index() -> None:
    from analysis.base.contract import rank

    rows = [
        {"layer": 2, "head": 2, "exact": 3e-8},
        {"layer": 0, "head": 1, "exact": -2e-8},  # |ΔM| below 1e-6: ties with the others
        {"layer": 0, "head": 0, "exact": 4e-8},
        {"layer": 3, "head": 1, "exact": -11.5},  # sign does not matter, size does
        {"layer": 1, "head": 0, "exact": None},  # not scored: dropped
        {"layer": 1, "head": 1, "exact": float("nan")},
    ]
    assert [(r["layer"], r["head"]) for r in rank(rows, "exact")] == [(3, 1), (0, 0), (0, 1), (2, 2)]


def test_rank_reads_records_and_neurons() -> None:
    from collections import namedtuple

    from analysis.base.contract import rank

    U = namedtuple("U", "layer neuron attribution")
    rows = [U(1, 5, 0.5), U(0, 9, 0.5000000001), U(0, 2, -0.7)]
    assert [(u.layer, u.neuron) for u in rank(rows, "attribution", index="neuron")] == [(0, 2), (0, 9), (1, 5)]


def test_report_table_cumulative_curve_and_top_heads_csv_share_one_order() -> None:
    """The committed toy results: the report's screening table, `top:N` (the cumulative curve's
    heads) and plots/models/top_heads.csv list the same heads in the same order."""
    import pandas as pd

    from analysis import report as rep
    from analysis.base.contract import comparison_dir, screening_file
    from analysis.base.io import read_json
    from analysis.screening.heads import top_heads

    doc = read_json(REPO / screening_file("baseline", "toy"))
    csv = pd.read_csv(REPO / comparison_dir("baseline") / "top_heads.csv")
    for emotion in doc["emotions"]:
        table = rep.screening_table(doc, emotion, top_n=5)
        from_report = [tuple(int(x) for x in re.findall(r"\d+", h)) for h in table["Head"]]
        from_spec = list(top_heads(REPO / screening_file("baseline", "toy"), emotion, 5))
        sub = csv[(csv.model == "toy") & (csv.emotion == emotion)].sort_values("rank").head(5)
        from_csv = list(zip(sub.layer.astype(int), sub["head"].astype(int), strict=True))
        assert from_report == from_spec == from_csv, emotion
