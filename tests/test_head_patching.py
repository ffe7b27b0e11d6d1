"""Ground truth: patching the toy's planted head into neutral prompts adds its emotion; others do not.

The planted head of emotion X (results/models/toy/planted.json) is, by construction, the only
path from the span to the continuation. Patching its output from each X prompt into the aligned
neutral twin must raise X's keyword count and M with a 95 % CI entirely above 0; a non-planted
head's CI contains 0 (or its effect is < 10 % of the planted one's). The patched positions are
prompt positions only, and the output says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.core.vocabulary import EMOTIONS
from analysis.experiments.cli import run_experiment
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
