"""The architecture table and the reduced random copies of the bigger models.

- `n_params` is checked by hand for GPT-2 small and against Hugging Face's own count of a model
  built from every config in the table, on the meta device (GPT-2 XL in float32 is ~6 GB; meta
  allocates nothing).
- Each bigger model at reduced size (its family's knobs kept) is saved, loaded through the
  project's loader, and a zeroed head equals the HF model with that head's out-projection
  input slice zeroed (<= 1e-5), as tests/test_interventions.py checks for the small models.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from analysis.modelfacts.architectures import PUBLIC, Arch, from_hf_config, hf_config, lookup, reduced, save_random
from analysis.base.errors import InputError
from analysis.core.sites import Site
from analysis.interventions.edits import hooks_for, zero_edits
from analysis.core.loading import load_model
from test_interventions import TEXTS, _batch, _bridge_logprobs, _hf_logprobs, _hf_reference, _real

BIGGER = ["gpt2-medium", "gpt2-large", "gpt2-xl", "EleutherAI/pythia-410m", "EleutherAI/pythia-1.4b",
          "EleutherAI/pythia-2.8b", "EleutherAI/gpt-neo-1.3B", "EleutherAI/gpt-neo-2.7B"]


def _meta_count(arch: Arch) -> int:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config(arch)).num_parameters()


def test_gpt2_small_parameter_count_by_hand() -> None:
    d, v, n_ctx, layers = 768, 50257, 1024, 12
    # wte + wpe + per layer (ln 2 x 2d, c_attn d x 3d + 3d, c_proj d^2 + d, c_fc d x 4d + 4d,
    # mlp c_proj 4d x d + d) + ln_f 2d; the unembedding is the tied wte
    per_layer = 4 * d + 3 * d * d + 3 * d + d * d + d + 4 * d * d + 4 * d + 4 * d * d + d
    assert v * d + n_ctx * d + layers * per_layer + 2 * d == 124_439_808 == PUBLIC["gpt2"].n_params


@pytest.mark.parametrize("name", [n for n in PUBLIC if not n.startswith("openai-community/")])
def test_parameter_count_equals_hf_for_real_and_reduced_configs(name: str) -> None:
    arch = PUBLIC[name]
    assert arch.n_params == _meta_count(arch)
    small = reduced(arch, vocab=1024)
    assert small.n_params == _meta_count(small)


def test_published_counts() -> None:
    # Pythia paper (Biderman et al. 2023), table 1, total parameters; GPT-Neo 125M's model card count
    assert PUBLIC["EleutherAI/pythia-70m"].n_params == 70_426_624
    assert PUBLIC["EleutherAI/pythia-160m"].n_params == 162_322_944
    assert PUBLIC["EleutherAI/pythia-410m"].n_params == 405_334_016
    assert PUBLIC["EleutherAI/pythia-1.4b"].n_params == 1_414_647_808
    assert PUBLIC["EleutherAI/pythia-2.8b"].n_params == 2_775_208_960
    assert PUBLIC["gpt2-xl"].n_params == 1_557_611_200


def test_config_round_trip_and_lookup(tmp_path: Path) -> None:
    for name in BIGGER:
        arch = PUBLIC[name]
        assert from_hf_config(hf_config(arch).to_dict()) == arch, name
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config(reduced(PUBLIC["gpt2-xl"], vocab=1024)).to_dict()))
    arch, source = lookup(str(folder))
    assert source == str(folder / "config.json") and arch.n_heads == 25 and arch.n_layers == 2
    assert lookup("EleutherAI/pythia-2.8b") == (PUBLIC["EleutherAI/pythia-2.8b"], "embedded table of published configs (analysis/modelfacts/architectures.py)")
    with pytest.raises(InputError, match="not in the embedded table"):
        lookup("EleutherAI/pythia-12b")


def test_reduced_keeps_the_family_knobs() -> None:
    xl = reduced(PUBLIC["gpt2-xl"], vocab=1024)
    assert (xl.n_heads, xl.d_head, xl.d_mlp, xl.tied) == (25, 16, 1600, True)
    pythia = reduced(PUBLIC["EleutherAI/pythia-2.8b"], vocab=1024)
    assert (pythia.n_heads, pythia.rotary_pct, pythia.parallel_residual, pythia.tied) == (32, 0.25, True, False)
    neo = hf_config(reduced(PUBLIC["EleutherAI/gpt-neo-2.7B"], vocab=1024))
    assert neo.attention_layers == ["global", "local"] and neo.window_size == 8 and neo.num_heads == 20


def _case(name: str, d_head: int) -> str:
    return f"{name}-d{d_head}"


# every bigger model at head width 16; GPT-2 XL also at its real head width 64 (25 x 64 = 1600)
CASES = [(n, 16) for n in BIGGER] + [("gpt2-xl", 64)]


@pytest.mark.parametrize("name, d_head", CASES, ids=[_case(*c) for c in CASES])
def test_reduced_model_loads_and_zeroed_head_is_exact(name: str, d_head: int, tmp_path: Path, tokenizer_dir: Path, one_thread: None) -> None:
    arch = reduced(PUBLIC[name], vocab=2048, d_head=d_head)
    path = save_random(arch, tmp_path / "m", tokenizer_dir=tokenizer_dir, seed=2)
    model = load_model(str(path))
    s = model.spec
    assert (s.family, s.n_layers, s.n_heads, s.d_head, s.d_mlp) == (arch.family, 2, arch.n_heads, d_head, arch.d_mlp)
    hf = _hf_reference(path)
    if arch.family == "gpt_neo":  # the local layer's window is shorter than the longest prompt
        assert hf.config.attention_layers[1] == "local" and max(len(model.tokenizer(t).input_ids) for t in TEXTS) > arch.local_window
    batch = _batch(model, TEXTS)
    units = {Site("head", layer, h): (s.d_head,) for layer in range(s.n_layers) for h in range(s.n_heads)}
    clean = _hf_logprobs(hf, batch)
    plain = _bridge_logprobs(model, batch)
    assert (plain - clean).abs()[_real(batch)].max().item() <= 1e-5
    for layer, head in [(0, 0), (1, s.n_heads - 1)]:
        ours = _bridge_logprobs(model, batch, hooks_for(zero_edits([Site("head", layer, head)], len(TEXTS), units)))
        ref = _hf_logprobs(hf, batch, zero_head=(layer, head), d_head=s.d_head)
        assert (ours - ref).abs()[_real(batch)].max().item() <= 1e-5, (layer, head)
        assert (ours - clean).abs()[_real(batch)].max().item() > 1e-4, (layer, head)  # the head mattered
