"""GPT-Neo (EleutherAI/gpt-neo-*): learned positions, q/k/v without biases, layers alternating global
and local (windowed) attention, the unembedding tied to the embedding."""

from __future__ import annotations

from typing import Any

from analysis.modelfacts.shapes import Arch, Family


def _arch(cfg: dict) -> Arch:
    d = cfg["hidden_size"]
    kinds = {k for pattern, _ in cfg.get("attention_types", [[["global"], 1]]) for k in pattern}
    return Arch(family="gpt_neo", n_layers=cfg["num_layers"], n_heads=cfg["num_heads"], d_model=d,
                d_mlp=cfg.get("intermediate_size") or 4 * d, vocab=cfg["vocab_size"], n_ctx=cfg["max_position_embeddings"],
                tied=cfg.get("tie_word_embeddings", True), learned_pos=True, qkv_bias=False,
                local_window=cfg.get("window_size", 256) if "local" in kinds else 0)


def _hf_config(a: Arch) -> Any:
    from transformers import GPTNeoConfig

    kinds = ["global", "local"] if a.local_window else ["global"]
    return GPTNeoConfig(
        num_layers=a.n_layers, num_heads=a.n_heads, hidden_size=a.d_model, intermediate_size=a.d_mlp,
        max_position_embeddings=a.n_ctx, attention_types=[[kinds, a.n_layers // len(kinds)]],
        window_size=a.local_window or 256, vocab_size=a.vocab, bos_token_id=0, eos_token_id=0,
    )


def _random_config(vocab_size: int, n_layers: int, n_heads: int, d_model: int, n_ctx: int, **common: Any) -> Any:
    from transformers import GPTNeoConfig

    # Keep both kinds of attention in a small model.
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


FAMILY = Family(
    name="gpt_neo",
    blocks="transformer.h",
    head_out_proj="transformer.h.{layer}.attn.attention.out_proj",
    mlp_out_proj="transformer.h.{layer}.mlp.c_proj",
    defaults=dict(tied=True, learned_pos=True, qkv_bias=False, vocab=50257, n_ctx=2048, local_window=256),
    published={"EleutherAI/gpt-neo-125M": (12, 12, 768), "EleutherAI/gpt-neo-1.3B": (24, 16, 2048), "EleutherAI/gpt-neo-2.7B": (32, 20, 2560)},
    arch=_arch,
    hf_config=_hf_config,
    random_config=_random_config,
)
