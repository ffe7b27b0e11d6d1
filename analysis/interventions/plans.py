"""Intervention plans: how each ablation method, each patching direction and the identity control turn
sites into edits for a batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from analysis.core.loading import LoadedModel
from analysis.core.prompts import TokenBatch
from analysis.core.sites import Site
from analysis.interventions.edits import bos_mask, Edit, patch_edits, site_values, zero_edits


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


# Position roles of a prompt (`position_roles`): the parts `role_positions` aligns, BOS and padding aside.
ROLES = ("before", "span", "after")  # text before the emotion span, the span, the template text after it
NO_ROLE = -1  # BOS and padding: no role's mean covers them


def position_roles(batch: TokenBatch) -> Int[Tensor, "n pos"]:
    """Each position's role: 0 text before the span, 1 the span, 2 text after it; NO_ROLE at BOS and padding."""
    roles = torch.full(batch.input_ids.shape, NO_ROLE, dtype=torch.long)
    real = batch.attention_mask.bool().cpu() & ~bos_mask(batch.attention_mask).cpu()
    span = batch.span_mask.bool().cpu()
    n, width = roles.shape
    for i in range(n):
        where = span[i].nonzero().flatten()
        s0, s1 = (int(where[0]), int(where[-1])) if len(where) else (width, width - 1)
        cols = torch.arange(width)
        roles[i] = torch.where(cols < s0, 0, torch.where(cols <= s1, 1, 2))
        roles[i][~real[i]] = NO_ROLE
    return roles


@dataclass(frozen=True)
class MeanPlan:
    """Hold each site, position by position, at its mean over the reference (neutral) prompts'
    tokens of the same role (`position_roles`: text before the span, the span, text after it),
    BOS excluded: BOS is the same token in every prompt and its activation is an outlier
    (attention sinks), so a mean over it is not the mean of the text's activations; the target's
    BOS keeps its own value (which is every prompt's BOS value). One mean for every position would
    hold the last positions, where M is read, at the average of greeting, span and template
    tokens: a value no position of any prompt has. Generated positions come after the span and get
    the after-span mean. A role no reference token has (no prompt with text before its span) falls
    back to the mean over every reference token, BOS excluded."""

    reference: dict[str, Tensor]  # captured hook activations of the reference prompts
    reference_batch: TokenBatch  # the reference prompts (their roles)
    target: TokenBatch  # the prompts the ablation runs on (their roles)

    def role_means(self, site: Site) -> Float[Tensor, "role *unit"]:
        """The site's mean over the reference tokens of each role (ROLES order), BOS excluded."""
        x = site_values(self.reference, site)  # [ref, pos, *unit]
        roles = position_roles(self.reference_batch).to(x.device)
        tail = [1] * (x.dim() - 2)
        every = (roles != NO_ROLE).to(x.dtype).view(*roles.shape, *tail)
        fallback = (x * every).sum((0, 1)) / every.sum()
        out = []
        for r in range(len(ROLES)):
            w = (roles == r).to(x.dtype).view(*roles.shape, *tail)
            out.append((x * w).sum((0, 1)) / w.sum() if w.sum() > 0 else fallback)
        return torch.stack(out)

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        roles = position_roles(self.target)
        n = roles.shape[0]
        mask = roles != NO_ROLE  # BOS and padding keep their own values
        edits = []
        for s in sites:
            means = self.role_means(s)  # [role, *unit]
            value = means[roles.clamp(min=0).to(means.device)]  # [n, pos, *unit]
            tail = means[ROLES.index("after")].expand(n, 1, *means.shape[1:]).clone()
            edits.append(Edit(s, value, mask, False, tail=tail))
        return [edits]


@dataclass(frozen=True)
class ResamplePlan:
    """Per draw, give each target prompt, position by position, the site's activation on another
    reference prompt of the same template (`resample_sources`, `role_positions`); generated
    positions get the source's activation at its last prompt position."""

    reference: dict[str, Tensor]
    index: Int[Tensor, "draw n pos"]  # the source position of every target position, per draw
    sources: Int[np.ndarray, "draw n"]  # reference row used for each target row, per draw
    mask: Bool[Tensor, "n pos"]  # the target's real positions (all of them are ablated)

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        out = []
        for d, src in enumerate(self.sources):
            edits = []
            for s in sites:
                x = site_values(self.reference, s)[torch.as_tensor(src)]  # [n, pos, *unit], row i = its source
                idx = self.index[d].view(*self.index[d].shape, *([1] * (x.dim() - 2))).expand(*self.index[d].shape, *x.shape[2:])
                edits.append(Edit(s, x.gather(1, idx), self.mask, False, tail=x[:, -1:]))
            out.append(edits)
        return out


