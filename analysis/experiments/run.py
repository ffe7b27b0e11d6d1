"""The experiment core shared by `analysis.head_ablation` and `analysis.head_patching`.

One experiment = a set of components (`Site`s) × an intervention plan × target prompts:

1. `prepare` checks every input (output paths, prompts, head spec, screening file, model,
   head ranges, lexicons, position alignment) before anything heavy runs, so bad input is one
   `error:` line and leaves no file;
2. `execute` runs the baseline (clean target prompts) once, and each intervened arm (the
   requested sites, then the top-1..top-K screened sites jointly for the cumulative curve):
   greedy generation with the edits held as the plan says, plus teacher-forced logits at the
   last prompt position;
3. per-prompt scores (VADER sentiment and keyword counts of the continuation only, whether
   the continuation changed, emotion score M, KL(clean || intervened)) → paired effects with
   n, mean, 95 % CI and p from one inverted wild cluster bootstrap-t (`analysis.measures.stats`), pairs that share an emotion
   expression drawn as one cluster (two-way with the template endings), as in the screening;
4. `document` / `table` / `comparison_table` render the JSON summary, the per-prompt Parquet
   table and the console table; `write_outputs` writes both files atomically.

The two CLIs differ only in the plan they build (`ZeroPlan`, `MeanPlan`, `ResamplePlan` for
ablation, `PatchPlan` for patching) and which prompts are the target (emotion prompts for
ablation and noising, their neutral twins for denoising). Every run also carries an identity
control (the noise floor), the clean M of the other prompts (the fraction of the gap) and, per
arm, the same intervention on random components outside the top set (the random-head baseline). Sites are generic, so MLP units go through the
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
from analysis.core.prompts import in_half, Prompt, PromptPairs, span_clusters, split_expressions, template_labels, TokenBatch
from analysis.core.sites import head_sites, Site, unit_sites
from analysis.core.specs import parse_site_spec, UnitSpec, check_heads, check_units
from analysis.base.vocabulary import NEUTRAL
from analysis.settings.hardware import resolve
from analysis.base.errors import InputError
from analysis.experiments.config import _check_config_values, ExperimentConfig
from analysis.experiments.kinds import KINDS
from analysis.interventions.edits import capture, Edit, hooks_for, last_logits, position_map, tokenize_pairs
from analysis.interventions.generation import decode, greedy_generate
from analysis.interventions.plans import AblationInputs, ABLATIONS, identity_plan, PatchPlan, Plan, template_groups
from analysis.measures.metrics import GENERATION_METRICS as METRICS
from analysis.measures.metrics import ArmOutput, copy_keep_rows, emotion_score, lexicon_ids, lexicon_words
from analysis.measures.stats import (
    baseline_excess, check_resolution, Effect, min_clusters, no_effect, noise_floor, one_sample_effect, paired_effect, Ratio, ratio_effect, Share,
    share_interval,
)
from analysis.core.budget import load_planned


@dataclass(frozen=True)
class Prepared:
    """A checked config with everything cheap already loaded."""

    config: ExperimentConfig
    model: LoadedModel
    pairs: PromptPairs
    sites: tuple[Site, ...]
    cumulative: tuple[tuple[Site, ...], ...]  # k = 1..K
    lexicon_ids: dict[str, list[int]]
    notes: tuple[str, ...] = ()
    confirmation: frozenset[str] | None = None  # expressions of the held-out half (None: split off)
    lexicon_words: dict[str, tuple[str, ...]] | None = None  # per lexicon, the words M and the keyword counts use
    random_sets: dict[tuple[Site, ...], tuple[tuple[Site, ...], ...]] = field(default_factory=dict)  # per arm, its random-site draws
    control_sources: tuple[Prompt | None, ...] | None = None  # patching: each row's control source (`control_sources`)


def random_site_sets(
    arm: tuple[Site, ...], top: set[Site], model: LoadedModel, *, draws: int, seed: int
) -> tuple[tuple[Site, ...], ...]:
    """The random-head baseline of one arm: `draws` seeded sets of len(arm) components of the arm's
    kind (heads, or MLP units) drawn without replacement from those outside the top set (every
    component any arm of the run intervenes on), so the baseline never contains a screened one.
    Asking for more than exist outside it is an InputError."""
    spec = model.spec
    unit = arm[0].kind == "mlp"
    every = unit_sites((layer, n) for layer in range(spec.n_layers) for n in range(spec.d_mlp or 0)) if unit else \
        head_sites((layer, h) for layer in range(spec.n_layers) for h in range(spec.n_heads))
    pool = [s for s in every if s not in top]
    k = len(arm)
    if k > len(pool):
        noun = "units" if unit else "heads"
        raise InputError(
            f"random-head baseline: the arm {','.join(s.label for s in arm)} needs {k} random {noun} outside the top set "
            f"of {len(top)}, but {model.spec.name} has only {len(pool)} {noun} outside it; intervene on fewer {noun}"
        )
    rng = np.random.default_rng([seed, k])  # per arm size: the same draws for k whatever else the run does
    return tuple(tuple(sorted(pool[i] for i in rng.choice(len(pool), size=k, replace=False))) for _ in range(draws))


def _n_specific(c: ExperimentConfig, spec: object, top: object, skip: bool) -> int:
    """How many components `top` (top_heads / top_units) can rank as specific for the emotion: counted
    on the selection half's view of the rows, as the choice itself is (analysis.screening.selection)."""
    from analysis.base.contract import read_screening, read_unit_screening
    from analysis.screening.selection import selection_ranking

    assert c.screening_file is not None
    unit = isinstance(spec, UnitSpec)
    doc = (read_unit_screening if unit else read_screening)(c.screening_file)
    rows, _ = selection_ranking(doc, c.emotion, index="neuron" if unit else "head", skip_flagged=skip, require_specific=True)
    return len(rows)


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
    # top:N / mlp-top:K mean emotion components: those the neutral control calls `specific` (issue 23;
    # params specificity.select false: any component, as before)
    only = c.select_specific
    chosen = top(c.screening_file, c.emotion, spec.top, skip, specific_only=only) if spec.is_top else explicit
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
            n_specific = _n_specific(c, spec, top, skip) if only else c.cumulative_k
            k_max = min(c.cumulative_k, n_specific)
            if k_max < c.cumulative_k:
                notes.append(
                    f"cumulative curve: top-1..{k_max} only: the {what} has {n_specific} specific components for {c.emotion} "
                    f"(the neutral control), fewer than cumulative_k={c.cumulative_k}"
                )
            ranked = top(c.screening_file, c.emotion, k_max, skip, specific_only=only) if k_max else ()
            cumulative = tuple(to_sites(ranked[:k]) for k in range(1, k_max + 1))
    return to_sites(chosen), cumulative, notes


