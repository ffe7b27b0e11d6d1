"""Typed, checked parameters: `params.yaml` is read once per stage into frozen models.

A wrong type or an out-of-range value fails in the first stage that reads it, with one line
naming the key and the allowed values (docs/DESIGN.md §7), rather than deep inside a computation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from analysis.base.vocabulary import EMOTIONS, POSITION_MODES
from analysis.base.errors import InputError

PARAMS_FILE = Path("params.yaml")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToyParams(_Frozen):
    steps: int = Field(200, ge=1)


class BenchmarkParams(_Frozen):
    # the validate stage screens with screening.* (ScreeningConfig.from_params); the null count's
    # minimum is the criterion's (analysis.bench.scoring.MIN_NULLS), checked there
    n_nulls: int = Field(200, ge=0)
    n_random_nulls: int = Field(20, ge=0)
    workers: int = Field(2, ge=1)
    # the sweep stage's background strengths (BenchConfig.background)
    sweep: tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], ...] = Field((1.0, 2.0, 3.0, 6.0, 10.0), min_length=1)


class ScreeningParams(_Frozen):
    positions: Literal[POSITION_MODES] = "all"
    exact_top_k: int = Field(0, ge=0)
    n_resamples: int = Field(10000, ge=100)


class UnitScreeningParams(_Frozen):
    positions: Literal[POSITION_MODES] = "all"
    exact_top_k: int = Field(20, ge=0)
    n_resamples: int = Field(10000, ge=100)


class AblationParams(_Frozen):
    head_spec: str = "top:1"
    method: Literal["zero", "mean", "resample"] = "zero"
    resample_draws: int = Field(3, ge=1)
    cumulative_k: int = Field(3, ge=0)
    max_tokens: int = Field(15, ge=1)


class PatchingParams(_Frozen):
    head_spec: str = "top:1"
    positions: Literal[POSITION_MODES] = "all"
    directions: tuple[Literal["denoising", "noising"], ...] = ("denoising", "noising")
    cumulative_k: int = Field(3, ge=0)
    max_tokens: int = Field(15, ge=1)


class RandomBaselineParams(_Frozen):
    draws: int = Field(5, ge=1)


class ScoringParams(_Frozen):
    n_resamples: int = Field(10000, ge=100)


# Issue 14: held-out confirmation and the copy control (analysis.core.prompts.split_expressions,
# analysis.screening.common.copy_flag).
class SplitParams(_Frozen):
    enabled: bool = True
    selection_share: float = Field(0.5, gt=0.0, lt=1.0)


class CopyControlParams(_Frozen):
    max_share: float = Field(0.5, gt=0.0, le=1.0)
    skip_flagged: bool = True


# Issue 23: the neutral control (analysis.screening.common.is_specific).
class SpecificityParams(_Frozen):
    min_share: float = Field(0.05, ge=0.0, lt=1.0, allow_inf_nan=False)
    select: bool = True  # top:k / mlp-top:k and the cumulative curve choose specific components only


class NoiseFloorParams(_Frozen):
    atol: float = Field(1.0e-5, ge=0.0, allow_inf_nan=False)


class AlignmentParams(_Frozen):
    max_unaligned_share: float = Field(0.2, ge=0.0, lt=1.0)  # < 1: a profile with no aligned pair is always refused


class PrimaryParams(_Frozen):
    """The one primary endpoint (issue 23): every other number the pipeline reports is secondary.

    The fraction of the emotion–neutral gap that the experiment's main arm (its head spec: the
    top-k heads chosen on the selection half) restores, measured on the confirmation half, one
    test per model × emotion, Holm-corrected across them (family-wise error at `alpha`).
    """

    experiment: Literal["denoising", "noising", "ablation"] = "denoising"
    metric: Literal["fraction_of_gap"] = "fraction_of_gap"
    half: Literal["confirmation"] = "confirmation"
    correction: Literal["holm"] = "holm"
    alpha: float = Field(0.05, gt=0.0, lt=1.0)


class PlotParams(_Frozen):
    top_n: int = Field(20, ge=1)


class Params(_Frozen):
    profile: str = "baseline"
    models: tuple[str, ...] = ("toy",)
    emotions: tuple[str, ...] = EMOTIONS
    seed: int = Field(0, ge=0)
    # Where and in what precision the model stages compute (analysis.settings.hardware checks them up front).
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    memory_budget_gb: float | Literal["auto"] = "auto"
    toy: ToyParams = ToyParams()
    benchmark: BenchmarkParams = BenchmarkParams()
    screening: ScreeningParams = ScreeningParams()
    unit_screening: UnitScreeningParams = UnitScreeningParams()
    ablation: AblationParams = AblationParams()
    patching: PatchingParams = PatchingParams()
    random_baseline: RandomBaselineParams = RandomBaselineParams()
    scoring: ScoringParams = ScoringParams()
    plots: PlotParams = PlotParams()
    split: SplitParams = SplitParams()
    copy_control: CopyControlParams = CopyControlParams()
    specificity: SpecificityParams = SpecificityParams()
    noise_floor: NoiseFloorParams = NoiseFloorParams()
    alignment: AlignmentParams = AlignmentParams()
    primary: PrimaryParams = PrimaryParams()

    @model_validator(mode="after")
    def _primary_is_run(self) -> Params:
        # The primary endpoint must be an experiment the pipeline runs, on a half it measures.
        e = self.primary.experiment
        if e != "ablation" and e not in self.patching.directions:
            raise ValueError(f"primary.experiment {e} is not among patching.directions ({', '.join(self.patching.directions)})")
        # With split.enabled false there is no confirmation half: the summary says the primary is not measured.
        return self

    @field_validator("profile")
    @classmethod
    def _profile_name(cls, v: str) -> str:
        if not v.strip() or Path(v).name != v:
            raise ValueError("must name a prompt profile (a folder under data/prompts), not be empty or a path")
        return v

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        from analysis.settings.hardware import parse_device

        try:
            parse_device(v)
        except InputError as err:  # the same words as on the command line, after the key
            raise ValueError(str(err).removeprefix("device: ")) from None
        return v

    @field_validator("memory_budget_gb")
    @classmethod
    def _budget(cls, v: float | str) -> float | str:
        if v != "auto" and not 0 < float(v) < float("inf"):
            raise ValueError("must be a finite number of GB > 0, or auto")
        return v

    @field_validator("emotions")
    @classmethod
    def _known_emotions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [e for e in v if e not in EMOTIONS]
        if bad or not v:
            raise ValueError(f"unknown emotion {bad[0]!r}" if bad else "empty list")
        return v

    @field_validator("models")
    @classmethod
    def _model_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(not m.strip() for m in v):
            raise ValueError("needs at least one non-empty model name")
        for m in v:
            # Stage names and result paths embed the name (results/models/<name>/...), so it
            # must be a relative path that stays inside the project: a hub id or a folder here.
            if not _MODEL_NAME.fullmatch(m) or ".." in m.split("/"):
                raise ValueError(
                    f"model {m!r} cannot name result paths: use `toy`, a Hugging Face id (org/name) or a "
                    f"relative folder inside the project (letters, digits, . _ - and /; no leading /, no ..)"
                )
        if len(set(v)) != len(v):
            raise ValueError("lists a model twice")
        return v


def _allowed(field_path: tuple[str | int, ...]) -> str:
    """The allowed values of a key, read off the models' own annotations."""
    model: type[BaseModel] = Params
    info = None
    for part in field_path:
        if not isinstance(part, str) or part not in model.model_fields:
            break
        info = model.model_fields[part]
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    if info is None:
        return ""
    if field_path and field_path[-1] == "emotions" or "emotions" in field_path:
        return f"; allowed: {', '.join(EMOTIONS)}"
    ann = info.annotation
    args = getattr(ann, "__args__", None)
    if args and all(isinstance(a, str) for a in args):
        return f"; allowed: {', '.join(args)}"
    bounds = [m for m in info.metadata if hasattr(m, "ge")]
    if bounds:
        kind = "a finite number" if info.annotation is float else "an integer"
        return f"; allowed: {kind} >= {bounds[0].ge}"
    return ""


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and check params.yaml; any problem is one InputError line naming the key."""
    if not path.is_file():
        raise InputError(f"parameter file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"parameter file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        loc = tuple(x for x in e["loc"] if not isinstance(x, int) or x >= 0)
        key = ".".join(str(x) for x in loc if isinstance(x, str)) or "(top level)"
        raise InputError(
            f"{path}: key {key}: {e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r}){_allowed(loc)}"
        ) from None
    _check_context(params, path)
    return params


def _model_folder(name: str) -> Path:
    """Where a model's config.json is here: its results/models/<name> folder (the built toy),
    else the name as a local folder."""
    from analysis.base.contract import model_dir

    built = model_dir(name)
    return built if (built / "config.json").is_file() else Path(name)


def model_context(name: str) -> int | None:
    """The context length of a model whose config is here (the built toy, a local folder), else None.

    Read from config.json alone (no weights, no tokenizer), so the params checks stay cheap.
    """
    import json

    folder = _model_folder(name)
    cfg = folder / "config.json"
    if not cfg.is_file():
        return None
    try:
        doc = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError):
        return None  # the stage that loads the model reports it in one line
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(doc, dict) and isinstance(doc.get(key), int) and doc[key] > 0:
            return int(doc[key])
    return None


# BOS and at least one prompt token: the shortest prompt any stage feeds the model.
MIN_PROMPT_TOKENS = 2


def longest_prompt(name: str, params: Params) -> tuple[int, str]:
    """(tokens, what) of the longest prepared prompt of the profile under the model's own
    tokenizer.json (BOS included), read without transformers; where the profile is not prepared or
    the model has no tokenizer.json here, the shortest possible prompt (a lower bound)."""
    import json

    folder = _model_folder(name)
    from analysis.base.contract import prompts_file

    prepared = prompts_file(params.profile)
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        doc = json.loads(prepared.read_text(encoding="utf-8"))
        texts = [r[k] for e in params.emotions for r in doc["pairs"][e] for k in ("emotion_text", "neutral_text")]
        n = max(len(tok.encode(t, add_special_tokens=False).ids) for t in texts) + 1
        return n, f"the longest prompt of {prepared} (with BOS) is {n} tokens"
    except Exception:  # noqa: BLE001 - a lower bound then; the stage checks the exact length before work
        return MIN_PROMPT_TOKENS, f"a prompt is at least {MIN_PROMPT_TOKENS} tokens"


def _check_context(params: Params, path: Path) -> None:
    """max_tokens of the experiments against the context of every model whose config is here,
    so `dvc exp run -S ablation.max_tokens=60` fails in its first stage; each stage checks again
    on the prompts it runs, before any work."""
    for model in params.models:
        limit = model_context(model)
        if limit is None:
            continue
        prompt, what = longest_prompt(model, params)
        for section in ("ablation", "patching"):
            mt = getattr(params, section).max_tokens
            if prompt + mt > limit:
                raise InputError(
                    f"{path}: key {section}.max_tokens: model {model!r} has a context of {limit} tokens; "
                    f"{what}, + max_tokens {mt} = {prompt + mt} > {limit} (got {mt}); allowed: at most {limit - prompt}"
                )
