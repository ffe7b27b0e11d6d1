"""The per-model figures and their CSV plot data."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from analysis.base.contract import rank
from analysis.plots.data import _emotion_sort_key, EXPERIMENTS, PlotData
from analysis.plots.style import ANNOT_PT, emotion_colour, METRIC_LABELS, METRIC_TITLES, MODEL_STYLES, new_figure, save_png, STYLE, write_csv


FILES = {
    "heatmap": "head_reaction_heatmap.png",
    "top": "top_heads.png",
    "ablation": "ablation_sentiment_comparison.png",
    "patching": "patching_keyword_comparison.png",
    "cumulative": "cumulative_topk.png",
    "scores_csv": "head_scores.csv",
    "effects_csv": "effects.csv",
    "cumulative_csv": "cumulative.csv",
}


# Drawn only when a unit screening is given.
UNIT_FILES = {"units": "unit_summary.png", "units_csv": "unit_summary.csv"}


UNIT_LABELLED = 3  # top units per emotion labelled `L.N` in unit_summary.png
# ... if at least this fraction of the panel's largest |ΔM|: labels of float-noise units near
# zero overprint each other ("3.39 3.324") and name nothing.
UNIT_LABEL_MIN_FRACTION = 0.05


COMPARISON_METRICS = {
    "ablation": ("sentiment", "kw_own", "emotion_score"),
    "patching": ("kw_own", "emotion_score", "sentiment"),
}


CUMULATIVE_METRICS = ("emotion_score", "kw_own")


def _score_kind_label(kinds: set[str]) -> str:
    if kinds == {"exact"}:
        return "ΔM (nats): exact patching effect"
    if kinds == {"attribution"}:
        return "ΔM (nats): attribution estimate\n(no exact patching computed)"
    return "ΔM (nats): exact patching effect\n(• cells: attribution estimate)"


def heatmap_figure(data: PlotData, path: Path) -> Figure:
    """Layer × head score per emotion (columns) and model (rows), diverging around 0."""
    with matplotlib.rc_context(STYLE):
        models = [m for m in data.models if m in data.dims and data.emotions[m]]
        n_cols = max(len(data.emotions[m]) for m in models)
        max_layers = max(data.dims[m][0] for m in models)
        max_heads = max(data.dims[m][1] for m in models)
        cell = 0.25 if max_heads <= 8 else 0.2
        # 1.9 in: three emotions fit 7.3 in, so 9 pt text stays >= 8 pt at the PDF's text width.
        panel_w = max(1.9, cell * max_heads + 0.9)
        panel_h = max(1.9, cell * max_layers + 0.9)
        fig = new_figure(max(4.8, panel_w * n_cols + 1.6), panel_h * len(models) + 0.9)
        axes = fig.subplots(len(models), n_cols, squeeze=False)
        any_planted = False
        for r, model in enumerate(models):
            n_layers, n_heads = data.dims[model]
            rows = data.scores[data.scores.model == model]
            vmax = float(rows.score.abs().max()) if len(rows) else 0.0
            vmax = vmax if vmax > 0 else 1.0
            image = None
            for c in range(n_cols):
                ax = axes[r, c]
                if c >= len(data.emotions[model]):
                    ax.set_axis_off()
                    continue
                emotion = data.emotions[model][c]
                sub = rows[rows.emotion == emotion]
                grid = np.full((n_layers, n_heads), np.nan)
                grid[sub.layer.to_numpy(), sub["head"].to_numpy()] = sub.score.to_numpy()
                image = ax.imshow(grid, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="equal", origin="upper")
                ax.set_title(f"{emotion}" + (f" · {model}" if len(models) > 1 else ""), color=emotion_colour(emotion))
                ax.set_xlabel("head")
                ax.set_ylabel("layer")
                ax.set_xticks(range(n_heads))
                ax.set_yticks(range(n_layers))
                if n_heads > 8:
                    ax.set_xticks(range(0, n_heads, 2))
                if n_layers > 8:
                    ax.set_yticks(range(0, n_layers, 2))
                ax.spines[:].set_visible(False)
                mixed = set(rows.kind) == {"exact", "attribution"}
                annotate = n_layers * n_heads <= 64
                if annotate:
                    for s in sub.itertuples():
                        shade = abs(s.score) / vmax > 0.6
                        approx = mixed and s.kind == "attribution"
                        text = ("≈" if approx else "") + _fmt(s.score, 1 if abs(s.score) >= 9.995 else 2)
                        ax.text(s.head, s.layer, text, ha="center", va="center", fontsize=ANNOT_PT,
                                color="white" if shade else "black", fontstyle="italic" if approx else "normal")
                elif mixed:
                    approx = sub[sub.kind == "attribution"]
                    ax.plot(approx["head"], approx.layer, linestyle="none", marker="o", markersize=2.5, color="0.35")
                for layer, head in data.planted.get(model, {}).get(emotion, ()):
                    ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="black",
                                           linewidth=2.5, gid=f"planted:{layer}:{head}", label="planted head"))
                    any_planted = True
            if image is not None:
                cbar = fig.colorbar(image, ax=list(axes[r, :]), shrink=0.9, pad=0.02)
                label = _score_kind_label(set(rows.kind))
                cbar.set_label(label.replace("• cells", "≈ cells") if n_layers * n_heads <= 64 else label)
        if any_planted:
            fig.legend(handles=[Patch(facecolor="none", edgecolor="black", linewidth=2.5, label="planted head")],
                       loc="outside lower center", frameon=False)
        fig.suptitle(f"Head reaction: patching effect on M\n{data.title_models(models)}")
        save_png(fig, path)
    return fig


def _head_label(row: Any, multi_model: bool, planted: Mapping[str, Mapping[str, Sequence[tuple[int, int]]]]) -> str:
    mark = " ★" if (row.layer, row.head) in planted.get(row.model, {}).get(row.emotion, ()) else ""
    model = f"{row.model} " if multi_model else ""
    return f"{model}L{row.layer} H{row.head} · {row.emotion}{mark}"


def top_rows(scores: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """The top-N rows by the one ranking (contract.rank); equal ranks keep model, then emotion order."""
    pre = scores.assign(_e=[_emotion_sort_key(e) for e in scores.emotion]).sort_values(["model", "_e"], kind="stable")
    return scores.loc[[r.Index for r in rank(pre.itertuples(), "score")]].head(top_n).reset_index(drop=True)


def top_heads_figure(data: PlotData, top_n: int, path: Path) -> Figure:
    """Horizontal bars of the top-N heads by |score|, colour = emotion, CI whiskers where exact.

    Only effects above the noise floor are drawn: an exact effect at or below it (`no_effect`) is
    float noise, and a bar for it would be an empty slot (on the toy, 17 of 20 were)."""
    top = top_rows(data.scores[~data.scores.no_effect.astype(bool)], top_n)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(7.5, 1.6 + 0.32 * max(len(top), 1))
        ax = fig.subplots()
        if top.empty:
            ax.text(0.5, 0.5, "no head has an effect above the noise floor", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            fig.suptitle(f"Top heads by |ΔM| — {data.title_models(data.models)}")
            save_png(fig, path)
            return fig
        y = np.arange(len(top))[::-1]  # rank 1 at the top
        multi = data.scores.model.nunique() > 1
        mixed = set(top.kind) == {"exact", "attribution"}
        for yi, row in zip(y, top.itertuples(), strict=True):
            exact = row.kind == "exact" or not mixed
            ax.barh(yi, row.score, color=emotion_colour(row.emotion), alpha=1.0 if exact else 0.45,
                    hatch=None if exact else "//", edgecolor="white" if exact else emotion_colour(row.emotion), height=0.75)
            if np.isfinite(row.ci_low) and np.isfinite(row.ci_high):
                ax.errorbar(row.score, yi, xerr=[[row.score - row.ci_low], [row.ci_high - row.score]], fmt="none",
                            ecolor="black", elinewidth=1.2, capsize=3)
        ax.set_yticks(y, [_head_label(r, multi, data.planted) for r in top.itertuples()])
        ax.axvline(0, color="0.3", linewidth=0.8)
        kinds = set(top.kind)
        ax.set_xlabel(_score_kind_label(kinds).replace("\n", " ").replace("(• cells: ", "(hatched: "))
        ax.grid(axis="x", color="0.9")
        ax.set_axisbelow(True)
        handles = [Patch(color=emotion_colour(e), label=e) for e in sorted(set(top.emotion), key=_emotion_sort_key)]
        if "exact" in kinds:
            handles.append(Line2D([], [], color="black", marker="|", markersize=8, linestyle="-", label="95 % CI"))
        if "attribution" in kinds and "exact" in kinds:
            handles.append(Patch(facecolor="white", edgecolor="0.4", hatch="//", label="attribution (no exact)"))
        if any(data.planted.values()):
            handles.append(Line2D([], [], linestyle="none", marker="*", color="black", label="planted head"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
        n = len(top)
        quiet = int(data.scores.no_effect.astype(bool).sum())
        fig.suptitle(f"Top {n} heads by |ΔM| — {data.title_models(sorted(set(top.model), key=data.models.index))}"
                     + (f"\n({quiet} head × emotion effects at or below the noise floor not drawn)" if quiet else ""))
        save_png(fig, path)
    return fig


def _digits(scale: float) -> int:
    """Decimals that show a change of this size with at least two significant figures (2..4)."""
    if not np.isfinite(scale) or scale <= 0:
        return 2
    return int(min(4, max(2, 1 - math.floor(math.log10(scale)))))


def _fmt(x: float, digits: int) -> str:
    """Signed, fixed decimals, typographic minus; what rounds to zero is shown unsigned."""
    if abs(x) < 0.5 * 10.0**-digits:
        return f"{0.0:.{digits}f}"
    return f"{x:+.{digits}f}".replace("-", "−")


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 1e-3 else f"p = {p:.2g}"


def _metric_key(metric: str, emotion: str) -> str:
    return f"kw_{emotion}" if metric == "kw_own" else metric


def comparison_figure(data: PlotData, experiment: str, path: Path) -> Figure:
    """Baseline vs intervened means per emotion; whisker = baseline + 95 % CI of the paired change."""
    metrics = COMPARISON_METRICS[experiment]
    eff = data.effects[data.effects.experiment == experiment]
    models = [m for m in data.models if (eff.model == m).any()]
    verb = {"ablation": "ablated", "patching": "patched"}[experiment]
    with matplotlib.rc_context(STYLE):
        n_em = max(eff[eff.model == m].emotion.nunique() for m in models)
        # One column per model, one row per metric: with one model the figure is the report's
        # text width (6.5 in), so its 9 pt text is 9 pt on the page.
        fig = new_figure(len(models) * max(6.5, 1.45 * n_em + 0.9), 3.1 * len(metrics) + 1.2)
        axes = fig.subplots(len(metrics), len(models), squeeze=False)
        width = 0.38
        for c, model in enumerate(models):
            sub = eff[eff.model == model]
            ems = sorted(set(sub.emotion), key=_emotion_sort_key)
            for r, metric in enumerate(metrics):
                ax = axes[r, c]
                x = np.arange(len(ems))
                lows, highs = [], []
                values = sub[sub.metric.isin([_metric_key(metric, e) for e in ems])][["change", "ci_low", "ci_high"]]
                digits = _digits(values.abs().to_numpy().max())
                for xi, emotion in zip(x, ems, strict=True):
                    row = sub[(sub.emotion == emotion) & (sub.metric == _metric_key(metric, emotion))].iloc[0]
                    colour = emotion_colour(emotion)
                    ax.bar(xi - width / 2, row.baseline, width, color="0.78", edgecolor="0.45", linewidth=0.6)
                    ax.plot(xi - width / 2, row.baseline, marker="s", markersize=5, color="0.6", markeredgecolor="black",
                            markeredgewidth=0.8, zorder=3)
                    ax.bar(xi + width / 2, row.intervened, width, color=colour, edgecolor=colour, linewidth=0.6)
                    # a marker too, so that an intervened mean of (about) 0 is still visible
                    ax.plot(xi + width / 2, row.intervened, marker="D", markersize=6, color=colour,
                            markeredgecolor="black", markeredgewidth=0.8, zorder=3)
                    lo, hi = row.baseline + row.ci_low, row.baseline + row.ci_high
                    centre = row.baseline + row.change
                    ax.errorbar(xi + width / 2, centre, yerr=[[centre - lo], [hi - centre]], fmt="none", ecolor="black",
                                elinewidth=1.3, capsize=4, zorder=4)
                    lows += [0.0, row.baseline, row.intervened, lo]
                    highs += [0.0, row.baseline, row.intervened, hi]
                    ax.text(xi, 1.0, f"Δ {_fmt(row.change, digits)}\n[{_fmt(row.ci_low, digits)}, {_fmt(row.ci_high, digits)}]\n{_fmt_p(row.p)}",
                            transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=ANNOT_PT)
                lo_all, hi_all = min(lows), max(highs)
                span = (hi_all - lo_all) or 1.0
                ax.set_ylim(min(lo_all, 0.0) - 0.05 * span, hi_all + 0.62 * span)  # room for markers at 0 and the notes
                ax.axhline(0, color="0.3", linewidth=0.8)
                labels = [f"{e}\n" + data.conditions.get((experiment, model, e), "").replace(", ", "\n") for e in ems]
                ax.set_xticks(x, labels)
                ax.set_ylabel(METRIC_LABELS[metric])
                ax.set_title(METRIC_TITLES[metric] + (f" · {model}" if len(models) > 1 else ""))
                ax.grid(axis="y", color="0.92")
                ax.set_axisbelow(True)
        handles = [
            Line2D([], [], color="0.6", marker="s", markeredgecolor="black", linestyle="none", markersize=5,
                   label="baseline mean (grey bar and ■; " + ("clean)" if experiment == "ablation" else "neutral prompt)")),
            Line2D([], [], color="0.35", marker="D", markeredgecolor="black", linestyle="none", markersize=6,
                   label=f"{verb} mean (bar and ◆; colour = emotion)"),
            Line2D([], [], color="black", marker="_", markersize=8, label="baseline + 95 % CI of the paired change"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=1 if len(models) == 1 else 3, frameon=False)
        what = "head ablation on the emotion prompts" if experiment == "ablation" else "head patching, emotion → neutral prompt"
        fig.suptitle(f"Baseline vs {verb} means, {what}\n{data.title_models(models)}")
        save_png(fig, path)
    return fig


def cumulative_figure(data: PlotData, path: Path) -> Figure:
    """Change of M and own-emotion keywords vs k (top-1..k heads jointly), mean ± 95 % CI band."""
    cum = data.cumulative
    models = [m for m in data.models if (cum.model == m).any()]
    with matplotlib.rc_context(STYLE):
        fig = new_figure(7.2, 6.6)  # <= 7.5 in: 9 pt text stays >= 8 pt at the PDF's text width
        axes = fig.subplots(len(EXPERIMENTS), len(CUMULATIVE_METRICS), squeeze=False)
        emotions_seen: list[str] = []
        for r, experiment in enumerate(EXPERIMENTS):
            sub = cum[cum.experiment == experiment]
            verb = "ablated" if experiment == "ablation" else "patched"
            for c, metric in enumerate(CUMULATIVE_METRICS):
                ax = axes[r, c]
                ax.axhline(0, color="0.3", linewidth=0.8)
                ax.set_title(f"{experiment}: {METRIC_TITLES[metric]}")
                ax.set_xlabel(f"k (top-1…k heads {verb} jointly)")
                ax.set_ylabel("Δ " + METRIC_LABELS[metric])
                ax.grid(color="0.92")
                ax.set_axisbelow(True)
                if sub.empty:
                    ax.text(0.5, 0.5, f"no cumulative curve\n(cumulative_k = 0 in the {experiment} files)",
                            transform=ax.transAxes, ha="center", va="center", fontsize=ANNOT_PT + 1, color="0.4")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    continue
                ems = sorted(set(sub.emotion), key=_emotion_sort_key)
                ks: set[int] = set()
                for mi, model in enumerate(models):
                    for ei, emotion in enumerate(ems):
                        line = sub[(sub.model == model) & (sub.emotion == emotion) & (sub.metric == _metric_key(metric, emotion))]
                        if line.empty:
                            continue
                        if emotion not in emotions_seen:
                            emotions_seen.append(emotion)
                        colour = emotion_colour(emotion)
                        k = line.k.to_numpy() + (ei - (len(ems) - 1) / 2) * 0.06  # small dodge
                        ks |= set(line.k)
                        ax.fill_between(k, line.ci_low, line.ci_high, color=colour, alpha=0.12, linewidth=0)
                        ax.errorbar(k, line["mean"], yerr=[line["mean"] - line.ci_low, line.ci_high - line["mean"]],
                                    color=colour, linestyle=MODEL_STYLES[mi % len(MODEL_STYLES)], marker="o",
                                    markersize=4, capsize=3, linewidth=1.6)
                if ks:
                    ax.set_xticks(sorted(ks))
        handles = [Line2D([], [], color=emotion_colour(e), marker="o", label=e) for e in sorted(emotions_seen, key=_emotion_sort_key)]
        handles.append(Patch(facecolor="0.6", alpha=0.35, label="95 % CI"))
        if len(models) > 1:
            handles += [Line2D([], [], color="0.2", linestyle=MODEL_STYLES[i % len(MODEL_STYLES)], label=m) for i, m in enumerate(models)]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)
        fig.suptitle(f"Cumulative top-k heads: change vs clean baseline — {data.title_models(models or None)}")
        save_png(fig, path)
    return fig


def _unit_offsets(scores: np.ndarray, width: float = 0.7) -> np.ndarray:
    """Horizontal offsets within a layer's column: the largest |score| in the middle, the others
    alternating right and left outwards, so a layer's units do not hide each other."""
    n = len(scores)
    order = np.argsort(-np.abs(scores), kind="stable")
    slots = np.array([(i + 1) // 2 * (1 if i % 2 else -1) for i in range(n)], dtype=float)  # 0, 1, -1, 2, -2, ...
    out = np.empty(n)
    out[order] = slots * (width / max(n - 1, 1))
    return out


def unit_summary_figure(data: PlotData, path: Path) -> Figure:
    """MLP units per layer: exact ΔM with 95 % CI where computed, else attribution; one row per
    emotion, one column per model; the top units labelled `L.N`, planted units starred."""
    units = data.units
    models = [m for m in data.models if m in data.unit_dims]
    emotions = sorted(set(units.emotion), key=_emotion_sort_key)
    with matplotlib.rc_context(STYLE):
        max_layers = max(data.unit_dims[m][0] for m in models)
        fig = new_figure(max(6.4, 0.6 * max_layers + 2.6) * len(models), 2.7 * len(emotions) + 1.3)
        axes = fig.subplots(len(emotions), len(models), squeeze=False)
        any_planted = False
        for c, model in enumerate(models):
            n_layers, d_mlp = data.unit_dims[model]
            for r, emotion in enumerate(emotions):
                ax = axes[r, c]
                colour = emotion_colour(emotion)
                ax.axhline(0, color="0.3", linewidth=0.8)
                ax.set_xticks(range(n_layers))
                ax.set_xlim(-0.6, n_layers - 0.4)
                ax.set_xlabel("layer")
                ax.set_ylabel("ΔM (nats)")
                ax.set_title(f"{emotion}" + (f" · {model}" if len(models) > 1 else "") + f" · {d_mlp} units per layer",
                             color=colour)
                ax.grid(axis="y", color="0.92")
                ax.set_axisbelow(True)
                sub = units[(units.model == model) & (units.emotion == emotion)]
                if sub.empty:
                    ax.text(0.5, 0.5, "not screened", transform=ax.transAxes, ha="center", va="center", color="0.4")
                    continue
                x = sub.layer.to_numpy(dtype=float)
                for layer in set(sub.layer):
                    in_layer = (sub.layer == layer).to_numpy()
                    x[in_layer] += _unit_offsets(sub.score.to_numpy()[in_layer])
                exact = (sub.kind == "exact").to_numpy()
                y = sub.score.to_numpy()
                ax.scatter(x[~exact], y[~exact], s=22, facecolors="none", edgecolors=colour, linewidths=1.0, zorder=2,
                           gid="attribution")
                if exact.any():
                    lo, hi = sub.ci_low.to_numpy()[exact], sub.ci_high.to_numpy()[exact]
                    has_ci = np.isfinite(lo) & np.isfinite(hi)
                    ye = y[exact]
                    ax.errorbar(x[exact][has_ci], ye[has_ci], yerr=[ye[has_ci] - lo[has_ci], hi[has_ci] - ye[has_ci]],
                                fmt="none", ecolor="black", elinewidth=1.0, capsize=2, zorder=3)
                    ax.scatter(x[exact], ye, s=30, marker="D", color=colour, edgecolors="black", linewidths=0.6, zorder=4,
                               gid="exact")
                scored = [{"i": i, "layer": int(r.layer), "neuron": int(r.neuron), "score": float(y[i])} for i, r in enumerate(sub.itertuples())]
                top = [s["i"] for s in rank(scored, "score", index="neuron")[:UNIT_LABELLED]]
                top = [i for i in top if abs(y[i]) >= UNIT_LABEL_MIN_FRACTION * abs(y[top[0]])]
                for j, i in enumerate(top):
                    row = sub.iloc[i]
                    # alternate sides: neighbouring top units of one layer would otherwise overprint
                    dx, ha = (5, "left") if j % 2 == 0 else (-5, "right")
                    ax.annotate(f"{row.layer}.{row.neuron}", (x[i], y[i]), xytext=(dx, 3), textcoords="offset points",
                                ha=ha, fontsize=ANNOT_PT, color="0.15", gid=f"label:{row.layer}:{row.neuron}")
                for layer, neuron in data.planted_units.get(model, {}).get(emotion, ()):
                    any_planted = True
                    hit = ((sub.layer == layer) & (sub.neuron == neuron)).to_numpy()
                    if hit.any():
                        ax.plot(x[hit], y[hit], linestyle="none", marker="*", markersize=14, markerfacecolor="none",
                                markeredgecolor="black", markeredgewidth=1.2, zorder=5, gid=f"planted:{layer}:{neuron}")
                    else:  # planted but not among the kept units: marked on the axis, not at a made-up value
                        ax.plot(layer, 0.0, linestyle="none", marker="*", markersize=12, color="black", clip_on=False,
                                transform=ax.get_xaxis_transform(), zorder=5, gid=f"planted:{layer}:{neuron}")
                        ax.annotate(f"planted {layer}.{neuron}\n(not kept)", (layer, 0.0), xycoords=ax.get_xaxis_transform(),
                                    xytext=(6, 4), textcoords="offset points", fontsize=ANNOT_PT, color="0.2")
        handles = [
            Line2D([], [], linestyle="none", marker="D", color="0.5", markeredgecolor="black", label="exact ΔM (patching), 95 % CI"),
            Line2D([], [], linestyle="none", marker="o", markerfacecolor="none", markeredgecolor="0.4",
                   label="attribution estimate (no exact)"),
        ]
        if any_planted:
            handles.append(Line2D([], [], linestyle="none", marker="*", markersize=10, markerfacecolor="none",
                                  markeredgecolor="black", label="planted unit"))
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        fig.suptitle(f"MLP units per layer (kept by the unit screening; labels layer.neuron)\n{data.title_models(models)}")
        save_png(fig, path)
    return fig


def render(data: PlotData, output_dir: Path, top_n: int) -> dict[str, Path]:
    """Write every figure and CSV into `output_dir`; returns name → path."""
    out = {k: Path(output_dir) / v for k, v in FILES.items()}
    write_csv(data.scores, out["scores_csv"])
    write_csv(data.effects, out["effects_csv"])
    write_csv(data.cumulative, out["cumulative_csv"])
    figures = [
        heatmap_figure(data, out["heatmap"]),
        top_heads_figure(data, top_n, out["top"]),
        comparison_figure(data, "ablation", out["ablation"]),
        comparison_figure(data, "patching", out["patching"]),
        cumulative_figure(data, out["cumulative"]),
    ]
    if len(data.units):
        unit_out = {k: Path(output_dir) / v for k, v in UNIT_FILES.items()}
        write_csv(data.units, unit_out["units_csv"])
        figures.append(unit_summary_figure(data, unit_out["units"]))
        out.update(unit_out)
    del figures  # Figure objects without pyplot are freed with their references
    return out