def prepare(c: ExperimentConfig, model: LoadedModel | None = None) -> Prepared:
    """Check every input in order of cost; raise InputError (one line) on the first problem.

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
        check_heads(tuple((s.layer, s.index) for s in group if s.kind == "head"), model.spec)
        check_units(tuple((s.layer, s.index) for s in group if s.kind == "mlp"), model.spec)
    top = {s for group in (sites, *cumulative) for s in group}
    random_sets = {g: random_site_sets(g, top, model, draws=c.random_draws, seed=c.seed) for g in (sites, *cumulative)}
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
    return Prepared(
        c, model, pairs, sites, cumulative, lex, tuple(notes), confirmation, lexicon_words(model.tokenizer), random_sets,
        control_sources(c, model, pairs),
    )


def control_sources(c: ExperimentConfig, model: LoadedModel, pairs: PromptPairs) -> tuple[Prompt | None, ...] | None:
    """The source of the specificity control of a patching run, per pair (issue 23): a prompt of the
    target's own class in the target's template, so that the control changes the span as the real
    patch does but not its class. Denoising (target: the twin n_i): neutral′, n_i's template around
    another twin's span; noising (target: the emotion prompt e_i): e′, e_i's template around another
    of the emotion's spans. Both drawn as the screening draws neutral′ (analysis.screening.common.
    neutral_control_prompts; None for a pair with no such span, left out of the control); more such pairs
    than alignment.max_unaligned_share allows is an InputError here, before any work.
    Ablation: None (its control ablates the same components on the twins)."""
    if c.kind != "patching":
        return None
    from analysis.screening.common import neutral_control_prompts

    targets_neutral = KINDS[c.kind].targets_neutral(c)
    own = pairs if targets_neutral else PromptPairs(pairs.emotion, pairs.neutral_prompts, pairs.emotion_prompts)
    prompts, _ = neutral_control_prompts(model, own, own, c.mode, c.seed, side="neutral" if targets_neutral else c.emotion,
                                         max_missing_share=c.max_unaligned_share)
    return tuple(prompts)


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
    arm: Arm, clean: Arm, lex: dict[str, list[int]], emotion: str, words: dict[str, tuple[str, ...]] | None = None,
    keep: Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Per-prompt scores of one arm; `changed` and `kl` are against the clean arm (0 for it).
    `words`: the model's lexicon words (analysis.measures.metrics.lexicon_words), for the keyword counts;
    `keep`: per prompt, the lexicon tokens of the copy-free M (`copy_keep`)."""
    out = ArmOutput(arm.texts, arm.tokens, arm.logits, clean.tokens, clean.logits, lex[emotion], lex[NEUTRAL], words, keep)
    return {k: m.score(out) for k, m in METRICS.items()}


