"""The statistics every headline effect carries (DESIGN.md section 6).

Every effect is a set of paired per-prompt differences d = intervened − baseline, clustered by
emotion expression, reported as n, mean, a 95 % confidence interval and a two-sided p-value;
p-values of one family (all heads × emotions of one model and metric) are then corrected with
Benjamini–Hochberg.

One procedure for the interval and the p-value: the inverted cluster sign-flip test
-----------------------------------------------------------------------------------------
H0(μ0): "the mean per-prompt effect is μ0". Under H0 each cluster's residual sum
r_g(μ0) = S_g − μ0·N_g (S_g: sum of the cluster's differences, N_g: its prompts) is symmetric
about 0, so its sign is exchangeable. The statistic is the prompt-weighted mean residual
T(μ0) = Σ_g r_g / N = mean − μ0, and its reference distribution is T under every sign pattern
ε ∈ {±1}^G of the G clusters: all 2**G patterns when 2**G ≤ n_resamples (an exact test), else
n_resamples seeded random patterns plus the observed one (p = (1 + #{|T_ε| ≥ |T|}) / (B + 1),
which is valid, never 0; Phipson & Smyth 2010). The p-value is p(0); the interval is
{μ0 : p(μ0) > α}, the shifts the same test does not reject, so p ≤ α ⇔ 0 ∉ CI by construction
(Fisher 1935; Lehmann & Romano, *Testing Statistical Hypotheses*, 3.5).

Why this one: with few clusters (12 today, 35+ planned) cluster-resampling bootstraps under-cover
(Cameron, Gelbach & Miller 2008, "Bootstrap-based improvements for inference with clustered
errors", REStat 90:414); the sign-flip test is exact when cluster sums are symmetric and remains
valid under approximate symmetry with few, heterogeneous clusters (Canay, Romano & Shaikh 2017,
"Randomization tests under an approximate symmetry assumption", Econometrica 85:1013). It is the
wild cluster bootstrap with Rademacher weights and the null imposed (Cameron et al. 2008),
inverted as in Roodman, MacKinnon, Nielsen & Webb 2019 ("Fast and wild", Stata J. 19:4). With
Rademacher weights there are only 2**G distinct patterns, which is why we enumerate them all
when that is affordable; Webb (2014) six-point weights only matter for G ≲ 10, where an exact
95 % test has too few patterns anyway (see MIN below).

Root finding in closed form (why it is fast and has no holes): pattern ε flips the clusters F
and keeps K. |T_ε(μ0)| ≥ |T(μ0)| factors into two linear terms and holds exactly for μ0 between
mean(F) and mean(K), the per-prompt means of the flipped and the kept clusters. The overall mean
is a weighted average of those two, so every pattern's interval contains it, the count of
exceeding patterns only falls as μ0 moves away from the mean, and the accepted set is one
interval: its ends are order statistics of the patterns' interval ends (np.partition), no
iterative search and no grid. Cost per effect: one (patterns × G) matrix product and a partition.

Resolution limits (checked before any work, InputError): an exact test over G clusters cannot
give p below 2/2**G, so a (1 − α) interval needs G ≥ 1 + log2(1/α) clusters (6 at 95 %); a
Monte-Carlo test cannot give p below 1/(B + 1), so it needs n_resamples ≥ ⌈1/α⌉ − 1 (19 at
95 %). The same floor limits BH: among m tests one true effect can only reach q < 0.05 when
p ≈ 1/(B + 1) < 0.05/m, e.g. n_resamples ≥ 8640 for GPT-2-small's 432 heads × 1 emotion.

Non-negative metrics (KL, "changed") are never tested against 0 (any positive value in every
cluster would reach the floor): `share_interval` gives a Clopper–Pearson interval for a share
over clusters and `baseline_excess` compares a metric with a random-head baseline by the
procedure above. `noise_floor` / `no_effect` turn an identity/self-patch control into the
"no effect" rule. `ratio_effect` gives a ratio of means (the fraction of the emotion–neutral gap)
the interval of the same test, inverted for the ratio (Fieller type).

**Benjamini–Hochberg q** (`scipy.stats.false_discovery_control(method="bh")`): screening tests
hundreds of heads; controlling the false discovery rate rather than the family-wise error keeps
power while bounding the share of false "emotion heads" among those reported.

Degenerate inputs give honest numbers, never NaN: identical cluster means give the interval
[mean, mean] when the test can reject anything else, and p = 1 when the mean is 0.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from analysis.errors import InputError

ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class Effect:
    """One effect as reported: n paired differences, their mean, CI bounds and two-sided p."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    p: float
    n_clusters: int | None = None  # independent units behind n (None: every prompt its own)

    def to_dict(self) -> dict[str, float | int]:
        """Plain Python numbers, ready for JSON."""
        return dataclasses.asdict(self)


