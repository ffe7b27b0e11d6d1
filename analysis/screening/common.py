"""What head and unit screening share: emotion/neutral batches, the screening config, the noise floor,
the FDR family and correction, attribution / exact ratios and the top-list formatter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from analysis.core.loading import LoadedModel
from analysis.core.sites import Site
from analysis.core.prompts import (
    aligned_pairs, in_half, keep_aligned, Prompt, PromptPairs, span_clusters, split_expressions, subset, TokenBatch,
)
from analysis.base.vocabulary import EMOTIONS, POSITION_MODES
from analysis.base.errors import InputError
from analysis.interventions.edits import position_map, tokenize_pairs
from analysis.interventions.exact import clean_scores, exact_patching_sites
from analysis.interventions.plans import source_pools, template_groups
from analysis.measures.metrics import copy_keep_rows
from analysis.base.contract import Q_LEVEL
from analysis.measures.stats import benjamini_hochberg, check_resolution, min_clusters, min_resamples, no_effect, noise_floor, one_sample_effect, spearman


@dataclass(frozen=True)
class PairBatches:
    """Emotion and neutral prompts of the screened pairs, padded to one width, and the patch map."""

    emotion: TokenBatch
    neutral: TokenBatch
    idx: Tensor  # [batch, pos] source position for each target position
    mask: Tensor  # [batch, pos] which target positions are patched
    kept: list[int]  # indices of the pairs used (all pairs unless `all` dropped unequal ones)
    pairs: PromptPairs | None = None  # the pairs these batches were made from (`kept` indexes them)


def pair_batches(model: LoadedModel, pairs: PromptPairs, positions: str, *, max_unaligned_share: float) -> PairBatches:
    emo, neu = tokenize_pairs(model, pairs)
    kept = list(range(len(pairs)))
    if positions == "all":
        # Position-by-position patching needs twins of equal token length; others are dropped
        # (and counted in the output), up to the share the profile may lose (keep_aligned).
        kept = keep_aligned(model.tokenizer, pairs, max_unaligned_share=max_unaligned_share, model=model.spec.name)
        if len(kept) < len(pairs):
            emo, neu = tokenize_pairs(model, subset(pairs, kept))
    idx, mask = position_map(positions, source=emo, target=neu)
    return PairBatches(emo, neu, idx, mask, kept, pairs)


def screened_pairs(cfg: ScreeningConfig, pairs: PromptPairs) -> tuple[PromptPairs, dict]:
    """The pairs the screening ranks on: the selection half of the expressions when the split
    is on (analysis.core.prompts.split_expressions), else all; and what it records about them."""
    n_total = len(set(span_clusters(pairs)))
    if not cfg.split:
        return pairs, {"half": "all", "n_expressions": n_total, "n_expressions_total": n_total}
    sel, _ = split_expressions(pairs, seed=cfg.seed, selection_share=cfg.selection_share, need=min_clusters())
    return subset(pairs, in_half(pairs, sel)), {"half": "selection", "n_expressions": len(sel), "n_expressions_total": n_total}


def half_counts(pb: PairBatches) -> dict[str, int]:
    """How many pairs the batches were made from, how many of them they use (`positions: all`
    leaves out unaligned twins) and how many expressions (clusters) those cover."""
    assert pb.pairs is not None, "batches made by pair_batches carry their pairs"
    clusters = span_clusters(pb.pairs)
    return {"n_pairs": len(pb.pairs), "n_pairs_used": len(pb.kept), "n_clusters": len({clusters[i] for i in pb.kept})}


def pairs_record(half: dict, screened: PairBatches, exact_half: str, tested: PairBatches) -> dict:
    """One emotion's entry of a screening document's `pairs` block.

    Two halves can be in play (exact_pairs): the screened one, which `half` names and every
    attribution (and delta_attn) is over, and the one the exact tests ran on (`exact_half`). Each
    count is read from its own half's batches, which carry their pairs: the screenings once took
    every count after the batches variable had been rebound to the confirmation half, so the
    unit screening's record said `half: selection` with the confirmation half's counts (issue 30).
    `n_*`: the screened half; `exact_n_*`: the half of the exact tests (the same half when
    exact_half equals half).
    """
    return {**half, **half_counts(screened), "exact_half": exact_half, **{f"exact_{k}": v for k, v in half_counts(tested).items()}}


def exact_pairs(cfg: ScreeningConfig, pairs: PromptPairs, screened: PromptPairs, n_components: int) -> tuple[PromptPairs, str]:
    """The pairs the exact tests run on, and which half they are.

    Every component tested (exact_top_k 0 or >= `n_components`): the screened pairs, and the BH
    family is every component × emotion. A top-k chosen by |attribution| must not be tested on
    the data that chose it (a selected family: the chosen ones come out "significant" because
    they were chosen), so with the split on the top-k (ranked on the selection half) are tested
    on the confirmation half. With the split off there is no other half: the exact tests run on
    the same pairs and `family_record` says their q is exploratory.
    """
    if cfg.split and 0 < cfg.exact_top_k < n_components:
        _, conf = split_expressions(pairs, seed=cfg.seed, selection_share=cfg.selection_share, need=min_clusters())
        return subset(pairs, in_half(pairs, conf)), "confirmation"
    return screened, "selection" if cfg.split else "all"


def family_record(cfg: ScreeningConfig, scores: list[dict], n_components: int, halves: dict[str, str]) -> dict:
    """The screening document's `bh_family` block: which tests share one Benjamini–Hochberg
    correction, how many, how they were chosen, and on which half they were tested."""
    comp = "heads" if cfg.component == "head" else "MLP units"
    k = cfg.exact_top_k if 0 < cfg.exact_top_k < n_components else n_components
    half = sorted(set(halves.values()))
    if k == n_components:
        chosen = f"every one of the model's {n_components} {comp}, for every emotion: no pre-selection"
        valid = True
    elif cfg.split:
        chosen = (f"the top {k} {comp} per emotion by |attribution| on the selection half, exact-tested on the "
                  f"confirmation half (the expressions that did not choose them)")
        valid = True
    else:
        chosen = (f"the top {k} {comp} per emotion by |attribution| on the same expressions they are tested on "
                  f"(split off): a selected family, so q is exploratory, not a false-discovery rate over all {comp}")
        valid = False
    return {
        "size": sum(1 for s in scores if s.get("exact_p") is not None),
        "per_emotion": k, "n_emotions": len(cfg.emotions), "n_components": n_components,
        "chosen": chosen, "tested_on": half[0] if len(half) == 1 else half, "valid_fdr": valid,
        "rule": "exact_q: Benjamini–Hochberg over every exact p of the family (all emotions together)",
    }


def split_record(cfg: ScreeningConfig) -> dict:
    """The screening document's `split` block: which half every score of it comes from."""
    return {
        "enabled": cfg.split, "selection_share": cfg.selection_share if cfg.split else None, "seed": cfg.seed,
        "half": "selection" if cfg.split else "all",
        "meaning": "every score here is over the selection half of each emotion's expressions; the experiments "
        "confirm on the other half" if cfg.split else "split off (exploratory): every score is over all expressions",
    }