SIGNED = tuple(k for k, m in METRICS.items() if not m.non_negative)  # sign-flip tested against 0
NON_NEGATIVE = tuple(k for k, m in METRICS.items() if m.non_negative)  # compared with the random baseline
M = "emotion_score"


@dataclass(frozen=True)
class Evidence:
    """The statistics of one arm over one half of the prompts."""

    effects: dict[str, Effect]  # signed metrics: paired change against the clean arm
    gap: Ratio  # M's change as a fraction of the emotion–neutral gap (`gap_parts`)
    vs_random: dict[str, Effect]  # every metric: the arm's per-prompt value minus the random arms' mean
    changed_share: Share  # clusters in which most prompts' continuation changed, exact binomial
    random_effects: dict[str, list[float]]  # per metric, each random draw's mean change against the clean arm
    random_gap: list[float | None]  # each random draw's fraction of the gap


@dataclass(frozen=True)
class Outcome:
    """An intervention on one set of sites: per-prompt scores averaged over draws, its random-site
    baseline, and its evidence."""

    sites: tuple[Site, ...]
    scores: dict[str, np.ndarray]
    first: Arm  # draw 0: its tokens and texts go into the per-prompt table
    min_margin: np.ndarray  # per prompt, smallest over draws
    n_draws: int
    random_sites: tuple[tuple[Site, ...], ...]
    random_scores: tuple[dict[str, np.ndarray], ...]
    evidence: Evidence
    evidence_confirmation: Evidence | None = None  # the same over the confirmation half only


