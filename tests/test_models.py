"""Model loading and head specs: clear one-line errors for everything a user can get wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analysis.errors import InputError
from analysis.models import HeadSpec, load_model, parse_head_spec, validate_heads


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


def test_validate_heads_out_of_range(random_model_dirs: dict[str, Path]) -> None:
    spec = load_model(str(random_model_dirs["gpt2"])).spec  # 2 layers x 4 heads
    assert validate_heads(((1, 3),), spec) == ((1, 3),)
    with pytest.raises(InputError, match=r"layer 2 is out of range .*\(layers 0\.\.1\)"):
        validate_heads(((2, 0),), spec)
    with pytest.raises(InputError, match=r"head 4 is out of range .*\(heads 0\.\.3\)"):
        validate_heads(((0, 4),), spec)


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
    with pytest.raises(InputError, match="dvc repro toy_model"):
        load_model("toy", toy_dir=tmp_path / "nope")
