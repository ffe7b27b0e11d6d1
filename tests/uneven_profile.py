"""A reduced prompt profile whose split halves differ in size, and differ between emotions (issue 30).

The unit screening once recorded `half: selection` with the confirmation half's counts. On a profile
whose two halves hold as many pairs and expressions, and whose emotions all count the same, such a
number looks right; only the full-size slow run (baseline: 18 + 17 expressions) saw it. The pipeline
tests of the default suite therefore run on this profile instead of the first N lines of baseline.

Built from whatever files the baseline folder has, keeping the same lines of every prompt file (the
line i of an emotion's file and of its twin file are one pair, whether the twins are one shared
`neutral.txt` or per-emotion twin files), so it follows the data as it changes:

- the first `n_expressions` distinct expressions (one pair each, first occurrence), an odd number so
  the halves differ in expressions (round(6.5) = 6 selection, 7 confirmation), at least 6 per half
  (analysis.measures.stats.min_clusters);
- plus a second pair (another template) of a few of them, chosen (first in a fixed order) so that in
  every emotion the halves differ in pairs too, and the emotions' selection halves differ in pairs:
  the seeded split draws each emotion's halves separately, so a count read from the wrong half or
  from another emotion differs from the right one.

With one shared neutral file every emotion keeps the same lines, so the emotions' profile-wide pair
and expression counts are equal by the format; their halves' counts are what differ.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path

from analysis.core.prompts import load_pairs, span_clusters, split_expressions, subset
from analysis.base.vocabulary import EMOTIONS
from analysis.measures.stats import min_clusters

SEED, SHARE = 0, 0.5  # params.yaml: seed, split.selection_share (the pipeline tests keep the defaults)


@dataclass(frozen=True)
class Halves:
    """What the pipeline must count for one emotion of a profile (by hand: from its files and the split)."""

    n_pairs: int
    n_expressions: int
    n_selection: int  # expressions the screening ranks on
    n_selection_pairs: int
    n_confirmation: int  # expressions the experiments confirm on
    n_confirmation_pairs: int


def halves(folder: Path, emotion: str) -> Halves:
    pairs = load_pairs(emotion, folder.name, root=folder.parent)
    clusters = span_clusters(pairs)
    sel, conf = split_expressions(pairs, seed=SEED, selection_share=SHARE, need=min_clusters())
    return Halves(len(pairs), len(set(clusters)), len(sel), sum(c in sel for c in clusters), len(conf), sum(c in conf for c in clusters))


def uneven_lines(source: Path, n_expressions: int = 13, n_doubled: int = 3) -> list[int]:
    """The baseline lines the profile keeps (see the module docstring)."""
    pairs = {e: load_pairs(e, source.name, root=source.parent) for e in EMOTIONS}
    clusters = span_clusters(pairs[EMOTIONS[0]])
    first: dict[str, int] = {}
    for i, c in enumerate(clusters):
        first.setdefault(c, i)
    chosen = list(first.values())[:n_expressions]
    second = {i: next((j for j, c in enumerate(clusters) if c == clusters[i] and j != i), None) for i in chosen}
    for extra in itertools.combinations([i for i in chosen if second[i] is not None], n_doubled):
        lines = sorted([*chosen, *(second[i] for i in extra)])  # type: ignore[misc]
        counts = {}
        for e, p in pairs.items():
            sub = subset(p, lines)
            sel, conf = split_expressions(sub, seed=SEED, selection_share=SHARE, need=min_clusters())
            cl = span_clusters(sub)
            counts[e] = (sum(c in sel for c in cl), sum(c in conf for c in cl))
        if all(s != c for s, c in counts.values()) and len({s for s, _ in counts.values()}) > 1:
            return lines
    raise AssertionError(f"no {n_doubled} second pairs of {source}'s first {n_expressions} expressions make the halves uneven")


def write_uneven_profile(source: Path, target: Path) -> list[int]:
    """Copy every file of the profile folder `source` to `target`, keeping `uneven_lines` of each prompt
    file (a .txt file with one line per pair); returns the kept line indices."""
    lines = uneven_lines(source)
    n = len(load_pairs(EMOTIONS[0], source.name, root=source.parent))
    target.mkdir(parents=True)
    for f in sorted(source.iterdir()):
        if f.suffix == ".txt" and len(rows := f.read_text().splitlines()) == n:
            (target / f.name).write_text("\n".join(rows[i] for i in lines) + "\n")
        elif f.is_file():
            shutil.copy2(f, target / f.name)
    for e in EMOTIONS:  # the property the profile exists for, as the pipeline will read it
        h = halves(target, e)
        assert h.n_selection != h.n_confirmation and h.n_selection_pairs != h.n_confirmation_pairs, (e, h)
    return lines
