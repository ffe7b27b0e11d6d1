"""Prompt sets, lexicons and the one tokenization every stage shares.

A prompt file holds one prompt per line with the emotion span in square brackets, e.g.
`Hi Maria, [thank you so much]. I just wanted to say that`. Line i of an emotion file and line i
of the neutral file of the same profile are one *pair*: the same template (identical text outside
the brackets) with a different span. Pairing is what makes per-prompt differences meaningful, so
every loader here checks it and reports a broken pair as one line naming the file and line.

Tokenization lives here (not in each stage) so that screening, ablation and patching agree on
positions: BOS is prepended by us, rows are left-padded (the last real token is at position -1),
and `span_mask` marks the tokens that overlap the bracketed span.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from analysis.base.vocabulary import EMOTIONS, NEUTRAL
from analysis.base.errors import InputError
if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


PROMPTS_ROOT = Path("data/prompts")


LEXICONS_ROOT = Path("data/lexicons")


PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Prompt:
    """A prompt with its brackets removed and the span kept as character offsets.

    Offsets (not token positions) are stored because token positions depend on the model's
    tokenizer; `tokenize` maps them to tokens for whichever model is in use.
    """

    text: str  # brackets removed
    span: tuple[int, int]  # char offsets [start, end) of the span in text
    source: str = field(default="", compare=False, repr=False)  # "path:line", for messages only

    def __post_init__(self) -> None:
        start, end = self.span
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"span {self.span} is not a non-empty range inside {self.text!r}")

    @property
    def span_text(self) -> str:
        """The text that was between the brackets."""
        return self.text[self.span[0] : self.span[1]]

    @property
    def before(self) -> str:
        """Template text before the span (identical within a pair)."""
        return self.text[: self.span[0]]

    @property
    def after(self) -> str:
        """Template text after the span (identical within a pair)."""
        return self.text[self.span[1] :]


def parse_prompt(line: str, where: str) -> Prompt:
    """Parse one bracketed line; `where` (e.g. `path:3`) starts every error message."""
    opens = [i for i, ch in enumerate(line) if ch == "["]
    closes = [i for i, ch in enumerate(line) if ch == "]"]
    if not opens and not closes:
        raise InputError(f"{where}: no emotion span; wrap it in square brackets, e.g. 'Hi, [thank you]. Now'")
    if len(opens) > 1 or len(closes) > 1:
        raise InputError(
            f"{where}: {len(opens)} '[' and {len(closes)} ']' found; a prompt has exactly one [span]"
        )
    if len(opens) != len(closes):
        stray = "[" if opens else "]"
        raise InputError(f"{where}: stray '{stray}' without its partner; a prompt has exactly one [span]")
    start, close = opens[0], closes[0]
    if close < start:
        raise InputError(f"{where}: ']' comes before '['; a prompt has exactly one [span]")
    if close == start + 1 or not line[start + 1 : close].strip():
        raise InputError(f"{where}: the [span] is empty")
    text = line[:start] + line[start + 1 : close] + line[close + 1 :]
    return Prompt(text=text, span=(start, close - 1), source=where)


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror}") from None
    # A UTF-8 byte-order mark (what some Windows editors put first) is an encoding marker, not
    # text: kept, it would become extra tokens in the first prompt / lexicon word of the file.
    return raw.removeprefix("\ufeff").splitlines()


def load_prompt_file(path: PathLike) -> tuple[Prompt, ...]:
    """Load a prompt file; empty, duplicate or malformed lines are errors naming `path:line`."""
    p = Path(path)
    lines = _read_lines(p, "prompt file")
    prompts: list[Prompt] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        where = f"{p}:{number}"
        if not line.strip():
            raise InputError(f"{where}: empty line; every line must be one prompt")
        if line != line.strip():
            raise InputError(f"{where}: leading or trailing whitespace (it would change the tokens)")
        if line in first_seen:
            raise InputError(f"{where}: duplicate of line {first_seen[line]} ({p}:{first_seen[line]})")
        first_seen[line] = number
        prompts.append(parse_prompt(line, where))
    return tuple(prompts)


@dataclass(frozen=True)
class PromptPairs:
    """Emotion prompts and their neutral partners; index i of both is one pair (same template)."""

    emotion: str
    emotion_prompts: tuple[Prompt, ...]
    neutral_prompts: tuple[Prompt, ...]

    def __post_init__(self) -> None:
        if len(self.emotion_prompts) != len(self.neutral_prompts):
            raise ValueError("emotion_prompts and neutral_prompts must have the same length")

    def __len__(self) -> int:
        return len(self.emotion_prompts)

    @property
    def origin(self) -> str:
        """The emotion prompts' file (it names the profile), for messages."""
        source = self.emotion_prompts[0].source if self.emotion_prompts else ""
        return source.rsplit(":", 1)[0] or f"the {self.emotion} prompts"


