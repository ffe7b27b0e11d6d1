"""The experiment core shared by `analysis.head_ablation` and `analysis.head_patching`.

One experiment = a set of components (`Site`s) × an intervention plan × target prompts:

1. `prepare` validates every input (output paths, prompts, head spec, screening file, model,
   head ranges, lexicons, position alignment) before anything heavy runs, so bad input is one
   `error:` line and leaves no file;
2. `execute` runs the baseline (clean target prompts) once, and each intervened arm (the
   requested sites, then the top-1..top-K screened sites jointly for the cumulative curve):
   greedy generation with the edits held as the plan says, plus teacher-forced logits at the
   last prompt position;
3. per-prompt scores (VADER sentiment and keyword counts of the continuation only, whether
   the continuation changed, emotion score M, KL(clean || intervened)) → paired effects with
   n, mean, 95 % CI and p from one inverted cluster sign-flip test (`analysis.stats`), pairs that share an emotion
   expression resampled and flipped as one cluster, as in the screening;
4. `document` / `table` / `comparison_table` render the JSON summary, the per-prompt Parquet
   table and the console table; `write_outputs` writes both files atomically.

The two CLIs differ only in the plan they build (`ZeroPlan`, `MeanPlan`, `ResamplePlan` for
ablation, `PatchPlan` for patching) and which prompts are the target (emotion prompts for
ablation, their neutral twins for patching). Sites are generic, so MLP units go through the
same code: `--head-spec` (params `ablation.head_spec` / `patching.head_spec`) takes heads
(`L:H`, `L:H,L:H`, `top:N` from the head screening) or MLP units (`mlp:L:N`, `mlp:L:N1,N2`,
`mlp-top:K` from the unit screening, analysis.unit_screening), and the cumulative curve ranks
the same kind of component from the same kind of screening.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from analysis.core.cli import progress_disabled
from analysis.core.loading import check_context, LoadedModel
from analysis.core.prompt_table import stage_pairs
from analysis.core.prompts import in_half, PromptPairs, span_clusters, split_expressions, TokenBatch
from analysis.core.sites import head_sites, Site, unit_sites
from analysis.core.specs import parse_site_spec, UnitSpec, validate_heads, validate_units
from analysis.core.vocabulary import NEUTRAL
from analysis.device import resolve
from analysis.errors import InputError
from analysis.experiments.config import _check_config_values, ExperimentConfig
from analysis.experiments.kinds import KINDS
from analysis.interventions.edits import Edit, hooks_for, last_logits, tokenize_pairs
from analysis.interventions.generation import decode, greedy_generate
from analysis.interventions.plans import Plan, resample_sources
from analysis.metrics import GENERATION_METRICS as METRICS
from analysis.metrics import ArmOutput, lexicon_ids, lexicon_words
from analysis.plan import load_planned
from analysis.stats import check_resolution, Effect, min_clusters, paired_effect


@dataclass(frozen=True)
class Prepared:
    """A validated config with everything cheap already loaded."""

    config: ExperimentConfig
    model: LoadedModel
    pairs: PromptPairs
    sites: tuple[Site, ...]
    cumulative: tuple[tuple[Site, ...], ...]  # k = 1..K
    lexicon_ids: dict[str, list[int]]
    notes: tuple[str, ...] = ()
    confirmation: frozenset[str] | None = None  # expressions of the held-out half (None: split off)
    lexicon_words: dict[str, tuple[str, ...]] | None = None  # per lexicon, the words M and the keyword counts use


def _sites_from_spec(c: ExperimentConfig) -> tuple[tuple[Site, ...], tuple[tuple[Site, ...], ...], list[str]]:
    """The requested sites and the cumulative top-1..K site sets, ranked by the screening of
    the spec's kind (heads: analysis.head_screening; units: analysis.unit_screening)."""
    spec = parse_site_spec(c.head_spec)
    if isinstance(spec, UnitSpec):
        from analysis.screening.units import top_units as top
        explicit, to_sites, stage, what = spec.units, unit_sites, "analysis.unit_screening", "unit screening file"
    else:
        from analysis.screening.heads import top_heads as top
        explicit, to_sites, stage, what = spec.heads, head_sites, "analysis.head_screening", "screening file"
    notes: list[str] = []
    assert c.screening_file is not None
    skip = c.skip_copy_flagged  # the copy control's flagged components are not chosen by rank
    chosen = top(c.screening_file, c.emotion, spec.top, skip) if spec.is_top else explicit
    cumulative: tuple[tuple[Site, ...], ...] = ()
    if c.cumulative_k > 0:
        if not Path(c.screening_file).is_file() and not c.cumulative_k_explicit:
            notes.append(
                f"no cumulative curve: cumulative_k={c.cumulative_k} (params.yaml) needs the {what} "
                f"{c.screening_file}, which does not exist; run the screening first or pass --cumulative-k 0"
            )
        else:
            if not Path(c.screening_file).is_file():
                raise InputError(
                    f"--cumulative-k {c.cumulative_k} needs the {what} {c.screening_file}, which does not "
                    f"exist; run `python -m {stage}` first, pass --screening-file, or --cumulative-k 0"
                )
            ranked = top(c.screening_file, c.emotion, c.cumulative_k, skip)
            cumulative = tuple(to_sites(ranked[:k]) for k in range(1, c.cumulative_k + 1))
    return to_sites(chosen), cumulative, notes


