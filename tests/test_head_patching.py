"""Ground truth: patching the toy's planted head into neutral prompts adds its emotion; others do not.

The planted head of emotion X (results/models/toy/planted.json) is, by construction, the only
path from the span to the continuation. Patching its output from each X prompt into the aligned
neutral twin must raise X's keyword count and M with a 95 % CI entirely above 0; a non-planted
head's CI contains 0 (or its effect is < 10 % of the planted one's). The patched positions are
prompt positions only, and the output says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import pytest

from analysis.base.vocabulary import EMOTIONS
from analysis.experiments.command import run_experiment
from analysis.experiments.kinds import PATCHED_POSITIONS
from analysis.experiments.render import document
from test_head_ablation import N_PROMPTS, REPO, control_head, subset_files, toy  # noqa: F401 (toy is a fixture)


def patch(toy: tuple[object, dict], tmp: Path, emotion: str, head: tuple[int, int]):  # noqa: ANN201
    files = subset_files(tmp, emotion, "--emotion-prompts")
    return run_experiment(
        "patching",
        ["--model", "toy", "--profile", "baseline", "--emotion", emotion, "--head-spec", f"{head[0]}:{head[1]}",
         "--positions", "all", "--max-tokens", "15", "--cumulative-k", "0", "--output", str(tmp / "out.json"), *files],
        model=toy[0],
    )


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_patching_the_planted_head_adds_its_emotion(emotion: str, toy: tuple[object, dict], tmp_path: Path) -> None:
    doc = toy[1]
    planted = tuple(doc["by_emotion"][emotion][0])
    res = patch(toy, tmp_path, emotion, planted)
    kw, m = res.main.evidence.effects[f"kw_{emotion}"], res.main.evidence.effects["emotion_score"]
    print(f"{emotion} patch {planted}: kw {kw}, M {m}")
    assert kw.n == N_PROMPTS
    assert kw.ci_low > 0, kw
    assert m.ci_low > 0, m
    out = document(res)
    assert out["patched_positions"] == PATCHED_POSITIONS and out["positions"] == "all"
    control = patch(toy, tmp_path, emotion, control_head(doc))
    for metric, planted_effect in (("kw_" + emotion, kw), ("emotion_score", m)):
        c = control.main.evidence.effects[metric]
        print(f"{emotion} patch control {control_head(doc)} {metric}: {c}")
        contains_zero = c.ci_low <= 0.0 <= c.ci_high
        small = abs(c.mean) < 0.1 * abs(planted_effect.mean)
        assert contains_zero or small, (metric, c, planted_effect)


def noise(toy: tuple[object, dict], tmp: Path, emotion: str, head: tuple[int, int]):  # noqa: ANN201
    files = subset_files(tmp, emotion, "--emotion-prompts")
    return run_experiment(
        "patching",
        ["--model", "toy", "--profile", "baseline", "--emotion", emotion, "--head-spec", f"{head[0]}:{head[1]}",
         "--positions", "all", "--direction", "noising", "--max-tokens", "15", "--cumulative-k", "0",
         "--output", str(tmp / "noise.json"), *files],
        model=toy[0],
    )


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_noising_the_planted_head_removes_the_gap(emotion: str, toy: tuple[object, dict], tmp_path: Path) -> None:
    """Necessity: the planted head's neutral-twin z in the emotion prompt removes (nearly) all of
    the emotion–neutral gap of M; random heads outside the top set remove (nearly) none."""
    planted = tuple(toy[1]["by_emotion"][emotion][0])
    res = noise(toy, tmp_path, emotion, planted)
    gap = res.main.evidence.gap
    # Hand computation from the per-prompt scores: (M_emotion - M_noised) / (M_emotion - M_neutral).
    m_emotion, m_noised, m_neutral = res.baseline_scores["emotion_score"], res.main.scores["emotion_score"], res.other_m
    assert gap.ratio == pytest.approx(float((m_emotion - m_noised).sum() / (m_emotion - m_neutral).sum()), rel=1e-12)
    print(f"{emotion} noising {planted}: fraction of gap {gap}, random {res.main.evidence.random_gap}")
    assert gap.ratio > 0.9 and gap.ci_low is not None and gap.ci_low > 0.5, gap
    assert all(g is not None and abs(g) < 0.1 for g in res.main.evidence.random_gap), res.main.evidence.random_gap
    # The noised target is the emotion prompt; its clean M is the denoising run's "other" M.
    denoised = patch(toy, tmp_path, emotion, planted)
    assert np.array_equal(denoised.other_m, m_emotion) and np.array_equal(res.other_m, denoised.baseline_scores["emotion_score"])
    # The identity control (own activations patched back) is exactly 0 for every metric.
    assert all(v == 0.0 for v in res.noise.control_max.values()), res.noise.control_max
    assert res.noise.floor["emotion_score"] == pytest.approx(1e-5)
    doc = document(res)
    assert doc["experiment"] == "noising" and doc["direction"] == "noising" and doc["question"].startswith("necessity")
    assert doc["target_prompts"] == emotion and doc["other_clean"]["prompts"] == "neutral"
