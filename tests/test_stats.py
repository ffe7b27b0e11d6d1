"""Hand-computed and reference checks of analysis.measures.stats (the inverted wild cluster bootstrap-t of
Hall's skewness-corrected statistic, one- and two-way)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis.base.errors import InputError
from analysis.measures.stats import (
    _hall,
    _hall_inverse,
    _scale_and_skew,
    _wild_weights,
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
SQRT5 = 5**0.5
LOW, HIGH, P_LOW = (1 - SQRT5) / 2, (1 + SQRT5) / 2, (SQRT5 + 1) / (2 * SQRT5)  # Mammen (1993)


def _mammen(g: int, b: int, seed: int) -> np.ndarray:
    """(b, g) Mammen weights from the definition: LOW with probability P_LOW, else HIGH."""
    return np.where(np.random.default_rng(seed).random((b, g)) < P_LOW, LOW, HIGH)


def _ref_stat(x: np.ndarray, g_lab: np.ndarray, t_lab: np.ndarray | None, mu0: float, skew: bool = True) -> float:
    """Hall's statistic for H0 "mean = mu0", straight from the definitions (loops, no algebra).

    se² = (V_E + V_T − V_P) / n², never below V_E / n², with V_E = G/(G−1) Σ_g U_g² over the
    clusters' residual sums, V_T the same over templates, V_P = n/(n−1) Σ e_i² over prompts;
    γ the skewness of the U_g; θ = (mean − mu0) / (se·√G).
    """
    n, m = x.size, x.mean()
    e = x - m
    u = np.array([e[g_lab == c].sum() for c in np.unique(g_lab)])
    g = u.size
    v = g / (g - 1) * np.sum(u**2)
    if t_lab is not None:
        w = np.array([e[t_lab == c].sum() for c in np.unique(t_lab)])
        h = w.size
        v = max(v, v + h / (h - 1) * np.sum(w**2) - n / (n - 1) * np.sum(e**2))
    se = math.sqrt(v) / n
    gamma = float(np.mean(u**3) / np.mean(u**2) ** 1.5) if np.any(u != 0) and skew else 0.0
    if se == 0.0:  # no spread: only the t statistic (skew False) is defined, ∞ unless the mean is mu0
        assert not skew
        return 0.0 if m == mu0 else math.inf
    th = (m - mu0) / (se * math.sqrt(g))
    return math.sqrt(g) * (th + gamma * th**2 / 3 + gamma**2 * th**3 / 27 + gamma / (6 * g))


def _ref_star(x: np.ndarray, g_lab: np.ndarray, t_lab: np.ndarray | None, b: int, seed: int) -> np.ndarray:
    """|T*| of every wild draw x* = mean + v_g·(x − mean), each tested against the mean."""
    codes = np.unique(g_lab, return_inverse=True)[1].ravel()
    weights = _mammen(codes.max() + 1, b, seed)
    m = x.mean()
    return np.array([abs(_ref_stat(m + w[codes] * (x - m), g_lab, t_lab, m)) for w in weights])


def _ref_boot_p(x: np.ndarray, g_lab: np.ndarray, t_lab: np.ndarray | None, mu0: float, b: int, seed: int) -> float:
    """The bootstrap-t's (1 + #{|T*| >= |T(mu0)|}) / (b + 1)."""
    star = _ref_star(x, g_lab, t_lab, b, seed)
    return (1 + int(np.sum(star >= abs(_ref_stat(x, g_lab, t_lab, mu0)) * (1 - 1e-12)))) / (b + 1)


def _ref_flip_p(x: np.ndarray, g_lab: np.ndarray, t_lab: np.ndarray | None, mu0: float, b: int, seed: int) -> float:
    """The sign-flip test of H0(mu0): x* = s_g·(x − mu0) with one random sign per cluster (the
    stream default_rng([seed, 1])), the t statistic of each x* against 0 with its own scale."""
    codes = np.unique(g_lab, return_inverse=True)[1].ravel()
    signs = np.random.default_rng([seed, 1]).choice(np.array([-1.0, 1.0]), (b, codes.max() + 1))
    star = np.array([abs(_ref_stat(s[codes] * (x - mu0), g_lab, t_lab, 0.0, skew=False)) for s in signs])
    return (1 + int(np.sum(star >= abs(_ref_stat(x, g_lab, t_lab, mu0, skew=False)) * (1 - 1e-12)))) / (b + 1)


def _ref_p(x: np.ndarray, g_lab: np.ndarray, t_lab: np.ndarray | None, mu0: float, b: int, seed: int) -> float:
    """H0(mu0) is rejected only when both tests reject it: the larger of their p-values."""
    return max(_ref_boot_p(x, g_lab, t_lab, mu0, b, seed), _ref_flip_p(x, g_lab, t_lab, mu0, b, seed))


