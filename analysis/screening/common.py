"""What head and unit screening share: emotion/neutral batches, the screening config, FDR correction and the top-list formatter."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch
from torch import Tensor

from analysis.core.loading import LoadedModel
from analysis.core.prompts import in_half, keep_aligned, lexicon_word_ids, load_lexicon, PromptPairs, span_clusters, split_expressions, subset, TokenBatch
from analysis.core.vocabulary import EMOTIONS, NEUTRAL, POSITION_MODES
from analysis.errors import InputError
from analysis.interventions.edits import position_map, tokenize_pairs
from analysis.metrics import keyword_count
from analysis.stats import benjamini_hochberg, check_resolution, min_clusters, min_resamples, one_sample_effect, spearman


@dataclass(frozen=True)
class PairBatches:
    """Emotion and neutral prompts of the screened pairs, padded to one width, and the patch map."""

    emotion: TokenBatch
    neutral: TokenBatch
    idx: Tensor  # [batch, pos] source position for each target position
    mask: Tensor  # [batch, pos] which target positions are patched
    kept: list[int]  # indices of the pairs used (all pairs unless `all` dropped unequal ones)


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
    return PairBatches(emo, neu, idx, mask, kept)


def screened_pairs(cfg: ScreeningConfig, pairs: PromptPairs) -> tuple[PromptPairs, dict]:
    """The pairs the screening ranks on: the selection half of the expressions when the split
    is on (analysis.core.prompts.split_expressions), else all; and what it records about them."""
    n_total = len(set(span_clusters(pairs)))
    if not cfg.split:
        return pairs, {"half": "all", "n_expressions": n_total, "n_expressions_total": n_total}
    sel, _ = split_expressions(pairs, seed=cfg.seed, selection_share=cfg.selection_share, need=min_clusters())
    return subset(pairs, in_half(pairs, sel)), {"half": "selection", "n_expressions": len(sel), "n_expressions_total": n_total}


def split_record(cfg: ScreeningConfig) -> dict:
    """The screening document's `split` block: which half every score of it comes from."""
    return {
        "enabled": cfg.split, "selection_share": cfg.selection_share if cfg.split else None, "seed": cfg.seed,
        "half": "selection" if cfg.split else "all",
        "meaning": "every score here is over the selection half of each emotion's expressions; the experiments "
        "confirm on the other half" if cfg.split else "split off (exploratory): every score is over all expressions",
    }


def copy_keep(
    model: LoadedModel, pairs: PromptPairs, pb: PairBatches, emotion: str, ids: tuple[list[int], list[int]]
) -> Tensor:
    """Per screened pair, which lexicon tokens (`ids`: emotion then neutral) the copy-free M keeps.

    The copy control (issue 14): a head that copies an earlier token raises M when a lexicon
    word is in the prompt, with no emotion at all. Left out for a pair: every token id of its
    emotion prompt or neutral twin, and every single-token spelling of a lexicon word that
    occurs in either prompt's text (a whole word, either case), so " Sorry" goes when "sorry" is there.
    """
    used = subset(pairs, pb.kept)
    words = {name: lexicon_word_ids(model.tokenizer, load_lexicon(name)) for name in (emotion, NEUTRAL)}
    order = [*ids[0], *ids[1]]
    keep = torch.ones(len(used), len(order), dtype=torch.bool)
    for r, (e, n) in enumerate(zip(used.emotion_prompts, used.neutral_prompts, strict=True)):
        gone = {int(t) for b in (pb.emotion, pb.neutral) for t in b.input_ids[r][b.attention_mask[r].bool()]}
        for table in words.values():
            gone.update(i for w, w_ids in table.items() if keyword_count(e.text, [w]) or keyword_count(n.text, [w]) for i in w_ids)
        keep[r] = torch.tensor([i not in gone for i in order])
    return keep


def exact_fields(exact: np.ndarray, copy_free: np.ndarray, cfg: ScreeningConfig, clusters) -> dict:
    """The exact fields of one head's or unit's screening row: ΔM's effect (n, interval, p) over
    the pairs, and the copy control beside it (copy-free M is NaN where a pair has none)."""
    eff = one_sample_effect(exact, n_resamples=cfg.n_resamples, seed=cfg.seed, clusters=clusters)
    usable = np.isfinite(copy_free)
    return {
        "exact": eff.mean, "exact_ci_low": eff.ci_low, "exact_ci_high": eff.ci_high, "exact_p": eff.p,
        "exact_n": eff.n, "exact_n_clusters": eff.n_clusters,
        **copy_fields(eff.mean, eff.ci_low, eff.ci_high, float(copy_free[usable].mean()) if usable.any() else None, cfg.copy_max_share),
        "exact_copy_free_n": int(usable.sum()),
    }


def copy_fields(exact: float | None, ci_low: float | None, ci_high: float | None, copy_free: float | None, max_share: float) -> dict:
    """The copy-control fields of a screening row.

    `copy_share` = copy-free effect / ΔM. Flagged (`copy_flag`): ΔM is above the noise floor
    (its 95 % interval excludes 0) and the copy-free effect is below `max_share` of it
    (same sign, smaller, or the opposite sign): most of the effect is on lexicon tokens the
    prompt already contains. Not computable (no exact ΔM, or no usable copy-free M): None, not flagged.
    """
    if exact is None or copy_free is None or not np.isfinite(copy_free) or exact == 0:
        return {"exact_copy_free": copy_free, "copy_share": None, "copy_flag": False}
    share = copy_free / exact
    above_noise = ci_low is not None and ci_high is not None and (ci_low > 0 or ci_high < 0)
    return {"exact_copy_free": copy_free, "copy_share": float(share), "copy_flag": bool(above_noise and share < max_share)}


def copy_record(cfg: ScreeningConfig, scores: list[dict]) -> dict:
    """The screening document's `copy_control` block: the rule and the flagged components."""
    comp = cfg.component if cfg.component == "head" else "neuron"
    return {
        "score": "exact_copy_free: the exact patching effect on M over the lexicon tokens that occur in neither "
        "prompt of the pair (every token id of both prompts and every spelling of a lexicon word found in "
        "their text left out), mean over the pairs with a usable copy-free M (exact_copy_free_n)",
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
    max_unaligned_share: float = 0.2  # positions all: most of an emotion's pairs that may be left out (keep_aligned)

    component = "head"  # what exact_top_k counts (a class attribute, not a field)

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
        lines.append(
            f"{i:>3}. Layer {s['layer']}, {component.capitalize()} {s[component]}, Emotion: {s['emotion']}, "
            f"{key}: {s[key]:+.6f}{extra}"
        )
    return "\n".join(lines)
