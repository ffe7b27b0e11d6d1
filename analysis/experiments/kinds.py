"""The experiment kinds, one entry each: what differs between ablation and patching, as data.

A kind names its command, its mode flag and modes, its params.yaml section, its own flags,
which prompts it intervenes on, the question it asks, how it checks the pairs and how it builds
its plan. Patching runs in one of two directions (analysis.interventions.plans.PATCH_DIRECTIONS:
denoising asks sufficiency, noising necessity), ablation with one of the ABLATIONS methods. Everything
else (prepare, execute, render) is shared and reads the kind's entry, so adding a kind is one
`ExperimentKind` in `KINDS` (plus its command module and tests).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.loading import LoadedModel
from analysis.core.prompts import PromptPairs, TokenBatch, keep_aligned, subset
from analysis.base.vocabulary import POSITION_MODES
from analysis.base.errors import InputError
from analysis.interventions.edits import capture, position_map
from analysis.interventions.plans import (
    ABLATION_METHODS, AblationInputs, ABLATIONS, PATCH_DIRECTION_NAMES, PATCH_DIRECTIONS, PatchPlan, Plan, template_groups,
)
from analysis.settings.params import Params

PATCHED_POSITIONS = "prompt only (generated positions have no source)"
ABLATED_POSITIONS = "every position, prompt and generated, at every generation step"

# (model, config, pairs, hook names, emotion batch, neutral batch)
#   -> (plan, target batch, resample sources or None, notes)
PlanBuilder = Callable[
    [LoadedModel, Any, PromptPairs, list[str], TokenBatch, TokenBatch], tuple[Plan, TokenBatch, np.ndarray | None, list[str]]
]


@dataclass(frozen=True)
class ExperimentKind:
    name: str
    command: str  # the module its CLI runs as (`python -m ...`)
    label: str  # the intervened arm's column in the console table
    mode_flag: str  # the flag (and JSON key) naming the mode
    modes: tuple[str, ...]
    section: Callable[[Params], Any]  # its params.yaml section
    add_flags: Callable[[argparse.ArgumentParser, Params], None]  # its own flags
    emotion_file_flag: str  # argparse dest of its emotion-prompts flag
    positions_key: str  # the JSON key saying which positions the edit covers
    positions: str
    targets_neutral: Callable[[Any], bool]  # denoising edits the neutral twins; noising and ablation the emotion prompts
    question: Callable[[Any], str]  # what the run asks (sufficiency or necessity, and how)
    check: Callable[[Any], None]  # kind-specific config checks (InputError)
    check_pairs: Callable[[Any, PromptPairs, LoadedModel, list[str]], PromptPairs]
    plan: PlanBuilder
    extra_params: Callable[[Any], dict[str, Any]]  # kind-specific entries of the JSON's params
    footer: str | None = None  # a line under the console table


def _ablation_flags(p: argparse.ArgumentParser, params: Params) -> None:
    section = params.ablation
    p.add_argument("--method", choices=ABLATION_METHODS, default=section.method, help=f"default {section.method}")
    p.add_argument("--prompts-file", type=Path, default=None, help="emotion prompts (default: the profile's)")
    p.add_argument("--neutral-prompts", type=Path, default=None, help="neutral reference prompts for mean/resample (default: the profile's)")
    p.add_argument(
        "--resample-draws", type=int, default=section.resample_draws,
        help=f"draws averaged for resample ablation (default {section.resample_draws})",
    )


def _patching_flags(p: argparse.ArgumentParser, params: Params) -> None:
    section = params.patching
    p.add_argument("--positions", choices=POSITION_MODES, default=section.positions, help=f"default {section.positions}")
    p.add_argument(
        "--direction", choices=PATCH_DIRECTION_NAMES, default=section.directions[0],
        help="denoising: emotion → neutral twin (is the component sufficient?); noising: neutral twin → emotion "
        f"prompt (is it necessary?) (default {section.directions[0]})",
    )
    p.add_argument("--neutral-prompts", type=Path, default=None, help="neutral prompts (default: the profile's)")
    p.add_argument("--emotion-prompts", type=Path, default=None, help="emotion prompts (default: the profile's)")


def _check_ablation(c: Any) -> None:
    if c.resample_draws < 1:
        raise InputError(f"--resample-draws must be at least 1 (got {c.resample_draws})")


def _no_check(c: Any) -> None:
    return None


def _ablation_pairs(c: Any, pairs: PromptPairs, model: LoadedModel, notes: list[str]) -> PromptPairs:
    method = ABLATIONS[c.mode]
    if len(pairs) < method.min_references:
        raise InputError(f"{c.mode} ablation needs at least {method.min_references} neutral prompts ({method.why})")
    return pairs


def _patching_pairs(c: Any, pairs: PromptPairs, model: LoadedModel, notes: list[str]) -> PromptPairs:
    if c.mode != "all":
        return pairs
    # Position-by-position patching needs twins of equal token length. As in the screening,
    # the others are dropped and counted (a real tokenizer splits "thank you so much" and
    # its neutral twin differently), up to the share the profile may lose (keep_aligned).
    keep = keep_aligned(model.tokenizer, pairs, max_unaligned_share=c.max_unaligned_share, model=c.model)
    if len(keep) < len(pairs):
        notes.append(
            f"positions all: {len(pairs) - len(keep)} of {len(pairs)} pairs differ in token length or span "
            f"position under the tokenizer of {c.model} and were left out (n_prompts counts the rest)"
        )
        pairs = subset(pairs, keep)
    return pairs


def _ablation_plan(
    model: LoadedModel, c: Any, pairs: PromptPairs, names: list[str], emotion: TokenBatch, neutral: TokenBatch
) -> tuple[Plan, TokenBatch, np.ndarray | None, list[str]]:
    method = ABLATIONS[c.mode]
    reference = capture(model, neutral, names) if method.needs_reference else None
    groups = template_groups([x.after for x in pairs.neutral_prompts])
    plan, sources, notes = method.build(AblationInputs(model, reference, neutral, emotion, groups, c.resample_draws, c.seed))
    return plan, emotion, sources, notes


def _patching_plan(
    model: LoadedModel, c: Any, pairs: PromptPairs, names: list[str], emotion: TokenBatch, neutral: TokenBatch
) -> tuple[Plan, TokenBatch, None, list[str]]:
    source, target = (emotion, neutral) if PATCH_DIRECTIONS[c.direction].targets_neutral else (neutral, emotion)
    index, mask = position_map(c.mode, source, target)
    return PatchPlan(capture(model, source, names), index, mask), target, None, []


KINDS: dict[str, ExperimentKind] = {
    "ablation": ExperimentKind(
        name="ablation", command="analysis.head_ablation", label="Ablation", mode_flag="method", modes=ABLATION_METHODS,
        section=lambda p: p.ablation, add_flags=_ablation_flags, emotion_file_flag="prompts_file",
        positions_key="ablated_positions", positions=ABLATED_POSITIONS, targets_neutral=lambda c: False,
        question=lambda c: ABLATIONS[c.mode].question, check=_check_ablation, check_pairs=_ablation_pairs, plan=_ablation_plan,
        extra_params=lambda c: {"resample_draws": c.resample_draws} if ABLATIONS[c.mode].uses_draws else {},
    ),
    "patching": ExperimentKind(
        name="patching", command="analysis.head_patching", label="Patched", mode_flag="positions", modes=POSITION_MODES,
        section=lambda p: p.patching, add_flags=_patching_flags, emotion_file_flag="emotion_prompts",
        positions_key="patched_positions", positions=PATCHED_POSITIONS,
        targets_neutral=lambda c: PATCH_DIRECTIONS[c.direction].targets_neutral,
        question=lambda c: PATCH_DIRECTIONS[c.direction].question, check=_no_check, check_pairs=_patching_pairs,
        plan=_patching_plan, extra_params=lambda c: {"direction": c.direction, **({"max_unaligned_share": c.max_unaligned_share} if c.mode == "all" else {})}, footer=f"Patched positions: {PATCHED_POSITIONS}.",
    ),
}
