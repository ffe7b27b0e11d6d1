"""The Quarto report (report/index.qmd) and its data layer (analysis/report.py).

These tests need no Quarto: the report's chunks are run the way Quarto's Jupyter engine runs them: index.qmd → notebook with jupytext's Rmd reader (Quarto's
```{python} chunks are Rmd chunks), executed by nbclient + ipykernel in the Quarto project folder
(execute-dir: project = report/), then every inline expression `{python} expr` of the prose is
evaluated in that kernel through the kernel protocol's `user_expressions`, exactly as Quarto's
notebook.py does, and must give a non-empty text/plain value. The rendered HTML and PDF are
tested in tests/test_report_render.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from analysis import report as rep
from analysis.base.errors import InputError
from analysis.base.io import read_json, write_json

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "report"
QMD = REPORT / "index.qmd"
EMOTIONS = ("gratitude", "anger", "apology")
# Quarto's own pattern for inline expressions (src/resources/jupyter/notebook.py, cell_execute_inline).
INLINE = re.compile(r"(?:^|[^`])`\{python\}[ \t]([^`]+)`", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A 1 × 1 PNG: the synthetic tree's stand-in for the stage figures.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


# --------------------------------------------------------------------------------------------
# A synthetic results tree (hand-made documents in the stages' schemas)
# --------------------------------------------------------------------------------------------

PLANTED = {"gratitude": (3, 1), "anger": (3, 2), "apology": (3, 0)}
METRICS = ("sentiment", "kw_gratitude", "kw_anger", "kw_apology", "kw_neutral", "changed", "emotion_score", "kl")
SIGNED = tuple(m for m in METRICS if m not in ("changed", "kl"))  # KL and changed are non-negative: no sign-flip test


def _effect(mean: float, width: float, p: float) -> dict[str, Any]:
    return {"n": 70, "mean": mean, "ci_low": mean - width, "ci_high": mean + width, "p": p, "n_clusters": 14}


def _screening(model: str, n_layers: int, n_heads: int, planted: dict[str, tuple[int, int]] | None) -> dict[str, Any]:
    scores = []
    for ei, e in enumerate(EMOTIONS):
        strong = planted[e] if planted else (n_layers - 1, ei % n_heads)
        for layer in range(n_layers):
            for head in range(n_heads):
                i = layer * n_heads + head
                big = (layer, head) == strong
                exact = (2.5 + 0.1 * ei) if big else 0.001 * (i + 1) * (-1) ** i
                scores.append({
                    "layer": layer, "head": head, "emotion": e,
                    "delta_attn": 0.01 * (i + 1) - 0.003 * ei,
                    "attribution": exact * 0.9 + 0.0001 * i,
                    "exact": exact, "exact_ci_low": exact - 0.2, "exact_ci_high": exact + 0.2,
                    "exact_p": 0.0002 if big else 0.5, "exact_q": 0.0009 if big else 0.8,
                    "exact_n": 70, "exact_n_clusters": 14,
                })
    return {
        "schema": rep.HEAD_SCORES_SCHEMA, "model": model, "profile": "baseline",
        "n_layers": n_layers, "n_heads": n_heads, "emotions": list(EMOTIONS),
        "params": {"model": model, "profile": "baseline", "emotions": list(EMOTIONS), "positions": "all",
                   "exact_top_k": 0, "n_resamples": 5000, "seed": 0},
        "metric": "M", "pairs": {e: {"n_pairs": 70, "n_pairs_used": 70, "n_clusters": 14, "exact_half": "selection"} for e in EMOTIONS},
        "split": {"enabled": True, "half": "selection", "seed": 0, "selection_share": 0.5},
        "scores": scores, "attribution_vs_exact": {e: 0.91 for e in EMOTIONS},
    }


def _arm(sign: float, scale: float = 1.0) -> dict[str, Any]:
    """The statistics blocks of one experiment arm (analysis.experiments.render), by hand."""
    effects = {m: _effect(sign * 0.05 * scale, 0.02, 0.03) | {"no_effect": False} for m in SIGNED}
    effects["emotion_score"] = _effect(sign * 1.2345 * scale, 0.17, 0.0005) | {"no_effect": False}
    excess = {m: _effect(0.4 * scale, 0.1, 0.0002) for m in METRICS}
    return {
        "effects": effects,
        "fraction_of_gap": {"n": 70, "ratio": 0.9 * scale, "ci_low": 0.8 * scale, "ci_high": None, "n_clusters": 14,
                            "no_effect": False},
        "non_negative": {
            "kl": {"vs_random": excess["kl"] | {"no_effect": False}},
            "changed": {"vs_random": excess["changed"] | {"no_effect": False},
                        "clusters_changed": {"k": 10, "n": 14, "share": 10 / 14, "ci_low": 0.42, "ci_high": 0.92}},
        },
        "random_baseline": {
            "effects": {m: {"mean": 0.01, "per_draw": [0.01] * 5} for m in METRICS},
            "fraction_of_gap": {"mean": 0.02, "per_draw": [0.02] * 5}, "excess": excess,
        },
        "random_sites": [["0:0"]] * 5, "effects_confirmation": None, "confirmation": None,
    }


def _halves(sign: float, scale: float = 1.0) -> dict[str, Any]:
    """An arm over all prompts and, 0.9× as large, over the confirmation half (analysis.experiments.render)."""
    arm, conf = _arm(sign, scale), _arm(sign, 0.9 * scale)
    return arm | {"effects_confirmation": conf.pop("effects"), "confirmation": {k: v for k, v in conf.items()
                                                                                  if k not in ("random_sites", "effects_confirmation", "confirmation")}}


def _experiment(name: str, model: str, emotion: str, head: tuple[int, int]) -> dict[str, Any]:
    kind, direction = rep.EXPERIMENTS[name]
    targets_neutral = direction == "denoising"
    sign = 1.0 if targets_neutral else -1.0
    baseline = {m: 0.2 for m in METRICS} | {"emotion_score": -1.0 if targets_neutral else 1.5, "changed": 0.0, "kl": 0.0}
    arm = _halves(sign)
    intervened = {m: baseline[m] + arm["effects"][m]["mean"] for m in SIGNED} | {"changed": 0.4, "kl": 0.8}
    doc = {
        "schema": rep.EXPERIMENT_SCHEMAS[kind], "experiment": name, "question": f"the question of {name}",
        "model": model, "profile": "baseline", "emotion": emotion,
        "heads": [list(head)], "sites": [f"{head[0]}:{head[1]}"], "head_spec": "top:1",
        "n_prompts": 70, "max_tokens": 15, "baseline": baseline, "intervened": intervened, **arm,
        "noise_floor": {"control_max": {m: 0.0 for m in METRICS}, "atol": 1e-5, "floor": {m: 1e-5 for m in METRICS}},
        "cumulative": [
            {"k": k, "heads": [list(head)] + [[0, j] for j in range(k - 1)], "intervened": intervened,
             **_halves(sign, 1 + 0.1 * (k - 1))}
            for k in (1, 2, 3)
        ],
        "params": {"head_spec": "top:1", "max_tokens": 15, "cumulative_k": 3, "seed": 0, "n_resamples": 5000},
        "notes": [], "split": {"enabled": True, "effects": "all", "effects_confirmation": "confirmation",
                               "n_prompts_all": 70, "n_prompts_confirmation": 34},
    }
    doc["method" if kind == "ablation" else "positions"] = "zero" if kind == "ablation" else "all"
    if direction:
        doc["direction"] = direction
    return doc


def make_results(root: Path, models: tuple[str, ...] = ("toy",)) -> Path:
    """A complete results tree for `models` under `root` (params.yaml included); summary.json is
    made by analysis.summarize from the hand-made stage documents."""
    from analysis.base.contract import attention_dir, experiment_file, model_dir, plots_dir, screening_file
    from analysis.settings.params import load_params
    from analysis import model_comparison
    from analysis.reporting.summary import summarize
    from transformers import GPT2Config

    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(models=list(models), emotions=list(EMOTIONS), profile="baseline")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for model in models:
        planted = PLANTED if model == "toy" else None
        shape = (4, 4) if model == "toy" else (2, 3)
        doc = _screening(model, *shape, planted)
        write_json(root / screening_file("baseline", model), doc)
        for e in EMOTIONS:
            top = rep.ranked(doc, e)[0]
            for kind in rep.KINDS:
                write_json(root / experiment_file(kind, "baseline", model, e), _experiment(kind, model, e, (top["layer"], top["head"])))
        if planted:
            write_json(root / model_dir(model) / "planted.json", {
                "schema": rep.PLANTED_SCHEMA, "by_emotion": {e: [list(h)] for e, h in planted.items()},
                "heads": sorted(list(h) for h in planted.values()),
            })
        # the model's config (compare_models reads its parameter count): a GPT-2 of the screening's shape
        GPT2Config(n_layer=shape[0], n_head=shape[1], n_embd=8 * shape[1], vocab_size=64, n_positions=32).save_pretrained(root / model_dir(model))
        figures = root / plots_dir("baseline", model)
        figures.mkdir(parents=True, exist_ok=True)
        for name in rep.FIGURES.values():
            (figures / name).write_bytes(PNG)
        attention = root / attention_dir("baseline", model)
        attention.mkdir(parents=True, exist_ok=True)
        (attention / "attention_pattern.png").write_bytes(PNG)
    cwd = Path.cwd()
    os.chdir(root)  # summarize and compare_models read the relative paths of analysis.outputs
    try:
        summary = summarize(load_params(Path("params.yaml")))
        model_comparison.main(["--params", "params.yaml"])
    finally:
        os.chdir(cwd)
    write_json(root / "results" / "summary.json", summary)
    return root


@pytest.fixture(scope="module")
def toy_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_results(tmp_path_factory.mktemp("toy_only"))


@pytest.fixture(scope="module")
def two_model_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_results(tmp_path_factory.mktemp("toy_gpt2"), ("toy", "gpt2"))


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def test_fmt_effect_exact_string() -> None:
    effect = {"n": 70, "mean": -1.2345, "ci_low": -1.4012, "ci_high": -1.0467, "p": 0.0005}
    assert rep.fmt_effect(effect) == "−1.23 [−1.40, −1.05], p = 0.0005"
    assert rep.fmt_effect(effect, p=False) == "−1.23 [−1.40, −1.05]"
    small = {"mean": 0.0349, "ci_low": 0.0101, "ci_high": 0.0612, "p": 0.031234}
    assert rep.fmt_effect(small) == "+0.0349 [0.0101, 0.0612], p = 0.031"
    tiny = {"mean": 3e-9, "ci_low": -1e-8, "ci_high": 2e-8, "p": 1.0}
    assert rep.fmt_effect(tiny) == "+3.00e−09 [−1.00e−08, 2.00e−08], p = 1"


def test_narrow_interval_keeps_two_digits_of_its_width() -> None:
    effect = {"mean": 10.942314, "ci_low": 10.915295, "ci_high": 10.982952, "p": 0.00048828125}
    assert rep.fmt_effect(effect) == "+10.942 [10.915, 10.983], p = 0.00049"
    flat = {"mean": -3.0, "ci_low": -3.0, "ci_high": -3.0, "p": 0.00048828125}
    assert rep.fmt_effect(flat) == "−3.00 [−3.00, −3.00], p = 0.00049"


def test_delta_attn_summary_counts_shared_values() -> None:
    doc = _screening("toy", 2, 2, None)
    for s, v in zip((s for s in doc["scores"] if s["emotion"] == "anger"), (-0.025819, -0.025819, 0.0, 1e-9)):
        s["delta_attn"] = v  # the seed's bug: one value shared by several heads
    assert rep.delta_attn_summary(doc, "anger") == "2 non-zero values (1 distinct) and 2 heads at 0.000000"


def test_fmt_numbers() -> None:
    assert rep.fmt_num(0.9151, 4) == "0.9151"
    assert rep.fmt_num(-0.0349, 4, sign=True) == "−0.0349"
    assert rep.fmt_num(0.1102, 4, sign=True) == "+0.1102"
    assert rep.fmt_num(-0.0000001, 2) == "0.00"  # no negative zero
    assert rep.fmt_num(70) == "70"
    assert rep.fmt_num(12.345) == "12.3"
    assert rep.fmt_num(None) == "—"
    assert rep.fmt_p(1.0) == "1"
    assert rep.fmt_p(0.00019996) == "0.0002"
    assert rep.fmt_p(0.5) == "0.5"
    assert rep.fmt_p(1.2e-5) == "1.2e−05"
    assert rep.fmt_head((3, 1)) == "L3H1"
    assert rep.fmt_heads([[3, 1], [0, 2]]) == "L3H1+L0H2"
    assert rep.join_words(["a", "b", "c"]) == "a, b and c"
    assert rep.per_emotion({"gratitude": "1", "anger": "1"}) == "1 for every emotion"
    assert rep.per_emotion({"gratitude": "1", "anger": "2"}) == "1 for gratitude and 2 for anger"
    assert rep.ordinal(1) == "1st" and rep.ordinal(12) == "12th" and rep.ordinal(23) == "23rd"


def test_text_displays_without_quotes() -> None:
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(rep.Text("L3H1 for gratitude"))
    assert data["text/plain"] == "L3H1 for gratitude"
    assert data["text/markdown"] == "L3H1 for gratitude"


# --------------------------------------------------------------------------------------------
# Tables from hand-made documents
# --------------------------------------------------------------------------------------------


def test_experiment_table_rows() -> None:
    doc = _experiment("ablation", "toy", "gratitude", (3, 1))
    df = rep.experiment_table(doc)
    assert list(df.columns) == ["Metric", "Baseline", "Ablation", "Change", "95 % CI", "p", "Random heads"]
    rows = df.set_index("Metric")
    row = rows.loc["Emotion score M (nats)"]
    assert (row["Baseline"], row["Ablation"], row["Change"], row["95 % CI"], row["p"], row["Random heads"]) == (
        "1.50", "0.27", "−1.23", "[−1.40, −1.06]", "0.0005", "+0.01"
    )
    assert "Gratitude keywords per continuation (own emotion)" in set(df["Metric"])
    # KL and changed: the excess over the random heads, never a p against 0; changed over clusters.
    changed = rows.loc["Changed continuations (share)"]
    assert changed["Change"] == "0.400 − random 0.010; 10 of 14 clusters [0.42, 0.92]: excess +0.400" and changed["p"] == "0.0002"
    gap = rows.loc["Fraction of the emotion–neutral gap of M"]
    assert (gap["Change"], gap["95 % CI"], gap["Random heads"]) == ("0.90", "[0.80, ∞]", "0.02")
    noised = rep.experiment_table(_experiment("noising", "toy", "anger", (3, 2)))
    assert "Patched" in noised.columns
    assert rep.experiment_caption(doc).startswith("toy, zero ablation of L3H1 on the gratitude prompts, on all prompts. Question: the question of ablation n = 70")
    # the report's tables: the held-out half, saying so (its n, its fraction of the gap, 0.9× the hand-made all-prompt arm)
    conf = rep.experiment_table(doc, "confirmation").set_index("Metric")
    assert tuple(conf.loc["Fraction of the emotion–neutral gap of M", ["Change", "95 % CI"]]) == ("0.81", "[0.72, ∞]")
    assert rep.experiment_caption(doc, "confirmation").startswith(
        "toy, zero ablation of L3H1 on the gratitude prompts, on the held-out confirmation half (changes, intervals, p, "
        "random heads; baseline and intervened: means over all 70 prompts)")
    assert "noising: patching L3H2 from the neutral twins into the anger prompts" in rep.experiment_caption(
        _experiment("noising", "toy", "anger", (3, 2)))


def test_screening_table_ranks_like_the_pipeline() -> None:
    from analysis.base.contract import ranking_score

    doc = _screening("toy", 4, 4, PLANTED)
    assert rep.ranking_key(doc) == ranking_score(doc["scores"])
    df = rep.screening_table(doc, "anger", top_n=5)
    assert list(df["Rank"]) == [1, 2, 3, 4, 5]
    assert df.loc[0, "Head"] == "L3H2" and df.loc[0, "Exact ΔM (nats)"] == "+2.60"
    assert df.loc[0, "q (BH)"] == "0.0009"
    assert rep.distinct_delta_attn(doc, "anger") == 16


def test_ranking_matches_top_heads(tmp_path: Path) -> None:
    from analysis.screening.heads import top_heads

    doc = _screening("toy", 4, 4, PLANTED)
    path = write_json(tmp_path / "s.json", doc)
    for e in EMOTIONS:
        assert [(s["layer"], s["head"]) for s in rep.ranked(doc, e)[:4]] == list(top_heads(path, e, 4))


def test_cumulative_table() -> None:
    df = rep.cumulative_table(_experiment("denoising", "toy", "anger", (3, 2)))
    assert list(df["k"]) == [1, 2, 3]
    assert df.loc[1, "Heads"] == "L3H2+L0H0"
    assert df.loc[0, "ΔM (nats)"].startswith("+1.23 [")


def test_seed_table_states_the_seed_numbers(two_model_tree: Path) -> None:
    seed_only = rep.seed_table(None)
    text = " ".join(seed_only.iloc[:, 1])
    for s in ("−0.025819", "0.9151 → 0.8803", "−0.0349", "0.5113 → 0.6215", "+0.1102", "70"):
        assert s in text
    both = rep.seed_table(rep.load_results(two_model_tree))
    assert list(both.columns) == ["Quantity", "Seed (gpt2, gratitude)", "This run (gpt2, gratitude)"]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def test_load_results_and_facts(toy_tree: Path) -> None:
    r = rep.load_results(toy_tree)
    assert r.model_names == ["toy"] and r.primary == "toy" and r.emotions == EMOTIONS
    assert r.toy is not None and r.toy.planted_heads("anger") == [(3, 2)]
    facts = rep.Facts(r).as_dict()
    assert all(isinstance(v, str) and v.strip() for v in facts.values()), facts
    assert facts["dattn_distinct"] == "16 non-zero values (16 distinct) for every emotion"
    assert facts["attr_top_same"] == "for every emotion"
    assert facts["n_pairs"] == "70 aligned prompt pairs per emotion"
    assert "1st of 16 (AUROC 1.00) for every emotion" in facts["validation_lead"]
    assert "No GPT-2 run" in facts["gpt2"]
    rec = rep.recovery_table(r)
    assert list(rec["Planted head"]) == ["L3H1", "L3H2", "L3H0"]
    assert set(rec["Ablation: heads"]) == {"L3H1 (planted)", "L3H2 (planted)", "L3H0 (planted)"}


def test_two_models(two_model_tree: Path) -> None:
    r = rep.load_results(two_model_tree)
    assert r.model_names == ["toy", "gpt2"] and r.primary == "toy"
    facts = rep.Facts(r)
    assert facts.gpt2.startswith("This run's GPT-2 (gratitude): zero ablation of")
    assert len(rep.screening_overview(r)) == 6 and len(rep.experiment_overview(r, "denoising")) == 6 and len(rep.experiment_overview(r, "noising")) == 6
    md = rep.model_sections_markdown(r)
    assert "### toy" in md and "### gpt2" in md


def test_without_toy(tmp_path: Path) -> None:
    r = rep.load_results(make_results(tmp_path, ("gpt2",)))
    facts = rep.Facts(r)
    assert r.toy is None and facts.primary == "gpt2"
    assert facts.validation_lead.startswith("This run has no embedded model")


def test_validation_says_when_the_screening_missed(tmp_path: Path) -> None:
    root = make_results(tmp_path)
    path = root / "results/models/toy/planted.json"
    doc = read_json(path)
    doc["by_emotion"]["apology"] = [[2, 0]]  # the screening found L3H0: a miss
    write_json(path, doc)
    facts = rep.Facts(rep.load_results(root))
    assert "the planted heads for gratitude and anger; they are not for apology (L3H0 for apology)" in facts.validation_effects
    assert "ablating them removes 0.81 [0.72, ∞] (random heads: 0.02) (every emotion)" in facts.validation_effects  # the confirmation half's


def test_markdown_table_escapes_pipes() -> None:
    import pandas as pd

    md = rep.markdown_table(pd.DataFrame({"a|b": ["x | y"]}), "cap")
    assert md.splitlines()[0].count("|") - md.splitlines()[0].count("\\|") == 2
    assert "x \\| y" in md and md.endswith(": cap\n")


def test_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    root = make_results(tmp_path)
    victim = root / "results/baseline/patching/head_patching/denoising/toy_anger.json"
    victim.unlink()
    with pytest.raises(InputError) as err:
        rep.load_results(root)
    assert str(err.value) == f"input file {victim} does not exist"
    (root / "results/baseline/plots/heads/toy/cumulative_topk.png").unlink()
    write_json(victim, _experiment("denoising", "toy", "anger", (3, 2)))
    r = rep.load_results(root)
    with pytest.raises(InputError, match="cumulative_topk.png does not exist"):
        rep.cumulative_markdown(r, REPORT)


def test_wrong_schema_is_refused(tmp_path: Path) -> None:
    root = make_results(tmp_path)
    path = root / "results/baseline/alignment/head_scores_toy.json"
    doc = read_json(path)
    doc["schema"] = "emotion-heads/something-else/v1"
    path.write_text(json.dumps(doc))  # by hand: the writers replace a file only with its own kind
    with pytest.raises(InputError, match="head_scores_toy.json has schema"):
        rep.load_results(root)


def test_find_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rep.ROOT_ENV, raising=False)
    assert rep.find_root(REPORT) == REPO
    assert rep.find_report_dir(REPO) == REPORT and rep.find_report_dir(REPORT) == REPORT
    monkeypatch.setenv(rep.ROOT_ENV, str(tmp_path))
    with pytest.raises(InputError, match="params.yaml does not exist"):
        rep.find_root()


# --------------------------------------------------------------------------------------------
# The report's chunks and inline expressions, executed without Quarto
# --------------------------------------------------------------------------------------------


def inline_expressions(text: str) -> list[str]:
    """Every `{python} expr` of the prose (code chunks excluded), in order."""
    import jupytext

    nb = jupytext.reads(text, fmt="Rmd")
    return [e for c in nb.cells if c.cell_type == "markdown" for e in INLINE.findall(c.source)]


def execute_report(env_root: Path | None, out: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Run index.qmd's chunks in a kernel started in report/ (Quarto's execute-dir: project), then
    evaluate its inline expressions in that kernel as Quarto does (user_expressions). Writes the
    executed notebook and the inline values to `out` for reading."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    nb = jupytext.reads(QMD.read_text(), fmt="Rmd")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = {k: v for k, v in os.environ.items() if k != rep.ROOT_ENV}
    if env_root is not None:
        env[rep.ROOT_ENV] = str(env_root)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(REPORT)}})
    values: dict[str, dict[str, Any]] = {}
    with client.setup_kernel(env=env):
        try:
            for i, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, i)
            exprs = [e for c in nb.cells if c.cell_type == "markdown" for e in INLINE.findall(c.source)]
            msg_id = client.kc.execute("", user_expressions={str(i): e for i, e in enumerate(exprs)})
            reply = client.wait_for_reply(msg_id)
            assert reply["content"]["status"] == "ok", reply["content"]
            values = {e: reply["content"]["user_expressions"][str(i)] for i, e in enumerate(exprs)}
        finally:
            out.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out / "index.ipynb")
            (out / "inline.json").write_text(json.dumps(values, indent=1, ensure_ascii=False))
    return nb, values


def cell_outputs(nb: Any) -> str:
    """All text the executed chunks put out (stdout of asis chunks, markdown displays)."""
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append(o["text"])
            elif "data" in o:
                parts.append(o["data"].get("text/markdown", ""))
    return "\n".join(parts)


def check_report(nb: Any, values: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Every inline expression evaluated to a non-empty, unquoted value; every figure exists."""
    assert values, "no inline expression was found in report/index.qmd"
    texts = {}
    for expr, result in values.items():
        assert result["status"] == "ok", f"{expr}: {result.get('ename')}: {result.get('evalue')}"
        text = result["data"]["text/plain"]
        assert text.strip(), f"inline expression {expr} is empty"
        assert not re.fullmatch(r"'.*'|\".*\"", text, re.S), f"inline expression {expr} shows quotes: {text}"
        assert "nan" not in text.split() and "None" not in text, f"{expr}: {text}"
        texts[expr] = text
    md = cell_outputs(nb)
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert figures, "no figure in the report"
    for f in figures:
        assert (REPORT / f).is_file(), f"figure {f} (relative to report/) does not exist"
    return texts


