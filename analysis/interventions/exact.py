"""The exact fast path: edits applied on the plain Hugging Face model at each component's input, and exact patching that restarts the forward pass at the edited layer."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from analysis.core.loading import LoadedModel
from analysis.core.prompts import TokenBatch
from analysis.core.sites import Site
from analysis.modelfacts.families import FAMILIES, component_input
from analysis.interventions.edits import _apply, Edit, patch_edits, position_ids
from analysis.measures.metrics import copy_free_emotion_score, SCREENING_METRIC




def plain_hf(model: LoadedModel) -> torch.nn.Module:
    """The same weights as the bridge, as a plain HF model (eager attention, as the bridge), on
    the model's device in its dtype.

    Screening runs thousands of patched forwards; the bridge's Python-level components cost
    ~1.6x a plain forward, so the hot loop runs HF's own modules and edits the head's output at
    the input of its output projection, which is exactly what `hook_z` is. Tests hold the two
    paths equal (to 1e-5) and to transformer-lens's own patching loop.
    """
    # A local folder is cached by where it is, not by its (relative) name: the same name
    # means another model after a chdir.
    path = str(Path(model.path).resolve()) if Path(model.path).is_dir() else model.path
    return _plain_hf(path, str(model.precision.device), model.precision.dtype)


@functools.lru_cache(maxsize=2)
def _plain_hf(path: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=dtype).to(device).eval()
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
    parent_name, attr = FAMILIES[family].blocks.rsplit(".", 1)
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
    blocks = hf.get_submodule(FAMILIES[family].blocks)
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




def component_module(family: str, site: Site) -> str:
    """Name of the plain HF module whose input carries `site` (its hook point's exact equivalent)."""
    return component_input(site.kind, family, site.layer)


@contextmanager
def component_edits(
    hf: torch.nn.Module, family: str, edits: Sequence[Edit], d_head: int, rows: Sequence[slice] | None = None
) -> Iterator[None]:
    """Apply Edits on the plain HF model where the component enters the next linear map.

    Heads: the out-projection input viewed as [batch, pos, head, d_head] (= `hook_z`). MLP
    units: the down-projection input [batch, pos, d_mlp] (= `mlp.hook_post`). One forward
    pre-hook per module applies every edit there, in order (the bridge path's `hooks_for`).
    `rows`: edit i applies to the batch rows `rows[i]` only (several sites' runs stacked in one
    forward, `exact_patching_sites`); None: every edit to every row.
    """
    by_module: dict[str, list[tuple[Edit, slice | None]]] = defaultdict(list)
    for i, e in enumerate(edits):
        by_module[component_module(family, e.site)].append((e, None if rows is None else rows[i]))

    def edit_input(es: tuple[tuple[Edit, slice | None], ...]) -> Callable[[torch.nn.Module, tuple], tuple]:
        head = es[0][0].site.kind == "head"

        def edited(x: Tensor, group: list[Edit]) -> Tensor:
            z = x.reshape(*x.shape[:2], -1, d_head) if head else x
            return _apply(z, group).reshape(x.shape)

        def fn(module: torch.nn.Module, args: tuple) -> tuple:
            x = args[0]
            if rows is None:
                return (edited(x, [e for e, _ in es]), *args[1:])
            x = x.clone()
            for e, r in es:
                x[r] = edited(x[r], [e])
            return (x, *args[1:])

        return fn

    handles = [hf.get_submodule(name).register_forward_pre_hook(edit_input(tuple(es))) for name, es in by_module.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


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
    hf: torch.nn.Module, ids: tuple[Sequence[int], Sequence[int]], keep: Tensor | None = None
) -> Callable[[Float[Tensor, "batch pos d_model"]], Float[Tensor, " batch"]]:
    """M at the last position from the final hidden state, unembedding the lexicon rows only.

    M reads the logits of the lexicon tokens alone; unembedding 50k tokens to keep ~50 was most
    of a last-layer component's cost (docs/DESIGN.md §10).
    """
    emo_ids, neu_ids = ids
    unembed = hf.get_output_embeddings()
    rows = torch.tensor([*emo_ids, *neu_ids], device=unembed.weight.device)
    # The lexicon logits in float32 at least, whatever the model's dtype: bfloat16 logits of size
    # ~10 are 0.06 apart, and these few rows cost nothing (float32 and float64 models: unchanged).
    dt = torch.promote_types(unembed.weight.dtype, torch.float32)
    w_u = unembed.weight[rows].to(dt)
    b_u = unembed.bias[rows].to(dt) if getattr(unembed, "bias", None) is not None else None
    local = (list(range(len(emo_ids))), list(range(len(emo_ids), len(rows))))
    keep = keep.to(unembed.weight.device) if keep is not None else None

    def score(hidden: Tensor) -> Tensor:
        logits = torch.nn.functional.linear(hidden[:, -1].to(dt), w_u, b_u)
        if keep is not None:  # the copy control: each row's kept lexicon rows only
            # several sites' runs stacked in one forward: row r of each at r * k + i (repeat_interleave)
            return copy_free_emotion_score(logits, *local, keep.repeat_interleave(len(logits) // len(keep), 0))
        return SCREENING_METRIC.score(logits, *local)

    return score


def lexicon_parts(
    hf: torch.nn.Module, ids: tuple[Sequence[int], Sequence[int]]
) -> Callable[[Float[Tensor, "batch pos d_model"]], Float[Tensor, "batch 2"]]:
    """The two terms of M at the last position: logsumexp over the emotion lexicon's logits and over
    the neutral lexicon's (M = the first minus the second), so a change of M can be read as more
    emotion mass or less neutral mass (issue 23). Same rows and precision as `lexicon_scorer`."""
    emo_ids, neu_ids = ids
    unembed = hf.get_output_embeddings()
    rows = torch.tensor([*emo_ids, *neu_ids], device=unembed.weight.device)
    dt = torch.promote_types(unembed.weight.dtype, torch.float32)
    w_u = unembed.weight[rows].to(dt)
    b_u = unembed.bias[rows].to(dt) if getattr(unembed, "bias", None) is not None else None
    n_e = len(emo_ids)

    def parts(hidden: Tensor) -> Tensor:
        logits = torch.nn.functional.linear(hidden[:, -1].to(dt), w_u, b_u)
        return torch.stack([logits[:, :n_e].logsumexp(-1), logits[:, n_e:].logsumexp(-1)], -1)

    return parts


def clean_scores(model: LoadedModel, batch: TokenBatch, ids: tuple[list[int], list[int]]) -> Float[Tensor, " batch"]:
    """M of each prompt of `batch`, unpatched, on the fast path (the emotion–neutral gap of the
    specificity rule is M(emotion prompt) − M(neutral twin))."""
    hf = plain_hf(model)
    _, hidden = block_inputs(hf, model.spec.family, batch)
    with torch.no_grad():
        return lexicon_scorer(hf, ids)(hidden)


def sites_per_forward(model: LoadedModel, hf: torch.nn.Module, rows: int, new: int, total: int) -> int:
    """How many sites' patched runs of `rows` prompts (`new` recomputed columns of `total`) fit the
    model's memory budget in one forward (analysis.settings.hardware: memory_budget_gb); at least 1, and 1
    when the budget is 0."""
    from analysis.modelfacts.architectures import from_hf_config
    from analysis.core.budget import bytes_per, patched_forward_bytes

    budget = model.precision.budget_bytes
    if budget <= 0:
        return 1
    need = patched_forward_bytes(from_hf_config(hf.config.to_dict()), rows, new, total, bytes_per(model.precision.dtype))
    return max(1, int(budget // need))


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
    copy_free: tuple[Bool[Tensor, "batch lexicon"], dict[Site, Tensor]] | None = None,
    batch: int | None = None,
    parts: dict[Site, Float[Tensor, "batch 2"]] | None = None,
) -> dict[Site, Float[Tensor, " batch"]]:
    """Per site: M(target with the site patched from `source_acts`) − M(target), per row.

    Heads and MLP units alike. Only what patching one component at layer L can change is
    recomputed (docs/DESIGN.md §10): blocks from L on (the cached residual enters there), columns from
    `prefix` on (the clean run's keys and values serve the unchanged prefix; the caller proves
    nothing before `prefix` changes, e.g. analysis.head_screening.unchanged_prefix), and the
    lexicon logits at the last position. It runs on the plain HF modules (the fast path),
    editing the component at the input of the linear map that reads it (`component_edits`).

    `batch`: sites of one layer whose patched runs share a forward, stacked along the batch
    dimension (row r of the i-th at r * k + i), which fills an accelerator that one site's small
    run leaves idle; None: as many as the model's memory budget holds (`sites_per_forward`).
    Results equal one forward per site (tests: within 1e-5).

    `copy_free` = (keep, out): also put each site's change of the copy-free M (analysis.measures.metrics.
    copy_free_emotion_score over the lexicon rows `keep` marks per row) into `out`, from the same runs.
    `parts`: also put each site's change of M's two terms (`lexicon_parts`: Δ logsumexp of the
    emotion lexicon, of the neutral lexicon; ΔM is the first minus the second) into it.
    """
    import copy

    from analysis.core.cli import progress_disabled

    hf, family = plain_hf(model), model.spec.family
    base = hf.base_model  # up to the final LayerNorm: the unembedding is done for the lexicons only
    attn = target.attention_mask
    pos = position_ids(attn)
    p = prefix
    n_rows, width = target.input_ids.shape
    resid, clean_hidden = block_inputs(hf, family, target)
    score = lexicon_scorer(hf, ids)
    cf_score = lexicon_scorer(hf, ids, copy_free[0]) if copy_free is not None else None
    part_score = lexicon_parts(hf, ids) if parts is not None else None
    k_max = batch if batch is not None else sites_per_forward(model, hf, n_rows, width - p, width)
    by_layer: dict[int, list[Site]] = defaultdict(list)  # start_at_layer: one start layer per forward
    for site in sites:
        by_layer[site.layer].append(site)

    done: dict[Site, Tensor] = {}
    with torch.no_grad(), tqdm(total=len(sites), desc=desc, disable=progress_disabled(), leave=False) as bar:
        clean = score(clean_hidden)
        cf_clean = cf_score(clean_hidden) if cf_score is not None else None
        parts_clean = part_score(clean_hidden) if part_score is not None else None
        cache0 = None
        if p > 0:
            cache0 = base(input_ids=target.input_ids[:, :p], attention_mask=attn[:, :p], position_ids=pos[:, :p], use_cache=True).cache
        for layer, group in by_layer.items():
            for start in range(0, len(group), k_max):
                chunk = group[start : start + k_max]
                k = len(chunk)

                def stack(x: Tensor, k: int = k) -> Tensor:
                    return x.repeat_interleave(k, 0) if k > 1 else x

                edits = [Edit(e.site, e.value[:, p:], e.mask[:, p:], True) for e in patch_edits(chunk, source_acts, idx, mask)]
                cache = copy.deepcopy(cache0) if cache0 is not None else None  # the run appends to it
                if cache is not None and k > 1:
                    cache.batch_repeat_interleave(k)
                rows = [slice(i, None, k) for i in range(k)] if k > 1 else None
                # The edit's module is looked up by layer index, so it goes on before the block list is cut.
                with component_edits(hf, family, edits, model.spec.d_head, rows), start_at_layer(hf, family, layer, stack(resid[layer][:, p:])):
                    hidden = base(
                        input_ids=stack(target.input_ids[:, p:]), attention_mask=stack(attn), position_ids=stack(pos[:, p:]),
                        cache=cache, use_cache=cache is not None,
                    ).last_hidden_state
                m = score(hidden).view(n_rows, k)
                cf = cf_score(hidden).view(n_rows, k) if cf_score is not None else None
                two = part_score(hidden).view(n_rows, k, 2) if part_score is not None else None
                for i, site in enumerate(chunk):
                    done[site] = m[:, i] - clean
                    if cf is not None:
                        copy_free[1][site] = cf[:, i] - cf_clean
                    if two is not None:
                        parts[site] = two[:, i] - parts_clean
                bar.update(k)
    return {site: done[site] for site in sites}
