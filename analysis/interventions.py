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

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from analysis.models import HEAD_OUT_PROJ, MLP_OUT_PROJ, LoadedModel
from analysis.prompts import PromptPairs, TokenBatch, tokenize
from analysis.scoring import emotion_score

Kind = Literal["head", "mlp"]
Hook = tuple[str, Callable[[Tensor, object], Tensor]]
ABLATION_METHODS = ("zero", "mean", "resample")
POSITION_MODES = ("all", "last", "span")


@dataclass(frozen=True, order=True)
class Site:
    """A component: attention head `index` of `layer`, or MLP neuron `index` of `layer`."""

    kind: Kind
    layer: int
    index: int

    @property
    def hook_name(self) -> str:
        if self.kind == "head":
            return f"blocks.{self.layer}.attn.hook_z"
        return f"blocks.{self.layer}.mlp.hook_post"

    @property
    def label(self) -> str:
        return f"{self.layer}:{self.index}" if self.kind == "head" else f"mlp:{self.layer}:{self.index}"


def head_sites(heads: Iterable[tuple[int, int]]) -> tuple[Site, ...]:
    return tuple(Site("head", layer, head) for layer, head in heads)


def unit_sites(units: Iterable[tuple[int, int]]) -> tuple[Site, ...]:
    """MLP neurons (layer, neuron) as sites (`blocks.L.mlp.hook_post[..., n]`)."""
    return tuple(Site("mlp", layer, neuron) for layer, neuron in units)


@dataclass(frozen=True)
class Edit:
    """Overwrite `site` with `value` where `mask` is True.

    value: [batch, P, *unit] — P is the prompt length, or 1 to broadcast over every position
    (prompt and generated). mask: [batch, P]. `prompt_only` edits carry a value for prompt
    positions only (patching: generated positions have no source) and leave later steps alone.
    """

    site: Site
    value: Float[Tensor, "batch pos ..."]
    mask: Bool[Tensor, "batch pos"]
    prompt_only: bool

    def rows(self, rows: slice) -> Edit:
        return Edit(self.site, self.value[rows], self.mask[rows], self.prompt_only)


def _apply(x: Tensor, edits: Sequence[Edit]) -> Tensor:
    # x: [batch, pos, head, d_head] for z, [batch, pos, d_mlp] for MLP units.
    x = x.clone()
    for e in edits:
        width = e.value.shape[1]
        if e.prompt_only:
            if x.shape[1] < width:
                continue  # a cached generation step: only new positions, which have no source
            cols = slice(0, width)
        else:
            cols = slice(None) if width == 1 else slice(0, width)
        cur = x[:, cols, e.site.index]
        mask = e.mask.view(*e.mask.shape, *([1] * (cur.dim() - 2)))
        x[:, cols, e.site.index] = torch.where(mask, e.value.to(x.dtype), cur)
    return x


def hooks_for(edits: Sequence[Edit]) -> list[Hook]:
    """One forward hook per hook point, applying every edit at that point."""
    by_name: dict[str, list[Edit]] = defaultdict(list)
    for e in edits:
        by_name[e.site.hook_name].append(e)
    return [(name, (lambda x, hook, es=tuple(es): _apply(x, es))) for name, es in by_name.items()]


def slice_edits(edits: Sequence[Edit], rows: slice) -> list[Edit]:
    return [e.rows(rows) for e in edits]


# --- forward passes -------------------------------------------------------------------------


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


# --- the edits each experiment builds -------------------------------------------------------


def zero_edits(sites: Sequence[Site], batch_size: int, unit_shape: dict[Site, tuple[int, ...]]) -> list[Edit]:
    return [
        Edit(s, torch.zeros(batch_size, 1, *unit_shape[s]), torch.ones(batch_size, 1, dtype=torch.bool), False)
        for s in sites
    ]


def site_values(acts: dict[str, Tensor], site: Site) -> Tensor:
    """The component's activations: [batch, pos, *unit]."""
    return acts[site.hook_name][:, :, site.index]


def mean_over_positions(x: Tensor, attention_mask: Tensor) -> Tensor:
    """Per-row mean over real tokens (BOS included, padding excluded): [batch, *unit]."""
    w = attention_mask.to(x.dtype).view(*attention_mask.shape, *([1] * (x.dim() - 2)))
    return (x * w).sum(1) / w.sum(1)


