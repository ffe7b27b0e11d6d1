"""Stage `compare_models`: every model's head screening side by side, on one colour scale.

    python -m analysis.model_comparison --profile baseline --output-dir results/baseline/plots/models \
        [--models toy gpt2 EleutherAI/pythia-160m] [--emotions gratitude anger apology] [--top-n 5] \
        [--params params.yaml]

Reads `results/<profile>/alignment/head_scores_<model>.json` of each model (paths from
`analysis.base.contract`; a model name with `/` is a subfolder there) and, where it exists,
`results/models/<model>/planted.json`. Models, emotions and the profile default to
params.yaml's. Writes into --output-dir, each file atomically, nothing at all on bad input:

- `heatmaps.png`: rows = emotions, columns = models; each panel the layer × head map of the
  model's ranking score: the exact patching effect ΔM (nats) where the screening computed it
  for any head, else the attribution estimate of it (the panel title says which). Heads
  without an exact value in an exact-ranked model are hatched grey, not drawn as 0. One
  symmetric colour scale for all panels (vmax = max |score| over them, vmin = −vmax) with one
  colour bar; ☆ marks significant heads (BH q < 0.05 and above the noise floor: analysis.base.contract.
  significant; a float-noise effect is never starred), a black box the planted heads of the toy model.
- `top_heads.csv`: the top-N heads per model × emotion by |score| (ties within 1e-6 nats go
  by layer, head: the order of `top:N` head specs): model, emotion, rank, layer, head,
  score_kind, score, ci_low, ci_high, q, n (CI, q, n empty for attribution scores).
- `top_heads.md`: the same as a Markdown table for the report.
- `size.csv`, `size.md`, `size.png` (secondary, descriptive: one point per model, no test across
  models): per model × emotion against the model's parameter count (embeddings included, from its
  config: analysis.modelfacts.architectures.lookup) the top specific head's exact ΔM with its 95 %
  CI, that ΔM as a fraction of the emotion–neutral gap of M (the screening's
  specificity.by_emotion gap), and the relative depth layer / (n_layers − 1) of the top-N specific
  heads (their mean; 0 = first block, 1 = last). A model with no specific head for an emotion has
  an empty row ("no specific head").
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, NullFormatter

from analysis.base.contract import check_output_folder, model_dir, Q_LEVEL, rank, ranking_score, read_screening, screening_file, significant
from analysis.base.errors import InputError
from analysis.base.io import atomic_path
from analysis.modelfacts.architectures import lookup
from analysis.modelfacts.shapes import Arch
from analysis.plots.data import load_planted, load_screening
from analysis.plots.style import ANNOT_PT, emotion_colour, new_figure, save_png, STYLE, write_csv
from analysis.reporting.format import fmt_change, fmt_ci, fmt_head, fmt_num, fmt_p


FILES = {"heatmaps": "heatmaps.png", "csv": "top_heads.csv", "md": "top_heads.md",
         "size_csv": "size.csv", "size_md": "size.md", "size_png": "size.png"}


TOP_COLUMNS = ["model", "emotion", "rank", "layer", "head", "score_kind", "score", "ci_low", "ci_high", "q", "n", "no_effect"]


SIZE_COLUMNS = ["model", "family", "parameters", "n_layers", "emotion", "n_specific", "top_layer", "top_head", "top_effect",
                "top_ci_low", "top_ci_high", "gap", "fraction_of_gap", "relative_depth"]


PANEL_IN = 2.9  # side of one heatmap panel (inches), whatever the model's shape


CMAP = "RdBu_r"


MISSING_FACE, MISSING_EDGE = "0.88", "0.55"


KIND_TITLES = {"exact": "exact ΔM", "attribution": "attribution estimate of ΔM (no exact)"}


@dataclass(frozen=True)
class ComparisonConfig:
    """What one run compares, and where it writes. `root` holds results/ (tests: a tmp folder)."""

    profile: str
    models: tuple[str, ...]
    emotions: tuple[str, ...]
    output_dir: Path
    top_n: int = 5
    root: Path = Path(".")

    def screening_path(self, model: str) -> Path:
        return self.root / screening_file(self.profile, model)

    def planted_path(self, model: str) -> Path:
        return self.root / model_dir(model) / "planted.json"

    def architecture(self, model: str) -> Arch:
        """The model's architecture: its folder's config.json (toy, bench), else where `lookup` finds
        the name (a local folder, the Hugging Face cache, the table of published configs)."""
        folder = self.root / model_dir(model)
        arch, _ = lookup(str(folder) if (folder / "config.json").is_file() else model)
        return arch

    def check(self) -> None:
        if self.top_n < 1:
            raise InputError(f"--top-n must be at least 1 (got {self.top_n})")
        for flag, names in (("--models", self.models), ("--emotions", self.emotions)):
            if not names:
                raise InputError(f"{flag} needs at least one name")
            dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
            if dup is not None:
                raise InputError(f"{flag} lists {dup!r} twice")


@dataclass(frozen=True)
class ModelScores:
    """One model's screening, reduced to what the comparison draws.

    `kind`: the ranking score of the whole file ("exact" if any head has an exact value, else
    "attribution"). `scores`: one row per layer × head × emotion (requested emotions only) with
    columns layer, head, emotion, score (NaN where `kind` was not computed for the head),
    ci_low, ci_high, q, n (NaN unless exact).
    """

    model: str
    path: Path
    n_layers: int
    n_heads: int
    kind: str
    scores: pd.DataFrame
    planted: Mapping[str, tuple[tuple[int, int], ...]]
    arch: Arch  # from the model's config: parameter count and family for the size table
    gap: Mapping[str, float]  # per emotion: the emotion–neutral gap of M (NaN where the screening has none)

    def grid(self, emotion: str) -> np.ndarray:
        """(n_layers, n_heads) scores of `emotion`; NaN where there is none."""
        out = np.full((self.n_layers, self.n_heads), np.nan)
        sub = self.scores[self.scores.emotion == emotion]
        out[sub.layer.to_numpy(int), sub["head"].to_numpy(int)] = sub.score.to_numpy(float)
        return out

    def n_scored(self, emotion: str) -> int:
        return int(np.isfinite(self.grid(emotion)).sum())


@dataclass(frozen=True)
class Comparison:
    profile: str
    emotions: tuple[str, ...]
    models: tuple[ModelScores, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.model for m in self.models)


def _screen_command(profile: str, model: str) -> str:
    return (
        f"python -m analysis.head_screening --model {shlex.quote(model)} --profile {shlex.quote(profile)} "
        f"--output {shlex.quote(str(screening_file(profile, model)))}"
    )


def _finite(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else math.nan


def load_model_scores(config: ComparisonConfig, model: str) -> ModelScores:
    path = config.screening_path(model)
    # head_plots' loader checks the file (schema, profile, shapes, types, duplicates) in one line per problem.
    found, (n_layers, n_heads), file_emotions, _ = load_screening(path, config.profile)
    if found != model:
        raise InputError(f"input file {path} holds the screening of model {found!r}, not {model!r}")
    missing = [e for e in config.emotions if e not in file_emotions]
    if missing:
        raise InputError(
            f"input file {path} has no scores for emotion {missing[0]!r} (it has {', '.join(file_emotions)}); "
            f"rerun `{_screen_command(config.profile, model)}` with these emotions, or leave {missing[0]} out with --emotions"
        )
    doc = read_screening(path)
    kind = ranking_score(doc["scores"])
    rows = []
    for s in doc["scores"]:
        if s["emotion"] not in config.emotions:
            continue
        exact = kind == "exact"
        rows.append({
            "layer": int(s["layer"]), "head": int(s["head"]), "emotion": s["emotion"],
            "score": _finite(s.get(kind)),
            "ci_low": _finite(s.get("exact_ci_low")) if exact else math.nan,
            "ci_high": _finite(s.get("exact_ci_high")) if exact else math.nan,
            "q": _finite(s.get("exact_q")) if exact else math.nan,
            "n": _finite(s.get("exact_n")) if exact else math.nan,
            "significant": exact and significant(s),
            "no_effect": bool(s.get("no_effect")),  # at or below the noise floor: its q is not a finding
            "specific": exact and bool(s.get("specific")),
        })
    scores = pd.DataFrame(rows, columns=["layer", "head", "emotion", "score", "ci_low", "ci_high", "q", "n", "significant",
                                         "no_effect", "specific"])
    planted: dict[str, tuple[tuple[int, int], ...]] = {}
    ppath = config.planted_path(model)
    if ppath.is_file():
        for emotion, cells in load_planted(ppath).items():
            for layer, head in cells:
                if not (0 <= layer < n_layers and 0 <= head < n_heads):
                    raise InputError(
                        f"input file {ppath}: planted head {layer}:{head} ({emotion}) is outside model {model}'s "
                        f"{n_layers} layers × {n_heads} heads"
                    )
            if emotion in config.emotions:
                planted[emotion] = cells
    by_emotion = (doc.get("specificity") or {}).get("by_emotion") or {}
    gap = {e: _finite((by_emotion.get(e) or {}).get("gap")) for e in config.emotions}
    return ModelScores(model, path, n_layers, n_heads, kind, scores, planted, config.architecture(model), gap)


def load(config: ComparisonConfig) -> Comparison:
    """Read and check every input (InputError on the first problem); nothing is written."""
    config.check()
    absent = [m for m in config.models if not config.screening_path(m).is_file()]
    if absent:
        m = absent[0]
        more = f" (also missing: {', '.join(absent[1:])})" if len(absent) > 1 else ""
        raise InputError(
            f"screening file {config.screening_path(m)} of model {m!r} does not exist{more}; produce it with "
            f"`{_screen_command(config.profile, m)}` (or `dvc repro screen`)"
        )
    models = tuple(load_model_scores(config, m) for m in config.models)
    return Comparison(config.profile, config.emotions, models)


def shared_limit(comp: Comparison) -> float:
    """vmax of the one colour scale: max |score| over every panel drawn (1 if all are 0)."""
    vmax = max((float(np.nanmax(np.abs(m.scores.score))) for m in comp.models if m.scores.score.notna().any()), default=0.0)
    return vmax if vmax > 0 else 1.0


def top_heads_table(comp: Comparison, top_n: int) -> pd.DataFrame:
    """Per model × emotion the `top_n` heads by |score| (fewer where fewer heads have one)."""
    out: list[dict[str, Any]] = []
    for m in comp.models:
        for emotion in comp.emotions:
            sub = m.scores[(m.scores.emotion == emotion) & m.scores.score.notna()]
            for place, r in enumerate(rank(sub.itertuples(), "score")[:top_n], 1):
                out.append({
                    "model": m.model, "emotion": emotion, "rank": place, "layer": r.layer, "head": r.head,
                    "score_kind": m.kind, "score": r.score, "ci_low": r.ci_low, "ci_high": r.ci_high, "q": r.q, "n": r.n,
                    "no_effect": r.no_effect,
                })
    table = pd.DataFrame(out, columns=TOP_COLUMNS)
    for col in ("rank", "layer", "head", "n"):
        table[col] = table[col].astype("Int64")
    return table


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(comp: Comparison, table: pd.DataFrame) -> str:
    """`top_heads.md`: a caption and one Markdown table (the report's number formats)."""
    n = int(table["rank"].max()) if len(table) else 0
    lines = [
        f"Top {n} heads per model and emotion by |ΔM| (profile {comp.profile}). ΔM: effect on the emotion "
        "score M (nats) of patching the head's output from the emotion prompt into its neutral twin: the exact "
        "patching effect with its 95 % CI, BH q and number of pairs n where it was computed, else the "
        "attribution estimate (no CI); 'no effect': at or below the identity control's noise floor. ★ planted head.",
        "",
        "| Model | Emotion | Rank | Head | Score | ΔM (nats) | 95 % CI | q | n |",
        "|:--|:--|--:|:--|:--|--:|:--|--:|--:|",
    ]
    planted = {m.model: m.planted for m in comp.models}
    for r in table.itertuples():
        star = " ★" if (r.layer, r.head) in planted[r.model].get(r.emotion, ()) else ""
        effect = {"mean": r.score, "ci_low": r.ci_low, "ci_high": r.ci_high}
        has_ci = math.isfinite(r.ci_low) and math.isfinite(r.ci_high)
        score = fmt_change(effect) if has_ci else fmt_num(r.score, sign=True)
        cells = [
            r.model, r.emotion, str(r.rank), f"{fmt_head((r.layer, r.head))}{star}", r.score_kind, score,
            fmt_ci(effect) if has_ci else "—",
            "no effect" if r.no_effect else fmt_p(r.q) if math.isfinite(r.q) else "—",
            str(r.n) if not pd.isna(r.n) else "—",
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _kind_title(m: ModelScores, emotion: str) -> str:
    if m.kind == "attribution":
        return KIND_TITLES["attribution"]
    k, total = m.n_scored(emotion), m.n_layers * m.n_heads
    if k == total:
        return KIND_TITLES["exact"]
    return f"exact ΔM ({k} of {total} heads)"


def _colourbar_label(kinds: set[str]) -> str:
    if kinds == {"exact"}:
        return "ΔM (nats): exact patching effect"
    if kinds == {"attribution"}:
        return "ΔM (nats): attribution estimate"
    return "ΔM (nats): exact patching effect,\nor its attribution estimate (see panel titles)"


def heatmaps_figure(comp: Comparison, path: Path) -> Figure:
    """Rows = emotions, columns = models (one model: its emotions in one row), one shared
    symmetric colour scale; saved to `path`."""
    vmax = shared_limit(comp)
    norm = Normalize(vmin=-vmax, vmax=vmax)
    one_row = len(comp.models) == 1  # a single column of panels would be tall and narrow on the page
    n_rows, n_cols = (1, len(comp.emotions)) if one_row else (len(comp.emotions), len(comp.models))
    any_planted = any_missing = any_sig = False
    with matplotlib.rc_context(STYLE):
        # One row: panels small enough for the row to fit 7.5 in (9 pt text >= 8 pt in the PDF).
        panel = min(PANEL_IN, (7.5 - 1.6) / n_cols) if one_row else PANEL_IN
        fig = new_figure(max(4.8, panel * n_cols + 1.6), (panel + 0.25) * n_rows + 1.5)
        fig.set_layout_engine("compressed")  # constrained layout that packs fixed-aspect panels
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for c, m in enumerate(comp.models):
            cell_pt = 72 * panel * 0.8 / max(m.n_layers, m.n_heads)  # one cell's side, roughly, in points
            for r, emotion in enumerate(comp.emotions):
                ax = axes[0, r] if one_row else axes[r, c]
                grid = m.grid(emotion)
                ax.imshow(grid, cmap=CMAP, norm=norm, aspect="equal", origin="upper", gid=f"heatmap:{m.model}:{emotion}")
                ax.set_title(f"{m.model} · {emotion}\n{_kind_title(m, emotion)}", color=emotion_colour(emotion))
                ax.set_xlabel("head")
                ax.set_ylabel("layer")
                ax.set_xticks(range(0, m.n_heads, 1 if m.n_heads <= 8 else 2))
                ax.set_yticks(range(0, m.n_layers, 1 if m.n_layers <= 8 else 2))
                ax.set_xlim(-0.5, m.n_heads - 0.5)
                ax.set_ylim(m.n_layers - 0.5, -0.5)
                ax.spines[:].set_visible(False)
                for layer, head in zip(*np.nonzero(~np.isfinite(grid)), strict=True):
                    ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, facecolor=MISSING_FACE, edgecolor=MISSING_EDGE,
                                           hatch="////", linewidth=0, gid=f"missing:{layer}:{head}"))
                    any_missing = True
                sub = m.scores[(m.scores.emotion == emotion) & m.scores.significant]
                if len(sub):
                    ax.scatter(sub["head"], sub.layer, marker="*", s=min(90.0, (0.45 * cell_pt) ** 2), facecolor="white",
                               edgecolor="black", linewidth=0.8, zorder=3, gid=f"significant:{m.model}:{emotion}")
                    any_sig = True
                for layer, head in m.planted.get(emotion, ()):
                    ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="black",
                                           linewidth=2.5 if cell_pt > 20 else 1.6, zorder=4, gid=f"planted:{layer}:{head}"))
                    any_planted = True
        cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=CMAP), ax=axes.ravel().tolist(), shrink=min(0.9, 0.35 + 0.2 * n_rows),
                            pad=0.02, aspect=30)
        cbar.set_label(_colourbar_label({m.kind for m in comp.models}))
        handles = []
        if any_sig:
            handles.append(Line2D([], [], linestyle="none", marker="*", markersize=9, markerfacecolor="white",
                                  markeredgecolor="black", label=f"q < {Q_LEVEL:g} (BH, exact ΔM above the noise floor)"))
        if any_planted:
            handles.append(Patch(facecolor="none", edgecolor="black", linewidth=2.5, label="planted head"))
        if any_missing:
            handles.append(Patch(facecolor=MISSING_FACE, edgecolor=MISSING_EDGE, hatch="////", linewidth=0,
                                 label="exact ΔM not computed"))
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=ANNOT_PT)
        fig.suptitle(
            f"Head reaction: patching effect on M\none colour scale for all panels, ±{vmax:.3g} nats\n"
            f"model{'s' if n_cols > 1 else ''} {', '.join(comp.names)} · profile {comp.profile}"
        )
        save_png(fig, path)
    return fig


