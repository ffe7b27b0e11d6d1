"""Greedy generation through the bridge equals plain Hugging Face greedy generation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis.core.loading import load_model, LoadedModel
from analysis.core.prompts import Prompt, tokenize
from analysis.core.sites import Site
from analysis.interventions.edits import hooks_for, position_ids, zero_edits
from analysis.interventions.generation import decode, greedy_generate
from analysis.modelfacts.families import SUPPORTED_FAMILIES as FAMILIES
from analysis.modelfacts.random_weights import save_random_model

TEXTS = [
    "Hi Maria, thank you so much",
    "The meeting",
    "I am so sorry for the trouble with the",
    "Dear team",
    "I am furious about this delay and",
    "please",
    "Thank you",
    "The report is ready and the meeting is at noon",
    "Hi Maria, I read your message this morning and I just wanted to say that",
]
NEW = 10


@pytest.fixture(scope="module")
def spiky_models(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> dict[str, Path]:
    # Larger init so greedy choices are not decided by float noise (margins >> 1e-4).
    root = tmp_path_factory.mktemp("spiky")
    return {f: save_random_model(f, root / f, tokenizer_dir=tokenizer_dir, seed=3, init_std=0.3) for f in FAMILIES}


def _batch(model: LoadedModel, texts: list[str]):  # noqa: ANN202
    return tokenize(model.tokenizer, [Prompt(t, (0, 2)) for t in texts], bos_id=model.spec.bos_id, pad_id=model.spec.pad_id)


def _uncached(model: LoadedModel, batch, hooks=()) -> torch.Tensor:  # noqa: ANN001
    """Reference: re-run the whole sequence every step, no cache, argmax of the last position."""
    ids, mask = batch.input_ids, batch.attention_mask
    out = []
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(hooks)):
        for _ in range(NEW):
            logits = model.hf(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return torch.cat(out, 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_no_hook_equals_plain_hf_generate(family: str, spiky_models: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    model = load_model(str(spiky_models[family]))
    batch = _batch(model, TEXTS)
    ours = greedy_generate(model, batch, NEW, chunk_size=4)
    hf = AutoModelForCausalLM.from_pretrained(spiky_models[family], attn_implementation="eager").eval()
    ref = hf.generate(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=NEW,
        do_sample=False, pad_token_id=model.spec.pad_id, eos_token_id=None,
    )[:, batch.input_ids.shape[1]:]
    assert torch.equal(ours.tokens, ref)
    # Each prompt alone (no padding) gives the same continuation as inside the padded batch.
    for i, text in enumerate(TEXTS[:4]):
        alone = greedy_generate(model, _batch(model, [text]), NEW)
        assert torch.equal(alone.tokens[0], ours.tokens[i])
    assert float(ours.min_margin.min()) > 0.0
    assert len(set(map(tuple, ours.tokens.tolist()))) > 1, "degenerate model: every row the same"


@pytest.mark.parametrize("family", FAMILIES)
def test_with_hook_equals_uncached_generation(family: str, spiky_models: dict[str, Path]) -> None:
    model = load_model(str(spiky_models[family]))
    batch = _batch(model, TEXTS)
    site = Site("head", 0, 1)
    edits = zero_edits([site], len(TEXTS), {site: (model.spec.d_head,)})
    cached = greedy_generate(model, batch, NEW, edits)
    assert torch.equal(cached.tokens, _uncached(model, batch, hooks_for(edits)))
    clean = greedy_generate(model, batch, NEW)
    assert not torch.equal(cached.tokens, clean.tokens), "the ablation changed nothing: the check is vacuous"


def test_unfixed_bridge_cache_is_wrong_upstream(spiky_models: dict[str, Path]) -> None:
    """The trap we work around (docs/DESIGN.md §4), measured: without the fix, cached generation drifts.

    If this starts failing, transformer-lens or transformers fixed the cache hand-off and
    `install_kv_cache_fix` has become a no-op that can be dropped.
    """
    from transformer_lens.model_bridge import TransformerBridge

    path = spiky_models["gpt2"]
    model = load_model(str(path))
    raw = TransformerBridge.boot_transformers(str(path), device="cpu", tokenizer=model.tokenizer).eval()
    batch = _batch(model, TEXTS)
    with torch.no_grad():
        wrong = raw.original_model.generate(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=NEW,
            do_sample=False, pad_token_id=0, eos_token_id=None,
        )[:, batch.input_ids.shape[1]:]
    right = _uncached(model, batch)
    first_ok = torch.equal(wrong[:, 0], right[:, 0])
    later_wrong = (wrong[:, 1:] != right[:, 1:]).float().mean().item()
    print(f"unfixed bridge: first token equal={first_ok}, later tokens wrong={later_wrong:.0%}")
    assert first_ok and later_wrong > 0.5


def test_decode_cuts_at_end_of_text(spiky_models: dict[str, Path]) -> None:
    model = load_model(str(spiky_models["gpt2"]))
    ids = model.tokenizer(" the meeting", add_special_tokens=False)["input_ids"]
    eos = model.tokenizer.eos_token_id
    tokens = torch.tensor([ids + [eos] + ids])
    assert decode(model, tokens) == [" the meeting"]