def constant_edits(sites: Sequence[Site], values: dict[Site, Float[Tensor, "batch ..."]]) -> list[Edit]:
    """Hold each site at a per-row value at every position, generated ones included.

    Used by mean ablation (one value for all rows) and resample ablation (a value per row). The
    value is position-agnostic because generated positions have no aligned reference token.
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
    idx = torch.arange(t).expand(b, t).clone()
    if mode == "all":
        mask = target.attention_mask.bool() & source.attention_mask.bool()
    elif mode == "last":
        mask = torch.zeros(b, t, dtype=torch.bool)
        mask[:, -1] = True
    else:
        mask = torch.zeros(b, t, dtype=torch.bool)
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
    """Emotion and neutral prompts padded to one width, so position i means the same in both."""
    prompts = list(pairs.emotion_prompts) + list(pairs.neutral_prompts)
    batch = tokenize(model.tokenizer, prompts, bos_id=model.spec.bos_id, pad_id=model.spec.pad_id)
    return split_batch(batch, len(pairs))


# --- the fast path: plain Hugging Face modules, from a layer on ------------------------------

# The module list holding the blocks, per family.
BLOCK_LIST: dict[str, str] = {"gpt2": "transformer.h", "gpt_neo": "transformer.h", "gpt_neox": "gpt_neox.layers"}


def plain_hf(path: str) -> torch.nn.Module:
    """The same weights as the bridge, as a plain HF model (eager attention, as the bridge).

    Screening runs thousands of patched forwards; the bridge's Python-level components cost
    ~1.6x a plain forward, so the hot loop runs HF's own modules and edits the head's output at
    the input of its output projection, which is exactly what `hook_z` is. Tests hold the two
    paths equal (to 1e-5) and to transformer-lens's own patching loop.
    """
    # A local folder is cached by where it is, not by its (relative) name: the same name
    # means another model after a chdir.
    return _plain_hf(str(Path(path).resolve()) if Path(path).is_dir() else path)


@functools.lru_cache(maxsize=2)
def _plain_hf(path: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    for p in hf.parameters():
        p.requires_grad_(False)
    return hf


@contextmanager
def start_at_layer(hf: torch.nn.Module, family: str, layer: int, resid_pre: Float[Tensor, "batch pos d_model"]) -> Iterator[None]:
    """Run only blocks `layer..` of `hf`, with `resid_pre` as their input.

    An intervention at layer L cannot change blocks before L, so their FLOPs need not be spent
    again. transformer-lens's `start_at_layer` still executes the earlier blocks and discards
    them, so we hand HF a shortened block list instead and swap the cached residual in at the
    first remaining block (a pre-hook, so the value is bit-identical to the full run's).
    """
    parent_name, attr = BLOCK_LIST[family].rsplit(".", 1)
    parent = hf.get_submodule(parent_name)
    full = getattr(parent, attr)

    def swap_in(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return (resid_pre, *args[1:]), kwargs

    handle = full[layer].register_forward_pre_hook(swap_in, with_kwargs=True)
    parent._modules[attr] = torch.nn.ModuleList(list(full)[layer:])
    try:
        yield
    finally:
        parent._modules[attr] = full
        handle.remove()


def block_inputs(hf: torch.nn.Module, family: str, batch: TokenBatch) -> tuple[list[Tensor], Tensor]:
    """The residual entering every block (= `blocks.L.hook_resid_pre`) and the final hidden
    state (after the last LayerNorm), from one forward of the base model (no unembedding)."""
    blocks = hf.get_submodule(BLOCK_LIST[family])
    store: list[Tensor] = [torch.empty(0)] * len(blocks)
    handles = [
        b.register_forward_pre_hook(lambda m, args, i=i: store.__setitem__(i, args[0].detach()))
        for i, b in enumerate(blocks)
    ]
    try:
        with torch.no_grad():
            hidden = hf.base_model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=position_ids(batch.attention_mask), use_cache=False,
            ).last_hidden_state
    finally:
        for h in handles:
            h.remove()
    return store, hidden


# The module whose input holds each kind of component, per family: a head's z is a d_head slice
# of the attention out-projection input, a neuron is one column of the MLP down-projection input.
COMPONENT_INPUT: dict[str, dict[str, str]] = {"head": HEAD_OUT_PROJ, "mlp": MLP_OUT_PROJ}


def component_module(family: str, site: Site) -> str:
    """Name of the plain HF module whose input carries `site` (its hook point's exact equivalent)."""
    return COMPONENT_INPUT[site.kind][family].format(layer=site.layer)


@contextmanager
def component_edits(hf: torch.nn.Module, family: str, edits: Sequence[Edit], d_head: int) -> Iterator[None]:
    """Apply Edits on the plain HF model where the component enters the next linear map.

    Heads: the out-projection input viewed as [batch, pos, head, d_head] (= `hook_z`). MLP
    units: the down-projection input [batch, pos, d_mlp] (= `mlp.hook_post`). One forward
    pre-hook per module applies every edit there, in order (the bridge path's `hooks_for`).
    """
    by_module: dict[str, list[Edit]] = defaultdict(list)
    for e in edits:
        by_module[component_module(family, e.site)].append(e)

    def edit_input(es: tuple[Edit, ...]) -> Callable[[torch.nn.Module, tuple], tuple]:
        def fn(module: torch.nn.Module, args: tuple) -> tuple:
            x = args[0]
            if es[0].site.kind == "head":
                b, t, _ = x.shape
                return (_apply(x.view(b, t, -1, d_head), es).view(b, t, -1), *args[1:])
            return (_apply(x, es), *args[1:])

        return fn

    handles = [hf.get_submodule(name).register_forward_pre_hook(edit_input(tuple(es))) for name, es in by_module.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def head_output_edit(hf: torch.nn.Module, family: str, edit: Edit, d_head: int) -> Iterator[None]:
    """Apply a head Edit at the input of the layer's output projection (the head's z slice)."""
    with component_edits(hf, family, [edit], d_head):
        yield


def component_inputs(
    hf: torch.nn.Module, family: str, batch: TokenBatch, sites: Iterable[Site], d_head: int
) -> dict[str, Tensor]:
    """Fast-path `capture`: the activations at the hook points of `sites`, keyed by hook name.

    Read at the modules `component_edits` writes to, from one forward of the base model (no
    unembedding): z as [batch, pos, head, d_head], MLP units as [batch, pos, d_mlp].
    """
    wanted = {s.hook_name: s for s in sites}
    store: dict[str, Tensor] = {}

    def grab(name: str, kind: str) -> Callable[[torch.nn.Module, tuple], None]:
        def fn(module: torch.nn.Module, args: tuple) -> None:
            x = args[0].detach()
            store[name] = x.view(*x.shape[:2], -1, d_head).clone() if kind == "head" else x.clone()

        return fn

    handles = [
        hf.get_submodule(component_module(family, s)).register_forward_pre_hook(grab(name, s.kind))
        for name, s in wanted.items()
    ]
    try:
        with torch.no_grad():
            hf.base_model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=position_ids(batch.attention_mask), use_cache=False,
            )
    finally:
        for h in handles:
            h.remove()
    return store


def lexicon_scorer(
    hf: torch.nn.Module, ids: tuple[Sequence[int], Sequence[int]]
) -> Callable[[Float[Tensor, "batch pos d_model"]], Float[Tensor, " batch"]]:
    """M at the last position from the final hidden state, unembedding the lexicon rows only.

    M reads the logits of the lexicon tokens alone; unembedding 50k tokens to keep ~50 was most
    of a last-layer component's cost (DESIGN §10).
    """
    emo_ids, neu_ids = ids
    unembed = hf.get_output_embeddings()
    rows = torch.tensor([*emo_ids, *neu_ids])
    w_u = unembed.weight[rows]
    b_u = unembed.bias[rows] if getattr(unembed, "bias", None) is not None else None
    local = (list(range(len(emo_ids))), list(range(len(emo_ids), len(rows))))

    def score(hidden: Tensor) -> Tensor:
        return emotion_score(torch.nn.functional.linear(hidden[:, -1], w_u, b_u), *local)

    return score


def exact_patching_sites(
    model: LoadedModel,
    target: TokenBatch,
    source_acts: dict[str, Tensor],
    idx: Int[Tensor, "batch pos"],
    mask: Bool[Tensor, "batch pos"],
    prefix: int,
    sites: Sequence[Site],
    ids: tuple[list[int], list[int]],
    desc: str = "exact",
) -> dict[Site, Float[Tensor, " batch"]]:
    """Per site: M(target with the site patched from `source_acts`) − M(target), per row.

    Heads and MLP units alike. Only what patching one component at layer L can change is
    recomputed (DESIGN §10): blocks from L on (the cached residual enters there), columns from
    `prefix` on (the clean run's keys and values serve the unchanged prefix; the caller proves
    nothing before `prefix` changes, e.g. analysis.head_screening.unchanged_prefix), and the
    lexicon logits at the last position. It runs on the plain HF modules (the fast path),
    editing the component at the input of the linear map that reads it (`component_edits`).
    """
    import copy

    from analysis.generation import progress_disabled  # generation imports this module

    hf, family = plain_hf(model.path), model.spec.family
    base = hf.base_model  # up to the final LayerNorm: the unembedding is done for the lexicons only
    attn = target.attention_mask
    pos = position_ids(attn)
    p = prefix
    resid, clean_hidden = block_inputs(hf, family, target)
    score = lexicon_scorer(hf, ids)

    out: dict[Site, Tensor] = {}
    with torch.no_grad():
        clean = score(clean_hidden)
        cache0 = None
        if p > 0:
            cache0 = base(input_ids=target.input_ids[:, :p], attention_mask=attn[:, :p], position_ids=pos[:, :p], use_cache=True).cache
        for site in tqdm(sites, desc=desc, disable=progress_disabled(), leave=False):
            (edit,) = patch_edits([site], source_acts, idx, mask)
            edit = Edit(edit.site, edit.value[:, p:], edit.mask[:, p:], True)
            cache = copy.deepcopy(cache0) if cache0 is not None else None  # the run appends to it
            # The edit's module is looked up by layer index, so it goes on before the block list is cut.
            with component_edits(hf, family, [edit], model.spec.d_head), start_at_layer(hf, family, site.layer, resid[site.layer][:, p:]):
                hidden = base(
                    input_ids=target.input_ids[:, p:], attention_mask=attn, position_ids=pos[:, p:],
                    cache=cache, use_cache=cache is not None,
                ).last_hidden_state
            out[site] = score(hidden) - clean
    return out
