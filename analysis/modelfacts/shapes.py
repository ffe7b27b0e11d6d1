"""The two records a model family fills in: `Arch` (a model's architecture numbers, from its config
alone) and `Family` (where a family keeps its components and how it maps to and from a Hugging Face
config). One module per family in `analysis.modelfacts.families` fills in a `Family`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from analysis.base.errors import InputError


# The embedded models' family and shapes (GPT-2 layout, untied, 4 d_model MLP): analysis.embedded builds them from
# these numbers, analysis.core.budget plans them before they are built. Both take the toy corpus's
# tokenizer: a BPE target of `vocab_size`, the span tokens added on top when it is trained.
EMBEDDED_FAMILY = "gpt2"
EMBEDDED_SHAPES: dict[str, dict[str, int]] = {
    "toy": {"n_layer": 4, "n_head": 4, "n_embd": 128, "n_positions": 64, "vocab_size": 1024},
    "bench": {"n_layer": 6, "n_head": 8, "n_embd": 128, "n_positions": 64, "vocab_size": 1024},
}


@dataclass(frozen=True)
class Arch:
    family: str  # Hugging Face model_type: gpt2 | gpt_neox | gpt_neo
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    vocab: int
    n_ctx: int
    tied: bool  # unembedding shares the embedding matrix
    learned_pos: bool  # a position-embedding table (GPT-2, GPT-Neo); rotary has none
    qkv_bias: bool  # GPT-Neo's q/k/v projections have no bias
    rotary_pct: float = 0.0  # Pythia: share of each head's dims that rotate
    parallel_residual: bool = False  # Pythia: attention and MLP read the same residual
    local_window: int = 0  # GPT-Neo: window of the local layers (0: every layer global)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise InputError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")

    @property
    def n_params(self) -> int:
        """Parameters as `num_parameters()` counts them (a tied unembedding once).

        Per layer: q, k, v and out projections 4 d^2, the MLP 2 d d_mlp, their biases
        (3d for q/k/v where present, d out, d_mlp + d in the MLP) and two layer norms (4d).
        """
        d, m = self.d_model, self.d_mlp
        per_layer = 4 * d * d + 2 * d * m + (3 * d if self.qkv_bias else 0) + d + m + d + 4 * d
        embed = self.vocab * d * (1 if self.tied else 2) + (self.n_ctx * d if self.learned_pos else 0)
        return self.n_layers * per_layer + embed + 2 * d  # + the final layer norm


@dataclass(frozen=True)
class Family:
    """One Hugging Face architecture, as the package sees it (module paths take `{layer}`)."""

    name: str  # the Hugging Face `model_type`
    blocks: str  # the ModuleList holding the transformer blocks
    # The module whose input is the concatenation of head outputs. Zeroing one head's slice of
    # that input is "the HF model with that head removed": the reference every intervention is
    # checked against (and exactly what the bridge's `hook_z` edits).
    head_out_proj: str
    # The module whose input is the MLP's post-activation hidden layer (`blocks.L.mlp.hook_post`):
    # neuron n is column n of that input.
    mlp_out_proj: str
    defaults: Mapping[str, Any]  # the structural knobs of its published models (Arch fields beyond the sizes)
    # Its published models, by hub name: (n_layers, n_heads, d_model), the values of each one's config.json
    # (analysis.modelfacts.architectures says from where); d_mlp is 4 d_model in all of them.
    published: Mapping[str, tuple[int, int, int]]
    arch: Callable[[dict], Arch]  # config.json dict -> Arch
    hf_config: Callable[[Arch], Any]  # Arch -> a transformers config of the family
    random_config: Callable[..., Any]  # (vocab_size, n_layers, n_heads, d_model, n_ctx, **ids) -> HF config (the tests' small models)