def identity_control(
    model: LoadedModel, pb: PairBatches, neutral_acts: dict[str, Tensor], sites: list[Site], ids: tuple[list[int], list[int]],
) -> Float[Tensor, "site batch"]:
    """The identity/self-patch control: each neutral prompt patched with its OWN activations
    (`neutral_acts`, captured as the emotion source is) at the same positions, through the same
    fast exact path and the same unchanged prefix as the real patching. In exact arithmetic
    every value is 0; what it shows is the float noise of that path (the prefix's KV cache, the
    restart at the edited layer, the capture), the floor under which an effect is "no effect"."""
    b, t = pb.neutral.input_ids.shape
    own = torch.arange(t).expand(b, t)  # every position is its own source
    res = exact_patching_sites(model, pb.neutral, neutral_acts, own, pb.mask, unchanged_prefix(pb), sites, ids, "identity control")
    return torch.stack([res[site] for site in sites])


def control_sites(exact: list[tuple[int, int]], kind: str) -> list[Site]:
    """One control site per layer that has an exact score (its first component): the float noise
    of the fast path depends on where the forward restarts (the layer), so every restart layer
    is measured, at a cost of one forward per layer."""
    first: dict[int, int] = {}
    for layer, index in sorted(exact):
        first.setdefault(layer, index)
    return [Site(kind, layer, index) for layer, index in sorted(first.items())]


def control_floor(cfg: ScreeningConfig, control: np.ndarray, emotion: str) -> float:
    """The emotion's noise floor from its identity control (analysis.measures.stats.noise_floor)."""
    if not np.isfinite(control).all():
        raise InputError(f"the identity control of {cfg.model} ({emotion}) is not finite; refusing to write {cfg.model}'s screening")
    return noise_floor(control.ravel(), atol=cfg.noise_atol)