def size_table(comp: Comparison, top_n: int) -> pd.DataFrame:
    """Per model × emotion (models by parameter count): the top specific head's exact ΔM and CI, its
    fraction of the gap, and the mean relative depth of the top-N specific heads (SIZE_COLUMNS)."""
    out: list[dict[str, Any]] = []
    for m in sorted(comp.models, key=lambda m: m.arch.n_params):
        for emotion in comp.emotions:
            sub = m.scores[(m.scores.emotion == emotion) & m.scores.specific]
            top = rank(sub.itertuples(), "score")[:top_n]
            best = top[0] if top else None
            depth = [r.layer / (m.n_layers - 1) if m.n_layers > 1 else 0.0 for r in top]
            effect = best.score if best else math.nan
            out.append({
                "model": m.model, "family": m.arch.family, "parameters": m.arch.n_params, "n_layers": m.n_layers,
                "emotion": emotion, "n_specific": len(sub),
                "top_layer": best.layer if best else None, "top_head": best.head if best else None,
                "top_effect": effect, "top_ci_low": best.ci_low if best else math.nan,
                "top_ci_high": best.ci_high if best else math.nan, "gap": m.gap[emotion],
                "fraction_of_gap": effect / m.gap[emotion] if best and m.gap[emotion] else math.nan,
                "relative_depth": float(np.mean(depth)) if depth else math.nan,
            })
    table = pd.DataFrame(out, columns=SIZE_COLUMNS)
    for col in ("parameters", "n_layers", "n_specific", "top_layer", "top_head"):
        table[col] = table[col].astype("Int64")
    return table


