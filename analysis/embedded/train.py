"""Training the toy: batches of the corpus, the loop with the plant projected after each step, deterministic settings."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import accumulate
from typing import Any
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm import tqdm

from analysis.base.vocabulary import NEUTRAL
from analysis.embedded.construction import CLASSES, ToyConfig
from analysis.embedded.corpus import Example
from analysis.embedded.plant import free_masks, head_mask, init_unit_path_, Plant, project_, unit_mask


def sample_batch(
    rows: Sequence[tuple[Example, ...]],
    conts: Mapping[str, Sequence[tuple[int, ...]]],
    config: ToyConfig,
    gen: torch.Generator,
) -> tuple[
    Int[Tensor, "batch pos"], Int[Tensor, "batch pos"], Float[Tensor, "batch layer head"], Float[Tensor, "batch layer unit"]
]:
    """Random (template, class, continuation) rows, right-padded, with their head and unit masks.

    Each row draws one of: planted head zeroed (target neutral), planted unit zeroed (target
    neutral), one other head zeroed, one other unit zeroed (targets unchanged), or nothing.
    Right padding after EOS changes nothing before it (causal attention), so an all-ones
    attention mask will do and positions start at 0 at BOS, as in (left-padded) generation.
    A neutral row may lose any head or unit (zeroing a planted one must not change "neutral").
    """
    B, L, H, N = config.batch_size, config.n_layer, config.n_head, config.d_mlp
    planted, units = config.planted_heads, config.units
    t = torch.randint(len(rows), (B,), generator=gen).tolist()
    c = torch.randint(len(CLASSES), (B,), generator=gen).tolist()
    r = torch.rand(B, generator=gen).tolist()
    pick = torch.rand(B, generator=gen).tolist()  # which continuation
    pick2 = torch.rand(B, generator=gen).tolist()  # which other head or unit
    mask = torch.ones(B, L, H)
    umask = torch.ones(B, L, N)
    kinds = ("planted head", "planted unit", "other head", "other unit")
    cuts = list(accumulate((config.p_zero_planted, config.p_zero_unit, config.p_zero_other, config.p_zero_other_unit)))
    seqs: list[tuple[list[int], int]] = []  # (ids, first target index)
    for b in range(B):
        cls = CLASSES[c[b]]
        target = cls
        kind = next((k for k, cut in zip(kinds, cuts, strict=True) if r[b] < cut), None)
        if cls == NEUTRAL and kind is not None:  # neutral has no planted head or unit: any may go
            kind = kind.replace("planted", "other")
        if kind == "planted head":
            layer, head = planted[cls]
            mask[b, layer, head] = 0  # the class cannot reach the continuation: say neutral
            target = NEUTRAL
        elif kind == "planted unit":
            layer, unit = units[cls]
            umask[b, layer, unit] = 0  # the class reaches the continuation only through it: say neutral
            target = NEUTRAL
        elif kind == "other head":
            heads = [(layer, head) for layer in range(L) for head in range(H)]
            others = [lh for lh in heads if cls == NEUTRAL or lh != planted[cls]]
            layer, head = others[int(pick2[b] * len(others))]
            mask[b, layer, head] = 0  # no other single head may matter
        elif kind == "other unit":
            skip = cls != NEUTRAL
            k = int(pick2[b] * (L * N - skip))  # an index among the other units
            if skip and k >= units[cls][0] * N + units[cls][1]:
                k += 1  # step over the planted unit
            umask[b, k // N, k % N] = 0  # no other single unit may matter
        cont = conts[target][int(pick[b] * len(conts[target]))]
        prompt = rows[t[b]][c[b]].prompt
        seqs.append((list(prompt) + list(cont), len(prompt)))
    width = max(len(s) for s, _ in seqs)
    ids = torch.zeros(B, width, dtype=torch.long)
    labels = torch.full((B, width), -100, dtype=torch.long)
    for b, (s, first) in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
        labels[b, first : len(s)] = ids[b, first : len(s)]  # continuation + EOS only
    return ids, labels, mask, umask


def train(
    model: Any,
    plant: Plant,
    rows: Sequence[tuple[Example, ...]],
    conts: Mapping[str, Sequence[tuple[int, ...]]],
    config: ToyConfig,
) -> float:
    """AdamW with warmup + cosine decay; projection after every step. Returns the final loss."""
    params = dict(model.named_parameters())
    masks = free_masks(plant, {n: p.shape for n, p in params.items()})
    project_(params, plant, masks)
    init_unit_path_(params, plant, config.unit_init)
    decay = [p for p in params.values() if p.dim() >= 2]  # nanoGPT: no decay on biases and LayerNorm
    no_decay = [p for p in params.values() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.98),
    )
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    model.eval()  # every dropout p is 0; train mode would only add no-op dropout calls (~15 % time)
    with head_mask(model) as hm, unit_mask(model) as um:
        bar = tqdm(range(config.steps), desc="toy model", disable=not sys.stderr.isatty(), leave=False)
        for step in bar:
            warm = min(1.0, (step + 1) / max(1, config.warmup))
            cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / config.steps))
            for group in opt.param_groups:
                group["lr"] = config.lr * warm * cosine
            ids, labels, hm["mask"], um["mask"] = sample_batch(rows, conts, config, gen)
            logits: Float[Tensor, "batch pos vocab"] = model(
                input_ids=ids, attention_mask=torch.ones_like(ids)
            ).logits
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for name, mask in masks.items():  # keep Adam's moments off the forbidden entries
                    if params[name].grad is not None:
                        params[name].grad.mul_(mask)
            opt.step()
            project_(params, plant, masks)
            losses.append(loss.item())
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    tail = losses[-50:]
    return sum(tail) / len(tail)


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seeded, deterministic, single-threaded torch inside; the caller's settings are restored.

    One thread: CPU kernels may split reductions by thread count, so a fixed count makes the
    weights independent of the machine's cores; for a model this small it costs little, and it
    does not thrash when other jobs share the CPU.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(previous)
