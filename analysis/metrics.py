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
from collections.abc import Sequence
import torch
from jaxtyping import Float
from torch import Tensor

from analysis.core.prompts import load_lexicon
from analysis.core.vocabulary import EMOTIONS, NEUTRAL
from analysis.errors import InputError


LEXICONS = (*EMOTIONS, NEUTRAL)


@functools.lru_cache(maxsize=None)
def _keyword_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


def keyword_count(text: str, words: Sequence[str]) -> int:
    """Occurrences of any lexicon word as a whole word, case-insensitive ("thanks" not "thanksgiving")."""
    return len(_keyword_pattern(tuple(words)).findall(text))


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
    ids: set[int] = set()
    for w in words:
        for variant in (f" {w}", f" {w.capitalize()}", w, w.capitalize()):
            enc = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                ids.add(int(enc[0]))
    if not ids:
        raise InputError(f"no word of the {name} lexicon is a single token for this tokenizer; the score M needs some")
    return sorted(ids)


def lexicon_ids(tokenizer) -> dict[str, list[int]]:  # noqa: ANN001
    return {name: lexicon_token_ids(tokenizer, load_lexicon(name), name) for name in LEXICONS}


def emotion_score(
    logits: Float[Tensor, "batch vocab"], emotion_ids: Sequence[int], neutral_ids: Sequence[int]
) -> Float[Tensor, " batch"]:
    """M: how much more next-token mass goes to the emotion lexicon than to the neutral one (nats)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits[:, list(emotion_ids)].logsumexp(-1) - logits[:, list(neutral_ids)].logsumexp(-1)


def kl_divergence(clean: Float[Tensor, "batch vocab"], intervened: Float[Tensor, "batch vocab"]) -> Float[Tensor, " batch"]:
    """KL(clean || intervened) of the next-token distributions, in nats (0 when unchanged)."""
    dtype = torch.promote_types(clean.dtype, torch.float32)
    lp, lq = clean.to(dtype).log_softmax(-1), intervened.to(dtype).log_softmax(-1)
    return (lp.exp() * (lp - lq)).sum(-1).clamp(min=0.0)


def text_scores(texts: Sequence[str]) -> dict[str, list[float]]:
    """Per continuation: sentiment and a keyword count per lexicon (keys `sentiment`, `kw_<name>`)."""
    out: dict[str, list[float]] = {"sentiment": [sentiment(t) for t in texts]}
    for name in LEXICONS:
        words = load_lexicon(name)
        out[f"kw_{name}"] = [float(keyword_count(t, words)) for t in texts]
    return out
