"""Stage `plots`: the seed's four head figures, improved, plus the cumulative top-k curve.

    python -m analysis.head_plots --profile baseline \
        --head-scores results/baseline/alignment/head_scores_toy.json [more.json ...] \
        --ablation-file results/baseline/patching/head_ablation/toy_gratitude.json [...] \
        --patching-file results/baseline/patching/head_patching/toy_gratitude.json [...] \
        --output-dir results/baseline/plots/heads --top-n 20 [--emotion E] \
        [--planted results/models/toy/planted.json]

Each file flag takes several files: one screening per model, one ablation / patching summary per
model × emotion. Written to --output-dir (each file atomically, nothing at all on bad input):

- `head_reaction_heatmap.png`: layer × head, one panel per emotion (a row per model), diverging
  colour map centred on 0. Score = `exact` (patching effect on M, nats) where it was computed,
  else the `attribution` estimate of it; the colour-bar label says which. Planted heads of the
  toy model are boxed when --planted is given.
- `top_heads.png`: the top-N heads by |score| over all emotions, 95 % CI whiskers where exact.
- `ablation_sentiment_comparison.png`, `patching_keyword_comparison.png`: per emotion, baseline
  vs intervened mean of sentiment, the emotion's own keyword count and M; the error bar is
  baseline + the 95 % CI of the paired change, annotated Δ [CI].
- `cumulative_topk.png`: change of M and of own-emotion keywords when the top-1..k screened heads
  are intervened on jointly (mean, 95 % CI band), one line per emotion.
- `head_scores.csv`, `effects.csv`, `cumulative.csv`: the numbers behind them (for `dvc plots`).
- `unit_summary.png` + `unit_summary.csv`, when a unit screening is given (--unit-scores; with
  --from-params, the model's unit_scores file if it exists, else a printed note): per emotion, the
  MLP units of each layer that the unit screening kept (its top units per layer by |attribution|
  and every unit patched exactly), x = layer, y = exact ΔM with its 95 % CI where computed (filled),
  else the attribution estimate (open); the top units are labelled `L.N`, the toy model's planted
  units (planted.json `units_by_emotion`) starred.

Deterministic: Agg canvas, fixed rcParams (svg.hashsalt), no timestamp or software metadata,
so the same inputs give byte-identical PNGs on the same machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from analysis.errors import InputError, cli
from analysis.io import atomic_path, read_json

SCORES_SCHEMA = "emotion-heads/head-scores/v1"
UNIT_SCORES_SCHEMA = "emotion-heads/unit-scores/v1"
EXPERIMENT_SCHEMAS = {"ablation": "emotion-heads/ablation/v1", "patching": "emotion-heads/patching/v1"}
PLANTED_SCHEMA = "emotion-heads/planted/v1"
EXPERIMENTS = ("ablation", "patching")
# Canonical order (analysis.prompts.EMOTIONS; not imported: that module pulls in torch).
EMOTION_ORDER = ("gratitude", "anger", "apology")
EMOTION_COLOURS = {"gratitude": "#009E73", "anger": "#D55E00", "apology": "#0072B2"}  # Okabe–Ito
EXTRA_COLOURS = ("#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MODEL_STYLES = ("-", "--", ":", "-.")

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

STYLE: dict[str, Any] = {
    "svg.hashsalt": "emotion-heads",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.interpolation": "nearest",
}
DPI = 150
ANNOT_PT = 9  # smallest text in any figure

# Panel labels with units; `kw_own` is the emotion's own lexicon count.
METRIC_LABELS = {
    "sentiment": "VADER sentiment\n(compound, −1…1)",
    "kw_own": "own-emotion keywords\n(count per continuation)",
    "emotion_score": "emotion score M (nats)",
}
METRIC_TITLES = {"sentiment": "Sentiment", "kw_own": "Own-emotion keywords", "emotion_score": "Emotion score M"}
COMPARISON_METRICS = {
    "ablation": ("sentiment", "kw_own", "emotion_score"),
    "patching": ("kw_own", "emotion_score", "sentiment"),
}
CUMULATIVE_METRICS = ("emotion_score", "kw_own")
SCORE_COLUMNS = ["model", "layer", "head", "emotion", "score", "kind", "ci_low", "ci_high"]
EFFECT_COLUMNS = ["model", "experiment", "emotion", "metric", "baseline", "intervened", "change", "ci_low", "ci_high", "p"]
CUMULATIVE_COLUMNS = ["model", "experiment", "emotion", "k", "metric", "mean", "ci_low", "ci_high"]
UNIT_COLUMNS = [
    "model", "emotion", "layer", "neuron", "score", "kind", "attribution", "attribution_rank", "exact", "ci_low",
    "ci_high", "q", "planted",
]


# --------------------------------------------------------------------------------------------
# Configuration and loaded data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlotConfig:
    """What one run of the stage draws, from where, to where."""

    profile: str
    head_scores: tuple[Path, ...]
    ablation_files: tuple[Path, ...]
    patching_files: tuple[Path, ...]
    output_dir: Path
    top_n: int = 20
    emotion: str | None = None
    planted: Path | None = None
    unit_scores: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()  # printed by the CLI (e.g. why unit_summary.png is not drawn)

    def validate(self) -> None:
        if self.top_n < 1:
            raise InputError(f"--top-n must be at least 1 (got {self.top_n})")
        for flag, files in (
            ("--head-scores", self.head_scores),
            ("--ablation-file", self.ablation_files),
            ("--patching-file", self.patching_files),
        ):
            if not files:
                raise InputError(f"{flag} needs at least one file")


@dataclass(frozen=True)
class PlotData:
    """Everything the figures draw, as the tables written beside them.

    `scores`, `effects`, `cumulative` have the columns of the CSVs. `dims[model]` is
    (n_layers, n_heads); `emotions[model]` the screened emotions in order; `planted[model]`
    maps emotion → planted (layer, head) cells; `conditions[(experiment, model, emotion)]`
    names the intervention ("zero, heads 3:1").
    """

    profile: str
    models: tuple[str, ...]
    dims: Mapping[str, tuple[int, int]]
    emotions: Mapping[str, tuple[str, ...]]
    scores: pd.DataFrame
    effects: pd.DataFrame
    cumulative: pd.DataFrame
    planted: Mapping[str, Mapping[str, tuple[tuple[int, int], ...]]]
    conditions: Mapping[tuple[str, str, str], str]
    # MLP units (empty without a unit screening): rows of unit_summary.csv, (n_layers, d_mlp) and
    # emotions per model, and the planted (layer, neuron) units per model and emotion.
    units: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=UNIT_COLUMNS))
    unit_dims: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    unit_emotions: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    planted_units: Mapping[str, Mapping[str, tuple[tuple[int, int], ...]]] = dataclasses.field(default_factory=dict)

    def title_models(self, models: Sequence[str] | None = None) -> str:
        ms = list(models) if models is not None else list(self.models)
        return f"model{'s' if len(ms) > 1 else ''} {', '.join(ms)} · profile {self.profile}"


# --------------------------------------------------------------------------------------------
# Loading and validation: everything is checked before anything is written
# --------------------------------------------------------------------------------------------


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _need(doc: Mapping[str, Any], key: str, path: Path, kind: type | tuple[type, ...], where: str = "") -> Any:
    if not isinstance(doc, Mapping) or key not in doc:
        raise InputError(f"input file {path} lacks key {where}{key!r}")
    value = doc[key]
    if kind is float:
        if not _num(value):
            raise InputError(f"input file {path}: {where}{key} must be a finite number (got {value!r})")
    elif not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputError(f"input file {path}: {where}{key} must be of type {name} (got {type(value).__name__})")
    return value


def _check_profile(doc: Mapping[str, Any], path: Path, profile: str) -> None:
    found = _need(doc, "profile", path, str)
    if found != profile:
        raise InputError(f"input file {path} is for profile {found!r}, not --profile {profile!r}")


def _emotion_sort_key(emotion: str) -> tuple[int, str]:
    return (EMOTION_ORDER.index(emotion) if emotion in EMOTION_ORDER else len(EMOTION_ORDER), emotion)


def _scored_components(
    path: Path, schema: str, profile: str, kind: str
) -> tuple[str, tuple[int, int], tuple[str, ...], list[tuple[Mapping[str, Any], str, int, int, str]]]:
    """A screening file of heads (kind "head") or MLP units (kind "unit"), checked entry by entry.

    Returns (model, (n_layers, heads or neurons per layer), emotions, [(row, where, layer, index,
    emotion)]); each component is inside the model and scored once per emotion.
    """
    index_key, width_key, noun = ("head", "n_heads", "heads") if kind == "head" else ("neuron", "d_mlp", "neurons")
    doc = _read(path, schema)
    _check_profile(doc, path, profile)
    model = _need(doc, "model", path, str)
    n_layers = _need(doc, "n_layers", path, int)
    width = _need(doc, width_key, path, int)
    if n_layers < 1 or width < 1:
        raise InputError(f"input file {path}: n_layers and {width_key} must be positive (got {n_layers}, {width})")
    emotions = _need(doc, "emotions", path, list)
    if not emotions or not all(isinstance(e, str) for e in emotions):
        raise InputError(f"input file {path}: emotions must be a non-empty list of names")
    entries = []
    seen: set[tuple[int, int, str]] = set()
    for i, s in enumerate(_need(doc, "scores", path, list)):
        where = f"scores[{i}]."
        layer = _need(s, "layer", path, int, where)
        index = _need(s, index_key, path, int, where)
        emotion = _need(s, "emotion", path, str, where)
        name = f"head {layer}:{index}" if kind == "head" else f"unit mlp:{layer}:{index}"
        if not (0 <= layer < n_layers and 0 <= index < width):
            raise InputError(f"input file {path}: {where[:-1]} {name} is outside {n_layers} layers × {width} {noun}")
        if emotion not in emotions:
            raise InputError(f"input file {path}: {where[:-1]} has emotion {emotion!r}, not one of {', '.join(emotions)}")
        if (layer, index, emotion) in seen:
            raise InputError(f"input file {path}: {name} ({emotion}) is scored twice")
        seen.add((layer, index, emotion))
        entries.append((s, where, layer, index, emotion))
    return model, (n_layers, width), tuple(emotions), entries


def load_screening(path: Path, profile: str) -> tuple[str, tuple[int, int], tuple[str, ...], list[dict[str, Any]]]:
    """One screening file → (model, (n_layers, n_heads), emotions, rows of the scores table)."""
    model, shape, emotions, entries = _scored_components(path, SCORES_SCHEMA, profile, "head")
    rows: list[dict[str, Any]] = []
    for s, where, layer, head, emotion in entries:
        if s.get("exact") is not None:
            score, kind = _need(s, "exact", path, float, where), "exact"
            lo, hi = s.get("exact_ci_low"), s.get("exact_ci_high")
            if lo is not None or hi is not None:
                lo, hi = _need(s, "exact_ci_low", path, float, where), _need(s, "exact_ci_high", path, float, where)
        else:
            score, kind, lo, hi = _need(s, "attribution", path, float, where), "attribution", None, None
        rows.append(
            {"model": model, "layer": layer, "head": head, "emotion": emotion, "score": float(score), "kind": kind,
             "ci_low": np.nan if lo is None else float(lo), "ci_high": np.nan if hi is None else float(hi)}
        )
    if not rows:
        raise InputError(f"input file {path} has no scores")
    return model, shape, emotions, rows


def _optional(s: Mapping[str, Any], key: str, path: Path, where: str) -> float:
    return np.nan if s.get(key) is None else float(_need(s, key, path, float, where))


def load_unit_screening(path: Path, profile: str) -> tuple[str, tuple[int, int], tuple[str, ...], list[dict[str, Any]]]:
    """One unit screening file → (model, (n_layers, d_mlp), emotions, rows of unit_summary.csv)."""
    model, shape, emotions, entries = _scored_components(path, UNIT_SCORES_SCHEMA, profile, "unit")
    rows: list[dict[str, Any]] = []
    for s, where, layer, neuron, emotion in entries:
        attribution = float(_need(s, "attribution", path, float, where))
        exact = _optional(s, "exact", path, where)
        rank = s.get("attribution_rank")
        rows.append({
            "model": model, "emotion": emotion, "layer": layer, "neuron": neuron,
            "score": attribution if np.isnan(exact) else exact, "kind": "attribution" if np.isnan(exact) else "exact",
            "attribution": attribution, "attribution_rank": rank if isinstance(rank, int) else -1, "exact": exact,
            "ci_low": _optional(s, "exact_ci_low", path, where), "ci_high": _optional(s, "exact_ci_high", path, where),
            "q": _optional(s, "exact_q", path, where), "planted": False,
        })
    if not rows:
        raise InputError(f"input file {path} has no unit scores")
    return model, shape, emotions, rows


def load_planted_units(path: Path) -> dict[str, tuple[tuple[int, int], ...]]:
    """planted.json → emotion → planted MLP (layer, neuron) units (`units_by_emotion`; none if absent)."""
    doc = _read(path, PLANTED_SCHEMA)
    by_emotion = doc.get("units_by_emotion")
    if by_emotion is None:
        return {}
    if not isinstance(by_emotion, dict):
        raise InputError(f"input file {path}: units_by_emotion must map emotions to lists of [layer, neuron] pairs")
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for emotion, units in by_emotion.items():
        cells = []
        for u in units if isinstance(units, list) else [None]:
            if not (isinstance(u, list) and len(u) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in u)):
                raise InputError(f"input file {path}: units_by_emotion.{emotion} must be a list of [layer, neuron] pairs")
            cells.append((u[0], u[1]))
        out[emotion] = tuple(cells)
    return out


def _effect(e: Any, path: Path, where: str) -> tuple[float, float, float, float]:
    return tuple(_need(e, k, path, float, where) for k in ("mean", "ci_low", "ci_high", "p"))  # type: ignore[return-value]


def load_experiment(
    path: Path, experiment: str, profile: str
) -> tuple[str, str, str, list[dict[str, Any]], list[dict[str, Any]]]:
    """One ablation / patching summary → (model, emotion, condition, effect rows, cumulative rows)."""
    doc = _read(path, EXPERIMENT_SCHEMAS[experiment])
    _check_profile(doc, path, profile)
    model = _need(doc, "model", path, str)
    emotion = _need(doc, "emotion", path, str)
    baseline = _need(doc, "baseline", path, dict)
    intervened = _need(doc, "intervened", path, dict)
    effects = _need(doc, "effects", path, dict)
    for metric in ("sentiment", "emotion_score", f"kw_{emotion}"):
        for part, d in (("baseline", baseline), ("intervened", intervened), ("effects", effects)):
            if metric not in d:
                raise InputError(f"input file {path} lacks {part}[{metric!r}] (needed for the {emotion} plots)")
    rows = []
    for metric in effects:
        where = f"effects.{metric}."
        mean, lo, hi, p = _effect(effects[metric], path, where)
        rows.append(
            {"model": model, "experiment": experiment, "emotion": emotion, "metric": metric,
             "baseline": float(_need(baseline, metric, path, float, "baseline.")),
             "intervened": float(_need(intervened, metric, path, float, "intervened.")),
             "change": mean, "ci_low": lo, "ci_high": hi, "p": p}
        )
    cum_rows = []
    for i, step in enumerate(doc.get("cumulative") or []):
        k = _need(step, "k", path, int, f"cumulative[{i}].")
        step_effects = _need(step, "effects", path, dict, f"cumulative[{i}].")
        for metric, e in step_effects.items():
            mean, lo, hi, _ = _effect(e, path, f"cumulative[{i}].effects.{metric}.")
            cum_rows.append(
                {"model": model, "experiment": experiment, "emotion": emotion, "k": k, "metric": metric,
                 "mean": mean, "ci_low": lo, "ci_high": hi}
            )
    heads = doc.get("heads") or []
    units = doc.get("units") or []
    noun = "units" if units and not heads else "heads"
    if noun == "units":  # MLP units, labelled as the experiment's `sites` (mlp:L:N)
        spec = ",".join(f"mlp:{u[0]}:{u[1]}" for u in units if isinstance(u, list) and len(u) == 2)
    else:
        spec = ",".join(f"{h[0]}:{h[1]}" for h in heads if isinstance(h, list) and len(h) == 2)
    spec = spec or str(doc.get("head_spec", "?"))
    mode = doc.get("method" if experiment == "ablation" else "positions")
    if experiment == "ablation":
        condition = f"{mode} ablation, {noun} {spec}" if mode else f"{noun} {spec}"
    else:
        condition = f"positions {mode}, {noun} {spec}" if mode else f"{noun} {spec}"
    return model, emotion, condition, rows, cum_rows


def _read(path: Path, schema: str) -> dict[str, Any]:
    return read_json(path, schema)


def load_planted(path: Path) -> dict[str, tuple[tuple[int, int], ...]]:
    """planted.json of the toy model → emotion → planted (layer, head) cells."""
    doc = _read(path, PLANTED_SCHEMA)
    by_emotion = _need(doc, "by_emotion", path, dict)
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for emotion, heads in by_emotion.items():
        cells = []
        for h in heads if isinstance(heads, list) else [None]:
            if not (isinstance(h, list) and len(h) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in h)):
                raise InputError(f"input file {path}: by_emotion.{emotion} must be a list of [layer, head] pairs")
            cells.append((h[0], h[1]))
        out[emotion] = tuple(cells)
    return out


def _is_toy(model: str, planted: Path) -> bool:
    if model == "toy":
        return True
    try:
        return Path(model).resolve() == planted.resolve().parent
    except OSError:
        return False


def load(config: PlotConfig) -> PlotData:
    """Read and check every input (InputError on the first problem); nothing is written."""
    config.validate()
    models: list[str] = []
    dims: dict[str, tuple[int, int]] = {}
    emotions: dict[str, tuple[str, ...]] = {}
    score_rows: list[dict[str, Any]] = []
    for path in config.head_scores:
        model, dim, ems, rows = load_screening(path, config.profile)
        if model in dims:
            raise InputError(f"--head-scores: two files are for model {model!r} ({path} is the second)")
        models.append(model)
        dims[model], emotions[model] = dim, ems
        score_rows += rows

    effect_rows: list[dict[str, Any]] = []
    cum_rows: list[dict[str, Any]] = []
    conditions: dict[tuple[str, str, str], str] = {}
    for experiment, files in (("ablation", config.ablation_files), ("patching", config.patching_files)):
        for path in files:
            model, emotion, condition, rows, crows = load_experiment(path, experiment, config.profile)
            key = (experiment, model, emotion)
            if key in conditions:
                raise InputError(f"--{experiment}-file: two files are for model {model!r}, emotion {emotion!r} ({path} is the second)")
            conditions[key] = condition
            effect_rows += rows
            cum_rows += crows
            if model not in models:
                models.append(model)

    unit_dims: dict[str, tuple[int, int]] = {}
    unit_emotions: dict[str, tuple[str, ...]] = {}
    unit_rows: list[dict[str, Any]] = []
    for path in config.unit_scores:
        model, dim, ems, rows = load_unit_screening(path, config.profile)
        if model in unit_dims:
            raise InputError(f"--unit-scores: two files are for model {model!r} ({path} is the second)")
        unit_dims[model], unit_emotions[model] = dim, ems
        unit_rows += rows
        if model not in models:
            models.append(model)

    scores = pd.DataFrame(score_rows, columns=SCORE_COLUMNS)
    effects = pd.DataFrame(effect_rows, columns=EFFECT_COLUMNS)
    units = pd.DataFrame(unit_rows, columns=UNIT_COLUMNS)
    cumulative = pd.DataFrame(cum_rows, columns=CUMULATIVE_COLUMNS)
    if config.emotion is not None:
        e = config.emotion
        for name, table, flag in (
            ("head scores", scores, "--head-scores"),
            ("ablation results", effects[effects.experiment == "ablation"], "--ablation-file"),
            ("patching results", effects[effects.experiment == "patching"], "--patching-file"),
        ):
            if not (table.emotion == e).any():
                have = ", ".join(sorted(set(table.emotion), key=_emotion_sort_key))
                raise InputError(f"--emotion {e} matches no {name} (the {flag} files have: {have})")
        if len(units) and not (units.emotion == e).any():
            have = ", ".join(sorted(set(units.emotion), key=_emotion_sort_key))
            raise InputError(f"--emotion {e} matches no unit scores (the --unit-scores files have: {have})")
        scores = scores[scores.emotion == e]
        units = units[units.emotion == e]
        unit_emotions = {m: tuple(x for x in ems if x == e) for m, ems in unit_emotions.items()}
        effects = effects[effects.emotion == e]
        cumulative = cumulative[cumulative.emotion == e]
        emotions = {m: tuple(x for x in ems if x == e) for m, ems in emotions.items()}
        conditions = {k: v for k, v in conditions.items() if k[2] == e}

    planted: dict[str, dict[str, tuple[tuple[int, int], ...]]] = {}
    if config.planted is not None:
        cells = load_planted(config.planted)
        targets = [m for m in dims if _is_toy(m, config.planted)]
        if not targets:
            raise InputError(
                f"--planted {config.planted} marks the toy model's heads, but no --head-scores file is for model "
                f"'toy' (models: {', '.join(dims)})"
            )
        for m in targets:
            n_layers, n_heads = dims[m]
            for emotion, hs in cells.items():
                for layer, head in hs:
                    if not (0 <= layer < n_layers and 0 <= head < n_heads):
                        raise InputError(
                            f"--planted {config.planted}: head {layer}:{head} ({emotion}) is outside model {m}'s "
                            f"{n_layers} layers × {n_heads} heads"
                        )
            planted[m] = {e: hs for e, hs in cells.items() if e in emotions[m]}

    planted_units: dict[str, dict[str, tuple[tuple[int, int], ...]]] = {}
    if config.planted is not None and unit_dims:
        cells = load_planted_units(config.planted)
        for m in (m for m in unit_dims if _is_toy(m, config.planted)):
            n_layers, d_mlp = unit_dims[m]
            for emotion, us in cells.items():
                for layer, neuron in us:
                    if not (0 <= layer < n_layers and 0 <= neuron < d_mlp):
                        raise InputError(
                            f"--planted {config.planted}: unit mlp:{layer}:{neuron} ({emotion}) is outside model {m}'s "
                            f"{n_layers} layers × {d_mlp} neurons"
                        )
            planted_units[m] = {e: us for e, us in cells.items() if e in unit_emotions[m]}
        if len(units):
            units = units.assign(planted=[
                (r.layer, r.neuron) in planted_units.get(r.model, {}).get(r.emotion, ()) for r in units.itertuples()
            ])

    return PlotData(
        profile=config.profile,
        models=tuple(models),
        dims=dims,
        emotions=emotions,
        scores=scores.reset_index(drop=True),
        effects=effects.reset_index(drop=True),
        cumulative=cumulative.sort_values(["model", "experiment", "emotion", "metric", "k"], kind="stable").reset_index(drop=True),
        planted=planted,
        conditions=conditions,
        units=units.sort_values(["model", "emotion", "layer", "neuron"], key=_unit_sort, kind="stable").reset_index(drop=True),
        unit_dims=unit_dims,
        unit_emotions=unit_emotions,
        planted_units=planted_units,
    )


def _unit_sort(col: pd.Series) -> pd.Series:
    return col.map(_emotion_sort_key) if col.name == "emotion" else col


# --------------------------------------------------------------------------------------------
# Figures: one pure function each (data + output path → the Figure, also saved)
# --------------------------------------------------------------------------------------------


def emotion_colour(emotion: str) -> str:
    if emotion in EMOTION_COLOURS:
        return EMOTION_COLOURS[emotion]
    return EXTRA_COLOURS[sum(map(ord, emotion)) % len(EXTRA_COLOURS)]


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Save atomically, without the metadata that would make re-runs differ."""
    with matplotlib.rc_context(STYLE), atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return Path(path)


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
        fig = _new_figure(max(4.8, panel_w * n_cols + 1.6), panel_h * len(models) + 0.9)
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
    """The top-N rows by |score| (ties: model, emotion order, layer, head)."""
    order = scores.assign(_abs=-scores.score.abs(), _e=[_emotion_sort_key(e) for e in scores.emotion])
    order = order.sort_values(["_abs", "model", "_e", "layer", "head"], kind="stable")
    return order.drop(columns=["_abs", "_e"]).head(top_n).reset_index(drop=True)


