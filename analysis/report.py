"""The report's data layer: load `results/`, format effects, build its tables and its sentences.

`report/index.qmd` calls only this module: every number the report prints comes from here,
read from the stage outputs (paths from `analysis.outputs`, documents checked against their
schema by `analysis.io.read_json`). Nothing is computed anew: headline numbers come from
`results/summary.json`, tables from the stage JSON they were summarized from, figures are the
stage PNGs. A missing or wrong-schema file is one `InputError` line naming it.

Formatting conventions (one place, so prose, tables and tests agree):

* numbers carry three significant digits of the largest magnitude in their group (a change,
  its interval bounds), a typographic minus (U+2212), and an explicit sign on changes;
* p- and q-values carry two significant digits (`0.0005`, `0.031`, `1`), scientific below 1e-4;
* heads are written `L3H1` (layer 3, head 1), as the seed's "Layer 3, Head 1".

Inline expressions of the report evaluate to `Text`, a `str` whose repr is the text itself, so
a Quarto inline expression shows `toy`, not `'toy'`, whatever the Quarto version does with
string reprs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import InputError
from analysis.io import read_json
from analysis.outputs import SUMMARY, attention_dir, comparison_dir, experiment_file, model_dir, plots_dir, screening_file
from analysis.params import PARAMS_FILE, Params, load_params

ROOT_ENV = "EMOTION_HEADS_ROOT"  # overrides where params.yaml and results/ are read from
SCREENING_SCHEMA = "emotion-heads/head-scores/v1"
SUMMARY_SCHEMA = "emotion-heads/summary/v1"
PLANTED_SCHEMA = "emotion-heads/planted/v1"
SOURCE_SCHEMA = "emotion-heads/model-source/v1"
EXPERIMENT_SCHEMAS = {"ablation": "emotion-heads/ablation/v1", "patching": "emotion-heads/patching/v1"}
KINDS = ("ablation", "patching")
SCORE_KINDS = ("exact", "attribution", "delta_attn")
MINUS = "\u2212"
GPT2 = "gpt2"
EMBEDDED = "toy"
TINY = 1e-6  # |exact ΔM| (nats) at the scale of float rounding

# The stage PNGs (analysis.head_plots writes them into plots_dir(profile, model)).
FIGURES = {
    "heatmap": "head_reaction_heatmap.png",
    "top": "top_heads.png",
    "ablation": "ablation_sentiment_comparison.png",
    "patching": "patching_keyword_comparison.png",
    "cumulative": "cumulative_topk.png",
}

class Text(str):
    """A string that displays as itself (no quotes) in a notebook, as text or markdown."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_markdown_(self) -> str:
        return str(self)


# The seed's ("Phase 7", ../shared/seed/000_0e875f0d7127b424.txt) GPT-2 numbers, as it reported
# them: one head (L0H0), gratitude only, hook_v approximations, n = 70, no interval or test.
SEED: dict[str, Any] = {
    "model": Text("gpt2"),
    "head": Text("L0H0"),
    "emotion": Text("gratitude"),
    "n": 70,
    "delta_attn": -0.025819,  # the |Δattn| of its top-10 heads, all identical: a bug
    "delta_attn_heads": 10,
    "n_scores": 432,
    "ablation_sentiment_baseline": 0.9151,
    "ablation_sentiment_ablated": 0.8803,
    "ablation_sentiment_change": -0.0349,
    "patching_sentiment_baseline": 0.5113,
    "patching_sentiment_patched": 0.6215,
    "patching_sentiment_change": 0.1102,
}


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _minus(s: str) -> str:
    return s.replace("-", MINUS)


def decimals_for(*values: float | None, digits: int = 3) -> int:
    """Decimals that give `digits` significant digits to the largest |value| (0..6)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    m = max(finite, default=0.0)
    if m == 0.0:
        return digits - 1
    return max(0, min(6, digits - 1 - math.floor(math.log10(m))))


def fmt_num(x: float | int | None, decimals: int | None = None, *, sign: bool = False) -> Text:
    """`x` with `decimals` (default: three significant digits), typographic minus.

    Magnitudes below 1e-4 (with default decimals) are written in scientific notation.
    """
    if x is None:
        return Text("—")
    if isinstance(x, bool) or (isinstance(x, int) and decimals is None):
        return Text(_minus(f"{x:+d}" if sign else f"{x:d}"))
    x = float(x)
    if not math.isfinite(x):
        return Text("nan")
    if decimals is None:
        if x != 0.0 and abs(x) < 1e-4:
            return Text(_minus(f"{x:+.2e}" if sign else f"{x:.2e}"))
        decimals = decimals_for(x)
    s = f"{x:+.{decimals}f}" if sign else f"{x:.{decimals}f}"
    if float(s) == 0.0:  # no "−0.00"
        s = f"{0.0:.{decimals}f}"
        s = f"+{s}" if sign else s
    return Text(_minus(s))


def fmt_p(p: float | None) -> Text:
    """A p- or q-value with two significant digits: `0.0005`, `0.031`, `1`; below 1e-4 `1.2e−05`."""
    if p is None:
        return Text("—")
    p = float(p)
    if not math.isfinite(p):
        return Text("nan")
    if p >= 1e-4:
        import numpy as np

        return Text(np.format_float_positional(p, precision=2, unique=False, fractional=False, trim="-"))
    return Text(_minus(f"{p:.1e}"))


def fmt_ci(effect: Mapping[str, Any], decimals: int | None = None) -> Text:
    """`[low, high]` of an effect, with the effect's decimals."""
    d = decimals if decimals is not None else _effect_decimals(effect)
    return Text(f"[{_bound(effect['ci_low'], d)}, {_bound(effect['ci_high'], d)}]")


def _effect_decimals(effect: Mapping[str, Any]) -> int | None:
    """Three significant digits of the largest of mean and bounds, and at least two of the
    interval's width (up to four decimals), so a narrow interval does not collapse to a point.
    None: magnitudes below 1e-4, written in scientific notation."""
    vals = [effect.get(k) for k in ("mean", "ci_low", "ci_high")]
    finite = [abs(v) for v in vals if v is not None and math.isfinite(v)]
    if finite and 0.0 < max(finite) < 1e-4:
        return None  # scientific
    d = decimals_for(*vals)
    low, high = effect.get("ci_low"), effect.get("ci_high")
    if low is not None and high is not None and math.isfinite(high - low) and high > low:
        d = max(d, min(4, 1 - math.floor(math.log10(high - low))))
    return d


def _bound(x: float, decimals: int | None) -> str:
    return fmt_num(x, decimals)


