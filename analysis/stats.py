"""The statistics every headline effect carries (DESIGN.md section 6).

Every effect is a set of paired per-prompt differences d = intervened − baseline, reported as
n, mean, a 95 % confidence interval and a two-sided p-value; p-values of one family (all heads ×
emotions of one model and metric) are then corrected with Benjamini–Hochberg.

Choices, and why:

* **BCa bootstrap CI** (`scipy.stats.bootstrap(method="BCa")`, fixed seed). Per-prompt
  differences of sentiment or logit scores are often skewed and bounded; the bias-corrected and
  accelerated interval corrects for skew and median bias of the bootstrap distribution without
  assuming normality, and is second-order accurate where the plain percentile interval is not.
  When BCa is undefined (a degenerate jackknife makes scipy return NaN) we fall back to the
  percentile interval from the same resamples rather than report NaN.
* **Sign-flip permutation p** (`scipy.stats.permutation_test(permutation_type="samples")` on one
  sample, which scipy implements by flipping the sign of each observation — see
  `scipy.stats._resampling._calculate_null_samples`). Under H0 "the intervention does nothing"
  each paired difference is symmetric about 0, so its sign is exchangeable; the test needs no
  normality and is exact: scipy enumerates all 2**n sign patterns whenever
  2**n ≤ n_resamples (n ≤ 10 for the default 2000) and otherwise uses random flips with the
  +1 correction, so p is never 0.
* **Benjamini–Hochberg q** (`scipy.stats.false_discovery_control(method="bh")`). Screening tests
  hundreds of heads; controlling the false discovery rate rather than the family-wise error keeps
  power while bounding the share of false "emotion heads" among those reported.

* **Clusters** (`clusters=`): prompts that share an emotion expression (the same span phrase in
  different templates) are not independent replications of "this emotion"; the unit that
  generalizes is the expression. With cluster labels, the bootstrap resamples whole clusters
  (statistic: total of differences / number of prompts, so `mean` stays the prompt mean) and the
  sign-flip flips each cluster's sum as one. Treating clustered prompts as independent made a
  random-weight model's tiny, phrase-specific effects "significant" for most heads.

Degenerate inputs give honest numbers, never NaN: identical differences have CI [mean, mean];
their p is 1.0 when the mean is 0, else the sign-flip p (which is exact for small n).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

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


def _mean_stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vectorised mean, the statistic of the permutation test (on cluster sums)."""
    return np.mean(x, axis=axis)


def _ratio_stat(sums: np.ndarray, sizes: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean per prompt from per-cluster sums and sizes (the plain mean when sizes are all 1)."""
    return np.sum(sums, axis=axis) / np.sum(sizes, axis=axis)


def _bootstrap_ci(
    sums: np.ndarray, sizes: np.ndarray, *, n_resamples: int, seed: int, confidence: float
) -> tuple[float, float]:
    """BCa interval of the per-prompt mean, resampling clusters; percentile if BCa is undefined."""

    def interval(method: str) -> tuple[float, float]:
        with warnings.catch_warnings():
            # scipy warns (DegenerateDataWarning / RuntimeWarning) and returns NaN when the
            # jackknife acceleration or the bias correction is undefined; handled below.
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                (sums, sizes),
                _ratio_stat,
                paired=True,
                method=method,
                confidence_level=confidence,
                n_resamples=n_resamples,
                rng=np.random.default_rng(seed),
            )
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    low, high = interval("BCa")
    if not (math.isfinite(low) and math.isfinite(high)):
        # Fallback: BCa failed on a degenerate jackknife/bootstrap distribution. The percentile
        # interval of the same seeded resamples is well defined whenever d is not constant
        # (constant d never gets here), so report it instead of NaN.
        low, high = interval("percentile")
    return low, high


def _sign_flip_p(d: np.ndarray, *, n_resamples: int, seed: int) -> float:
    """Two-sided sign-flip permutation p of the mean (exact when 2**n <= n_resamples)."""
    res = stats.permutation_test(
        (d,),
        _mean_stat,
        permutation_type="samples",  # one sample: scipy flips signs
        vectorized=True,
        alternative="two-sided",
        n_resamples=n_resamples,
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def one_sample_effect(
    d: ArrayLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
) -> Effect:
    """Effect of already-differenced data d: mean, BCa CI and two-sided sign-flip p against 0.

    With `clusters` (one label per value), inference is over clusters (see module docstring).
    Degenerate d: one unit gives CI [mean, mean] and p 1.0 (one sign flip cannot reject
    anything); identical unit means give CI [mean, mean] and p 1.0 if the mean is 0, else the
    sign-flip p.
    """
    d = _as_1d_finite(d, "differences")
    if clusters is None:
        sums, sizes, n_clusters = d, np.ones_like(d), None
    else:
        labels = np.asarray(clusters)
        if labels.shape != d.shape:
            raise ValueError(f"clusters must label every difference: {labels.shape} vs {d.shape}")
        _, inverse = np.unique(labels, return_inverse=True)
        sums = np.bincount(inverse, weights=d)
        sizes = np.bincount(inverse).astype(float)
        n_clusters = int(sums.size)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = int(d.size)
    mean = float(np.mean(d))
    if sums.size == 1:
        return Effect(n=n, mean=mean, ci_low=mean, ci_high=mean, p=1.0, n_clusters=n_clusters)
    if np.ptp(sums / sizes) == 0.0:
        # Every resample has the same mean: the bootstrap interval is the point itself.
        p = 1.0 if mean == 0.0 else _sign_flip_p(sums, n_resamples=n_resamples, seed=seed)
        return Effect(n=n, mean=mean, ci_low=mean, ci_high=mean, p=p, n_clusters=n_clusters)
    low, high = _bootstrap_ci(sums, sizes, n_resamples=n_resamples, seed=seed, confidence=confidence)
    p = _sign_flip_p(sums, n_resamples=n_resamples, seed=seed)
    return Effect(n=n, mean=mean, ci_low=low, ci_high=high, p=p, n_clusters=n_clusters)


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