def top_heads_figure(data: PlotData, top_n: int, path: Path) -> Figure:
    """Horizontal bars of the top-N heads by |score|, colour = emotion, CI whiskers where exact."""
    top = top_rows(data.scores, top_n)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(7.5, 1.6 + 0.32 * len(top))
        ax = fig.subplots()
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
        fig.suptitle(f"Top {n} heads by |ΔM| — {data.title_models(sorted(set(top.model), key=data.models.index))}")
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
        fig = _new_figure(len(models) * max(6.5, 1.45 * n_em + 0.9), 3.1 * len(metrics) + 1.2)
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
        fig = _new_figure(7.2, 6.6)  # <= 7.5 in: 9 pt text stays >= 8 pt at the PDF's text width
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
        fig = _new_figure(max(6.4, 0.6 * max_layers + 2.6) * len(models), 2.7 * len(emotions) + 1.3)
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
                top = np.argsort(-np.abs(y), kind="stable")[:UNIT_LABELLED]
                top = top[np.abs(y[top]) >= UNIT_LABEL_MIN_FRACTION * np.abs(y[top[0]])]
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


# --------------------------------------------------------------------------------------------
# CSVs and the stage
# --------------------------------------------------------------------------------------------


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format="%.10g")
    return Path(path)


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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other bad input
        raise InputError(f"{message} (see python -m analysis.head_plots --help)")


