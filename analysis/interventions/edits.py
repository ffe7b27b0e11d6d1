"""Exact interventions on head outputs (`hook_z`) and MLP units (`mlp.hook_post`).

One primitive serves every experiment: an `Edit` overwrites one component (a head's z, or one
MLP unit's activation) with a value, at the positions a mask selects. Zero, mean and resample
ablation and activation patching differ only in the value and the mask they build.

A head's contribution to the residual stream is `z[..., h, :] @ W_O[h]`, so replacing z is
replacing the head's output exactly; `hook_v` (what the seed patched) is not. Likewise an MLP
unit's contribution is its activation times one row of the down-projection.

An Edit runs on one of two paths: the bridge's hook points (`hooks_for`: experiments and
generation), or the plain HF modules (`component_edits`: the screenings' fast path), which edit
the input of the linear map that reads the component (a head's slice of the attention
out-projection input, a neuron's column of the MLP down-projection input). Tests hold the two
paths equal to 1e-5 for every family, and `exact_patching_sites` to a naive full re-run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from analysis.core.loading import LoadedModel
from analysis.core.prompts import PromptPairs, TokenBatch, tokenize
from analysis.core.sites import Site
from analysis.base.vocabulary import POSITION_MODES


Hook = tuple[str, Callable[[Tensor, object], Tensor]]




@dataclass(frozen=True)
class Edit:
    """Overwrite `site` with `value` where `mask` is True.

    value: [batch, P, *unit] — P is the prompt length, or 1 to broadcast over every position
    (prompt and generated). mask: [batch, P]. `prompt_only` edits carry a value for prompt
    positions only (patching: generated positions have no source) and leave later steps alone.
    `tail` ([batch, 1, *unit]): the value for generated positions of a position-wise edit that
    must keep acting there (resample ablation), used at every cached generation step.
    """

    site: Site
    value: Float[Tensor, "batch pos ..."]
    mask: Bool[Tensor, "batch pos"]
    prompt_only: bool
    tail: Float[Tensor, "batch 1 ..."] | None = None

    def rows(self, rows: slice) -> Edit:
        tail = None if self.tail is None else self.tail[rows]
        return Edit(self.site, self.value[rows], self.mask[rows], self.prompt_only, tail)


def _apply(x: Tensor, edits: Sequence[Edit]) -> Tensor:
    # x: [batch, pos, head, d_head] for z, [batch, pos, d_mlp] for MLP units.
    x = x.clone()
    for e in edits:
        width = e.value.shape[1]
        value, mask = e.value, e.mask
        if width > 1 and x.shape[1] < width:  # a cached generation step: only new positions
            if e.prompt_only or e.tail is None:
                continue  # no source for generated positions
            value, mask = e.tail, torch.ones(e.tail.shape[0], 1, dtype=torch.bool)
            cols = slice(None)
        else:
            cols = slice(None) if width == 1 else slice(0, width)
        cur = x[:, cols, e.site.index]
        m = mask.to(x.device).view(*mask.shape, *([1] * (cur.dim() - 2)))
        x[:, cols, e.site.index] = torch.where(m, value.to(device=x.device, dtype=x.dtype), cur)
    return x


def hooks_for(edits: Sequence[Edit]) -> list[Hook]:
    """One forward hook per hook point, applying every edit at that point."""
    by_name: dict[str, list[Edit]] = defaultdict(list)
    for e in edits:
        by_name[e.site.hook_name].append(e)
    return [(name, (lambda x, hook, es=tuple(es): _apply(x, es))) for name, es in by_name.items()]


def slice_edits(edits: Sequence[Edit], rows: slice) -> list[Edit]:
    return [e.rows(rows) for e in edits]


def position_ids(attention_mask: Int[Tensor, "batch pos"]) -> Int[Tensor, "batch pos"]:
    # Left padding: real tokens must get positions 0..n-1 as if unpadded; HF's GPT-2 forward
    # does not derive them from the mask.
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def last_logits(model: LoadedModel, batch: TokenBatch, hooks: Sequence[Hook] = ()) -> Float[Tensor, "batch vocab"]:
    """Next-token logits after the last prompt token (only that position is unembedded)."""
    with model.bridge.hooks(fwd_hooks=list(hooks)):
        out = model.hf(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=position_ids(batch.attention_mask),
            logits_to_keep=1,
            use_cache=False,
        )
    return out.logits[:, -1, :]


def capture(model: LoadedModel, batch: TokenBatch, names: Iterable[str], hooks: Sequence[Hook] = ()) -> dict[str, Tensor]:
    """Activations at `names` (only those: caching every hook of GPT-2 costs gigabytes)."""
    store: dict[str, Tensor] = {}

    def grab(name: str) -> Callable[[Tensor, object], Tensor]:
        # Keyed by the name asked for: the bridge reports aliases (hook_z) by their target name.
        def fn(x: Tensor, hook: object) -> Tensor:
            store[name] = x.detach().clone()
            return x

        return fn

    with model.bridge.hooks(fwd_hooks=list(hooks) + [(n, grab(n)) for n in dict.fromkeys(names)]):
        model.hf(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=position_ids(batch.attention_mask),
            logits_to_keep=1,
            use_cache=False,
        )
    return store


def zero_edits(sites: Sequence[Site], batch_size: int, unit_shape: dict[Site, tuple[int, ...]]) -> list[Edit]:
    return [
        Edit(s, torch.zeros(batch_size, 1, *unit_shape[s]), torch.ones(batch_size, 1, dtype=torch.bool), False)
        for s in sites
    ]


def site_values(acts: dict[str, Tensor], site: Site) -> Tensor:
    """The component's activations: [batch, pos, *unit]."""
    return acts[site.hook_name][:, :, site.index]


