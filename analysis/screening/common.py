"""What head and unit screening share: emotion/neutral batches, the screening config, FDR correction and the top-list formatter."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
from torch import Tensor

from analysis.core.loading import LoadedModel
from analysis.core.prompts import PromptPairs, subset, TokenBatch
from analysis.core.vocabulary import EMOTIONS, POSITION_MODES
from analysis.errors import InputError
from analysis.interventions.edits import position_map, tokenize_pairs
from analysis.stats import benjamini_hochberg, check_resolution, min_resamples, spearman


@dataclass(frozen=True)
class PairBatches:
    """Emotion and neutral prompts of the screened pairs, padded to one width, and the patch map."""

    emotion: TokenBatch
    neutral: TokenBatch
    idx: Tensor  # [batch, pos] source position for each target position
    mask: Tensor  # [batch, pos] which target positions are patched
    kept: list[int]  # indices of the pairs used (all pairs unless `all` dropped unequal ones)


def pair_batches(model: LoadedModel, pairs: PromptPairs, positions: str) -> PairBatches:
    emo, neu = tokenize_pairs(model, pairs)
    kept = list(range(len(pairs)))
    if positions == "all":
        # Position-by-position patching needs twins of equal token length; others are dropped
        # (and counted in the output).
        same = (emo.lengths == neu.lengths) & (emo.span_mask == neu.span_mask).all(1)
        kept = same.nonzero().flatten().tolist()
        if not kept:
            raise InputError(
                f"positions=all: no pair of {pairs.emotion} has equal token length under {model.spec.name}; "
                f"use positions last or span"
            )
        if len(kept) < len(pairs):
            emo, neu = tokenize_pairs(model, subset(pairs, kept))
    idx, mask = position_map(positions, source=emo, target=neu)
    return PairBatches(emo, neu, idx, mask, kept)


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
        pb = pair_batches(model, pairs[emotion], cfg.positions)
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
