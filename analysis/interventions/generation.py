"""Batched greedy generation under interventions, with the KV cache.

We drive Hugging Face's own `generate` on the model the bridge wraps, with the bridge's hooks
attached: the hooks fire inside the wrapped modules, HF handles left padding, position ids
and the cache. The bridge's own cached `generate` passes the cache under a name GPT-2
attention no longer reads with transformers 5 (docs/DESIGN.md §4) and goes wrong after the first new
token; `tests/test_generation.py` measures that and pins this path to plain HF greedy output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from analysis.core.cli import progress_disabled
from analysis.core.loading import LoadedModel
from analysis.core.prompts import TokenBatch
from analysis.interventions.edits import Edit, hooks_for, slice_edits


@dataclass(frozen=True)
class Generation:
    tokens: Int[Tensor, "batch new"]
    # Smallest top-1 minus top-2 logit gap over the generated steps: where it is tiny, another
    # machine's float rounding may pick the other token (docs/DESIGN.md §8).
    min_margin: Float[Tensor, " batch"]


@torch.no_grad()
def greedy_generate(
    model: LoadedModel,
    batch: TokenBatch,
    max_new_tokens: int,
    edits: Sequence[Edit] = (),
    *,
    chunk_size: int = 64,
    desc: str = "generate",
) -> Generation:
    """Exactly `max_new_tokens` greedy tokens per prompt (EOS does not stop a row early).

    Edits with a prompt-length value are indexed by prompt position; chunks keep the batch's
    left padding width, so prompt positions stay aligned with the edits' values.
    """
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    n = batch.input_ids.shape[0]
    out_tokens, out_margin = [], []
    for start in tqdm(range(0, n, chunk_size), desc=desc, disable=progress_disabled(), leave=False):
        rows = slice(start, min(start + chunk_size, n))
        ids, mask = batch.input_ids[rows], batch.attention_mask[rows]
        with model.bridge.hooks(fwd_hooks=hooks_for(slice_edits(edits, rows))):
            res = model.hf.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=model.spec.pad_id,
                eos_token_id=None,
                output_scores=True,
                return_dict_in_generate=True,
                use_cache=True,
            )
        out_tokens.append(res.sequences[:, ids.shape[1] :])
        scores = torch.stack(res.scores, 1).float()  # [chunk, new, vocab]
        top2 = scores.topk(2, dim=-1).values
        out_margin.append((top2[..., 0] - top2[..., 1]).min(1).values)
    return Generation(tokens=torch.cat(out_tokens).cpu(), min_margin=torch.cat(out_margin).cpu())  # results live on the CPU


def decode(model: LoadedModel, tokens: Int[Tensor, "batch new"]) -> list[str]:
    """Continuation text, cut at the first end-of-text token."""
    eos = model.tokenizer.eos_token_id
    texts = []
    for row in tokens.tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        texts.append(model.tokenizer.decode(row))
    return texts