def template_groups(after_texts: Sequence[str]) -> list[str]:
    """The resample ablation's "template" of each pair: its text after the span.

    A full template (the text outside the brackets, greeting name included) is unique to each
    pair of the profiles (70 of 70), so its only other prompt is the twin, which a resample must
    not use. The text after the span is shared by 3–9 pairs of the baseline profile, and it is
    what the last positions, where M is read, attend from; the rest of the prompt (greeting,
    span) is what a resample is meant to randomise.
    """
    return list(after_texts)


def resample_sources(groups: Sequence[str], draws: int, seed: int) -> tuple[Int[np.ndarray, "draw n"], int]:
    """For each draw and target row i, a reference row j != i of the same template group, uniform
    and seeded; (sources, fallbacks): a row alone in its group draws from every other row, and
    `fallbacks` counts those rows (the run notes them).

    Row i of the target and row i of the reference are one template pair, so j != i keeps a
    prompt from being ablated with its own twin's activations.
    """
    rng = np.random.default_rng(seed)
    n = len(groups)
    pools, fell_back = source_pools(groups, range(n))
    fallbacks = int(fell_back.sum())
    out = np.empty((draws, n), dtype=np.int64)
    for i, pool in enumerate(pools):
        out[:, i] = rng.choice(pool, size=draws)
    return out, fallbacks


def source_pools(
    groups: Sequence[str], rows: Sequence[int], allowed: Callable[[int, int], bool] | None = None,
) -> tuple[list[list[int]], Bool[np.ndarray, " rows"]]:
    """For each row i of `rows`, the rows j != i of its template group that `allowed(i, j)` admits,
    or where there are none, every admitted row j != i of any group; and which rows fell back so.

    The one rule by which a prompt draws another of its template: the resample ablation
    (`resample_sources`) and the screening's neutral control (analysis.screening.common.
    neutral_control_prompts) use it. A pool may come out empty (no admitted row at all): the
    caller says what that means.
    """
    members: dict[str, list[int]] = {}
    for j, g in enumerate(groups):
        members.setdefault(g, []).append(j)
    ok = allowed or (lambda i, j: True)
    pools, fell_back = [], np.zeros(len(rows), dtype=bool)
    for r, i in enumerate(rows):
        pool = [j for j in members[groups[i]] if j != i and ok(i, j)]
        if not pool:
            fell_back[r] = True
            pool = [j for j in range(len(groups)) if j != i and ok(i, j)]
        pools.append(pool)
    return pools, fell_back


def role_positions(target: TokenBatch, source: TokenBatch, rows: Int[np.ndarray, " n"]) -> Int[Tensor, "n pos"]:
    """For every target position, the position of the same role in its source prompt (row rows[i]
    of `source`); both batches are left-padded to one width.

    The prompts of one template group differ in token length (greeting and span vary), so
    position t of one is not position t of another. Roles are aligned instead: BOS to BOS; the
    text before the span from its start; the span from its end; the text after the span from
    the end of the prompt (the shared template text, so these are the same tokens). Where the
    source's part is shorter, its outermost token is reused; where it is empty (no text before
    the span), the neighbouring token (BOS) is. Padding maps to itself (masked out).
    """
    n, width = target.input_ids.shape
    index = torch.arange(width).expand(n, width).clone()

    def parts(batch: TokenBatch, row: int) -> tuple[int, int, int]:
        span = batch.span_mask[row].nonzero().flatten()
        return width - int(batch.lengths[row]), int(span[0]), int(span[-1])  # BOS, span start, span end

    for i in range(n):
        t_bos, t_s0, t_s1 = parts(target, i)
        s_bos, s_s0, s_s1 = parts(source, int(rows[i]))
        for t in range(t_bos, width):
            if t == t_bos:
                src = s_bos
            elif t < t_s0:  # before the span, aligned at its start
                src = min(s_bos + (t - t_bos), s_s0 - 1)
            elif t <= t_s1:  # the span, aligned at its end
                src = max(s_s1 - (t_s1 - t), s_s0)
            else:  # after the span, aligned at the prompt's end
                src = min(max(t, s_s1 + 1), width - 1)
            index[i, t] = src
    return index


