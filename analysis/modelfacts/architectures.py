"""Architecture numbers of the public models, from their config alone, and reduced random copies.

`Arch` (analysis.modelfacts.shapes) holds what planning and the random-weight tests need: depth, heads, widths, vocabulary,
context, and the family's structural knobs (tied embeddings, learned positions, q/k/v biases,
rotary fraction, parallel residual, GPT-Neo's attention pattern). It comes from a local folder's
`config.json`, the Hugging Face cache (offline), or `PUBLIC`, a table of the published configs.

`PUBLIC` holds the values of each model's `config.json` on the Hugging Face hub (each family module's
`published` sizes with its `defaults`), written from public knowledge, since no hub is reachable here to download them: GPT-2 (openai-community/gpt2*:
n_layer, n_head, n_embd, vocab_size 50257, n_positions 1024, n_inner null = 4 x n_embd), Pythia
(EleutherAI/pythia-*: vocab_size 50304, max_position_embeddings 2048, rotary_pct 0.25,
use_parallel_residual true, tie_word_embeddings false, intermediate_size 4 x hidden_size) and
GPT-Neo (EleutherAI/gpt-neo-*: vocab_size 50257, max_position_embeddings 2048, window_size 256,
attention_types [[["global", "local"], n_layers / 2]], q/k/v without bias). The parameter counts
they give agree with the published ones (Pythia paper, table 1: 70,426,624 for pythia-70m, 162,322,944 for pythia-160m ...
2,775,208,960 for pythia-2.8b; 124,439,808 for GPT-2 small), and tests/test_architectures.py
checks `n_params` against Hugging Face's own count of a model built from each config.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path


from analysis.base.errors import InputError
from analysis.modelfacts.families import FAMILIES, family, save_random_weights
from analysis.modelfacts.shapes import Arch


def _public(family_name: str, n_layers: int, n_heads: int, d_model: int) -> Arch:
    return Arch(family=family_name, n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_mlp=4 * d_model,
                **family(family_name).defaults)


# The published models of every family (`Family.published`: name -> layers, heads, d_model), each with
# its family's structural knobs: the table planning and the size ladder read without any download.
PUBLIC: dict[str, Arch] = {name: _public(f.name, *size) for f in FAMILIES.values() for name, size in f.published.items()}


def from_hf_config(cfg: dict) -> Arch:
    """An `Arch` from a `config.json` dict of a supported family."""
    return family(cfg.get("model_type")).arch(cfg)


def hf_config(arch: Arch):  # noqa: ANN201 - a transformers PretrainedConfig of the family
    """The Hugging Face config of `arch` (its family's own mapping)."""
    return family(arch.family).hf_config(arch)


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
        return PUBLIC[name], "embedded table of published configs (analysis/modelfacts/architectures.py)"
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

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if len(tok) > arch.vocab:
        raise InputError(f"tokenizer of {tokenizer_dir} has {len(tok)} tokens, more than the vocabulary {arch.vocab}")
    return save_random_weights(hf_config(arch), tok, out_dir, seed=seed, bias_std=bias_std, init_std=init_std)
