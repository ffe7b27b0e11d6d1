"""What we measure: emotion of a continuation (text) and of the next-token distribution (logits).

Text metrics score the continuation only, never the prompt: VADER compound sentiment in
[-1, 1] (offline, ships its lexicon) and word-boundary keyword counts per emotion lexicon.
Logit metrics are teacher-forced at the last prompt position:
    M = logsumexp(logits[T_emotion]) - logsumexp(logits[T_neutral])
over the token ids of the emotion's and the neutral lexicon, and KL(clean || intervened).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from analysis.core.prompts import LEXICONS_ROOT, lexicon_word_ids, load_lexicon
from analysis.base.vocabulary import EMOTIONS, NEUTRAL
from analysis.base.errors import InputError


LEXICONS = (*EMOTIONS, NEUTRAL)


@functools.lru_cache(maxsize=None)
def _keyword_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


def keyword_count(text: str, words: Sequence[str]) -> int:
    """Occurrences of any lexicon word as a whole word, case-insensitive ("thanks" not "thanksgiving")."""
    return len(_keyword_pattern(tuple(words)).findall(text))


# The copy control's stem rule (issue 23): two words share a stem when they are the same word
# (lowercase) or both have at least STEM_PREFIX letters and their first STEM_PREFIX letters agree.
# A common-prefix rule rather than suffix stripping: it needs no suffix list and catches the lexicon's
# derivations whose suffix lists miss (thank → thanks, thankful, thanked; apology → apologize,
# apologies; grateful → gratitude; appreciate → appreciation). Its false matches (than → thank,
# forgot → forgive, delicious → delivery on this data) only drop more lexicon tokens from the
# copy-free M, which makes it stricter, never lets a copying component through. Words shorter than
# STEM_PREFIX letters ("mad") match on equality only.
STEM_PREFIX = 4
_WORD = re.compile(r"[A-Za-z]+")


def shares_stem(a: str, b: str) -> bool:
    """Whether two words share a stem under the copy control's rule (STEM_PREFIX)."""
    a, b = a.lower(), b.lower()
    return a == b or (len(a) >= STEM_PREFIX and len(b) >= STEM_PREFIX and a[:STEM_PREFIX] == b[:STEM_PREFIX])


def stem_matches(text: str, words: Sequence[str]) -> set[str]:
    """The `words` that share a stem with some word of `text` (the copy control leaves them out)."""
    seen = {w.lower() for w in _WORD.findall(text)}
    prefixes = {w[:STEM_PREFIX] for w in seen if len(w) >= STEM_PREFIX}
    return {
        w for w in words
        if w.lower() in seen or (len(w) >= STEM_PREFIX and w.lower()[:STEM_PREFIX] in prefixes)
    }


@functools.lru_cache(maxsize=1)
def _vader():  # noqa: ANN202
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER compound score in [-1, 1]; 0.0 for an empty continuation."""
    return float(_vader().polarity_scores(text)["compound"]) if text.strip() else 0.0


def lexicon_token_ids(tokenizer, words: Sequence[str], name: str = "lexicon") -> list[int]:  # noqa: ANN001
    """Ids of the single-token spellings of each word as a continuation would start it.

    A continuation's first token usually carries a leading space (" thanks", " Thanks"); a
    word that is several tokens under this tokenizer is represented by none of its pieces,
    since a shared first piece ("grat") would credit unrelated words.
    """
    ids = {i for w_ids in lexicon_word_ids(tokenizer, words).values() for i in w_ids}
    if not ids:
        # the same words as prepare_prompts' lexicon report (analysis.core.prompt_table.lexicon_report)
        raise InputError(
            f"{LEXICONS_ROOT / name}.txt has no word with a single-token form under the tokenizer of "
            f"{getattr(tokenizer, 'name_or_path', '') or 'this model'}; the score M and the keyword counts need at least one"
        )
    return sorted(ids)


def lexicon_ids(tokenizer) -> dict[str, list[int]]:  # noqa: ANN001
    """Token ids of every lexicon; an emotion lexicon whose ids lie all inside the neutral one's
    (or contain all of them) is refused: M would then be ≡ 0 (or one-sided) by construction."""
    ids = {name: lexicon_token_ids(tokenizer, load_lexicon(name), name) for name in LEXICONS}
    neutral = set(ids[NEUTRAL])
    for emotion in EMOTIONS:
        own = set(ids[emotion])
        if own <= neutral or neutral <= own:
            how = "identical to" if own == neutral else ("inside" if own <= neutral else "a superset of")
            raise InputError(
                f"the {emotion} lexicon is {how} the neutral lexicon for this tokenizer "
                f"({len(own & neutral)} of its {len(own)} token ids shared): M = logsumexp(emotion) - "
                f"logsumexp(neutral) would not measure {emotion}; make the two word lists distinct"
            )
    return ids


def lexicon_words(tokenizer) -> dict[str, tuple[str, ...]]:  # noqa: ANN001
    """Per lexicon, the words M uses under this tokenizer (those with a single-token form);
    the keyword counts use the same words, so M and the keyword metric share one word list per model."""
    return {name: tuple(lexicon_word_ids(tokenizer, load_lexicon(name))) for name in LEXICONS}


def emotion_score(
    logits: Float[Tensor, "batch vocab"], emotion_ids: Sequence[int], neutral_ids: Sequence[int]
) -> Float[Tensor, " batch"]:
    """M: how much more next-token mass goes to the emotion lexicon than to the neutral one (nats)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits[:, list(emotion_ids)].logsumexp(-1) - logits[:, list(neutral_ids)].logsumexp(-1)