# --- the inverted wild cluster bootstrap-t: hand examples and references -------------------


def test_mammen_weights_have_moments_0_1_1() -> None:
    # Mean 0 (centred draws), variance 1 (the clusters' variance), third moment 1 (their skewness).
    for k, want in ((1, 0.0), (2, 1.0), (3, 1.0)):
        assert abs(P_LOW * LOW**k + (1 - P_LOW) * HIGH**k - want) < TOL
    w = _wild_weights(7, 50, 3)
    np.testing.assert_array_equal(w, _mammen(7, 50, 3))
    assert not w.flags.writeable


def test_hall_statistic_inverts_and_is_the_t_statistic_without_skew() -> None:
    for gamma in (-2.0, -0.3, 0.0, 1e-12, 0.7, 3.0):
        for theta in (-4.0, -1.0, -0.2, 0.0, 0.5, 2.0, 5.0):
            t = float(_hall(np.array(theta), np.array(gamma), 17))
            assert abs(_hall_inverse(t, gamma, 17) - theta) < 1e-9 * max(1.0, abs(theta))
    # γ = 0: T = √G·θ, the t statistic of the cluster means.
    x = np.array([1.0, 2, 3, 4, 5, 6])
    assert abs(_ref_stat(x, np.arange(6), None, 0.0) - sps.ttest_1samp(x, 0.0).statistic) < 1e-12


def test_two_way_variance_by_hand() -> None:
    # d = (1, 3, 2, 6); clusters (a, a, b, b), templates (x, y, x, y): mean 3, residuals (−2, 0, −1, 3);
    # cluster sums (−2, 2): V_E = 2/1·8 = 16; template sums (−3, 3): V_T = 2/1·18 = 36;
    # V_P = 4/3·14 = 56/3; V = 16 + 36 − 56/3 = 100/3; s = √V·√G/n; γ = 0 (sums ±2).
    s, gamma = _scale_and_skew(np.array([-2.0, 2.0]), np.array([-3.0, 3.0]), np.array(14.0), 4, 2, 2)
    assert abs(float(s) - math.sqrt(100 / 3) * math.sqrt(2) / 4) < TOL and float(gamma) == 0.0
    # Without templates only V_E counts; with V_T − V_P < 0 the two-way variance is floored at V_E.
    s1, _ = _scale_and_skew(np.array([-2.0, 2.0]), None, np.array(14.0), 4, 2, 2)
    s2, _ = _scale_and_skew(np.array([-2.0, 2.0]), np.array([-1.0, 1.0]), np.array(14.0), 4, 2, 2)
    assert abs(float(s1) - 4 * math.sqrt(2) / 4) < TOL and float(s2) == float(s1)
    # Skewness of the cluster sums (1, 1, −2): mean cube −2, mean square 2 -> γ = −2 / 2**1.5.
    _, g3 = _scale_and_skew(np.array([1.0, 1.0, -2.0]), None, np.array(0.0), 6, 3, 0)
    assert abs(float(g3) + 2 / 2**1.5) < TOL


def test_one_to_six_by_hand() -> None:
    # The bootstrap-t: γ = 0 for these symmetric residuals, so T(μ0) is the t statistic
    # (3.5 − μ0)/(sd/√6), sd = √(17.5/5), and its interval is mean ± c·sd/√6, c the r-th largest
    # |T*|, r = ⌊0.05·(B + 1)⌋ = 5 for B = 99: [1.368, 5.632].
    # The sign flips of x − μ0 accept every μ0 below 6: there one of the six values is the only
    # positive one, and the observed pattern, its negation and the two one-sign patterns reach
    # |T| (4 of 64 patterns, p ≈ 0.06 > 0.05); above 6 every value is negative and only the two
    # one-sign patterns do (2 of 64). So the union's upper end is 6 (the flips of these 99 draws
    # agree), and the lower end stays the bootstrap's (below 1 the flips reject likewise, and at
    # 1.368 already).
    x = np.arange(1.0, 7.0)
    e = one_sample_effect(x, n_resamples=99, seed=4)
    assert (e.n, e.n_clusters) == (6, None) and abs(e.mean - 3.5) < TOL
    star = np.sort(_ref_star(x, np.arange(6), None, 99, 4))
    c, half = star[-5], star[-5] * math.sqrt(17.5 / 5) / math.sqrt(6)
    assert abs(e.ci_low - (3.5 - half)) < 1e-9 and abs(e.ci_high - 6.0) < 1e-6
    assert _ref_flip_p(x, np.arange(6), None, 5.999, 99, 4) > 0.05 >= _ref_flip_p(x, np.arange(6), None, 6.001, 99, 4)
    assert abs(e.p - _ref_p(x, np.arange(6), None, 0.0, 99, 4)) < TOL
    assert c < 3.5 / math.sqrt(17.5 / 5 / 6) and e.p < 0.05  # t = 4.58 beyond c, and all six positive: rejected


