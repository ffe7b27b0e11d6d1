"""Null models: the head screening's statistics on random-weight models with nothing planted.

The construction, and why its true effect is exactly 0. A random-weight model has small but
real effects of emotion words on M (the tokens differ), so emotion-vs-neutral pairs are not a
null. Here each pair is two NEUTRAL prompts of the same template with different expressions:
the baseline profile's neutral expressions are paired up (x_a, x_b), one cluster per expression
pair, and every template that hosts x_a or x_b gives one pair (the template with x_a, the same
template with x_b). Per cluster, at random: which of the two is the source (orientation) and
the sign of M (which lexicon is counted positive: analysis.screening.null, shared with the
validate stage's null models). M = logsumexp(E) − logsumexp(N) is exactly
antisymmetric in the two lexicons (also in float: a − b = −(b − a)), so a cluster's ΔM under the
swapped M is exactly −ΔM; with a fair, independent sign per cluster every cluster's effect is
symmetric about 0, and the mean effect is exactly 0 whatever the model does. (Orientation alone
would not do: patching A into B is not the negative of B into A in a nonlinear model.) The
test's null is then true for every head × emotion at once, with the dependence a real
screening has (every head sees the same prompts and signs).

Per model the screening runs as the pipeline does: exact patching of every head on the fast path
(analysis.screening.heads.exact_patching), the identity control's noise floor, one inverted
test of analysis.measures.stats per head × emotion (exact_fields, 10000 resamples as params.yaml) and one BH
family of all heads × emotions (correct_and_correlate). Every discovery is false, so a model's
false-discovery proportion is 1 if it has any discovery, else 0; its mean over the models is the
share of models with any discovery (BH controls it at 5 % under this complete null).

Ten tiny GPT-2-family models (seeds 0..9, 2 layers × 4 heads, d_model 64, init_std 0.2 so that
patching moves M well above the noise floor: the floor must not be what keeps them quiet).
Takes ~80 s on one CPU thread (the 30 patching runs ~10 s, 200 null screenings × 24 tests ~60 s).

Measured 2026-12-07 (this 2-core machine): the wild cluster bootstrap-t alone gave 22 of 200 null
screenings with a discovery (bound 18): these clusters' effects are symmetric with similar
magnitudes, where the t statistic's far tail (BH's 0.05/24) is heavier than the bootstrap draws'.
With the sign-flip test beside it (a μ0 is rejected only when both reject), 11 of 200.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from analysis.base.contract import significant
from analysis.core.loading import load_model
from analysis.core.prompts import load_pairs, Prompt, PromptPairs
from analysis.interventions.edits import capture
from analysis.measures.metrics import lexicon_ids
from analysis.modelfacts.random_weights import save_random_model
from analysis.screening.common import control_floor, control_sites, correct_and_correlate, identity_control, pair_batches, ScreeningConfig
from analysis.screening.heads import _z_names, exact_patching
from analysis.screening.null import cluster_signs, signed_rows

pytestmark = pytest.mark.usefixtures("one_thread")
EMOTIONS = ("gratitude", "anger", "apology")
SEEDS = range(10)
N_RESAMPLES = 10000
DRAWS = 20  # null screenings per model: new orientation and sign draws of the same patching runs


def _with_span(template: Prompt, expression: str) -> Prompt:
    start = len(template.before)
    return Prompt(template.before + expression + template.after, (start, start + len(expression)))


def both_orientations(pairs: PromptPairs, rng: random.Random) -> tuple[PromptPairs, list[str], np.ndarray]:
    """Neutral-vs-neutral pairs of one template, in both orientations: the expressions paired up
    at random (x_a, x_b), for every template hosting either one the pair (t with x_a → t with x_b)
    and its reverse; each pair's cluster (the expression pair) and orientation (0 or 1)."""
    neutral = pairs.neutral_prompts
    expressions = sorted({p.span_text for p in neutral})
    rng.shuffle(expressions)
    sources, targets, clusters, orientation = [], [], [], []
    for a, b in zip(expressions[0::2], expressions[1::2]):  # an odd one out is left out
        for t in (p for p in neutral if p.span_text in (a, b)):
            for o, (x, y) in enumerate(((a, b), (b, a))):
                sources.append(_with_span(t, x))
                targets.append(_with_span(t, y))
                clusters.append(f"{a}|{b}")
                orientation.append(o)
    return PromptPairs(pairs.emotion, tuple(sources), tuple(targets)), clusters, np.array(orientation)


