"""The statistics every headline effect carries (docs/DESIGN.md §6).

Every effect is a set of paired per-prompt differences d = intervened − baseline, clustered by
emotion expression (and template ending), reported as n, mean, a 95 % confidence interval and a two-sided p-value;
p-values of one family (all heads × emotions of one model and metric) are then corrected with
Benjamini–Hochberg.

One procedure for the interval and the p-value: the wild cluster bootstrap-t and the sign-flip test, inverted together
--------------------------------------------------------------------------------------------------------------------
H0(μ0): "the mean per-prompt effect is μ0". The statistic is Hall's skewness-corrected t
(Hall 1992, "On the removal of skewness by transformation", JRSS B 54:221):

    T(μ0) = √G·(θ + γθ²/3 + γ²θ³/27 + γ/(6G)),   θ = (mean − μ0) / (se·√G),

with se the cluster-robust standard error of the mean over the G clusters (CR1: G/(G−1)·Σ U_g²/N²,
U_g the cluster's residual sum) or, when the prompts' templates are given, the two-way one over
clusters and templates (V_E + V_T − V_prompt, never below V_E; Cameron, Gelbach & Miller 2011,
"Robust inference with multiway clustering", JBES 29:238), and γ the skewness of the U_g. T is
increasing in θ (its derivative is (1 + γθ/3)²), and it removes the O(G^-1/2) skewness term of
the t statistic's distribution. Its reference distribution is the wild cluster bootstrap-t
(Cameron, Gelbach & Miller 2008, "Bootstrap-based improvements for inference with clustered
errors", REStat 90:414): draws x* = mean + v_g·(x − mean) with one Mammen weight v_g per cluster
(Mammen 1993; mean 0, variance 1, third moment 1, so the draws keep the clusters' skewness, which
Rademacher signs cannot), each tested against the mean, n_resamples seeded draws. The
bootstrap's p(μ0) = (1 + #{|T*| >= |T(μ0)|}) / (B + 1) (Phipson & Smyth 2010: valid, never 0),
and its accepted set {μ0 : p(μ0) > α} is |T(μ0)| <= c, c the ⌊α(B + 1)⌋-th largest |T*|, which
Hall's closed-form inverse turns into [mean − s·h⁻¹(c), mean − s·h⁻¹(−c)]: asymmetric where the
clusters are skewed, at the cost of a few matrix–vector products with the cached (B × G) weights.

Beside it, the cluster sign-flip test of H0(μ0) with the same statistic: x* = s_g·(x − μ0) with
one random sign per cluster (B seeded draws of a stream of their own), each T* of x* against 0,
p_flip(μ0) = (1 + #{|T*| >= |T(μ0)|}) / (B + 1). Under H0 with clusters symmetric about μ0 every
sign pattern is equally likely, so this test is exact in finite samples whatever the clusters'
magnitudes (Fisher's randomization argument; Canay, Romano & Shaikh 2017, "Randomization tests
under an approximate symmetry assumption", Econometrica 85:1013). **A μ0 is rejected only when
both tests reject it**: the reported p is max(p_boot(0), p_flip(0)) and the interval is the hull of
the union of their accepted sets, found from the bootstrap's closed-form ends by following the
flip's accepted run outward (doubling steps, then bisection to 2**-20 of the bracket; never across
0 where the flip rejects 0). The union holds its level under either test's conditions: where
clusters are symmetric (the flip is exact) and where they are skewed or share template effects (the
bootstrap-t is calibrated, below). p ≤ α ⇔ 0 ∉ CI holds exactly.

Why this one (issue 23): the former cluster sign-flip test alone assumes each cluster's effect is
symmetric about the mean; on the lognormal (σ = 1) data of tests/test_stats_simulation.py its type
I error was 0.10 at 17 and 35 clusters (0.14 in the issue's harsher version), and with a template
effect shared by the clusters (each expression in 2–3 of 13–24 template endings) 0.16 (0.215 in
the issue's), since one-way clustering by expression ignores that correlation. Of the procedures
measured (sign flips with the t or Hall's statistic, the CR t-test one- and two-way, restricted
and unrestricted wild bootstraps with Rademacher, Webb or Mammen weights, the pairs cluster
bootstrap-t, Hall's statistic against the normal, t and pairs-bootstrap references) only the
skew-corrected statistic with unrestricted Mammen draws brought the lognormal case under 0.07 at
17 clusters, and only the two-way standard error the template case. But the bootstrap-t alone
over-rejects in the far tail on symmetric clusters of similar magnitudes (the random-weight null
models of tests/test_screening_null.py: p ≤ 0.001 in 0.25 % of null tests, 22 of 200 null
screenings with a BH discovery where 18 is the most a calibrated test allows): with sign-symmetric
data of near-equal sizes the t statistic's tail is the binomial one (15 of 17 positive gives
t ≈ 4.7 with probability 0.002, Student's t16 says 0.0002), which residual draws do not see. The
union with the exact flip test fixes that (11 of 200) and keeps the simulations within [0.03,
0.07] (tests/stats_simulation.csv). The price: the interval can be a little wider than either
alone, and with very few clusters the flip's own resolution shows (6 clusters: the interval of
1..6 reaches 6, where all signs but one agree).

Resolution limits (checked before any work, InputError): a two-point draw (wild weights or
signs) over G clusters has only 2**G distinct patterns, so a (1 − α) interval needs G ≥ 1 + log2(1/α) clusters
(6 at 95 %); a Monte-Carlo p cannot be below 1/(B + 1), so it needs n_resamples ≥ ⌈1/α⌉ − 1 (19
at 95 %). The same floor limits BH: among m tests one true effect can only reach q < 0.05 when
p ≈ 1/(B + 1) < 0.05/m, e.g. n_resamples ≥ 8640 for GPT-2-small's 432 heads × 1 emotion.

Non-negative metrics (KL, "changed") are never tested against 0 (any positive value in every
cluster would reach the floor): `share_interval` gives a Clopper–Pearson interval for a share
over clusters and `baseline_excess` compares a metric with a random-head baseline by the
procedure above. `noise_floor` / `no_effect` turn an identity/self-patch control into the
"no effect" rule. `ratio_effect` gives a ratio of means (the fraction of the emotion–neutral gap)
the interval of the same union of tests, inverted for the ratio (Fieller type).

**Benjamini–Hochberg q** (`scipy.stats.false_discovery_control(method="bh")`): screening tests
hundreds of heads; controlling the false discovery rate rather than the family-wise error keeps
power while bounding the share of false "emotion heads" among those reported.

Degenerate inputs give honest numbers, never NaN: identical cluster means (no variation for the
bootstrap to draw) give the interval [mean, mean] and the sign flips' p ≈ 2/2**G (only the
patterns of one sign reach |t| = ∞), or p = 1 when the mean is 0.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from analysis.base.errors import InputError

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
    """Fewest clusters whose 2**G two-point wild draws can reject at 1 − confidence (6 at 95 %)."""
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
            f"a two-point wild bootstrap over {n_clusters} has only {2**n_clusters} distinct draws"
        )
    need_b = min_resamples(confidence)
    if n_resamples < need_b:
        raise InputError(
            f"n_resamples must be at least {need_b} for a {level} over {n_clusters} clusters (got {n_resamples})"
        )


# Mammen's (1993) two-point weights: mean 0, variance 1, third moment 1, so the wild bootstrap
# reproduces the clusters' skewness (Rademacher weights, third moment 0, cannot; Liu 1988).
_MAMMEN_LOW, _MAMMEN_HIGH = (1.0 - math.sqrt(5.0)) / 2.0, (1.0 + math.sqrt(5.0)) / 2.0
_MAMMEN_P_LOW = (math.sqrt(5.0) + 1.0) / (2.0 * math.sqrt(5.0))


@functools.lru_cache(maxsize=16)
def _wild_weights(n_clusters: int, n_resamples: int, seed: int) -> np.ndarray:
    """The (B, G) seeded Mammen weights, one row per bootstrap draw, one column per cluster.

    Cached read-only: a screening computes thousands of effects with the same G, B and seed, and
    the same draws for every effect are what keeps the effects reproducible one by one.
    """
    u = np.random.default_rng(seed).random((n_resamples, n_clusters))
    w = np.where(u < _MAMMEN_P_LOW, _MAMMEN_LOW, _MAMMEN_HIGH)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=16)
def _sign_weights(n_clusters: int, n_resamples: int, seed: int) -> np.ndarray:
    """The (B, G) seeded random signs of the sign-flip test, from a stream of their own
    (`default_rng([seed, 1])`), so that they are not the Mammen draws in disguise."""
    w = np.random.default_rng([seed, 1]).choice(np.array([-1.0, 1.0]), (n_resamples, n_clusters))
    w.setflags(write=False)
    return w


_WEIGHTS = {"mammen": _wild_weights, "sign": _sign_weights}


@functools.lru_cache(maxsize=16)
def _one_sign_draws(n_clusters: int, n_resamples: int, seed: int) -> int:
    """How many of the sign draws give every cluster the same sign (the draws whose |t*| is ∞ for
    a constant)."""
    w = _sign_weights(n_clusters, n_resamples, seed)
    return int(np.count_nonzero(np.all(w == w[:, :1], axis=1)))


# A spread between clusters below this share of |mean| is float noise (doubles carry ~16 digits).
_FLOAT_SPREAD = 1e-12


@functools.lru_cache(maxsize=16)
def _weight_powers(kind: str, n_clusters: int, n_resamples: int, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, W², W³) of the `kind` weights ("mammen" or "sign"), cached: the bootstrap's sums of
    squares and cubes expand into matrix products with them, so no (B, G, n) array is built."""
    w = _WEIGHTS[kind](n_clusters, n_resamples, seed)
    w2 = w * w
    w3 = w2 * w
    w2.setflags(write=False)
    w3.setflags(write=False)
    return w, w2, w3


