"""The plant: which heads and units carry each emotion, the masks that keep every other component free of it, and the checks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
import torch
from jaxtyping import Float
from torch import Tensor

from analysis.base.vocabulary import EMOTIONS
from analysis.embedded.construction import CLASS_VECTORS, CLASSES


@dataclass(frozen=True)
class Plant:
    """What the constraints need: where E and U are, which heads and units read and write them,
    which tokens write E. Empty `unit_dims`/`units`: a model built before units were planted."""

    emotion_dims: dict[str, int]  # class -> residual dim (E)
    planted: dict[str, tuple[int, int]]  # emotion -> (layer, head)
    span_ids: dict[str, tuple[int, ...]]  # class -> token ids of its span phrases
    span_scale: float
    n_layer: int
    n_head: int
    n_embd: int
    unit_dims: dict[str, int] = field(default_factory=dict)  # emotion -> residual dim (U)
    units: dict[str, tuple[int, int]] = field(default_factory=dict)  # emotion -> (layer, neuron)

    @property
    def e_dims(self) -> list[int]:
        return [self.emotion_dims[c] for c in CLASSES]

    @property
    def u_dims(self) -> list[int]:
        return [self.unit_dims[e] for e in EMOTIONS if e in self.unit_dims]

    @property
    def reserved(self) -> list[int]:
        """E and U: the dims that only the planted paths may write and read."""
        return self.e_dims + self.u_dims

    def class_vectors(self) -> Float[Tensor, "class e"]:
        return self.span_scale * CLASS_VECTORS


def plant_from_doc(doc: Mapping[str, Any]) -> Plant:
    """Rebuild the Plant from a planted.json document."""
    p = doc["params"]
    return Plant(
        emotion_dims={c: int(d) for c, d in p["emotion_dims"].items()},
        planted={e: (int(h[0][0]), int(h[0][1])) for e, h in doc["by_emotion"].items()},
        span_ids={c: tuple(int(i) for i in ids) for c, ids in p["span_token_ids"].items()},
        span_scale=float(p["span_scale"]),
        n_layer=int(p["n_layer"]),
        n_head=int(p["n_head"]),
        n_embd=int(p["n_embd"]),
        unit_dims={e: int(d) for e, d in p.get("unit_dims", {}).items()},  # absent before units were planted
        units={e: (int(u[0][0]), int(u[0][1])) for e, u in doc.get("units_by_emotion", {}).items()},
    )


def free_masks(plant: Plant, shapes: Mapping[str, torch.Size]) -> dict[str, Tensor]:
    """Parameter name -> 0/1 mask of the entries that may be non-zero (only E/U-constrained ones).

    HF GPT-2 uses Conv1D (y = x @ W + b, W: [in, out]): reading dim d is row d of W, writing
    dim d is column d of W (and b[d]). The E entries of the span rows of wte are set by `project_`.
    """
    e = plant.e_dims
    r = plant.reserved  # E and U
    d_head = plant.n_embd // plant.n_head
    masks: dict[str, Tensor] = {}

    def ones(name: str) -> Tensor:
        return torch.ones(shapes[name])

    for name in ("transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"):
        m = ones(name)  # [rows, n_embd]: token/position embeddings write E and U, lm_head reads them
        m[:, r] = 0
        masks[name] = m
    span = torch.tensor([i for c in CLASSES for i in plant.span_ids[c]])
    masks["transformer.wte.weight"][span[:, None], torch.tensor(e)[None, :]] = 1  # set by project_
    for layer in range(plant.n_layer):
        pre = f"transformer.h.{layer}"
        m = ones(f"{pre}.attn.c_attn.weight")  # [n_embd, 3 * n_embd]: q | k | v, heads inside each
        m[r, :] = 0
        for emotion, (pl, ph) in plant.planted.items():
            if pl == layer:
                d = plant.emotion_dims[emotion]
                for part in range(3):  # q, k, v of the planted head may read its own dim of E
                    lo = part * plant.n_embd + ph * d_head
                    m[d, lo : lo + d_head] = 1
        masks[f"{pre}.attn.c_attn.weight"] = m
        for name in (f"{pre}.attn.c_proj", f"{pre}.mlp.c_proj"):  # outputs: no write to E or U ...
            m = ones(f"{name}.weight")  # [in, n_embd]
            m[:, r] = 0
            masks[f"{name}.weight"] = m
            m = ones(f"{name}.bias")
            m[r] = 0
            masks[f"{name}.bias"] = m
        for emotion, (pl, ph) in plant.planted.items():  # ... except: planted head X writes U_X, only U_X
            if pl == layer and emotion in plant.unit_dims:
                m = masks[f"{pre}.attn.c_proj.weight"]
                m[ph * d_head : (ph + 1) * d_head, :] = 0
                m[ph * d_head : (ph + 1) * d_head, plant.unit_dims[emotion]] = 1
        m = ones(f"{pre}.mlp.c_fc.weight")  # [n_embd, d_mlp]: MLPs read nothing of E or U ...
        m[r, :] = 0
        for emotion, (ul, un) in plant.units.items():  # ... except: planted unit X reads U_X
            if ul == layer:
                m[plant.unit_dims[emotion], un] = 1
        masks[f"{pre}.mlp.c_fc.weight"] = m
    return masks


@torch.no_grad()
def project_(params: Mapping[str, Tensor], plant: Plant, masks: Mapping[str, Tensor]) -> None:
    """Put the weights back on the constraint set (in place)."""
    for name, mask in masks.items():
        params[name].masked_fill_(mask == 0, 0.0)  # (not mul_: that would leave -0.0 behind)
    wte = params["transformer.wte.weight"]
    e = plant.e_dims
    off_e = [i for i in range(plant.n_embd) if i not in set(e)]
    all_span = [i for c in CLASSES for i in plant.span_ids[c]]
    shared = wte[all_span][:, off_e].mean(dim=0)  # [n_embd - 4]: one vector for every span token
    vectors = plant.class_vectors()
    for k, cls in enumerate(CLASSES):
        ids = list(plant.span_ids[cls])
        wte[torch.tensor(ids)[:, None], torch.tensor(off_e)[None, :]] = shared
        wte[torch.tensor(ids)[:, None], torch.tensor(e)[None, :]] = vectors[k]


def constraint_violations(state: Mapping[str, Tensor], plant: Plant) -> list[str]:
    """Every place where the weights break the construction (empty list: exact)."""
    masks = free_masks(plant, {n: t.shape for n, t in state.items()})
    problems = []
    for name, mask in masks.items():
        bad = int(((state[name] != 0) & (mask == 0)).sum())
        if bad:
            problems.append(f"{name}: {bad} entries on E or U (or off U for a planted head) are not 0")
    d_head = plant.n_embd // plant.n_head
    for emotion, (ul, un) in plant.units.items():  # the planted path exists: not all its weights are 0
        hl, hh = plant.planted[emotion]
        u = plant.unit_dims[emotion]
        if not (state[f"transformer.h.{hl}.attn.c_proj.weight"][hh * d_head : (hh + 1) * d_head, u] != 0).any():
            problems.append(f"planted head {hl}.{hh} of {emotion} does not write its dim U")
        if state[f"transformer.h.{ul}.mlp.c_fc.weight"][u, un] == 0:
            problems.append(f"planted unit {ul}.{un} of {emotion} does not read its dim U")
    wte = state["transformer.wte.weight"]
    e = plant.e_dims
    off_e = [i for i in range(plant.n_embd) if i not in set(e)]
    all_span = [i for c in CLASSES for i in plant.span_ids[c]]
    if not torch.equal(wte[all_span][:, off_e], wte[all_span[:1]][:, off_e].expand(len(all_span), -1)):
        problems.append("span token embeddings differ off E")
    for k, cls in enumerate(CLASSES):
        want = plant.class_vectors()[k].expand(len(plant.span_ids[cls]), -1)
        if not torch.equal(wte[list(plant.span_ids[cls])][:, e], want):
            problems.append(f"{cls} span tokens do not carry the {cls} class vector on E")
    return problems


@contextmanager
def _column_mask(model: Any, projection: str, width: int) -> Iterator[dict[str, Tensor | None]]:
    """Multiply the input of every block's `projection` by a per-row 0/1 mask [batch, layer, k],
    each of the k components covering `width` adjacent input columns. Yields a dict whose
    "mask" entry can be swapped between forwards (None: no masking)."""
    state: dict[str, Tensor | None] = {"mask": None}
    handles = []

    def make_hook(layer: int):
        def hook(module: Any, args: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
            m = state["mask"]
            if m is None:
                return None
            scale = m[:, layer].repeat_interleave(width, dim=-1)[:, None, :]  # [batch, 1, columns]
            return (args[0] * scale, *args[1:])

        return hook

    for layer, block in enumerate(model.transformer.h):
        handles.append(block.get_submodule(projection).register_forward_pre_hook(make_hook(layer)))
    try:
        yield state
    finally:
        for h in handles:
            h.remove()


@contextmanager
def head_mask(
    model: Any, mask: Float[Tensor, "batch layer head"] | None = None
) -> Iterator[dict[str, Tensor | None]]:
    """Multiply each head's slice of the attention c_proj input by a per-row 0/1 mask.

    Zeroing slice h of c_proj's input is exactly removing head h from the HF model.
    """
    with _column_mask(model, "attn.c_proj", model.config.n_embd // model.config.n_head) as state:
        state["mask"] = mask
        yield state


@contextmanager
def unit_mask(
    model: Any, mask: Float[Tensor, "batch layer unit"] | None = None
) -> Iterator[dict[str, Tensor | None]]:
    """Multiply each MLP unit's activation (the MLP c_proj input) by a per-row 0/1 mask.

    Zeroing column n of c_proj's input is exactly removing unit n (the pipeline's
    `blocks.L.mlp.hook_post[..., n]`).
    """
    with _column_mask(model, "mlp.c_proj", 1) as state:
        state["mask"] = mask
        yield state


@torch.no_grad()
def init_unit_path_(params: Mapping[str, Tensor], plant: Plant, scale: float) -> None:
    """Start the planted path E_X -> head value -> U_X -> planted unit at size O(1) (torch's global RNG).

    The path runs through a 1-wide bottleneck (the head's write to U_X, one c_fc weight), and
    Adam moves each entry by about lr per step: from GPT-2's 0.02 init it stays too weak to
    carry the emotion in a few hundred steps. So the head's value read of dim X and its write
    to U_X start as the same random vector of norm `scale` (an X span raises U_X), and the unit
    reads U_X with weight `scale`; training is free to change all three.
    """
    d_head = plant.n_embd // plant.n_head
    for emotion in EMOTIONS:
        if emotion not in plant.units:
            continue
        (hl, hh), (ul, un) = plant.planted[emotion], plant.units[emotion]
        x, u = plant.emotion_dims[emotion], plant.unit_dims[emotion]
        v = torch.randn(d_head)
        v *= scale / v.norm()
        heads = slice(hh * d_head, (hh + 1) * d_head)
        params[f"transformer.h.{hl}.attn.c_attn.weight"][x, 2 * plant.n_embd + hh * d_head :][:d_head] = v
        params[f"transformer.h.{hl}.attn.c_proj.weight"][heads, u] = v
        params[f"transformer.h.{ul}.mlp.c_fc.weight"][u, un] = scale