def gap_parts(
    m_intervened: np.ndarray, m_target: np.ndarray, m_other: np.ndarray, *, targets_neutral: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, (numerator, denominator) of the fraction of the emotion–neutral gap of M.

    denoising (target: the neutral twin): (M_patched − M_neutral) / (M_emotion − M_neutral), the
    share of the gap the component restores; noising and ablation (target: the emotion prompt):
    (M_emotion − M_intervened) / (M_emotion − M_neutral), the share it removes. 1 = all of it.
    """
    if targets_neutral:
        return m_intervened - m_target, m_other - m_target
    return m_target - m_intervened, m_target - m_other


def cluster_flags(values: np.ndarray, clusters: Sequence[str]) -> np.ndarray:
    """One flag per cluster: more than half of its prompts' value (a 0/1 share, or a mean over
    draws) is set; clusters, not prompts, are the independent trials of `share_interval`."""
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    return np.bincount(inverse, weights=values) / np.bincount(inverse) > 0.5


def evidence(
    scores: dict[str, np.ndarray], random_scores: Sequence[dict[str, np.ndarray]], base: dict[str, np.ndarray],
    m_other: np.ndarray, *, targets_neutral: bool, clusters: Sequence[str], n_resamples: int, seed: int,
    templates: Sequence[str] | None = None,
) -> Evidence:
    """Every statistic of one arm from its per-prompt scores (see `Evidence`)."""
    # templates: each prompt's template ending, the second dimension of the two-way standard error.
    kw = {"n_resamples": n_resamples, "seed": seed, "clusters": clusters, "templates": templates}
    num, den = gap_parts(scores[M], base[M], m_other, targets_neutral=targets_neutral)

    def ratio_of_means(m: np.ndarray) -> float | None:
        n, d = gap_parts(m, base[M], m_other, targets_neutral=targets_neutral)
        return float(n.sum() / d.sum()) if d.sum() != 0.0 else None

    return Evidence(
        effects={k: paired_effect(scores[k], base[k], **kw) for k in SIGNED},
        gap=ratio_effect(num, den, **kw),
        vs_random={k: baseline_excess(scores[k], np.stack([r[k] for r in random_scores]), **kw) for k in METRICS},
        changed_share=share_interval(cluster_flags(scores["changed"], clusters)),
        random_effects={k: [float(np.mean(r[k] - base[k])) for r in random_scores] for k in METRICS},
        random_gap=[ratio_of_means(r[M]) for r in random_scores],
    )


def run_plan(
    model: LoadedModel, batch: TokenBatch, plan: Plan, sites: tuple[Site, ...], clean: Arm, *,
    lex: dict[str, list[int]], emotion: str, words: dict[str, tuple[str, ...]] | None = None, max_tokens: int,
    chunk_size: int = 64, keep: Tensor | None = None,
) -> tuple[dict[str, np.ndarray], Arm, np.ndarray, int]:
    """(per-prompt scores averaged over the plan's draws, draw 0's arm, per-prompt min margin, draws)."""
    per_draw: list[dict[str, np.ndarray]] = []
    first: Arm | None = None
    margins = []
    draws = plan.draws(sites)
    label = ",".join(s.label for s in sites)
    for d, edits in enumerate(draws):
        arm = run_arm(model, batch, edits, max_tokens, chunk_size=chunk_size, desc=f"{label} draw {d + 1}/{len(draws)}")
        first = first or arm
        per_draw.append(score_arm(arm, clean, lex, emotion, words, keep))
        margins.append(arm.min_margin.double().cpu().numpy())
    assert first is not None
    return {k: np.mean([s[k] for s in per_draw], axis=0) for k in METRICS}, first, np.min(margins, axis=0), len(draws)


@dataclass(frozen=True)
class NoiseFloor:
    """The identity control (each site's own activations patched back into the target prompts,
    `identity_plan`) on the requested sites: per metric, its largest |change| over prompts (0 in
    exact arithmetic) and the floor max |change| + atol at or below which an effect is "no effect"."""

    control_max: dict[str, float]
    floor: dict[str, float]
    atol: float


# What the specificity control of each experiment is (issue 23): the same intervention where the
# emotion should not matter, so a component that reacts to any change moves M alike in both arms.
CONTROL_DEFINITIONS = {
    "denoising": "neutral′ → twin: each twin patched from neutral′ (its own template around another twin's span of the "
    "same template) instead of from the emotion prompt; difference = (emotion → twin ΔM) − (neutral′ → twin ΔM)",
    "noising": "e′ → emotion prompt: each emotion prompt patched from e′ (its own template around another span of the same "
    "emotion) instead of from the twin, a change of span that keeps the emotion; difference = (twin → emotion ΔM) − "
    "(e′ → emotion ΔM): an emotion component removes M only when the emotion goes",
    "ablation": "the same ablation on the neutral twins; difference = (ΔM on the emotion prompts) − (ΔM on the twins): a "
    "component that raises M whatever the prompt is ablated alike in both",
}


@dataclass(frozen=True)
class ControlArm:
    """The specificity control of the requested sites, teacher-forced M only (no generation)."""

    definition: str
    delta_m: np.ndarray  # per prompt: M(control target, intervened, mean over draws) − M(control target, clean); NaN: no control
    sources: tuple[str | None, ...] | None  # patching: each row's control source prompt (None: none, the row has no control)


def control_arm(p: Prepared, neutral_batch: TokenBatch) -> ControlArm:
    """Run the specificity control (CONTROL_DEFINITIONS) of the requested sites."""
    c = p.config
    names = sorted({s.hook_name for s in p.sites})
    ids = (p.lexicon_ids[c.emotion], p.lexicon_ids[NEUTRAL])
    sources = None
    rows = list(range(len(p.pairs)))
    if c.kind == "patching":
        assert p.control_sources is not None
        rows = [i for i, x in enumerate(p.control_sources) if x is not None]
        own = p.pairs.neutral_prompts if KINDS[c.kind].targets_neutral(c) else p.pairs.emotion_prompts
        src, target = tokenize_pairs(p.model, PromptPairs(c.emotion, tuple(p.control_sources[i] for i in rows), tuple(own[i] for i in rows)))
        plan: Plan = PatchPlan(capture(p.model, src, names), *position_map(c.mode, src, target))
        sources = tuple(None if x is None else x.text for x in p.control_sources)
    else:
        target = neutral_batch
        method = ABLATIONS[c.mode]
        reference = capture(p.model, neutral_batch, names) if method.needs_reference else None
        groups = template_groups([x.after for x in p.pairs.neutral_prompts])
        plan, _, _ = method.build(AblationInputs(p.model, reference, neutral_batch, neutral_batch, groups, c.resample_draws, c.seed))
    clean = emotion_score(last_logits(p.model, target), *ids)
    arms = [emotion_score(last_logits(p.model, target, hooks_for(edits)), *ids) for edits in plan.draws(p.sites)]
    delta = np.full(len(p.pairs), np.nan)
    delta[rows] = (torch.stack(arms).mean(0) - clean).double().cpu().numpy()
    return ControlArm(CONTROL_DEFINITIONS[c.name], delta, sources)


@dataclass(frozen=True)
class ExperimentResult:
    config: ExperimentConfig
    pairs: PromptPairs
    target_prompts: tuple[str, ...]
    source_prompts: tuple[str, ...] | None  # patching: the prompt each row got its activations from
    baseline: Arm
    baseline_scores: dict[str, np.ndarray]
    main: Outcome
    cumulative: tuple[Outcome, ...]
    other_m: np.ndarray  # M of the clean other prompts (denoising: the emotion prompts; else the neutral twins)
    noise: NoiseFloor
    resample_sources: np.ndarray | None = None
    notes: tuple[str, ...] = field(default=())
    confirmation_index: tuple[int, ...] | None = None  # rows of the confirmation half (None: split off)
    lexicon_words: dict[str, tuple[str, ...]] | None = None  # the words M and the keyword counts used
    computed_on: dict[str, str] = field(default_factory=dict)  # device and dtype (analysis.settings.hardware.Precision.record)
    control: ControlArm | None = None  # the specificity control of the requested sites (issue 23)


def control_record(r: ExperimentResult) -> dict | None:
    """The JSON's `specificity_control` block: the control arm's ΔM, the per-prompt difference
    (intervention ΔM) − (control ΔM), both with the clustered interval and p (analysis.measures.stats), and
    `specific` (the screening's rule, analysis.screening.common.is_specific, with the difference's p
    for its q: one test per run), over all prompts and over the confirmation half."""
    from analysis.screening.common import is_specific

    if r.control is None:
        return None
    c = r.config
    main = r.main.scores[M] - r.baseline_scores[M]
    ctl = r.control.delta_m
    gap = r.other_m - r.baseline_scores[M] if KINDS[c.kind].targets_neutral(c) else r.baseline_scores[M] - r.other_m
    clusters, templates = span_clusters(r.pairs), template_labels(r.pairs)

    def block(idx: np.ndarray, main_effect: Effect) -> dict:
        n_all = len(idx)
        idx = idx[np.isfinite(ctl[idx])]  # the pairs with a control (patching: those with a source)
        kw = {"n_resamples": c.n_resamples, "seed": c.seed, "clusters": [clusters[i] for i in idx],
              "templates": [templates[i] for i in idx]}
        threshold = c.specificity_min_share * abs(float(gap[idx].mean())) if len(idx) else 0.0
        if len(set(kw["clusters"])) < min_clusters():  # too few expressions with a control for a 95 % test
            return {"n_without_control": int(n_all - len(idx)), "control": None, "difference": None,
                    "gap": float(gap[idx].mean()) if len(idx) else None, "threshold": threshold, "specific": False}
        e_ctl, diff = one_sample_effect(ctl[idx], **kw), one_sample_effect(main[idx] - ctl[idx], **kw)
        row = {"specificity_q": diff.p, "specificity_ci_low": diff.ci_low, "specificity_ci_high": diff.ci_high,
               "exact": main_effect.mean, "no_effect": no_effect(main_effect, r.noise.floor[M])}
        return {"n_without_control": int(n_all - len(idx)), "control": e_ctl.to_dict(), "difference": diff.to_dict(), "gap": float(gap[idx].mean()),
                "threshold": threshold, "specific": is_specific(row, threshold)}

    conf = r.main.evidence_confirmation
    return {
        "definition": r.control.definition,
        "rule": f"specific: the difference's p < 0.05, the intervention's ΔM above the noise floor, and the difference's "
        f"interval beyond min_share ({c.specificity_min_share:g}) × |gap| on the side of the intervention's ΔM",
        "min_share": c.specificity_min_share,
        **block(np.arange(len(r.pairs)), r.main.evidence.effects[M]),
        "confirmation": None if conf is None or r.confirmation_index is None else
        block(np.asarray(r.confirmation_index, dtype=int), conf.effects[M]),
    }


def build_plan(
    p: Prepared, emotion_batch: TokenBatch, neutral_batch: TokenBatch
) -> tuple[Plan, TokenBatch, np.ndarray | None, list[str]]:
    """The plan of the config's kind and mode, the target batch, resample sources if any, and notes."""
    c = p.config
    groups = (p.sites, *p.cumulative, *(r for sets in p.random_sets.values() for r in sets))
    names = sorted({s.hook_name for group in groups for s in group})
    return KINDS[c.kind].plan(p.model, c, p.pairs, names, emotion_batch, neutral_batch)


