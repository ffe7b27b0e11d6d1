"""Per-effect cost of analysis.measures.stats (the inverted wild cluster bootstrap-t) against the BCa bootstrap +
sign-flip permutation the project used before either inverted test.

The baseline is that procedure as it was (scipy.stats.bootstrap BCa over cluster sums/sizes and
scipy.stats.permutation_test flipping cluster sums), timed interleaved in the same process.
Run: pytest -m benchmark -s tests/benchmarks/test_stats_speed.py
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from analysis.measures.stats import one_sample_effect

pytestmark = pytest.mark.benchmark
N_CLUSTERS, N_EFFECTS, N_RESAMPLES = 35, 20, 5000


def _old_effect(sums: np.ndarray, sizes: np.ndarray) -> tuple[float, float, float]:
    ci = sps.bootstrap((sums, sizes), lambda s, n, axis=-1: np.sum(s, axis=axis) / np.sum(n, axis=axis),
                       paired=True, method="BCa", n_resamples=N_RESAMPLES, rng=np.random.default_rng(0))
    p = sps.permutation_test((sums,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                             vectorized=True, n_resamples=N_RESAMPLES, rng=np.random.default_rng(0)).pvalue
    return float(ci.confidence_interval.low), float(ci.confidence_interval.high), float(p)


def test_inverted_bootstrap_t_is_faster_than_bca(median_times) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(N_CLUSTERS), rng.integers(2, 9, N_CLUSTERS))
    data = [rng.normal(0.2, 1.0, labels.size) for _ in range(N_EFFECTS)]
    sizes = np.bincount(labels).astype(float)
    sums = [np.bincount(labels, weights=d) for d in data]
    t = median_times({
        "new": lambda: [one_sample_effect(d, clusters=labels, n_resamples=N_RESAMPLES) for d in data],
        "old": lambda: [_old_effect(s, sizes) for s in sums],
    })
    ratio = t["old"] / t["new"]
    print(f"\nper effect ({N_CLUSTERS} clusters, n_resamples {N_RESAMPLES}): "
          f"new {1e3 * t['new'] / N_EFFECTS:.2f} ms, old {1e3 * t['old'] / N_EFFECTS:.2f} ms, old/new {ratio:.1f}x")
    assert ratio > 5.0