def prepare(c: ExperimentConfig, model: LoadedModel | None = None) -> Prepared:
    """Validate every input in order of cost; raise InputError (one line) on the first problem.

    `model`: an already loaded `c.model` (several runs in one process skip reloading it).
    """
    _check_config_values(c)
    pairs = stage_pairs(c.emotion, c.profile, emotion_file=c.emotion_file, neutral_file=c.neutral_file)
    # The same halves as the screening's (seed and emotion only): effects are reported on the
    # confirmation half, which the screening never saw, and on all expressions.
    confirmation = (
        split_expressions(pairs, seed=c.seed, selection_share=c.selection_share, need=min_clusters())[1] if c.split else None
    )
    sites, cumulative, notes = _sites_from_spec(c)
    model = model if model is not None else load_planned(c.model, c.precision or resolve("cpu"), c.profile, 1)
    for group in (sites, *cumulative):
        validate_heads(tuple((s.layer, s.index) for s in group if s.kind == "head"), model.spec)
        validate_units(tuple((s.layer, s.index) for s in group if s.kind == "mlp"), model.spec)
    lex = lexicon_ids(model.tokenizer)
    pairs = KINDS[c.kind].check_pairs(c, pairs, model, notes)
    # Knowable before any generation: prompt + generated tokens fit the context, and the clusters
    # and resamples can give the interval. (The output paths were checked in the config.)
    emo, neu = tokenize_pairs(model, pairs)
    longest = int(max(emo.lengths.max(), neu.lengths.max()))
    check_context(model, longest, c.max_tokens, what="the longest prompt (with BOS)")
    check_resolution(len(set(span_clusters(pairs))), n_resamples=c.n_resamples, seed=c.seed)
    if confirmation is not None:
        left = {x for x in span_clusters(pairs) if x in confirmation}
        if len(left) < min_clusters():
            raise InputError(
                f"split: the confirmation half keeps {len(left)} of its {len(confirmation)} {c.emotion} expressions "
                f"after unaligned pairs were left out; the statistics need at least {min_clusters()} "
                f"(add expressions, use --no-split or split.enabled false)"
            )
    return Prepared(c, model, pairs, sites, cumulative, lex, tuple(notes), confirmation, lexicon_words(model.tokenizer))


@dataclass(frozen=True)
class Arm:
    """One pass over the target prompts: greedy continuation and last-position logits."""

    tokens: Int[Tensor, "n new"]
    texts: tuple[str, ...]
    min_margin: Float[Tensor, " n"]
    logits: Float[Tensor, "n vocab"]


def run_arm(model: LoadedModel, batch: TokenBatch, edits: Sequence[Edit], max_tokens: int, *, chunk_size: int = 64, desc: str = "generate") -> Arm:
    gen = greedy_generate(model, batch, max_tokens, edits, chunk_size=chunk_size, desc=desc)
    logits = last_logits(model, batch, hooks_for(edits))
    return Arm(gen.tokens, tuple(decode(model, gen.tokens)), gen.min_margin, logits)


def score_arm(
    arm: Arm, clean: Arm, lex: dict[str, list[int]], emotion: str, words: dict[str, tuple[str, ...]] | None = None
) -> dict[str, np.ndarray]:
    """Per-prompt scores of one arm; `changed` and `kl` are against the clean arm (0 for it).
    `words`: the model's lexicon words (analysis.metrics.lexicon_words), for the keyword counts."""
    out = ArmOutput(arm.texts, arm.tokens, arm.logits, clean.tokens, clean.logits, lex[emotion], lex[NEUTRAL], words)
    return {k: m.score(out) for k, m in METRICS.items()}


@dataclass(frozen=True)
class Outcome:
    """An intervention on one set of sites: per-prompt scores averaged over draws, and effects."""

    sites: tuple[Site, ...]
    scores: dict[str, np.ndarray]
    effects: dict[str, Effect]
    first: Arm  # draw 0: its tokens and texts go into the per-prompt table
    min_margin: np.ndarray  # per prompt, smallest over draws
    n_draws: int
    effects_confirmation: dict[str, Effect] | None = None  # the same effects over the confirmation half only


def effects(
    intervened: dict[str, np.ndarray], baseline: dict[str, np.ndarray], *, n_resamples: int, seed: int,
    clusters: Sequence[str] | None = None,
) -> dict[str, Effect]:
    """Paired effect per metric; pairs sharing an emotion expression are one cluster (analysis.stats)."""
    return {
        k: paired_effect(intervened[k], baseline[k], n_resamples=n_resamples, seed=seed, clusters=clusters)
        for k in METRICS
    }


