"""Ground truth: ablating the toy model's planted head removes its emotion; other heads do not.

`toy` (results/models/toy) has one planted head per emotion, recorded in planted.json: by
construction the emotion of the prompt reaches the continuation only through it. Ablation must
find that: the planted head's effect on its emotion's keyword count and on M has a 95 % CI
entirely below 0, a non-planted head's CI contains 0 (or its effect is < 10 % of the planted
one's), and mean and resample ablation agree in sign with zero ablation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from analysis.base.vocabulary import EMOTIONS
from analysis.experiments.command import run_experiment
from analysis.experiments.run import ExperimentResult

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "results/models/toy"
N_PROMPTS = 70  # the full baseline set: with one thread the toy runs in about a second


def require_toy() -> dict:
    """planted.json of the built toy; skip where it is absent, but fail under CI=true."""
    planted = TOY / "planted.json"
    if not planted.is_file():
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"{planted} is missing under CI: the ground-truth tests must run (build it: dvc repro model@toy)")
        pytest.skip(f"{planted} is missing: build the toy (dvc repro model@toy) to run the ground-truth tests")
    return json.loads(planted.read_text())


def control_head(doc: dict) -> tuple[int, int]:
    """A head planted for no emotion: the free head of the planted layer, else 0:0."""
    planted = {tuple(h) for h in doc["heads"]}
    layer = max(h[0] for h in planted)
    free = [(layer, h) for h in range(8) if (layer, h) not in planted]
    return free[0] if free else (0, 0)


def subset_files(root: Path, emotion: str, emotion_flag: str) -> list[str]:
    """The first N_PROMPTS aligned pairs, as flags of the CLI."""
    out = []
    for name, flag in ((emotion, emotion_flag), ("neutral", "--neutral-prompts")):
        lines = (REPO / f"data/prompts/baseline/{name}.txt").read_text().splitlines()[:N_PROMPTS]
        path = root / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n")
        out += [flag, str(path)]
    return out


@pytest.fixture(scope="module")
def toy(one_thread: None) -> tuple[object, dict]:
    """The loaded toy model and its planted.json (one thread: conftest's `one_thread`)."""
    doc = require_toy()
    os.chdir(REPO)
    from analysis.core.loading import load_model

    return load_model("toy"), doc


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, str, str], ExperimentResult]:
    """(emotion, head, method) → result: each run computed once for the module."""
    return {}


def ablate(runs: dict, toy: tuple[object, dict], tmp: Path, emotion: str, head: tuple[int, int], method: str) -> ExperimentResult:
    key = (emotion, f"{head[0]}:{head[1]}", method)
    if key not in runs:
        files = subset_files(tmp, emotion, "--prompts-file")
        runs[key] = run_experiment(
            "ablation",
            ["--model", "toy", "--profile", "baseline", "--emotion", emotion, "--head-spec", key[1], "--method", method,
             "--max-tokens", "15", "--cumulative-k", "0", "--resample-draws", "2", "--output", str(tmp / "out.json"), *files],
            model=toy[0],
        )
    return runs[key]


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_ablating_the_planted_head_removes_its_emotion(
    emotion: str, toy: tuple[object, dict], runs: dict, tmp_path: Path
) -> None:
    doc = toy[1]
    planted = tuple(doc["by_emotion"][emotion][0])
    res = ablate(runs, toy, tmp_path, emotion, planted, "zero")
    kw, m = res.main.evidence.effects[f"kw_{emotion}"], res.main.evidence.effects["emotion_score"]
    print(f"{emotion} zero {planted}: kw {kw}, M {m}")
    assert res.main.evidence.effects["kw_" + emotion].n == N_PROMPTS
    assert kw.ci_high < 0, kw
    assert m.ci_high < 0, m
    control = ablate(runs, toy, tmp_path, emotion, control_head(doc), "zero")
    for metric, planted_effect in (("kw_" + emotion, kw), ("emotion_score", m)):
        c = control.main.evidence.effects[metric]
        print(f"{emotion} zero control {control_head(doc)} {metric}: {c}")
        contains_zero = c.ci_low <= 0.0 <= c.ci_high
        small = abs(c.mean) < 0.1 * abs(planted_effect.mean)
        assert contains_zero or small, (metric, c, planted_effect)


@pytest.mark.parametrize("method", ["mean", "resample"])
@pytest.mark.parametrize("emotion", EMOTIONS)
def test_mean_and_resample_ablation_agree_in_sign_with_zero(
    emotion: str, method: str, toy: tuple[object, dict], runs: dict, tmp_path: Path
) -> None:
    doc = toy[1]
    planted = tuple(doc["by_emotion"][emotion][0])
    zero = ablate(runs, toy, tmp_path, emotion, planted, "zero")
    other = ablate(runs, toy, tmp_path, emotion, planted, method)
    for metric in ("kw_" + emotion, "emotion_score"):
        z, o = zero.main.evidence.effects[metric], other.main.evidence.effects[metric]
        print(f"{emotion} {method} {planted} {metric}: {o} (zero: {z.mean:+.3f})")
        assert abs(z.mean) > 0 and abs(o.mean) > 0, (metric, z, o)
        assert (z.mean > 0) == (o.mean > 0), (metric, z, o)