def test_report_chunks_on_a_two_model_tree(two_model_tree: Path, tmp_path: Path) -> None:
    nb, values = execute_report(two_model_tree, tmp_path)
    texts = check_report(nb, values)
    assert texts["F.models"] == "toy and gpt2"
    assert texts["F.gpt2"].startswith("This run's GPT-2")
    assert texts['SEED["head"]'] == "L0H0"
    md = cell_outputs(nb)
    assert "#### toy" in md and "#### gpt2" in md and "### gpt2" in md


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, str], Path]:
    """The report executed on the repository's own results/ (what `dvc repro` committed)."""
    summary = REPO / "results" / "summary.json"
    if not summary.is_file():
        pytest.fail(f"{summary} does not exist: run `dvc repro` (make repro) before testing the report on it")
    out = tmp_path_factory.mktemp("report_committed")
    nb, values = execute_report(None, out)
    return nb, check_report(nb, values), out


def test_report_chunks_on_committed_results(committed: tuple[Any, dict[str, str], Path]) -> None:
    nb, texts, _ = committed
    assert len(texts) >= 40


def test_report_numbers_match_summary(committed: tuple[Any, dict[str, str], Path]) -> None:
    """The prose names the heads and the pair counts from summary.json; the effects stand in the
    overview tables (the confirmation half's, formatted), and no effect of a table is repeated in the
    prose (issue 23: numbers that stand in tables are not repeated)."""
    nb, texts, _ = committed
    r = rep.load_results(REPO)
    summary = json.loads((REPO / "results" / "summary.json").read_text())
    tables = cell_outputs(nb)
    prose = "\n".join(texts.values())
    p = r.primary
    assert texts["F.primary"] == p
    for e in r.emotions:
        for kind in ("ablation", "denoising", "noising"):
            for metric in ("emotion_score", "sentiment", "keywords"):
                eff = {f: summary[f"{p}.{e}.{kind}.confirmation.{metric}.{f}"] for f in ("mean", "ci_low", "ci_high", "p")}
                assert rep.fmt_effect(eff) in tables, (kind, metric, e)
                assert rep.fmt_effect(eff) not in prose, (kind, metric, e)
            gap = {f: summary[f"{p}.{e}.{kind}.confirmation.fraction_of_gap.{f}"] for f in ("ratio", "ci_low", "ci_high")}
            assert rep.fmt_gap(gap) in tables
        head = f"L{summary[f'{p}.{e}.screening.selection.top_layer']}H{summary[f'{p}.{e}.screening.selection.top_head']}"
        assert f"{head} for {e}" in texts["F.screen_heads"]
        n = summary[f"{p}.{e}.ablation.all.n_prompts"]
        assert str(n) in texts["F.n_pairs"]
        # the primary endpoint: in the abstract's table, Holm's p from the summary
        assert rep.fmt_p(summary[f"{p}.{e}.primary.confirmation.p_holm"]) in tables
    if r.toy is not None:
        for e in r.emotions:
            rank = summary.get(f"toy.{e}.recovery.selection.exact.planted_rank")
            if rank is not None:
                assert rep.ordinal(rank) in texts["F.validation_lead"]