def floor_record(cfg: ScreeningConfig, controls: dict[str, tuple[list[Site], np.ndarray]]) -> dict:
    """The screening document's `noise_floor` block: per emotion the control's largest |effect|
    and the floor (that plus `noise_atol`, analysis.measures.stats.noise_floor), and the rule."""
    by_emotion = {
        e: {
            "max_abs_control": float(np.max(np.abs(v))), "floor": control_floor(cfg, v, e),
            "sites": [f"{s.layer}:{s.index}" for s in sites], "n": int(v.size),
        }
        for e, (sites, v) in controls.items()
    }
    return {
        "control": "identity/self-patch: each neutral prompt patched with its own activations at the patched positions "
        "through the same fast exact path (one component per restart layer, `sites`); 0 in exact arithmetic",
        "atol": cfg.noise_atol,
        "by_emotion": by_emotion,
        "floor": max(v["floor"] for v in by_emotion.values()),
        "rule": "no_effect: |exact| <= the emotion's floor (max |control| + atol); such a row is never starred, "
        "never an argmax, never counted significant, and has no attribution ratio",
    }


def copy_keep(
    model: LoadedModel, pairs: PromptPairs, pb: PairBatches, emotion: str, ids: tuple[list[int], list[int]]
) -> Tensor:
    """Per screened pair, which lexicon tokens (`ids`: emotion then neutral) the copy-free M keeps.

    The copy control (issue 14): a head that copies an earlier token raises M when a lexicon
    word is in the prompt, with no emotion at all. Left out for a pair: every token id of its
    emotion prompt or neutral twin, and every single-token spelling of a lexicon word that
    shares a stem with a word of either prompt's text (analysis.measures.metrics.shares_stem: the same
    word in either case, or the same first 4 letters), so " Sorry" goes when "sorry" is there
    and " thankful" when "thanks" is (issue 23: a head that turns "thank" into " thanks" copies).
    """
    used = subset(pairs, pb.kept)
    texts = [(e.text, n.text) for e, n in zip(used.emotion_prompts, used.neutral_prompts, strict=True)]
    prompt_ids = [
        [int(t) for b in (pb.emotion, pb.neutral) for t in b.input_ids[r][b.attention_mask[r].bool()]] for r in range(len(used))
    ]
    return copy_keep_rows(model.tokenizer, texts, prompt_ids, emotion, ids)


def exact_fields(exact: np.ndarray, copy_free: np.ndarray, cfg: ScreeningConfig, clusters, floor: float, attribution: float,
                 templates=None) -> dict:
    """The exact fields of one head's or unit's screening row: ΔM's effect (n, interval, p) over
    the pairs, whether it is at or below the noise `floor` (`no_effect`), the attribution / exact
    ratio, and the copy control beside it (copy-free M is NaN where a pair has none). `templates` (each
    pair's template ending) make the standard error two-way, cluster × template (analysis.measures.stats)."""
    eff = one_sample_effect(exact, n_resamples=cfg.n_resamples, seed=cfg.seed, clusters=clusters, templates=templates)
    usable = np.isfinite(copy_free)
    quiet = no_effect(eff, floor)
    return {
        "exact": eff.mean, "exact_ci_low": eff.ci_low, "exact_ci_high": eff.ci_high, "exact_p": eff.p,
        "exact_n": eff.n, "exact_n_clusters": eff.n_clusters, "no_effect": quiet,
        **ratio_fields(attribution, eff.mean, quiet),
        **copy_fields(eff.mean, eff.ci_low, eff.ci_high, float(copy_free[usable].mean()) if usable.any() else None,
                      cfg.copy_max_share, quiet),
        "exact_copy_free_n": int(usable.sum()),
    }


# attribution / exact outside [RATIO_LOW, RATIO_HIGH] is flagged: attribution is off by more than 3×
# (or has the wrong sign), so its ranking cannot stand in for the exact one.
RATIO_LOW, RATIO_HIGH = 0.3, 3.0


