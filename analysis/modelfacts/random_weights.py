"""Random-weight models of each supported family, saved as local Hugging Face folders.

No hub is reachable where this project is built, so GPT-2, Pythia (GPT-NeoX) and GPT-Neo are
exercised through the same loading code on random weights: same architecture, same FLOPs,
no download. Biases are drawn non-zero on purpose: a zero bias would hide the value-bias
folding trap (docs/DESIGN.md §4).
"""

from __future__ import annotations

from pathlib import Path

from analysis.modelfacts.families import random_config, save_random_weights


BYTE_LEVEL_VOCAB = 1024


def build_tokenizer(out_dir: Path, corpus: list[str], vocab_size: int = BYTE_LEVEL_VOCAB) -> None:
    """A small byte-level BPE tokenizer, GPT-2 conventions: one `<|endoftext|>` for BOS/EOS/PAD."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        add_bos_token=False,
    )
    tok.save_pretrained(out_dir)


def save_random_model(
    family: str,
    out_dir: Path,
    *,
    tokenizer_dir: Path,
    n_layers: int = 2,
    n_heads: int = 4,
    d_model: int = 64,
    n_ctx: int = 128,
    vocab_size: int | None = None,
    seed: int = 0,
    bias_std: float = 0.1,
    init_std: float = 0.02,
) -> Path:
    """Save a random `family` model with the tokenizer of `tokenizer_dir` into `out_dir`.

    `vocab_size` larger than the tokenizer pads the embedding (e.g. 50257 for GPT-2-small
    FLOPs); ids past the tokenizer are never produced by it.
    """
    from transformers import AutoTokenizer

    from analysis.base.contract import check_model_output, write_random_record

    check_model_output(out_dir, "random", inputs=[tokenizer_dir])
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab = max(vocab_size or 0, len(tok))
    config = random_config(family, vocab, n_layers, n_heads, d_model, n_ctx)
    out = save_random_weights(config, tok, Path(out_dir), seed=seed, bias_std=bias_std, init_std=init_std)
    # the record that names this folder's writer (analysis.base.contract.model_builder)
    write_random_record(out, {"family": family, "n_layers": n_layers, "n_heads": n_heads, "d_model": d_model, "n_ctx": n_ctx,
                              "vocab_size": vocab, "seed": seed, "bias_std": bias_std, "init_std": init_std})
    return out