CASES = [  # (seed, clusters, sizes up to, templates or not)
    (1, 8, 3, False), (2, 9, 4, True), (3, 12, 2, True), (4, 17, 2, True), (5, 14, 3, False),
]


def _case(seed: int, g: int, up_to: int, two_way: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(g), rng.integers(1, up_to + 1, g))
    d = rng.lognormal(0.0, 1.0, g)[labels] - 1.2 + rng.normal(0.0, 0.4, labels.size)
    return d, labels, (rng.integers(0, 5, labels.size) if two_way else None)


@pytest.mark.parametrize("case", CASES)
def test_p_matches_the_reference(case: tuple) -> None:
    d, labels, templates = _case(*case)
    e = one_sample_effect(d, clusters=labels, templates=templates, n_resamples=199, seed=case[0])
    assert e.n_clusters == case[1]
    assert abs(e.p - _ref_p(d, labels, templates, 0.0, 199, case[0])) < TOL


def _inversion_holds(e: Effect, d: np.ndarray, labels: np.ndarray, templates: np.ndarray | None, b: int, seed: int,
                     alpha: float = 0.05) -> None:
    """Each CI end is where the reference test switches from rejecting to accepting."""
    eps = 1e-6 * max(1.0, abs(e.ci_high - e.ci_low))
    assert _ref_p(d, labels, templates, e.ci_low + eps, b, seed) > alpha
    assert _ref_p(d, labels, templates, e.ci_high - eps, b, seed) > alpha
    assert _ref_p(d, labels, templates, e.ci_low - eps, b, seed) <= alpha
    assert _ref_p(d, labels, templates, e.ci_high + eps, b, seed) <= alpha


@pytest.mark.parametrize("case", CASES)
def test_interval_is_the_inverted_test(case: tuple) -> None:
    d, labels, templates = _case(*case)
    e = one_sample_effect(d, clusters=labels, templates=templates, n_resamples=199, seed=case[0])
    _inversion_holds(e, d, labels, templates, 199, case[0])
    assert e.ci_low < e.mean < e.ci_high
    # Skewed data give an asymmetric interval: the skew correction at work.
    assert abs((e.ci_high - e.mean) - (e.mean - e.ci_low)) > 1e-3 * (e.ci_high - e.ci_low)


def test_clusters_move_together() -> None:
    # Clustered, the bootstrap draws one weight per cluster: the reference with the labels, and a
    # different test (one weight per value) without them.
    d = np.array([1, 1, 3, -2, 0.5, 2, 1.0, 0.2])
    labels = np.array(["a", "a", "b", "c", "d", "e", "f", "f"])
    e = one_sample_effect(d, clusters=labels, n_resamples=199)
    assert abs(e.mean - d.mean()) <= TOL and e.n == 8 and e.n_clusters == 6
    assert abs(e.p - _ref_p(d, labels, None, 0.0, 199, 0)) <= TOL
    u = one_sample_effect(d, n_resamples=199)
    assert abs(u.p - _ref_p(d, np.arange(8), None, 0.0, 199, 0)) <= TOL and u.p != e.p
    assert one_sample_effect(d, clusters=labels, n_resamples=199, seed=1).p != e.p  # the seed is used


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


def test_sign_flips_of_equal_sizes_give_the_exact_binomial_p_and_the_union_the_larger_p() -> None:
    # 14 of 17 clusters at +1, 3 at −1: under "symmetric about 0" every sign pattern is equally
    # likely and |t| only grows with how many agree, so the flip's exact p is the two-sided
    # binomial tail P(#positive >= 14 or <= 3) = 2·(C(17,14) + C(17,15) + C(17,16) + 1) / 2**17
    # = 0.01273 (the Monte-Carlo p within 3 SE of it, SE 0.0008 at B = 20000). Hall's statistic
    # reads the three −1 as skewness (γ = −1.70, T = 1.99 where t = 3.39), so the bootstrap-t says
    # 0.087; the union rejects only what both reject and reports the larger p.
    x = np.array([1.0] * 14 + [-1.0] * 3)
    exact = 2 * (math.comb(17, 14) + math.comb(17, 15) + math.comb(17, 16) + 1) / 2**17
    assert abs(exact - 0.012726) < 1e-6
    flip = _ref_flip_p(x, np.arange(17), None, 0.0, 4000, 0)
    assert abs(flip - exact) < 3 * math.sqrt(exact * (1 - exact) / 4000), flip
    e = one_sample_effect(x, n_resamples=4000, seed=0)
    assert abs(e.p - max(_ref_boot_p(x, np.arange(17), None, 0.0, 4000, 0), flip)) < TOL
    assert 0.08 < e.p < 0.095 and e.ci_low < 0.0 < e.ci_high


