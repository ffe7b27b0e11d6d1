"""Benchmark models with known, hard answers (issue 16): a hand-set GPT-2 whose heads and units
hold structures on which Δattn, attribution and exact patching disagree, and null models.

Unlike `toy`, nothing here is trained and nothing is "the only reader" of the emotion: every
non-planted head and unit reads the class dimensions through small fixed random weights, so
the rest of the model has heterogeneous non-zero effects a metric can confuse with the answer.

The weights are written in a logical basis of d-1 residual dimensions and rotated into the
model's d by a seeded random orthonormal Q whose columns are orthogonal to the all-ones vector.
So every residual vector has mean 0 across its d coordinates and GPT-2's LayerNorm (gain 1,
bias 0) is exactly x -> sqrt(d) x / ||x|| in logical coordinates: its only nonlinearity is the
norm, which the LayerNorm-only head exploits and every other path feels a little. A constant
dimension C = sqrt(d) keeps that scale near 1.

One model holds every structure, each in its own heads and (where a criterion is a share of an
emotion's gap) on its own emotion: the distributed heads carry gratitude, the backup pair anger,
and apology holds the structures whose signature is per head (trap, competitor, cancellation,
LayerNorm-only, value-only, decoy, copy; and issue 24's: a head raising a few lexicon tokens only,
a variant-copy head, a 2nd-person confound head, a specific head beside two that react to any span
change). One model rather than one per structure: every metric then ranks each structure against
all the others and against the background, as it would in a pretrained model. See STRUCTURES for
each mechanism and the signature planted.json records; analysis.reporting.bench_tables
STRUCTURE_EXPECT for what the exact screening must say of each. A structure the profile's prompts
cannot carry (`carried`: e.g. no span word with another single-token spelling for the variant-copy
head) is refused before anything is written.

The background is drawn for every head and unit, and a planted one is cleared before planting, so
which structures a config plants moves no other component's weights.

Construction and evaluation use disjoint expressions: the one fitted number (the linear
competitor's size, 0.3 x the trap's exact effect) is measured on the selection half of the
profile's expressions (core.prompts.split_expressions); the tests and the validate stage
measure on the confirmation half.

Null models (`write_null`): the same weights with the embedding rows of the span tokens permuted
by a seeded uniform permutation over all span tokens (emotion and neutral alike), so no
expression's embedding routes its emotion any more. That alone does not make every head's mean
effect 0: it makes an emotion expression and its neutral twin exchangeable, but patching a into
b is not the negative of b into a in a nonlinear model (the backup pair's interaction, the
saturation unit), so some heads keep a real nonzero effect (backup head A: 1.29 nats in one
null). So the nulls stage (analysis.bench.nulls) does not patch emotion into neutral on them: it
screens neutral-vs-neutral pairs (two neutral prompts of one template), where no head may be
claimed as an emotion head, a null that can fail. A fair random sign of M per cluster
(analysis.screening.null) makes every cluster's effect exactly symmetric instead; it serves only
as a test of BH's bookkeeping (tests/test_screening_null.py).
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from analysis.base.contract import check_model_output, PLANTED_FILE, PLANTED_SCHEMA, write_planted
from analysis.core.prompts import in_half, lexicon_word_ids, load_lexicon, load_pairs, PromptPairs, split_expressions, subset
from analysis.core.twins import has_class
from analysis.base.vocabulary import EMOTIONS, NEUTRAL
from analysis.embedded.construction import BENCH_SHAPE, CLASS_VECTORS, CLASSES, ToyConfig
from analysis.embedded.corpus import corpus_tokenizer, load_continuations, load_templates, span_classes, wrap_tokenizer
from analysis.base.errors import InputError
from analysis.measures.stats import min_clusters

N_LAYER, N_HEAD, N_EMBD, N_POSITIONS = (BENCH_SHAPE[k] for k in ("n_layer", "n_head", "n_embd", "n_positions"))
D_HEAD, D_MLP = N_EMBD // N_HEAD, 4 * N_EMBD
N_NOISE = 16  # token/position identity dims the background reads


@dataclass(frozen=True)
class BenchConfig:
    """Everything that determines the benchmark; equal configs build byte-identical folders."""

    profile: str = "baseline"  # construction half and evaluation half come from this profile
    seed: int = 0
    structures: tuple[str, ...] = ()  # empty: every structure in STRUCTURES
    emotions: Mapping[str, str] = field(default_factory=dict)  # structure -> emotion; default DEFAULT_EMOTION
    selection_share: float = 0.5
    profiles: tuple[str, ...] = ("baseline", "extended")  # the tokenizer's corpus (every span phrase one token)
    background: float = 1.0  # the background's writes (heads' and units' output weights) times this: the difficulty

    def __post_init__(self) -> None:
        if not (np.isfinite(self.background) and self.background > 0):
            raise InputError(f"background strength must be a positive number, got {self.background!r}")
        unknown = [s for s in (*self.structures, *self.emotions) if s not in STRUCTURES]
        if unknown:
            raise InputError(f"unknown benchmark structure {unknown[0]!r}; known: {', '.join(STRUCTURES)}")
        bad = [e for e in self.emotions.values() if e not in EMOTIONS]
        if bad:
            raise InputError(f"unknown emotion {bad[0]!r} for a benchmark structure; allowed: {', '.join(EMOTIONS)}")
        if "units" in self.planted and not set(POLY_SOURCES) <= set(self.planted):
            raise InputError(f"structure 'units' needs {' and '.join(POLY_SOURCES)} (their heads feed its polysemantic unit)")
        if len({self.emotion(s) for s in POLY_SOURCES}) < 2 and "units" in self.planted:
            raise InputError(f"{' and '.join(POLY_SOURCES)} must serve two emotions: the polysemantic unit is shared by them")
        if not 0 < self.selection_share < 1:
            raise InputError(f"selection_share must be in (0, 1), got {self.selection_share!r}")

    @property
    def planted(self) -> tuple[str, ...]:
        return self.structures or tuple(STRUCTURES)

    def emotion(self, structure: str) -> str:
        return self.emotions.get(structure, DEFAULT_EMOTION[structure])


# --- the logical basis -------------------------------------------------------------------------


@dataclass
class Dims:
    """Named logical residual dimensions (the rest of the d-1 are unused)."""

    copy_words: tuple[str, ...]  # the copy head's words (and the variant-copy head's: it reads the same dims)
    variant_words: tuple[str, ...] = ()  # the copy words whose other spellings the variant-copy head writes

    C, S, BOS = 0, 1, 2
    E0 = 3  # E: CLASSES order (neutral, gratitude, anger, apology)
    O0 = 7  # O: one output dim per emotion, EMOTIONS order; lexicon X's logits read O_X
    F, U, J, P = 10, 11, 12, 13  # backup flag, trap unit input, LayerNorm junk, polysemantic input
    Y = 14  # the span holds a 2nd-person word (analysis.core.twins): what the confound head reads
    X = 15  # the unequal head's output: read by a few lexicon tokens only
    R0 = 16  # R: N_R dims of a random vector per span phrase (emotion and neutral alike)
    N_R = 4
    RH0, RG0 = R0 + N_R, R0 + 2 * N_R  # the non-specific and the reference head's copies of R
    FIRST_FREE = R0 + 3 * N_R

    def E(self, cls: str) -> int:
        return self.E0 + CLASSES.index(cls)

    def O(self, emotion: str) -> int:
        return self.O0 + EMOTIONS.index(emotion)

    def copy(self, word: str) -> int:
        return self.FIRST_FREE + self.copy_words.index(word)

    def variant(self, word: str) -> int:
        return self.FIRST_FREE + len(self.copy_words) + self.variant_words.index(word)

    @property
    def R(self) -> list[int]:
        return list(range(self.R0, self.R0 + self.N_R))

    @property
    def RH(self) -> list[int]:
        return list(range(self.RH0, self.RH0 + self.N_R))

    @property
    def RG(self) -> list[int]:
        return list(range(self.RG0, self.RG0 + self.N_R))

    @property
    def noise(self) -> list[int]:
        first = self.FIRST_FREE + len(self.copy_words) + len(self.variant_words)
        return list(range(first, first + N_NOISE))

    @property
    def classes(self) -> list[int]:
        return [self.E(c) for c in CLASSES]

    @property
    def outputs(self) -> list[int]:
        return [self.O(e) for e in EMOTIONS]


@dataclass
class Logical:
    """The model's weights in logical coordinates (residual index first where it is read)."""

    vocab: int
    rng: np.random.Generator
    wte: np.ndarray = None  # type: ignore[assignment]
    wpe: np.ndarray = None  # type: ignore[assignment]
    unembed: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        d, L, H, dh, m = N_EMBD - 1, N_LAYER, N_HEAD, D_HEAD, D_MLP
        self.wte, self.wpe, self.unembed = np.zeros((self.vocab, d)), np.zeros((N_POSITIONS, d)), np.zeros((self.vocab, d))
        self.wq, self.wk, self.wv = (np.zeros((L, d, H, dh)) for _ in range(3))
        self.bq, self.bk, self.bv = (np.zeros((L, H, dh)) for _ in range(3))
        self.wo, self.bo = np.zeros((L, H, dh, d)), np.zeros((L, d))
        self.wfc, self.bfc = np.zeros((L, d, m)), np.zeros((L, m))
        self.wpr, self.bpr = np.zeros((L, m, d)), np.zeros((L, d))


