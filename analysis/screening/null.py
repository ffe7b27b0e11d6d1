"""Exact nulls for the head screening: a fair random sign of M per cluster.

M = logsumexp(logits[E]) − logsumexp(logits[N]) is exactly antisymmetric in the two lexicons
(in float too: a − b = −(b − a)), so counting the other lexicon positive turns every pair's ΔM
into exactly −ΔM. With an independent fair sign per cluster (per expression, the unit the
wild bootstrap draws), every cluster's effect is symmetric about 0 and the mean effect of
every head is exactly 0, whatever the model does. Nothing weaker is: making an emotion prompt
and its twin exchangeable (a permuted embedding, or a random orientation of a pair) leaves a
nonzero mean, since patching a into b is not the negative of b into a in a nonlinear model.
The signs are shared by every head of an emotion, so the null screening keeps the dependence
between heads that a real one has. A test device, not the pipeline's null: it checks the statistics and BH's bookkeeping under a
null that is exact by construction (tests/test_screening_null.py, tests/test_benchmark.py). The
nulls stage's null screenings (analysis.bench.nulls, issue 24) use no sign device: they
screen neutral-vs-neutral pairs, a null that can fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from jaxtyping import Float

from analysis.screening.common import exact_fields, ScreeningConfig


def cluster_signs(clusters: Sequence[str], rng: np.random.Generator) -> Float[np.ndarray, " pair"]:
    """Per pair, its cluster's sign of M: one fair ±1 per cluster label (drawn in sorted label
    order, so the draw depends on the labels and `rng` only)."""
    labels = sorted(set(clusters))
    sign = dict(zip(labels, rng.choice([-1.0, 1.0], len(labels)), strict=True))
    return np.array([sign[c] for c in clusters])


def signed_rows(
    emotion: str,
    exact: Mapping[tuple[int, int], Float[np.ndarray, " pair"]],
    copy_free: Mapping[tuple[int, int], Float[np.ndarray, " pair"]] | None,
    signs: Float[np.ndarray, " pair"],
    cfg: ScreeningConfig,
    clusters: Sequence[str],
    floor: float,
    templates: Sequence[str] | None = None,
) -> list[dict]:
    """One emotion's null screening rows: each head's per-pair ΔM (and copy-free ΔM, NaN without
    a copy control) under its pair's sign of M, through the screening's own `exact_fields`.
    Attribution is not computed (0): a null's rows are counted for discoveries only, and its
    ratio fields are not read. BH across the rows is the caller's (`correct_and_correlate`)."""
    rows = []
    for (layer, head), v in exact.items():
        cf = signs * copy_free[(layer, head)] if copy_free is not None else np.full(len(v), np.nan)
        rows.append({"layer": layer, "head": head, "emotion": emotion, "attribution": 0.0,
                     **exact_fields(signs * v, cf, cfg, list(clusters), floor, 0.0,
                                   templates=None if templates is None else list(templates))})
    return rows
