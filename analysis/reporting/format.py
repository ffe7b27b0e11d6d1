"""The report's number and text formats: one rule for decimals, signs, minus signs, p-values, heads."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


MINUS = "\u2212"


class Text(str):
    """A string that displays as itself (no quotes) in a notebook, as text or markdown."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_markdown_(self) -> str:
        return str(self)


def _minus(s: str) -> str:
    return s.replace("-", MINUS)


def decimals_for(*values: float | None, digits: int = 3) -> int:
    """Decimals that give `digits` significant digits to the largest |value| (0..6)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    m = max(finite, default=0.0)
    if m == 0.0:
        return digits - 1
    return max(0, min(6, digits - 1 - math.floor(math.log10(m))))


def fmt_num(x: float | int | None, decimals: int | None = None, *, sign: bool = False) -> Text:
    """`x` with `decimals` (default: three significant digits), typographic minus.

    Magnitudes below 1e-4 (with default decimals) are written in scientific notation.
    """
    if x is None:
        return Text("—")
    if isinstance(x, bool) or (isinstance(x, int) and decimals is None):
        return Text(_minus(f"{x:+d}" if sign else f"{x:d}"))
    x = float(x)
    if not math.isfinite(x):
        return Text("nan")
    if decimals is None:
        if x != 0.0 and abs(x) < 1e-4:
            return Text(_minus(f"{x:+.2e}" if sign else f"{x:.2e}"))
        decimals = decimals_for(x)
    s = f"{x:+.{decimals}f}" if sign else f"{x:.{decimals}f}"
    if float(s) == 0.0:  # no "−0.00"
        s = f"{0.0:.{decimals}f}"
        s = f"+{s}" if sign else s
    return Text(_minus(s))


def fmt_p(p: float | None) -> Text:
    """A p- or q-value with two significant digits: `0.0005`, `0.031`, `1`; below 1e-4 `1.2e−05`."""
    if p is None:
        return Text("—")
    p = float(p)
    if not math.isfinite(p):
        return Text("nan")
    if p >= 1e-4:
        import numpy as np

        return Text(np.format_float_positional(p, precision=2, unique=False, fractional=False, trim="-"))
    return Text(_minus(f"{p:.1e}"))


def fmt_ci(effect: Mapping[str, Any], decimals: int | None = None) -> Text:
    """`[low, high]` of an effect, with the effect's decimals."""
    d = decimals if decimals is not None else _effect_decimals(effect)
    return Text(f"[{_bound(effect['ci_low'], d)}, {_bound(effect['ci_high'], d)}]")


def _effect_decimals(effect: Mapping[str, Any]) -> int | None:
    """Three significant digits of the largest of mean and bounds, and at least two of the
    interval's width (up to four decimals), so a narrow interval does not collapse to a point.
    None: magnitudes below 1e-4, written in scientific notation."""
    vals = [effect.get(k) for k in ("mean", "ci_low", "ci_high")]
    finite = [abs(v) for v in vals if v is not None and math.isfinite(v)]
    if finite and 0.0 < max(finite) < 1e-4:
        return None  # scientific
    d = decimals_for(*vals)
    low, high = effect.get("ci_low"), effect.get("ci_high")
    if low is not None and high is not None and math.isfinite(high - low) and high > low:
        d = max(d, min(4, 1 - math.floor(math.log10(high - low))))
    return d


def _bound(x: float, decimals: int | None) -> str:
    return fmt_num(x, decimals)


def fmt_change(effect: Mapping[str, Any]) -> Text:
    """The signed mean change of an effect, with the decimals of its interval."""
    return fmt_num(effect["mean"], _effect_decimals(effect), sign=True)


def fmt_effect(effect: Mapping[str, Any], *, p: bool = True) -> Text:
    """`−1.23 [−1.40, −1.05], p = 0.0005`: mean change, 95 % CI, p (analysis.measures.stats); an effect at or below
    the identity control's noise floor (`no_effect`) says so instead of giving a p."""
    d = _effect_decimals(effect)
    s = f"{fmt_num(effect['mean'], d, sign=True)} {fmt_ci(effect, d)}"
    if effect.get("no_effect"):
        return Text(s + ", no effect (at or below the noise floor)")
    if p and effect.get("p") is not None:
        s += f", p = {fmt_p(effect['p'])}"
    return Text(s)