def available_profiles(root: PathLike = PROMPTS_ROOT) -> list[str]:
    """Names of the prompt profiles (sub-folders of `root`), sorted."""
    r = Path(root)
    if not r.is_dir():
        return []
    return sorted(d.name for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))


def _check_emotion(emotion: str) -> None:
    if emotion not in EMOTIONS:
        raise InputError(f"unknown emotion {emotion!r}; allowed: {', '.join(EMOTIONS)}")


def _profile_file(name: str, profile: str | None, root: Path) -> Path:
    if profile is None:
        raise InputError(f"no prompt profile and no explicit {name} prompt file given")
    if not profile.strip() or Path(profile).name != profile:
        existing = ", ".join(available_profiles(root)) or "none"
        raise InputError(f"prompt profile {profile!r} is not a profile name (existing profiles: {existing})")
    folder = root / profile
    if not folder.is_dir():
        existing = ", ".join(available_profiles(root)) or "none"
        raise InputError(f"prompt profile {profile!r} not found in {root} (existing profiles: {existing})")
    path = folder / f"{name}.txt"
    if not path.is_file():
        raise InputError(f"prompt profile {profile!r} has no {name} prompts ({path} does not exist)")
    return path


def twin_file_name(emotion: str) -> str:
    """The per-emotion twin file's stem: `<profile>/<emotion>.neutral.txt` (issue 23)."""
    return f"{emotion}.{NEUTRAL}"


def twin_file(emotion: str, profile: str | None, root: PathLike = PROMPTS_ROOT) -> Path:
    """The neutral twins of `emotion` in `profile`: its own `<emotion>.neutral.txt` when the profile
    has one (twins written to match that emotion's spans word class by word class), else the
    profile's shared `neutral.txt`."""
    r = Path(root)
    if profile is not None and Path(profile).name == profile and profile.strip():
        own = r / profile / f"{twin_file_name(emotion)}.txt"
        if own.is_file():
            return own
    return _profile_file(NEUTRAL, profile, r)


def load_pairs(
    emotion: str,
    profile: str | None = "baseline",
    *,
    emotion_file: PathLike | None = None,
    neutral_file: PathLike | None = None,
    root: PathLike = PROMPTS_ROOT,
) -> PromptPairs:
    """Load and check the (emotion, neutral) pairs of a profile; explicit files override it.

    The twins are `<emotion>.neutral.txt` when the profile has that file, else `neutral.txt`."""
    _check_emotion(emotion)
    r = Path(root)
    epath = Path(emotion_file) if emotion_file is not None else _profile_file(emotion, profile, r)
    npath = Path(neutral_file) if neutral_file is not None else twin_file(emotion, profile, r)
    emotion_prompts = load_prompt_file(epath)
    neutral_prompts = load_prompt_file(npath)
    if not emotion_prompts:
        raise InputError(f"prompt file {epath} has no prompts")
    if not neutral_prompts:
        raise InputError(f"prompt file {npath} has no prompts")
    if len(emotion_prompts) != len(neutral_prompts):
        raise InputError(
            f"unpaired prompts: {epath} has {len(emotion_prompts)} lines but {npath} has "
            f"{len(neutral_prompts)}; line i of both must be one pair"
        )
    for number, (e, n) in enumerate(zip(emotion_prompts, neutral_prompts, strict=True), start=1):
        if e.before != n.before or e.after != n.after:
            part = "before" if e.before != n.before else "after"
            raise InputError(
                f"{epath}:{number} and {npath}:{number} are not the same template: the text {part} "
                f"the [span] differs ({(e.before if part == 'before' else e.after)!r} vs "
                f"{(n.before if part == 'before' else n.after)!r})"
            )
    return PromptPairs(emotion=emotion, emotion_prompts=emotion_prompts, neutral_prompts=neutral_prompts)


