"""Intervention plans: how each ablation method (and patching) turns sites into edits for a batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from analysis.core.loading import LoadedModel
from analysis.core.sites import Site
from analysis.interventions.edits import constant_edits, Edit, mean_over_positions, patch_edits, site_values, zero_edits


class Plan(Protocol):
    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]: ...


def unit_shape(model: LoadedModel, site: Site) -> tuple[int, ...]:
    """Shape of one component's activation at one position: [d_head] for a head, [] for a neuron."""
    return (model.spec.d_head,) if site.kind == "head" else ()


@dataclass(frozen=True)
class ZeroPlan:
    model: LoadedModel
    n: int

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        return [zero_edits(sites, self.n, {s: unit_shape(self.model, s) for s in sites})]


@dataclass(frozen=True)
class MeanPlan:
    """Hold each site at its mean over every real token of every reference (neutral) prompt."""

    reference: dict[str, Tensor]  # captured hook activations of the reference prompts
    reference_mask: Int[Tensor, "ref pos"]
    n: int

    def value(self, site: Site) -> Float[Tensor, " *unit"]:
        x = site_values(self.reference, site)  # [ref, pos, *unit]
        w = self.reference_mask.to(x.dtype).view(*self.reference_mask.shape, *([1] * (x.dim() - 2)))
        return (x * w).sum((0, 1)) / w.sum()

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        values = {}
        for s in sites:
            v = self.value(s)  # one value for every prompt and every position
            values[s] = v.expand(self.n, *v.shape).clone()
        return [constant_edits(sites, values)]


@dataclass(frozen=True)
class ResamplePlan:
    """Per draw, hold each prompt's site at the mean z of another, randomly drawn reference prompt."""

    reference: dict[str, Tensor]
    reference_mask: Int[Tensor, "ref pos"]
    sources: Int[np.ndarray, "draw n"]  # reference row used for each target row, per draw

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        per_row = {s: mean_over_positions(site_values(self.reference, s), self.reference_mask) for s in sites}
        return [
            constant_edits(sites, {s: per_row[s][torch.as_tensor(src)] for s in sites}) for src in self.sources
        ]


def resample_sources(n_target: int, n_reference: int, draws: int, seed: int) -> Int[np.ndarray, "draw n"]:
    """For each draw and target row i, a reference row j != i, uniform and seeded.

    Row i of the target and row i of the reference are one template pair, so j != i keeps a
    prompt from being ablated with its own twin's activations.
    """
    rng = np.random.default_rng(seed)
    j = rng.integers(0, n_reference - 1, size=(draws, n_target))
    rows = np.arange(n_target)[None, :]
    return np.where((j >= rows) & (rows < n_reference), j + 1, j)


@dataclass(frozen=True)
class PatchPlan:
    """Copy each site's activation from the source prompt into the target at mapped prompt positions."""

    source: dict[str, Tensor]
    index: Int[Tensor, "n pos"]
    mask: Bool[Tensor, "n pos"]

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        return [patch_edits(sites, self.source, self.index, self.mask)]


# --- the ablation methods: one entry each -------------------------------------------------------


@dataclass(frozen=True)
class AblationMethod:
    """How one `--method` builds its plan from the emotion prompts and (if it needs them) the neutral ones."""

    # (model, reference activations or None, reference mask or None, n targets, draws, seed)
    #   -> (plan, resample sources or None)
    build: Callable[..., tuple[Plan, Int[np.ndarray, "draw n"] | None]]
    needs_reference: bool  # capture the neutral prompts' activations first
    min_references: int = 0  # fewer neutral prompts than this is an InputError
    why: str = ""  # the reason for min_references, said in that error
    uses_draws: bool = False  # averages `resample_draws` random draws (recorded in the JSON's params)


def _zero(model: LoadedModel, reference: dict[str, Tensor] | None, mask: Tensor | None, n: int, draws: int, seed: int) -> tuple[Plan, None]:
    return ZeroPlan(model, n), None


def _mean(model: LoadedModel, reference: dict[str, Tensor] | None, mask: Tensor | None, n: int, draws: int, seed: int) -> tuple[Plan, None]:
    return MeanPlan(reference, mask, n), None


def _resample(
    model: LoadedModel, reference: dict[str, Tensor] | None, mask: Tensor | None, n: int, draws: int, seed: int
) -> tuple[Plan, Int[np.ndarray, "draw n"]]:
    sources = resample_sources(n, n, draws, seed)
    return ResamplePlan(reference, mask, sources), sources


ABLATIONS: dict[str, AblationMethod] = {
    "zero": AblationMethod(_zero, needs_reference=False),
    "mean": AblationMethod(_mean, needs_reference=True),
    "resample": AblationMethod(_resample, needs_reference=True, min_references=2, why="each prompt draws a different one", uses_draws=True),
}
ABLATION_METHODS = tuple(ABLATIONS)
