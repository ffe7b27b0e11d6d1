"""The report's Markdown blocks: tables with captions, figures, one section per model."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
import pandas as pd

from analysis.base.contract import ATTENTION_PNG, attention_dir, comparison_dir, plots_dir
from analysis.base.errors import InputError
from analysis.reporting.format import fmt_effect, fmt_gap, fmt_head, join_words, Text
from analysis.reporting.results import FIGURES, KINDS, ranking_key, Results
from analysis.reporting.tables import cumulative_overview, experiment_caption, experiment_table, ratio_table, SCORE_LABELS, screening_table, unit_overview


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


def ratio_markdown(r: Results) -> str:
    """The flagged attribution / exact ratios of every model (heads and units) as a table."""
    table = ratio_table(r)
    if table.empty:
        return "No head or unit of this run has a flagged attribution / exact ratio.\n"
    return markdown_table(
        table, "Attribution against exact patching where they disagree: ratio attribution / exact outside [0.3, 3] "
        "(the opposite sign included), taken only where the exact effect is above the noise floor; planted components "
        "first (the screening files' attribution_ratio blocks).", "tbl-ratio",
    )


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
        if kind not in m.experiments:
            continue
        parts.append(model_heading(r, model, level))
        for e in r.emotions:
            doc = m.experiment(kind, e)
            parts.append(markdown_table(experiment_table(doc, r.finding_half), experiment_caption(doc, r.finding_half),
                                        ref_id("tbl", kind, model, e)))
        if kind in FIGURES:  # the plots stage draws ablation and denoising
            what = "sentiment, own keywords and M" if kind == "ablation" else "own keywords, M and sentiment"
            parts.append(figure_markdown(
                r, model, kind, f"{model}: {kind}, baseline vs intervened {what} per emotion, Δ [95 % CI].", report_dir
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
            table = cumulative_overview(m, kind, r.emotions, r.finding_half)
            if len(table):
                parts.append(markdown_table(
                    table, f"{model}: {kind} of the top-1..{table['k'].max()} screened heads jointly, per emotion, on the "
                    f"{r.finding_half} half (secondary); fraction of the gap beside the same intervention on as many random heads.",
                    ref_id("tbl", "cumulative", kind, model),
                ))
    return "\n".join(p for p in parts if p)


def model_summary_table(r: Results, model: str) -> pd.DataFrame:
    """One model's headline numbers (all from summary.json): one row per emotion."""
    m = r.models[model]
    rows = []
    for e in r.emotions:
        top = fmt_head((r.s(model, e, "screening", r.half(model, e), "top_layer"), r.s(model, e, "screening", r.half(model, e), "top_head")))
        rows.append({
            "Emotion": e,
            "Pairs (used)": Text(f"{m.screening['pairs'][e]['n_pairs']} ({m.screening['pairs'][e].get('n_pairs_used', '—')})"),
            "Top head": top,
            "Ablation ΔM": fmt_effect(r.s_effect(model, e, "ablation", "emotion_score")),
            "Ablation: fraction of gap": fmt_gap(r.s_gap(model, e, "ablation")),
            "Denoising ΔM": fmt_effect(r.s_effect(model, e, "denoising", "emotion_score")),
            "Denoising: fraction of gap": fmt_gap(r.s_gap(model, e, "denoising")),
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


def _comparison_figure_and_table(r: Results, report_dir: Path, name: str, png: str, table: str, caption: str) -> str:
    """One figure and one table of the compare_models stage, numbered `fig-<name>` and `tbl-<name>`.
    The table file is its caption paragraph, then the table: the caption moves below the table as a
    pandoc caption so the table is numbered."""
    folder = r.root / comparison_dir(r.profile)
    for path in (folder / png, folder / table):
        if not path.is_file():
            raise InputError(f"{path} does not exist; run `dvc repro compare_models`")
    table_caption, body = (folder / table).read_text(encoding="utf-8").strip().split("\n\n", 1)
    return f"{image_markdown(folder / png, caption, f'fig-{name}', report_dir)}\n{body}\n\n: {table_caption} {{#tbl-{name}}}\n"


def comparison_markdown(r: Results, report_dir: Path) -> str:
    """The compare_models stage: every model's heatmaps on one colour scale, and its top heads."""
    return _comparison_figure_and_table(r, report_dir, "comparison", "heatmaps.png", "top_heads.md", (
        f"Every model's screening score per layer × head and emotion on one symmetric colour scale "
        f"(results/{r.profile}/plots/models); boxes: planted heads, stars: q < 0.05."
    ))


def model_size_markdown(r: Results, report_dir: Path) -> str:
    """The compare_models stage's size table and figure (issue 25: the Phase 8 ladder's reading)."""
    return _comparison_figure_and_table(r, report_dir, "size", "size.png", "size.md", (
        f"Top specific heads against parameter count (log scale), one point per model and emotion "
        f"(results/{r.profile}/plots/models/size.png): the top specific head's exact ΔM with its 95 % CI, "
        f"its fraction of the emotion–neutral gap, the relative depth of the top specific heads."
    ))


def attention_markdown(r: Results, report_dir: Path) -> str:
    """Stage `attention`: each model's last-position attention figure of its top heads."""
    parts = []
    for model in r.models:
        png = r.root / attention_dir(r.profile, model) / ATTENTION_PNG
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