def copy_keep(p: Prepared, emotion_batch: TokenBatch, neutral_batch: TokenBatch) -> Tensor:
    """Per pair, the lexicon tokens the experiments' copy-free M keeps: the screening's rule
    (analysis.measures.metrics.copy_keep_rows) over both prompts of the pair, whichever one is the target."""
    texts = [(e.text, n.text) for e, n in zip(p.pairs.emotion_prompts, p.pairs.neutral_prompts, strict=True)]
    ids = [[int(t) for b in (emotion_batch, neutral_batch) for t in b.input_ids[r][b.attention_mask[r].bool()]] for r in range(len(texts))]
    return copy_keep_rows(p.model.tokenizer, texts, ids, p.config.emotion, (p.lexicon_ids[p.config.emotion], p.lexicon_ids[NEUTRAL]))


def identity_control(p: Prepared, target: TokenBatch, clean: Arm, base: dict[str, np.ndarray], keep: Tensor | None = None) -> NoiseFloor:
    """Run the identity control on the requested sites and turn it into the noise floor."""
    c = p.config
    acts = capture(p.model, target, sorted({s.hook_name for s in p.sites}))
    scores, *_ = run_plan(
        p.model, target, identity_plan(acts, target), p.sites, clean, lex=p.lexicon_ids, emotion=c.emotion,
        words=p.lexicon_words, max_tokens=c.max_tokens, chunk_size=c.chunk_size, keep=keep,
    )
    diff = {k: scores[k] - base[k] for k in METRICS}
    return NoiseFloor(
        control_max={k: float(np.max(np.abs(d))) for k, d in diff.items()},
        floor={k: noise_floor(d, atol=c.noise_atol) for k, d in diff.items()},
        atol=c.noise_atol,
    )


