"""Every stage's output, in one place: where it lives and what it holds.

The pipeline (dvc.yaml) writes exactly these paths; stages that aggregate (plots, summarize)
and `top:N` head specs find their inputs through these functions, never by globbing.

| stage            | turns ...                          | into ...                                                      |
|------------------|------------------------------------|---------------------------------------------------------------|
| model@M          | a model name                       | results/models/M/: the toy's HF folder + planted.json, or     |
|                  |                                    | source.json (where a hub/local model's weights were found)    |
| prepare_prompts  | data/prompts/P/*.txt               | results/P/prompts.json: checked pairs, spans, file hashes     |
| screen@M         | pairs × model M                    | results/P/alignment/head_scores_M.json: per layer × head ×    |
|                  |                                    | emotion Δattn, attribution, exact ΔM with CI, p, q; the       |
|                  |                                    | neutral control and `specific` (SPECIFICITY_FIELDS)           |
| screen_units@M   | pairs × model M                    | results/P/alignment/unit_scores_M.json: attribution for every |
|                  |                                    | MLP unit; exact ΔM with CI, p, q for the top-k units          |
| ablate@M-E       | emotion-E prompts × heads of M     | results/P/patching/head_ablation/M_E.json (effects with CIs)  |
|                  |                                    | + M_E.parquet (per prompt: both continuations, ids, scores)   |
| patch@M-E-D      | D = denoising: E prompts → neutral | results/P/patching/head_patching/D/M_E.{json,parquet}         |
|                  | twins (sufficient?); D = noising:  |                                                               |
|                  | neutral twins → E prompts          |                                                               |
|                  | (necessary?)                       |                                                               |
| plots@M          | the above for model M              | results/P/plots/heads/M/*.png + CSV plot data                 |
| attention@M      | pairs × the top heads of M         | results/P/plots/attention/M/attention_pattern.{png,csv}:      |
|                  |                                    | last-position attention by prompt part, emotion vs neutral    |
|                  |                                    | (CSV columns: ATTENTION_COLUMNS)                              |
| compare_models   | every model's screening            | results/P/plots/models/: heatmaps.png (all models, one colour |
|                  |                                    | scale), top_heads.csv + .md (top heads per model × emotion)   |
| benchmark        | the profile's prompts, lexicons    | results/models/bench/: the benchmark with known, hard answers |
|                  |                                    | (hand-set GPT-2 + planted.json with each structure's signature)|
| validate         | bench × its null models            | results/P/validation.json: every metric scored against the    |
|                  |                                    | known answers (AUROC, signatures, null FDP)                   |
| sweep            | bench rebuilt at each background   | results/P/sweep.json: per strength (benchmark.sweep) the      |
|                  | strength                           | validation document without null screenings (issue 24)       |
| summarize        | all of the above                   | results/summary.json: flat metrics for `dvc metrics diff`     |

P is `params.yaml: profile`; M a name from `models`; E one of `emotions`; D one of
`patching.directions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from analysis.base.errors import InputError
from analysis.base.io import check_output_dir, check_output_path, existing_schema, read_json, schema_kind, write_json

RESULTS = Path("results")
SUMMARY = RESULTS / "summary.json"
PLANTED_FILE = "planted.json"
SOURCE_FILE = "source.json"
RANDOM_MODEL_FILE = "random_model.json"  # analysis.modelfacts.random_weights' record of what it drew

# --- schema strings: each output's `schema` field, defined here and nowhere else --------------
PROMPTS_SCHEMA = "emotion-heads/prompts/v1"
HEAD_SCORES_SCHEMA = "emotion-heads/head-scores/v1"
UNIT_SCORES_SCHEMA = "emotion-heads/unit-scores/v1"
UNIT_ATTRIBUTION_SCHEMA = "emotion-heads/unit-attribution/v1"  # the Parquet beside unit_scores_M.json
PLANTED_SCHEMA = "emotion-heads/planted/v1"
TOY_CONTINUATIONS_SCHEMA = "emotion-heads/toy-continuations/v1"
MODEL_SOURCE_SCHEMA = "emotion-heads/model-source/v1"
RANDOM_MODEL_SCHEMA = "emotion-heads/random-model/v1"
SUMMARY_SCHEMA = "emotion-heads/summary/v1"
VALIDATION_SCHEMA = "emotion-heads/validation/v1"
SWEEP_SCHEMA = "emotion-heads/sweep/v1"
NULLS_SCHEMA = "emotion-heads/nulls/v1"
# v2 (issue 15): interventions named by their question, fraction of the gap, random-head baseline,
# noise floor; KL and `changed` no longer carry a sign-flip p.
EXPERIMENT_SCHEMAS = {"ablation": "emotion-heads/ablation/v2", "patching": "emotion-heads/patching/v2"}
EXPERIMENT_TABLE_SCHEMAS = {"ablation": "emotion-heads/ablation-prompts/v2", "patching": "emotion-heads/patching-prompts/v2"}
EXPERIMENT_FOLDERS = {"ablation": "head_ablation", "patching": "head_patching"}  # the seed's folder names
# The experiments by name: (kind, patching direction). A patching run is one direction, written to
# a subfolder named by it (head_patching/denoising/, head_patching/noising/).
EXPERIMENTS = {"ablation": ("ablation", None), "denoising": ("patching", "denoising"), "noising": ("patching", "noising")}
# The attention stage's CSV has no schema field; its columns are its schema.
ATTENTION_PNG, ATTENTION_CSV = "attention_pattern.png", "attention_pattern.csv"
ATTENTION_COLUMNS = ("emotion", "layer", "head", "prompt", "part", "mean", "sd", "n")


def model_dir(model: str) -> Path:
    return RESULTS / "models" / model


def prompts_file(profile: str) -> Path:
    return RESULTS / profile / "prompts.json"


def screening_file(profile: str, model: str) -> Path:
    return RESULTS / profile / "alignment" / f"head_scores_{model}.json"


def unit_screening_file(profile: str, model: str) -> Path:
    return RESULTS / profile / "alignment" / f"unit_scores_{model}.json"


def experiment_folder(kind: str, profile: str, direction: str | None = None) -> Path:
    """kind: "ablation" or "patching" (the seed's head_ablation / head_patching folders); a
    patching run's folder is named by its direction (denoising or noising)."""
    folder = RESULTS / profile / "patching" / EXPERIMENT_FOLDERS[kind]
    if kind == "patching":
        if direction is None:
            raise ValueError("a patching output needs its direction (denoising or noising)")
        return folder / direction
    return folder


def experiment_file(name: str, profile: str, model: str, emotion: str) -> Path:
    """name: a key of EXPERIMENTS (ablation, denoising, noising)."""
    kind, direction = EXPERIMENTS[name]
    return experiment_folder(kind, profile, direction) / f"{model}_{emotion}.json"


def plots_dir(profile: str, model: str) -> Path:
    return RESULTS / profile / "plots" / "heads" / model


def attention_dir(profile: str, model: str) -> Path:
    """The attention stage's folder (not plots_dir: that folder is the plots stage's out)."""
    return RESULTS / profile / "plots" / "attention" / model


def validation_file(profile: str) -> Path:
    """The validate stage's scores of every metric on the benchmark with known answers (issue 16)."""
    return RESULTS / profile / "validation.json"


def nulls_file(profile: str) -> Path:
    """The nulls stage's null screenings (neutral-vs-neutral pairs on null models, issue 24), which
    the validate stage's null criterion reads."""
    return RESULTS / profile / "nulls.json"


def sweep_file(profile: str) -> Path:
    """The sweep stage's validations of the benchmark at each background strength (issue 24)."""
    return RESULTS / profile / "sweep.json"


def comparison_dir(profile: str) -> Path:
    return RESULTS / profile / "plots" / "models"


# --- an output replaces only its own kind (issue 22) -------------------------------------------
# Every output names the command that writes it, so a command pointed at another command's output
# refuses before any work, in one line that says what the file is and who writes it.

TOY_BUILDER = "python -m analysis.toy_model (stage model@toy)"
BENCH_BUILDER = "python -m analysis.bench_model (stage benchmark)"
# schema kind (analysis.base.io.schema_kind) -> (what the output is, the command that writes it)
WRITERS: dict[str, tuple[str, str]] = {
    schema_kind(PROMPTS_SCHEMA): ("the prepared prompts", "python -m analysis.prepare_prompts"),
    schema_kind(HEAD_SCORES_SCHEMA): ("a head screening", "python -m analysis.head_screening"),
    schema_kind(UNIT_SCORES_SCHEMA): ("a unit screening", "python -m analysis.unit_screening"),
    schema_kind(UNIT_ATTRIBUTION_SCHEMA): ("a unit screening's attribution table", "python -m analysis.unit_screening"),
    schema_kind(PLANTED_SCHEMA): ("an embedded model's planted answers", f"{TOY_BUILDER} or {BENCH_BUILDER}"),
    schema_kind(TOY_CONTINUATIONS_SCHEMA): ("the toy's continuation bank (data)", "no command (it is written by hand)"),
    schema_kind(MODEL_SOURCE_SCHEMA): ("a model's source record", "python -m analysis.models"),
    schema_kind(RANDOM_MODEL_SCHEMA): ("a random model's record", "python -m analysis.random_models"),
    schema_kind(SUMMARY_SCHEMA): ("the summary", "python -m analysis.summarize"),
    schema_kind(VALIDATION_SCHEMA): ("the benchmark's scores", "python -m analysis.validate"),
    schema_kind(SWEEP_SCHEMA): ("the benchmark's difficulty sweep", "python -m analysis.bench_sweep"),
    schema_kind(NULLS_SCHEMA): ("the benchmark's null screenings", "python -m analysis.bench_nulls"),
    schema_kind(EXPERIMENT_SCHEMAS["ablation"]): ("an ablation", "python -m analysis.head_ablation"),
    schema_kind(EXPERIMENT_SCHEMAS["patching"]): ("a patching run", "python -m analysis.head_patching"),
    schema_kind(EXPERIMENT_TABLE_SCHEMAS["ablation"]): ("an ablation's per-prompt table", "python -m analysis.head_ablation"),
    schema_kind(EXPERIMENT_TABLE_SCHEMAS["patching"]): ("a patching run's per-prompt table", "python -m analysis.head_patching"),
}
# The model folders, by their record: builder name -> (what the folder is, the command that writes it)
MODEL_BUILDERS: dict[str, tuple[str, str]] = {
    "toy": ("the toy model", TOY_BUILDER),
    "bench": ("the benchmark model", BENCH_BUILDER),
    "located": ("a located model's record", "python -m analysis.models"),
    "random": ("a random-weight model", "python -m analysis.random_models"),
}


def model_builder(folder: str | Path) -> str | None:
    """Which builder wrote the model folder `folder` (a key of MODEL_BUILDERS), "" for a folder with a
    model's config.json but no record of ours, None for no model folder. Read leniently: a damaged
    planted.json still names an embedded model (by its benchmark block, else the toy)."""
    f = Path(folder)
    if (f / PLANTED_FILE).is_file() and (f / "config.json").is_file():  # a planted.json alone is a copy, not a model
        try:
            import json

            return "bench" if "benchmark" in json.loads((f / PLANTED_FILE).read_text(encoding="utf-8")) else "toy"
        except (OSError, ValueError, TypeError):
            return "toy"
    if (f / SOURCE_FILE).is_file():
        return "located"
    if (f / RANDOM_MODEL_FILE).is_file():
        return "random"
    return "" if (f / "config.json").is_file() else None


def _describe_model(folder: Path, builder: str) -> str:
    if builder == "":
        return f"the folder of a model this project did not write ({folder}/config.json, no record of ours)"
    what, command = MODEL_BUILDERS[builder]
    return f"the folder of {what} ({folder}), which only {command} writes"


def _enclosing_model(path: Path) -> tuple[Path, str] | None:
    """The model folder `path` lies in (or is), with its builder; None when it lies in none."""
    for folder in (path, *path.parents):
        if folder.is_dir():
            builder = model_builder(folder)
            if builder is not None:
                return folder, builder
    return None


def _command(schema: str) -> str:
    return WRITERS[schema_kind(schema)][1]


def check_output(path: str | Path, schema: str, *, inputs: Iterable[str | Path] = ()) -> Path:
    """A command's check of the output it will write as `schema`, before any work; creates nothing.

    On top of analysis.base.io.check_output_path: the file lies in no model folder, and an existing file
    holds the same kind of output (its schema, any version). Refused in one line naming what the
    file is and which command writes it.
    """
    suffix = ".parquet" if schema in (UNIT_ATTRIBUTION_SCHEMA, *EXPERIMENT_TABLE_SCHEMAS.values()) else ".json"
    p = check_output_path(path, suffix=suffix, inputs=inputs)
    mine = _command(schema)
    inside = _enclosing_model(p.parent)
    if inside is not None:
        raise InputError(f"output {p} is in {_describe_model(*inside)}; {mine} writes no file there, choose another path")
    if p.exists():
        found = existing_schema(p)
        if found is None:
            raise InputError(f"output {p} exists and is not an output of this pipeline (no emotion-heads schema); "
                             f"{mine} replaces only its own outputs, choose another path")
        if schema_kind(found) != schema_kind(schema):
            what, command = WRITERS.get(schema_kind(found), (f"a {found} document", "another command"))
            raise InputError(f"output {p} is {what} ({found}), written by {command}; {mine} writes "
                             f"{WRITERS[schema_kind(schema)][0]} ({schema}) and replaces only that kind, choose another path")
    return p


def check_output_folder(path: str | Path, *, inputs: Iterable[str | Path] = ()) -> Path:
    """A command's check of a folder of figures and tables it will write (plots, attention, the
    comparison): analysis.base.io.check_output_dir, and the folder is no model folder nor inside one."""
    p = check_output_dir(path, inputs=inputs)
    inside = _enclosing_model(p)
    if inside is not None:
        raise InputError(f"output folder {p} is in {_describe_model(*inside)}; choose another folder")
    return p


def check_model_output(path: str | Path, builder: str, *, inputs: Iterable[str | Path] = ()) -> Path:
    """A model builder's check of its output folder, before any work; creates nothing. The folder is
    replaced only when it is absent or empty, or holds the model this builder writes."""
    p = check_output_dir(path, inputs=inputs)
    what, command = MODEL_BUILDERS[builder]
    inside = _enclosing_model(p.parent) if p.parent != p else None
    if inside is not None:
        raise InputError(f"output {p} is in {_describe_model(*inside)}; {command} writes a model folder of its own")
    if p.is_dir() and any(not f.name.startswith(".") for f in p.iterdir()):
        found = model_builder(p)
        if found is None:
            raise InputError(f"output {p} is a folder that holds no model ({', '.join(sorted(f.name for f in p.iterdir())[:4])}, ...); "
                             f"{command} replaces only {what} or an empty folder, choose another path")
        if found != builder:
            raise InputError(f"output {p} is {_describe_model(p, found)}; {command} replaces only {what} "
                             f"or an empty folder, choose another path")
    return p


# --- typed readers and writers: the schema is checked on every read and every write ------------


# Outputs a model computed record where and in what precision, in their `params` block
# (analysis.settings.hardware.Precision.record): float32 and bfloat16 results differ beyond 1e-5.
COMPUTED_ON = ("device", "dtype")
COMPUTED_SCHEMAS = {HEAD_SCORES_SCHEMA, UNIT_SCORES_SCHEMA, *EXPERIMENT_SCHEMAS.values()}


def _checked(doc: dict[str, Any], schema: str, path: str | Path) -> dict[str, Any]:
    if doc.get("schema") != schema:
        raise ValueError(f"document for {path} has schema {doc.get('schema')!r}, expected {schema!r}")
    if schema in COMPUTED_SCHEMAS and any(k not in doc.get("params", {}) for k in COMPUTED_ON):
        raise ValueError(f"document for {path} ({schema}) does not record its params' {' and '.join(COMPUTED_ON)}")
    return doc


def read_prompts(path: str | Path) -> dict[str, Any]:
    return read_json(path, PROMPTS_SCHEMA)


def write_prompts(path: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(path, _checked(doc, PROMPTS_SCHEMA, path))


def read_screening(path: str | Path) -> dict[str, Any]:
    return read_json(path, HEAD_SCORES_SCHEMA)


def write_screening(path: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(path, _checked(doc, HEAD_SCORES_SCHEMA, path))


def read_unit_screening(path: str | Path) -> dict[str, Any]:
    return read_json(path, UNIT_SCORES_SCHEMA)


def write_unit_screening(path: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(path, _checked(doc, UNIT_SCORES_SCHEMA, path))


def read_planted(folder: str | Path) -> dict[str, Any]:
    """A model folder's planted.json (only the embedded model has one)."""
    return read_json(Path(folder) / PLANTED_FILE, PLANTED_SCHEMA)


def write_planted(folder: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(Path(folder) / PLANTED_FILE, _checked(doc, PLANTED_SCHEMA, folder))


def read_source(folder: str | Path) -> dict[str, Any]:
    return read_json(Path(folder) / SOURCE_FILE, MODEL_SOURCE_SCHEMA)


def write_source(folder: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(Path(folder) / SOURCE_FILE, _checked(doc, MODEL_SOURCE_SCHEMA, folder))


def write_random_record(folder: str | Path, fields: Mapping[str, Any]) -> Path:
    """A random-weight model folder's record: what was drawn, and that analysis.modelfacts.random_weights wrote it."""
    return write_json(Path(folder) / RANDOM_MODEL_FILE, {"schema": RANDOM_MODEL_SCHEMA, **fields})


def read_experiment(kind: str, path: str | Path) -> dict[str, Any]:
    return read_json(path, EXPERIMENT_SCHEMAS[kind])


def write_experiment(kind: str, path: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(path, _checked(doc, EXPERIMENT_SCHEMAS[kind], path))


def check_attention_columns(columns: Iterable[str], path: str | Path) -> None:
    if tuple(columns) != ATTENTION_COLUMNS:
        raise ValueError(f"attention table for {path} has columns {list(columns)}, expected {list(ATTENTION_COLUMNS)}")


def read_attention(folder: str | Path) -> Any:
    """The attention stage's table (a pandas DataFrame), its columns checked."""
    import pandas as pd

    path = Path(folder) / ATTENTION_CSV
    table = pd.read_csv(path)
    check_attention_columns(table.columns, path)
    return table


def read_validation(path: str | Path) -> dict[str, Any]:
    return read_json(path, VALIDATION_SCHEMA)


def write_validation(path: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(path, _checked(doc, VALIDATION_SCHEMA, path))


def read_nulls(path: str | Path) -> dict[str, Any]:
    return read_json(path, NULLS_SCHEMA)


def write_nulls(path: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(path, _checked(doc, NULLS_SCHEMA, path))


def read_sweep(path: str | Path) -> dict[str, Any]:
    return read_json(path, SWEEP_SCHEMA)


def write_sweep(path: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(path, _checked(doc, SWEEP_SCHEMA, path))


def read_summary(path: str | Path = SUMMARY) -> dict[str, Any]:
    return read_json(path, SUMMARY_SCHEMA)


def write_summary(path: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(path, _checked(doc, SUMMARY_SCHEMA, path))


# --- the one ranking ---------------------------------------------------------------------------

# |score| is rounded to 1e-6 (nats) before ranking: components whose effects differ only by float
# noise tie, and ties go to the lower layer, then the lower head (or neuron). Every ranking of
# heads or units (top:N specs, the cumulative curve, top_heads.csv, the summary, the report's
# tables and figures) goes through `rank`, so they all show one order.
RANK_DECIMALS = 6

T = TypeVar("T")


def _field(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def rank_key(score: float, layer: int, index: int) -> tuple[float, int, int]:
    """The sort key of one component: larger |score| first, then lower layer, then lower index."""
    return (-round(abs(float(score)), RANK_DECIMALS), int(layer), int(index))


def rank(rows: Iterable[T], score: str | Callable[[T], float | None], *, index: str = "head") -> list[T]:
    """Rows (mappings or records with `layer` and `index`) best first; rows without a score are dropped.

    `score` names the field ranked by, or computes it from a row.
    """
    get = score if callable(score) else (lambda r: _field(r, score))
    kept = [r for r in rows if get(r) is not None and not math.isnan(float(get(r)))]
    return sorted(kept, key=lambda r: rank_key(get(r), _field(r, "layer"), _field(r, index)))


# --- the screening rows' specificity fields (issue 23) ----------------------------------------

# Every head and unit screening row carries these (None where the row has no exact score, `specific`
# False): `control` the neutral′ → twin ΔM; `specificity` (with interval, p, q) the per-pair
# difference (emotion → twin) − (neutral′ → twin); `specific` the rule of analysis.screening.common.
# is_specific; exact_lse_emotion − exact_lse_neutral = exact (ΔM's two terms). "Emotion head" (the
# summary, the report, top:N / mlp-top:K) means `specific`.
SPECIFICITY_FIELDS: dict[str, Any] = {
    "control": None, "specificity": None, "specificity_ci_low": None, "specificity_ci_high": None, "specificity_p": None,
    "specificity_q": None, "specific": False, "exact_lse_emotion": None, "exact_lse_neutral": None,
}


# --- the one significance rule ------------------------------------------------------------------

Q_LEVEL = 0.05  # components called significant: Benjamini–Hochberg q below this


def significant(row: Mapping[str, Any]) -> bool:
    """A screening row's exact effect is significant: q < Q_LEVEL and above the noise floor.

    An effect at or below the identity control's floor (`no_effect`) is float noise however
    small its p (a constant 1e-7 nats in every cluster reaches the p floor): never significant,
    never starred. Every count and mark of significance (summary, report, figures) uses this.
    """
    q = row.get("exact_q")
    return q is not None and not math.isnan(float(q)) and q < Q_LEVEL and not row.get("no_effect")


def ranking_score(rows: Iterable[Mapping[str, Any]]) -> str:
    """The score components are ranked by: exact patching where it was computed, else attribution."""
    return "exact" if any(s.get("exact") is not None for s in rows) else "attribution"


def exact_half(doc: Mapping[str, Any], emotion: str) -> str:
    """The half a screening's exact fields of `emotion` were measured on: selection, confirmation or all."""
    return str(doc.get("pairs", {}).get(emotion, {}).get("exact_half", doc.get("split", {}).get("half", "all")))


def screened_half(doc: Mapping[str, Any]) -> str:
    """The half a screening ranked on (its attribution and Δattn): selection, or all with the split off."""
    return str(doc.get("split", {}).get("half", "all"))


def score_half(doc: Mapping[str, Any], emotion: str, score: str) -> str:
    """The half one score of a screening row was measured on (`exact` and its fields: `exact_half`)."""
    return exact_half(doc, emotion) if score == "exact" else screened_half(doc)


def selection_score(doc: Mapping[str, Any], emotion: str, rows: Iterable[Mapping[str, Any]]) -> str:
    """The score `top:N` / `mlp-top:K` choose components by, for `emotion` of a screening file.

    Where the exact effects were measured on the confirmation half (a top-k tested there,
    analysis.screening.common.exact_pairs), choosing by them would choose on the half the
    experiments confirm on: the choice is by attribution (selection half) then; else `ranking_score`.
    """
    if doc.get("pairs", {}).get(emotion, {}).get("exact_half") == "confirmation":
        return "attribution"
    return ranking_score(rows)
