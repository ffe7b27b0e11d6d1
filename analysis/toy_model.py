"""Build `toy`, the embedded ground-truth model: a small GPT-2 whose emotion heads and MLP units
are known.

The pipeline must find what was planted here, so the plant is exact by construction and only
then trained:

- Every distinct span phrase of the prompt sets (with its leading space) is ONE added token, so
  an emotion prompt and its neutral twin have the same length and differ at exactly one position.
- Four residual dimensions E = (n, g, a, p) carry the class of a span token and nothing else:
  span tokens embed as one shared learned vector off E plus a fixed class vector on E; every
  other write into the residual stream (other tokens, positions, attention and MLP outputs) is
  zero on E.
- Only the planted head of emotion X (one per emotion, all in the last layer) reads E, and only
  its dimension X. No other head, no MLP and not the unembedding read E.
- Three more residual dimensions U = (U_g, U_a, U_p) carry the planted heads' output: the planted
  head of X writes U_X and nothing else (its slice of the attention output projection); nothing
  else writes U. One planted MLP unit per emotion (default: layer 3, the heads' own block, whose
  MLP runs after its attention) is the only reader of U_X; no other unit, head or the
  unembedding reads U.

So the class of the span can leave the span position only through the planted head of that class,
and that head's output reaches the rest of the model only as U_X, read by the planted unit (and,
unavoidably, by every LayerNorm's mean and variance). Training (LM loss on templated
continuations; planted head or planted unit zeroed -> neutral target, a random other head or
unit zeroed -> same target) makes the behaviour follow the structure. The weights are projected
back onto the constraints after every optimizer step and checked on the saved folder;
`planted.json` in the folder records the heads and units.

CLI: python -m analysis.toy_model --output results/models/toy [--profile P ...] [--seed 0] [--steps N]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from jaxtyping import Float, Int
from torch import Tensor
from tqdm import tqdm

from analysis.errors import InputError, cli
from analysis.io import check_output_dir, read_json, write_json
from analysis.prompts import EMOTIONS, LEXICONS_ROOT, NEUTRAL, PROMPTS_ROOT, Prompt, load_lexicon, load_pairs

SCHEMA = "emotion-heads/planted/v1"
CONTINUATIONS_SCHEMA = "emotion-heads/toy-continuations/v1"
PLANTED_FILE = "planted.json"
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib"}
DEFAULT_CONTINUATIONS = Path("data/toy/continuations.yaml")
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


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


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
    vocab_size: int = 1024  # BPE target; the span tokens are added on top
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 64
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


# --------------------------------------------------------------------------------------------
# Corpus: prompt templates and continuations
# --------------------------------------------------------------------------------------------


def span_phrase(prompt: Prompt) -> str:
    """The span with its leading space: the text that becomes one added token."""
    start, end = prompt.span
    if start == 0 or prompt.text[start - 1] != " ":
        where = prompt.source or repr(prompt.text)
        raise InputError(
            f"{where}: the character before '[' must be a space (the toy model's span token starts with it)"
        )
    return prompt.text[start - 1 : end]


def load_templates(config: ToyConfig) -> list[tuple[Prompt, ...]]:
    """One tuple per template line, its prompts in CLASSES order; repeated lines counted once."""
    templates: dict[tuple[str, ...], tuple[Prompt, ...]] = {}
    for profile in config.profiles:
        by_class: dict[str, tuple[Prompt, ...]] = {}
        for emotion in EMOTIONS:
            pairs = load_pairs(emotion, profile, root=config.prompts_root)
            by_class[emotion] = pairs.emotion_prompts
            by_class[NEUTRAL] = pairs.neutral_prompts  # the same file for every emotion
        for row in zip(*(by_class[c] for c in CLASSES), strict=True):
            templates.setdefault(tuple(p.text for p in row), row)
    return list(templates.values())


def span_classes(templates: Sequence[tuple[Prompt, ...]]) -> dict[str, str]:
    """Span phrase -> class; a phrase used by two classes would make its class vector ambiguous."""
    classes: dict[str, str] = {}
    for row in templates:
        for cls, prompt in zip(CLASSES, row, strict=True):
            phrase = span_phrase(prompt)
            if classes.setdefault(phrase, cls) != cls:
                raise InputError(
                    f"{prompt.source}: span {phrase.strip()!r} is used as {classes[phrase]} and as {cls}; "
                    f"a span phrase must belong to one class"
                )
    return dict(sorted(classes.items(), key=lambda kv: (CLASSES.index(kv[1]), kv[0])))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def load_continuations(config: ToyConfig) -> dict[str, tuple[str, ...]]:
    """The continuation bank per class, checked against the lexicons (see the YAML's header)."""
    path = Path(config.continuations)
    if not path.is_file():
        raise InputError(f"continuation bank {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise InputError(f"continuation bank {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("schema") != CONTINUATIONS_SCHEMA:
        raise InputError(f"continuation bank {path} lacks schema: {CONTINUATIONS_SCHEMA}")
    lexicons = {c: set(load_lexicon(c, root=config.lexicons_root)) for c in CLASSES}
    bank: dict[str, tuple[str, ...]] = {}
    for cls in CLASSES:
        texts = doc.get(cls)
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise InputError(f"continuation bank {path}: '{cls}' must be a non-empty list of strings")
        for text in texts:
            words = _words(text)
            own = [w for w in words if w in lexicons[cls]]
            others = [w for w in words for e in EMOTIONS if e != cls and w in lexicons[e]]
            need = 1 if cls == NEUTRAL else 2
            if not words or words[0] not in lexicons[cls] or len(own) < need or others:
                raise InputError(
                    f"continuation bank {path}: {cls} continuation {text!r} must start with a {cls} lexicon "
                    f"word, hold >= {need} of them and no other emotion's words (found {others or 'none'})"
                )
        bank[cls] = tuple(" " + t.strip() for t in texts)
    return bank


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def train_tokenizer(texts: Sequence[str], phrases: Sequence[str], vocab_size: int) -> Any:
    """Byte-level BPE on the corpus, EOT as id 0, each span phrase one added token."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # normalized=False: match the raw text, leading space included; the longest phrase wins
    tok.add_tokens([AddedToken(p, normalized=False, special=False) for p in phrases])
    return tok


def wrap_tokenizer(tok: Any) -> Any:
    """The transformers wrapper the pipeline loads; it adds no BOS (stages prepend it themselves)."""
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast(
        tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT, pad_token=EOT, add_bos_token=False
    )


@dataclass(frozen=True)
class Example:
    """A tokenized training row: BOS + prompt, then continuation + EOS as targets."""

    prompt: tuple[int, ...]  # BOS included
    span_pos: int  # index of the span token in `prompt`


def encode_corpus(
    tok: Any,
    templates: Sequence[tuple[Prompt, ...]],
    bank: Mapping[str, tuple[str, ...]],
    span_ids: Mapping[int, str],
    n_positions: int,
) -> tuple[list[tuple[Example, ...]], dict[str, list[tuple[int, ...]]]]:
    """Tokenize prompts (one span token each, at the twin's position) and continuations (+EOS)."""
    rows: list[tuple[Example, ...]] = []
    for row in templates:
        examples = []
        for cls, prompt in zip(CLASSES, row, strict=True):
            enc = tok.encode(prompt.text)
            hits = [i for i, t in enumerate(enc.ids) if t in span_ids]
            start, end = prompt.span
            if len(hits) != 1 or enc.offsets[hits[0]] != (start - 1, end) or span_ids[enc.ids[hits[0]]] != cls:
                raise InputError(
                    f"{prompt.source}: the span {prompt.span_text!r} is not exactly one span token "
                    f"(another span phrase overlaps the text around it)"
                )
            examples.append(Example(prompt=(0, *enc.ids), span_pos=hits[0] + 1))
        if len({len(e.prompt) for e in examples}) != 1 or len({e.span_pos for e in examples}) != 1:
            raise InputError(f"{row[0].source}: the four prompts of this template tokenize to different layouts")
        rows.append(tuple(examples))
    conts: dict[str, list[tuple[int, ...]]] = {}
    for cls, texts in bank.items():
        conts[cls] = []
        for text in texts:
            ids = tok.encode(text).ids
            if any(t in span_ids for t in ids):
                raise InputError(f"continuation {text.strip()!r} contains a prompt span phrase")
            conts[cls].append((*ids, 0))
    longest = max(len(r[0].prompt) for r in rows) + max(len(c) for cs in conts.values() for c in cs)
    if longest > n_positions:
        raise InputError(f"longest training row has {longest} tokens, more than n_positions={n_positions}")
    return rows, conts


# --------------------------------------------------------------------------------------------
# Constraints on the weights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plant:
    """What the constraints need: where E and U are, which heads and units read and write them,
    which tokens write E. Empty `unit_dims`/`units`: a model built before units were planted."""

    emotion_dims: dict[str, int]  # class -> residual dim (E)
    planted: dict[str, tuple[int, int]]  # emotion -> (layer, head)
    span_ids: dict[str, tuple[int, ...]]  # class -> token ids of its span phrases
    span_scale: float
    n_layer: int
    n_head: int
    n_embd: int
    unit_dims: dict[str, int] = field(default_factory=dict)  # emotion -> residual dim (U)
    units: dict[str, tuple[int, int]] = field(default_factory=dict)  # emotion -> (layer, neuron)

    @property
    def e_dims(self) -> list[int]:
        return [self.emotion_dims[c] for c in CLASSES]

    @property
    def u_dims(self) -> list[int]:
        return [self.unit_dims[e] for e in EMOTIONS if e in self.unit_dims]

    @property
    def reserved(self) -> list[int]:
        """E and U: the dims that only the planted paths may write and read."""
        return self.e_dims + self.u_dims

    def class_vectors(self) -> Float[Tensor, "class e"]:
        return self.span_scale * CLASS_VECTORS


def plant_from_doc(doc: Mapping[str, Any]) -> Plant:
    """Rebuild the Plant from a planted.json document."""
    p = doc["params"]
    return Plant(
        emotion_dims={c: int(d) for c, d in p["emotion_dims"].items()},
        planted={e: (int(h[0][0]), int(h[0][1])) for e, h in doc["by_emotion"].items()},
        span_ids={c: tuple(int(i) for i in ids) for c, ids in p["span_token_ids"].items()},
        span_scale=float(p["span_scale"]),
        n_layer=int(p["n_layer"]),
        n_head=int(p["n_head"]),
        n_embd=int(p["n_embd"]),
        unit_dims={e: int(d) for e, d in p.get("unit_dims", {}).items()},  # absent before units were planted
        units={e: (int(u[0][0]), int(u[0][1])) for e, u in doc.get("units_by_emotion", {}).items()},
    )


def free_masks(plant: Plant, shapes: Mapping[str, torch.Size]) -> dict[str, Tensor]:
    """Parameter name -> 0/1 mask of the entries that may be non-zero (only E/U-constrained ones).

    HF GPT-2 uses Conv1D (y = x @ W + b, W: [in, out]): reading dim d is row d of W, writing
    dim d is column d of W (and b[d]). The E entries of the span rows of wte are set by `project_`.
    """
    e = plant.e_dims
    r = plant.reserved  # E and U
    d_head = plant.n_embd // plant.n_head
    masks: dict[str, Tensor] = {}

    def ones(name: str) -> Tensor:
        return torch.ones(shapes[name])

    for name in ("transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"):
        m = ones(name)  # [rows, n_embd]: token/position embeddings write E and U, lm_head reads them
        m[:, r] = 0
        masks[name] = m
    span = torch.tensor([i for c in CLASSES for i in plant.span_ids[c]])
    masks["transformer.wte.weight"][span[:, None], torch.tensor(e)[None, :]] = 1  # set by project_
    for layer in range(plant.n_layer):
        pre = f"transformer.h.{layer}"
        m = ones(f"{pre}.attn.c_attn.weight")  # [n_embd, 3 * n_embd]: q | k | v, heads inside each
        m[r, :] = 0
        for emotion, (pl, ph) in plant.planted.items():
            if pl == layer:
                d = plant.emotion_dims[emotion]
                for part in range(3):  # q, k, v of the planted head may read its own dim of E
                    lo = part * plant.n_embd + ph * d_head
                    m[d, lo : lo + d_head] = 1
        masks[f"{pre}.attn.c_attn.weight"] = m
        for name in (f"{pre}.attn.c_proj", f"{pre}.mlp.c_proj"):  # outputs: no write to E or U ...
            m = ones(f"{name}.weight")  # [in, n_embd]
            m[:, r] = 0
            masks[f"{name}.weight"] = m
            m = ones(f"{name}.bias")
            m[r] = 0
            masks[f"{name}.bias"] = m
        for emotion, (pl, ph) in plant.planted.items():  # ... except: planted head X writes U_X, only U_X
            if pl == layer and emotion in plant.unit_dims:
                m = masks[f"{pre}.attn.c_proj.weight"]
                m[ph * d_head : (ph + 1) * d_head, :] = 0
                m[ph * d_head : (ph + 1) * d_head, plant.unit_dims[emotion]] = 1
        m = ones(f"{pre}.mlp.c_fc.weight")  # [n_embd, d_mlp]: MLPs read nothing of E or U ...
        m[r, :] = 0
        for emotion, (ul, un) in plant.units.items():  # ... except: planted unit X reads U_X
            if ul == layer:
                m[plant.unit_dims[emotion], un] = 1
        masks[f"{pre}.mlp.c_fc.weight"] = m
    return masks


@torch.no_grad()
def project_(params: Mapping[str, Tensor], plant: Plant, masks: Mapping[str, Tensor]) -> None:
    """Put the weights back on the constraint set (in place)."""
    for name, mask in masks.items():
        params[name].masked_fill_(mask == 0, 0.0)  # (not mul_: that would leave -0.0 behind)
    wte = params["transformer.wte.weight"]
    e = plant.e_dims
    off_e = [i for i in range(plant.n_embd) if i not in set(e)]
    all_span = [i for c in CLASSES for i in plant.span_ids[c]]
    shared = wte[all_span][:, off_e].mean(dim=0)  # [n_embd - 4]: one vector for every span token
    vectors = plant.class_vectors()
    for k, cls in enumerate(CLASSES):
        ids = list(plant.span_ids[cls])
        wte[torch.tensor(ids)[:, None], torch.tensor(off_e)[None, :]] = shared
        wte[torch.tensor(ids)[:, None], torch.tensor(e)[None, :]] = vectors[k]


def constraint_violations(state: Mapping[str, Tensor], plant: Plant) -> list[str]:
    """Every place where the weights break the construction (empty list: exact)."""
    masks = free_masks(plant, {n: t.shape for n, t in state.items()})
    problems = []
    for name, mask in masks.items():
        bad = int(((state[name] != 0) & (mask == 0)).sum())
        if bad:
            problems.append(f"{name}: {bad} entries on E or U (or off U for a planted head) are not 0")
    d_head = plant.n_embd // plant.n_head
    for emotion, (ul, un) in plant.units.items():  # the planted path exists: not all its weights are 0
        hl, hh = plant.planted[emotion]
        u = plant.unit_dims[emotion]
        if not (state[f"transformer.h.{hl}.attn.c_proj.weight"][hh * d_head : (hh + 1) * d_head, u] != 0).any():
            problems.append(f"planted head {hl}.{hh} of {emotion} does not write its dim U")
        if state[f"transformer.h.{ul}.mlp.c_fc.weight"][u, un] == 0:
            problems.append(f"planted unit {ul}.{un} of {emotion} does not read its dim U")
    wte = state["transformer.wte.weight"]
    e = plant.e_dims
    off_e = [i for i in range(plant.n_embd) if i not in set(e)]
    all_span = [i for c in CLASSES for i in plant.span_ids[c]]
    if not torch.equal(wte[all_span][:, off_e], wte[all_span[:1]][:, off_e].expand(len(all_span), -1)):
        problems.append("span token embeddings differ off E")
    for k, cls in enumerate(CLASSES):
        want = plant.class_vectors()[k].expand(len(plant.span_ids[cls]), -1)
        if not torch.equal(wte[list(plant.span_ids[cls])][:, e], want):
            problems.append(f"{cls} span tokens do not carry the {cls} class vector on E")
    return problems


# --------------------------------------------------------------------------------------------
# Head and unit zeroing (training only; the pipeline's interventions live in analysis.interventions)
# --------------------------------------------------------------------------------------------


@contextmanager
def _column_mask(model: Any, projection: str, width: int) -> Iterator[dict[str, Tensor | None]]:
    """Multiply the input of every block's `projection` by a per-row 0/1 mask [batch, layer, k],
    each of the k components covering `width` adjacent input columns. Yields a dict whose
    "mask" entry can be swapped between forwards (None: no masking)."""
    state: dict[str, Tensor | None] = {"mask": None}
    handles = []

    def make_hook(layer: int):
        def hook(module: Any, args: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
            m = state["mask"]
            if m is None:
                return None
            scale = m[:, layer].repeat_interleave(width, dim=-1)[:, None, :]  # [batch, 1, columns]
            return (args[0] * scale, *args[1:])

        return hook

    for layer, block in enumerate(model.transformer.h):
        handles.append(block.get_submodule(projection).register_forward_pre_hook(make_hook(layer)))
    try:
        yield state
    finally:
        for h in handles:
            h.remove()


@contextmanager
def head_mask(
    model: Any, mask: Float[Tensor, "batch layer head"] | None = None
) -> Iterator[dict[str, Tensor | None]]:
    """Multiply each head's slice of the attention c_proj input by a per-row 0/1 mask.

    Zeroing slice h of c_proj's input is exactly removing head h from the HF model.
    """
    with _column_mask(model, "attn.c_proj", model.config.n_embd // model.config.n_head) as state:
        state["mask"] = mask
        yield state


@contextmanager
def unit_mask(
    model: Any, mask: Float[Tensor, "batch layer unit"] | None = None
) -> Iterator[dict[str, Tensor | None]]:
    """Multiply each MLP unit's activation (the MLP c_proj input) by a per-row 0/1 mask.

    Zeroing column n of c_proj's input is exactly removing unit n (the pipeline's
    `blocks.L.mlp.hook_post[..., n]`).
    """
    with _column_mask(model, "mlp.c_proj", 1) as state:
        state["mask"] = mask
        yield state


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def sample_batch(
    rows: Sequence[tuple[Example, ...]],
    conts: Mapping[str, Sequence[tuple[int, ...]]],
    config: ToyConfig,
    gen: torch.Generator,
) -> tuple[
    Int[Tensor, "batch pos"], Int[Tensor, "batch pos"], Float[Tensor, "batch layer head"], Float[Tensor, "batch layer unit"]
]:
    """Random (template, class, continuation) rows, right-padded, with their head and unit masks.

    Each row draws one of: planted head zeroed (target neutral), planted unit zeroed (target
    neutral), one other head zeroed, one other unit zeroed (targets unchanged), or nothing.
    Right padding after EOS changes nothing before it (causal attention), so an all-ones
    attention mask will do and positions start at 0 at BOS, as in (left-padded) generation.
    A neutral row may lose any head or unit (zeroing a planted one must not change "neutral").
    """
    B, L, H, N = config.batch_size, config.n_layer, config.n_head, config.d_mlp
    planted, units = config.planted_heads, config.units
    t = torch.randint(len(rows), (B,), generator=gen).tolist()
    c = torch.randint(len(CLASSES), (B,), generator=gen).tolist()
    r = torch.rand(B, generator=gen).tolist()
    pick = torch.rand(B, generator=gen).tolist()  # which continuation
    pick2 = torch.rand(B, generator=gen).tolist()  # which other head or unit
    mask = torch.ones(B, L, H)
    umask = torch.ones(B, L, N)
    kinds = ("planted head", "planted unit", "other head", "other unit")
    cuts = list(accumulate((config.p_zero_planted, config.p_zero_unit, config.p_zero_other, config.p_zero_other_unit)))
    seqs: list[tuple[list[int], int]] = []  # (ids, first target index)
    for b in range(B):
        cls = CLASSES[c[b]]
        target = cls
        kind = next((k for k, cut in zip(kinds, cuts, strict=True) if r[b] < cut), None)
        if cls == NEUTRAL and kind is not None:  # neutral has no planted head or unit: any may go
            kind = kind.replace("planted", "other")
        if kind == "planted head":
            layer, head = planted[cls]
            mask[b, layer, head] = 0  # the class cannot reach the continuation: say neutral
            target = NEUTRAL
        elif kind == "planted unit":
            layer, unit = units[cls]
            umask[b, layer, unit] = 0  # the class reaches the continuation only through it: say neutral
            target = NEUTRAL
        elif kind == "other head":
            heads = [(layer, head) for layer in range(L) for head in range(H)]
            others = [lh for lh in heads if cls == NEUTRAL or lh != planted[cls]]
            layer, head = others[int(pick2[b] * len(others))]
            mask[b, layer, head] = 0  # no other single head may matter
        elif kind == "other unit":
            skip = cls != NEUTRAL
            k = int(pick2[b] * (L * N - skip))  # an index among the other units
            if skip and k >= units[cls][0] * N + units[cls][1]:
                k += 1  # step over the planted unit
            umask[b, k // N, k % N] = 0  # no other single unit may matter
        cont = conts[target][int(pick[b] * len(conts[target]))]
        prompt = rows[t[b]][c[b]].prompt
        seqs.append((list(prompt) + list(cont), len(prompt)))
    width = max(len(s) for s, _ in seqs)
    ids = torch.zeros(B, width, dtype=torch.long)
    labels = torch.full((B, width), -100, dtype=torch.long)
    for b, (s, first) in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
        labels[b, first : len(s)] = ids[b, first : len(s)]  # continuation + EOS only
    return ids, labels, mask, umask


@torch.no_grad()
def init_unit_path_(params: Mapping[str, Tensor], plant: Plant, scale: float) -> None:
    """Start the planted path E_X -> head value -> U_X -> planted unit at size O(1) (torch's global RNG).

    The path runs through a 1-wide bottleneck (the head's write to U_X, one c_fc weight), and
    Adam moves each entry by about lr per step: from GPT-2's 0.02 init it stays too weak to
    carry the emotion in a few hundred steps. So the head's value read of dim X and its write
    to U_X start as the same random vector of norm `scale` (an X span raises U_X), and the unit
    reads U_X with weight `scale`; training is free to change all three.
    """
    d_head = plant.n_embd // plant.n_head
    for emotion in EMOTIONS:
        if emotion not in plant.units:
            continue
        (hl, hh), (ul, un) = plant.planted[emotion], plant.units[emotion]
        x, u = plant.emotion_dims[emotion], plant.unit_dims[emotion]
        v = torch.randn(d_head)
        v *= scale / v.norm()
        heads = slice(hh * d_head, (hh + 1) * d_head)
        params[f"transformer.h.{hl}.attn.c_attn.weight"][x, 2 * plant.n_embd + hh * d_head :][:d_head] = v
        params[f"transformer.h.{hl}.attn.c_proj.weight"][heads, u] = v
        params[f"transformer.h.{ul}.mlp.c_fc.weight"][u, un] = scale


def train(
    model: Any,
    plant: Plant,
    rows: Sequence[tuple[Example, ...]],
    conts: Mapping[str, Sequence[tuple[int, ...]]],
    config: ToyConfig,
) -> float:
    """AdamW with warmup + cosine decay; projection after every step. Returns the final loss."""
    params = dict(model.named_parameters())
    masks = free_masks(plant, {n: p.shape for n, p in params.items()})
    project_(params, plant, masks)
    init_unit_path_(params, plant, config.unit_init)
    decay = [p for p in params.values() if p.dim() >= 2]  # nanoGPT: no decay on biases and LayerNorm
    no_decay = [p for p in params.values() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.98),
    )
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    model.eval()  # every dropout p is 0; train mode would only add no-op dropout calls (~15 % time)
    with head_mask(model) as hm, unit_mask(model) as um:
        bar = tqdm(range(config.steps), desc="toy model", disable=not sys.stderr.isatty(), leave=False)
        for step in bar:
            warm = min(1.0, (step + 1) / max(1, config.warmup))
            cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / config.steps))
            for group in opt.param_groups:
                group["lr"] = config.lr * warm * cosine
            ids, labels, hm["mask"], um["mask"] = sample_batch(rows, conts, config, gen)
            logits: Float[Tensor, "batch pos vocab"] = model(
                input_ids=ids, attention_mask=torch.ones_like(ids)
            ).logits
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for name, mask in masks.items():  # keep Adam's moments off the forbidden entries
                    if params[name].grad is not None:
                        params[name].grad.mul_(mask)
            opt.step()
            project_(params, plant, masks)
            losses.append(loss.item())
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    tail = losses[-50:]
    return sum(tail) / len(tail)


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seeded, deterministic, single-threaded torch inside; the caller's settings are restored.

    One thread: CPU kernels may split reductions by thread count, so a fixed count makes the
    weights independent of the machine's cores; for a model this small it costs little, and it
    does not thrash when other jobs share the CPU.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(previous)


def load_planted(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The planted.json of a toy model folder (schema checked)."""
    return read_json(Path(folder) / PLANTED_FILE, schema=SCHEMA)


def _verify_folder(folder: Path, doc: Mapping[str, Any], texts: Sequence[str]) -> None:
    """Reload what was saved and check it the way the pipeline will use it."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    problems = constraint_violations(load_file(folder / "model.safetensors"), plant_from_doc(doc))
    if problems:
        raise RuntimeError("toy model breaks its construction: " + "; ".join(problems))
    tok = AutoTokenizer.from_pretrained(folder)
    for text in texts:
        ids = tok(text, add_special_tokens=False).input_ids
        if tok(text).input_ids != ids or tok.decode(ids) != text:
            raise RuntimeError(f"saved tokenizer does not round-trip {text!r} (or adds special tokens)")


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder into place; an old folder is moved aside first, then deleted."""
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
        os.replace(dst, old / dst.name)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)


def build_toy_model(config: ToyConfig, output: Path) -> Path:
    """Build, train, save and verify the toy model in `output` (a HF folder + planted.json)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    if Path(output).suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(
            f"output {output} ends in {Path(output).suffix}: the toy model is a Hugging Face folder "
            f"(safetensors); pickled outputs are refused because loading them runs code"
        )
    output = check_output_dir(output)

    templates = load_templates(config)
    phrases = span_classes(templates)
    bank = load_continuations(config)
    texts = [p.text for row in templates for p in row]
    conts_text = [t for ts in bank.values() for t in ts]

    tok = train_tokenizer(texts + conts_text, list(phrases), config.vocab_size)
    span_ids = {tok.token_to_id(p): cls for p, cls in phrases.items()}
    rows, conts = encode_corpus(tok, templates, bank, span_ids, config.n_positions)
    plant = Plant(
        emotion_dims=config.emotion_dims,
        planted=config.planted_heads,
        span_ids={c: tuple(i for i, cc in span_ids.items() if cc == c) for c in CLASSES},
        span_scale=float(config.span_scale),
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_embd=config.n_embd,
        unit_dims=config.unit_dims,
        units=config.units,
    )

    with _deterministic(config.seed):
        gpt_config = GPT2Config(
            vocab_size=tok.get_vocab_size(),
            n_positions=config.n_positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=False,  # lm_head must be free to ignore E while wte writes it
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )
        model = GPT2LMHeadModel(gpt_config)
        assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
        final_loss = train(model, plant, rows, conts, config)

    planted, units = config.planted_heads, config.units
    doc = {
        "schema": SCHEMA,
        "heads": sorted([list(lh) for lh in planted.values()]),
        "by_emotion": {e: [list(planted[e])] for e in EMOTIONS},
        "units": sorted([list(ln) for ln in units.values()]),
        "units_by_emotion": {e: [list(units[e])] for e in EMOTIONS},
        "construction": CONSTRUCTION,
        "params": {
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
            "planted": [list(p) for p in config.planted],
            "planted_units": [list(u) for u in config.planted_units],
            "d_mlp": config.d_mlp,
            "emotion_dims": config.emotion_dims,
            "unit_dims": config.unit_dims,
            "class_vectors": {c: CLASS_VECTORS[k].tolist() for k, c in enumerate(CLASSES)},
            "span_token_ids": {c: list(plant.span_ids[c]) for c in CLASSES},
            "span_phrases": {c: [p for p, cc in phrases.items() if cc == c] for c in CLASSES},
            "vocab_size_total": tok.get_vocab_size(),
            "n_templates": len(rows),
            "final_train_loss": round(final_loss, 6),
        },
    }

    output.parent.mkdir(parents=True, exist_ok=True)  # only now: a failed build creates no folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar is only noise in logs
    try:
        model.save_pretrained(tmp)
        wrap_tokenizer(tok).save_pretrained(tmp)
        write_json(tmp / PLANTED_FILE, doc)
        _verify_folder(tmp, doc, texts)
        tmp.chmod(0o755)  # mkdtemp and the atomic writers create owner-only modes; a model is shared
        for f in tmp.iterdir():
            f.chmod(0o644)
        _replace_dir(tmp, output)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        if tmp.exists():
            shutil.rmtree(tmp)
    return output


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = ToyConfig()
    p = argparse.ArgumentParser(prog="python -m analysis.toy_model", description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True, help="model folder to create (e.g. results/models/toy)")
    p.add_argument(
        "--profile",
        action="append",
        help=f"prompt profile in the corpus; repeat for several (default: {' '.join(d.profiles)})",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help="BPE vocabulary before span tokens")
    p.add_argument("--continuations", default=d.continuations, help="continuation bank (YAML)")
    return p.parse_args(argv)


@cli
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    config = ToyConfig(
        profiles=tuple(args.profile) if args.profile else ToyConfig.profiles,
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        vocab_size=args.vocab_size,
        continuations=args.continuations,
    )
    start = time.perf_counter()
    out = build_toy_model(config, Path(args.output))
    seconds = time.perf_counter() - start
    print(
        f"toy model with planted heads {config.planted} and units {config.planted_units} "
        f"written to {out} in {seconds:.0f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
