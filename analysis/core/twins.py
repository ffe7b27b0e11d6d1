"""Matched twins (issue 23): an emotion span and its neutral twin should differ in emotion only.

A head that reacts to "you", to an intensifier ("so", "really") or to "I" would otherwise move M
on the emotion prompts and not on their twins, and pass for an emotion head. The word classes
below are the one list of such non-emotional function words (the class table, its test and the
prompt check all read them). For each class, the *share* of an emotion's spans holding a word of
it and the share of their twins must differ by at most MAX_SHARE_GAP.

The shipped prompts go further (pair by pair, the same classes in the same order and the same
word count: see `signature`), which `python -m analysis.twin_table` measures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from analysis.base.errors import InputError

# Lowercase words of each class; "n't" endings count as negation too (see word_classes).
WORD_CLASSES: dict[str, frozenset[str]] = {
    "2nd person": frozenset({"you", "your", "yours", "yourself", "yourselves", "ya", "thee", "thy"}),
    "intensifier": frozenset({
        "so", "very", "really", "truly", "deeply", "extremely", "incredibly", "totally", "absolutely",
        "terribly", "awfully", "quite", "sincerely", "genuinely", "utterly", "completely", "seriously",
        "such", "highly", "immensely", "hugely", "super", "too",
    }),
    "1st person": frozenset({"i", "me", "my", "mine", "myself", "we", "us", "our", "ours", "ourselves"}),
    "negation": frozenset({"not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "cannot", "nowhere"}),
}
CLASS_NAMES: tuple[str, ...] = tuple(WORD_CLASSES)
MAX_SHARE_GAP = 0.10  # issue 23: the largest allowed |share(emotion spans) - share(twins)| per class

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def span_words(text: str) -> list[str]:
    """Lowercase words of a span ("don't" is one word)."""
    return _WORD.findall(text.lower())


def word_classes(word: str) -> tuple[str, ...]:
    """The classes a word belongs to (usually none or one)."""
    w = word.lower()
    found = [name for name, words in WORD_CLASSES.items() if w in words]
    if w.endswith("n't") and "negation" not in found:
        found.append("negation")
    return tuple(found)


def signature(text: str) -> tuple[str, ...]:
    """The classes of a span's words, in word order: pair by pair, a twin should have the same."""
    return tuple(c for w in span_words(text) for c in word_classes(w))


def has_class(text: str, name: str) -> bool:
    return name in signature(text)


def share(spans: Iterable[str], name: str) -> float:
    """Share of spans holding at least one word of class `name` (spans counted as given, repeats in)."""
    spans = list(spans)
    return sum(has_class(s, name) for s in spans) / len(spans) if spans else 0.0


@dataclass(frozen=True)
class ClassGap:
    emotion: str
    name: str  # the word class
    emotion_share: float
    twin_share: float

    @property
    def gap(self) -> float:
        return abs(self.emotion_share - self.twin_share)


def class_gaps(emotion: str, emotion_spans: Sequence[str], twin_spans: Sequence[str]) -> list[ClassGap]:
    """Per class, the share of the emotion's spans and of their twins (pairs as given, line by line)."""
    return [ClassGap(emotion, name, share(emotion_spans, name), share(twin_spans, name)) for name in CLASS_NAMES]


def check_matched(emotion: str, emotion_spans: Sequence[str], twin_spans: Sequence[str], origin: str,
                  max_gap: float = MAX_SHARE_GAP) -> None:
    """One error line for the worst class whose shares differ by more than `max_gap`."""
    worst = max(class_gaps(emotion, emotion_spans, twin_spans), key=lambda g: g.gap)
    if worst.gap > max_gap + 1e-12:
        raise InputError(
            f"{origin}: the {emotion} spans and their neutral twins differ in the {worst.name} class: "
            f"{worst.emotion_share:.2f} of the {emotion} spans hold a {worst.name} word but {worst.twin_share:.2f} "
            f"of their twins (gap {worst.gap:.2f} > {max_gap:.2f}); twins must differ in emotion only"
        )
