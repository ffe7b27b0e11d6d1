"""The toy's corpus: templates from the prompt files, continuations, tokenizer and encoded examples."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
import yaml

from analysis.core.prompts import load_lexicon, load_pairs, Prompt
from analysis.base.vocabulary import EMOTIONS, NEUTRAL
from analysis.base.contract import TOY_CONTINUATIONS_SCHEMA
from analysis.embedded.construction import CLASSES, EOT, ToyConfig
from analysis.base.errors import InputError


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
    """One tuple per template line, its prompts in CLASSES order; repeated lines counted once.

    Each emotion's twins come from its own `<emotion>.neutral.txt` where the profile has one (else
    the shared neutral.txt): a line whose emotions have different twins gives one row per distinct
    twin, so that every twin is in the corpus (and gets its span token)."""
    templates: dict[tuple[str, ...], tuple[Prompt, ...]] = {}
    for profile in config.profiles:
        by_emotion = {e: load_pairs(e, profile, root=config.prompts_root) for e in EMOTIONS}
        for i, emotion_row in enumerate(zip(*(by_emotion[e].emotion_prompts for e in EMOTIONS), strict=True)):
            twins = {by_emotion[e].neutral_prompts[i].text: by_emotion[e].neutral_prompts[i] for e in EMOTIONS}
            for twin in twins.values():
                by_class = {NEUTRAL: twin, **dict(zip(EMOTIONS, emotion_row, strict=True))}
                row = tuple(by_class[c] for c in CLASSES)
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
    if not isinstance(doc, dict) or doc.get("schema") != TOY_CONTINUATIONS_SCHEMA:
        raise InputError(f"continuation bank {path} lacks schema: {TOY_CONTINUATIONS_SCHEMA}")
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


def corpus_tokenizer(
    templates: Sequence[tuple[Prompt, ...]], bank: Mapping[str, tuple[str, ...]], phrases: Mapping[str, str], vocab_size: int
) -> Any:
    """The toy's tokenizer: BPE on the text around the spans and on the continuations, spans added.

    The spans stay out of the BPE corpus: each is one added token anyway, and hundreds of distinct
    expressions would spend the merges that the templates and continuations need.
    """
    frames = [part for row in templates for p in row for part in (p.before[:-1], p.after)]  # [:-1]: the span's space
    return train_tokenizer(frames + [t for ts in bank.values() for t in ts], list(phrases), vocab_size)


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