def ratio_fields(attribution: float, exact: float | None, quiet: bool) -> dict:
    """`attribution_ratio` = attribution / exact and `ratio_flag` (ratio below RATIO_LOW, the
    opposite sign included, or above RATIO_HIGH). Only where the exact effect is above the noise
    floor: below it the ratio divides by float noise (None, not flagged)."""
    if exact is None or quiet or exact == 0:
        return {"attribution_ratio": None, "ratio_flag": False}
    r = attribution / exact
    return {"attribution_ratio": float(r), "ratio_flag": bool(r < RATIO_LOW or r > RATIO_HIGH)}


def ratio_record(cfg: ScreeningConfig, scores: list[dict]) -> dict:
    """The screening document's `attribution_ratio` block: the rule and the flagged components."""
    comp = cfg.component if cfg.component == "head" else "neuron"
    return {
        "rule": f"ratio_flag: attribution / exact < {RATIO_LOW:g} (opposite sign included) or > {RATIO_HIGH:g}, "
        "only where the exact effect is above the noise floor (no_effect false)",
        "n_compared": sum(1 for s in scores if s.get("attribution_ratio") is not None),
        "flagged": [
            {"layer": s["layer"], comp: s[comp], "emotion": s["emotion"], "attribution": s["attribution"],
             "exact": s["exact"], "attribution_ratio": s["attribution_ratio"]}
            for s in scores if s.get("ratio_flag")
        ],
    }


def copy_fields(
    exact: float | None, ci_low: float | None, ci_high: float | None, copy_free: float | None, max_share: float, quiet: bool,
) -> dict:
    """The copy-control fields of a screening row.

    `copy_share` = copy-free effect / ΔM. Flagged (`copy_flag`): ΔM is an effect (its 95 %
    interval excludes 0 and it is above the noise floor: `quiet` false) and the copy-free effect is below `max_share` of it
    (same sign, smaller, or the opposite sign): most of the effect is on lexicon tokens the
    prompt already contains. Not computable (no exact ΔM, or no usable copy-free M): None, not flagged.
    """
    if exact is None or copy_free is None or not np.isfinite(copy_free) or exact == 0:
        return {"exact_copy_free": copy_free, "copy_share": None, "copy_flag": False}
    share = copy_free / exact
    above_noise = not quiet and ci_low is not None and ci_high is not None and (ci_low > 0 or ci_high < 0)
    return {"exact_copy_free": copy_free, "copy_share": float(share), "copy_flag": bool(above_noise and share < max_share)}


def copy_record(cfg: ScreeningConfig, scores: list[dict]) -> dict:
    """The screening document's `copy_control` block: the rule and the flagged components."""
    comp = cfg.component if cfg.component == "head" else "neuron"
    return {
        "score": "exact_copy_free: the exact patching effect on M over the lexicon tokens that occur in neither "
        "prompt of the pair (every token id of both prompts and every spelling of a lexicon word that shares "
        "a stem with a word of their text, the same word or the same first 4 letters, left out), mean over the pairs with a usable copy-free M (exact_copy_free_n)",
        "rule": f"copy_flag: exact's 95 % interval excludes 0 and exact_copy_free / exact < {cfg.copy_max_share:g} (copy_share)",
        "max_share": cfg.copy_max_share,
        "flagged": [
            {"layer": s["layer"], comp: s[comp], "emotion": s["emotion"], "exact": s["exact"],
             "exact_copy_free": s["exact_copy_free"], "copy_share": s["copy_share"]}
            for s in scores if s.get("copy_flag")
        ],
    }


def unchanged_prefix(pb: PairBatches) -> int:
    """Columns before this one are identical in the clean and every patched neutral run.

    Nothing is patched before the first masked column, and where twins have the same tokens
    (and padding) up to a column, patching their z there writes back the same value; causal
    attention keeps everything before the first real change as it was.
    """
    t = pb.neutral.input_ids.shape[1]
    masked = pb.mask.any(0).nonzero().flatten()
    first_masked = int(masked[0]) if len(masked) else t
    differs = (pb.emotion.input_ids != pb.neutral.input_ids) | (pb.emotion.attention_mask != pb.neutral.attention_mask)
    cols = differs.any(0).nonzero().flatten()
    first_diff = int(cols[0]) if len(cols) else t
    return min(max(first_masked, first_diff), t - 1)