def patched(path: Path, seed: int) -> tuple[ScreeningConfig, list[dict]]:
    """Per emotion of one random model: every head's per-pair ΔM in both orientations (the fast
    path), the pairs' clusters and orientations, and the identity control's noise floor."""
    model = load_model(str(path))
    cfg = ScreeningConfig(model=str(path), profile="baseline", emotions=EMOTIONS, positions="last", n_resamples=N_RESAMPLES, seed=seed)
    lex = lexicon_ids(model.tokenizer)
    heads = [(layer, head) for layer in range(model.spec.n_layers) for head in range(model.spec.n_heads)]
    rng = random.Random(f"null:{seed}")
    out = []
    for e in EMOTIONS:
        pp, clusters, orientation = both_orientations(load_pairs(e, "baseline"), rng)
        pb = pair_batches(model, pp, cfg.positions, max_unaligned_share=cfg.max_unaligned_share)
        assert pb.kept == list(range(len(pp)))
        ids = (lex[e], lex["neutral"])
        exact = exact_patching(model, pb, capture(model, pb.emotion, _z_names(model)), heads, ids)
        control = identity_control(model, pb, capture(model, pb.neutral, _z_names(model)), control_sites(heads, "head"), ids)
        out.append({"emotion": e, "clusters": np.array(clusters), "orientation": orientation,
                    "floor": control_floor(cfg, control.double().numpy(), e),
                    "exact": {h: v.double().numpy() for h, v in exact.items()}})
    return cfg, out


def null_screening(cfg: ScreeningConfig, per_emotion: list[dict], rng: np.random.Generator, clustered: bool = True) -> list[dict]:
    """One null screening: per cluster a random orientation and a random sign of M, then the
    screening's statistics and one BH family of all heads × emotions. `clustered` False treats
    every pair as independent (anti-conservative: the pairs of a cluster share its sign)."""
    rows: list[dict] = []
    for block in per_emotion:
        labels = sorted(set(block["clusters"]))
        flip = dict(zip(labels, rng.integers(0, 2, len(labels)), strict=True))
        keep = np.array([o == flip[c] for c, o in zip(block["clusters"], block["orientation"], strict=True)])
        signs = cluster_signs(list(block["clusters"][keep]), rng)
        clusters = list(block["clusters"][keep]) if clustered else [str(i) for i in range(int(keep.sum()))]
        # no copy control here (NaN copy-free M)
        rows += signed_rows(block["emotion"], {h: v[keep] for h, v in block["exact"].items()}, None, signs, cfg, clusters, block["floor"])
    correct_and_correlate(rows, EMOTIONS)
    return rows


def test_null_models_false_discovery_proportion(tmp_path: Path, tokenizer_dir: Path) -> None:
    """Under this complete null every discovery is false, so a screening's FDP is 1 with any
    discovery and 0 without: the mean FDP is the share of screenings with a discovery, which BH
    holds at (not below) 5 %. Over 10 models one null screening each, "≤ 5 %" means none: a
    calibrated procedure passes that with probability ~0.6 only, so the assertion is on 200 null
    screenings (20 draws of orientation and sign per model; the patching is done once per model):
    their share with a discovery must be consistent with ≤ 5 % (one-sided binomial p > 0.01,
    i.e. at most 18 of 200). Printed beside it: the same draws with the clusters ignored (every
    pair its own cluster: anti-conservative), for comparison."""
    from scipy.stats import binom

    models = [patched(save_random_model("gpt2", tmp_path / f"m{seed}", tokenizer_dir=tokenizer_dir, seed=seed, init_std=0.2), seed)
              for seed in SEEDS]
    rng = np.random.default_rng(0)
    draws = [[null_screening(cfg, blocks, rng) for _ in range(DRAWS)] for cfg, blocks in models]
    rows = [r for per_model in draws for screening in per_model for r in screening]
    assert len(draws[0][0]) == 2 * 4 * 3  # one BH family: every head × emotion
    above = np.mean([not r["no_effect"] for r in rows])
    first = [float(any(significant(r) for r in per_model[0])) for per_model in draws]  # seeds 0..9, one draw each
    fdp = np.array([float(any(significant(r) for r in screening)) for per_model in draws for screening in per_model])
    naive = np.array([float(any(significant(r) for r in null_screening(cfg, blocks, rng, clustered=False)))
                      for cfg, blocks in models for _ in range(DRAWS)])
    p = np.array([r["exact_p"] for r in rows])
    # the most screenings with a discovery still consistent with 5 %: P(X > bound | n, 0.05) <= 0.01
    bound = next(k for k in range(len(fdp) + 1) if binom.sf(k, len(fdp), 0.05) <= 0.01)
    print(f"\nnull models: seeds 0..9, first draw each: mean FDP {np.mean(first):.2f} ({int(sum(first))} of 10 with a discovery); "
          f"{len(fdp)} null screenings: mean FDP {fdp.mean():.3f} ({int(fdp.sum())} with a discovery, bound {bound}); "
          f"clusters ignored: {naive.mean():.3f}; tests with p <= 0.05: {np.mean(p <= 0.05):.3f}, p <= 0.01: {np.mean(p <= 0.01):.3f}; "
          f"effects above the noise floor {above:.0%}")
    assert above > 0.9  # the floor is not what keeps the null quiet
    assert fdp.sum() <= bound, (fdp.sum(), bound)