def size_markdown(comp: Comparison, table: pd.DataFrame, top_n: int) -> str:
    """`size.md`: a caption and one Markdown table (the report's number formats)."""
    lines = [
        f"Secondary, descriptive (one screening per model, no test across sizes; profile {comp.profile}). Per model and "
        "emotion: its parameters (embeddings included), the top specific head (the screening's `specific`: its effect beats "
        "the neutral′ → twin control) with its exact ΔM (nats) and 95 % CI on the selection half, ΔM as a fraction of the "
        f"emotion–neutral gap of M, and the mean relative depth layer / (layers − 1) of the top {top_n} specific heads "
        "(0 = first block, 1 = last).",
        "",
        "| Model | Parameters | Emotion | Specific heads | Top head | ΔM (nats) | 95 % CI | Fraction of gap | Relative depth |",
        "|:--|--:|:--|--:|:--|--:|:--|--:|--:|",
    ]
    for r in table.itertuples():
        found = not pd.isna(r.top_layer)
        effect = {"mean": r.top_effect, "ci_low": r.top_ci_low, "ci_high": r.top_ci_high}
        cells = [
            r.model, f"{r.parameters:,}", r.emotion, str(r.n_specific),
            fmt_head((r.top_layer, r.top_head)) if found else "no specific head",
            fmt_change(effect) if found else "—", fmt_ci(effect) if found else "—",
            fmt_num(r.fraction_of_gap) if found and math.isfinite(r.fraction_of_gap) else "—",
            fmt_num(r.relative_depth) if found else "—",
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


SIZE_PANELS = (("top_effect", "top specific ΔM (nats)"), ("fraction_of_gap", "fraction of the gap"),
               ("relative_depth", "relative depth"))


def size_figure(comp: Comparison, table: pd.DataFrame, path: Path) -> Figure:
    """Three panels against the parameter count (log scale): the top specific ΔM with its 95 % CI,
    its fraction of the gap, the relative depth of the top specific heads; one colour per emotion."""
    with matplotlib.rc_context(STYLE):
        fig = new_figure(7.5, 2.9)
        axes = fig.subplots(1, len(SIZE_PANELS), squeeze=False)[0]
        lo, hi = (float(table.parameters.min()) / 1e6, float(table.parameters.max()) / 1e6) if len(table) else (1.0, 1.0)
        for ax, (col, label) in zip(axes, SIZE_PANELS, strict=True):
            for i, emotion in enumerate(comp.emotions):
                sub = table[(table.emotion == emotion) & table[col].notna()]
                x = sub.parameters.to_numpy(float) / 1e6 * (1.0 + 0.06 * (i - (len(comp.emotions) - 1) / 2))  # side by side
                y = sub[col].to_numpy(float)
                if col == "top_effect":
                    err = np.vstack([y - sub.top_ci_low.to_numpy(float), sub.top_ci_high.to_numpy(float) - y])
                    ax.errorbar(x, y, yerr=err, fmt="o", color=emotion_colour(emotion), capsize=2, label=emotion,
                                gid=f"size:{col}:{emotion}")
                else:
                    ax.plot(x, y, "o", color=emotion_colour(emotion), label=emotion, gid=f"size:{col}:{emotion}")
            ax.set_xscale("log")
            ax.set_xlim(lo / 2, hi * 2)  # a decade at least, whatever the models: one model is not a zoom on its jitter
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("parameters (millions)")
            ax.set_ylabel(label)
            if col == "relative_depth":
                ax.set_ylim(-0.05, 1.05)
            ax.axhline(0, color="0.6", linewidth=0.6)
        if not table.top_effect.notna().any():
            fig.text(0.5, 0.5, "no model has a specific head", ha="center", va="center")
        handles = [Line2D([], [], linestyle="none", marker="o", color=emotion_colour(e), label=e) for e in comp.emotions]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=ANNOT_PT)
        fig.suptitle(f"Top specific heads against model size (secondary, descriptive)\n"
                     f"models {', '.join(comp.names)} · profile {comp.profile}")
        save_png(fig, path)
    return fig


def write_text(text: str, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def compare(config: ComparisonConfig) -> dict[str, Path]:
    """Load and check everything, then write the figure and both tables; returns name → path."""
    inputs = [f(m) for m in config.models for f in (config.screening_path, config.planted_path)]
    check_output_folder(config.output_dir, inputs=inputs)  # before any work; creates nothing
    comp = load(config)
    table = top_heads_table(comp, config.top_n)
    md = markdown_table(comp, table)
    out = {k: Path(config.output_dir) / v for k, v in FILES.items()}
    size = size_table(comp, config.top_n)
    heatmaps_figure(comp, out["heatmaps"])
    write_csv(table, out["csv"])
    write_text(md, out["md"])
    size_figure(comp, size, out["size_png"])
    write_csv(size, out["size_csv"])
    write_text(size_markdown(comp, size, config.top_n), out["size_md"])
    return out
