"""Model families, described once: where each family keeps its blocks, head and MLP projections,
and how to build a small random config of it (for offline tests).

Adding a family is one `Family` entry in `FAMILIES` (plus its tests); everything that needs a
family fact (exact edits, the fast path, loading, random models) reads it from here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from analysis.errors import InputError


def _gpt2_config(vocab_size: int, n_layers: int, n_heads: int, d_model: int, n_ctx: int, **common: Any) -> Any:
    from transformers import GPT2Config

    return GPT2Config(n_layer=n_layers, n_head=n_heads, n_embd=d_model, n_positions=n_ctx, vocab_size=vocab_size, **common)


def _gpt_neox_config(vocab_size: int, n_layers: int, n_heads: int, d_model: int, n_ctx: int, **common: Any) -> Any:
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        hidden_size=d_model,
        intermediate_size=4 * d_model,
        max_position_embeddings=n_ctx,
        rotary_pct=0.25,
        use_parallel_residual=True,
        attention_bias=True,
        tie_word_embeddings=False,
        vocab_size=vocab_size,
        **common,
    )


def _gpt_neo_config(vocab_size: int, n_layers: int, n_heads: int, d_model: int, n_ctx: int, **common: Any) -> Any:
    from transformers import GPTNeoConfig

    # GPT-Neo alternates global and local attention; keep both kinds in a small model.
    kinds = [["global", "local"], (n_layers + 1) // 2] if n_layers > 1 else [["global"], 1]
    return GPTNeoConfig(
        num_layers=n_layers,
        num_heads=n_heads,
        hidden_size=d_model,
        max_position_embeddings=n_ctx,
        attention_types=[kinds],
        window_size=16,
        vocab_size=vocab_size,
        **common,
    )


@dataclass(frozen=True)
class Family:
    """One Hugging Face architecture, as the package sees it (module paths take `{layer}`)."""

    blocks: str  # the ModuleList holding the transformer blocks
    # The module whose input is the concatenation of head outputs. Zeroing one head's slice of
    # that input is "the HF model with that head removed": the reference every intervention is
    # checked against (and exactly what the bridge's `hook_z` edits).
    head_out_proj: str
    # The module whose input is the MLP's post-activation hidden layer (`blocks.L.mlp.hook_post`):
    # neuron n is column n of that input.
    mlp_out_proj: str
    random_config: Callable[..., Any]  # (vocab_size, n_layers, n_heads, d_model, n_ctx, **ids) -> HF config


FAMILIES: dict[str, Family] = {
    "gpt2": Family("transformer.h", "transformer.h.{layer}.attn.c_proj", "transformer.h.{layer}.mlp.c_proj", _gpt2_config),
    "gpt_neox": Family(
        "gpt_neox.layers", "gpt_neox.layers.{layer}.attention.dense", "gpt_neox.layers.{layer}.mlp.dense_4h_to_h", _gpt_neox_config
    ),
    "gpt_neo": Family(
        "transformer.h", "transformer.h.{layer}.attn.attention.out_proj", "transformer.h.{layer}.mlp.c_proj", _gpt_neo_config
    ),
}
SUPPORTED_FAMILIES = tuple(FAMILIES)


def family(name: str) -> Family:
    """The family record, or one line naming the supported ones."""
    if name not in FAMILIES:
        raise InputError(f"unknown model family {name!r}; supported: {', '.join(SUPPORTED_FAMILIES)}")
    return FAMILIES[name]


def component_input(kind: str, family_name: str, layer: int) -> str:
    """The module whose input carries a site of `kind` ("head" or "mlp") in `layer`."""
    f = FAMILIES[family_name]
    return (f.head_out_proj if kind == "head" else f.mlp_out_proj).format(layer=layer)


def random_config(family_name: str, vocab_size: int, n_layers: int, n_heads: int, d_model: int, n_ctx: int) -> Any:
    return family(family_name).random_config(vocab_size, n_layers, n_heads, d_model, n_ctx, bos_token_id=0, eos_token_id=0)


def save_random_weights(config: Any, tokenizer: Any, out_dir: Path, *, seed: int, bias_std: float, init_std: float) -> Path:
    """Save a randomly initialised model of `config` with `tokenizer` into `out_dir`.

    Biases are drawn non-zero: a zero bias would hide the value-bias folding trap (docs/DESIGN.md §4).
    HF keeps attention scores in float32 and is exact under eager attention; the bridge forces
    eager anyway, so the saved default matches it.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # shard-writing bars would flood CI logs
    config._attn_implementation = "eager"
    config.initializer_range = init_std
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, bias_std)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
