"""GPT-NeoX (EleutherAI/pythia-*): rotary positions on a quarter of each head's dims, attention and MLP
reading the same residual (parallel residual), an untied unembedding."""

from __future__ import annotations

from typing import Any

from analysis.modelfacts.shapes import Arch, Family


def _arch(cfg: dict) -> Arch:
    return Arch(family="gpt_neox", n_layers=cfg["num_hidden_layers"], n_heads=cfg["num_attention_heads"],
                d_model=cfg["hidden_size"], d_mlp=cfg["intermediate_size"], vocab=cfg["vocab_size"],
                n_ctx=cfg["max_position_embeddings"], tied=cfg.get("tie_word_embeddings", False), learned_pos=False,
                qkv_bias=cfg.get("attention_bias", True), rotary_pct=cfg.get("rotary_pct", 0.25),
                parallel_residual=cfg.get("use_parallel_residual", True))


def _hf_config(a: Arch) -> Any:
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        num_hidden_layers=a.n_layers, num_attention_heads=a.n_heads, hidden_size=a.d_model,
        intermediate_size=a.d_mlp, max_position_embeddings=a.n_ctx, rotary_pct=a.rotary_pct,
        use_parallel_residual=a.parallel_residual, attention_bias=a.qkv_bias,
        tie_word_embeddings=a.tied, vocab_size=a.vocab, bos_token_id=0, eos_token_id=0,
    )


def _random_config(vocab_size: int, n_layers: int, n_heads: int, d_model: int, n_ctx: int, **common: Any) -> Any:
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


FAMILY = Family(
    name="gpt_neox",
    blocks="gpt_neox.layers",
    head_out_proj="gpt_neox.layers.{layer}.attention.dense",
    mlp_out_proj="gpt_neox.layers.{layer}.mlp.dense_4h_to_h",
    defaults=dict(tied=False, learned_pos=False, qkv_bias=True, vocab=50304, n_ctx=2048, rotary_pct=0.25, parallel_residual=True),
    published={
        "EleutherAI/pythia-70m": (6, 8, 512), "EleutherAI/pythia-160m": (12, 12, 768), "EleutherAI/pythia-410m": (24, 16, 1024),
        "EleutherAI/pythia-1.4b": (24, 16, 2048), "EleutherAI/pythia-2.8b": (32, 32, 2560),
    },
    arch=_arch,
    hf_config=_hf_config,
    random_config=_random_config,
)