@dataclass(frozen=True)
class PatchPlan:
    """Copy each site's activation from the source prompt into the target at mapped prompt positions."""

    source: dict[str, Tensor]
    index: Int[Tensor, "n pos"]
    mask: Bool[Tensor, "n pos"]

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        return [patch_edits(sites, self.source, self.index, self.mask)]


def identity_plan(target_acts: dict[str, Tensor], target: TokenBatch) -> PatchPlan:
    """The noise-floor control: each site's own activation patched back into the same prompt at
    every prompt position. In exact arithmetic it changes nothing; what it shows is float noise."""
    n, width = target.input_ids.shape
    return PatchPlan(target_acts, torch.arange(width).expand(n, width).clone(), target.attention_mask.bool())


# --- the patching directions and the ablation methods: one entry each ---------------------------


@dataclass(frozen=True)
class PatchDirection:
    """Which prompts give the activations and which are run, and the question that answers."""

    source: str  # "emotion" | "neutral": the prompts whose activations are patched in
    question: str  # said in the JSON, the console and the report

    @property
    def targets_neutral(self) -> bool:
        return self.source != "neutral"


PATCH_DIRECTIONS: dict[str, PatchDirection] = {
    # Heimersheim & Nanda 2024, "How to use and interpret activation patching": denoising a
    # component restores the behaviour iff it is sufficient (given the rest is clean-neutral);
    # noising it breaks the behaviour iff it is necessary.
    "denoising": PatchDirection(
        "emotion", "sufficiency: does the component's activation on the emotion prompt, patched into the neutral twin, "
        "restore the emotion score?",
    ),
    "noising": PatchDirection(
        "neutral", "necessity: does the component's activation on the neutral twin, patched into the emotion prompt, "
        "remove the emotion score?",
    ),
}
PATCH_DIRECTION_NAMES = tuple(PATCH_DIRECTIONS)


@dataclass(frozen=True)
class AblationInputs:
    """What an ablation method may build its plan from."""

    model: LoadedModel
    reference: dict[str, Tensor] | None  # the neutral prompts' activations (None: not captured)
    reference_batch: TokenBatch  # the neutral prompts (row i: the twin of target row i)
    target: TokenBatch  # the emotion prompts
    groups: Sequence[str]  # per pair, its template group (`template_groups`)
    draws: int
    seed: int


@dataclass(frozen=True)
class AblationMethod:
    """How one `--method` builds its plan, and what it asks (the question the report names)."""

    # inputs -> (plan, resample sources or None, notes)
    build: Callable[[AblationInputs], tuple[Plan, Int[np.ndarray, "draw n"] | None, list[str]]]
    question: str
    needs_reference: bool  # capture the neutral prompts' activations first
    min_references: int = 0  # fewer neutral prompts than this is an InputError
    why: str = ""  # the reason for min_references, said in that error
    uses_draws: bool = False  # averages `resample_draws` random draws (recorded in the JSON's params)


def _zero(x: AblationInputs) -> tuple[Plan, None, list[str]]:
    return ZeroPlan(x.model, x.target.input_ids.shape[0]), None, []


def _mean(x: AblationInputs) -> tuple[Plan, None, list[str]]:
    assert x.reference is not None
    return MeanPlan(x.reference, x.reference_batch, x.target), None, []


def _resample(x: AblationInputs) -> tuple[Plan, Int[np.ndarray, "draw n"], list[str]]:
    assert x.reference is not None
    sources, fallbacks = resample_sources(x.groups, x.draws, x.seed)
    index = torch.stack([role_positions(x.target, x.reference_batch, src) for src in sources])
    notes = [
        f"resample: {fallbacks} of {len(x.groups)} prompts have no other prompt of their template (text after the span) "
        f"and drew from every other neutral prompt"
    ] if fallbacks else []
    return ResamplePlan(x.reference, index, sources, x.target.attention_mask.bool()), sources, notes


ABLATIONS: dict[str, AblationMethod] = {
    "zero": AblationMethod(_zero, "necessity (zero): does setting the component's output to 0 remove the emotion score?",
                           needs_reference=False),
    "mean": AblationMethod(_mean, "necessity (mean): does holding the component, position by position, at its mean over "
                           "the neutral prompts' tokens of the same role (text before the span, span, text after; BOS "
                           "excluded) remove the emotion score?", needs_reference=True),
    "resample": AblationMethod(
        _resample, "necessity (resample): does giving the component, position by position, its activation on another "
        "neutral prompt of the same template remove the emotion score?",
        needs_reference=True, min_references=2, why="each prompt draws a different one", uses_draws=True,
    ),
}
ABLATION_METHODS = tuple(ABLATIONS)