@dataclass(frozen=True)
class ScreeningConfig:
    model: str
    profile: str
    emotions: tuple[str, ...] = EMOTIONS
    positions: str = "all"
    exact_top_k: int = 0
    n_resamples: int = 10000
    seed: int = 0
    split: bool = True  # held-out confirmation: rank on the selection half of the expressions only
    selection_share: float = 0.5
    copy_max_share: float = 0.5  # copy control: flag when the copy-free effect is below this share of ΔM
    noise_atol: float = 1.0e-5  # noise floor: the identity control's max |effect| plus this (params noise_floor.atol)
    max_unaligned_share: float = 0.2  # positions all: most of an emotion's pairs that may be left out (keep_aligned)
    specificity_min_share: float = 0.05  # `specific`: the (emotion − neutral′) interval clears this share of the gap

    component = "head"  # what exact_top_k counts (a class attribute, not a field)

    @classmethod
    def from_params(cls, p: Any, *, model: str, **overrides: Any) -> "ScreeningConfig":
        """The head screening's config for `model` under params `p` (analysis.settings.params.Params), as the
        `screen` stage builds it; `overrides` (a CLI flag, the validate stage's split=False) replace
        fields by name. One place, so that what is validated is what is screened (issue 24.7)."""
        fields = dict(
            model=model,
            profile=p.profile,
            emotions=tuple(p.emotions),
            positions=p.screening.positions,
            exact_top_k=p.screening.exact_top_k,
            n_resamples=p.screening.n_resamples,
            seed=p.seed,
            split=p.split.enabled,
            selection_share=p.split.selection_share,
            copy_max_share=p.copy_control.max_share,
            noise_atol=p.noise_floor.atol,
            specificity_min_share=p.specificity.min_share,
            max_unaligned_share=p.alignment.max_unaligned_share,
        )
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise TypeError(f"ScreeningConfig has no field {unknown[0]!r}")
        return cls(**{**fields, **overrides})

    def __post_init__(self) -> None:
        bad = [e for e in self.emotions if e not in EMOTIONS]
        if bad or not self.emotions:
            raise InputError(f"unknown emotion {bad[0]!r}; allowed: {', '.join(EMOTIONS)}" if bad else "no emotion given")
        if len(set(self.emotions)) != len(self.emotions):
            raise InputError(f"emotions {' '.join(self.emotions)}: an emotion is given twice")
        if self.positions not in POSITION_MODES:
            raise InputError(f"unknown positions {self.positions!r}; allowed: {', '.join(POSITION_MODES)}")
        if self.exact_top_k < 0:
            raise InputError(f"--exact-top-k must be >= 0 (0 = every {self.component}; got {self.exact_top_k})")
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0 (got {self.seed})")
        if not (np.isfinite(self.specificity_min_share) and 0 <= self.specificity_min_share < 1):
            raise InputError(f"specificity.min_share must be in [0, 1) (got {self.specificity_min_share})")
        if not (np.isfinite(self.noise_atol) and self.noise_atol >= 0):
            raise InputError(f"noise floor atol must be a finite number >= 0 (got {self.noise_atol})")
        need = min_resamples()
        if self.n_resamples < need:
            raise InputError(
                f"--n-resamples must be at least {need} for a 95 % interval (got {self.n_resamples})"
            )


def check_before_work(model: LoadedModel, cfg: ScreeningConfig, pairs: dict[str, PromptPairs]) -> None:
    """Everything knowable before the first forward pass, for every emotion at once: the prompts
    fit the model's context, and each emotion has enough clusters and resamples for its interval."""
    from analysis.core.loading import check_context
    from analysis.core.prompts import span_clusters

    for emotion in cfg.emotions:
        # the whole profile first: its alignment share is what alignment.max_unaligned_share bounds
        pb = pair_batches(model, pairs[emotion], cfg.positions, max_unaligned_share=cfg.max_unaligned_share)
        longest = int(max(pb.emotion.lengths.max(), pb.neutral.lengths.max()))
        check_context(model, longest, 0, what=f"the longest {emotion} prompt (with BOS)")
        clusters = [span_clusters(pairs[emotion])[i] for i in pb.kept]
        check_resolution(len(set(clusters)), n_resamples=cfg.n_resamples, seed=cfg.seed)
        # every pair the screening may use has a neutral′ (InputError naming the first that has none)
        neutral_control_prompts(model, pairs[emotion], subset(pairs[emotion], pb.kept), cfg.positions, cfg.seed,
                                max_missing_share=cfg.max_unaligned_share)