@dataclass(frozen=True)
class Context:
    """What a structure plants with: the basis, the emotion it serves, the fitted sizes."""

    dims: Dims
    emotion: str
    emotion_of: Mapping[str, str]  # every planted structure's emotion
    fitted: Mapping[str, float]
    copy_ids: Mapping[str, tuple[int, ...]]  # copy word -> its single-token ids
    variant_ids: Mapping[str, tuple[int, ...]]  # variant-copy word -> its other spellings' single-token ids
    unequal_ids: tuple[int, ...]  # the few lexicon tokens the unequal head raises


A = math.sqrt(D_HEAD)  # a query bias of A makes an attention score equal the key's value


def mover(w: Logical, layer: int, head: int, read: int, writes: Mapping[int, float], key: tuple[float, float, float], dims: Dims) -> None:
    """A head that attends from every position to the span (key: span marker, class dim `read`,
    BOS), and moves its value, the class dim `read` of what it attends, to `writes`."""
    k_span, k_class, k_bos = key
    w.bq[layer, head, 0] = A
    w.wk[layer, dims.S, head, 0], w.wk[layer, read, head, 0], w.wk[layer, dims.BOS, head, 0] = k_span, k_class, k_bos
    w.wv[layer, read, head, 0] = 1.0
    for dim, weight in writes.items():
        w.wo[layer, head, 0, dim] = weight


SPAN_KEY = (2.0, 0.5, 1.0)  # attention to the span ~0.7 in an emotion prompt, ~0.25 in its twin


@dataclass(frozen=True)
class Structure:
    heads: tuple[tuple[str, int, int], ...]  # (role, layer, head)
    units: tuple[tuple[str, int, int], ...]  # (role, layer, neuron)
    plant: Callable[[Logical, Context, Mapping[str, tuple[int, int]]], None]
    signature: str
    causal: tuple[str, ...]  # roles whose exact patching effect is truly non-zero