def parse_args(argv: Sequence[str] | None) -> PlotConfig:
    ap = _Parser(prog="python -m analysis.head_plots", description=__doc__.split("\n\n")[0],
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="prompt profile of the inputs (checked against each file)")
    ap.add_argument("--head-scores", nargs="+", type=Path, help="screening JSON(s), one per model")
    ap.add_argument("--ablation-file", nargs="+", type=Path, help="ablation JSON(s), one per model × emotion")
    ap.add_argument("--patching-file", nargs="+", type=Path, help="patching JSON(s), one per model × emotion")
    ap.add_argument("--output-dir", required=True, type=Path)
    ap.add_argument("--top-n", type=int, default=None, help="heads in top_heads.png (default: params.yaml plots.top_n, 20)")
    ap.add_argument("--emotion", default=None, help="draw only this emotion")
    ap.add_argument("--planted", type=Path, default=None, help="planted.json of the toy model: box its planted heads (and star its planted units)")
    ap.add_argument("--unit-scores", nargs="+", type=Path, default=None,
                    help="unit screening JSON(s), one per model: also draw unit_summary.png")
    ap.add_argument(
        "--from-params", action="store_true",
        help="the pipeline's mode: take profile, emotions and the input files of --model from params.yaml "
        "and the layout of analysis.outputs",
    )
    ap.add_argument("--model", default=None, help="with --from-params: the model whose outputs to draw")
    a = ap.parse_args(argv)
    if a.from_params:
        from analysis.outputs import experiment_file, model_dir, screening_file, unit_screening_file
        from analysis.params import load_params

        if not a.model:
            raise InputError("--from-params needs --model")
        p = load_params()
        profile = a.profile or p.profile
        planted = model_dir(a.model) / "planted.json"
        units = unit_screening_file(profile, a.model)
        notes = () if units.is_file() else (
            f"no unit screening file {units}: unit_summary.png is not drawn "
            f"(run `python -m analysis.unit_screening --model {a.model}` to get it)",
        )
        return PlotConfig(
            profile=profile,
            head_scores=(screening_file(profile, a.model),),
            ablation_files=tuple(experiment_file("ablation", profile, a.model, e) for e in p.emotions),
            patching_files=tuple(experiment_file("patching", profile, a.model, e) for e in p.emotions),
            output_dir=a.output_dir,
            top_n=a.top_n if a.top_n is not None else p.plots.top_n,
            emotion=a.emotion,
            planted=planted if planted.is_file() else None,
            unit_scores=(units,) if units.is_file() else (),
            notes=notes,
        )
    missing = [f for f in ("profile", "head_scores", "ablation_file", "patching_file") if not getattr(a, f)]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise InputError(f"missing {flags} (or use --from-params --model M)")
    return PlotConfig(
        profile=a.profile,
        head_scores=tuple(a.head_scores),
        ablation_files=tuple(a.ablation_file),
        patching_files=tuple(a.patching_file),
        output_dir=a.output_dir,
        top_n=20 if a.top_n is None else a.top_n,
        emotion=a.emotion,
        planted=a.planted,
        unit_scores=tuple(a.unit_scores or ()),
    )


@cli
def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    matplotlib.use("Agg")
    config = parse_args(argv)
    for note in config.notes:
        print(f"note: {note}", file=sys.stderr)
    data = load(config)
    if config.output_dir.exists() and not config.output_dir.is_dir():
        raise InputError(f"--output-dir {config.output_dir} exists and is not a folder")
    out = render(data, config.output_dir, config.top_n)
    for p in out.values():
        print(f"wrote {p}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
