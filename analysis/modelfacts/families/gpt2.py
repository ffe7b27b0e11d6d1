"""GPT-2 (openai-community/gpt2*; also the embedded toy and bench, which are GPT-2s): learned positions,
q/k/v with biases in one Conv1D, the unembedding tied to the embedding."""

from __future__ import annotations

from typing import Any

from analysis.modelfacts.shapes import Arch, Family


def _arch(cfg: dict) -> Arch:
    d = cfg["n_embd"]
    return Arch(family="gpt2", n_layers=cfg["n_layer"], n_heads=cfg["n_head"], d_model=d, d_mlp=cfg.get("n_inner") or 4 * d,
                vocab=cfg["vocab_size"], n_ctx=cfg["n_positions"], tied=cfg.get("tie_word_embeddings", True),
                learned_pos=True, qkv_bias=True)


def _hf_config(a: Arch) -> Any:
    from transformers import GPT2Config

    return GPT2Config(n_layer=a.n_layers, n_head=a.n_heads, n_embd=a.d_model, n_inner=a.d_mlp, n_positions=a.n_ctx,
                      vocab_size=a.vocab, bos_token_id=0, eos_token_id=0)


def _random_config(vocab_size: int, n_layers: int, n_heads: int, d_model: int, n_ctx: int, **common: Any) -> Any:
    from transformers import GPT2Config

    return GPT2Config(n_layer=n_layers, n_head=n_heads, n_embd=d_model, n_positions=n_ctx, vocab_size=vocab_size, **common)


FAMILY = Family(
    name="gpt2",
    blocks="transformer.h",
    head_out_proj="transformer.h.{layer}.attn.c_proj",
    mlp_out_proj="transformer.h.{layer}.mlp.c_proj",
    defaults=dict(tied=True, learned_pos=True, qkv_bias=True, vocab=50257, n_ctx=1024),
    published={
        "gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024), "gpt2-large": (36, 20, 1280), "gpt2-xl": (48, 25, 1600),
        "openai-community/gpt2": (12, 12, 768), "openai-community/gpt2-medium": (24, 16, 1024),
        "openai-community/gpt2-large": (36, 20, 1280), "openai-community/gpt2-xl": (48, 25, 1600),
    },
    arch=_arch,
    hf_config=_hf_config,
    random_config=_random_config,
)