@dataclass(frozen=True)
class _Design:
    """Where each value sits: its cluster (0..G−1) and, for two-way clustering, its template."""

    cluster: np.ndarray  # (n,) int
    n_clusters: int
    template: np.ndarray | None  # (n,) int, or None (one-way)
    n_templates: int
    labelled: bool  # clusters were given (Effect.n_clusters is then G, else None)

    def cluster_sums(self, x: np.ndarray) -> np.ndarray:
        return np.bincount(self.cluster, weights=x, minlength=self.n_clusters)

    @functools.cached_property
    def members(self) -> np.ndarray:
        """(n, G) one-hot: rows of values (K, n) @ members are their cluster sums (K, G)."""
        return np.eye(self.n_clusters)[self.cluster]

    @functools.cached_property
    def template_members(self) -> np.ndarray:
        """(n, H) one-hot of the templates (two-way designs only)."""
        assert self.template is not None
        return np.eye(self.n_templates)[self.template]

    @functools.cached_property
    def cell_members(self) -> np.ndarray:
        """(n, G·H) one-hot of the cluster × template cells: rows (K, n) @ it are their cells' sums."""
        assert self.template is not None
        return np.eye(self.n_clusters * self.n_templates)[self.cluster * self.n_templates + self.template]

    def cells(self, x: np.ndarray) -> np.ndarray | None:
        """(G, H) sums of x per cluster × template (None when one-way)."""
        if self.template is None:
            return None
        flat = self.cluster * self.n_templates + self.template
        return np.bincount(flat, weights=x, minlength=self.n_clusters * self.n_templates).reshape(
            self.n_clusters, self.n_templates)