def intervene(
    model: LoadedModel,
    batch: TokenBatch,
    plan: Plan,
    sites: tuple[Site, ...],
    clean: Arm,
    baseline_scores: dict[str, np.ndarray],
    *,
    lex: dict[str, list[int]],
    emotion: str,
    words: dict[str, tuple[str, ...]] | None = None,
    max_tokens: int,
    n_resamples: int,
    seed: int,
    clusters: Sequence[str] | None = None,
    chunk_size: int = 64,
) -> Outcome:
    per_draw: list[dict[str, np.ndarray]] = []
    first: Arm | None = None
    margins = []
    draws = plan.draws(sites)
    label = ",".join(s.label for s in sites)
    for d, edits in enumerate(draws):
        arm = run_arm(model, batch, edits, max_tokens, chunk_size=chunk_size, desc=f"{label} draw {d + 1}/{len(draws)}")
        first = first or arm
        per_draw.append(score_arm(arm, clean, lex, emotion, words))
        margins.append(arm.min_margin.double().numpy())
    assert first is not None
    scores = {k: np.mean([s[k] for s in per_draw], axis=0) for k in METRICS}
    return Outcome(
        sites=sites,
        scores=scores,
        effects=effects(scores, baseline_scores, n_resamples=n_resamples, seed=seed, clusters=clusters),
        first=first,
        min_margin=np.min(margins, axis=0),
        n_draws=len(draws),
    )


@dataclass(frozen=True)
class ExperimentResult:
    config: ExperimentConfig
    pairs: PromptPairs
    target_prompts: tuple[str, ...]
    source_prompts: tuple[str, ...] | None  # patching: the emotion prompt each row got its z from
    baseline: Arm
    baseline_scores: dict[str, np.ndarray]
    main: Outcome
    cumulative: tuple[Outcome, ...]
    resample_sources: np.ndarray | None = None
    notes: tuple[str, ...] = field(default=())
    confirmation_index: tuple[int, ...] | None = None  # rows of the confirmation half (None: split off)
    lexicon_words: dict[str, tuple[str, ...]] | None = None  # the words M and the keyword counts used
    computed_on: dict[str, str] = field(default_factory=dict)  # device and dtype (analysis.device.Precision.record)


def build_plan(p: Prepared, emotion_batch: TokenBatch, neutral_batch: TokenBatch) -> tuple[Plan, TokenBatch, np.ndarray | None]:
    """The plan of the config's kind and mode, the target batch, and resample sources if any."""
    c = p.config
    all_sites = sorted({s for group in (p.sites, *p.cumulative) for s in group})
    names = sorted({s.hook_name for s in all_sites})
    return KINDS[c.kind].plan(p.model, c, names, emotion_batch, neutral_batch)


@torch.no_grad()
def execute(p: Prepared) -> ExperimentResult:
    """Baseline once, then every distinct site set (requested, top-1..top-K) under the plan."""
    c = p.config
    emotion_batch, neutral_batch = tokenize_pairs(p.model, p.pairs)
    plan, target, sources = build_plan(p, emotion_batch, neutral_batch)
    clean = run_arm(p.model, target, (), c.max_tokens, chunk_size=c.chunk_size, desc="baseline")
    base_scores = score_arm(clean, clean, p.lexicon_ids, c.emotion, p.lexicon_words)
    clusters = span_clusters(p.pairs)

    done: dict[tuple[Site, ...], Outcome] = {}
    groups = [p.sites, *p.cumulative]
    for sites in tqdm(groups, desc="interventions", disable=progress_disabled() or len(groups) == 1, leave=False):
        if sites not in done:  # top-1 of the curve is often the requested head: run it once
            done[sites] = intervene(
                p.model, target, plan, sites, clean, base_scores, lex=p.lexicon_ids, emotion=c.emotion, words=p.lexicon_words,
                max_tokens=c.max_tokens, n_resamples=c.n_resamples, seed=c.seed, clusters=clusters,
                chunk_size=c.chunk_size,
            )
    conf_idx: tuple[int, ...] | None = None
    if p.confirmation is not None:
        conf_idx = tuple(in_half(p.pairs, p.confirmation))
        sub = np.asarray(conf_idx, dtype=int)
        conf_clusters = [clusters[i] for i in conf_idx]
        base_sub = {k: v[sub] for k, v in base_scores.items()}
        for sites, o in done.items():
            done[sites] = dataclasses.replace(o, effects_confirmation=effects(
                {k: v[sub] for k, v in o.scores.items()}, base_sub, n_resamples=c.n_resamples, seed=c.seed,
                clusters=conf_clusters,
            ))
    if KINDS[c.kind].targets_neutral:
        target_prompts, source_prompts = p.pairs.neutral_prompts, tuple(x.text for x in p.pairs.emotion_prompts)
    else:
        target_prompts, source_prompts = p.pairs.emotion_prompts, None
    return ExperimentResult(
        config=c,
        pairs=p.pairs,
        target_prompts=tuple(x.text for x in target_prompts),
        source_prompts=source_prompts,
        baseline=clean,
        baseline_scores=base_scores,
        main=done[p.sites],
        cumulative=tuple(done[s] for s in p.cumulative),
        resample_sources=sources,
        notes=p.notes,
        confirmation_index=conf_idx,
        lexicon_words=p.lexicon_words,
        computed_on=p.model.precision.record(),
    )
