"""params.yaml: the committed file validates, and a bad value is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analysis.base.errors import InputError
from analysis.settings.params import Params, load_params

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, **overrides: object) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(overrides)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_committed_params_validate() -> None:
    p = load_params(REPO / "params.yaml")
    assert p.models == ("toy",)
    assert p.unit_screening.exact_top_k >= 0


@pytest.mark.parametrize(
    "models",
    [
        ["toy", "gpt2", "EleutherAI/pythia-160m", "EleutherAI/gpt-neo-125M"],
        ["local_models/gpt2-full", "local_models/pythia.random"],
    ],
)
def test_hub_ids_and_relative_folders_are_model_names(tmp_path: Path, models: list[str]) -> None:
    assert load_params(_write(tmp_path, models=models)).models == tuple(models)


@pytest.mark.parametrize(
    ("models", "says"),
    [
        (["/tmp/gpt2"], "relative folder"),
        (["../elsewhere/gpt2"], "no .."),
        (["models/../gpt2"], "no .."),
        (["gpt2 small"], "cannot name result paths"),
        (["org/name:rev"], "cannot name result paths"),
        (["gpt2", "gpt2"], "lists a model twice"),
        ([], "at least one"),
    ],
)
def test_bad_model_names_fail_in_one_line(tmp_path: Path, models: list[str], says: str) -> None:
    with pytest.raises(InputError) as err:
        load_params(_write(tmp_path, models=models))
    msg = str(err.value)
    assert "\n" not in msg
    assert "key models" in msg and says in msg


def test_unknown_key_and_bad_range_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"key unit_screening\.exact_top_k: .*allowed: an integer >= 0"):
        load_params(_write(tmp_path, unit_screening={"exact_top_k": -1}))
    with pytest.raises(InputError, match=r"key unit_screening\.positions: .*allowed: all, last, span"):
        load_params(_write(tmp_path, unit_screening={"positions": "middle"}))
    with pytest.raises(InputError, match="key nonsense"):
        load_params(_write(tmp_path, nonsense=1))


def test_defaults_match_the_committed_file() -> None:
    # params.yaml and the model defaults must not drift apart: a stage run without the file's
    # section would otherwise silently use other numbers.
    assert load_params(REPO / "params.yaml").model_dump() == Params().model_dump()


def test_primary_endpoint_is_declared_and_validated(tmp_path: Path) -> None:
    p = load_params(REPO / "params.yaml").primary
    assert (p.experiment, p.metric, p.half, p.correction, p.alpha) == ("denoising", "fraction_of_gap", "confirmation", "holm", 0.05)
    with pytest.raises(InputError, match=r"key primary\.metric: .*allowed: fraction_of_gap"):
        load_params(_write(tmp_path, primary={"metric": "sentiment"}))
    with pytest.raises(InputError, match=r"key primary\.correction: .*allowed: holm"):
        load_params(_write(tmp_path, primary={"correction": "bh"}))
    with pytest.raises(InputError, match=r"key primary\.alpha"):
        load_params(_write(tmp_path, primary={"alpha": 1.5}))
    # the primary must be an experiment the pipeline runs
    with pytest.raises(InputError, match="primary.experiment noising is not among patching.directions"):
        load_params(_write(tmp_path, primary={"experiment": "noising"}, patching={"directions": ["denoising"]}))