def fmt_change(effect: Mapping[str, Any]) -> Text:
    """The signed mean change of an effect, with the decimals of its interval."""
    return fmt_num(effect["mean"], _effect_decimals(effect), sign=True)


def fmt_effect(effect: Mapping[str, Any], *, p: bool = True) -> Text:
    """`−1.23 [−1.40, −1.05], p = 0.0005`: mean change, 95 % CI, sign-flip p."""
    d = _effect_decimals(effect)
    s = f"{fmt_num(effect['mean'], d, sign=True)} {fmt_ci(effect, d)}"
    if p and effect.get("p") is not None:
        s += f", p = {fmt_p(effect['p'])}"
    return Text(s)


def fmt_head(head: Sequence[int]) -> Text:
    """`(3, 1)` → `L3H1`."""
    layer, h = head
    return Text(f"L{int(layer)}H{int(h)}")


def fmt_heads(heads: Iterable[Sequence[int]]) -> Text:
    return Text("+".join(fmt_head(h) for h in heads) or "—")


def fmt_sites(entry: Mapping[str, Any]) -> Text:
    """The intervened components of an experiment (or a cumulative step): heads, else MLP units."""
    if entry.get("heads"):
        return fmt_heads(entry["heads"])
    return Text("+".join(f"mlp:{u[0]}:{u[1]}" for u in entry.get("units", [])) or "—")


def join_words(items: Iterable[str], conj: str = "and") -> Text:
    """`a`, `a and b`, `a, b and c`."""
    items = [str(i) for i in items]
    if not items:
        return Text("none")
    if len(items) == 1:
        return Text(items[0])
    return Text(f"{', '.join(items[:-1])} {conj} {items[-1]}")


def ordinal(n: int) -> Text:
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return Text(f"{n}{suffix}")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding params.yaml and results/: $EMOTION_HEADS_ROOT, else the first of
    `start` (default: the working directory) and its parents that has params.yaml."""
    env = os.environ.get(ROOT_ENV)
    if env:
        root = Path(env).resolve()
        if not (root / PARAMS_FILE).is_file():
            raise InputError(f"{ROOT_ENV}={env}: parameter file {root / PARAMS_FILE} does not exist")
        return root
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder
    raise InputError(f"no {PARAMS_FILE} in {here} or any folder above it; run the report from the project")


def find_report_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """The Quarto project folder (the one with _quarto.yml): `start`/cwd, an ancestor, or `report/` below."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_quarto.yml").is_file():
            return folder
        if (folder / "report" / "_quarto.yml").is_file():
            return folder / "report"
    raise InputError(f"no report/_quarto.yml in {here} or any folder above it")


@dataclass(frozen=True)
class ModelResults:
    """Everything the pipeline wrote for one model."""

    name: str
    screening: dict[str, Any]
    ablation: dict[str, dict[str, Any]]  # emotion → ablation document
    patching: dict[str, dict[str, Any]]
    planted: dict[str, Any] | None  # planted.json of the embedded model, else None
    plots: Path
    source: dict[str, Any] | None = None  # source.json: where another model's weights were found

    def experiment(self, kind: str, emotion: str) -> dict[str, Any]:
        return {"ablation": self.ablation, "patching": self.patching}[kind][emotion]

    @property
    def n_heads_total(self) -> int:
        return int(self.screening["n_layers"]) * int(self.screening["n_heads"])

    def planted_heads(self, emotion: str) -> list[tuple[int, int]]:
        if not self.planted:
            return []
        return [(int(h[0]), int(h[1])) for h in self.planted["by_emotion"].get(emotion, [])]


@dataclass(frozen=True)
class Results:
    """The stage outputs of one profile, for the models and emotions of params.yaml."""

    root: Path
    params: Params
    profile: str
    emotions: tuple[str, ...]
    models: dict[str, ModelResults]
    summary: dict[str, Any]

    @property
    def model_names(self) -> list[str]:
        return list(self.models)

    @property
    def primary(self) -> str:
        """The model the prose is about: the embedded model if present, else the first listed."""
        return EMBEDDED if EMBEDDED in self.models else self.model_names[0]

    @property
    def toy(self) -> ModelResults | None:
        return self.models.get(EMBEDDED)

    def s(self, *key: str | int) -> Any:
        """summary.json value `<model>.<emotion>...`; a missing key is an InputError naming it."""
        k = ".".join(str(p) for p in key)
        if k not in self.summary:
            raise InputError(f"{self.root / SUMMARY} has no metric {k}; rerun `dvc repro summarize`")
        return self.summary[k]

    def s_effect(self, model: str, emotion: str, kind: str, metric: str) -> dict[str, Any]:
        """One effect of summary.json as a dict (mean, ci_low, ci_high, p, n, baseline)."""
        return {f: self.s(model, emotion, kind, metric, f) for f in ("mean", "ci_low", "ci_high", "p", "n", "baseline")}

    def figure(self, model: str, name: str) -> Path:
        """A stage PNG; missing is an InputError naming it."""
        path = self.root / plots_dir(self.profile, model) / FIGURES[name]
        if not path.is_file():
            raise InputError(f"figure {path} does not exist; run `dvc repro plots`")
        return path


def load_results(root: str | os.PathLike[str] | None = None, profile: str | None = None) -> Results:
    """Read params.yaml and every stage output the report uses, checking each schema.

    root: the folder with params.yaml and results/ (default: `find_root()`); profile: the
    prompt set (default: params.yaml's). Models and emotions are params.yaml's, which are the
    ones `results/summary.json` was made from.
    """
    root = Path(root).resolve() if root is not None else find_root()
    params = load_params(root / PARAMS_FILE)
    profile = profile or params.profile
    summary = read_json(root / SUMMARY, SUMMARY_SCHEMA)
    if summary.get("profile") != profile:
        raise InputError(
            f"{root / SUMMARY} is for profile {summary.get('profile')!r}, not {profile!r}; rerun `dvc repro`"
        )
    models: dict[str, ModelResults] = {}
    for model in params.models:
        screening = read_json(root / screening_file(profile, model), SCREENING_SCHEMA)
        exps: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        for emotion in params.emotions:
            for kind in KINDS:
                exps[kind][emotion] = read_json(
                    root / experiment_file(kind, profile, model, emotion), EXPERIMENT_SCHEMAS[kind]
                )
        planted_path = root / model_dir(model) / "planted.json"
        planted = read_json(planted_path, PLANTED_SCHEMA) if planted_path.is_file() else None
        source_path = root / model_dir(model) / "source.json"
        source = read_json(source_path, SOURCE_SCHEMA) if source_path.is_file() else None
        models[model] = ModelResults(
            model, screening, exps["ablation"], exps["patching"], planted, root / plots_dir(profile, model), source
        )
    return Results(root, params, profile, tuple(params.emotions), models, summary)