def _design(n: int, clusters: ArrayLike | None, templates: ArrayLike | None) -> _Design:
    def codes(labels: ArrayLike, name: str) -> tuple[np.ndarray, int]:
        lab = np.asarray(labels)
        if lab.shape != (n,):
            raise ValueError(f"{name} must label every difference: {lab.shape} vs ({n},)")
        _, inverse = np.unique(lab, return_inverse=True)
        return inverse.ravel(), int(inverse.max()) + 1

    cluster, g = codes(clusters, "clusters") if clusters is not None else (np.arange(n), n)
    template, h = codes(templates, "templates") if templates is not None else (None, 0)
    return _Design(cluster, g, template, h, clusters is not None)


def _hall(theta: np.ndarray, gamma: np.ndarray, g: int) -> np.ndarray:
    """Hall's (1992) skewness-corrected statistic √G·(θ + γθ²/3 + γ²θ³/27 + γ/(6G)), increasing in θ."""
    gt = gamma * theta  # products, not float powers: this runs on every bootstrap draw
    return math.sqrt(g) * (theta * (1.0 + gt / 3.0 + gt * gt / 27.0) + gamma / (6.0 * g))


def _hall_inverse(t: float, gamma: float, g: int) -> float:
    """θ with _hall(θ, γ, G) = t: θ + γθ²/3 + γ²θ³/27 = ((1 + γθ/3)³ − 1)/γ, so a real cube root."""
    y = t / math.sqrt(g) - gamma / (6.0 * g)
    if abs(gamma) < 1e-9:  # the closed form cancels; θ = y up to O(γy²)
        return y
    return float(3.0 / gamma * (np.cbrt(1.0 + gamma * y) - 1.0))


