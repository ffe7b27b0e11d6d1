"""Typed, validated parameters: `params.yaml` is read once per stage into frozen models.

A wrong type or an out-of-range value fails in the first stage that reads it, with one line
naming the key and the allowed values (DESIGN §7), rather than deep inside a computation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analysis.core.vocabulary import EMOTIONS, POSITION_MODES
from analysis.errors import InputError

PARAMS_FILE = Path("params.yaml")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToyParams(_Frozen):
    steps: int = Field(200, ge=1)


class ScreeningParams(_Frozen):
    positions: Literal[POSITION_MODES] = "all"
    exact_top_k: int = Field(0, ge=0)
    n_resamples: int = Field(5000, ge=100)


class UnitScreeningParams(_Frozen):
    positions: Literal[POSITION_MODES] = "all"
    exact_top_k: int = Field(20, ge=0)
    n_resamples: int = Field(5000, ge=100)


class AblationParams(_Frozen):
    head_spec: str = "top:1"
    method: Literal["zero", "mean", "resample"] = "zero"
    resample_draws: int = Field(3, ge=1)
    cumulative_k: int = Field(3, ge=0)
    max_tokens: int = Field(15, ge=1)


class PatchingParams(_Frozen):
    head_spec: str = "top:1"
    positions: Literal[POSITION_MODES] = "all"
    cumulative_k: int = Field(3, ge=0)
    max_tokens: int = Field(15, ge=1)


class ScoringParams(_Frozen):
    n_resamples: int = Field(5000, ge=100)


# Issue 14: held-out confirmation and the copy control (analysis.core.prompts.split_expressions,
# analysis.screening.common.copy_flag).
class SplitParams(_Frozen):
    enabled: bool = True
    selection_share: float = Field(0.5, gt=0.0, lt=1.0)


class CopyControlParams(_Frozen):
    max_share: float = Field(0.5, gt=0.0, le=1.0)
    skip_flagged: bool = True


class PlotParams(_Frozen):
    top_n: int = Field(20, ge=1)


class Params(_Frozen):
    profile: str = "baseline"
    models: tuple[str, ...] = ("toy",)
    emotions: tuple[str, ...] = EMOTIONS
    seed: int = Field(0, ge=0)
    toy: ToyParams = ToyParams()
    screening: ScreeningParams = ScreeningParams()
    unit_screening: UnitScreeningParams = UnitScreeningParams()
    ablation: AblationParams = AblationParams()
    patching: PatchingParams = PatchingParams()
    scoring: ScoringParams = ScoringParams()
    plots: PlotParams = PlotParams()
    split: SplitParams = SplitParams()
    copy_control: CopyControlParams = CopyControlParams()

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
        return f"; allowed: an integer >= {bounds[0].ge}"
    return ""


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; any problem is one InputError line naming the key."""
    if not path.is_file():
        raise InputError(f"parameter file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"parameter file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        loc = tuple(x for x in e["loc"] if not isinstance(x, int) or x >= 0)
        key = ".".join(str(x) for x in loc if isinstance(x, str)) or "(top level)"
        raise InputError(
            f"{path}: key {key}: {e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r}){_allowed(loc)}"
        ) from None