def test_paired_equals_one_sample_of_differences() -> None:
    base = np.array([0.5, -1.0, 2.0, 0.0, 3.0, 1.5])
    inter = base + np.array([1.0, 2.0, 3.0, 4.0, -0.5, 0.7])
    assert paired_effect(inter, base) == one_sample_effect(inter - base)


def test_all_zero_differences() -> None:
    e = paired_effect([1.0, 2.0, 3.0, 4, 5, 6], [1.0, 2.0, 3.0, 4, 5, 6])
    assert e == Effect(n=6, mean=0.0, ci_low=0.0, ci_high=0.0, p=1.0)


def _one_sign_draws(g: int, b: int, seed: int) -> int:
    """How many of the flip test's b seeded sign draws give all g clusters one sign."""
    signs = np.random.default_rng([seed, 1]).choice(np.array([-1.0, 1.0]), (b, g))
    return int(np.sum(np.all(signs == signs[:, :1], axis=1)))


def test_identical_nonzero_cluster_means() -> None:
    # No variation between clusters: the bootstrap accepts only the mean (p at its floor); the
    # sign flips of a constant reach the observed |t| = ∞ only where every sign is the same
    # (2 of 2**6 patterns), so p = (1 + those draws)/(B + 1) ≈ 1/32, and the interval is the mean
    # (every μ0 ≠ mean is rejected the same way).
    e = one_sample_effect([2.0] * 6)
    assert e == Effect(n=6, mean=2.0, ci_low=2.0, ci_high=2.0, p=(1 + _one_sign_draws(6, 2000, 0)) / 2001)
    assert abs(e.p - 2 / 64) < 0.01
    big = one_sample_effect(np.repeat([1.0, 1.0, 1.0], 10), clusters=np.repeat(np.arange(6), 5), n_resamples=99)
    assert (big.ci_low, big.ci_high, big.p, big.n_clusters) == (1.0, 1.0, (1 + _one_sign_draws(6, 99, 0)) / 100, 6)


def test_float_noise_between_identical_clusters_does_not_move_p() -> None:
    # Measured 2026-12-07 (tests/test_pipeline.py, 1 vs 2 torch threads): a planted head's ΔM was
    # the same in every one of 6 clusters on one thread count and differed in the 15th digit on the
    # other, and p jumped from the floor 1e-4 to 0.034. Both now give the flips' p.
    exact = one_sample_effect([10.9926] * 12, clusters=np.repeat(np.arange(6), 2), n_resamples=10_000)
    noisy = one_sample_effect(10.9926 + np.arange(12) * 1e-15, clusters=np.repeat(np.arange(6), 2), n_resamples=10_000)
    assert exact.p == noisy.p == (1 + _one_sign_draws(6, 10_000, 0)) / 10_001
    assert abs(exact.ci_low - noisy.ci_low) < 1e-9 and abs(exact.ci_high - noisy.ci_high) < 1e-9


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


def _ref_ratio_interval(num: np.ndarray, den: np.ndarray, clusters: np.ndarray, templates: np.ndarray | None,
                        grid: np.ndarray, b: int, seed: int) -> tuple[float, float]:
    """The reference: |T(θ0)| of the residual num − θ0·den against 0 at every grid point, the
    critical value c from the wild draws of num − θ̂·den, or the sign-flip test of num − θ0·den;
    the extremes of the points either accepts."""
    ratio = num.sum() / den.sum()
    c = np.sort(_ref_star(num - ratio * den, clusters, templates, b, seed))[-math.floor(0.05 * (b + 1))]
    ok = [t for t in grid if abs(_ref_stat(num - t * den, clusters, templates, 0.0)) <= c
          or _ref_flip_p(num - t * den, clusters, templates, 0.0, b, seed) > 0.05]
    return float(min(ok)), float(max(ok))


@pytest.mark.parametrize("two_way", [False, True])
def test_ratio_effect_matches_the_reference_inversion(two_way: bool) -> None:
    rng = np.random.default_rng(3)
    clusters = np.repeat(np.arange(9), 4)
    templates = np.tile(np.arange(4), 9) if two_way else None
    den = rng.normal(2.0, 0.4, clusters.size)
    num = 0.4 * den + rng.exponential(0.3, clusters.size)
    r = ratio_effect(num, den, clusters=clusters, templates=templates, n_resamples=199, seed=2)
    assert r.ratio == pytest.approx(num.sum() / den.sum(), rel=1e-12)
    step = 2e-3
    lo, hi = _ref_ratio_interval(num, den, clusters, templates, np.arange(0.0, 1.0, step), 199, 2)
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
