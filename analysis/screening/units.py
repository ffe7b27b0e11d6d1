r"""Stage `screen_units`: prompt pairs × model → scores for every MLP unit × emotion.

    python -m analysis.unit_screening --model toy [--profile baseline] [--emotions E ...] \
        [--positions all|last|span] [--exact-top-k 20] [--n-resamples 10000] [--seed 0] \
        [--output results/<profile>/alignment/unit_scores_<model>.json] [--table ....parquet]

A unit is neuron n of layer L's MLP: its activation `blocks.L.mlp.hook_post[..., n]`, which is
exactly column n of the input of that MLP's down-projection (analysis.modelfacts.families).
Two scores per unit and emotion over the aligned (emotion prompt, neutral twin) pairs, as
analysis.head_screening does for heads:

- `attribution`: dM/da · (a[emotion] − a[neutral]) in the neutral run, summed over the patched
  positions: a first-order estimate of patching the unit. Every unit of every layer from one
  forward and one backward pass per emotion (`attribution`).
- `exact`: the actual change of M when the unit's activation is patched from the emotion prompt
  at the same positions, for the top-k units by |attribution| per emotion
  (params `unit_screening.exact_top_k`, 0 = every unit), on the fast path of the head screening
  (plain HF modules from the unit's layer on, the unchanged prefix's KV cache reused, lexicon
  logits only: analysis.interventions.exact.exact_patching_sites). Each exact score carries n, a 95 %
  interval and a p from one inverted wild cluster bootstrap-t (pairs sharing an emotion expression are one cluster), and a
  Benjamini–Hochberg q across all exact units × emotions.

The BH family (issue 15; `bh_family` in the JSON). Exact patching of every unit is 110k forwards
on GPT-2 small, and BH over all of them needs p-values far below 1/(n_resamples+1), so the family
is the top-k: chosen by |attribution| on the selection half of the expressions and exact-tested on
the confirmation half, which did not choose them (analysis.screening.common.exact_pairs); testing
them on the data that chose them made every chosen unit "significant". With exact_top_k 0 every
unit is tested on the screened half and the family is all units × emotions. With the split off and
a top-k the family is selected and its q exploratory (`valid_fdr` false).

Noise floor: an identity/self-patch control (analysis.screening.common.identity_control) gives
each emotion's floor; rows at or below it are `no_effect`, and a layer whose largest |attribution|
is at or below it has no `argmax_neuron` (None). `attribution_ratio` = attribution / exact per row
above the floor, `ratio_flag` outside [0.3, 3].

Storage. GPT-2 small has 12 × 3072 units; with 3 emotions that is 110k scores, tens of MB as
JSON rows in git. So the scores are split in two files:

- the JSON (schema `emotion-heads/unit-scores/v1`, small, committed): model, profile, n_layers,
  d_mlp, emotions, params, metric, pairs (per emotion: the screened half and its counts `n_*`, the
  exact tests' half `exact_half` and its counts `exact_n_*`: screening.common.pairs_record),
  `attribution_vs_exact` (Spearman per emotion), and
  `scores`: one full row (layer, neuron, emotion, attribution, attribution_rank, exact with CI,
  p, q, n) for every unit that has an exact score or is among the `top_per_layer` (default 10)
  units of its layer by |attribution|; `layers`: per emotion and layer, the largest |attribution|
  and its neuron, the mean |attribution|, and the sum of attributions (the first-order estimate of
  patching the whole MLP layer); `attribution_table`: the Parquet's path as written (relative to
  the working directory, like every pipeline path).
- the Parquet beside it (`--table`, default the output with .parquet; schema
  `emotion-heads/unit-attribution/v1`): the attribution of every unit (emotion, layer, neuron,
  attribution, attribution_rank), float64 at 6 significant digits, about 1 MB for GPT-2 small,
  committed to git like every output (dvc.yaml `cache: false`).

`mlp-top:K` unit specs (analysis.experiments.run) rank the JSON's rows by |exact| (ties within 1e-6
keep layer, neuron order), or by |attribution| where a file has no exact scores for the emotion or
measured them on the confirmation half. No leakage (issue 23): a choice reads only selection-half
numbers (analysis.screening.selection), so with the exact tests on the confirmation half each tested
row also carries `selection`, its exact fields and copy control measured again on the selection half,
and `copy_control.skip_flagged` skips by those flags, never by the confirmation half's.

Memory (docs/DESIGN.md §10: caching everything of GPT-2 costs gigabytes). The attribution pass keeps, per
layer, one [batch, patched columns, d_mlp] tensor, never two: the emotion activations of layer L
are turned into (patched − clean) in the neutral forward as it passes layer L and dropped there;
the difference is dropped when the backward pass reaches L, where a tensor hook reduces
gradient × difference to [batch, d_mlp] at once, so no layer's per-position gradient outlives its
own backward step. The only leaf on the tape is one zero scalar added at every layer's
down-projection input, so no gradient buffer is allocated for any activation. For `last`
positions the stored differences are one column wide. The MLP activation function recomputes
itself in the backward pass (`recomputed_activations`): GPT-2's tanh GELU otherwise keeps ~4
[batch, pos, d_mlp] tensors per layer on the tape, more than everything above together.
tests/benchmarks/test_unit_screening_memory.py measures the peak on GPT-2-small architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from analysis.base.contract import (
    UNIT_ATTRIBUTION_SCHEMA, UNIT_SCORES_SCHEMA, rank, ranking_score, read_unit_screening, SPECIFICITY_FIELDS, write_unit_screening,
)
from analysis.core.loading import LoadedModel, ModelSpec
from analysis.core.prompts import PromptPairs, span_clusters, template_labels, TokenBatch
from analysis.core.sites import Site, unit_sites
from analysis.base.vocabulary import mlp_post_name
from analysis.base.errors import InputError
from analysis.interventions.edits import position_ids
from analysis.interventions.exact import component_inputs, component_module, exact_patching_sites, lexicon_scorer, plain_hf
from analysis.base.io import write_parquet
from analysis.measures.metrics import SCREENING_METRIC, lexicon_ids
from analysis.screening.selection import selection_ranking
from analysis.screening.common import (
    check_before_work, control_floor, control_patching, control_sites, copy_keep, copy_record, correct_and_correlate, correct_specificity,
    exact_fields, exact_pairs, family_record, floor_record, identity_control, neutral_control, NeutralControl, pair_batches, PairBatches,
    pairs_record, ratio_record, ScreeningConfig, screened_pairs, specificity_fields, specificity_record, split_record, top_lines,
    unchanged_prefix,
)






TOP_PER_LAYER = 10




Unit = tuple[int, int]


def top_units(path: Path, emotion: str, n: int, skip_flagged: bool = False, specific_only: bool = False) -> tuple[Unit, ...]:
    """The n units with the largest |score| for `emotion` in a unit screening file (`mlp-top:K`);
    `skip_flagged`: leave out the units the copy control flagged (`copy_flag`); `specific_only`:
    rank only the units that passed the neutral control (`specific`, issue 23)."""
    if not Path(path).is_file():
        raise InputError(
            f"unit spec mlp-top:{n} needs the unit screening file {path}, which does not exist; run "
            f"`python -m analysis.unit_screening` first, pass --screening-file, or give units as mlp:L:N"
        )
    doc = read_unit_screening(path)
    if emotion not in doc.get("emotions", []):
        raise InputError(f"unit screening file {path} has no scores for emotion {emotion!r} (it has {', '.join(doc.get('emotions', []))})")
    try:
        # Only selection-half numbers reach the choice (analysis.screening.selection: no leakage).
        ranked, key = selection_ranking(doc, emotion, index="neuron", skip_flagged=skip_flagged, require_specific=specific_only)
    except (KeyError, TypeError, AttributeError) as err:
        raise InputError(f"unit screening file {path} is malformed ({type(err).__name__}: {err}); rerun the unit screening") from None
    if key == "attribution":
        # The file keeps each layer's top units only: the global order is complete for as many
        # units as each layer keeps.
        ranked = ranked[: int(doc.get("params", {}).get("top_per_layer", len(ranked)))]
    if n > len(ranked):
        what = "by exact ΔM; rerun the unit screening with --exact-top-k" if key == "exact" else "by attribution; rerun it with --top-per-layer"
        if specific_only:
            what = f"that are specific (the neutral control: `specific`) {what}"
        raise InputError(f"unit spec mlp-top:{n}: unit screening file {path} ranks only {len(ranked)} units for {emotion} {what} >= {n}")
    return tuple((int(s["layer"]), int(s["neuron"])) for s in ranked[:n])


def layer_sites(spec: ModelSpec, layers: list[int] | range | None = None) -> list[Site]:
    """One site per MLP layer (neuron 0): what `component_inputs` needs to capture whole layers."""
    return [Site("mlp", layer, 0) for layer in (range(spec.n_layers) if layers is None else layers)]


def unit_activations(model: LoadedModel, batch: TokenBatch, layers: list[int] | range | None = None) -> dict[str, Tensor]:
    """`blocks.L.mlp.hook_post` of `batch` for the given layers (all by default): [batch, pos, d_mlp],
    read on the fast path (the plain HF model's down-projection inputs)."""
    hf = plain_hf(model)
    return component_inputs(hf, model.spec.family, batch, layer_sites(model.spec, layers), model.spec.d_head)


class _RecomputedActivation(torch.autograd.Function):
    """fn(x), saving x alone for the backward pass and recomputing fn there.

    The MLP activation (GPT-2's tanh GELU is a chain of elementwise ops) otherwise leaves ~4
    [batch, pos, d_mlp] tensors per layer on the tape: most of the attribution pass's memory.
    The forward value is fn(x) itself (bit-identical); the backward redoes the same ops.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, fn: torch.nn.Module) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.fn = fn  # type: ignore[attr-defined]
        return fn(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (gx,) = torch.autograd.grad(ctx.fn(leaf), leaf, grad)  # type: ignore[attr-defined]
        return gx, None


class _Recompute(torch.nn.Module):
    def __init__(self, fn: torch.nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return _RecomputedActivation.apply(x, self.fn)


@contextmanager
def recomputed_activations(hf: torch.nn.Module, family: str, n_layers: int) -> Iterator[None]:
    """Swap every MLP's activation module (`mlp.act` in all supported families) for one that
    recomputes itself in the backward pass; restored on exit."""
    mlps = [hf.get_submodule(component_module(family, Site("mlp", layer, 0)).rsplit(".", 1)[0]) for layer in range(n_layers)]
    originals = [m.act for m in mlps]
    try:
        for m, act in zip(mlps, originals, strict=True):
            m.act = _Recompute(act)
        yield
    finally:
        for m, act in zip(mlps, originals, strict=True):
            m.act = act


def attribution(
    model: LoadedModel, pb: PairBatches, act_emo: dict[str, Tensor], ids: tuple[list[int], list[int]]
) -> Float[Tensor, "batch layer d_mlp"]:
    """Gradient × (patched − clean) activation for every unit: one forward, one backward pass.

    `act_emo` (emotion-prompt activations of every layer, from `unit_activations`) is consumed:
    each layer's entry is dropped once the neutral forward has made its difference (see the
    module docstring on memory).
    """
    hf, family, spec = plain_hf(model), model.spec.family, model.spec
    batch = pb.neutral
    b = batch.input_ids.shape[0]
    # Only columns patched in some row can have a non-zero difference: keep just those.
    cols = pb.mask.any(0).nonzero().flatten()
    src_idx = pb.idx[:, cols]  # [batch, cols] source position of each kept target column
    keep = pb.mask[:, cols, None]  # [batch, cols, 1]
    dtype = hf.get_output_embeddings().weight.dtype  # float64 in the finite-difference test
    out = torch.zeros(b, spec.n_layers, spec.d_mlp, dtype=dtype, device=batch.input_ids.device)
    deltas: dict[int, Tensor] = {}
    # The one leaf on the tape: adding it changes nothing, but puts every layer's activation on
    # the tape without a gradient buffer per activation.
    tap = torch.zeros((), dtype=dtype, device=batch.input_ids.device, requires_grad=True)
    score = lexicon_scorer(hf, ids)

    def open_layer(layer: int) -> Callable[[torch.nn.Module, tuple], tuple]:
        def pre(module: torch.nn.Module, args: tuple) -> tuple:
            x = args[0]  # [batch, pos, d_mlp]: this layer's hook_post in the neutral run
            src = act_emo.pop(mlp_post_name(layer))
            patched = src.gather(1, src_idx[..., None].expand(-1, -1, x.shape[-1]))
            deltas[layer] = torch.where(keep, patched - x.detach()[:, cols], 0.0)
            del src, patched
            y = x + tap

            def reduce(grad: Tensor) -> None:
                # grad: dM/da for this layer [batch, pos, d_mlp]; reduced here, then freed.
                out[:, layer] = (grad[:, cols] * deltas.pop(layer)).sum(1)

            y.register_hook(reduce)
            return (y, *args[1:])

        return pre

    handles = [
        hf.get_submodule(component_module(family, Site("mlp", layer, 0))).register_forward_pre_hook(open_layer(layer))
        for layer in range(spec.n_layers)
    ]
    try:
        with torch.enable_grad(), recomputed_activations(hf, family, spec.n_layers):
            hidden = hf.base_model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=position_ids(batch.attention_mask), use_cache=False,
            ).last_hidden_state
            m = score(hidden)
            torch.autograd.grad(m.sum(), [tap])
    finally:
        for h in handles:
            h.remove()
        deltas.clear()
    return out


def exact_patching(
    model: LoadedModel, pb: PairBatches, act_emo: dict[str, Tensor], units: list[Unit],
    ids: tuple[list[int], list[int]], desc: str = "exact", copy_free: tuple[Tensor, dict] | None = None, parts: dict | None = None,
) -> dict[Unit, Float[Tensor, " batch"]]:
    """Per unit: M(neutral with the unit patched from the emotion prompt) − M(neutral), per pair
    (and, with `copy_free` = (keep, out), the copy-free M's change into out; with `parts`, ΔM's
    two terms [pair, 2] into it)."""
    cf: dict = {}
    two: dict = {}
    res = exact_patching_sites(
        model, pb.neutral, act_emo, pb.idx, pb.mask, unchanged_prefix(pb), unit_sites(units), ids, desc,
        copy_free=None if copy_free is None else (copy_free[0], cf), parts=None if parts is None else two,
    )
    if copy_free is not None:
        copy_free[1].update({(s.layer, s.index): v for s, v in cf.items()})
    if parts is not None:
        parts.update({(s.layer, s.index): v for s, v in two.items()})
    return {(s.layer, s.index): v for s, v in res.items()}


def layer_summary(attr: Float[np.ndarray, "layer d_mlp"], floor: float, top_per_layer: int) -> tuple[list[dict], set[Unit]]:
    """Per layer: the largest |attribution| and its neuron, the mean |attribution| and the sum;
    and the `top_per_layer` units of every layer by |attribution| (ties keep neuron order).

    An attribution estimates ΔM in nats: at or below the noise `floor` it is float noise, and its
    argmax differs between machines (13 vs 381 was seen), so such a layer's `argmax_neuron` is None.
    """
    summary, top = [], set()
    for layer, a in enumerate(attr):
        order = np.argsort(-np.abs(a), kind="stable")[:top_per_layer]
        top |= {(layer, int(n)) for n in order}
        biggest = float(np.abs(a).max())
        summary.append({
            "layer": layer, "max_abs_attribution": biggest, "argmax_neuron": int(order[0]) if biggest > floor else None,
            "mean_abs_attribution": float(np.abs(a).mean()), "sum_attribution": float(a.sum()),
        })
    return summary, top


@dataclass(frozen=True)
class UnitScreeningConfig(ScreeningConfig):
    """The head screening's settings, plus how many units per layer the JSON keeps."""

    component = "unit"
    exact_top_k: int = 20
    top_per_layer: int = TOP_PER_LAYER

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_per_layer < 1:
            raise InputError(f"--top-per-layer must be at least 1 (got {self.top_per_layer})")


