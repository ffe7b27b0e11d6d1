"""The embedded toy model's construction: classes, planted heads and units, and its checked config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
import torch

from analysis.core.prompts import LEXICONS_ROOT, PROMPTS_ROOT
from analysis.base.vocabulary import EMOTIONS, NEUTRAL
from analysis.base.errors import InputError
from analysis.modelfacts.shapes import EMBEDDED_SHAPES








PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib"}


DEFAULT_CONTINUATIONS = Path("data/toy/continuations.yaml")


# The benchmark model's shape (analysis.embedded.benchmark builds it; the planner reads the same table).
BENCH_SHAPE = {k: v for k, v in EMBEDDED_SHAPES["bench"].items() if k != "vocab_size"}
_TOY = EMBEDDED_SHAPES["toy"]


EOT = "<|endoftext|>"  # id 0: BOS, EOS and PAD at once, as in GPT-2


CLASSES: tuple[str, ...] = (NEUTRAL, *EMOTIONS)  # also the order of the emotion dims E


# Class vectors on E (rows: neutral, gratitude, anger, apology). Each sums to 0 and all have the
# same norm, so LayerNorm's mean and variance at a span position do not depend on the class.
CLASS_VECTORS = torch.tensor(
    [[3.0, -1.0, -1.0, -1.0], [-1.0, 3.0, -1.0, -1.0], [-1.0, -1.0, 3.0, -1.0], [-1.0, -1.0, -1.0, 3.0]]
)


CONSTRUCTION = (
    "A GPT-2 (transformers GPT2LMHeadModel) trained on a templated corpus: each prompt of the "
    "profiles' prompt sets, brackets removed, followed by a continuation of its class from "
    "data/toy/continuations.yaml. Every distinct span phrase (with its leading space) is one added "
    "token, so a prompt and its neutral twin differ at exactly one position. Four residual "
    "dimensions E (params.emotion_dims) carry the span class: every span token embeds as one shared "
    "learned vector off E plus span_scale times a fixed class vector on E (neutral (3,-1,-1,-1), "
    "gratitude (-1,3,-1,-1), anger (-1,-1,3,-1), apology (-1,-1,-1,3); these sum to 0 and have equal "
    "norm, so LayerNorm statistics do not depend on the class). Nothing else writes E: all other "
    "token embeddings, the position embeddings and every attention and MLP output projection "
    "(weight columns and bias) are zero on E. Nothing reads E except the planted head of emotion X, "
    "which may read dimension X only (its query, key and value rows of c_attn): every other c_attn "
    "row on E, every MLP c_fc row on E and the lm_head columns on E are zero. Consequence: the class "
    "of the span leaves the span position only through the planted head of that class; with that "
    "head's output zeroed (its slice of the attention c_proj input), an emotion prompt and its "
    "neutral twin give identical logits (up to float rounding in LayerNorm sums). "
    "Three more residual dimensions U (params.unit_dims, one per emotion) carry each planted head's "
    "output to one planted MLP unit (units_by_emotion: layer, neuron; in or after the head's layer). "
    "The planted head of X writes U_X and nothing else: its rows of the attention c_proj are zero "
    "except in column U_X. Nothing else writes U: token and position embeddings, all other heads' "
    "rows of c_proj, every MLP c_proj column and every c_proj bias are zero on U. Nothing reads U "
    "except the planted unit of X, which reads U_X (entry [U_X, neuron] of its layer's c_fc): every "
    "other c_fc row entry on U, every c_attn row on U and the lm_head columns on U are zero. "
    "Consequence: the planted head's output reaches the logits only through the planted unit and "
    "through the mean and variance of the LayerNorms downstream (every dimension enters those; this "
    "path is not zero, and training makes it behaviourally inert). The planted path (the head's "
    "value read of dim X, its write to U_X and the unit's read of U_X) starts at size unit_init "
    "instead of GPT-2's 0.02, since through a one-wide bottleneck it would not grow in a few hundred "
    "steps. The constraints are projected after every optimizer step and checked on the saved "
    "weights. Training also zeroes the example's planted head with probability p_zero_planted or its "
    "planted unit (the unit's column of the MLP c_proj input) with probability p_zero_unit (target: a "
    "neutral continuation), and one random other head with probability p_zero_other or one random "
    "other unit with probability p_zero_other_unit (target unchanged), so that behaviour follows "
    "the structure: the planted head and the planted unit are each necessary, no single other head "
    "or unit matters."
)


@dataclass(frozen=True)
class ToyConfig:
    """Everything that determines the toy model; equal configs build byte-identical weights."""

    profiles: tuple[str, ...] = ("baseline", "extended")  # prompt profiles that form the corpus
    seed: int = 0
    steps: int = 200  # 150 already meets the acceptance numbers; ~1 min on 2 cores
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    vocab_size: int = _TOY["vocab_size"]  # BPE target; the span tokens are added on top
    n_layer: int = _TOY["n_layer"]
    n_head: int = _TOY["n_head"]
    n_embd: int = _TOY["n_embd"]
    n_positions: int = _TOY["n_positions"]
    span_scale: float = 2.0  # class vectors on E are multiplied by this
    unit_init: float = 1.0  # initial size of the planted head -> U -> planted unit weights (see init_unit_path_)
    p_zero_planted: float = 0.2  # zero the example's planted head, train towards neutral
    p_zero_unit: float = 0.2  # zero the example's planted MLP unit, train towards neutral
    p_zero_other: float = 0.3  # zero one other head, target unchanged
    p_zero_other_unit: float = 0.1  # zero one other MLP unit, target unchanged
    # (emotion, layer, head); default: all in the last layer of the default 4x4 model
    planted: tuple[tuple[str, int, int], ...] = (("gratitude", 3, 1), ("anger", 3, 2), ("apology", 3, 0))
    # (emotion, layer, neuron of the MLP's d_mlp = 4 n_embd); each in or after its head's layer
    planted_units: tuple[tuple[str, int, int], ...] = (("gratitude", 3, 137), ("anger", 3, 301), ("apology", 3, 458))
    continuations: str = str(DEFAULT_CONTINUATIONS)
    prompts_root: str = str(PROMPTS_ROOT)
    lexicons_root: str = str(LEXICONS_ROOT)

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}")

        def probability(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be a probability in [0, 1], got {value!r}")

        if not self.profiles or len(set(self.profiles)) != len(self.profiles):
            raise InputError(f"profiles must be a non-empty list without repeats, got {list(self.profiles)}")
        integer("seed", 0)
        integer("steps", 1)
        integer("batch_size", 1)
        integer("warmup", 0)
        integer("vocab_size", 300)  # above the 257 byte-level symbols + EOT, or BPE learns nothing
        integer("n_layer", 1)
        integer("n_head", 1)
        integer("n_embd", 8)
        integer("n_positions", 8)
        if self.n_embd % self.n_head:
            raise InputError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        for name in ("lr", "span_scale", "unit_init"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InputError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.weight_decay, (int, float)) or not 0 <= self.weight_decay < 1:
            raise InputError(f"weight_decay must be in [0, 1), got {self.weight_decay!r}")
        zeroing = ("p_zero_planted", "p_zero_unit", "p_zero_other", "p_zero_other_unit")
        for name in zeroing:
            probability(name)
        if sum(getattr(self, name) for name in zeroing) > 1:
            raise InputError(f"{' + '.join(zeroing)} must not exceed 1")
        if self.n_embd < len(CLASSES) + len(EMOTIONS) + 1:
            raise InputError(f"n_embd must exceed the {len(CLASSES) + len(EMOTIONS)} reserved dims E and U")
        emotions = [e for e, _, _ in self.planted]
        if sorted(emotions) != sorted(EMOTIONS):
            raise InputError(f"planted must name each of {', '.join(EMOTIONS)} exactly once, got {emotions}")
        heads = [(layer, head) for _, layer, head in self.planted]
        for layer, head in heads:
            if not (0 <= layer < self.n_layer and 0 <= head < self.n_head):
                raise InputError(
                    f"planted head {layer}.{head} is outside the model "
                    f"({self.n_layer} layers x {self.n_head} heads)"
                )
        if len(set(heads)) != len(heads):
            raise InputError(f"planted heads must be distinct, got {heads}")
        if not all(isinstance(u, (tuple, list)) and len(u) == 3 for u in self.planted_units):
            raise InputError(f"planted_units must be (emotion, layer, neuron) triples, got {list(self.planted_units)}")
        emotions = [e for e, _, _ in self.planted_units]
        if sorted(emotions) != sorted(EMOTIONS):
            raise InputError(
                f"planted_units must name each of {', '.join(EMOTIONS)} exactly once, got {emotions}"
            )
        units = [(layer, neuron) for _, layer, neuron in self.planted_units]
        for emotion, layer, neuron in self.planted_units:
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (layer, neuron)):
                raise InputError(f"planted unit of {emotion} must have integer layer and neuron, got {layer!r}, {neuron!r}")
            if not (0 <= layer < self.n_layer and 0 <= neuron < self.d_mlp):
                raise InputError(
                    f"planted unit {layer}.{neuron} is outside the model "
                    f"({self.n_layer} layers x {self.d_mlp} MLP units)"
                )
            if layer < self.planted_heads[emotion][0]:
                raise InputError(
                    f"planted unit {layer}.{neuron} of {emotion} comes before its head "
                    f"{self.planted_heads[emotion][0]}.{self.planted_heads[emotion][1]}: "
                    f"a unit must be in or after the head's layer"
                )
        if len(set(units)) != len(units):
            raise InputError(f"planted units must be distinct, got {units}")

    @property
    def d_head(self) -> int:
        return self.n_embd // self.n_head

    @property
    def d_mlp(self) -> int:
        return 4 * self.n_embd  # GPT2Config's default n_inner

    @property
    def emotion_dims(self) -> dict[str, int]:
        """Residual dimension of each class: the last len(CLASSES) dims, in CLASSES order."""
        first = self.n_embd - len(CLASSES)
        return {c: first + i for i, c in enumerate(CLASSES)}

    @property
    def unit_dims(self) -> dict[str, int]:
        """Residual dimension U of each emotion: the len(EMOTIONS) dims before E, in EMOTIONS order."""
        first = self.n_embd - len(CLASSES) - len(EMOTIONS)
        return {e: first + i for i, e in enumerate(EMOTIONS)}

    @property
    def planted_heads(self) -> dict[str, tuple[int, int]]:
        return {e: (layer, head) for e, layer, head in self.planted}

    @property
    def units(self) -> dict[str, tuple[int, int]]:
        """Emotion -> (layer, neuron) of its planted MLP unit."""
        return {e: (layer, neuron) for e, layer, neuron in self.planted_units}