def load_lexicon(name: str, root: PathLike = LEXICONS_ROOT) -> tuple[str, ...]:
    """Words of `root/<name>.txt`, lowercased, in file order; `#` comments and blanks skipped."""
    path = Path(root) / f"{name}.txt"
    words: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(_read_lines(path, "lexicon"), start=1):
        word = line.strip().lower()
        if not word or word.startswith("#"):
            continue
        if len(word.split()) != 1:
            raise InputError(f"{path}:{number}: one word per line expected, got {line.strip()!r}")
        if word not in seen:
            seen.add(word)
            words.append(word)
    if not words:
        raise InputError(f"lexicon {path} has no words")
    return tuple(words)


@dataclass(frozen=True)
class TokenBatch:
    """Left-padded token ids with BOS first; the last real token of every row is at position -1.

    Left padding keeps "the last prompt position" at one index for the whole batch, which the
    logit metric and `last`-position patching rely on.
    """

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    span_mask: Bool[Tensor, "batch pos"]  # True on tokens overlapping the span's char range
    lengths: Int[Tensor, " batch"]  # real tokens per row, BOS included

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.span_mask, self.lengths)))


def _encode(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt]) -> list[tuple[list[int], list[int]]]:
    """Token ids and, per prompt, the unpadded indices (0 = first text token) overlapping the span."""
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer; span positions need offsets"
        )
    enc: Any = tokenizer(
        [p.text for p in prompts], add_special_tokens=False, return_offsets_mapping=True
    )
    out: list[tuple[list[int], list[int]]] = []
    for i, (prompt, ids, offsets) in enumerate(
        zip(prompts, enc["input_ids"], enc["offset_mapping"], strict=True)
    ):
        start, end = prompt.span
        span_idx = [j for j, (s, e) in enumerate(offsets) if s < end and e > start and e > s]
        if not span_idx:
            where = prompt.source or f"prompt {i}"
            raise InputError(f"{where}: span {prompt.span_text!r} maps to no token of {prompt.text!r}")
        out.append((list(ids), span_idx))
    return out


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    *,
    bos_id: int,
    pad_id: int,
) -> TokenBatch:
    """Tokenize prompts the way every stage does: BOS prepended by us, left padding with `pad_id`."""
    if not prompts:
        raise InputError("no prompts to tokenize")
    encoded = _encode(tokenizer, prompts)
    lengths = [len(ids) + 1 for ids, _ in encoded]
    width = max(lengths)
    batch = len(encoded)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    span_mask = torch.zeros((batch, width), dtype=torch.bool)
    for row, ((ids, span_idx), length) in enumerate(zip(encoded, lengths, strict=True)):
        offset = width - length
        input_ids[row, offset] = bos_id
        input_ids[row, offset + 1 :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, offset:] = 1
        span_mask[row, [offset + 1 + j for j in span_idx]] = True
    return TokenBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        span_mask=span_mask,
        lengths=torch.tensor(lengths, dtype=torch.long),
    )


def aligned_pairs(tokenizer: PreTrainedTokenizerBase, pairs: PromptPairs) -> list[int]:
    """Indices of the pairs with the same token count and the span at the same token positions.

    Only such pairs can be patched at `all` positions (one source position per target position).
    """
    if len(pairs) == 0:
        return []
    emo = _encode(tokenizer, pairs.emotion_prompts)
    neu = _encode(tokenizer, pairs.neutral_prompts)
    return [
        i
        for i, ((e_ids, e_span), (n_ids, n_span)) in enumerate(zip(emo, neu, strict=True))
        if len(e_ids) == len(n_ids) and e_span == n_span
    ]


