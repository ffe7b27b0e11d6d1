"""Hand-computed checks of analysis.stats."""

from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as sps

from analysis import stats
from analysis.stats import (
    Effect,
    auroc,
    benjamini_hochberg,
    one_sample_effect,
    paired_effect,
    spearman,
)

TOL = 1e-12


def _enumerated_sign_flip_p(d: list[float]) -> float:
    """Two-sided exact sign-flip p by brute force: share of sign patterns with |mean| >= |obs|."""
    obs = abs(sum(d) / len(d))
    hits = 0
    patterns = list(itertools.product((1, -1), repeat=len(d)))
    for signs in patterns:
        m = abs(sum(s * x for s, x in zip(signs, d)) / len(d))
        if m >= obs - 1e-12:
            hits += 1
    return hits / len(patterns)


# --- paired / one-sample effect ------------------------------------------------------------


def test_mean_and_exact_p_for_1234() -> None:
    e = one_sample_effect([1, 2, 3, 4])
    assert e.n == 4
    assert abs(e.mean - 2.5) < TOL
    # By hand: of the 16 sign patterns only ++++ and ---- reach |mean| >= 2.5 -> 2/16.
    assert abs(_enumerated_sign_flip_p([1, 2, 3, 4]) - 0.125) < TOL
    assert abs(e.p - 0.125) < TOL
    assert e.ci_low <= e.mean <= e.ci_high


def test_paired_equals_one_sample_of_differences() -> None:
    base = np.array([0.5, -1.0, 2.0, 0.0, 3.0])
    inter = base + np.array([1.0, 2.0, 3.0, 4.0, -0.5])
    assert paired_effect(inter, base) == one_sample_effect(inter - base)


@pytest.mark.parametrize(
    "d",
    [[0.3, -1.2, 2.5, 0.7, 1.1], [1.0, 1.0, -1.0, 2.0, 0.5, 0.25, -0.1], [5, 1, 2, 3, 4, 6, 7, 8, 9, 10]],
)
def test_p_matches_brute_force_enumeration(d: list[float]) -> None:
    # 2**n <= 2000 for n <= 10, so scipy enumerates exactly and p has no +1 correction.
    assert abs(one_sample_effect(d).p - _enumerated_sign_flip_p(d)) < 1e-9


def test_scipy_samples_permutation_on_one_sample_flips_signs() -> None:
    d = np.array([1.0, 2.0, 3.0, 4.0])
    res = sps.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
        vectorized=True, n_resamples=2000, rng=np.random.default_rng(0),
    )
    flipped = sorted(
        float(np.mean(np.array(s) * d)) for s in itertools.product((1, -1), repeat=4)
    )
    assert len(res.null_distribution) == 16  # exact: every sign pattern exactly once
    np.testing.assert_allclose(np.sort(res.null_distribution), flipped, atol=TOL)


def test_all_zero_differences() -> None:
    e = paired_effect([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert e == Effect(n=3, mean=0.0, ci_low=0.0, ci_high=0.0, p=1.0)


def test_identical_nonzero_differences_exact_p() -> None:
    e = one_sample_effect([2.0, 2.0, 2.0])
    assert (e.mean, e.ci_low, e.ci_high) == (2.0, 2.0, 2.0)
    # By hand: only +++ and --- reach |mean| = 2 -> 2/8.
    assert abs(e.p - 0.25) < TOL


def test_identical_nonzero_differences_large_n_is_finite() -> None:
    e = one_sample_effect([1.0] * 30)
    assert (e.ci_low, e.ci_high) == (1.0, 1.0)
    assert 0.0 < e.p < 0.01


def test_single_observation() -> None:
    e = one_sample_effect([0.7])
    assert e == Effect(n=1, mean=0.7, ci_low=0.7, ci_high=0.7, p=1.0)


def test_no_nan_anywhere_for_small_degenerate_inputs() -> None:
    for d in ([1.0, 2.0], [0.0, 0.0, 0.0, 1.0], [0.0] * 9 + [1.0], [-1.0, 1.0]):
        e = one_sample_effect(d)
        assert all(math.isfinite(v) for v in (e.mean, e.ci_low, e.ci_high, e.p)), d


def test_bca_ci_contains_mean_and_is_reproducible() -> None:
    d = np.random.default_rng(1).exponential(size=40)
    a = one_sample_effect(d, seed=7)
    b = one_sample_effect(d, seed=7)
    assert a == b
    assert a.ci_low < a.mean < a.ci_high
    assert one_sample_effect(d, seed=8).ci_low != a.ci_low  # the seed is actually used


def test_ci_narrows_with_n() -> None:
    rng = np.random.default_rng(3)
    small = one_sample_effect(rng.normal(0.5, 1.0, size=20))
    large = one_sample_effect(rng.normal(0.5, 1.0, size=200))
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low)


def test_shifted_normal_is_detected() -> None:
    d = np.random.default_rng(0).normal(1.0, 1.0, size=100)
    e = one_sample_effect(d)
    assert e.ci_low > 0
    assert e.p < 0.01


def test_centred_normal_ci_contains_zero() -> None:
    d = np.random.default_rng(0).normal(0.0, 1.0, size=100)
    e = one_sample_effect(d)
    assert e.ci_low < 0 < e.ci_high
    assert e.p > 0.05


def test_bca_nan_falls_back_to_percentile(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sps.bootstrap
    methods: list[str] = []

    def fake(data, statistic, *, method, **kw):  # type: ignore[no-untyped-def]
        methods.append(method)
        if method == "BCa":
            return SimpleNamespace(confidence_interval=SimpleNamespace(low=np.nan, high=np.nan))
        return real(data, statistic, method=method, **kw)

    monkeypatch.setattr(stats.stats, "bootstrap", fake)
    d = np.array([0.1, 0.4, 0.2, 0.9, 0.5, 0.3])
    e = one_sample_effect(d)
    assert methods == ["BCa", "percentile"]
    assert math.isfinite(e.ci_low) and math.isfinite(e.ci_high)
    assert e.ci_low <= e.mean <= e.ci_high


def test_to_dict_is_json_ready() -> None:
    e = one_sample_effect([1, 2, 3, 4])
    d = e.to_dict()
    assert set(d) == {"n", "mean", "ci_low", "ci_high", "p", "n_clusters"}
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize(
    ("a", "b"),
    [([1.0, 2.0], [1.0]), ([[1.0, 2.0]], [[1.0, 2.0]]), ([], []), ([1.0, np.nan], [0.0, 0.0])],
)
def test_bad_input_raises(a: list, b: list) -> None:
    with pytest.raises(ValueError):
        paired_effect(a, b)


# --- Benjamini-Hochberg --------------------------------------------------------------------


def test_bh_hand_example() -> None:
    # m = 4; sorted p 0.01, 0.03, 0.04, 0.20 -> p*m/rank 0.04, 0.06, 0.0533, 0.20;
    # running minimum from the top -> 0.04, 0.0533, 0.0533, 0.20.
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.20])
    np.testing.assert_allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.20], atol=TOL)