def copy_free_emotion_score(
    logits: Float[Tensor, "batch vocab"], emotion_ids: Sequence[int], neutral_ids: Sequence[int],
    keep: Bool[Tensor, "batch lexicon"],
) -> Float[Tensor, " batch"]:
    """M over each row's kept lexicon tokens only (`keep` over emotion_ids then neutral_ids):
    the copy control, with the tokens that occur in the row's prompts left out. NaN for a row
    that keeps no emotion or no neutral token."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    n_e = len(emotion_ids)
    lex = logits[:, [*emotion_ids, *neutral_ids]].masked_fill(~keep, float("-inf"))
    m = lex[:, :n_e].logsumexp(-1) - lex[:, n_e:].logsumexp(-1)
    usable = keep[:, :n_e].any(-1) & keep[:, n_e:].any(-1)
    return torch.where(usable, m, torch.full_like(m, float("nan")))


def copy_keep_rows(
    tokenizer, texts: Sequence[Sequence[str]], prompt_ids: Sequence[Sequence[int]], emotion: str,  # noqa: ANN001
    ids: tuple[Sequence[int], Sequence[int]],
) -> Bool[Tensor, "row lexicon"]:
    """Per row, which lexicon tokens (`ids`: emotion then neutral) the copy-free M keeps: every token
    id of the row's prompts (`prompt_ids`) is left out, and every single-token spelling of a lexicon
    word that shares a stem (`shares_stem`) with a word of the row's prompt `texts`. The screening and
    the experiments use this one rule (analysis.screening.common.copy_keep)."""
    words = {name: lexicon_word_ids(tokenizer, load_lexicon(name)) for name in (emotion, NEUTRAL)}
    order = [*ids[0], *ids[1]]
    keep = torch.ones(len(texts), len(order), dtype=torch.bool)
    for r, (row_texts, row_ids) in enumerate(zip(texts, prompt_ids, strict=True)):
        gone = {int(t) for t in row_ids}
        for table in words.values():
            gone.update(i for w in stem_matches(" ".join(row_texts), list(table)) for i in table[w])
        keep[r] = torch.tensor([i not in gone for i in order])
    return keep


def kl_divergence(clean: Float[Tensor, "batch vocab"], intervened: Float[Tensor, "batch vocab"]) -> Float[Tensor, " batch"]:
    """KL(clean || intervened) of the next-token distributions, in nats (0 when unchanged)."""
    dtype = torch.promote_types(clean.dtype, torch.float32)
    lp, lq = clean.to(dtype).log_softmax(-1), intervened.to(dtype).log_softmax(-1)
    return (lp.exp() * (lp - lq)).sum(-1).clamp(min=0.0)


def _copy_free(a: ArmOutput) -> np.ndarray:
    if a.keep is None:
        return emotion_score(a.logits, a.emotion_ids, a.neutral_ids).double().cpu().numpy()
    m = copy_free_emotion_score(a.logits, a.emotion_ids, a.neutral_ids, a.keep.to(a.logits.device)).double().cpu().numpy()
    if not np.isfinite(m).all():
        raise InputError(
            f"the copy-free M of {int((~np.isfinite(m)).sum())} prompts keeps no emotion or no neutral lexicon token "
            "(their prompts hold every lexicon word's stem); add lexicon words"
        )
    return m


# --- the registries: one entry per metric ------------------------------------------------------


@dataclass(frozen=True)
class ScreeningMetric:
    """What the screening scores each component's patching effect on (at the last prompt position)."""

    meaning: str  # stored in the screening JSON
    score: Callable[[Float[Tensor, "batch vocab"], Sequence[int], Sequence[int]], Float[Tensor, " batch"]]


