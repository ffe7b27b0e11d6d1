"""The report's Markdown blocks: tables with captions, figures, one section per model."""

from __future__ import annotations

import os
from pathlib import Path
import pandas as pd

from analysis.contract import comparison_dir, plots_dir
from analysis.errors import InputError
from analysis.reporting.format import fmt_effect, fmt_head, Text
from analysis.reporting.results import KINDS, ranking_key, Results
from analysis.reporting.tables import cumulative_overview, experiment_caption, experiment_table, SCORE_LABELS, screening_table, unit_overview


def units_markdown(r: Results, report_dir: Path) -> str:
    """The unit screening: an overview table and each model's layer × neuron figure."""
    table = unit_overview(r)
    if table.empty:
        return "No model of this run has a unit screening (stage `screen_units`).\n"
    parts = [markdown_table(table, "Top MLP unit per model and emotion (results/summary.json).")]
    for model in r.models:
        path = r.root / plots_dir(r.profile, model) / "unit_summary.png"
        if path.is_file():
            rel = Path(os.path.relpath(path, report_dir)).as_posix()
            parts.append(f"![{model}: the top MLP units of every layer per emotion, exact ΔM with 95 % CI where patched.]({rel})\n")
    return "\n".join(parts)


def markdown_table(df: pd.DataFrame, caption: str | None = None) -> str:
    """A pipe table (tabulate) with an optional pandoc caption."""
    cells = df.astype(str).map(lambda v: v.replace("|", "\\|"))  # a bare | would split the cell
    cells.columns = [str(c).replace("|", "\\|") for c in df.columns]
    text = cells.to_markdown(index=False, disable_numparse=True)
    return f"{text}\n\n: {caption}\n" if caption else f"{text}\n"


def figure_markdown(r: Results, model: str, name: str, caption: str, report_dir: Path) -> str:
    """`![caption](path)` with the stage PNG's path relative to the report folder."""
    path = r.figure(model, name)
    rel = Path(os.path.relpath(path, report_dir)).as_posix()
    return f"![{caption}]({rel})\n"


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
        ))
    return "\n".join(p for p in parts if p)


def experiments_markdown(r: Results, kind: str, report_dir: Path, level: int = 4) -> str:
    parts = []
    for model, m in r.models.items():
        parts.append(model_heading(r, model, level))
        for e in r.emotions:
            doc = m.experiment(kind, e)
            parts.append(markdown_table(experiment_table(doc), experiment_caption(doc)))
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
                    table, f"{model}: {kind} of the top-1..{table['k'].max()} screened heads jointly, per emotion."
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
        parts.append(markdown_table(model_summary_table(r, model), f"{model}: headline numbers (results/summary.json)."))
    return "\n".join(parts)


def comparison_markdown(r: Results, report_dir: Path) -> str:
    """The compare_models stage: every model's heatmaps on one colour scale, and its top heads."""
    folder = r.root / comparison_dir(r.profile)
    png, table = folder / "heatmaps.png", folder / "top_heads.md"
    for path in (png, table):
        if not path.is_file():
            raise InputError(f"{path} does not exist; run `dvc repro compare_models`")
    rel = Path(os.path.relpath(png, report_dir)).as_posix()
    caption = (
        f"Every model's screening score per layer × head and emotion on one symmetric colour scale "
        f"(results/{r.profile}/plots/models); boxes: planted heads, stars: q < 0.05."
    )
    return f"![{caption}]({rel})\n\n{table.read_text(encoding='utf-8')}\n"
