"""Model loading, head and unit specs: clear one-line errors for everything a user can get wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.core.loading import load_model, ModelSpec
from analysis.core.specs import HeadSpec, is_unit_spec, parse_head_spec, parse_site_spec, parse_unit_spec, UnitSpec, check_heads, check_units
from analysis.base.errors import InputError
from analysis.modelfacts.families import component_input


def test_parse_head_spec_examples() -> None:
    assert parse_head_spec("0:0") == HeadSpec(heads=((0, 0),))
    assert parse_head_spec("0:0,3:5") == HeadSpec(heads=((0, 0), (3, 5)))
    assert parse_head_spec(" 10 : 11 ") == HeadSpec(heads=((10, 11),))
    assert parse_head_spec("top:3") == HeadSpec(top=3)


@pytest.mark.parametrize("bad", ["0-0", "a:b", "", "   ", "0:0,", "top:0", "top:x", "1:2:3", "0:0,0:0"])
def test_parse_head_spec_rejects(bad: str) -> None:
    with pytest.raises(InputError) as err:
        parse_head_spec(bad)
    assert "\n" not in str(err.value) and "head spec" in str(err.value)


def test_check_heads_out_of_range(random_model_dirs: dict[str, Path]) -> None:
    spec = load_model(str(random_model_dirs["gpt2"])).spec  # 2 layers x 4 heads
    assert check_heads(((1, 3),), spec) == ((1, 3),)
    with pytest.raises(InputError, match=r"layer 2 is out of range .*\(layers 0\.\.1\)"):
        check_heads(((2, 0),), spec)
    with pytest.raises(InputError, match=r"head 4 is out of range .*\(heads 0\.\.3\)"):
        check_heads(((0, 4),), spec)


def test_unknown_model_offline_is_one_line() -> None:
    with pytest.raises(InputError) as err:
        load_model("EleutherAI/pythia-160m-not-a-model")
    msg = str(err.value)
    assert "not available" in msg and "`toy` works offline" in msg and "\n" not in msg


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no config.json"):
        load_model(str(tmp_path))


def test_unsupported_family(tmp_path: Path, tokenizer_dir: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, vocab_size=400)).save_pretrained(tmp_path)
    with pytest.raises(InputError, match="not supported; supported families: gpt2, gpt_neox, gpt_neo"):
        load_model(str(tmp_path))


def test_missing_toy_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dvc repro model@toy"):
        load_model("toy", toy_dir=tmp_path / "nope")


# --- MLP unit specs ---------------------------------------------------------------------------

def _spec(d_mlp: int | None = 256) -> ModelSpec:
    """A hand-made shape (no model load): 2 layers x 4 heads, d_mlp neurons per MLP."""
    return ModelSpec(name="m", family="gpt2", n_layers=2, n_heads=4, d_head=16, d_mlp=d_mlp, bos_id=0, pad_id=0)


def test_parse_unit_spec_examples() -> None:
    assert parse_unit_spec("mlp:1:17") == UnitSpec(units=((1, 17),))
    assert parse_unit_spec("mlp:1:17,42") == UnitSpec(units=((1, 17), (1, 42)))
    assert parse_unit_spec(" mlp : 0 : 3 , 5 ,mlp:1:3") == UnitSpec(units=((0, 3), (0, 5), (1, 3)))
    assert parse_unit_spec("mlp-top:4") == UnitSpec(top=4)
    assert parse_site_spec("mlp:0:0") == UnitSpec(units=((0, 0),))
    assert parse_site_spec("0:0") == HeadSpec(heads=((0, 0),))  # head specs unchanged
    assert parse_site_spec("top:2") == HeadSpec(top=2)
    assert is_unit_spec("MLP:0:1") and is_unit_spec(" mlp-top:1") and not is_unit_spec("top:1") and not is_unit_spec(None)


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("mlp:0", "cannot parse"),
        ("mlp:a:1", "cannot parse"),
        ("mlp:0:1,", "cannot parse"),
        ("mlp:0:-1", "cannot parse"),
        ("mlp-top:0", "K >= 1"),
        ("mlp-top:x", "cannot parse"),
        ("mlp:0:1,1", "given twice"),
        ("mlp:0:1,mlp:0:1", "given twice"),
        ("mlp:0:1,2:3", "mixes heads and MLP units"),
        ("mlp:0:1,top:2", "mixes heads and MLP units"),
    ],
)
def test_parse_unit_spec_rejects(bad: str, needle: str) -> None:
    with pytest.raises(InputError) as err:
        parse_site_spec(bad)
    assert "\n" not in str(err.value) and "unit spec" in str(err.value) and needle in str(err.value)


def test_head_spec_with_a_unit_says_mixing() -> None:
    with pytest.raises(InputError, match="mixes heads and MLP units"):
        parse_site_spec("0:0,mlp:1:2")


def test_check_units_ranges_name_the_model_and_the_range() -> None:
    spec = _spec()
    assert check_units(((1, 255), (0, 0)), spec) == ((1, 255), (0, 0))
    with pytest.raises(InputError, match=r"neuron 256 is out of range for m \(neurons 0\.\.255 in each of its 2 MLP layers\)"):
        check_units(((0, 256),), spec)
    with pytest.raises(InputError, match=r"layer 2 is out of range for m \(layers 0\.\.1\)"):
        check_units(((2, 0),), spec)


@pytest.mark.parametrize("d_mlp", [0, None])
def test_unit_spec_on_attention_only_model(d_mlp: int | None) -> None:
    with pytest.raises(InputError, match="has no MLP units") as err:
        check_units(((0, 0),), _spec(d_mlp))
    assert "\n" not in str(err.value)
    assert check_units((), _spec(d_mlp)) == ()  # a head spec on such a model is fine


def test_loaded_spec_has_d_mlp(random_model_dirs: dict[str, Path]) -> None:
    for family, path in random_model_dirs.items():
        model = load_model(str(path))
        assert model.spec.d_mlp == 256, family  # 4 x d_model 64
        assert check_units(((1, 255),), model.spec)
        from analysis.interventions.exact import plain_hf

        # the down-projection reads d_mlp features (GPT-2's Conv1D stores its weight as [in, out])
        proj = plain_hf(model).get_submodule(component_input("mlp", family, 1))
        assert (getattr(proj, "in_features", None) or proj.weight.shape[0]) == 256, family