def test_bh_missing_entries_stay_nan_and_leave_the_family() -> None:
    q = benjamini_hochberg([0.01, None, 0.04, float("nan"), 0.03, 0.20])
    assert np.isnan(q[1]) and np.isnan(q[3])
    np.testing.assert_allclose(q[[0, 2, 4, 5]], [0.04, 0.16 / 3, 0.16 / 3, 0.20], atol=TOL)


def test_bh_all_missing_and_empty() -> None:
    assert np.isnan(benjamini_hochberg([None, np.nan])).all()
    assert benjamini_hochberg([]).shape == (0,)


# --- spearman / auroc ----------------------------------------------------------------------


def test_spearman_monotone() -> None:
    assert spearman([1, 2, 3, 4, 5], [1, 8, 27, 64, 125]) == pytest.approx(1.0, abs=TOL)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0, abs=TOL)


def test_spearman_drops_nan_pairs_and_returns_none_when_undefined() -> None:
    assert spearman([1, 2, np.nan, 3, 4], [10, 20, 5, np.nan, 40]) == pytest.approx(1.0, abs=TOL)
    assert spearman([1, 2, np.nan], [1, 2, 3]) is None
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]) is None


def test_auroc_perfect_reversed_tie() -> None:
    labels = [1, 1, 0, 0, 0]
    assert auroc([0.9, 0.8, 0.3, 0.2, 0.1], labels) == pytest.approx(1.0, abs=TOL)
    assert auroc([0.1, 0.2, 0.3, 0.8, 0.9], labels) == pytest.approx(0.0, abs=TOL)
    assert auroc([0.5] * 5, labels) == pytest.approx(0.5, abs=TOL)


def test_auroc_hand_example_with_partial_tie() -> None:
    # pos {3, 1}, neg {2, 1}: pairs (3>2)=1, (3>1)=1, (1<2)=0, (1=1)=1/2 -> 2.5/4.
    assert auroc([3, 1, 2, 1], [True, True, False, False]) == pytest.approx(0.625, abs=TOL)


def test_auroc_undefined_and_bad_labels() -> None:
    assert auroc([0.1, 0.2], [0, 0]) is None
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [0, 2])


def test_clusters_flip_together_by_hand() -> None:
    # Clusters a: [1, 1], b: [3], c: [-2]. Sums (2, 3, -2), N = 4, mean = 3/4 = 0.75.
    # Flip the 3 sums as units (8 patterns); observed total 3. Totals:
    # (2,3,-2)=3 (2,3,2)=7 (2,-3,-2)=-3 (2,-3,2)=1 (-2,3,-2)=-1 (-2,3,2)=3 (-2,-3,-2)=-7
    # (-2,-3,2)=-3 -> |total| >= 3 in 6 of 8: p = 0.75.
    e = one_sample_effect([1, 1, 3, -2], clusters=["a", "a", "b", "c"], n_resamples=1000)
    assert abs(e.mean - 0.75) <= 1e-12 and e.n == 4 and e.n_clusters == 3
    assert abs(e.p - 0.75) <= 1e-12
    # Unclustered, each value flips alone: 16 patterns, enumerated below.
    import itertools

    d = np.array([1, 1, 3, -2.0])
    hits = sum(abs((np.array(s) * d).sum()) >= abs(d.sum()) - 1e-12 for s in itertools.product([1, -1], repeat=4))
    assert abs(one_sample_effect(d, n_resamples=1000).p - hits / 16) <= 1e-12


def test_clusters_stop_pseudo_replication() -> None:
    # 12 expressions, each repeated 6 times with nearly the same value; the signs of the
    # expressions are balanced, so "is there an effect of the emotion?" must not be rejected,
    # although 72 "independent" prompts would look overwhelming.
    rng = np.random.default_rng(0)
    centres = np.array([1.0, -0.5, 0.9, -0.8, 1.2, -0.4, 0.8, -0.6, 1.0, -0.7, 0.6, 0.3])
    d = np.repeat(centres, 6) + rng.normal(0, 0.01, 72)
    labels = np.repeat(np.arange(12), 6)
    naive = one_sample_effect(d, n_resamples=2000)
    clustered = one_sample_effect(d, clusters=labels, n_resamples=5000)
    assert naive.p < 0.05 < clustered.p
    assert clustered.ci_low < 0 < clustered.ci_high
    assert abs(clustered.mean - float(d.mean())) <= 1e-12