@torch.no_grad()
def execute(p: Prepared) -> ExperimentResult:
    """Baseline once, the identity control, then every distinct site set (requested, top-1..top-K)
    under the plan, each with its random-site baseline."""
    c = p.config
    emotion_batch, neutral_batch = tokenize_pairs(p.model, p.pairs)
    plan, target, sources, plan_notes = build_plan(p, emotion_batch, neutral_batch)
    targets_neutral = KINDS[c.kind].targets_neutral(c)
    other = emotion_batch if targets_neutral else neutral_batch
    clean = run_arm(p.model, target, (), c.max_tokens, chunk_size=c.chunk_size, desc="baseline")
    keep = copy_keep(p, emotion_batch, neutral_batch)
    base_scores = score_arm(clean, clean, p.lexicon_ids, c.emotion, p.lexicon_words, keep)
    other_m = emotion_score(last_logits(p.model, other), p.lexicon_ids[c.emotion], p.lexicon_ids[NEUTRAL]).double().cpu().numpy()
    noise = identity_control(p, target, clean, base_scores, keep)
    clusters = span_clusters(p.pairs)
    templates = template_labels(p.pairs)
    run = {"lex": p.lexicon_ids, "emotion": c.emotion, "words": p.lexicon_words, "max_tokens": c.max_tokens,
           "chunk_size": c.chunk_size, "keep": keep}
    stats = {"targets_neutral": targets_neutral, "n_resamples": c.n_resamples, "seed": c.seed}

    done: dict[tuple[Site, ...], Outcome] = {}
    groups = [p.sites, *p.cumulative]
    for sites in tqdm(groups, desc="interventions", disable=progress_disabled() or len(groups) == 1, leave=False):
        if sites in done:  # top-1 of the curve is often the requested head: run it once
            continue
        scores, first, margin, n_draws = run_plan(p.model, target, plan, sites, clean, **run)
        random_scores = tuple(run_plan(p.model, target, plan, r, clean, **run)[0] for r in p.random_sets[sites])
        done[sites] = Outcome(
            sites, scores, first, margin, n_draws, p.random_sets[sites], random_scores,
            evidence(scores, random_scores, base_scores, other_m, clusters=clusters, templates=templates, **stats),
        )
    conf_idx: tuple[int, ...] | None = None
    if p.confirmation is not None:
        conf_idx = tuple(in_half(p.pairs, p.confirmation))
        sub = np.asarray(conf_idx, dtype=int)
        conf_clusters = [clusters[i] for i in conf_idx]
        base_sub = {k: v[sub] for k, v in base_scores.items()}
        for sites, o in done.items():
            done[sites] = dataclasses.replace(o, evidence_confirmation=evidence(
                {k: v[sub] for k, v in o.scores.items()}, [{k: v[sub] for k, v in r.items()} for r in o.random_scores],
                base_sub, other_m[sub], clusters=conf_clusters, templates=[templates[i] for i in conf_idx], **stats,
            ))
    control = control_arm(p, neutral_batch)
    target_side, source_side = (p.pairs.neutral_prompts, p.pairs.emotion_prompts) if targets_neutral else \
        (p.pairs.emotion_prompts, p.pairs.neutral_prompts)
    return ExperimentResult(
        config=c,
        pairs=p.pairs,
        target_prompts=tuple(x.text for x in target_side),
        source_prompts=tuple(x.text for x in source_side) if c.kind == "patching" else None,
        baseline=clean,
        baseline_scores=base_scores,
        main=done[p.sites],
        cumulative=tuple(done[s] for s in p.cumulative),
        other_m=other_m,
        noise=noise,
        resample_sources=sources,
        notes=p.notes + tuple(plan_notes),
        confirmation_index=conf_idx,
        lexicon_words=p.lexicon_words,
        computed_on=p.model.precision.record(),
        control=control,
    )
