"""Model families, each described once, in its own module of this folder (`gpt2`, `gpt_neox`, `gpt_neo`):
where it keeps its blocks, head and MLP projections, its structural knobs, and how it maps to and
from a Hugging Face config (`analysis.modelfacts.shapes.Family`).

Adding a family is one module here, named in the registry below, plus its tests; everything that
needs a family fact (exact edits, the fast path, loading, planning, random models) reads it from
`FAMILIES`, and no code outside these modules branches on a family's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.base.errors import InputError
from analysis.modelfacts.families import gpt2, gpt_neo, gpt_neox
from analysis.modelfacts.shapes import Family


# The registry: one module per family (its own file in this folder), in the order runs list them.
FAMILIES: dict[str, Family] = {m.FAMILY.name: m.FAMILY for m in (gpt2, gpt_neox, gpt_neo)}
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