def check_has_units(spec: ModelSpec) -> None:
    if not spec.d_mlp:
        raise InputError(f"model {spec.name} has no MLP units (d_mlp = {spec.d_mlp}: attention-only); nothing to screen")


@dataclass(frozen=True)
class UnitBlock:
    """One emotion's exact patching of its units over one half, with what its statistics need."""

    exact: dict[Unit, Tensor]  # ΔM per unit, per pair
    copy_free: dict[Unit, Tensor]  # ΔM of the copy-free M per unit (NaN: none usable)
    control: tuple[list[Site], np.ndarray]  # the identity control's sites and values [site, pair]
    floor: float  # the noise floor from that control
    clusters: list[str]  # each pair's cluster: its expression
    templates: list[str]  # each pair's template ending (the second clustering dimension)
    parts: dict[Unit, Tensor]  # ΔM's two terms per unit (Δ LSE emotion, Δ LSE neutral) [pair, 2]
    neutral: dict[Unit, Tensor]  # the neutral control's ΔM per unit (neutral′ → twin)
    nc: NeutralControl  # its prompts and the emotion–neutral gap


def unit_block(
    model: LoadedModel, cfg: UnitScreeningConfig, pairs: PromptPairs, pb: PairBatches, units: list[Unit],
    ids: tuple[list[int], list[int]], emotion: str, loaded: PromptPairs,
) -> UnitBlock:
    """Exact patching of `units` over `pairs` (batched as `pb`), the copy control beside it, the
    neutral control (each twin patched from its neutral′, drawn from `loaded`'s twins), the
    identity control's noise floor and the pairs' clusters."""
    # Recaptured rather than kept from the attribution pass, which consumed them (memory).
    exact_layers = sorted({layer for layer, _ in units})
    act_emo = unit_activations(model, pb.emotion, exact_layers)
    copy_free: dict[Unit, Tensor] = {}
    parts: dict[Unit, Tensor] = {}
    keep = copy_keep(model, pairs, pb, emotion, ids)
    exact = exact_patching(model, pb, act_emo, units, ids, desc=f"exact {emotion}", copy_free=(keep, copy_free), parts=parts)
    del act_emo
    # The neutral control: each twin patched from its neutral′ (analysis.screening.common.neutral_control).
    nc = neutral_control(model, cfg, loaded, pairs, pb, ids)
    act_ctl = unit_activations(model, nc.batches.emotion, exact_layers)
    neutral = {(s.layer, s.index): v for s, v in control_patching(model, nc, act_ctl, unit_sites(units), ids, f"control {emotion}").items()}
    del act_ctl
    sites = control_sites(units, "mlp")
    act_neu = unit_activations(model, pb.neutral, exact_layers)
    control = identity_control(model, pb, act_neu, sites, ids).double().cpu().numpy()
    del act_neu
    clusters = [span_clusters(pairs)[i] for i in pb.kept]
    templates = [template_labels(pairs)[i] for i in pb.kept]
    return UnitBlock(exact, copy_free, (sites, control), control_floor(cfg, control, emotion), clusters, templates, parts, neutral, nc)