def correct_and_correlate(scores: list[dict], emotions: tuple[str, ...]) -> dict[str, float | None]:
    """Set each row's BH q across every exact score of the run (in place); return the Spearman
    correlation of attribution and exact per emotion (over the rows that have both)."""
    q = benjamini_hochberg([s["exact_p"] if s["exact_p"] is not None else np.nan for s in scores])
    for s, qv in zip(scores, q, strict=True):
        s["exact_q"] = None if np.isnan(qv) else float(qv)
    return {
        e: spearman(
            [s["attribution"] for s in scores if s["emotion"] == e and s["exact"] is not None],
            [s["exact"] for s in scores if s["emotion"] == e and s["exact"] is not None],
        )
        for e in emotions
    }


def top_lines(doc: dict, rows: list[dict], n: int, key: str, component: str, ci_format: str = "+.4f") -> str:
    """The seed's "top heads" list for ranked rows of heads (component "head") or MLP units
    ("neuron"): the score named, and its interval and q where it is exact."""
    noun = "heads" if component == "head" else "MLP units"
    lines = [f"Top {n} {noun} by |{key}| ({doc['model']}, {doc['profile']}):"]
    for i, s in enumerate(rows, 1):
        extra = ""
        if key == "exact":
            extra = f"  95% CI [{s['exact_ci_low']:{ci_format}}, {s['exact_ci_high']:{ci_format}}]  q={s['exact_q']:.3g}"
            if s.get("no_effect"):
                extra += "  (no effect: at or below the noise floor)"
        lines.append(
            f"{i:>3}. Layer {s['layer']}, {component.capitalize()} {s[component]}, Emotion: {s['emotion']}, "
            f"{key}: {s[key]:+.6f}{extra}"
        )
    return "\n".join(lines)


# --- the neutral control and specificity (issue 23) -------------------------------------------


def spliced(twin: Prompt, span: str) -> Prompt:
    """The twin with its span replaced by `span`: the same template (greeting, text before and
    after) around another neutral span."""
    start = twin.span[0]
    return Prompt(twin.before + span + twin.after, (start, start + len(span)), source=twin.source)


def neutral_control_prompts(
    model: LoadedModel, loaded: PromptPairs, used: PromptPairs, positions: str, seed: int, side: str = "neutral",
    max_missing_share: float | None = None,
) -> tuple[list[Prompt | None], int]:
    """Per pair of `used` (e_i, n_i), its neutral′: n_i's template around the span of another neutral
    prompt n_j of the emotion's twins (`loaded.neutral_prompts`, the emotion's own twin file or the
    shared one), None where there is none; and how many pairs drew n_j from another template.

    The control patch (neutral′ → n_i) then changes what the emotion patch (e_i → n_i) changes,
    the span and what reads it, with a neutral span instead of an emotional one, so a component
    that reacts to ANY change of the span moves M alike in both. n_j is drawn as the resample
    ablation draws (analysis.interventions.plans.source_pools: the same template, i.e. text after
    the span, where it has one, else any; seeded by `seed`), among the twins whose span differs
    from n_i's (never the twin itself) and, for positions `all` (patched position by position),
    whose spliced prompt has n_i's token count and span position under the model's tokenizer.
    A pair with no such span has no control and is left out of the specificity test (as an
    unaligned pair is left out of patching at positions all); more of them than `max_missing_share`
    of the pairs (alignment.max_unaligned_share, checked on the whole profile before any work; None:
    not checked) is an InputError: the profile has too few neutral spans. (`side` names the prompts
    in that message: the noising experiment draws e′ from the emotion prompts this way, passing the
    pairs with their sides swapped.)
    """
    twins = list(loaded.neutral_prompts)
    groups = template_groups([n.after for n in twins])
    try:
        rows = [twins.index(n) for n in used.neutral_prompts]
    except ValueError:
        raise ValueError("neutral_control_prompts: a used twin is not among the loaded twins") from None
    fits: dict[int, set[int]] = {}

    def admitted(i: int) -> set[int]:
        if i not in fits:
            cands = [j for j in range(len(twins)) if twins[j].span_text != twins[i].span_text]
            if positions == "all" and cands:
                made = [spliced(twins[i], twins[j].span_text) for j in cands]
                ok = aligned_pairs(model.tokenizer, PromptPairs(loaded.emotion, tuple(made), (twins[i],) * len(made)))
                cands = [cands[k] for k in ok]
            fits[i] = set(cands)
        return fits[i]

    pools, fell_back = source_pools(groups, rows, lambda i, j: j in admitted(i))
    missing = [r for r, pool in enumerate(pools) if not pool]
    allowed = math.floor(max_missing_share * len(rows) + 1e-9) if max_missing_share is not None else len(rows)
    if len(missing) > allowed or (missing and len(missing) == len(rows)):
        n = twins[rows[missing[0]]]
        how = f" with its token count under the tokenizer of {model.spec.name}" if positions == "all" else ""
        control = "neutral" if side == "neutral" else "emotion"
        raise InputError(
            f"{loaded.origin}: too few {side} spans for the {control} control: {len(missing)} of {len(rows)} {side} prompts of "
            f"{loaded.emotion}'s pairs have no other {side} span{how} (first: {n.text!r}), more than "
            f"alignment.max_unaligned_share {max_missing_share or 0:g} allows (at most {allowed}); add {side} prompts of their templates"
        )
    rng = np.random.default_rng([seed, 23])
    picks = [int(rng.choice(pool)) if pool else None for pool in pools]
    out = [None if j is None else spliced(n, twins[j].span_text) for n, j in zip(used.neutral_prompts, picks, strict=True)]
    return out, int(sum(f for f, pool in zip(fell_back, pools, strict=True) if pool))


