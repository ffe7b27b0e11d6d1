"""Issue 24.7: the validate stage screens with the `screen` stage's config for the same params."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from analysis.settings.params import load_params
from analysis.screening.common import ScreeningConfig
from analysis.bench.scoring import ValidationConfig

REPO = Path(__file__).resolve().parents[1]


def _params(tmp_path: Path, **changes: dict) -> object:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in changes.items():
        raw[section] = {**raw[section], **values}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_params(path)


def test_validation_screens_with_the_screen_stages_config(tmp_path: Path) -> None:
    # Every screening param moved off its default: `dvc exp run -S screening.positions=last` and the
    # like must reach what is validated, not only what is screened.
    p = _params(tmp_path, screening={"positions": "last", "exact_top_k": 3, "n_resamples": 999},
                noise_floor={"atol": 2e-5}, specificity={"min_share": 0.2}, copy_control={"max_share": 0.4},
                alignment={"max_unaligned_share": 0.3})
    screen = ScreeningConfig.from_params(p, model="bench")
    validated = ValidationConfig.from_params(p, folder="bench", profile=p.profile).screening
    assert dataclasses.replace(screen, split=False) == validated
    assert (validated.positions, validated.exact_top_k, validated.n_resamples, validated.noise_atol,
            validated.specificity_min_share, validated.copy_max_share, validated.max_unaligned_share) == (
        "last", 3, 999, 2e-5, 0.2, 0.4, 0.3)
    assert screen.split and not validated.split  # the held-out half is scored as given


def test_validate_stage_lists_every_param_its_screening_reads() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in ("screen", "validate", "sweep"):
        listed = set(stages[stage]["params"])
        for needed in ("seed", "profile", "screening", "split", "specificity", "alignment", "noise_floor"):
            assert needed in listed, (stage, needed)
        assert listed & {"copy_control", "copy_control.max_share"}, stage
    # the benchmark is validated on every emotion, whatever `emotions` asks of the screen stage
    assert "emotions" in stages["screen"]["params"] and "emotions" not in stages["validate"]["params"]


def test_validation_screens_every_emotion_whatever_params_emotions_is(tmp_path: Path) -> None:
    """`dvc exp run -S emotions=[anger]` once crashed the validate stage (its signatures read every
    emotion's rows): the benchmark is screened on all three."""
    from analysis.base.vocabulary import EMOTIONS

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["emotions"] = ["anger"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    p = load_params(tmp_path / "params.yaml")
    assert ScreeningConfig.from_params(p, model="bench").emotions == ("anger",)
    assert ValidationConfig.from_params(p, folder="bench", profile=p.profile).screening.emotions == tuple(EMOTIONS)


def test_from_params_refuses_an_unknown_field() -> None:
    import pytest

    with pytest.raises(TypeError, match="no field 'positon'"):
        ScreeningConfig.from_params(load_params(REPO / "params.yaml"), model="toy", positon="last")


def test_too_few_null_screenings_is_refused(tmp_path: Path, capsys) -> None:  # noqa: ANN001 - pytest's capsys
    """Issue 24, bad input: fewer null screenings than the criterion needs (analysis.bench.nulls.MIN_NULLS,
    200) is one error line from the nulls stage, exit 2, and no file; 0 (no null screenings) and
    exactly 200 are accepted."""
    import pytest

    from analysis.bench_nulls import main
    from analysis.bench.nulls import MIN_NULLS, NullConfig

    assert MIN_NULLS == 200
    _params(tmp_path, benchmark={"n_nulls": 140, "n_random_nulls": 19})  # 140 + 3 x 19 = 197
    out = tmp_path / "nulls.json"
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(REPO / "results/models/bench"), "--params", str(tmp_path / "params.yaml"), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and "at least 200" in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]
    for n_nulls, n_random in ((0, 0), (140, 20), (200, 0)):
        cfg = NullConfig.from_params(_params(tmp_path, benchmark={"n_nulls": n_nulls, "n_random_nulls": n_random}),
                                     folder="bench", profile="baseline")
        assert cfg.n_null_screenings in (0, 200)