def _as_1d_finite(x: ArrayLike, name: str) -> np.ndarray:
    """A 1-D float array of finite values, else ValueError (NaN would poison every statistic)."""
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _alpha(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    return 1.0 - confidence


def min_clusters(confidence: float = 0.95) -> int:
    """Fewest clusters for which an exact sign-flip test can reject at 1 − confidence (6 at 95 %)."""
    # Smallest G with 2 / 2**G <= alpha; the epsilon keeps 2**-k levels (e.g. alpha = 1/32) exact.
    return max(2, math.ceil(1.0 + math.log2(1.0 / _alpha(confidence)) - 1e-12))


def min_resamples(confidence: float = 0.95) -> int:
    """Fewest random sign patterns B for which 1/(B + 1) <= 1 − confidence (19 at 95 %)."""
    return math.ceil(1.0 / _alpha(confidence) - 1e-9) - 1


def check_resolution(n_clusters: int, *, n_resamples: int, seed: int, confidence: float = 0.95) -> None:
    """InputError unless a (confidence) interval over n_clusters with n_resamples can exist.

    Call it before the computation (the CLIs know the cluster count from the prompts).
    """
    if seed < 0:
        raise InputError(f"seed must be >= 0 (got {seed})")
    level = f"{100 * confidence:g} % interval"
    need_g = min_clusters(confidence)
    if n_clusters < need_g:
        raise InputError(
            f"a {level} needs at least {need_g} clusters (independent expressions), got {n_clusters}: "
            f"with {n_clusters} the smallest possible p is {2 / 2**n_clusters:.3g}"
        )
    need_b = min_resamples(confidence)
    if n_resamples < need_b:
        raise InputError(
            f"n_resamples must be at least {need_b} for a {level} over {n_clusters} clusters (got {n_resamples})"
        )


@functools.lru_cache(maxsize=16)
def _flip_masks(n_clusters: int, n_resamples: int, seed: int) -> tuple[np.ndarray, int]:
    """(masks, extra): the reference set of sign patterns as 0/1 flip masks, shape (P, G).

    All 2**G patterns when 2**G <= n_resamples (exact test, extra 0), else n_resamples seeded
    random ones, and the observed pattern joins the reference set (extra 1; Phipson & Smyth 2010).
    Cached read-only: a screening computes thousands of effects with the same G, B and seed, and
    the same patterns for every effect are what keeps the effects reproducible one by one.
    """
    if 2**n_clusters <= n_resamples:
        b = np.arange(2**n_clusters, dtype=np.int64)[:, None]
        masks = ((b >> np.arange(n_clusters, dtype=np.int64)) & 1).astype(float)  # row b: digits of b
        extra = 0
    else:
        masks = np.random.default_rng(seed).integers(0, 2, size=(n_resamples, n_clusters)).astype(float)
        extra = 1
    masks.setflags(write=False)
    return masks, extra


def _sign_flip_inversion(
    sums: np.ndarray, sizes: np.ndarray, *, n_resamples: int, seed: int, alpha: float
) -> tuple[float, float, float]:
    """(ci_low, ci_high, p) of the inverted cluster sign-flip test; sums, sizes: shape (G,)."""
    g = sums.size
    flips, extra = _flip_masks(g, n_resamples, seed)  # (P, G)
    total = flips.shape[0] + extra
    s_all, n_all = float(sums.sum()), float(sizes.sum())
    mean = s_all / n_all
    s_f, n_f = flips @ sums, flips @ sizes  # (P,): sum and size of the flipped clusters
    n_k = n_all - n_f
    # Patterns that flip nothing or everything give |T_ε| = |T| for every μ0: always "exceed".
    trivial = (n_f == 0.0) | (n_k == 0.0)
    always = extra + int(trivial.sum())
    s_f, n_f, n_k = s_f[~trivial], n_f[~trivial], n_k[~trivial]
    mean_f, mean_k = s_f / n_f, (s_all - s_f) / n_k
    # Clip to the mean: rounding must not break "every pattern's interval contains the mean".
    # Widen by a float tolerance so that exact ties (|T_ε| = |T|, e.g. flipped values summing to
    # 0) count as exceeding, as the test's ">=" says, whatever the rounding of the sums.
    tol = 1e-12 * float(np.abs(sums).sum())
    lo = np.minimum(np.minimum(mean_f, mean_k), mean) - tol
    hi = np.maximum(np.maximum(mean_f, mean_k), mean) + tol
    # Accept μ0 iff count(μ0)/total > alpha, i.e. count >= need; count(μ0) = always + #{lo <= μ0}
    # left of the mean and always + #{hi >= μ0} right of it.
    need = math.floor(round(alpha * total, 9)) + 1
    r = need - always  # >= 1 after check_resolution, unless random draws flipped none or all
    if r <= 0:
        raise InputError(
            f"{always - extra} of the {n_resamples} random sign patterns over {g} clusters flip none or all "
            f"of them, which leaves no {100 * (1 - alpha):g} % interval; use n_resamples >= {2**g} "
            f"(the exact test) or another seed"
        )
    ci_low = float(np.partition(lo, r - 1)[r - 1])
    ci_high = float(-np.partition(-hi, r - 1)[r - 1])
    if mean > 0.0:
        count0 = always + int(np.count_nonzero(lo <= 0.0))
    elif mean < 0.0:
        count0 = always + int(np.count_nonzero(hi >= 0.0))
    else:
        count0 = total
    return ci_low, ci_high, count0 / total


def _cluster_sums(d: np.ndarray, clusters: ArrayLike | None) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Per-cluster sums and sizes of d (every value its own cluster when clusters is None)."""
    if clusters is None:
        return d, np.ones_like(d), None
    labels = np.asarray(clusters)
    if labels.shape != d.shape:
        raise ValueError(f"clusters must label every difference: {labels.shape} vs {d.shape}")
    _, inverse = np.unique(labels, return_inverse=True)
    sums = np.bincount(inverse, weights=d)
    return sums, np.bincount(inverse).astype(float), int(sums.size)


def one_sample_effect(
    d: ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
) -> Effect:
    """Effect of already-differenced data d: mean, and the CI and two-sided p of the inverted
    cluster sign-flip test against 0 (see module docstring).

    With `clusters` (one label per value), inference is over clusters; without, every value is
    its own cluster. InputError when the cluster count or n_resamples cannot give the interval,
    or the seed is negative (`check_resolution`).
    """
    d = _as_1d_finite(d, "differences")
    sums, sizes, n_clusters = _cluster_sums(d, clusters)
    alpha = _alpha(confidence)
    check_resolution(int(sums.size), n_resamples=n_resamples, seed=seed, confidence=confidence)
    low, high, p = _sign_flip_inversion(sums, sizes, n_resamples=n_resamples, seed=seed, alpha=alpha)
    mean = float(np.mean(d))
    # The interval always contains the mean; min/max only absorbs mean's own rounding vs sums.
    return Effect(n=int(d.size), mean=mean, ci_low=min(low, mean), ci_high=max(high, mean), p=p,
                  n_clusters=n_clusters)


def paired_effect(
    intervened: ArrayLike,
    baseline: ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
) -> Effect:
    """Effect of an intervention on paired per-prompt scores: one_sample_effect(intervened − baseline).

    Pairing removes the between-prompt variance, which dwarfs the intervention effect.
    """
    a = _as_1d_finite(intervened, "intervened")
    b = _as_1d_finite(baseline, "baseline")
    if a.shape != b.shape:
        raise ValueError(f"intervened and baseline differ in length: {a.size} vs {b.size}")
    return one_sample_effect(a - b, n_resamples=n_resamples, seed=seed, confidence=confidence, clusters=clusters)


def baseline_excess(
    values: ArrayLike,
    baseline_draws: ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
) -> Effect:
    """How much a non-negative metric (KL, changed) exceeds a random-head baseline, per prompt.

    values: shape (n,), the metric of the intervention under test; baseline_draws: shape (n,) or
    (draws, n), the same metric for the same intervention on random heads, one row per draw. The
    draws are averaged per prompt (the baseline's expected value), and the paired differences
    values − baseline get the inverted sign-flip test: unlike the metric itself, the difference
    can take either sign, so the test is meaningful.
    """
    v = _as_1d_finite(values, "values")
    base = np.asarray(baseline_draws, dtype=float)
    if base.ndim == 1:
        base = base[None, :]
    if base.ndim != 2 or base.shape[1] != v.size or base.shape[0] == 0:
        raise ValueError(f"baseline_draws must have shape (n,) or (draws, n) with n = {v.size}, got {base.shape}")
    return paired_effect(v, base.mean(axis=0), n_resamples=n_resamples, seed=seed, confidence=confidence,
                         clusters=clusters)


@dataclass(frozen=True)
class Ratio:
    """A ratio of means θ = Σ num / Σ den (e.g. the fraction of the emotion–neutral gap) and its
    interval; an end is None where the interval is unbounded (the denominator is not clearly
    away from 0, Fieller's case)."""

    n: int
    ratio: float | None  # None when Σ den = 0
    ci_low: float | None
    ci_high: float | None
    n_clusters: int | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain Python numbers, ready for JSON (None for an unbounded end)."""
        return dataclasses.asdict(self)


def ratio_effect(
    num: ArrayLike,
    den: ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
) -> Ratio:
    """θ = Σ num / Σ den with the interval of the same inverted cluster sign-flip test.

    Fieller-type inversion (Fieller 1954, "Some problems in interval estimation", JRSS B 16:175):
    under H0(θ0) the per-prompt residual num − θ0·den has mean 0, so its cluster sums
    R_g = A_g − θ0·B_g (A, B: the cluster sums of num and den) get the sign-flip test of the
    module docstring, and the interval is {θ0 : p(θ0) > α}. Pattern ε, flipping clusters F and
    keeping K, exceeds the observed |Σ R_g| exactly when R_F(θ0)·R_K(θ0) ≤ 0 (|R_K − R_F| ≥
    |R_K + R_F|), a quadratic inequality in θ0: the closed interval between A_F/B_F and A_K/B_K
    when B_F·B_K > 0, the two half-lines outside it when B_F·B_K < 0, a half-line when one B is 0.
    The count of exceeding patterns is piecewise constant between those roots, so the accepted
    set is found exactly by evaluating it at every root and between them; its hull is the
    interval. Unlike the delta method it is honest when the denominator is near 0: the accepted
    set then reaches ±∞ (an end None). With den ≡ c it is one_sample_effect(num) / c.
    """
    a = _as_1d_finite(num, "numerator")
    b = _as_1d_finite(den, "denominator")
    if a.shape != b.shape:
        raise ValueError(f"numerator and denominator differ in length: {a.size} vs {b.size}")
    sums_a, _, n_clusters = _cluster_sums(a, clusters)
    sums_b, _, _ = _cluster_sums(b, clusters)
    alpha = _alpha(confidence)
    g = int(sums_a.size)
    check_resolution(g, n_resamples=n_resamples, seed=seed, confidence=confidence)
    flips, extra = _flip_masks(g, n_resamples, seed)
    total = flips.shape[0] + extra
    af, bf = flips @ sums_a, flips @ sums_b
    ak, bk = sums_a.sum() - af, sums_b.sum() - bf
    intervals = _exceed_sets(af, bf, ak, bk)
    lows, highs = np.sort(intervals[:, 0]), np.sort(intervals[:, 1])
    ends = np.unique(intervals[np.isfinite(intervals)])
    s_a, s_b = float(sums_a.sum()), float(sums_b.sum())
    ratio = s_a / s_b if s_b != 0.0 else None
    if ends.size == 0:
        ends = np.array([0.0 if ratio is None else ratio])
    # count(θ) = extra + #{low <= θ} - #{high < θ}, evaluated at every end, between ends and beyond.
    step = max(1.0, float(np.ptp(ends)))
    points = np.concatenate([[ends[0] - step], ends, (ends[:-1] + ends[1:]) / 2, [ends[-1] + step]])
    count = extra + np.searchsorted(lows, points, side="right") - np.searchsorted(highs, points, side="left")
    need = math.floor(round(alpha * total, 9)) + 1
    accepted = points[count >= need]
    if ratio is not None:
        accepted = np.append(accepted, ratio)  # T(θ̂) = 0: every pattern exceeds, θ̂ is always accepted
    if accepted.size == 0:  # Σ den = 0 and nothing accepted: no finite statement
        return Ratio(int(a.size), None, None, None, n_clusters)
    low = None if accepted.min() <= points[0] else float(accepted.min())
    high = None if accepted.max() >= points[-1] else float(accepted.max())
    return Ratio(int(a.size), ratio, low, high, n_clusters)


def _exceed_sets(af: np.ndarray, bf: np.ndarray, ak: np.ndarray, bk: np.ndarray) -> np.ndarray:
    """Per pattern, {θ : (af − θ·bf)(ak − θ·bk) <= 0} as closed intervals [low, high] (rows; a
    pattern whose set is two half-lines gives two rows, an empty set none), ends possibly ±inf."""
    inf = np.inf
    rows: list[np.ndarray] = []
    both = (bf != 0.0) & (bk != 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rf, rk = af / bf, ak / bk
    lo, hi = np.minimum(rf, rk), np.maximum(rf, rk)
    # A float tolerance so that exact ties (|T_ε| = |T|) count as exceeding, as ">=" says.
    tol = 1e-12 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
    inside = both & (bf * bk > 0.0)
    rows.append(np.stack([lo[inside] - tol[inside], hi[inside] + tol[inside]], axis=1))
    outside = both & (bf * bk < 0.0)
    rows.append(np.stack([np.full(outside.sum(), -inf), lo[outside] + tol[outside]], axis=1))
    rows.append(np.stack([hi[outside] - tol[outside], np.full(outside.sum(), inf)], axis=1))
    # One linear factor constant (c = its a): c·(a' − θ·b') <= 0 is a half-line at a'/b', or every θ if c = 0.
    for c, b_const, b_other, root in ((af, bf, bk, rk), (ak, bk, bf, rf)):
        half = (b_const == 0.0) & (b_other != 0.0)
        every = half & (c == 0.0)
        s = c * b_other
        right, left = half & (s > 0.0), half & (s < 0.0)
        rows.append(np.stack([root[right] - tol[right], np.full(right.sum(), inf)], axis=1))
        rows.append(np.stack([np.full(left.sum(), -inf), root[left] + tol[left]], axis=1))
        rows.append(np.tile([-inf, inf], (int(every.sum()), 1)))
    # Both constant (the trivial patterns: flip none or all, where af = bf = 0): every θ or none.
    neither = (bf == 0.0) & (bk == 0.0) & (af * ak <= 0.0)
    rows.append(np.tile([-inf, inf], (int(neither.sum()), 1)))
    return np.concatenate([r.reshape(-1, 2) for r in rows], axis=0)


@dataclass(frozen=True)
class Share:
    """k of n independent units (clusters) with a property, and its exact binomial interval."""

    k: int
    n: int
    share: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain Python numbers, ready for JSON."""
        return dataclasses.asdict(self)


def share_interval(flags: ArrayLike, *, confidence: float = 0.95) -> Share:
    """Clopper–Pearson interval of a share, one boolean per cluster (`scipy.stats.binomtest`).

    Pass one flag per independent unit (e.g. "the continuation changed in this expression's
    prompts"), not per prompt: prompts of one expression are not independent trials. 12 of 12
    gives [0.735, 1], never a zero-width [1, 1].
    """
    f = np.asarray(flags)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"flags must be a non-empty 1-D array, got shape {f.shape}")
    if f.dtype != bool and not np.all((f == 0) | (f == 1)):
        raise ValueError("flags must be booleans or 0/1")
    k, n = int(np.count_nonzero(f)), int(f.size)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=1.0 - _alpha(confidence), method="exact")
    return Share(k=k, n=n, share=k / n, ci_low=float(ci.low), ci_high=float(ci.high))


def noise_floor(control: ArrayLike, *, atol: float) -> float:
    """The noise floor from an identity/self-patch control's per-prompt effects.

    In exact arithmetic the control is 0; what it shows is float noise (batching, kernels), so the
    floor is max |control| plus `atol`, the float tolerance the caller allows on top.
    """
    c = _as_1d_finite(control, "control")
    if not (math.isfinite(atol) and atol >= 0.0):
        raise InputError(f"noise floor tolerance atol must be a finite number >= 0, got {atol}")
    return float(np.max(np.abs(c))) + atol


def no_effect(effect: Effect, floor: float) -> bool:
    """True when |effect.mean| <= floor: "no effect", never starred, never an argmax."""
    if not (math.isfinite(floor) and floor >= 0.0):
        raise InputError(f"noise floor must be a finite number >= 0, got {floor}")
    return abs(effect.mean) <= floor


def benjamini_hochberg(p_values: Sequence[float | None] | ArrayLike) -> np.ndarray:
    """BH q-values of one family; NaN/None entries stay NaN and do not count toward the family.

    Missing p-values (an effect that could not be computed) must not inflate the family size m.
    """
    p = np.array([np.nan if v is None else v for v in np.ravel(np.asarray(p_values, dtype=object))],
                 dtype=float)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q


def holm(p_values: Sequence[float | None] | ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family (Holm 1979, "A simple sequentially rejective
    multiple test procedure", Scand. J. Statist. 6:65): the i-th smallest of m p-values times
    (m − i + 1), made non-decreasing in that order and capped at 1. Rejecting where the adjusted
    p < α controls the family-wise error at α under any dependence. NaN/None stay NaN and do not
    count toward m (as in `benjamini_hochberg`)."""
    p = np.array([np.nan if v is None else v for v in np.ravel(np.asarray(p_values, dtype=object))], dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        m = order.size
        adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
        out[order] = np.minimum(adjusted, 1.0)
    return out


def _drop_nan_pairs(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Equal-length 1-D float arrays with every pair holding a NaN removed."""
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"inputs differ in length: {a.size} vs {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def spearman(x: ArrayLike, y: ArrayLike) -> float | None:
    """Spearman rank correlation (agreement of two head rankings), NaN pairs dropped.

    Returns None (JSON null) when undefined: fewer than 3 complete pairs or a constant input.
    Ranks, not values, because screening scores (attention, attribution, exact) live on
    different scales and only their ordering is comparable.
    """
    a, b = _drop_nan_pairs(x, y)
    if a.size < 3 or np.ptp(a) == 0.0 or np.ptp(b) == 0.0:
        return None
    rho = float(stats.spearmanr(a, b).statistic)
    return rho if math.isfinite(rho) else None


def auroc(scores: ArrayLike, labels: ArrayLike) -> float | None:
    """Area under the ROC curve of `scores` ranking positives (planted heads) above the rest.

    Equals P(score_pos > score_neg) + ½ P(tie), i.e. Mann–Whitney U / (n_pos · n_neg).
    Pairs with a NaN score or label are dropped; None (JSON null) if a class is empty.
    """
    s, lab = _drop_nan_pairs(scores, labels)
    if not np.all((lab == 0) | (lab == 1)):
        raise ValueError("labels must be 0/1 or boolean")
    pos, neg = s[lab == 1], s[lab == 0]
    if pos.size == 0 or neg.size == 0:
        return None
    # U of the first sample counts pairs with pos > neg, ties 1/2; the method only affects p.
    u = stats.mannwhitneyu(pos, neg, alternative="two-sided", method="asymptotic").statistic
    return float(u) / (pos.size * neg.size)
