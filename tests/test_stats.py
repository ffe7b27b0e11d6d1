"""Hand-computed and brute-force checks of analysis.stats (the inverted cluster sign-flip test)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis.errors import InputError
from analysis.stats import (
    ratio_effect,
    Effect,
    auroc,
    baseline_excess,
    benjamini_hochberg,
    check_resolution,
    min_clusters,
    min_resamples,
    no_effect,
    noise_floor,
    one_sample_effect,
    paired_effect,
    share_interval,
    spearman,
)

TOL = 1e-12


def _brute_p(d: np.ndarray, labels: np.ndarray, mu0: float, flips: np.ndarray | None = None) -> float:
    """Two-sided sign-flip p of H0 "mean = mu0", straight from the definition.

    Residual cluster sums r_g = S_g − mu0·N_g; share of sign patterns with |Σ ε r| >= |Σ r|.
    flips=None enumerates all 2**G patterns; else flips (B, G) of 0/1 (1 = flip) plus the observed.
    """
    groups = sorted(set(labels.tolist()))
    r = np.array([float(np.sum(d[labels == g] - mu0)) for g in groups])
    obs = abs(r.sum())
    if flips is None:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=r.size)))
        return float(np.mean(np.abs(signs @ r) >= obs - 1e-12))
    signs = 1.0 - 2.0 * flips
    return (1 + int(np.sum(np.abs(signs @ r) >= obs - 1e-12))) / (flips.shape[0] + 1)


# --- the inverted sign-flip test: hand examples ------------------------------------------


def test_one_to_six_by_hand() -> None:
    # Exact test, 2**6 = 64 patterns. p: only ++++++ and ------ reach |sum| >= 21 -> 2/64.
    # CI: at mu0 = 1 the residuals are 0..5 and flipping the 0 also ties -> p = 4/64 > 0.05
    # (accepted); at mu0 < 1 every residual is > 0 -> p = 2/64 (rejected). By symmetry the
    # upper end is 6. So CI = [1, 6].
    e = one_sample_effect([1, 2, 3, 4, 5, 6])
    assert (e.n, e.n_clusters) == (6, None)
    assert abs(e.mean - 3.5) < TOL
    assert abs(e.p - 2 / 64) < TOL
    # The ends are widened by the tie tolerance 1e-12 * sum|S_g| = 2.1e-11 (exact ties count).
    assert abs(e.ci_low - 1.0) < 1e-10 and abs(e.ci_high - 6.0) < 1e-10
    assert abs(_brute_p(np.arange(1.0, 7.0), np.arange(6), 1.0) - 4 / 64) < TOL
    assert abs(_brute_p(np.arange(1.0, 7.0), np.arange(6), 0.999) - 2 / 64) < TOL


def test_clusters_flip_together_by_hand() -> None:
    # Clusters a: [1, 1], b..f: [3], [-2], [0.5], [2], [1]. Sums (2, 3, -2, 0.5, 2, 1), N = 7,
    # mean = 6.5/7. The p-value is the share of the 64 cluster-sign patterns with |total| >= 6.5.
    d = np.array([1, 1, 3, -2, 0.5, 2, 1.0])
    labels = np.array(["a", "a", "b", "c", "d", "e", "f"])
    sums = np.array([2, 3, -2, 0.5, 2, 1.0])
    hits = sum(abs(np.dot(s, sums)) >= 6.5 - 1e-12 for s in itertools.product((1, -1), repeat=6))
    e = one_sample_effect(d, clusters=labels, n_resamples=1000)
    assert abs(e.mean - 6.5 / 7) <= TOL and e.n == 7 and e.n_clusters == 6
    assert abs(e.p - hits / 64) <= TOL
    # Unclustered, each value flips alone: a different (2**7-pattern) test.
    assert abs(one_sample_effect(d, n_resamples=1000).p - _brute_p(d, np.arange(7), 0.0)) <= TOL


@pytest.mark.parametrize(
    "d",
    [[0.3, -1.2, 2.5, 0.7, 1.1, 0.9], [1.0, 1.0, -1.0, 2.0, 0.5, 0.25, -0.1], [5, 1, 2, 3, 4, 6, 7, 8, 9, 10]],
)
def test_exact_p_matches_brute_force_enumeration(d: list[float]) -> None:
    a = np.asarray(d, dtype=float)
    assert abs(one_sample_effect(a).p - _brute_p(a, np.arange(a.size), 0.0)) < 1e-12


def _inversion_holds(e: Effect, d: np.ndarray, labels: np.ndarray, flips: np.ndarray | None, alpha: float) -> None:
    """Each CI end is where the brute-force test switches from rejecting to accepting."""
    scale = max(1.0, abs(e.ci_high - e.ci_low))
    eps = 1e-7 * scale
    assert _brute_p(d, labels, e.ci_low + eps, flips) > alpha
    assert _brute_p(d, labels, e.ci_high - eps, flips) > alpha
    assert _brute_p(d, labels, e.ci_low - eps, flips) <= alpha
    assert _brute_p(d, labels, e.ci_high + eps, flips) <= alpha
    assert abs(e.p - _brute_p(d, labels, 0.0, flips)) < 1e-12


def test_interval_is_the_inverted_exact_test() -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 5, 9)
    labels = np.repeat(np.arange(9), sizes)
    d = rng.normal(0.4, 1.0, labels.size)
    e = one_sample_effect(d, clusters=labels, n_resamples=5000)  # 2**9 <= 5000: exact
    _inversion_holds(e, d, labels, None, 0.05)


def test_interval_is_the_inverted_monte_carlo_test() -> None:
    rng = np.random.default_rng(6)
    g, b, seed = 14, 300, 11  # 2**14 > 300: Monte Carlo with the module's seeded draws
    labels = np.repeat(np.arange(g), rng.integers(1, 4, g))
    d = rng.standard_t(3, labels.size) + 0.3
    e = one_sample_effect(d, clusters=labels, n_resamples=b, seed=seed)
    flips = np.random.default_rng(seed).integers(0, 2, size=(b, g)).astype(float)
    _inversion_holds(e, d, labels, flips, 0.05)
    assert one_sample_effect(d, clusters=labels, n_resamples=b, seed=seed + 1).p != e.p  # the seed is used


def test_p_and_interval_agree() -> None:
    # p <= 0.05 exactly when 0 lies outside the interval; effects straddle the boundary.
    rng = np.random.default_rng(7)
    rejected = 0
    for i in range(400):
        g = (8, 12, 35)[i % 3]
        labels = np.repeat(np.arange(g), rng.integers(1, 6, g))
        d = rng.normal(rng.uniform(0.0, 0.8), 1.0, labels.size)
        e = one_sample_effect(d, clusters=labels, n_resamples=2000, seed=i)
        outside = not (e.ci_low <= 0.0 <= e.ci_high)
        assert (e.p <= 0.05) == outside, (i, e)
        assert e.ci_low <= e.mean <= e.ci_high
        rejected += outside
    assert 100 < rejected < 300  # both sides of the boundary were exercised


def test_paired_equals_one_sample_of_differences() -> None:
    base = np.array([0.5, -1.0, 2.0, 0.0, 3.0, 1.5])
    inter = base + np.array([1.0, 2.0, 3.0, 4.0, -0.5, 0.7])
    assert paired_effect(inter, base) == one_sample_effect(inter - base)


def test_all_zero_differences() -> None:
    e = paired_effect([1.0, 2.0, 3.0, 4, 5, 6], [1.0, 2.0, 3.0, 4, 5, 6])
    assert e == Effect(n=6, mean=0.0, ci_low=0.0, ci_high=0.0, p=1.0)


def test_identical_nonzero_cluster_means() -> None:
    # Every shift but 2 makes all residuals share one sign -> p = 2/64 there: CI = [2, 2].
    # (Ends within the tie tolerance 1e-12 * sum|S_g|.)
    e = one_sample_effect([2.0] * 6)
    assert e.mean == 2.0 and abs(e.ci_low - 2.0) < 1e-10 and abs(e.ci_high - 2.0) < 1e-10
    assert abs(e.p - 2 / 64) < TOL
    big = one_sample_effect([1.0] * 30)  # Monte Carlo: p at its floor 1/(B + 1)
    assert abs(big.ci_low - 1.0) < 1e-10 and abs(big.ci_high - 1.0) < 1e-10 and abs(big.p - 1 / 2001) < TOL


def test_reproducible_and_narrows_with_n() -> None:
    rng = np.random.default_rng(3)
    d = rng.exponential(size=40)
    assert one_sample_effect(d, seed=7) == one_sample_effect(d, seed=7)
    small = one_sample_effect(rng.normal(0.5, 1.0, size=20))
    large = one_sample_effect(rng.normal(0.5, 1.0, size=200))
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low)


def test_shifted_normal_is_detected_and_centred_is_not() -> None:
    rng = np.random.default_rng(0)
    e = one_sample_effect(rng.normal(1.0, 1.0, size=100))
    assert e.ci_low > 0 and e.p < 0.01
    z = one_sample_effect(rng.normal(0.0, 1.0, size=100))
    assert z.ci_low < 0 < z.ci_high and z.p > 0.05


def test_to_dict_is_json_ready() -> None:
    d = one_sample_effect([1, 2, 3, 4, 5, 6]).to_dict()
    assert set(d) == {"n", "mean", "ci_low", "ci_high", "p", "n_clusters"}
    assert json.loads(json.dumps(d, allow_nan=False)) == d


@pytest.mark.parametrize(
    ("a", "b"),
    [([1.0, 2.0], [1.0]), ([[1.0, 2.0]], [[1.0, 2.0]]), ([], []), ([1.0, np.nan], [0.0, 0.0])],
)
def test_bad_input_raises(a: list, b: list) -> None:
    with pytest.raises(ValueError):
        paired_effect(a, b)


# --- resolution and seed validation ------------------------------------------------------


def test_minimums_by_hand() -> None:
    # 2/2**G <= alpha: 2/64 <= 0.05 < 2/32; 2/256 <= 0.01 < 2/128. 1/(B+1) <= alpha: B = 19, 99.
    assert (min_clusters(0.95), min_clusters(0.99)) == (6, 8)
    assert (min_resamples(0.95), min_resamples(0.99)) == (19, 99)
    assert min_resamples(0.9) == 9


def test_too_few_clusters_names_the_minimum() -> None:
    with pytest.raises(InputError, match=r"at least 6 clusters .* got 5"):
        one_sample_effect([1.0, 2.0, 3.0, 4.0, 5.0])
    with pytest.raises(InputError, match=r"at least 6 clusters"):
        one_sample_effect(np.arange(12.0), clusters=np.repeat(np.arange(3), 4))
    check_resolution(6, n_resamples=19, seed=0)  # exactly the minimums pass


def test_too_few_resamples_names_the_minimum() -> None:
    d = np.random.default_rng(0).normal(size=35)
    with pytest.raises(InputError, match=r"n_resamples must be at least 19 .* 35 clusters \(got 18\)"):
        one_sample_effect(d, n_resamples=18)
    with pytest.raises(InputError, match=r"at least 99 for a 99 % interval"):
        one_sample_effect(d, n_resamples=50, confidence=0.99)
    e = one_sample_effect(d, n_resamples=19)  # the minimum gives a finite interval that holds the mean
    assert e.ci_low <= e.mean <= e.ci_high and math.isfinite(e.ci_low) and math.isfinite(e.ci_high)


def test_random_patterns_that_flip_none_or_all_are_named() -> None:
    # Seed 0 draws 2 of its 19 patterns over 6 clusters as all-kept or all-flipped (by hand from
    # default_rng(0).integers(0, 2, (19, 6))): they always "exceed", so no pattern is left to reject.
    masks = np.random.default_rng(0).integers(0, 2, size=(19, 6))
    assert int(np.sum((masks.sum(axis=1) == 0) | (masks.sum(axis=1) == 6))) == 2
    with pytest.raises(InputError, match=r"2 of the 19 random sign patterns over 6 clusters .* n_resamples >= 64"):
        one_sample_effect(np.arange(1.0, 7.0), n_resamples=19, seed=0)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"seed": -1}, r"seed must be >= 0 \(got -1\)"),
    ({"confidence": 1.0}, r"confidence must be in \(0, 1\)"),
    ({"n_resamples": 0}, r"n_resamples must be at least 19"),
])
def test_bad_settings_are_input_errors(kwargs: dict, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        one_sample_effect(np.arange(40.0), **kwargs)


# --- non-negative metrics: shares and the random-head baseline ---------------------------


def test_share_interval_is_clopper_pearson() -> None:
    # 12 of 12: lower end solves P(Bin(12, p) = 12) = 0.025 -> p = 0.025**(1/12).
    s = share_interval(np.ones(12, dtype=bool))
    assert (s.k, s.n, s.share, s.ci_high) == (12, 12, 1.0, 1.0)
    assert abs(s.ci_low - 0.025 ** (1 / 12)) < 1e-9 and abs(s.ci_low - 0.7354) < 1e-4
    z = share_interval([0] * 12)
    assert z.ci_low == 0.0 and abs(z.ci_high - (1 - 0.025 ** (1 / 12))) < 1e-9
    # 5 of 12: the beta-quantile form of Clopper-Pearson.
    m = share_interval([1] * 5 + [0] * 7)
    assert abs(m.ci_low - sps.beta.ppf(0.025, 5, 8)) < 1e-9
    assert abs(m.ci_high - sps.beta.ppf(0.975, 6, 7)) < 1e-9
    assert json.loads(json.dumps(m.to_dict())) == m.to_dict()
    with pytest.raises(ValueError):
        share_interval([0, 2, 1])


def test_baseline_excess_averages_draws_then_pairs() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(12), 3)
    kl = rng.exponential(0.5, 36) + 0.2  # KL >= 0 of the tested heads
    draws = rng.exponential(0.5, (4, 36))  # KL of 4 random-head draws
    e = baseline_excess(kl, draws, clusters=labels)
    assert e == paired_effect(kl, draws.mean(axis=0), clusters=labels)
    assert baseline_excess(kl, draws[0], clusters=labels) == paired_effect(kl, draws[0], clusters=labels)
    with pytest.raises(ValueError, match="baseline_draws"):
        baseline_excess(kl, draws[:, :5])


def test_noise_floor_rule() -> None:
    control = [0.0, 1e-7, -3e-7, 0.0, 2e-8, 0.0]  # a self-patch: 0 up to float noise
    floor = noise_floor(control, atol=1e-9)
    assert abs(floor - 3.01e-7) < 1e-15
    tiny = one_sample_effect([2e-7, 1e-7, 2.5e-7, 1.5e-7, 2e-7, 1e-7])
    assert tiny.p < 0.05 and no_effect(tiny, floor)  # "significant" float noise is still no effect
    assert not no_effect(one_sample_effect([1, 2, 3, 4, 5, 6]), floor)
    assert no_effect(Effect(n=6, mean=-floor, ci_low=-1, ci_high=1, p=1.0), floor)  # at the floor: none
    with pytest.raises(InputError, match="noise floor must be a finite number >= 0, got -1e-06"):
        no_effect(tiny, -1e-6)
    with pytest.raises(InputError, match="atol"):
        noise_floor(control, atol=-1.0)


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


def _brute_ratio_interval(num: np.ndarray, den: np.ndarray, clusters: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """The reference: p(θ0) of the residual num − θ0·den by enumerating every sign pattern at each
    grid point (no closed form), and the extremes of the accepted grid points."""
    a, b = np.bincount(clusters, num), np.bincount(clusters, den)
    signs = np.array(list(itertools.product([1.0, -1.0], repeat=a.size)))
    accepted = []
    for t in grid:
        r = a - t * b
        p = np.mean(np.abs(signs @ r) >= abs(r.sum()) - 1e-12 * np.abs(r).sum())
        accepted.append(p > 0.05)
    ok = grid[np.array(accepted)]
    return float(ok.min()), float(ok.max())


def test_ratio_effect_matches_brute_force_inversion() -> None:
    rng = np.random.default_rng(3)
    clusters = np.repeat(np.arange(9), 4)
    den = rng.normal(2.0, 0.4, clusters.size)
    num = 0.4 * den + rng.normal(0.0, 0.3, clusters.size)
    r = ratio_effect(num, den, clusters=clusters, n_resamples=10_000)  # 2**9 = 512 patterns: exact
    assert r.ratio == pytest.approx(num.sum() / den.sum(), rel=1e-12)
    step = 1e-4
    lo, hi = _brute_ratio_interval(num, den, clusters, np.arange(0.0, 1.0, step))
    assert r.ci_low is not None and r.ci_high is not None
    assert abs(r.ci_low - lo) <= step and abs(r.ci_high - hi) <= step
    assert r.ci_low < r.ratio < r.ci_high and r.n_clusters == 9


def test_ratio_effect_with_constant_denominator_is_the_mean_interval_scaled() -> None:
    # den ≡ 2: the residual num − 2θ is (num − μ) with μ = 2θ, so the interval is the mean's / 2.
    rng = np.random.default_rng(4)
    clusters = np.repeat(np.arange(10), 3)
    num = rng.normal(1.0, 1.0, clusters.size)
    r = ratio_effect(num, np.full(num.size, 2.0), clusters=clusters, n_resamples=2000)
    e = one_sample_effect(num, clusters=clusters, n_resamples=2000)
    assert r.ratio == pytest.approx(e.mean / 2, rel=1e-12)
    assert r.ci_low == pytest.approx(e.ci_low / 2, abs=1e-9) and r.ci_high == pytest.approx(e.ci_high / 2, abs=1e-9)


def test_ratio_effect_is_unbounded_when_the_denominator_is_not_away_from_zero() -> None:
    # Fieller's case: den's cluster sums straddle 0, so no finite interval holds 95 % of θ.
    clusters = np.arange(8)
    den = np.array([1.0, -1.0, 0.5, -0.5, 0.2, -0.3, 0.1, 0.05])
    num = np.array([1.0, 0.8, 1.2, 0.9, 1.1, 1.0, 0.7, 1.3])
    r = ratio_effect(num, den, clusters=clusters, n_resamples=1000)
    assert r.ratio == pytest.approx(num.sum() / den.sum()) and r.ci_low is None and r.ci_high is None
