"""Generation speed with a head ablated, against plain Hugging Face `generate` on the same model.

GPT-2-small architecture with random weights (the FLOPs of GPT-2, no download), the 70
baseline gratitude prompts, 15 greedy tokens. Ours: `analysis.generation.greedy_generate` through
the bridge with one head zero-ablated at every step (what `analysis.head_ablation` runs). Peer:
`AutoModelForCausalLM(attn_implementation="eager").generate`, no hooks. Interleaved repeats in
one process, median, ratio printed: a bare time on a shared 2-core machine says little.
Run: pytest -m benchmark -s tests/benchmarks/test_generation_speed.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from analysis.core.loading import load_model
from analysis.core.prompts import load_prompt_file, tokenize
from analysis.core.sites import Site
from analysis.experiments.config import ExperimentConfig
from analysis.interventions.edits import Edit, zero_edits
from analysis.interventions.generation import greedy_generate

pytestmark = pytest.mark.benchmark
REPO = Path(__file__).resolve().parents[2]
NEW_TOKENS = 15
REPEATS = 3
MAX_RATIO = 1.2


def test_ablated_generation_is_within_20_percent_of_plain_hf(gpt2_small_random: Path, median_times) -> None:  # noqa: ANN001
    from transformers import AutoModelForCausalLM

    model = load_model(str(gpt2_small_random))
    prompts = load_prompt_file(REPO / "data/prompts/baseline/gratitude.txt")
    assert len(prompts) == 70
    batch = tokenize(model.tokenizer, prompts, bos_id=model.spec.bos_id, pad_id=model.spec.pad_id)
    n = batch.input_ids.shape[0]
    chunk = ExperimentConfig.__dataclass_fields__["chunk_size"].default  # what the experiments use
    site = Site("head", 5, 3)
    ablate = zero_edits([site], n, {site: (model.spec.d_head,)})
    # An edit that rewrites nothing: the hook runs (clone + where) but every value is the model's own.
    identity = [Edit(site, torch.zeros(n, 1, model.spec.d_head), torch.zeros(n, 1, dtype=torch.bool), False)]
    hf = AutoModelForCausalLM.from_pretrained(gpt2_small_random, attn_implementation="eager").eval()

    @torch.no_grad()
    def plain() -> torch.Tensor:
        out = hf.generate(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1, pad_token_id=model.spec.pad_id, eos_token_id=None,
        )
        return out[:, batch.input_ids.shape[1] :]

    def ours(edits: list[Edit]) -> Callable[[], torch.Tensor]:
        return lambda: greedy_generate(model, batch, NEW_TOKENS, edits, chunk_size=chunk).tokens

    ref = plain()  # also warms both paths up
    same = ours(identity)()
    assert torch.equal(same, ref), "an identity hook changed the greedy tokens"
    ablated = ours(ablate)()
    assert not torch.equal(ablated, ref), "the ablation changed nothing: the timing compares a no-op"

    times = median_times({"plain_hf": plain, "ours_ablated": ours(ablate), "ours_identity": ours(identity)}, repeats=REPEATS)
    ratio = times["ours_ablated"] / times["plain_hf"]
    print(
        f"\ngeneration, 70 prompts x {NEW_TOKENS} tokens, GPT-2-small arch, {torch.get_num_threads()} threads, "
        f"median of {REPEATS} interleaved: plain HF {times['plain_hf']:.2f}s, ours ablated {times['ours_ablated']:.2f}s, "
        f"ours identity {times['ours_identity']:.2f}s; ratio ours/plain = {ratio:.3f} (limit {MAX_RATIO})"
    )
    assert ratio <= MAX_RATIO, f"ablated generation is {ratio:.2f}x plain HF generate (limit {MAX_RATIO})"