def block_fields(block: UnitBlock, key: Unit, cfg: UnitScreeningConfig, attribution: float) -> dict:
    """A unit's exact fields (effect, copy control) and its neutral-control fields over one block's half."""
    exact = block.exact[key].double().cpu().numpy()
    return {
        **exact_fields(exact, block.copy_free[key].double().cpu().numpy(), cfg, block.clusters, block.floor, attribution,
                       templates=block.templates),
        **specificity_fields(exact, block.neutral[key].double().cpu().numpy(), block.parts[key].double().cpu().numpy(), cfg,
                             block.clusters, block.nc.rows, templates=block.templates),
    }


@dataclass(frozen=True)
class UnitScreening:
    doc: dict  # the JSON document
    table: pd.DataFrame  # attribution of every unit (the Parquet)


def screen(model: LoadedModel, cfg: UnitScreeningConfig, pairs: dict[str, PromptPairs]) -> UnitScreening:
    """Attribution for every unit, exact patching for the top-k, per emotion."""
    spec = model.spec
    check_has_units(spec)
    check_before_work(model, cfg, pairs)
    n_layers, d_mlp = spec.n_layers, int(spec.d_mlp)  # type: ignore[arg-type]
    n_units = n_layers * d_mlp
    lex = lexicon_ids(model.tokenizer)
    scores: list[dict] = []
    tables: list[pd.DataFrame] = []
    layers_summary: dict[str, list[dict]] = {}
    per_emotion: dict[str, dict] = {}
    halves: dict[str, dict] = {}
    controls: dict[str, tuple] = {}
    tested: dict[str, str] = {}
    ncs: dict[str, NeutralControl] = {}
    sel_ncs: dict[str, NeutralControl] = {}  # the selection half's, where the exact half is the other
    for emotion in cfg.emotions:
        screened, halves[emotion] = screened_pairs(cfg, pairs[emotion])
        sel_pb = pair_batches(model, screened, cfg.positions, max_unaligned_share=cfg.max_unaligned_share)
        ids = (lex[emotion], lex["neutral"])
        attr_t = attribution(model, sel_pb, unit_activations(model, sel_pb.emotion), ids).mean(0)  # [layer, d_mlp]
        attr = attr_t.double().cpu().numpy()
        if not np.isfinite(attr).all():
            layer, neuron = np.argwhere(~np.isfinite(attr))[0]
            raise InputError(
                f"attribution of unit mlp:{layer}:{neuron} ({emotion}) is {attr[layer, neuron]}; refusing to write {cfg.model}'s unit screening"
            )
        flat = np.abs(attr).ravel()
        order = np.argsort(-flat, kind="stable")  # ties keep layer, neuron order
        rank = np.empty(n_units, dtype=np.int64)
        rank[order] = np.arange(1, n_units + 1)
        rank = rank.reshape(n_layers, d_mlp)
        k = cfg.exact_top_k if cfg.exact_top_k and cfg.exact_top_k < n_units else n_units
        exact_units = sorted((int(i // d_mlp), int(i % d_mlp)) for i in order[:k])
        # The top-k by attribution on the selection half are tested on the confirmation half (exact_pairs).
        test_pairs, tested[emotion] = exact_pairs(cfg, pairs[emotion], screened, n_units)
        selection: UnitBlock | None = None
        pb = sel_pb
        if test_pairs is not screened:
            # ... and measured again on the selection half, the only numbers a choice (mlp-top:K, the
            # copy control's skip) may read (analysis.screening.selection: no leakage).
            selection = unit_block(model, cfg, screened, sel_pb, exact_units, ids, emotion, pairs[emotion])
            sel_ncs[emotion] = selection.nc
            # Two names, two halves: every exact number below is over `pb`, the record's `n_*` over `sel_pb`.
            pb = pair_batches(model, test_pairs, cfg.positions, max_unaligned_share=cfg.max_unaligned_share)
        block = unit_block(model, cfg, test_pairs, pb, exact_units, ids, emotion, pairs[emotion])
        ncs[emotion] = block.nc
        exact = block.exact
        controls[emotion] = block.control
        floor = block.floor
        per_emotion[emotion] = pairs_record(halves[emotion], sel_pb, tested[emotion], pb)

        layers_summary[emotion], top = layer_summary(attr, floor, cfg.top_per_layer)
        listed = set(exact_units) | top
        for layer, neuron in sorted(listed):
            row = {
                "layer": layer, "neuron": neuron, "emotion": emotion,
                "attribution": float(attr[layer, neuron]), "attribution_rank": int(rank[layer, neuron]),
                "exact": None, "exact_ci_low": None, "exact_ci_high": None, "exact_p": None, "exact_q": None,
                "exact_n": None, "exact_n_clusters": None, "no_effect": None, "attribution_ratio": None, "ratio_flag": False,
                "exact_copy_free": None, "exact_copy_free_n": None, "copy_share": None, "copy_flag": False, "selection": None,
                **SPECIFICITY_FIELDS,
            }
            if (layer, neuron) in exact:
                values = exact[(layer, neuron)].double().cpu().numpy()
                if not np.isfinite(values).all():
                    raise InputError(f"exact of unit mlp:{layer}:{neuron} ({emotion}) is not finite; refusing to write {cfg.model}'s unit screening")
                row.update(block_fields(block, (layer, neuron), cfg, row["attribution"]))
                if selection is not None:
                    # The same fields measured on the selection half: the only ones a choice reads.
                    row["selection"] = {"half": "selection", "emotion": emotion, **block_fields(selection, (layer, neuron), cfg, row["attribution"])}
            scores.append(row)
        grid_layer, grid_neuron = np.divmod(np.arange(n_units), d_mlp)
        tables.append(pd.DataFrame({
            "emotion": emotion, "layer": grid_layer.astype(np.int32), "neuron": grid_neuron.astype(np.int32),
            "attribution": attr.ravel(), "attribution_rank": rank.ravel(),
        }))
    corr = correct_and_correlate(scores, cfg.emotions)
    correct_specificity(cfg, scores, {e: c.gap for e, c in ncs.items()})
    # The selection half's verdicts, in their own family, for the choices (analysis.screening.selection).
    correct_specificity(cfg, [s["selection"] for s in scores if s.get("selection")], {e: c.gap for e, c in sel_ncs.items()})
    doc = {
        "schema": UNIT_SCORES_SCHEMA,
        "model": cfg.model,
        "profile": cfg.profile,
        "n_layers": n_layers,
        "d_mlp": d_mlp,
        "emotions": list(cfg.emotions),
        "params": {**asdict(cfg), **model.precision.record()},
        "metric": SCREENING_METRIC.meaning,
        "unit": "neuron n of layer L: blocks.L.mlp.hook_post[..., n] (column n of the MLP down-projection input)",
        "pairs": per_emotion,
        "split": split_record(cfg),
        "noise_floor": floor_record(cfg, controls),
        "bh_family": family_record(cfg, scores, n_units, tested),
        "copy_control": copy_record(cfg, scores),
        "specificity": specificity_record(cfg, scores, ncs),
        "attribution_ratio": ratio_record(cfg, scores),
        "scores": scores,
        "scores_kept": (
            f"every unit with an exact score (the top {cfg.exact_top_k or 'all'} by |attribution| per emotion) "
            f"and the top {cfg.top_per_layer} units of every layer by |attribution|; every unit's attribution "
            f"is in attribution_table"
        ),
        "layers": layers_summary,
        "attribution_vs_exact": corr,
        "attribution_table": None,
    }
    return UnitScreening(doc, pd.concat(tables, ignore_index=True))


def write_outputs(result: UnitScreening, output: Path, table: Path) -> dict:
    """Table first, JSON last: the JSON (the pipeline's output) exists only if both were written."""
    doc = {**result.doc, "attribution_table": str(table)}
    meta = {"schema": UNIT_ATTRIBUTION_SCHEMA, "summary_schema": UNIT_SCORES_SCHEMA, **{k: doc[k] for k in ("model", "profile", "emotions", "params", "metric")}}
    write_parquet(table, result.table, meta)
    write_unit_screening(output, doc)  # the contract checks the schema and the device/dtype record
    return doc


def format_top(doc: dict, n: int = 10) -> str:
    key = ranking_score(doc["scores"])
    rows = rank(doc["scores"], key, index="neuron")[:n]
    return top_lines(doc, rows, n, key, "neuron", ci_format="+.4g")