def gap_parts(gap: Mapping[str, Any]) -> tuple[str, str] | None:
    """(`0.98`, `[0.95, 1.01]`): the fraction of the emotion–neutral gap and its interval (an
    unbounded end: ∞), or None where the gap is undefined."""
    if gap.get("ratio") is None:
        return None
    # Two decimals, more where the interval is narrower (two digits of its width, as
    # _effect_decimals), so that 0.8959–0.8995 does not print as the point [0.90, 0.90].
    low, high, d = gap.get("ci_low"), gap.get("ci_high"), 2
    if low is not None and high is not None and high > low:
        d = max(2, min(4, 1 - math.floor(math.log10(high - low))))
    lo = "−∞" if low is None else fmt_num(low, d)
    hi = "∞" if high is None else fmt_num(high, d)
    return fmt_num(gap["ratio"], d), f"[{lo}, {hi}]"


def fmt_gap(gap: Mapping[str, Any]) -> Text:
    """`0.98 [0.95, 1.01] (random heads: 0.01)`: the fraction of the emotion–neutral gap, its
    interval (an unbounded end: ∞) and the random-head baseline's fraction."""
    parts = gap_parts(gap)
    if parts is None:
        return Text("undefined (no emotion–neutral gap)")
    s = f"{parts[0]} {parts[1]}"
    if "random" in gap:
        s += f" (random heads: {fmt_num(gap['random'], 2) if gap['random'] is not None else '—'})"
    return Text(s)


def fmt_head(head: Sequence[int]) -> Text:
    """`(3, 1)` → `L3H1`."""
    layer, h = head
    return Text(f"L{int(layer)}H{int(h)}")


def fmt_heads(heads: Iterable[Sequence[int]]) -> Text:
    return Text("+".join(fmt_head(h) for h in heads) or "—")


def fmt_sites(entry: Mapping[str, Any]) -> Text:
    """The intervened components of an experiment (or a cumulative step): heads, else MLP units."""
    if entry.get("heads"):
        return fmt_heads(entry["heads"])
    return Text("+".join(f"mlp:{u[0]}:{u[1]}" for u in entry.get("units", [])) or "—")


def join_words(items: Iterable[str], conj: str = "and") -> Text:
    """`a`, `a and b`, `a, b and c`."""
    items = [str(i) for i in items]
    if not items:
        return Text("none")
    if len(items) == 1:
        return Text(items[0])
    return Text(f"{', '.join(items[:-1])} {conj} {items[-1]}")


def ordinal(n: int) -> Text:
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return Text(f"{n}{suffix}")


def per_emotion(values: Mapping[str, str]) -> Text:
    """`1 for gratitude, 2 for anger and 1 for apology`, or `1 for every emotion` when all agree."""
    vals = list(values.values())
    if len(values) > 1 and len(set(vals)) == 1:
        return Text(f"{vals[0]} for every emotion")
    return join_words(f"{v} for {e}" for e, v in values.items())


def by_emotion(values: Mapping[str, str]) -> Text:
    """`X (every emotion)` when all agree, else `X (gratitude); Y (anger); Z (apology)`."""
    vals = list(values.values())
    if len(values) > 1 and len(set(vals)) == 1:
        return Text(f"{vals[0]} (every emotion)")
    return Text("; ".join(f"{v} ({e})" for e, v in values.items()))


def count_text(values: Mapping[str, Any], noun: str) -> Text:
    """`70 pairs per emotion`, or `70 pairs for gratitude and 68 for anger` when they differ."""
    vals = [str(v) for v in values.values()]
    if len(set(vals)) == 1:
        return Text(f"{vals[0]} {noun} per emotion" if len(vals) > 1 else f"{vals[0]} {noun} ({next(iter(values))})")
    items = [f"{v} {noun if i == 0 else ''}".rstrip() + f" for {e}" for i, (e, v) in enumerate(values.items())]
    return join_words(items)


def plural(n: int, word: str, words: str | None = None) -> Text:
    return Text(f"{n} {word if n == 1 else (words or word + 's')}")