def test_report_missing_results_file_is_one_line(tmp_path: Path) -> None:
    from nbclient.exceptions import CellExecutionError

    root = make_results(tmp_path / "tree")
    victim = root / "results/baseline/alignment/head_scores_toy.json"
    victim.unlink()
    with pytest.raises(CellExecutionError) as err:
        execute_report(root, tmp_path / "out")
    assert err.value.ename == "InputError"
    assert err.value.evalue == f"input file {victim} does not exist"
    tb = ANSI.sub("", "\n".join(err.value.traceback if isinstance(err.value.traceback, list) else [err.value.traceback]))
    lines = [ln for ln in tb.splitlines() if ln.strip()]
    assert lines[-1] == f"InputError: input file {victim} does not exist"


def test_confirmation_table_quotes_each_half_from_the_summary() -> None:
    """The selection-vs-confirmation table, long (it fits the text column): per model and emotion the
    screened effect under Selection (the selection half's top exact ΔM), then each experiment's ΔM of
    that head under Confirmation and All, as summary.json has them, with their n."""
    r = rep.load_results(REPO)
    t = rep.confirmation_table(r)
    assert list(t.columns) == ["Model", "Emotion", "Head", "Measure", "Selection", "Confirmation", "All"]
    assert len(t) == len(r.models) * len(r.emotions) * 4
    for (model, e), g in t.groupby(["Model", "Emotion"], sort=False):
        top = {"mean": r.s(model, e, "screening", "selection", "top_exact"), "ci_low": r.s(model, e, "screening", "selection", "top_exact_ci_low"),
               "ci_high": r.s(model, e, "screening", "selection", "top_exact_ci_high")}
        first = g.iloc[0]
        assert first["Measure"].startswith("screening") and first["Selection"] == rep.fmt_effect(top, p=False)
        assert first["Confirmation"] == first["All"] == "—"
        for kind in ("denoising", "noising", "ablation"):
            (row,) = [x for _, x in g.iterrows() if x["Measure"] == f"{kind} ΔM"]
            assert row["Selection"] == "—"
            for half in ("confirmation", "all"):
                eff = {f: r.s(model, e, kind, half, "emotion_score", f) for f in ("mean", "ci_low", "ci_high")}
                n = r.s(model, e, kind, half, "emotion_score", "n")
                assert row[half.capitalize()] == f"{rep.fmt_effect(eff, p=False)} (n = {n})"
            assert r.s(model, e, kind, "confirmation", "emotion_score", "n") < r.s(model, e, kind, "all", "emotion_score", "n")
