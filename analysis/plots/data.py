"""The plots' inputs, read and checked: screening, unit screening, experiments, planted heads."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
import numpy as np
import pandas as pd

from analysis.base.contract import EXPERIMENT_SCHEMAS, HEAD_SCORES_SCHEMA, PLANTED_SCHEMA, UNIT_SCORES_SCHEMA
from analysis.base.vocabulary import EMOTIONS
from analysis.base.errors import InputError
from analysis.base.io import read_json


EXPERIMENTS = ("ablation", "patching")


# no_effect: an exact effect at or below the identity control's noise floor (float noise; never drawn as a bar)
SCORE_COLUMNS = ["model", "layer", "head", "emotion", "score", "kind", "ci_low", "ci_high", "no_effect"]


EFFECT_COLUMNS = ["model", "experiment", "emotion", "metric", "baseline", "intervened", "change", "ci_low", "ci_high", "p"]


CUMULATIVE_COLUMNS = ["model", "experiment", "emotion", "k", "metric", "mean", "ci_low", "ci_high"]


UNIT_COLUMNS = [
    "model", "emotion", "layer", "neuron", "score", "kind", "attribution", "attribution_rank", "exact", "ci_low",
    "ci_high", "q", "planted",
]


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

    def check(self) -> None:
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
    return (EMOTIONS.index(emotion) if emotion in EMOTIONS else len(EMOTIONS), emotion)


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
    model, shape, emotions, entries = _scored_components(path, HEAD_SCORES_SCHEMA, profile, "head")
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
             "ci_low": np.nan if lo is None else float(lo), "ci_high": np.nan if hi is None else float(hi),
             "no_effect": bool(kind == "exact" and s.get("no_effect"))}
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
    config.check()
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