def _scale_from_sums(ss: np.ndarray, s3: np.ndarray, wss: np.ndarray | None, p: np.ndarray, n: int, g: int, h: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(s, γ) from Σ U_g², Σ U_g³ over the clusters' residual sums, Σ W_t² over the templates'
    (None: one-way) and Σ e_i² over the prompts: s is the standard error of the mean times √G,
    from V_E = G/(G−1)·Σ U_g² or the two-way V_E + V_T − V_prompt (Cameron, Gelbach & Miller 2011),
    never below V_E; γ the skewness of the U_g (0 when they are all 0)."""
    ss = np.maximum(ss, 0.0)  # the expanded bootstrap sums can round a little below 0
    v = ss * (g / (g - 1.0))
    if wss is not None:
        v = np.maximum(v, v + wss * (h / max(h - 1.0, 1.0)) - p * (n / (n - 1.0)))
    s = np.sqrt(v) * (math.sqrt(g) / n)
    safe = np.where(ss > 0.0, ss, 1.0)
    gamma = np.where(ss > 0.0, math.sqrt(g) * s3 / (safe * np.sqrt(safe)), 0.0)
    return s, gamma


def _scale_and_skew(u: np.ndarray, w: np.ndarray | None, p: np.ndarray, n: int, g: int, h: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(s, γ) along the last axes from the clusters' residual sums u (..., G), the templates' w
    (..., H; None: one-way) and the prompts' squared residuals p (...) (see `_scale_from_sums`)."""
    u2 = u * u
    return _scale_from_sums(u2.sum(axis=-1), (u2 * u).sum(axis=-1), None if w is None else (w * w).sum(axis=-1),
                            p, n, g, h)


@dataclass(frozen=True)
class _Fit:
    """The observed pieces of the test for mean residuals e = x − x̄ (one row of values)."""

    mean: float
    s: float
    gamma: float
    critical: float  # c: H0 is accepted iff |T| <= c
    abs_t_star: np.ndarray  # (B,) |T*|


def _abs_t_star(e: np.ndarray, design: _Design, weights: tuple[np.ndarray, np.ndarray, np.ndarray], *,
                skew: bool = True) -> np.ndarray:
    """(B, K) |T*|: for each row e_k of e (K, n) and each draw v_b of `weights`' W (B, G), Hall's
    statistic of x* = v_b·e_k (one weight per cluster) against 0, with x*'s own scale and skewness
    (`skew` False: the t statistic, γ = 0; a draw with no spread and a non-zero mean is then ∞).

    With e the residuals x − x̄ this is the wild bootstrap-t of the mean (x* − x̄ tested against
    0); with e = x − μ0 and random signs, the sign-flip test of H0(μ0). The mean of x* is
    δ_bk = Σ_g v_bg U_kg / n and its cluster sums are U*_bg = v_bg U_kg − δ_bk N_g, so the sums of
    their squares and cubes expand into products of the cached W, W², W³ with per-cluster rows
    (the same numbers as `_scale_and_skew` on the (B, K, G) array, which is never built)."""
    g, h, n = design.n_clusters, design.n_templates, e.shape[1]
    w1, w2, w3 = weights
    u = e @ design.members  # (K, G) cluster sums
    sizes = design.members.sum(axis=0)  # (G,) N_g
    u2 = u * u
    delta = w1 @ u.T / n  # (B, K)
    d2 = delta * delta
    ss = w2 @ u2.T - 2.0 * delta * (w1 @ (u * sizes).T) + d2 * float(sizes @ sizes)
    s3 = (w3 @ (u2 * u).T - 3.0 * delta * (w2 @ (u2 * sizes).T) + 3.0 * d2 * (w1 @ (u * sizes * sizes).T)
          - d2 * delta * float(np.sum(sizes**3)))
    wss = p_star = None
    if design.template is not None:
        k = e.shape[0]
        cells = (e @ design.cell_members).reshape(k, g, h)  # (K, G, H)
        t_sizes = design.template_members.sum(axis=0)
        wc = (w1 @ cells.transpose(1, 0, 2).reshape(g, k * h)).reshape(-1, k, h)  # (B, K, H): the templates' sums of v_g·e
        wss = (wc * wc).sum(axis=2) - 2.0 * delta * (wc @ t_sizes) + d2 * float(t_sizes @ t_sizes)
        p_star = w2 @ ((e * e) @ design.members).T - n * d2  # Σ (v_g e_i − δ)², as Σ v_g e_i = nδ
    s_star, gamma_star = _scale_from_sums(ss, s3, wss, p_star, n, g, h)
    with np.errstate(divide="ignore", invalid="ignore"):
        if not skew:
            return math.sqrt(g) * np.where(s_star > 0.0, np.abs(delta) / s_star, np.where(delta == 0.0, 0.0, np.inf))
        return np.abs(_hall(np.where(s_star > 0.0, delta / s_star, 0.0), gamma_star, g))


def _bootstrap(e: np.ndarray, design: _Design, *, n_resamples: int, seed: int, alpha: float) -> tuple[np.ndarray, float]:
    """(|T*|, c): the wild cluster bootstrap-t (Mammen draws) of the residuals e (mean 0), and the
    critical value c, the r-th largest |T*| with r = ⌊α(B + 1)⌋, so that
    p = (1 + #{|T*| >= |T|})/(B + 1) > α exactly when |T| <= c."""
    t_star = _abs_t_star(e[None, :], design, _weight_powers("mammen", design.n_clusters, n_resamples, seed))[:, 0]
    r = math.floor(round(alpha * (n_resamples + 1), 9))  # >= 1 after check_resolution
    return t_star, float(np.partition(t_star, n_resamples - r)[n_resamples - r])


def _sign_flip_p(values: np.ndarray, abs_t: np.ndarray, design: _Design, *, n_resamples: int, seed: int) -> np.ndarray:
    """(K,) p-values of the cluster sign-flip test of "mean of values_k = 0", for rows values (K, n)
    whose observed |t| (the t statistic, no skew term) are abs_t (K,): (1 + #{|t*| >= |t|}) / (B + 1)
    over random sign draws. The t statistic, not Hall's: under sign symmetry there is no skewness
    to remove, and Hall's term would rank a pattern with every sign alike below milder ones.

    Exact in finite samples whenever the clusters' effects are symmetric about 0 (Fisher's
    randomization argument: every sign pattern is equally likely under H0), whatever their
    magnitudes: the case where the bootstrap-t's reference misses the t statistic's tail."""
    t_star = _abs_t_star(values, design, _weight_powers("sign", design.n_clusters, n_resamples, seed), skew=False)
    return (1 + np.count_nonzero(t_star >= abs_t * (1.0 - 1e-12), axis=0)) / (n_resamples + 1)


def _extend(inside: float, direction: float, accepts: Callable[[np.ndarray], np.ndarray], scale: float,
            stop: float | None = None) -> float | None:
    """The far end of the run of points accepted by `accepts` that starts at the accepted point
    `inside` and goes `direction`-ward (±1); None where no rejected point is found within 2**60
    scales (the run is unbounded). `stop` is a rejected point the run must not cross. The far end
    is bracketed by doubling steps from `scale`, then bisected to 2**-_BISECTIONS of its bracket;
    the accepted side of the last bracket is returned."""
    outside, step = None, scale
    for _ in range(60):
        point = inside + direction * step
        if stop is not None and (point - stop) * direction >= 0.0:
            outside = stop
            break
        if not accepts(np.array([point]))[0]:
            outside = point
            break
        inside, step = point, 2.0 * step
    if outside is None:
        return None
    for _ in range(_BISECTIONS):
        mid = 0.5 * (inside + outside)
        if accepts(np.array([mid]))[0]:
            inside = mid
        else:
            outside = mid
    return inside


# Bisections of an interval end's bracket (one standard error wide or a few): 2**-20 of it (1e-6),
# below the 6 significant digits the results are stored with.
_BISECTIONS = 20


def _fit(x: np.ndarray, design: _Design, *, n_resamples: int, seed: int, alpha: float) -> _Fit:
    mean = float(np.mean(x))
    e = x - mean
    s, gamma = _observed_scale(e, design)
    t_star, c = _bootstrap(e, design, n_resamples=n_resamples, seed=seed, alpha=alpha)
    return _Fit(mean, s, gamma, c, t_star)


def _observed_scale(e: np.ndarray, design: _Design) -> tuple[float, float]:
    u = design.cluster_sums(e)
    cells = design.cells(e)
    w = None if cells is None else cells.sum(axis=0)
    s, gamma = _scale_and_skew(u, w, np.sum(e**2), e.size, design.n_clusters, design.n_templates)
    return float(s), float(gamma)


def _p_value(t: float, t_star: np.ndarray) -> float:
    """(1 + #{|T*| >= |T|}) / (B + 1), ties within a float tolerance counting as exceeding."""
    return (1 + int(np.count_nonzero(t_star >= abs(t) * (1.0 - 1e-12)))) / (t_star.size + 1)


def one_sample_effect(
    d: ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
    templates: ArrayLike | None = None,
) -> Effect:
    """Effect of already-differenced data d: mean, and the CI and two-sided p of the inverted
    wild cluster bootstrap-t of Hall's skewness-corrected statistic (see module docstring).

    With `clusters` (one label per value), inference is over clusters; without, every value is
    its own cluster. With `templates` as well (one label per value), the standard error is the
    two-way (cluster × template) one. InputError when the cluster count or n_resamples cannot give
    the interval, or the seed is negative (`check_resolution`).
    """
    d = _as_1d_finite(d, "differences")
    design = _design(d.size, clusters, templates)
    alpha = _alpha(confidence)
    check_resolution(design.n_clusters, n_resamples=n_resamples, seed=seed, confidence=confidence)
    fit = _fit(d, design, n_resamples=n_resamples, seed=seed, alpha=alpha)
    mean, g = float(np.mean(d)), design.n_clusters
    n_clusters = g if design.labelled else None
    if fit.s <= _FLOAT_SPREAD * abs(mean):
        # No variation between clusters (none, or float noise around the mean, which no statistic
        # can read): every bootstrap draw is the mean itself, so the bootstrap accepts the mean only
        # (p 1 for a mean of 0, else the floor 1/(B + 1)). The sign flips of x − μ0, a constant
        # c ≠ 0 in every cluster, reach the observed |t| = ∞ only with one sign for all (2 of 2**G
        # patterns): p_flip = (1 + those draws)/(B + 1) ≈ 2/2**G for every μ0 ≠ mean, counted, not
        # computed (the expanded sums cannot resolve a zero spread). Without this, one thread
        # count's exact ties and the other's 1e-15 spread gave a planted head p 1e-4 and 0.034.
        # At the minimum G, 2/2**G <= α: the interval stays the mean.
        if mean == 0.0:
            return Effect(n=int(d.size), mean=mean, ci_low=mean, ci_high=mean, p=1.0, n_clusters=n_clusters)
        p_zero = (1 + _one_sign_draws(g, n_resamples, seed)) / (n_resamples + 1)
        low, high = (min(mean, 0.0), max(mean, 0.0)) if p_zero > alpha else (mean, mean)
        return Effect(n=int(d.size), mean=mean, ci_low=low, ci_high=high, p=max(1.0 / (n_resamples + 1), p_zero),
                      n_clusters=n_clusters)
    # The bootstrap-t: |T(μ0)| <= c ⇔ θ(μ0) = (mean − μ0)/s lies in [h⁻¹(−c), h⁻¹(c)] (T increases with θ).
    low = mean - fit.s * _hall_inverse(fit.critical, fit.gamma, g)
    high = mean - fit.s * _hall_inverse(-fit.critical, fit.gamma, g)
    p_boot = _p_value(float(_hall(np.array(mean / fit.s), np.array(fit.gamma), g)), fit.abs_t_star)

    # The sign-flip test of H0(μ0) on x − μ0, with the t statistic √G·(mean − μ0)/s.
    def flip_p(mu0: np.ndarray) -> np.ndarray:
        abs_t = math.sqrt(g) * np.abs(mean - mu0) / fit.s
        return _sign_flip_p(d[None, :] - mu0[:, None], abs_t, design, n_resamples=n_resamples, seed=seed)

    def flip_accepts(mu0: np.ndarray) -> np.ndarray:
        return flip_p(mu0) > alpha

    low, high = min(low, mean), max(high, mean)
    p_zero, p_low, p_high = flip_p(np.array([0.0, low, high]))
    # A μ0 is rejected only when both tests reject it: the accepted set is the union of the two,
    # whose hull is the bootstrap's interval widened by the flip's accepted runs from its ends
    # (never across 0 where the flip rejects 0, so that p <= α ⇔ 0 ∉ interval holds exactly).
    se = fit.s / math.sqrt(g)
    if p_low > alpha:
        low = _extend(low, -1.0, flip_accepts, se, stop=0.0 if p_zero <= alpha and 0.0 < low else None)
    if p_high > alpha:
        high = _extend(high, 1.0, flip_accepts, se, stop=0.0 if p_zero <= alpha and 0.0 > high else None)
    assert low is not None and high is not None  # |T(μ0)| grows without bound, the flips' |T*| do not
    if p_zero > alpha:  # 0 is accepted, whether or not a run from the ends reaches it
        low, high = min(low, 0.0), max(high, 0.0)
    return Effect(n=int(d.size), mean=mean, ci_low=low, ci_high=high, p=max(p_boot, float(p_zero)), n_clusters=n_clusters)


def paired_effect(
    intervened: ArrayLike,
    baseline: ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
    templates: ArrayLike | None = None,
) -> Effect:
    """Effect of an intervention on paired per-prompt scores: one_sample_effect(intervened − baseline).

    Pairing removes the between-prompt variance, which dwarfs the intervention effect.
    """
    a = _as_1d_finite(intervened, "intervened")
    b = _as_1d_finite(baseline, "baseline")
    if a.shape != b.shape:
        raise ValueError(f"intervened and baseline differ in length: {a.size} vs {b.size}")
    return one_sample_effect(a - b, n_resamples=n_resamples, seed=seed, confidence=confidence, clusters=clusters,
                             templates=templates)


def baseline_excess(
    values: ArrayLike,
    baseline_draws: ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
    templates: ArrayLike | None = None,
) -> Effect:
    """How much a non-negative metric (KL, changed) exceeds a random-head baseline, per prompt.

    values: shape (n,), the metric of the intervention under test; baseline_draws: shape (n,) or
    (draws, n), the same metric for the same intervention on random heads, one row per draw. The
    draws are averaged per prompt (the baseline's expected value), and the paired differences
    values − baseline get the test of `one_sample_effect`: unlike the metric itself, the difference
    can take either sign, so the test is meaningful.
    """
    v = _as_1d_finite(values, "values")
    base = np.asarray(baseline_draws, dtype=float)
    if base.ndim == 1:
        base = base[None, :]
    if base.ndim != 2 or base.shape[1] != v.size or base.shape[0] == 0:
        raise ValueError(f"baseline_draws must have shape (n,) or (draws, n) with n = {v.size}, got {base.shape}")
    return paired_effect(v, base.mean(axis=0), n_resamples=n_resamples, seed=seed, confidence=confidence,
                         clusters=clusters, templates=templates)


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


# The ratio's accepted set is scanned on θ0 = θ̂ + w·tan(u), u on this many points of (−π/2, π/2),
# then each end is refined by bisection; the outermost points stand for ±∞.
_RATIO_GRID = 4001


def ratio_effect(
    num: ArrayLike,
    den: ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
    templates: ArrayLike | None = None,
) -> Ratio:
    """θ = Σ num / Σ den with the interval of the same test, inverted for the ratio.

    Fieller-type inversion (Fieller 1954, "Some problems in interval estimation", JRSS B 16:175):
    under H0(θ0) the per-prompt residual R(θ0) = num − θ0·den has mean 0, so |T(θ0)|, the
    statistic of `one_sample_effect` for R(θ0) against 0 (its mean, scale and skewness all move
    with θ0), is compared with the critical value c of the wild bootstrap of R(θ̂) (the fitted
    residuals, mean 0), and with the sign-flip test of R(θ0) against 0; the interval is the hull of
    the θ0 either test accepts (the flip's runs followed outward from the bootstrap's finite ends,
    as in `one_sample_effect`). As θ0 → ±∞, T tends to the
    statistic of den itself, so the set reaches ±∞ (an end None) exactly when the denominator is
    not clearly away from 0. With den ≡ c it is one_sample_effect(num) / c.
    """
    a = _as_1d_finite(num, "numerator")
    b = _as_1d_finite(den, "denominator")
    if a.shape != b.shape:
        raise ValueError(f"numerator and denominator differ in length: {a.size} vs {b.size}")
    design = _design(a.size, clusters, templates)
    alpha = _alpha(confidence)
    g, h, n = design.n_clusters, design.n_templates, a.size
    check_resolution(g, n_resamples=n_resamples, seed=seed, confidence=confidence)
    n_clusters = g if design.labelled else None
    s_a, s_b = float(a.sum()), float(b.sum())
    if s_b == 0.0:
        return Ratio(n, None, None, None, n_clusters)
    ratio = s_a / s_b
    ea, eb = a - a.mean(), b - b.mean()
    _, c = _bootstrap(ea - ratio * eb, design, n_resamples=n_resamples, seed=seed, alpha=alpha)
    ua, ub = design.cluster_sums(ea), design.cluster_sums(eb)
    cells_a, cells_b = design.cells(ea), design.cells(eb)
    paa, pab, pbb = float(ea @ ea), float(ea @ eb), float(eb @ eb)
    mean_a, mean_b = float(a.mean()), float(b.mean())

    def abs_t(theta0: np.ndarray, skew: bool = True) -> np.ndarray:
        t0 = theta0[:, None]
        u = ua - t0 * ub
        w = None if cells_a is None else (cells_a.sum(axis=0) - t0 * cells_b.sum(axis=0))
        p = paa - 2.0 * theta0 * pab + theta0**2 * pbb
        s, gamma = _scale_and_skew(u, w, p, n, g, h)
        m = mean_a - theta0 * mean_b
        with np.errstate(divide="ignore", invalid="ignore"):
            theta = np.where(s > 0.0, m / np.where(s > 0.0, s, 1.0), np.where(m == 0.0, 0.0, np.inf * np.sign(m)))
            return np.abs(_hall(theta, gamma, g)) if skew else math.sqrt(g) * np.abs(theta)

    # Scale of the scan: the delta-method standard error of θ̂ (any positive number would do).
    s_hat, _ = _observed_scale(ea - ratio * eb, design)
    width = max(s_hat / math.sqrt(g) / abs(mean_b), 1e-12 * max(1.0, abs(ratio)))
    grid_u = np.linspace(-np.pi / 2, np.pi / 2, _RATIO_GRID + 2)[1:-1]
    points = ratio + width * np.tan(grid_u)
    accepted = abs_t(points) <= c
    accepted[_RATIO_GRID // 2] = True  # the centre is θ̂ itself, where T = √G·γ/(6G) ≈ 0
    idx = np.flatnonzero(accepted)

    def end(inside: int, outside: int) -> float:
        lo_u, hi_u = grid_u[inside], grid_u[outside]
        for _ in range(60):  # bisection on u: the accepted side keeps its end
            mid = 0.5 * (lo_u + hi_u)
            if abs_t(np.array([ratio + width * math.tan(mid)]))[0] <= c:
                lo_u = mid
            else:
                hi_u = mid
        return float(ratio + width * math.tan(lo_u))

    first, last = int(idx[0]), int(idx[-1])
    low = None if first == 0 else end(first, first - 1)
    high = None if last == _RATIO_GRID - 1 else end(last, last + 1)

    # θ0 is rejected only when the sign-flip test of R(θ0) against 0 rejects it too (as in
    # `one_sample_effect`): each finite end is widened by the flip's accepted run from it.
    def flip_accepts(theta0: np.ndarray) -> np.ndarray:
        values = a[None, :] - theta0[:, None] * b[None, :]
        return _sign_flip_p(values, abs_t(theta0, skew=False), design, n_resamples=n_resamples, seed=seed) > alpha

    if low is not None and flip_accepts(np.array([low]))[0]:
        low = _extend(low, -1.0, flip_accepts, width)
    if high is not None and flip_accepts(np.array([high]))[0]:
        high = _extend(high, 1.0, flip_accepts, width)
    return Ratio(n, ratio, low, high, n_clusters)


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