SCREENING_METRICS: dict[str, ScreeningMetric] = {
    "emotion_score": ScreeningMetric(
        "M = logsumexp(logits[emotion lexicon]) - logsumexp(logits[neutral lexicon]) at the last prompt position", emotion_score
    ),
}
SCREENING_METRIC = SCREENING_METRICS["emotion_score"]  # the one the screening uses


@dataclass(frozen=True)
class ArmOutput:
    """What a generation metric sees of one intervened (or clean) arm, beside the clean arm."""

    texts: Sequence[str]  # continuations only, never the prompt
    tokens: Int[Tensor, "batch new"]
    logits: Float[Tensor, "batch vocab"]  # teacher-forced, last prompt position
    clean_tokens: Int[Tensor, "batch new"]
    clean_logits: Float[Tensor, "batch vocab"]
    emotion_ids: Sequence[int]
    neutral_ids: Sequence[int]
    # Per lexicon, the words with a single-token form under the model's tokenizer (lexicon_words):
    # the keyword counts use them, as M does; None: the whole lexicon file.
    words: dict[str, Sequence[str]] | None = None
    # Per prompt, the lexicon tokens the copy-free M keeps (copy_keep_rows; emotion then neutral
    # ids); None: no copy control (the copy-free M is then M itself).
    keep: Bool[Tensor, "batch lexicon"] | None = None


@dataclass(frozen=True)
class GenerationMetric:
    label: str  # the console table's row
    meaning: str  # stored in the experiment JSON
    score: Callable[[ArmOutput], np.ndarray]  # one float per prompt
    # >= 0 against the clean arm by construction (KL, changed): no sign-flip test against 0 (any
    # positive value in every cluster reaches the p floor); compared with the random-head baseline.
    non_negative: bool = False


def _keywords(name: str) -> GenerationMetric:
    def score(a: ArmOutput) -> np.ndarray:
        words = a.words[name] if a.words is not None else load_lexicon(name)
        return np.asarray([float(keyword_count(t, words)) for t in a.texts], dtype=float)

    return GenerationMetric(
        f"{name.capitalize()} keywords",
        f"word-boundary count of the data/lexicons/{name}.txt words that have a single-token form under the model's "
        f"tokenizer (the words M uses) in the continuation", score
    )


# In table order (the JSON, the Parquet and the console table keep it).
GENERATION_METRICS: dict[str, GenerationMetric] = {
    "sentiment": GenerationMetric(
        "Sentiment mean", "VADER compound sentiment of the continuation, in [-1, 1]",
        lambda a: np.asarray([sentiment(t) for t in a.texts], dtype=float),
    ),
    **{f"kw_{name}": _keywords(name) for name in LEXICONS},
    "changed": GenerationMetric(
        "Changed continuations", "1 if the continuation's token ids differ from the baseline's, else 0",
        lambda a: (a.tokens != a.clean_tokens).any(1).double().cpu().numpy(), non_negative=True,
    ),
    "emotion_score": GenerationMetric(
        "Emotion score M",
        "logsumexp of next-token logits over the emotion lexicon's token ids minus the same over "
        "the neutral lexicon's, at the last prompt position (teacher-forced), in nats",
        lambda a: emotion_score(a.logits, a.emotion_ids, a.neutral_ids).double().cpu().numpy(),
    ),
    # Issue 23: the experiments' M with the copy control, beside M (as the screening's exact_copy_free).
    "emotion_score_copy_free": GenerationMetric(
        "Emotion score M (copy-free)",
        "M over the lexicon tokens that neither prompt of the pair contains and that share no stem with a word of "
        "either prompt (the screening's copy control, analysis.measures.metrics.copy_keep_rows), in nats",
        lambda a: _copy_free(a),
    ),
    "kl": GenerationMetric(
        "KL(clean||intervened)",
        "KL divergence of the clean from the intervened next-token distribution at the last prompt position, in nats",
        lambda a: kl_divergence(a.clean_logits, a.logits).double().cpu().numpy(), non_negative=True,
    ),
}