# --------------------------------------------------------------------------------------------
# Screening
# --------------------------------------------------------------------------------------------


def ranking_key(doc: Mapping[str, Any]) -> str:
    """The score heads are ranked by: `exact` where computed, else `attribution` (as the pipeline)."""
    return "exact" if any(s.get("exact") is not None for s in doc["scores"]) else "attribution"


def ranked(doc: Mapping[str, Any], emotion: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
    """Screening rows by decreasing |score| (ties: layer, head), as `top:N` and summary.json rank them."""
    key = key or ranking_key(doc)
    rows = [s for s in doc["scores"] if (emotion is None or s["emotion"] == emotion) and s.get(key) is not None]
    return sorted(rows, key=lambda s: (-abs(s[key]), s["layer"], s["head"]))


SCORE_LABELS = {"exact": "exact patching ΔM", "attribution": "attribution (gradient × Δz)", "delta_attn": "Δattn"}


def screening_table(doc: Mapping[str, Any], emotion: str | None = None, top_n: int = 10) -> pd.DataFrame:
    """The top heads by the ranking score: Rank | Head | Emotion | Exact ΔM | 95 % CI | q | Attribution | Δattn."""
    rows = ranked(doc, emotion)[:top_n]
    out = []
    for i, s in enumerate(rows, 1):
        exact = {"mean": s.get("exact"), "ci_low": s.get("exact_ci_low"), "ci_high": s.get("exact_ci_high")}
        has_exact = s.get("exact") is not None
        out.append({
            "Rank": i,
            "Head": fmt_head((s["layer"], s["head"])),
            "Emotion": s["emotion"],
            "Exact ΔM (nats)": fmt_change(exact) if has_exact else Text("—"),
            "95 % CI": fmt_ci(exact) if has_exact and s.get("exact_ci_low") is not None else Text("—"),
            "p": fmt_p(s.get("exact_p")),
            "q (BH)": fmt_p(s.get("exact_q")),
            "Attribution": fmt_num(s["attribution"], sign=True),
            "Δattn": fmt_num(s["delta_attn"], sign=True),
        })
    return pd.DataFrame(out, columns=["Rank", "Head", "Emotion", "Exact ΔM (nats)", "95 % CI", "p", "q (BH)", "Attribution", "Δattn"])


def distinct_delta_attn(doc: Mapping[str, Any], emotion: str, decimals: int = 6) -> int:
    """How many distinct Δattn values (rounded as the seed printed them) the heads of `emotion` have."""
    return len({round(float(s["delta_attn"]), decimals) for s in doc["scores"] if s["emotion"] == emotion})


def delta_attn_summary(doc: Mapping[str, Any], emotion: str, decimals: int = 6) -> Text:
    """`3 non-zero values (3 distinct) and 13 heads at 0.000000`: the seed's bug was many heads
    sharing one non-zero value, so distinct non-zero values are what to count."""
    vals = [round(float(s["delta_attn"]), decimals) for s in doc["scores"] if s["emotion"] == emotion]
    nonzero = [v for v in vals if v != 0.0]
    text = f"{plural(len(nonzero), 'non-zero value')} ({len(set(nonzero))} distinct)"
    zeros = len(vals) - len(nonzero)
    if zeros:
        text += f" and {plural(zeros, 'head')} at {0.0:.{decimals}f}"
    return Text(text)


def max_other_exact(doc: Mapping[str, Any], planted: Mapping[str, Sequence[Sequence[int]]]) -> float | None:
    """The largest |exact ΔM| of any head × emotion that is not planted for that emotion."""
    vals = [abs(s["exact"]) for s in doc["scores"] if s.get("exact") is not None
            and (s["layer"], s["head"]) not in {tuple(h) for h in planted.get(s["emotion"], [])}]
    return max(vals) if vals else None


def screening_overview(r: Results) -> pd.DataFrame:
    """Model × emotion: top head and its exact ΔM with CI and q, heads with q < 0.05, ρ(attribution, exact)."""
    out = []
    for model, m in r.models.items():
        key = ranking_key(m.screening)
        for e in r.emotions:
            top = (r.s(model, e, "screening", "top_layer"), r.s(model, e, "screening", "top_head"))
            row: dict[str, Any] = {"Model": model, "Emotion": e, "Top head": fmt_head(top)}
            if key == "exact":
                eff = {
                    "mean": r.s(model, e, "screening", "top_exact"),
                    "ci_low": r.s(model, e, "screening", "top_exact_ci_low"),
                    "ci_high": r.s(model, e, "screening", "top_exact_ci_high"),
                }
                row["Exact ΔM [95 % CI] (nats)"] = fmt_effect(eff, p=False)
                row["q (BH)"] = fmt_p(r.s(model, e, "screening", "top_exact_q"))
                row["Heads with q < 0.05"] = Text(f"{r.s(model, e, 'screening', 'n_significant_q05')} of {m.n_heads_total}")
            else:
                row["Attribution (top)"] = fmt_num(r.s(model, e, "screening", "top_attribution"), sign=True)
            rho = r.summary.get(f"{model}.{e}.screening.attribution_vs_exact_spearman")
            row["ρ(attribution, exact)"] = fmt_num(rho, 2) if rho is not None else Text("—")
            out.append(row)
    return pd.DataFrame(out)


def unit_overview(r: Results) -> pd.DataFrame:
    """Model × emotion: top MLP unit, its exact ΔM [CI], q, n; planted units' ranks where planted."""
    out = []
    for model in r.models:
        for e in r.emotions:
            if f"{model}.{e}.units.top_layer" not in r.summary:
                continue  # no unit screening for this model
            unit = f"mlp:{r.s(model, e, 'units', 'top_layer')}:{r.s(model, e, 'units', 'top_neuron')}"
            row: dict[str, Any] = {"Model": model, "Emotion": e, "Top unit": Text(unit)}
            if f"{model}.{e}.units.top_exact" in r.summary:
                eff = {k: r.s(model, e, "units", f"top_exact{suffix}") for k, suffix in
                       (("mean", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))}
                row["Exact ΔM [95 % CI] (nats)"] = fmt_effect(eff, p=False)
                row["q (BH)"] = fmt_p(r.s(model, e, "units", "top_exact_q"))
                row["n"] = fmt_num(r.s(model, e, "units", "top_exact_n"), 0)
                row["Units with q < 0.05"] = Text(
                    f"{r.s(model, e, 'units', 'n_significant_q05')} of {r.s(model, e, 'units', 'n_exact')} patched"
                )
            else:
                row["Attribution (top)"] = fmt_num(r.s(model, e, "units", "top_attribution"), sign=True)
            for score in ("attribution", "exact"):
                rank = r.summary.get(f"{model}.{e}.recovery.units.{score}.planted_rank")
                if rank is not None:
                    auc = r.summary.get(f"{model}.{e}.recovery.units.{score}.auroc")
                    row[f"Planted unit: rank, AUROC ({score})"] = Text(f"{rank}, {fmt_num(auc, 3)}")
            out.append(row)
    return pd.DataFrame(out)


def units_markdown(r: Results, report_dir: Path) -> str:
    """The unit screening: an overview table and each model's layer × neuron figure."""
    table = unit_overview(r)
    if table.empty:
        return "No model of this run has a unit screening (stage `screen_units`).\n"
    parts = [markdown_table(table, "Top MLP unit per model and emotion (results/summary.json).", "tbl-units-overview")]
    for model in r.models:
        path = r.root / plots_dir(r.profile, model) / "unit_summary.png"
        if path.is_file():
            parts.append(image_markdown(
                path, f"{model}: the top MLP units of every layer per emotion, exact ΔM with 95 % CI where patched.",
                ref_id("fig", "units", model), report_dir,
            ))
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Ablation and patching
# --------------------------------------------------------------------------------------------

METRIC_ORDER = ("emotion_score", "kl", "sentiment", "kw_gratitude", "kw_anger", "kw_apology", "kw_neutral", "changed")


def metric_label(metric: str, emotion: str | None = None) -> Text:
    labels = {
        "emotion_score": "Emotion score M (nats)",
        "kl": "KL(clean ‖ intervened) (nats)",
        "sentiment": "Sentiment (VADER compound)",
        "changed": "Changed continuations (share)",
    }
    if metric in labels:
        return Text(labels[metric])
    if metric.startswith("kw_"):
        name = metric[3:]
        own = " (own emotion)" if name == emotion else ""
        return Text(f"{name.capitalize()} keywords per continuation{own}")
    return Text(metric)


def _metrics_in(doc: Mapping[str, Any]) -> list[str]:
    present = list(doc["effects"])
    return [m for m in METRIC_ORDER if m in present] + [m for m in present if m not in METRIC_ORDER]


def experiment_table(doc: Mapping[str, Any]) -> pd.DataFrame:
    """The seed's table with statistics: Metric | Baseline | Ablation/Patched | Change | 95 % CI | p."""
    kind = "ablation" if doc["schema"] == EXPERIMENT_SCHEMAS["ablation"] else "patching"
    label = "Ablation" if kind == "ablation" else "Patched"
    out = []
    for m in _metrics_in(doc):
        e = doc["effects"][m]
        d_eff = _effect_decimals(e)
        d_all = decimals_for(doc["baseline"][m], doc["intervened"][m], e["ci_low"], e["ci_high"])
        d = d_all if d_eff is None else max(d_eff, decimals_for(doc["baseline"][m], doc["intervened"][m]))
        out.append({
            "Metric": metric_label(m, doc["emotion"]),
            "Baseline": fmt_num(doc["baseline"][m], d),
            label: fmt_num(doc["intervened"][m], d),
            "Change": fmt_change(e),
            "95 % CI": fmt_ci(e),
            "p": fmt_p(e["p"]),
        })
    return pd.DataFrame(out, columns=["Metric", "Baseline", label, "Change", "95 % CI", "p"])


def experiment_caption(doc: Mapping[str, Any]) -> Text:
    kind = "ablation" if doc["schema"] == EXPERIMENT_SCHEMAS["ablation"] else "patching"
    n = doc["n_prompts"]
    clusters = {e.get("n_clusters") for e in doc["effects"].values()} - {None}
    cl = f" in {min(clusters)} expression clusters" if clusters else ""
    if kind == "ablation":
        how = f"{doc.get('method', '?')} ablation of {fmt_heads(doc['heads'])} on the {doc['emotion']} prompts"
    else:
        how = (f"patching {fmt_heads(doc['heads'])} from the {doc['emotion']} prompts into their neutral twins "
               f"(positions: {doc.get('positions', '?')})")
    return Text(f"{doc['model']}, {how}; n = {n} prompts{cl}, {doc.get('max_tokens', '?')} greedy tokens each.")


def experiment_overview(r: Results, kind: str) -> pd.DataFrame:
    """Model × emotion: heads, n, and ΔM, Δsentiment, Δown keywords, changed share with CI and p."""
    out = []
    for model, m in r.models.items():
        for e in r.emotions:
            doc = m.experiment(kind, e)
            row = {"Model": model, "Emotion": e, "Heads": fmt_sites(doc), "n": r.s(model, e, kind, "n_prompts")}
            for metric, label in (("emotion_score", "ΔM (nats)"), ("sentiment", "Δ sentiment"),
                                  ("keywords", "Δ own keywords"), ("changed", "Changed")):
                row[label] = fmt_effect(r.s_effect(model, e, kind, metric))
            out.append(row)
    return pd.DataFrame(out)


def cumulative_overview(m: ModelResults, kind: str, emotions: Sequence[str]) -> pd.DataFrame:
    """`cumulative_table` of every emotion of one model and kind, with an Emotion column."""
    tables = []
    for e in emotions:
        t = cumulative_table(m.experiment(kind, e))
        t.insert(0, "Emotion", e)
        tables.append(t)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def cumulative_table(doc: Mapping[str, Any]) -> pd.DataFrame:
    """k | Heads | ΔM [95 % CI] | Δ own keywords [95 % CI] | Δ sentiment [95 % CI] for the top-1..k heads jointly."""
    own = f"kw_{doc['emotion']}"
    out = []
    for entry in doc.get("cumulative", []):
        eff = entry["effects"]
        out.append({
            "k": entry["k"],
            "Heads": fmt_sites(entry),
            "ΔM (nats)": fmt_effect(eff["emotion_score"]),
            "Δ own keywords": fmt_effect(eff[own]) if own in eff else Text("—"),
            "Δ sentiment": fmt_effect(eff["sentiment"]) if "sentiment" in eff else Text("—"),
        })
    return pd.DataFrame(out, columns=["k", "Heads", "ΔM (nats)", "Δ own keywords", "Δ sentiment"])


# --------------------------------------------------------------------------------------------
# Validation on the embedded model
# --------------------------------------------------------------------------------------------


def recovery_table(r: Results, model: str = EMBEDDED) -> pd.DataFrame:
    """Per emotion: the planted head, its rank and the AUROC by each score, and the effects of
    the experiments' heads (from summary.json)."""
    m = r.models[model]
    out = []
    for e in r.emotions:
        planted = m.planted_heads(e)
        row: dict[str, Any] = {"Emotion": e, "Planted head": fmt_heads(planted)}
        for score in SCORE_KINDS:
            rank = r.summary.get(f"{model}.{e}.recovery.{score}.planted_rank")
            auc = r.summary.get(f"{model}.{e}.recovery.{score}.auroc")
            rank_text = f"{rank} of {m.n_heads_total}" if rank is not None else "—"
            auc_text = f" ({fmt_num(auc, 2)})" if auc is not None else ""
            row[f"{SCORE_LABELS[score]}: rank (AUROC)"] = Text(rank_text + auc_text)
        for kind in KINDS:
            doc = m.experiment(kind, e)
            hit = set(map(tuple, doc["heads"])) == set(planted)
            row[f"{kind.capitalize()}: heads"] = Text(f"{fmt_heads(doc['heads'])}{' (planted)' if hit else ''}")
            row[f"{kind.capitalize()}: ΔM (nats)"] = fmt_effect(r.s_effect(model, e, kind, "emotion_score"))
        out.append(row)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# Sentences (inline expressions of the report)
# --------------------------------------------------------------------------------------------


def per_emotion(values: Mapping[str, str]) -> Text:
    """`1 for gratitude, 2 for anger and 1 for apology`, or `1 for every emotion` when all agree."""
    vals = list(values.values())
    if len(values) > 1 and len(set(vals)) == 1:
        return Text(f"{vals[0]} for every emotion")
    return join_words(f"{v} for {e}" for e, v in values.items())


def by_emotion(values: Mapping[str, str]) -> Text:
    """`X (every emotion)` when all agree, else `X (gratitude); Y (anger); Z (apology)`."""
    vals = list(values.values())
    if len(values) > 1 and len(set(vals)) == 1:
        return Text(f"{vals[0]} (every emotion)")
    return Text("; ".join(f"{v} ({e})" for e, v in values.items()))


def count_text(values: Mapping[str, Any], noun: str) -> Text:
    """`70 pairs per emotion`, or `70 pairs for gratitude and 68 for anger` when they differ."""
    vals = [str(v) for v in values.values()]
    if len(set(vals)) == 1:
        return Text(f"{vals[0]} {noun} per emotion" if len(vals) > 1 else f"{vals[0]} {noun} ({next(iter(values))})")
    items = [f"{v} {noun if i == 0 else ''}".rstrip() + f" for {e}" for i, (e, v) in enumerate(values.items())]
    return join_words(items)


def plural(n: int, word: str, words: str | None = None) -> Text:
    return Text(f"{n} {word if n == 1 else (words or word + 's')}")


class Facts:
    """Every inline value of the report, as `Text`, computed from one `Results`.

    Attributes are sentences or numbers the prose of report/index.qmd refers to by name
    (`F.n_pairs`); `as_dict()` lists them all (the tests check each is non-empty).
    """

    def __init__(self, r: Results) -> None:
        self._r = r
        p = r.primary
        m = r.models[p]
        doc = m.screening
        first = m.ablation[r.emotions[0]]
        first_patch = m.patching[r.emotions[0]]
        t = Text

        # Overview
        self.models = join_words(r.model_names)
        self.n_models = plural(len(r.models), "model")
        self.primary = t(p)
        self.profile = t(r.profile)
        self.emotions = join_words(r.emotions)
        self.n_pairs = count_text({e: doc["pairs"][e]["n_pairs"] for e in r.emotions}, "aligned prompt pairs")
        self.arch = t(f"{doc['n_layers']} layers × {doc['n_heads']} heads = {m.n_heads_total} heads")
        self.n_tests = t(str(m.n_heads_total * len(r.emotions)))
        self.archs = join_words(
            f"{name} ({mr.screening['n_layers']} layers × {mr.screening['n_heads']} heads)" for name, mr in r.models.items()
        )

        # Method parameters, as the stage outputs record them
        sp = doc["params"]
        self.n_resamples = t(str(sp["n_resamples"]))
        self.seed = t(str(sp["seed"]))
        self.screen_positions = t(sp["positions"])
        self.exact_scope = t("every head" if not sp.get("exact_top_k") else f"the top {sp['exact_top_k']} heads by |attribution|")
        self.ranking = t(SCORE_LABELS[ranking_key(doc)])
        k = r.params.unit_screening.exact_top_k
        self.unit_exact_k = t(f"the top {k} per emotion by |attribution|" if k else "all of them")
        self.abl_method = t(first.get("method", "?"))
        self.abl_spec = t(first["head_spec"])
        self.patch_spec = t(first_patch["head_spec"])
        self.patch_positions = t(first_patch.get("positions", "?"))
        self.max_tokens = t(str(first["max_tokens"]))
        self.abl_resamples = t(str(first["params"]["n_resamples"]))
        self.cum_k = t(str(max(len(first.get("cumulative", [])), len(first_patch.get("cumulative", [])))))
        used = {e: doc["pairs"][e].get("n_pairs_used", doc["pairs"][e]["n_pairs"]) for e in r.emotions}
        clusters = {e: doc["pairs"][e].get("n_clusters") for e in r.emotions}
        self.n_pairs_used = count_text(used, "pairs")
        self.n_clusters = count_text(clusters, "expressions")

        # Screening
        key = ranking_key(doc)
        tops = {}
        for e in r.emotions:
            head = fmt_head((r.s(p, e, "screening", "top_layer"), r.s(p, e, "screening", "top_head")))
            if key == "exact":
                eff = {k: r.s(p, e, "screening", f"top_exact{s}") for k, s in (("mean", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))}
                tops[e] = f"{head} for {e} (ΔM = {fmt_effect(eff, p=False)} nats, q = {fmt_p(r.s(p, e, 'screening', 'top_exact_q'))})"
            else:
                tops[e] = f"{head} for {e} (attribution {fmt_num(r.s(p, e, 'screening', 'top_attribution'), sign=True)})"
        self.screen_top = join_words(tops.values(), "and") if len(tops) > 1 else t(next(iter(tops.values())))
        if key == "exact":
            n_sig = sum(int(r.s(p, e, "screening", "n_significant_q05")) for e in r.emotions)
            self.n_sig = t(str(n_sig))
        else:
            self.n_sig = t("none (no exact scores)")
        rhos = {e: r.summary.get(f"{p}.{e}.screening.attribution_vs_exact_spearman") for e in r.emotions}
        self.rho = per_emotion({e: fmt_num(v, 2) if v is not None else "undefined" for e, v in rhos.items()})
        self.dattn_distinct = per_emotion({e: delta_attn_summary(doc, e) for e in r.emotions})
        same = []
        for e in r.emotions:
            by_attr, by_key = ranked(doc, e, "attribution"), ranked(doc, e, key)
            if by_attr and by_key and (by_attr[0]["layer"], by_attr[0]["head"]) == (by_key[0]["layer"], by_key[0]["head"]):
                same.append(e)
        if len(same) == len(r.emotions):
            self.attr_top_same = t("for every emotion" if len(same) > 1 else f"for {same[0]}")
        elif same:
            self.attr_top_same = t(f"for {join_words(same)} (not for {join_words(e for e in r.emotions if e not in same)})")
        else:
            self.attr_top_same = t("for no emotion")
        dattn_top = {}
        for e in r.emotions:
            rows = ranked(doc, e, "delta_attn")
            dattn_top[e] = fmt_head((rows[0]["layer"], rows[0]["head"])) if rows else "none"
        self.dattn_top = per_emotion(dattn_top)

        # Effects of float-rounding size that still test "significant"
        tiny = [sc for sc in doc["scores"] if sc.get("exact") is not None and abs(sc["exact"]) < TINY]
        self.tiny = t(f"10^{_minus(str(round(math.log10(TINY))))}^")  # pandoc superscript: 10⁻⁶
        self.n_tiny = t(str(len(tiny)))
        self.n_tiny_p05 = t(str(sum(1 for sc in tiny if sc["exact_p"] is not None and sc["exact_p"] < 0.05)))
        self.n_tiny_q05 = t(str(sum(1 for sc in tiny if sc["exact_q"] is not None and sc["exact_q"] < 0.05)))

        # Ablation and patching of the primary model
        for kind, short in (("ablation", "abl"), ("patching", "patch")):
            heads = per_emotion({e: fmt_sites(m.experiment(kind, e)) for e in r.emotions})
            setattr(self, f"{short}_heads", heads)
            # The prose states these three; baselines, changed share and KL are in the tables.
            for metric, name in (("emotion_score", "M"), ("sentiment", "sent"), ("keywords", "kw")):
                val = by_emotion({e: fmt_effect(r.s_effect(p, e, kind, metric)) for e in r.emotions})
                setattr(self, f"{short}_{name}", val)

        # Cumulative curve (ΔM at each k, per emotion)
        for kind, short in (("ablation", "abl"), ("patching", "patch")):
            parts = []
            for e in r.emotions:
                ks = sorted({int(k.split(".")[4][1:]) for k in r.summary if k.startswith(f"{p}.{e}.{kind}.cumulative.k")})
                if not ks:
                    continue
                vals = ", ".join(
                    f"k = {k}: {fmt_num(r.s(p, e, kind, 'cumulative', f'k{k}', 'emotion_score', 'mean'), sign=True)}"
                    for k in ks
                )
                parts.append(f"{e} ({vals})")
            setattr(self, f"cum_{short}", join_words(parts) if parts else t("not computed (cumulative_k = 0)"))

        # Validation on the embedded model
        self.validation_lead, self.validation_effects = self._validation()
        # The seed's GPT-2 numbers, and this run's
        self.gpt2 = self._gpt2()

    def _validation(self) -> tuple[Text, Text]:
        r = self._r
        m = r.toy
        if m is None:
            lead = Text(
                f"This run has no embedded model (its models are {join_words(r.model_names)}), so there is no "
                f"ground truth to check the screening against here; add {EMBEDDED} to the models in params.yaml "
                f"to include it."
            )
            return lead, Text("No planted-head effects to report for this run.")
        planted = {e: fmt_heads(m.planted_heads(e)) for e in r.emotions}
        ranks = {}
        for score in SCORE_KINDS:
            vals = {}
            for e in r.emotions:
                rank = r.summary.get(f"{EMBEDDED}.{e}.recovery.{score}.planted_rank")
                auc = r.summary.get(f"{EMBEDDED}.{e}.recovery.{score}.auroc")
                vals[e] = (f"{ordinal(rank)} of {m.n_heads_total}" if rank is not None else "unranked") + (
                    f" (AUROC {fmt_num(auc, 2)})" if auc is not None else ""
                )
            ranks[score] = per_emotion(vals)
        other = max_other_exact(m.screening, {e: m.planted_heads(e) for e in r.emotions})
        noise = (f" Every other head × emotion has |exact ΔM| ≤ {fmt_num(other)} nats: by construction it cannot tell "
                 f"an emotion prompt from its twin, so what is left is float rounding." if other is not None else "")
        lead = Text(
            f"The embedded model {EMBEDDED} has {m.n_heads_total} heads; its planted heads are "
            f"{per_emotion(planted)} (results/models/{EMBEDDED}/planted.json). By @tbl-recovery, exact patching ranks the planted "
            f"head {ranks['exact']}; attribution ranks it {ranks['attribution']}; Δattn ranks it {ranks['delta_attn']}."
            f"{noise}"
        )
        hits, misses = [], []
        for e in r.emotions:
            heads = {tuple(h) for kind in KINDS for h in m.experiment(kind, e)["heads"]}
            (hits if heads == set(m.planted_heads(e)) else misses).append(e)
        if not misses:
            which = "The heads ablated and patched on it are the planted heads for every emotion."
        else:
            wrong = join_words(
                f"{fmt_heads(m.experiment('ablation', e)['heads'])} for {e}" for e in misses
            )
            which = (f"The heads ablated and patched on it are the planted heads for {join_words(hits)}; "
                     f"they are not for {join_words(misses)} ({wrong})." if hits else
                     f"The heads ablated and patched on it are not the planted heads ({wrong}).")
        abl = by_emotion({e: fmt_effect(r.s_effect(EMBEDDED, e, "ablation", "emotion_score")) for e in r.emotions})
        pat = by_emotion({e: fmt_effect(r.s_effect(EMBEDDED, e, "patching", "emotion_score")) for e in r.emotions})
        effects = Text(f"{which} Ablating them changes M, in nats, by {abl}; patching them, by {pat}.")
        return lead, effects

    def _gpt2(self) -> Text:
        r = self._r
        if GPT2 not in r.models:
            return Text(
                f"No GPT-2 run is in this report's results: the models of params.yaml are {join_words(r.model_names)}. "
                f"GPT-2 needs the Hugging Face hub or a local copy (offline, only the embedded model runs); with one, "
                f"`dvc exp run -S 'models=[toy,gpt2]'` adds it, and this section then puts its numbers beside the seed's."
            )
        e = SEED["emotion"] if SEED["emotion"] in r.emotions else r.emotions[0]
        m = r.models[GPT2]
        abl, pat = m.ablation[e], m.patching[e]
        sa, sp = r.s_effect(GPT2, e, "ablation", "sentiment"), r.s_effect(GPT2, e, "patching", "sentiment")
        return Text(
            f"This run's GPT-2 ({e}): {abl.get('method', '?')} ablation of {fmt_heads(abl['heads'])} moves sentiment "
            f"from {fmt_num(sa['baseline'])} by {fmt_effect(sa)} (n = {sa['n']}); patching {fmt_heads(pat['heads'])} "
            f"moves it from {fmt_num(sp['baseline'])} by {fmt_effect(sp)} (n = {sp['n']}). The top head by exact "
            f"patching is {fmt_head((r.s(GPT2, e, 'screening', 'top_layer'), r.s(GPT2, e, 'screening', 'top_head')))}."
        )

    def as_dict(self) -> dict[str, Text]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def seed_table(r: Results | None = None) -> pd.DataFrame:
    """The seed's GPT-2 numbers (as it reported them) beside this run's GPT-2 ones when present."""
    s = SEED
    rows = [
        ("Screening score", "Δattn (one value for many heads)", None),
        ("Top score", f"{fmt_num(s['delta_attn'], 6)} (same for its top {s['delta_attn_heads']} heads)", None),
        ("Head ablated / patched", f"{s['head']} (hook_v, approximate)", None),
        ("Ablation: sentiment baseline → ablated", f"{fmt_num(s['ablation_sentiment_baseline'], 4)} → {fmt_num(s['ablation_sentiment_ablated'], 4)}", None),
        ("Ablation: change [95 % CI], p", f"{fmt_num(s['ablation_sentiment_change'], 4, sign=True)} (no interval, no test)", None),
        ("Patching: sentiment baseline → patched", f"{fmt_num(s['patching_sentiment_baseline'], 4)} → {fmt_num(s['patching_sentiment_patched'], 4)}", None),
        ("Patching: change [95 % CI], p", f"{fmt_num(s['patching_sentiment_change'], 4, sign=True)} (no interval, no test)", None),
        ("n prompts", str(s["n"]), None),
    ]
    cols = {"Quantity": [q for q, _, _ in rows], f"Seed ({s['model']}, {s['emotion']})": [Text(v) for _, v, _ in rows]}
    if r is not None and GPT2 in r.models:
        e = s["emotion"] if s["emotion"] in r.emotions else r.emotions[0]
        m = r.models[GPT2]
        key = ranking_key(m.screening)
        top = ranked(m.screening, e)[0]
        abl, pat = m.ablation[e], m.patching[e]
        sa, sp = r.s_effect(GPT2, e, "ablation", "sentiment"), r.s_effect(GPT2, e, "patching", "sentiment")
        cols[f"This run ({GPT2}, {e})"] = [
            Text(SCORE_LABELS[key]),
            Text(f"{fmt_num(top[key], sign=True)} ({fmt_head((top['layer'], top['head']))}; "
                 f"{distinct_delta_attn(m.screening, e)} distinct Δattn values over {m.n_heads_total} heads)"),
            Text(f"{fmt_heads(abl['heads'])} / {fmt_heads(pat['heads'])} (hook_z, exact)"),
            Text(f"{fmt_num(sa['baseline'])} → {fmt_num(abl['intervened']['sentiment'])}"),
            fmt_effect(sa),
            Text(f"{fmt_num(sp['baseline'])} → {fmt_num(pat['intervened']['sentiment'])}"),
            fmt_effect(sp),
            Text(f"{sa['n']} / {sp['n']}"),
        ]
    return pd.DataFrame(cols)


# --------------------------------------------------------------------------------------------
# Markdown for the per-model sections (printed by `output: asis` chunks)
# --------------------------------------------------------------------------------------------


def ref_id(kind: str, *parts: str) -> str:
    """A Quarto cross-reference id, `fig-...` or `tbl-...`: model names carry `/` and `.`."""
    return f"{kind}-" + re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def refs(kind: str, name: str, models: Iterable[str]) -> Text:
    """`@fig-name-model` for each model: the prose's pointer to per-model figures and tables."""
    return join_words(f"@{ref_id(kind, name, m)}" for m in models)


MAX_COLUMN_DASHES = 24  # a cell longer than this wraps (pandoc: relative widths from the dashes)
# The PDF's text width (A4, 2 cm margins) in pt, what one table column's padding takes, and the
# width of a digit at the tables' 8 pt: how many characters fit across the page.
TEXT_WIDTH_PT, COLUMN_PAD_PT, CHAR_PT = 482.0, 12.0, 5.1


def column_dashes(columns: Sequence[Sequence[str]]) -> list[int]:
    """Separator dashes per column (pandoc sizes wide tables by them): at least the longest word,
    which nothing can break, then up to MAX_COLUMN_DASHES for long cells while the page has room."""
    words = [max(3, max((len(w) for c in col for w in c.split()), default=0)) for col in columns]
    wants = [max(w, min(max(map(len, col)), MAX_COLUMN_DASHES)) for w, col in zip(words, columns, strict=True)]
    room = (TEXT_WIDTH_PT - COLUMN_PAD_PT * len(columns)) / CHAR_PT - sum(words)
    extra = sum(wants) - sum(words)
    share = 1.0 if extra <= room else max(room, 0.0) / extra
    return [w + int((want - w) * share) for w, want in zip(words, wants, strict=True)]


def markdown_table(df: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A pipe table with an optional pandoc caption; `label` (`tbl-...`) numbers it (column
    widths: column_dashes)."""
    def esc(v: object) -> str:
        return str(v).replace("|", "\\|")  # a bare | would split the cell

    header = [esc(c) for c in df.columns]
    rows = [[esc(v) for v in row] for row in df.itertuples(index=False, name=None)]
    dashes = column_dashes([[h, *(r[i] for r in rows)] for i, h in enumerate(header)])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(":" + "-" * (d - 1) for d in dashes) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines)
    if not caption:
        return f"{text}\n"
    return f"{text}\n\n: {caption}{f' {{#{label}}}' if label else ''}\n"


def image_markdown(path: Path, caption: str, label: str, report_dir: Path) -> str:
    """`![caption](path){#fig-...}` with the path relative to the report folder (embedded at render)."""
    rel = Path(os.path.relpath(path, report_dir)).as_posix()
    return f"![{caption}]({rel}){{#{label}}}\n"


def figure_markdown(r: Results, model: str, name: str, caption: str, report_dir: Path) -> str:
    """A stage PNG as a numbered figure, `fig-<name>-<model>`."""
    return image_markdown(r.figure(model, name), caption, ref_id("fig", name, model), report_dir)


def model_heading(r: Results, model: str, level: int) -> str:
    """A heading naming the model when the report covers several (else nothing)."""
    return f"{'#' * level} {model}\n\n" if len(r.models) > 1 else ""


def screening_markdown(r: Results, report_dir: Path, top_n: int = 10, level: int = 4) -> str:
    parts = []
    for model, m in r.models.items():
        key = ranking_key(m.screening)
        parts.append(model_heading(r, model, level))
        parts.append(figure_markdown(
            r, model, "heatmap",
            f"{model}: {SCORE_LABELS[key]} of every layer × head, per emotion (results/{r.profile}/plots/heads/{model}).",
            report_dir,
        ))
        parts.append(figure_markdown(r, model, "top", f"{model}: the top heads by |{SCORE_LABELS[key]}|, 95 % CI where exact.", report_dir))
        parts.append(markdown_table(
            screening_table(m.screening, None, top_n),
            f"{model}: the top {top_n} head × emotion scores by |{SCORE_LABELS[key]}| (all emotions).",
            ref_id("tbl", "screening", model),
        ))
    return "\n".join(p for p in parts if p)


def experiments_markdown(r: Results, kind: str, report_dir: Path, level: int = 4) -> str:
    parts = []
    for model, m in r.models.items():
        parts.append(model_heading(r, model, level))
        for e in r.emotions:
            doc = m.experiment(kind, e)
            parts.append(markdown_table(experiment_table(doc), experiment_caption(doc), ref_id("tbl", kind, model, e)))
        fig = "ablation" if kind == "ablation" else "patching"
        what = "sentiment, own keywords and M" if kind == "ablation" else "own keywords, M and sentiment"
        parts.append(figure_markdown(
            r, model, fig, f"{model}: {kind}, baseline vs intervened {what} per emotion, Δ [95 % CI].", report_dir
        ))
    return "\n".join(p for p in parts if p)


def cumulative_markdown(r: Results, report_dir: Path, level: int = 4) -> str:
    parts = []
    for model, m in r.models.items():
        parts.append(model_heading(r, model, level))
        parts.append(figure_markdown(
            r, model, "cumulative", f"{model}: change of M and own keywords with the top-1..k heads intervened on jointly.",
            report_dir,
        ))
        for kind in KINDS:
            table = cumulative_overview(m, kind, r.emotions)
            if len(table):
                parts.append(markdown_table(
                    table, f"{model}: {kind} of the top-1..{table['k'].max()} screened heads jointly, per emotion.",
                    ref_id("tbl", "cumulative", kind, model),
                ))
    return "\n".join(p for p in parts if p)


def model_summary_table(r: Results, model: str) -> pd.DataFrame:
    """One model's headline numbers (all from summary.json): one row per emotion."""
    m = r.models[model]
    rows = []
    for e in r.emotions:
        top = fmt_head((r.s(model, e, "screening", "top_layer"), r.s(model, e, "screening", "top_head")))
        rows.append({
            "Emotion": e,
            "Pairs (used)": Text(f"{m.screening['pairs'][e]['n_pairs']} ({m.screening['pairs'][e].get('n_pairs_used', '—')})"),
            "Top head": top,
            "Ablation ΔM": fmt_effect(r.s_effect(model, e, "ablation", "emotion_score")),
            "Patching ΔM": fmt_effect(r.s_effect(model, e, "patching", "emotion_score")),
        })
    return pd.DataFrame(rows)


def model_sections_markdown(r: Results, level: int = 3) -> str:
    """A section per model: what it is and its headline numbers."""
    parts = []
    for model, m in r.models.items():
        s = m.screening
        if m.planted:
            what = "the embedded ground-truth model (planted heads)"
        elif m.source:
            where = "a local folder" if m.source.get("folder") and Path(m.source["folder"]) == Path(model) else "the Hugging Face hub"
            what = f"a {m.source['family']} model from {where}"
        else:
            what = "a model"
        parts.append(f"{'#' * level} {model}\n")
        parts.append(
            f"{model} is {what}: {s['n_layers']} layers × {s['n_heads']} heads; profile {r.profile}; "
            f"screened by {SCORE_LABELS[ranking_key(s)]}.\n"
        )
        parts.append(markdown_table(
            model_summary_table(r, model), f"{model}: headline numbers (results/summary.json).", ref_id("tbl", "summary", model)
        ))
    return "\n".join(parts)


def comparison_markdown(r: Results, report_dir: Path) -> str:
    """The compare_models stage: every model's heatmaps on one colour scale, and its top heads."""
    folder = r.root / comparison_dir(r.profile)
    png, table = folder / "heatmaps.png", folder / "top_heads.md"
    for path in (png, table):
        if not path.is_file():
            raise InputError(f"{path} does not exist; run `dvc repro compare_models`")
    caption = (
        f"Every model's screening score per layer × head and emotion on one symmetric colour scale "
        f"(results/{r.profile}/plots/models); boxes: planted heads, stars: q < 0.05."
    )
    # top_heads.md is its caption paragraph, then the table: the caption moves below the table
    # as a pandoc caption so the table is numbered (`tbl-comparison`).
    table_caption, body = table.read_text(encoding="utf-8").strip().split("\n\n", 1)
    return f"{image_markdown(png, caption, 'fig-comparison', report_dir)}\n{body}\n\n: {table_caption} {{#tbl-comparison}}\n"


def attention_markdown(r: Results, report_dir: Path) -> str:
    """Stage `attention`: each model's last-position attention figure of its top heads."""
    parts = []
    for model in r.models:
        png = r.root / attention_dir(r.profile, model) / "attention_pattern.png"
        if not png.is_file():
            raise InputError(f"figure {png} does not exist; run `dvc repro attention`")
        parts.append(image_markdown(
            png,
            f"{model}: attention of the last prompt position of each emotion's top heads, summed over each part "
            f"of the prompt, in the emotion prompts and their neutral twins (mean ± sd over pairs; "
            f"results/{r.profile}/plots/attention/{model}).",
            ref_id("fig", "attention", model), report_dir,
        ))
    return "\n".join(parts)
