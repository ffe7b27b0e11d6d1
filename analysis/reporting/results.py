"""The report's data layer: load `results/`, format effects, build its tables and its sentences.

`report/index.qmd` calls only this module: every number the report prints comes from here,
read from the stage outputs (paths from `analysis.base.contract`, documents checked against their
schema by `analysis.base.io.read_json`). Nothing is computed anew: headline numbers come from
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

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.base.contract import experiment_file, EXPERIMENT_SCHEMAS, EXPERIMENTS, HEAD_SCORES_SCHEMA, model_dir, MODEL_SOURCE_SCHEMA, PLANTED_SCHEMA, plots_dir, rank, ranking_score, score_half, screening_file, SUMMARY, SUMMARY_SCHEMA, UNIT_SCORES_SCHEMA, unit_screening_file
from analysis.base.errors import InputError
from analysis.base.io import read_json
from analysis.settings.params import load_params, Params, PARAMS_FILE


ROOT_ENV = "EMOTION_HEADS_ROOT"  # overrides where params.yaml and results/ are read from


KINDS = tuple(EXPERIMENTS)  # the experiments by name: ablation, denoising, noising (analysis.base.contract)


SCORE_KINDS = ("exact", "attribution", "delta_attn")


GPT2 = "gpt2"


EMBEDDED = "toy"


TINY = 1e-6  # |exact ΔM| (nats) at the scale of float rounding


# The stage PNGs (analysis.head_plots writes them into plots_dir(profile, model)).
FIGURES = {
    "heatmap": "head_reaction_heatmap.png",
    "top": "top_heads.png",
    "ablation": "ablation_sentiment_comparison.png",
    "denoising": "patching_keyword_comparison.png",
    "cumulative": "cumulative_topk.png",
}


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
    experiments: dict[str, dict[str, dict[str, Any]]]  # experiment name (KINDS) → emotion → its document
    planted: dict[str, Any] | None  # planted.json of the embedded model, else None
    plots: Path
    source: dict[str, Any] | None = None  # source.json: where another model's weights were found
    units: dict[str, Any] | None = None  # the unit screening's JSON, where the model has one

    def experiment(self, name: str, emotion: str) -> dict[str, Any]:
        return self.experiments[name][emotion]

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

    @property
    def finding_half(self) -> str:
        """The half the report's findings are measured on: the held-out confirmation half (the
        expressions no choice saw), or all with the split off (exploratory)."""
        return "confirmation" if self.params.split.enabled else "all"

    def half(self, model: str, emotion: str, score: str = "exact", *, units: bool = False) -> str:
        """The half a screening score of `model` (its head screening, or with `units` its unit
        screening) was measured on, as its summary keys name it (analysis.base.contract.score_half)."""
        m = self.models[model]
        doc = m.units if units else m.screening
        return score_half(doc, emotion, score) if doc is not None else "selection"

    def s_effect(self, model: str, emotion: str, kind: str, metric: str, half: str | None = None) -> dict[str, Any]:
        """One effect of summary.json as a dict (mean, ci_low, ci_high, p, n, no_effect over `half`,
        default the findings' half; baseline: the clean mean over all prompts)."""
        h = half or self.finding_half
        out = {f: self.s(model, emotion, kind, h, metric, f) for f in ("mean", "ci_low", "ci_high", "p", "n", "no_effect")}
        out["baseline"] = self.s(model, emotion, kind, "all", metric, "baseline")
        out["half"] = h
        return out

    def s_gap(self, model: str, emotion: str, kind: str, half: str | None = None) -> dict[str, Any]:
        """The fraction of the emotion–neutral gap (ratio, ci_low, ci_high; None = unbounded) and
        the random-head baseline's (random), over `half` (default the findings' half)."""
        h = half or self.finding_half
        out = {f: self.s(model, emotion, kind, h, "fraction_of_gap", f) for f in ("ratio", "ci_low", "ci_high")}
        out["random"] = self.s(model, emotion, kind, h, "random", "fraction_of_gap")
        return out

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
        screening = read_json(root / screening_file(profile, model), HEAD_SCORES_SCHEMA)
        exps: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        for emotion in params.emotions:
            for kind in KINDS:
                direction = EXPERIMENTS[kind][1]
                if direction is not None and direction not in params.patching.directions:
                    continue  # a direction the pipeline does not run
                exps[kind][emotion] = read_json(
                    root / experiment_file(kind, profile, model, emotion), EXPERIMENT_SCHEMAS[EXPERIMENTS[kind][0]]
                )
        planted_path = root / model_dir(model) / "planted.json"
        planted = read_json(planted_path, PLANTED_SCHEMA) if planted_path.is_file() else None
        source_path = root / model_dir(model) / "source.json"
        source = read_json(source_path, MODEL_SOURCE_SCHEMA) if source_path.is_file() else None
        units_path = root / unit_screening_file(profile, model)
        units = read_json(units_path, UNIT_SCORES_SCHEMA) if units_path.is_file() else None
        models[model] = ModelResults(
            model, screening, exps, planted, root / plots_dir(profile, model), source, units
        )
    return Results(root, params, profile, tuple(params.emotions), models, summary)


def ranking_key(doc: Mapping[str, Any]) -> str:
    """The score heads are ranked by: `exact` where computed, else `attribution` (as the pipeline)."""
    return ranking_score(doc["scores"])


def ranked(doc: Mapping[str, Any], emotion: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
    """Screening rows by decreasing |score| (ties: layer, head), as `top:N` and summary.json rank them."""
    key = key or ranking_key(doc)
    return rank((s for s in doc["scores"] if emotion is None or s["emotion"] == emotion), key)