def _distributed(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    x = c.dims.E(c.emotion)
    for role in ("d1", "d2", "d3"):
        mover(w, *at[role], x, {c.dims.O(c.emotion): 1 / 3, c.dims.P: 1 / 3}, SPAN_KEY, c.dims)


def _backup(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    d, x = c.dims, c.dims.E(c.emotion)
    mover(w, *at["A"], x, {d.O(c.emotion): 1.0, d.F: 1.0, d.P: 1.0}, SPAN_KEY, d)
    layer, head = at["B"]
    # B's query reads A's flag F at its own position: span score 3(1 - F), BOS score (1 - F) + 3F.
    # A wrote (F ~ 2): B attends BOS and adds nothing; A zeroed (F = 0) or neutral (F < 0): B
    # attends the span and moves the class as A would (the IOI backup name mover).
    w.bq[layer, head, 0], w.wq[layer, d.F, head, 0] = A, -A
    w.wk[layer, d.S, head, 0], w.wk[layer, d.BOS, head, 0] = 3.0, 1.0
    w.wq[layer, d.F, head, 1], w.wk[layer, d.BOS, head, 1] = A, 3.0
    w.wv[layer, x, head, 0] = 1.0
    w.wo[layer, head, 0, d.O(c.emotion)], w.wo[layer, head, 0, d.P] = 1.2, 1.2


def _decoy(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    layer, head = at["decoy"]
    d = c.dims
    w.bq[layer, head, 0] = A
    w.wk[layer, d.E(c.emotion), head, 0], w.wk[layer, d.BOS, head, 0] = 3.0, 1.0  # ~1 on an emotion span, ~0 on its twin
    # The value is its bias alone: every position carries the same value, so the output is the
    # same vector whatever the head attends to; it writes (into O and noise), but a constant.
    w.bv[layer, head, :] = 1.0
    w.wo[layer, head, :, d.O(c.emotion)] = 0.2
    w.wo[layer, head, :, d.noise[0]] = 0.2


def _value_only(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    layer, head = at["value"]
    # Zero query and key: uniform attention over the prefix, identical in a prompt and its twin
    # (equal lengths), so Δattn = 0; the span's class still arrives through the value (1/T of it).
    w.wv[layer, c.dims.E(c.emotion), head, 0] = 1.0
    w.wo[layer, head, 0, c.dims.O(c.emotion)] = 3.0


def _saturation(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    d = c.dims
    mover(w, *at["trap"], d.E(c.emotion), {d.U: 1.0}, SPAN_KEY, d)
    layer, unit = at["unit"]
    # Pre-activation 3.3 U - 3.2: about -4 in the neutral run (GELU and its slope ~0: attribution,
    # a gradient taken there, sees almost nothing), about +4 in the emotion run.
    w.wfc[layer, d.U, unit], w.bfc[layer, unit], w.wpr[layer, unit, d.O(c.emotion)] = 3.3, -3.2, 0.5
    mover(w, *at["competitor"], d.E(c.emotion), {d.O(c.emotion): c.fitted["competitor"]}, SPAN_KEY, d)


def _cancellation(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    d = c.dims
    mover(w, *at["plus"], d.E(c.emotion), {d.O(c.emotion): 0.5}, SPAN_KEY, d)
    mover(w, *at["minus"], d.E(c.emotion), {d.O(c.emotion): -0.5}, SPAN_KEY, d)


def _layernorm(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    d = c.dims
    # Writes only J, which no weight reads; in the last layer, so the final LayerNorm's scale is its
    # one route: a larger norm shrinks the (negative, see BASELINE_O) output dims towards 0. J's
    # baseline (J_BASE on every token) keeps J positive in both runs, so the effect is monotone.
    mover(w, *at["ln"], d.E(c.emotion), {d.J: 4.0}, SPAN_KEY, d)


def _units(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    d = c.dims
    layer, unit = at["poly"]
    # Reads P, which the distributed and the backup heads write; writes both their emotions'
    # outputs. Bias 3: in GELU's near-linear range in both runs.
    w.wfc[layer, d.P, unit], w.bfc[layer, unit] = 1.0, 3.0
    for source in POLY_SOURCES:
        w.wpr[layer, unit, d.O(c.emotion_of[source])] = 0.3
    layer, unit = at["decoy_unit"]
    w.wfc[layer, d.O(c.emotion), unit] = 3.0  # its activation follows the emotion's output dim
    # ... and its row of the down-projection stays 0: nothing downstream.


def _copy(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    layer, head = at["copy"]
    d = c.dims
    w.bq[layer, head, 0] = A
    w.wk[layer, d.S, head, 0], w.wk[layer, d.BOS, head, 0] = 2.0, 1.0  # the span, whatever its class
    for i, word in enumerate(d.copy_words):  # copies which lexicon words the span holds, to those words
        w.wv[layer, d.copy(word), head, 1 + i] = 1.0
        w.wo[layer, head, 1 + i, d.copy(word)] = 2.0
        for t in c.copy_ids[word]:
            w.unembed[t, d.copy(word)] = 4.0


def _unequal(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    # A true emotion head whose write raises only a few of the lexicon's tokens (unequal_ids, which
    # share no stem with any prompt word, so the copy control keeps them): M's logsumexp still rises.
    mover(w, *at["unequal"], c.dims.E(c.emotion), {c.dims.X: 1.0}, SPAN_KEY, c.dims)
    for t in c.unequal_ids:
        w.unembed[t, c.dims.X] = 3.0


def _variant_copy(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    layer, head = at["variant"]
    d = c.dims
    w.bq[layer, head, 0] = A
    w.wk[layer, d.S, head, 0], w.wk[layer, d.BOS, head, 0] = 2.0, 1.0  # the span, whatever its class
    # Reads which lexicon words the span holds and raises their OTHER spellings ("apologize" ->
    # "apologies"): no copy of a prompt token, so only the copy control's stem rule can flag it.
    for i, word in enumerate(d.variant_words):
        w.wv[layer, d.copy(word), head, 1 + i] = 1.0
        w.wo[layer, head, 1 + i, d.variant(word)] = 2.0
        for t in c.variant_ids[word]:
            w.unembed[t, d.variant(word)] = 4.0


def _confound(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    layer, head = at["confound"]
    d = c.dims
    w.bq[layer, head, 0] = A
    w.wk[layer, d.S, head, 0], w.wk[layer, d.BOS, head, 0] = 2.0, 1.0  # the span, whatever its class
    # Moves "the span holds a 2nd-person word" (Y) into the emotion's output: a head that notices
    # the reader is addressed. The twins carry that class pair by pair (analysis.core.twins), so its
    # emotion patch changes nothing; with twins that lacked "you" it would pass for an emotion head.
    w.wv[layer, d.Y, head, 0] = 1.0
    w.wo[layer, head, 0, d.O(c.emotion)] = 1.5


MISMATCH_GAIN, MISMATCH_BIAS, MISMATCH_WRITE = 4.0, -2.0, 0.1  # the mismatch units: |RH - RG| > 0.5 fires


def _specificity(w: Logical, c: Context, at: Mapping[str, tuple[int, int]]) -> None:
    d = c.dims
    mover(w, *at["specific"], d.E(c.emotion), {d.O(c.emotion): 1.0}, SPAN_KEY, d)  # reacts to the emotion only
    # The non-specific and the reference head attend alike (span marker and BOS, not the class) and
    # copy the span's random vector R; units fire when the two copies differ, raising the emotion's
    # output. In a clean run they agree; patching either from ANY other span, emotional or neutral,
    # makes them differ: both heads move M as much under the neutral control as under the emotion
    # patch (the IOI-style "something changed" detector that specificity must reject).
    for role, dst in (("nonspecific", d.RH), ("reference", d.RG)):
        layer, head = at[role]
        w.bq[layer, head, 0] = A
        w.wk[layer, d.S, head, 0], w.wk[layer, d.BOS, head, 0] = 2.0, 1.0
        for i, (src, out) in enumerate(zip(d.R, dst, strict=True)):
            w.wv[layer, src, head, i] = 1.0
            w.wo[layer, head, i, out] = 1.0
    for j, (h, g) in enumerate(zip(d.RH, d.RG, strict=True)):
        for sign, role in ((+1, f"mismatch{2 * j}"), (-1, f"mismatch{2 * j + 1}")):
            layer, unit = at[role]
            w.wfc[layer, h, unit], w.wfc[layer, g, unit] = sign * MISMATCH_GAIN, -sign * MISMATCH_GAIN
            w.bfc[layer, unit], w.wpr[layer, unit, d.O(c.emotion)] = MISMATCH_BIAS, MISMATCH_WRITE


STRUCTURES: dict[str, Structure] = {
    "distributed": Structure(
        (("d1", 0, 1), ("d2", 2, 1), ("d3", 4, 1)), (), _distributed,
        "each head's exact effect about 1/3 of their sum; patching the three jointly recovers >= 0.9 of the gap",
        ("d1", "d2", "d3")),
    "backup": Structure(
        (("A", 1, 2), ("B", 3, 2)), (), _backup,
        "zeroing A alone changes M by <= 0.5 x zeroing A and B; noising A+B and denoising A each >= 0.8 of the gap",
        ("A", "B")),
    "decoy": Structure(
        (("decoy", 0, 3),), (), _decoy,
        "the largest Δattn of its emotion; exact effect 0 (below the noise floor, q >= 0.05)", ()),
    "value_only": Structure(
        (("value", 4, 3),), (), _value_only,
        "Δattn exactly 0 (uniform attention); exact effect above the noise floor", ("value",)),
    "saturation": Structure(
        (("trap", 1, 4), ("competitor", 2, 4)), (("unit", 2, 17),), _saturation,
        "the trap head's attribution / exact < 0.3 (its unit is off in the neutral run); the linear competitor's "
        "exact effect 0.3 x the trap's, its attribution ~ its exact effect; the unit's exact effect non-zero",
        ("trap", "competitor", "unit")),
    "cancellation": Structure(
        (("plus", 3, 5), ("minus", 3, 6)), (), _cancellation,
        "exact effects +c and -c; patched jointly ~ 0", ("plus", "minus")),
    "layernorm": Structure(
        (("ln", 5, 5),), (), _layernorm,
        "exact effect above the noise floor although it writes only a dimension no weight reads", ("ln",)),
    "units": Structure(
        (), (("poly", 5, 101), ("decoy_unit", 4, 202)), _units,
        "the polysemantic unit's exact effect is non-zero for gratitude and anger; the decoy unit's activation "
        "changes by > 1 and its exact effect is 0", ("poly",)),
    "copy": Structure(
        (("copy", 1, 7),), (), _copy,
        "exact effect above the noise floor, flagged by the copy control (copy-free share < 0.5)", ()),
    "unequal": Structure(
        (("unequal", 2, 0),), (), _unequal,
        "raises a few lexicon tokens (none a prompt holds) and no other: found, sign +, not flagged, specific",
        ("unequal",)),
    "variant_copy": Structure(
        (("variant", 1, 0),), (), _variant_copy,
        "raises the other spellings of the lexicon words the span holds (apologize -> apologies): exact effect above "
        "the noise floor, flagged by the copy control's stem rule", ()),
    "confound": Structure(
        (("confound", 3, 0),), (), _confound,
        "reads whether the span holds a 2nd-person word, which each twin holds as its emotion span does: exact "
        "effect 0, passed over", ()),
    "specificity": Structure(
        (("specific", 4, 0), ("nonspecific", 2, 5), ("reference", 1, 5)),
        tuple((f"mismatch{i}", 3, 300 + i) for i in range(2 * Dims.N_R)), _specificity,
        "all three found with sign +; the specific head passes the neutral control (specific), the non-specific "
        "and the reference head do not (a neutral span patched in moves M as much)",
        ("specific", "nonspecific", "reference")),
}


POLY_SOURCES = ("distributed", "backup")  # the structures whose heads feed the polysemantic unit


DEFAULT_EMOTION = {
    "distributed": "gratitude", "backup": "anger", "decoy": "apology", "value_only": "apology", "saturation": "apology",
    "cancellation": "apology", "layernorm": "apology", "units": "apology", "copy": "apology",
    "unequal": "apology", "variant_copy": "apology", "confound": "apology", "specificity": "apology",
}


SPAN_SCALE = 1.0  # class vectors on E times this, times (1 + the span's jitter)
JITTER = 0.2  # per span phrase, uniform in [-JITTER, JITTER]: expressions differ in strength
BASELINE_O = -2.0  # every token's output dims: M is negative by default, the LayerNorm-only head has a lever
J_BASE = 3.0
BG_QK, BG_VALUE, BG_WRITE = 0.4, 0.1, 0.05  # background heads: query/key and value reads, output writes (std)
BG_UNIT_READ, BG_UNIT_BIAS, BG_UNIT_WRITE = 0.3, (-0.5, 0.5), 0.01  # background units: reads, bias (mean, std), writes (std)


def _background(w: Logical, dims: Dims, strength: float = 1.0) -> None:
    """Small fixed random weights on every head and unit: they read the class dims (and noise,
    span marker, BOS) and write the output dims, so their effects are non-zero and heterogeneous.
    They write nothing a planted structure reads (F, U, J, P, Y, X, R, copy dims, E). Drawn for every
    head and unit, planted or not (the planted ones are cleared before planting), so which
    structures a config plants does not move any other head's weights.
    `strength` scales what they write (BenchConfig.background): the difficulty sweep's knob."""
    rng = w.rng
    reads = [dims.S, dims.BOS, *dims.classes, *dims.noise]
    values = [*dims.classes, *dims.noise]
    writes = [*dims.outputs, *dims.noise]
    for layer in range(N_LAYER):
        for head in range(N_HEAD):
            w.wq[layer][np.ix_(reads, [head], range(D_HEAD))] = rng.normal(0, BG_QK, (len(reads), 1, D_HEAD))
            w.wk[layer][np.ix_(reads, [head], range(D_HEAD))] = rng.normal(0, BG_QK, (len(reads), 1, D_HEAD))
            w.wv[layer][np.ix_(values, [head], range(D_HEAD))] = rng.normal(0, BG_VALUE, (len(values), 1, D_HEAD))
            w.wo[layer][np.ix_([head], range(D_HEAD), writes)] = rng.normal(0, BG_WRITE * strength, (1, D_HEAD, len(writes)))
        unit_reads = [*dims.classes, *dims.outputs, *dims.noise]
        w.wfc[layer][unit_reads, :] = rng.normal(0, BG_UNIT_READ, (len(unit_reads), D_MLP))
        w.bfc[layer][:] = rng.normal(*BG_UNIT_BIAS, D_MLP)
        w.wpr[layer][:, writes] = rng.normal(0, BG_UNIT_WRITE * strength, (D_MLP, len(writes)))


def _clear(w: Logical, heads: set[tuple[int, int]], units: set[tuple[int, int]]) -> None:
    """Zero the background's weights of the heads and units a structure is about to plant."""
    for layer, head in heads:
        for a in (w.wq, w.wk, w.wv):
            a[layer, :, head, :] = 0.0
        for b in (w.bq, w.bk, w.bv):
            b[layer, head, :] = 0.0
        w.wo[layer, head] = 0.0
    for layer, unit in units:
        w.wfc[layer, :, unit], w.bfc[layer, unit], w.wpr[layer, unit, :] = 0.0, 0.0, 0.0


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """Q: [d, d-1], orthonormal columns orthogonal to the all-ones vector (mean-zero residuals)."""
    m = rng.normal(size=(N_EMBD, N_EMBD))
    m[:, 0] = 1.0
    q, _ = np.linalg.qr(m)
    return q[:, 1:]


def _state_dict(w: Logical, q: np.ndarray) -> dict[str, torch.Tensor]:
    """HF GPT-2 tensors (Conv1D: input dim first) from the logical weights: read = Q W, write = W Q^T."""
    f = lambda a: torch.tensor(a, dtype=torch.float32).contiguous()  # noqa: E731
    d, L = N_EMBD, N_LAYER
    sd = {
        "transformer.wte.weight": f(w.wte @ q.T), "transformer.wpe.weight": f(w.wpe @ q.T),
        "lm_head.weight": f(w.unembed @ q.T),
        "transformer.ln_f.weight": f(np.ones(d)), "transformer.ln_f.bias": f(np.zeros(d)),
    }
    for layer in range(L):
        p = f"transformer.h.{layer}."
        read = lambda a: (q @ a[layer].reshape(d - 1, -1))  # noqa: E731
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = f(np.ones(d)), f(np.zeros(d))
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = f(np.ones(d)), f(np.zeros(d))
        sd[p + "attn.c_attn.weight"] = f(np.concatenate([read(w.wq), read(w.wk), read(w.wv)], 1))
        sd[p + "attn.c_attn.bias"] = f(np.concatenate([w.bq[layer].ravel(), w.bk[layer].ravel(), w.bv[layer].ravel()]))
        sd[p + "attn.c_proj.weight"] = f(w.wo[layer].reshape(-1, d - 1) @ q.T)
        sd[p + "attn.c_proj.bias"] = f(w.bo[layer] @ q.T)
        sd[p + "mlp.c_fc.weight"] = f(q @ w.wfc[layer])
        sd[p + "mlp.c_fc.bias"] = f(w.bfc[layer])
        sd[p + "mlp.c_proj.weight"] = f(w.wpr[layer] @ q.T)
        sd[p + "mlp.c_proj.bias"] = f(w.bpr[layer] @ q.T)
    return sd


@dataclass(frozen=True)
class Corpus:
    tokenizer: Any  # the transformers wrapper (what the pipeline loads)
    span_ids: dict[int, str]  # span token id -> class
    span_text: dict[int, str]  # span token id -> its phrase
    lexicon_ids: dict[str, list[int]]


def _corpus(config: BenchConfig) -> Corpus:
    toy = ToyConfig(profiles=config.profiles)
    templates = load_templates(toy)
    phrases = span_classes(templates)
    tok = corpus_tokenizer(templates, load_continuations(toy), phrases, toy.vocab_size)
    wrapped = wrap_tokenizer(tok)
    from analysis.measures.metrics import lexicon_ids

    return Corpus(
        wrapped, {tok.token_to_id(p): c for p, c in phrases.items()}, {tok.token_to_id(p): p for p in phrases}, lexicon_ids(wrapped)
    )


def _copy_words(corpus: Corpus, emotion: str) -> tuple[tuple[str, ...], dict[str, tuple[int, ...]]]:
    """The lexicon words of `emotion` that occur in some span phrase and are single tokens."""
    words = load_lexicon(emotion)
    ids = lexicon_word_ids(corpus.tokenizer, words)
    seen = [w for w in words if w in ids and any(re.search(rf"\b{re.escape(w)}\b", t.lower()) for t in corpus.span_text.values())]
    return tuple(seen), {w: tuple(ids[w]) for w in seen}


def _variant_words(corpus: Corpus, emotion: str) -> dict[str, tuple[int, ...]]:
    """Copy words of `emotion` -> the single-token ids of the lexicon's OTHER spellings of them (a
    word sharing its stem under the copy control's rule, analysis.measures.metrics.shares_stem)."""
    from analysis.measures.metrics import shares_stem

    words, _ = _copy_words(corpus, emotion)
    lexicon = load_lexicon(emotion)
    ids = lexicon_word_ids(corpus.tokenizer, lexicon)
    out = {w: tuple(t for v in lexicon if v != w and v in ids and shares_stem(v, w) for t in ids[v]) for w in words}
    return {w: t for w, t in out.items() if t}


UNEQUAL_N = 3  # how many lexicon tokens the unequal head raises ("a few")


def _unequal_ids(config: BenchConfig, corpus: Corpus, emotion: str) -> tuple[int, ...]:
    """UNEQUAL_N single-token lexicon words of `emotion` (lexicon order) sharing no stem with any word
    of any prompt of the corpus's profiles: the copy control keeps them in every pair."""
    from analysis.measures.metrics import stem_matches

    lexicon = load_lexicon(emotion)
    ids = lexicon_word_ids(corpus.tokenizer, lexicon)
    loaded = [load_pairs(e, prof) for e in EMOTIONS for prof in config.profiles]
    texts = [x.text for p in loaded for x in (*p.emotion_prompts, *p.neutral_prompts)]
    used = stem_matches(" ".join(texts), lexicon)
    free = [w for w in lexicon if w in ids and w not in used]
    return tuple(t for w in free[:UNEQUAL_N] for t in ids[w]) if len(free) >= UNEQUAL_N else ()


def carried(config: BenchConfig, corpus: Corpus) -> None:
    """Refuse (InputError) a structure the profile's prompts cannot carry: nothing for it to read or write."""
    need = {
        "copy": lambda e: bool(_copy_words(corpus, e)[0]) or f"no {e} lexicon word is a single token inside a span phrase",
        "variant_copy": lambda e: bool(_variant_words(corpus, e)) or
        f"no {e} lexicon word inside a span phrase has another single-token spelling in the lexicon",
        "unequal": lambda e: bool(_unequal_ids(config, corpus, e)) or
        f"fewer than {UNEQUAL_N} single-token {e} lexicon words share no stem with the prompts' words",
        "confound": lambda e: any(has_class(p, "2nd person") for t, p in corpus.span_text.items() if corpus.span_ids[t] == e)
        or f"no {e} span phrase holds a 2nd-person word",
    }
    for name in config.planted:
        if name in need and (why := need[name](config.emotion(name))) is not True:
            raise InputError(f"benchmark structure {name!r} on {config.emotion(name)}: the prompts of "
                             f"{', '.join(config.profiles)} cannot carry it ({why})")


R_SCALE = 2.0  # the per-span random vector R (specificity structure): std per dim


def _weights(config: BenchConfig, corpus: Corpus, fitted: Mapping[str, float]) -> tuple[Logical, Dims, np.ndarray]:
    rng = np.random.default_rng(config.seed)
    q = _rotation(rng)
    # The copy and variant dims are laid out whether or not their heads are planted, so the layout (and
    # with it every background weight) does not depend on which structures a config plants.
    copy_ids = _copy_words(corpus, config.emotion("copy"))[1] | _copy_words(corpus, config.emotion("variant_copy"))[1]
    variant_ids = _variant_words(corpus, config.emotion("variant_copy"))
    unequal_ids = _unequal_ids(config, corpus, config.emotion("unequal")) if "unequal" in config.planted else ()
    dims = Dims(tuple(copy_ids), tuple(variant_ids))
    w = Logical(len(corpus.tokenizer), rng)
    w.wte[:, dims.C] = math.sqrt(N_EMBD)
    w.wte[:, dims.outputs] = BASELINE_O
    w.wte[:, dims.J] = J_BASE
    w.wte[:, dims.noise] = rng.normal(0, 0.3, (w.vocab, N_NOISE))
    w.wpe[:, dims.noise] = rng.normal(0, 0.1, (N_POSITIONS, N_NOISE))
    w.wte[0, dims.BOS] = 1.0  # id 0: BOS (and EOS, PAD)
    for t in sorted(corpus.span_ids):
        cls = corpus.span_ids[t]
        w.wte[t, dims.S] = 1.0
        w.wte[t, dims.classes] = SPAN_SCALE * (1 + rng.uniform(-JITTER, JITTER)) * CLASS_VECTORS[CLASSES.index(cls)].numpy()
        w.wte[t, dims.Y] = float(has_class(corpus.span_text[t], "2nd person"))
        for word in dims.copy_words:
            if re.search(rf"\b{re.escape(word)}\b", corpus.span_text[t].lower()):
                w.wte[t, dims.copy(word)] = 1.0
    if "specificity" in config.planted:  # its own stream: the rest of the weights do not depend on it
        r_rng = np.random.default_rng([config.seed, 24])
        for t in sorted(corpus.span_ids):
            w.wte[t, dims.R] = r_rng.normal(0, R_SCALE, dims.N_R)
    w.unembed[:, dims.noise] = rng.normal(0, 0.5, (w.vocab, N_NOISE))
    for emotion in EMOTIONS:
        w.unembed[corpus.lexicon_ids[emotion], dims.O(emotion)] = 2.0
    _background(w, dims, config.background)
    heads, units = set(), set()
    for name in config.planted:
        s = STRUCTURES[name]
        heads |= {(layer, h) for _, layer, h in s.heads}
        units |= {(layer, u) for _, layer, u in s.units}
    _clear(w, heads, units)
    emotion_of = {n: config.emotion(n) for n in config.planted}
    for name in config.planted:
        s = STRUCTURES[name]
        at = {role: (layer, i) for role, layer, i in (*s.heads, *s.units)}
        s.plant(w, Context(dims, config.emotion(name), emotion_of, fitted, copy_ids, variant_ids, unequal_ids), at)
    return w, dims, q


def _hf(sd: Mapping[str, torch.Tensor], vocab: int) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=vocab, n_positions=N_POSITIONS, n_embd=N_EMBD, n_layer=N_LAYER, n_head=N_HEAD,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    model = GPT2LMHeadModel(cfg)
    model.load_state_dict(dict(sd), strict=False)  # strict=False: the causal-mask buffers are not weights
    return model.eval()


def halves(config: BenchConfig, emotion: str) -> tuple[PromptPairs, PromptPairs]:
    """The construction (selection) and evaluation (confirmation) pairs of `emotion`."""
    pairs = load_pairs(emotion, config.profile)
    sel, conf = split_expressions(pairs, seed=config.seed, selection_share=config.selection_share, need=min_clusters())
    return subset(pairs, in_half(pairs, sel)), subset(pairs, in_half(pairs, conf))


def evaluation_pairs(profile: str, seed: int, selection_share: float) -> dict[str, PromptPairs]:
    """Every emotion's evaluation (confirmation) pairs: the expressions the construction did not use."""
    bench = BenchConfig(profile=profile, seed=seed, selection_share=selection_share)
    return {e: halves(bench, e)[1] for e in EMOTIONS}


def _patch_effect(hf: torch.nn.Module, tokenizer: Any, pairs: PromptPairs, site: tuple[int, int], ids: tuple[list[int], list[int]]) -> float:
    """Mean ΔM of patching one head's z from each emotion prompt into its twin (all positions),
    on the plain HF model with the project's fast-path edits."""
    from analysis.core.prompts import tokenize
    from analysis.core.sites import head_sites
    from analysis.interventions.edits import patch_edits, position_map, position_ids, split_batch
    from analysis.interventions.exact import component_edits, component_inputs
    from analysis.measures.metrics import SCREENING_METRIC

    batch = tokenize(tokenizer, [*pairs.emotion_prompts, *pairs.neutral_prompts], bos_id=0, pad_id=0)
    emo, neu = split_batch(batch, len(pairs))
    sites = head_sites([site])
    idx, mask = position_map("all", source=emo, target=neu)
    edits = patch_edits(sites, component_inputs(hf, hf.config.model_type, emo, sites, D_HEAD), idx, mask)

    def m(edits_: Sequence) -> torch.Tensor:
        with torch.no_grad(), component_edits(hf, hf.config.model_type, edits_, D_HEAD):
            logits = hf(input_ids=neu.input_ids, attention_mask=neu.attention_mask, position_ids=position_ids(neu.attention_mask)).logits
        return SCREENING_METRIC.score(logits[:, -1], *ids)

    return float((m(edits) - m([])).mean())


def _fit(config: BenchConfig, corpus: Corpus) -> dict[str, float]:
    """The one fitted size, on the construction half: the competitor's write so that its exact
    effect is 0.3 x the trap's (linear in the write, so one measurement at size 1 fixes it)."""
    if "saturation" not in config.planted:
        return {}
    emotion = config.emotion("saturation")
    construction, _ = halves(config, emotion)
    s = STRUCTURES["saturation"]
    at = {role: (layer, i) for role, layer, i in s.heads}
    w, _, q = _weights(config, corpus, {"competitor": 1.0})
    hf = _hf(_state_dict(w, q), w.vocab)
    ids = (corpus.lexicon_ids[emotion], corpus.lexicon_ids[NEUTRAL])
    trap = _patch_effect(hf, corpus.tokenizer, construction, at["trap"], ids)
    unit = _patch_effect(hf, corpus.tokenizer, construction, at["competitor"], ids)
    return {"competitor": 0.3 * trap / unit, "trap_exact_construction": trap}


def _doc(config: BenchConfig, dims: Dims, fitted: Mapping[str, float], span_ids: list[int], unequal_ids: Sequence[int]) -> dict:
    structures = {}
    for name in config.planted:
        s = STRUCTURES[name]
        structures[name] = {
            "emotion": config.emotion(name),
            "heads": {role: [layer, h] for role, layer, h in s.heads},
            "units": {role: [layer, u] for role, layer, u in s.units},
            "causal": list(s.causal),
            "signature": s.signature,
        }
    by_emotion: dict[str, list[list[int]]] = {e: [] for e in EMOTIONS}
    units_by_emotion: dict[str, list[list[int]]] = {e: [] for e in EMOTIONS}
    for name, rec in structures.items():
        by_emotion[rec["emotion"]] += [rec["heads"][r] for r in rec["causal"] if r in rec["heads"]]
        units_by_emotion[rec["emotion"]] += [rec["units"][r] for r in rec["causal"] if r in rec["units"]]
    if "units" in structures:  # the polysemantic unit serves the two emotions whose heads feed it
        poly = structures["units"]["units"]["poly"]
        units_by_emotion[structures["units"]["emotion"]].remove(poly)
        for source in POLY_SOURCES:
            units_by_emotion[structures[source]["emotion"]].append(poly)
    return {
        "schema": PLANTED_SCHEMA,
        "heads": sorted({tuple(h) for hs in by_emotion.values() for h in hs}),
        "by_emotion": {e: sorted(hs) for e, hs in by_emotion.items()},
        "units": sorted({tuple(u) for us in units_by_emotion.values() for u in us}),
        "units_by_emotion": {e: sorted(us) for e, us in units_by_emotion.items()},
        "construction": (__doc__ or "").strip(),
        "benchmark": {
            "structures": structures,
            "null_seed": None,
            "span_token_ids": span_ids,
            "fitted": dict(fitted),
            "copy_words": list(dims.copy_words),
            "variant_words": list(dims.variant_words),
            "unequal_token_ids": list(unequal_ids),
            "profile": config.profile,
            "seed": config.seed,
            "selection_share": config.selection_share,
            "background": config.background,
            # the construction's constants (issue 24 item 6), as this build used them
            "constants": {
                "span_scale": SPAN_SCALE, "jitter": JITTER, "baseline_o": BASELINE_O, "j_base": J_BASE,
                "bg_qk": BG_QK, "bg_value": BG_VALUE, "bg_write": BG_WRITE,
                "bg_unit_read": BG_UNIT_READ, "bg_unit_bias": list(BG_UNIT_BIAS), "bg_unit_write": BG_UNIT_WRITE,
                "n_noise": N_NOISE, "span_key": list(SPAN_KEY), "r_scale": R_SCALE, "unequal_n": UNEQUAL_N,
                "mismatch_gain": MISMATCH_GAIN, "mismatch_bias": MISMATCH_BIAS, "mismatch_write": MISMATCH_WRITE,
            },
        },
        "params": {
            "n_layer": N_LAYER, "n_head": N_HEAD, "n_embd": N_EMBD, "d_mlp": D_MLP,
            "profiles": list(config.profiles),
        },
    }


def _save(folder: Path, sd: Mapping[str, torch.Tensor], corpus: Corpus, doc: dict) -> None:
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        _hf(sd, len(corpus.tokenizer)).save_pretrained(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    corpus.tokenizer.save_pretrained(folder)
    write_planted(folder, doc)
    folder.chmod(0o755)
    for f in folder.iterdir():
        if f.is_file():
            f.chmod(0o644)


def write_null(folder: str | Path, k: int, output: Path) -> Path:
    """Null model k of a benchmark folder, written to `output`: the benchmark with its span tokens'
    embedding rows permuted (seeded by the benchmark's seed and k). Nulls are derived, not stored:
    they differ from the benchmark in one permutation, and 20 copies of its weights would be 120 MB."""
    from safetensors.torch import load_file, save_file

    from analysis.base.contract import read_planted

    folder, output = Path(folder), Path(output)
    doc = read_planted(folder)
    bench = doc["benchmark"]
    spans = np.array(bench["span_token_ids"])
    perm = np.random.default_rng([bench["seed"], k]).permutation(spans)
    output.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_file() and f.name not in ("model.safetensors", PLANTED_FILE):
            shutil.copy(f, output / f.name)
    sd = load_file(folder / "model.safetensors")
    wte = sd["transformer.wte.weight"].clone()
    wte[torch.tensor(spans)] = sd["transformer.wte.weight"][torch.tensor(perm)]  # span token t embeds as perm[t]
    save_file({**sd, "transformer.wte.weight": wte.contiguous()}, output / "model.safetensors", metadata={"format": "pt"})
    null = {**doc, "heads": [], "by_emotion": {e: [] for e in EMOTIONS}, "units": [], "units_by_emotion": {e: [] for e in EMOTIONS},
            "benchmark": {**bench, "null_seed": k}}
    write_planted(output, null)
    return output


def build_benchmark(config: BenchConfig, output: Path) -> Path:
    """Build the benchmark model into `output` (a HF folder + planted.json; its nulls are derived
    by `write_null`); inputs are checked first, so a bad input writes nothing."""
    from analysis.embedded.build import _replace_dir

    output = check_model_output(output, "bench")
    for name in config.planted:  # every emotion a structure serves needs prompts and two halves
        halves(config, config.emotion(name))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        corpus = _corpus(config)
        carried(config, corpus)
        fitted = _fit(config, corpus)
        w, dims, q = _weights(config, corpus, fitted)
    sd = _state_dict(w, q)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        unequal_ids = _unequal_ids(config, corpus, config.emotion("unequal")) if "unequal" in config.planted else ()
        _save(tmp, sd, corpus, _doc(config, dims, fitted, sorted(corpus.span_ids), unequal_ids))
        _replace_dir(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return output
