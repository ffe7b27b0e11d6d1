"""Architecture numbers of the public models, from their config alone, and reduced random copies.

`Arch` holds what planning and the random-weight tests need: depth, heads, widths, vocabulary,
context, and the family's structural knobs (tied embeddings, learned positions, q/k/v biases,
rotary fraction, parallel residual, GPT-Neo's attention pattern). It comes from a local folder's
`config.json`, the Hugging Face cache (offline), or `PUBLIC`, a table of the published configs.

`PUBLIC` holds the values of each model's `config.json` on the Hugging Face hub, written from
public knowledge, since no hub is reachable here to download them: GPT-2 (openai-community/gpt2*:
n_layer, n_head, n_embd, vocab_size 50257, n_positions 1024, n_inner null = 4 x n_embd), Pythia
(EleutherAI/pythia-*: vocab_size 50304, max_position_embeddings 2048, rotary_pct 0.25,
use_parallel_residual true, tie_word_embeddings false, intermediate_size 4 x hidden_size) and
GPT-Neo (EleutherAI/gpt-neo-*: vocab_size 50257, max_position_embeddings 2048, window_size 256,
attention_types [[["global", "local"], n_layers / 2]], q/k/v without bias). The parameter counts
they give agree with the published ones (Pythia paper, table 1: 162,322,944 for pythia-160m ...
2,775,208,960 for pythia-2.8b; 124,439,808 for GPT-2 small), and tests/test_architectures.py
checks `n_params` against Hugging Face's own count of a model built from each config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path


from analysis.errors import InputError


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

    def hf_config(self):  # noqa: ANN201 - a transformers PretrainedConfig of the family
        from transformers import GPT2Config, GPTNeoConfig, GPTNeoXConfig

        common = dict(vocab_size=self.vocab, bos_token_id=0, eos_token_id=0)
        if self.family == "gpt2":
            return GPT2Config(n_layer=self.n_layers, n_head=self.n_heads, n_embd=self.d_model, n_inner=self.d_mlp,
                              n_positions=self.n_ctx, **common)
        if self.family == "gpt_neox":
            return GPTNeoXConfig(
                num_hidden_layers=self.n_layers, num_attention_heads=self.n_heads, hidden_size=self.d_model,
                intermediate_size=self.d_mlp, max_position_embeddings=self.n_ctx, rotary_pct=self.rotary_pct,
                use_parallel_residual=self.parallel_residual, attention_bias=self.qkv_bias,
                tie_word_embeddings=self.tied, **common,
            )
        if self.family == "gpt_neo":
            kinds = ["global", "local"] if self.local_window else ["global"]
            return GPTNeoConfig(
                num_layers=self.n_layers, num_heads=self.n_heads, hidden_size=self.d_model, intermediate_size=self.d_mlp,
                max_position_embeddings=self.n_ctx, attention_types=[[kinds, self.n_layers // len(kinds)]],
                window_size=self.local_window or 256, **common,
            )
        raise InputError(f"unknown model family {self.family!r}; supported: {', '.join(FAMILY_DEFAULTS)}")


# The structural knobs each family fixes; the table rows below add only the sizes.
FAMILY_DEFAULTS: dict[str, dict] = {
    "gpt2": dict(tied=True, learned_pos=True, qkv_bias=True, vocab=50257, n_ctx=1024),
    "gpt_neox": dict(tied=False, learned_pos=False, qkv_bias=True, vocab=50304, n_ctx=2048, rotary_pct=0.25,
                     parallel_residual=True),
    "gpt_neo": dict(tied=True, learned_pos=True, qkv_bias=False, vocab=50257, n_ctx=2048, local_window=256),
}


def _public(family: str, n_layers: int, n_heads: int, d_model: int) -> Arch:
    return Arch(family=family, n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_mlp=4 * d_model,
                **FAMILY_DEFAULTS[family])


PUBLIC: dict[str, Arch] = {
    "gpt2": _public("gpt2", 12, 12, 768),
    "gpt2-medium": _public("gpt2", 24, 16, 1024),
    "gpt2-large": _public("gpt2", 36, 20, 1280),
    "gpt2-xl": _public("gpt2", 48, 25, 1600),
    "EleutherAI/pythia-160m": _public("gpt_neox", 12, 12, 768),
    "EleutherAI/pythia-410m": _public("gpt_neox", 24, 16, 1024),
    "EleutherAI/pythia-1.4b": _public("gpt_neox", 24, 16, 2048),
    "EleutherAI/pythia-2.8b": _public("gpt_neox", 32, 32, 2560),
    "EleutherAI/gpt-neo-125M": _public("gpt_neo", 12, 12, 768),
    "EleutherAI/gpt-neo-1.3B": _public("gpt_neo", 24, 16, 2048),
    "EleutherAI/gpt-neo-2.7B": _public("gpt_neo", 32, 20, 2560),
}
PUBLIC["openai-community/gpt2"] = PUBLIC["gpt2"]
for _size in ("medium", "large", "xl"):
    PUBLIC[f"openai-community/gpt2-{_size}"] = PUBLIC[f"gpt2-{_size}"]


def from_hf_config(cfg: dict) -> Arch:
    """An `Arch` from a `config.json` dict of a supported family."""
    family = cfg.get("model_type")
    if family not in FAMILY_DEFAULTS:
        raise InputError(f"model family {family!r} is not supported; supported families: {', '.join(FAMILY_DEFAULTS)}")
    if family == "gpt2":
        d = cfg["n_embd"]
        return Arch(family=family, n_layers=cfg["n_layer"], n_heads=cfg["n_head"], d_model=d, d_mlp=cfg.get("n_inner") or 4 * d,
                    vocab=cfg["vocab_size"], n_ctx=cfg["n_positions"], tied=cfg.get("tie_word_embeddings", True),
                    learned_pos=True, qkv_bias=True)
    if family == "gpt_neox":
        return Arch(family=family, n_layers=cfg["num_hidden_layers"], n_heads=cfg["num_attention_heads"],
                    d_model=cfg["hidden_size"], d_mlp=cfg["intermediate_size"], vocab=cfg["vocab_size"],
                    n_ctx=cfg["max_position_embeddings"], tied=cfg.get("tie_word_embeddings", False), learned_pos=False,
                    qkv_bias=cfg.get("attention_bias", True), rotary_pct=cfg.get("rotary_pct", 0.25),
                    parallel_residual=cfg.get("use_parallel_residual", True))
    d = cfg["hidden_size"]
    kinds = {k for pattern, _ in cfg.get("attention_types", [[["global"], 1]]) for k in pattern}
    return Arch(family=family, n_layers=cfg["num_layers"], n_heads=cfg["num_heads"], d_model=d,
                d_mlp=cfg.get("intermediate_size") or 4 * d, vocab=cfg["vocab_size"], n_ctx=cfg["max_position_embeddings"],
                tied=cfg.get("tie_word_embeddings", True), learned_pos=True, qkv_bias=False,
                local_window=cfg.get("window_size", 256) if "local" in kinds else 0)


def lookup(name: str) -> tuple[Arch, str]:
    """The architecture of `name` and where it came from: a folder, the HF cache, or `PUBLIC`."""
    path = Path(name) / "config.json"
    source = None
    if path.is_file():
        source = str(path)
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        if isinstance(cached, str):
            source = cached
    if source is not None:
        return from_hf_config(json.loads(Path(source).read_text())), source
    if name in PUBLIC:
        return PUBLIC[name], "embedded table of published configs (analysis/architectures.py)"
    raise InputError(
        f"model {name!r}: no config.json in a local folder or the Hugging Face cache, and not in the embedded table "
        f"({', '.join(k for k in PUBLIC if not k.startswith('openai-community/'))}); pass a model folder"
    )


# --- reduced random copies ---------------------------------------------------------------


def reduced(arch: Arch, *, vocab: int, n_layers: int = 2, d_head: int = 16, n_ctx: int = 128, local_window: int = 8) -> Arch:
    """The same family and knobs at a test's size: the head count kept exactly (GPT-2 XL's 25,
    Pythia-2.8B's 32), head width, depth, vocabulary and context cut; MLP ratio, rotary fraction,
    parallel residual, tying and biases kept; GPT-Neo's global/local alternation kept with a window
    shorter than the test prompts, so that local layers really drop keys."""
    return replace(
        arch, n_layers=n_layers, d_model=arch.n_heads * d_head, d_mlp=arch.d_mlp // arch.d_model * arch.n_heads * d_head,
        vocab=vocab, n_ctx=n_ctx, local_window=local_window if arch.local_window else 0,
    )


def save_random(arch: Arch, out_dir: Path, *, tokenizer_dir: Path, seed: int = 0, bias_std: float = 0.1, init_std: float = 0.02) -> Path:
    """Random weights for `arch`, saved with the tokenizer of `tokenizer_dir` as a local HF folder.

    Biases are drawn non-zero: a zero bias would hide the value-bias folding trap (docs/DESIGN.md §4).
    """
    from transformers import AutoTokenizer

    from analysis.families import save_random_weights

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if len(tok) > arch.vocab:
        raise InputError(f"tokenizer of {tokenizer_dir} has {len(tok)} tokens, more than the vocabulary {arch.vocab}")
    return save_random_weights(arch.hf_config(), tok, out_dir, seed=seed, bias_std=bias_std, init_std=init_std)
