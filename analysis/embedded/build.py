"""Build `toy`, the embedded ground-truth model: a small GPT-2 whose emotion heads and MLP units
are known.

The pipeline must find what was planted here, so the plant is exact by construction and only
then trained:

- Every distinct span phrase of the prompt sets (with its leading space) is ONE added token, so
  an emotion prompt and its neutral twin have the same length and differ at exactly one position.
- Four residual dimensions E = (n, g, a, p) carry the class of a span token and nothing else:
  span tokens embed as one shared learned vector off E plus a fixed class vector on E; every
  other write into the residual stream (other tokens, positions, attention and MLP outputs) is
  zero on E.
- Only the planted head of emotion X (one per emotion, all in the last layer) reads E, and only
  its dimension X. No other head, no MLP and not the unembedding read E.
- Three more residual dimensions U = (U_g, U_a, U_p) carry the planted heads' output: the planted
  head of X writes U_X and nothing else (its slice of the attention output projection); nothing
  else writes U. One planted MLP unit per emotion (default: layer 3, the heads' own block, whose
  MLP runs after its attention) is the only reader of U_X; no other unit, head or the
  unembedding reads U.

So the class of the span can leave the span position only through the planted head of that class,
and that head's output reaches the rest of the model only as U_X, read by the planted unit (and,
unavoidably, by every LayerNorm's mean and variance). Training (LM loss on templated
continuations; planted head or planted unit zeroed -> neutral target, a random other head or
unit zeroed -> same target) makes the behaviour follow the structure. The weights are projected
back onto the constraints after every optimizer step and checked on the saved folder;
`planted.json` in the folder records the heads and units.

CLI: python -m analysis.toy_model --output results/models/toy [--profile P ...] [--seed 0] [--steps N]
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from analysis.base.vocabulary import EMOTIONS
from analysis.base.contract import check_model_output, PLANTED_SCHEMA, write_planted
from analysis.embedded.construction import CLASS_VECTORS, CLASSES, CONSTRUCTION, PICKLE_SUFFIXES, ToyConfig
from analysis.embedded.corpus import corpus_tokenizer, encode_corpus, load_continuations, load_templates, span_classes, wrap_tokenizer
from analysis.embedded.plant import constraint_violations, Plant, plant_from_doc
from analysis.embedded.train import _deterministic, train
from analysis.base.errors import InputError


def _verify_folder(folder: Path, doc: Mapping[str, Any], texts: Sequence[str]) -> None:
    """Reload what was saved and check it the way the pipeline will use it."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    problems = constraint_violations(load_file(folder / "model.safetensors"), plant_from_doc(doc))
    if problems:
        raise RuntimeError("toy model breaks its construction: " + "; ".join(problems))
    tok = AutoTokenizer.from_pretrained(folder)
    for text in texts:
        ids = tok(text, add_special_tokens=False).input_ids
        if tok(text).input_ids != ids or tok.decode(ids) != text:
            raise RuntimeError(f"saved tokenizer does not round-trip {text!r} (or adds special tokens)")


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder into place; an old folder is moved aside first, then deleted."""
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
        os.replace(dst, old / dst.name)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)


def build_toy_model(config: ToyConfig, output: Path) -> Path:
    """Build, train, save and verify the toy model in `output` (a HF folder + planted.json)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    if Path(output).suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(
            f"output {output} ends in {Path(output).suffix}: the toy model is a Hugging Face folder "
            f"(safetensors); pickled outputs are refused because loading them runs code"
        )
    output = check_model_output(output, "toy")

    templates = load_templates(config)
    phrases = span_classes(templates)
    bank = load_continuations(config)
    texts = [p.text for row in templates for p in row]

    tok = corpus_tokenizer(templates, bank, phrases, config.vocab_size)
    span_ids = {tok.token_to_id(p): cls for p, cls in phrases.items()}
    rows, conts = encode_corpus(tok, templates, bank, span_ids, config.n_positions)
    plant = Plant(
        emotion_dims=config.emotion_dims,
        planted=config.planted_heads,
        span_ids={c: tuple(i for i, cc in span_ids.items() if cc == c) for c in CLASSES},
        span_scale=float(config.span_scale),
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_embd=config.n_embd,
        unit_dims=config.unit_dims,
        units=config.units,
    )

    with _deterministic(config.seed):
        gpt_config = GPT2Config(
            vocab_size=tok.get_vocab_size(),
            n_positions=config.n_positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=False,  # lm_head must be free to ignore E while wte writes it
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )
        model = GPT2LMHeadModel(gpt_config)
        assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
        final_loss = train(model, plant, rows, conts, config)

    planted, units = config.planted_heads, config.units
    doc = {
        "schema": PLANTED_SCHEMA,
        "heads": sorted([list(lh) for lh in planted.values()]),
        "by_emotion": {e: [list(planted[e])] for e in EMOTIONS},
        "units": sorted([list(ln) for ln in units.values()]),
        "units_by_emotion": {e: [list(units[e])] for e in EMOTIONS},
        "construction": CONSTRUCTION,
        "params": {
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
            "planted": [list(p) for p in config.planted],
            "planted_units": [list(u) for u in config.planted_units],
            "d_mlp": config.d_mlp,
            "emotion_dims": config.emotion_dims,
            "unit_dims": config.unit_dims,
            "class_vectors": {c: CLASS_VECTORS[k].tolist() for k, c in enumerate(CLASSES)},
            "span_token_ids": {c: list(plant.span_ids[c]) for c in CLASSES},
            "span_phrases": {c: [p for p, cc in phrases.items() if cc == c] for c in CLASSES},
            "vocab_size_total": tok.get_vocab_size(),
            "n_templates": len(rows),
            "final_train_loss": round(final_loss, 6),
        },
    }

    output.parent.mkdir(parents=True, exist_ok=True)  # only now: a failed build creates no folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar is only noise in logs
    try:
        model.save_pretrained(tmp)
        wrap_tokenizer(tok).save_pretrained(tmp)
        write_planted(tmp, doc)
        _verify_folder(tmp, doc, texts)
        tmp.chmod(0o755)  # mkdtemp and the atomic writers create owner-only modes; a model is shared
        for f in tmp.iterdir():
            f.chmod(0o644)
        _replace_dir(tmp, output)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        if tmp.exists():
            shutil.rmtree(tmp)
    return output