def keep_aligned(tokenizer: PreTrainedTokenizerBase, pairs: PromptPairs, *, max_unaligned_share: float, model: str) -> list[int]:
    """`aligned_pairs`, refusing a profile that loses more than `max_unaligned_share` of its pairs.

    The one check of every stage that leaves unaligned pairs out (screenings and patching at
    `positions: all`): each pair left out is a whole expression lost, so beyond the share
    (params.yaml alignment.max_unaligned_share, < 1, so none aligned is always refused) the
    numbers would describe another set of expressions than the profile names.
    """
    keep = aligned_pairs(tokenizer, pairs)
    k, n = len(pairs) - len(keep), len(pairs)
    allowed = math.floor(max_unaligned_share * n + 1e-9)  # 1e-9: 0.2 * 35 is 7.000000000000001, and 7 is allowed
    if k > allowed:
        raise InputError(
            f"{pairs.origin}: {k} of {n} {pairs.emotion} pairs do not align under the tokenizer of {model} (emotion "
            f"prompt and neutral twin differ in token count or span position), more than alignment.max_unaligned_share "
            f"{max_unaligned_share:g} allows (at most {allowed}); positions all "
            f"patches position by position: use positions last or span, or fix the pairs"
        )
    return keep


def equal_length_pairs(tokenizer: PreTrainedTokenizerBase, pairs: PromptPairs) -> int:
    """How many pairs `aligned_pairs` keeps."""
    return len(aligned_pairs(tokenizer, pairs))


def subset(pairs: PromptPairs, keep: list[int]) -> PromptPairs:
    return PromptPairs(
        pairs.emotion,
        tuple(pairs.emotion_prompts[i] for i in keep),
        tuple(pairs.neutral_prompts[i] for i in keep),
    )


def span_clusters(pairs: PromptPairs) -> list[str]:
    """One label per pair: its emotion expression and its neutral twin's (the span texts).

    Templates reuse a small set of expressions; pairs sharing one are not independent evidence
    about the emotion, so statistics draw them as one cluster (analysis.measures.stats).
    """
    return [f"{e.span_text}|{n.span_text}" for e, n in zip(pairs.emotion_prompts, pairs.neutral_prompts, strict=True)]


def template_labels(pairs: PromptPairs) -> list[str]:
    """One label per pair: its template ending (the text after the span, shared by the twins).

    Each expression appears in a few templates and each template ending holds many expressions,
    so a template's own effect is shared across clusters; the statistics cluster by it as well
    (two-way standard error, analysis.measures.stats).
    """
    return [e.after for e in pairs.emotion_prompts]


def split_expressions(
    pairs: PromptPairs, *, seed: int, selection_share: float, need: int
) -> tuple[frozenset[str], frozenset[str]]:
    """The expressions (`span_clusters` labels) of the selection and the confirmation half.

    Held-out confirmation (issue 14): the screening ranks on the selection half, the
    experiments report on the confirmation half, so the winner's curse of picking the best of
    many heads does not inflate the confirmed effect. The split is by expression (a cluster
    never straddles the halves), seeded by `seed` and the emotion, and independent of the
    model, so every stage and model draws the same halves. `need`: fewest expressions each
    half must keep (analysis.measures.stats.min_clusters()); fewer is an InputError naming the counts.
    """
    labels = sorted(set(span_clusters(pairs)))
    order = random.Random(f"split:{seed}:{pairs.emotion}").sample(labels, len(labels))
    n_sel = round(selection_share * len(labels))
    sel, conf = order[:n_sel], order[n_sel:]
    if min(len(sel), len(conf)) < need:
        raise InputError(
            f"split: selection_share {selection_share:g} of the {len(labels)} {pairs.emotion} expressions leaves "
            f"{len(sel)} for selection and {len(conf)} for confirmation; the statistics need at least {need} "
            f"in each half (add expressions, change split.selection_share, or set split.enabled false)"
        )
    return frozenset(sel), frozenset(conf)


def in_half(pairs: PromptPairs, half: frozenset[str]) -> list[int]:
    """Indices of the pairs whose expression is in `half`."""
    return [i for i, c in enumerate(span_clusters(pairs)) if c in half]


def lexicon_word_ids(tokenizer, words: Sequence[str]) -> dict[str, list[int]]:  # noqa: ANN001
    """Per word, the ids of its single-token spellings (" w", " W", "w", "W"); a word that has
    none under this tokenizer is left out (the copy control drops a word with all its ids)."""
    out: dict[str, list[int]] = {}
    for w in words:
        ids: set[int] = set()
        for variant in (f" {w}", f" {w.capitalize()}", w, w.capitalize()):
            enc = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                ids.add(int(enc[0]))
        if ids:
            out[w] = sorted(ids)
    return out