@dataclass(frozen=True)
class NeutralControl:
    """The neutral′ → twin patch of one emotion's screened pairs (rows as the emotion patch's)."""

    batches: PairBatches  # emotion: the neutral′ prompts (the source), neutral: the twins (the target); rows `rows`
    rows: list[int]  # the emotion patch's rows (pb) that have a neutral′ (neutral_control_prompts), in order
    fallbacks: int  # pairs whose template had no usable neutral span (drawn from every template)
    n_used: int  # the emotion patch's pairs (those of `rows` and those without a neutral′)
    gap: float  # the emotion–neutral gap: mean over the pairs of M(emotion prompt) − M(twin)


def neutral_control(model: LoadedModel, cfg: ScreeningConfig, loaded: PromptPairs, pairs: PromptPairs, pb: PairBatches,
                    ids: tuple[list[int], list[int]]) -> NeutralControl:
    """The neutral control of `pairs` (batched as `pb`): neutral′ prompts (neutral_control_prompts)
    as the source, the same twins as the target, patched at the same positions rule."""
    used = subset(pairs, pb.kept)
    prompts, fallbacks = neutral_control_prompts(model, loaded, used, cfg.positions, cfg.seed)
    rows = [r for r, x in enumerate(prompts) if x is not None]
    control = PromptPairs(pairs.emotion, tuple(prompts[r] for r in rows), tuple(used.neutral_prompts[r] for r in rows))
    emo, neu = tokenize_pairs(model, control)
    idx, mask = position_map(cfg.positions, source=emo, target=neu)
    gap = float((clean_scores(model, pb.emotion, ids) - clean_scores(model, pb.neutral, ids)).mean())
    return NeutralControl(PairBatches(emo, neu, idx, mask, list(range(len(rows)))), rows, fallbacks, len(used), gap)


def control_patching(
    model: LoadedModel, nc: NeutralControl, source_acts: dict[str, Tensor], sites: list[Site], ids: tuple[list[int], list[int]], desc: str,
) -> dict[Site, Tensor]:
    """Per site: M(twin with the site patched from its neutral′) − M(twin), per pair (the fast path)."""
    pb = nc.batches
    return exact_patching_sites(model, pb.neutral, source_acts, pb.idx, pb.mask, unchanged_prefix(pb), sites, ids, desc)


def specificity_fields(
    exact: np.ndarray, control: np.ndarray, parts: np.ndarray, cfg: ScreeningConfig, clusters: list[str], rows: list[int],
    templates: list[str] | None = None,
) -> dict:
    """A row's neutral-control and specificity fields: the control's ΔM (neutral′ → twin), the
    test of the difference (emotion → twin) − (neutral′ → twin) per pair, clustered as the exact
    effect (q and `specific` are set over the family by `correct_specificity`), and ΔM split into
    its two terms (Δ logsumexp of the emotion lexicon, of the neutral lexicon; ΔM = first − second).
    `exact`, `parts`, `clusters`: every pair; `control`: the pairs `rows` (those with a neutral′),
    over which the difference is taken; `templates` (every pair's), the second clustering dimension."""
    split = {"exact_lse_emotion": float(parts[:, 0].mean()), "exact_lse_neutral": float(parts[:, 1].mean())}
    kept = [clusters[r] for r in rows]
    diff = exact[rows] - control
    if len(set(kept)) < min_clusters():
        # Fewer expressions with a neutral′ than any 95 % test can use (a small half that lost a pair):
        # the difference is given, untested, and the row is not specific.
        return {"control": float(control.mean()), "specificity": float(diff.mean()), **split}
    eff = one_sample_effect(diff, n_resamples=cfg.n_resamples, seed=cfg.seed, clusters=kept,
                            templates=None if templates is None else [templates[r] for r in rows])
    return {
        "control": float(control.mean()), "specificity": eff.mean, "specificity_ci_low": eff.ci_low,
        "specificity_ci_high": eff.ci_high, "specificity_p": eff.p, **split,
    }