def bos_mask(attention_mask: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch pos"]:
    """True at each row's BOS: the first real token (rows are left-padded, BOS prepended by us)."""
    return attention_mask.bool() & (attention_mask.cumsum(-1) == 1)


def constant_edits(sites: Sequence[Site], values: dict[Site, Float[Tensor, "batch ..."]]) -> list[Edit]:
    """Hold each site at a per-row value at every position, generated ones included.

    Used by mean ablation (one value for all rows and positions, generated ones included: a mean
    over the reference's tokens is defined wherever the ablation must act).
    """
    out = []
    for s in sites:
        v = values[s]
        out.append(Edit(s, v.unsqueeze(1), torch.ones(v.shape[0], 1, dtype=torch.bool), False))
    return out


def position_map(
    mode: str, source: TokenBatch, target: TokenBatch
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """For each target position, the source position patched into it, and whether it is patched.

    Both batches are left-padded to the same length, so the last prompt token is at the same
    index in both. `all` needs pairs of equal token length; `span` aligns the two spans at
    their ends (extra leading span tokens on either side are left unpatched).
    """
    if mode not in POSITION_MODES:
        raise ValueError(mode)
    b, t = target.input_ids.shape
    device = target.input_ids.device
    idx = torch.arange(t, device=device).expand(b, t).clone()
    if mode == "all":
        mask = target.attention_mask.bool() & source.attention_mask.bool()
    elif mode == "last":
        mask = torch.zeros(b, t, dtype=torch.bool, device=device)
        mask[:, -1] = True
    else:
        mask = torch.zeros(b, t, dtype=torch.bool, device=device)
        for row in range(b):
            tpos = target.span_mask[row].nonzero().flatten()
            spos = source.span_mask[row].nonzero().flatten()
            k = min(len(tpos), len(spos))
            if k:
                idx[row, tpos[-k:]] = spos[-k:]
                mask[row, tpos[-k:]] = True
    return idx, mask


def patch_edits(
    sites: Sequence[Site], source_acts: dict[str, Tensor], idx: Tensor, mask: Tensor
) -> list[Edit]:
    """Copy each site's source activation into the target at the mapped prompt positions."""
    out = []
    for s in sites:
        src = site_values(source_acts, s)  # [batch, pos, *unit]
        gather_idx = idx.view(*idx.shape, *([1] * (src.dim() - 2))).expand(*idx.shape, *src.shape[2:])
        out.append(Edit(s, src.gather(1, gather_idx), mask, True))
    return out


def split_batch(batch: TokenBatch, n: int) -> tuple[TokenBatch, TokenBatch]:
    """Rows [:n] and [n:] of one batch (both keep the common left-padded width)."""

    def take(rows: slice) -> TokenBatch:
        return TokenBatch(
            input_ids=batch.input_ids[rows],
            attention_mask=batch.attention_mask[rows],
            span_mask=batch.span_mask[rows],
            lengths=batch.lengths[rows],
        )

    return take(slice(0, n)), take(slice(n, None))


def tokenize_pairs(model: LoadedModel, pairs: PromptPairs) -> tuple[TokenBatch, TokenBatch]:
    """Emotion and neutral prompts padded to one width, so position i means the same in both, on
    the model's device."""
    prompts = list(pairs.emotion_prompts) + list(pairs.neutral_prompts)
    batch = tokenize(model.tokenizer, prompts, bos_id=model.spec.bos_id, pad_id=model.spec.pad_id)
    return split_batch(batch.to(model.precision.device), len(pairs))