def specificity_threshold(cfg: ScreeningConfig, gap: float) -> float:
    return cfg.specificity_min_share * abs(gap)


def is_specific(row: dict, threshold: float) -> bool:
    """The specificity rule: the difference is significant (q < Q_LEVEL in the family), the exact
    effect is above the noise floor, and the difference's interval lies beyond `threshold`
    (specificity.min_share × |gap|) on the side of the exact effect's sign: the emotion patch moves
    M further, in its own direction, than a neutral span patched the same way. (A difference of
    the other sign means the neutral′ patch moved M more: not an emotion component.)"""
    q, lo, hi, ex = row.get("specificity_q"), row.get("specificity_ci_low"), row.get("specificity_ci_high"), row.get("exact")
    if q is None or lo is None or hi is None or ex is None or row.get("no_effect") or not q < Q_LEVEL:
        return False
    return bool(lo > threshold) if ex > 0 else bool(hi < -threshold) if ex < 0 else False


def correct_specificity(cfg: ScreeningConfig, scores: list[dict], gaps: dict[str, float]) -> None:
    """Set each row's `specificity_q` (Benjamini–Hochberg over the family's specificity p, all
    emotions together, as exact_q) and `specific` (in place)."""
    q = benjamini_hochberg([s.get("specificity_p") if s.get("specificity_p") is not None else np.nan for s in scores])
    for s, qv in zip(scores, q, strict=True):
        s["specificity_q"] = None if np.isnan(qv) else float(qv)
        s["specific"] = is_specific(s, specificity_threshold(cfg, gaps[s["emotion"]]))


def specificity_record(cfg: ScreeningConfig, scores: list[dict], controls: dict[str, NeutralControl]) -> dict:
    """The screening document's `specificity` block: the control, the rule, per emotion the gap,
    the threshold and the count of specific components."""
    comp = cfg.component if cfg.component == "head" else "neuron"
    return {
        "control": "neutral′ → twin: each twin patched (same component, same positions rule) from its neutral′, the twin's "
        "template around the span of another neutral twin of the emotion (same template text after the span where one "
        "exists, never the twin's own span; positions all: the same token count), seeded",
        "score": "specificity: per pair (emotion → twin ΔM) − (neutral′ → twin ΔM), mean, 95 % interval and p of the "
        "clustered sign-flip test (by expression, as exact); specificity_q: Benjamini–Hochberg over the family (as exact_q)",
        "rule": f"specific: specificity_q < {Q_LEVEL:g}, exact above the noise floor, and the specificity interval beyond "
        f"min_share ({cfg.specificity_min_share:g}) × |gap| on the side of exact's sign",
        "min_share": cfg.specificity_min_share,
        "split_dm": "exact_lse_emotion − exact_lse_neutral = exact: ΔM's two terms, Δ logsumexp over the emotion lexicon "
        "and over the neutral lexicon",
        "by_emotion": {
            e: {"gap": c.gap, "threshold": specificity_threshold(cfg, c.gap), "fallbacks": c.fallbacks,
                "n_pairs": len(c.rows), "n_without_control": c.n_used - len(c.rows),
                "tested": any(s.get("specificity_p") is not None for s in scores if s["emotion"] == e),
                "n_specific": sum(1 for s in scores if s["emotion"] == e and s.get("specific"))}
            for e, c in controls.items()
        },
        "specific": [{"layer": s["layer"], comp: s[comp], "emotion": s["emotion"], "exact": s["exact"], "control": s["control"],
                      "specificity": s["specificity"], "specificity_q": s["specificity_q"]}
                     for s in scores if s.get("specific")],
    }

