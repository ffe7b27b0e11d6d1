"""Stage `screen`: prompt pairs × model → per-head scores for every layer × head × emotion.

Three scores per head h of layer L, each over the aligned (emotion prompt, neutral twin) pairs:

- `delta_attn`: attention from the last prompt position onto the span tokens in the emotion
  prompt, minus the same onto the twin's span. Computed per head from that head's own pattern
  (the seed gave one number to many heads; each head here reads its own row).
- `attribution`: gradient × activation difference, sum over patched positions and d_head of
  dM/dz_h · (z_h[emotion] − z_h[neutral]) in the neutral run: a first-order estimate of
  patching z_h from the emotion prompt into its twin. All heads from one backward pass.
- `exact`: the actual change of M when z_h is patched (the same positions), one forward per
  head from the cached residual before layer L, unembedding only the last position.

M is the emotion score of `analysis.measures.metrics` at the last prompt position. `exact` carries
n, a 95 % interval and a p from one inverted wild cluster bootstrap-t, and a Benjamini–Hochberg q across all heads × emotions
(the family, `bh_family`: every head × emotion, tested on the selection half; with a top-k
exact_top_k the top-k by |attribution| on the selection half, tested on the confirmation half);
`no_effect` where |exact| is at or below the identity control's noise floor (`noise_floor`), and
`attribution_ratio` / `ratio_flag` (attribution / exact outside [0.3, 3]) above it;
pairs that share an emotion expression get one bootstrap weight (one cluster per expression,
with a two-way standard error over expressions and template endings, analysis.measures.stats), since the
expression is what must generalize.

No leakage (issue 23): with a top-k tested on the confirmation half, each tested row also carries
`selection`, its exact fields (effect, copy control) measured again on the selection half; `top:N`
and the copy control's skip read only those and the attribution (analysis.screening.selection).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from analysis.base.contract import HEAD_SCORES_SCHEMA, rank, ranking_score, read_screening, SPECIFICITY_FIELDS
from analysis.core.loading import LoadedModel
from analysis.core.prompts import PromptPairs, span_clusters, template_labels, TokenBatch
from analysis.core.sites import head_sites, Site
from analysis.base.vocabulary import pattern_hook, z_hook
from analysis.base.errors import InputError
from analysis.interventions.edits import capture, last_logits, position_ids
from analysis.interventions.exact import exact_patching_sites
from analysis.measures.metrics import SCREENING_METRIC, lexicon_ids
from analysis.screening.selection import selection_ranking
from analysis.screening.common import (
    check_before_work, control_floor, control_patching, control_sites, copy_keep, copy_record, correct_and_correlate, correct_specificity,
    exact_fields, exact_pairs, family_record, floor_record, identity_control, neutral_control, NeutralControl, pair_batches, PairBatches,
    pairs_record, ratio_record, ScreeningConfig, screened_pairs, specificity_fields, specificity_record, split_record, top_lines,
    unchanged_prefix,
)


def top_heads(path: Path, emotion: str, n: int, skip_flagged: bool = False, specific_only: bool = False) -> tuple[tuple[int, int], ...]:
    """The n heads with the largest |score| for `emotion` in a screening file (for `top:N`);
    `skip_flagged`: leave out the heads the copy control flagged (`copy_flag`); `specific_only`:
    rank only the heads that passed the neutral control (`specific`, issue 23: the experiments'
    top:N means emotion heads, not heads that react to any change of the span)."""
    if not Path(path).is_file():
        raise InputError(
            f"head spec top:{n} needs the screening file {path}, which does not exist; run "
            f"`python -m analysis.head_screening` (or `dvc repro screen`) first, or give heads as L:H"
        )
    doc = read_screening(path)
    if emotion not in doc["emotions"]:
        raise InputError(f"screening file {path} has no scores for emotion {emotion!r} (it has {', '.join(doc['emotions'])})")
    # Only selection-half numbers reach the choice (analysis.screening.selection: no leakage).
    rows, _ = selection_ranking(doc, emotion, skip_flagged=skip_flagged, require_specific=specific_only)
    if n > len(rows):
        skipped = " not flagged by the copy control (copy_control.skip_flagged)" if skip_flagged else ""
        skipped += " that are specific (the neutral control: `specific`)" if specific_only else ""
        raise InputError(f"head spec top:{n}: screening file {path} ranks only {len(rows)} heads{skipped} for {emotion}")
    return tuple((int(s["layer"]), int(s["head"])) for s in rows[:n])


def delta_attn(model: LoadedModel, pb: PairBatches) -> Float[Tensor, "batch layer head"]:
    """Per pair: last-position attention onto the span, emotion prompt minus neutral twin."""
    n_layers = model.spec.n_layers

    def onto_span(batch: TokenBatch) -> Tensor:
        rows: dict[int, Tensor] = {}

        def grab(layer: int):  # noqa: ANN202
            def fn(pattern: Tensor, hook: object) -> Tensor:
                # pattern: [batch, head, query, key]; keep the last query's mass on span keys.
                last = pattern[:, :, -1, :]
                rows[layer] = (last * batch.span_mask[:, None, :].to(last.dtype)).sum(-1)
                return pattern

            return fn

        hooks = [(pattern_hook(layer), grab(layer)) for layer in range(n_layers)]
        with torch.no_grad():
            last_logits(model, batch, hooks)
        return torch.stack([rows[layer] for layer in range(n_layers)], 1)

    return onto_span(pb.emotion) - onto_span(pb.neutral)


def _z_names(model: LoadedModel) -> list[str]:
    return [z_hook(layer) for layer in range(model.spec.n_layers)]


def _patched_source(z_emo: Tensor, pb: PairBatches) -> Tensor:
    """Emotion z moved to the target positions it would be patched into: [batch, pos, head, d]."""
    gather = pb.idx[:, :, None, None].expand(-1, -1, *z_emo.shape[2:])
    return z_emo.gather(1, gather)


def attribution(
    model: LoadedModel, pb: PairBatches, z_emo: dict[str, Tensor], ids: tuple[list[int], list[int]]
) -> Float[Tensor, "batch layer head"]:
    """Gradient × (patched − clean) z for every head, one forward and one backward pass."""
    names = _z_names(model)
    deltas: dict[str, Tensor] = {}
    z_neu: dict[str, Tensor] = {}

    def open_z(name: str):  # noqa: ANN202
        def fn(z: Tensor, hook: object) -> Tensor:
            # Adding a zero that requires grad puts z on the tape without changing it; its
            # gradient is dM/dz including every downstream path.
            d = torch.zeros_like(z, requires_grad=True)
            deltas[name], z_neu[name] = d, z.detach()
            return z + d

        return fn

    batch = pb.neutral
    with torch.enable_grad(), model.bridge.hooks(fwd_hooks=[(n, open_z(n)) for n in names]):
        out = model.hf(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=position_ids(batch.attention_mask),
            logits_to_keep=1,
            use_cache=False,
        )
        m = SCREENING_METRIC.score(out.logits[:, -1], *ids)
        grads = torch.autograd.grad(m.sum(), [deltas[n] for n in names])
    mask = pb.mask[:, :, None, None].to(grads[0].dtype)
    per_layer = [
        (g * (_patched_source(z_emo[n], pb) - z_neu[n]) * mask).sum((1, 3)) for n, g in zip(names, grads, strict=True)
    ]
    return torch.stack(per_layer, 1).detach()


def exact_patching(
    model: LoadedModel,
    pb: PairBatches,
    z_emo: dict[str, Tensor],
    heads: list[tuple[int, int]],
    ids: tuple[list[int], list[int]],
    desc: str = "exact",
    copy_free: tuple[Tensor, dict] | None = None,
    parts: dict | None = None,
) -> dict[tuple[int, int], Float[Tensor, " batch"]]:
    """Per head: M(neutral with z_h patched from the emotion prompt) − M(neutral), per pair.

    The shared fast path (analysis.interventions.exact_patching_sites): blocks from the head's
    layer on, positions from the first changed column on, lexicon logits only (docs/DESIGN.md §10).
    """
    cf: dict = {}
    two: dict = {}
    out = exact_patching_sites(
        model, pb.neutral, z_emo, pb.idx, pb.mask, unchanged_prefix(pb), head_sites(heads), ids, desc,
        copy_free=None if copy_free is None else (copy_free[0], cf), parts=None if parts is None else two,
    )
    if copy_free is not None:
        copy_free[1].update({(s.layer, s.index): v for s, v in cf.items()})
    if parts is not None:  # ΔM's two terms per head: [pair, 2]
        parts.update({(s.layer, s.index): v for s, v in two.items()})
    return {(s.layer, s.index): v for s, v in out.items()}


@dataclass(frozen=True)
class ExactBlock:
    """One emotion's exact patching of its heads, per pair, with what its statistics need."""

    exact: dict[tuple[int, int], Float[Tensor, " pair"]]  # ΔM per head
    copy_free: dict[tuple[int, int], Float[Tensor, " pair"]]  # ΔM of the copy-free M per head (NaN: none usable)
    control: tuple[list[Site], np.ndarray]  # the identity control's sites and values [site, pair]
    floor: float  # the noise floor from that control
    clusters: list[str]  # each pair's cluster: its expression
    templates: list[str]  # each pair's template ending (the second clustering dimension)
    parts: dict[tuple[int, int], Float[Tensor, "pair 2"]]  # ΔM's two terms per head (Δ LSE emotion, Δ LSE neutral)
    neutral: dict[tuple[int, int], Float[Tensor, " pair"]]  # the neutral control's ΔM per head (neutral′ → twin)
    nc: NeutralControl  # its prompts and the emotion–neutral gap


def exact_block(
    model: LoadedModel, cfg: ScreeningConfig, pairs: PromptPairs, pb: PairBatches, z_emo: dict[str, Tensor],
    heads: list[tuple[int, int]], ids: tuple[list[int], list[int]], emotion: str, loaded: PromptPairs,
) -> ExactBlock:
    """Exact patching of `heads` over `pairs` (batched as `pb`, emotion activations `z_emo`), the
    copy control beside it, the neutral control (each twin patched from its neutral′, drawn from
    `loaded`'s twins), the identity control's noise floor and the pairs' clusters."""
    copy_free: dict[tuple[int, int], Tensor] = {}
    parts: dict[tuple[int, int], Tensor] = {}
    keep = copy_keep(model, pairs, pb, emotion, ids)
    exact = exact_patching(model, pb, z_emo, heads, ids, desc=f"exact {emotion}", copy_free=(keep, copy_free), parts=parts)
    nc = neutral_control(model, cfg, loaded, pairs, pb, ids)
    with torch.no_grad():
        z_ctl = capture(model, nc.batches.emotion, _z_names(model))
    neutral = {(s.layer, s.index): v for s, v in control_patching(model, nc, z_ctl, head_sites(heads), ids, f"control {emotion}").items()}
    del z_ctl
    with torch.no_grad():
        z_neu = capture(model, pb.neutral, _z_names(model))
    sites = control_sites(heads, "head")
    control = identity_control(model, pb, z_neu, sites, ids).double().cpu().numpy()
    clusters = [span_clusters(pairs)[i] for i in pb.kept]
    templates = [template_labels(pairs)[i] for i in pb.kept]
    return ExactBlock(exact, copy_free, (sites, control), control_floor(cfg, control, emotion), clusters, templates, parts, neutral, nc)


def block_fields(block: ExactBlock, key: tuple[int, int], cfg: ScreeningConfig, attribution: float) -> dict:
    """A head's exact fields (effect, copy control) and its neutral-control fields over one block's half."""
    exact = block.exact[key].double().cpu().numpy()
    return {
        **exact_fields(exact, block.copy_free[key].double().cpu().numpy(), cfg, block.clusters, block.floor, attribution,
                       templates=block.templates),
        **specificity_fields(exact, block.neutral[key].double().cpu().numpy(), block.parts[key].double().cpu().numpy(), cfg,
                             block.clusters, block.nc.rows, templates=block.templates),
    }


def screen(model: LoadedModel, cfg: ScreeningConfig, pairs: dict[str, PromptPairs]) -> dict:
    """Compute every score for every head × emotion; returns the JSON document."""
    spec = model.spec
    check_before_work(model, cfg, pairs)
    lex = lexicon_ids(model.tokenizer)
    all_heads = [(layer, head) for layer in range(spec.n_layers) for head in range(spec.n_heads)]
    scores: list[dict] = []
    per_emotion: dict[str, dict] = {}
    controls: dict[str, tuple] = {}
    tested: dict[str, str] = {}
    screened, halves = {}, {}
    ncs: dict[str, NeutralControl] = {}
    sel_ncs: dict[str, NeutralControl] = {}  # the selection half's, where the exact half is the other
    for emotion in cfg.emotions:
        screened[emotion], halves[emotion] = screened_pairs(cfg, pairs[emotion])
        sel_pb = pair_batches(model, screened[emotion], cfg.positions, max_unaligned_share=cfg.max_unaligned_share)
        ids = (lex[emotion], lex["neutral"])
        with torch.no_grad():
            z_emo = capture(model, sel_pb.emotion, _z_names(model))
        d_attn = delta_attn(model, sel_pb).mean(0)
        attr = attribution(model, sel_pb, z_emo, ids).mean(0)
        if cfg.exact_top_k and cfg.exact_top_k < len(all_heads):
            order = sorted(all_heads, key=lambda lh: (-abs(float(attr[lh])), lh))
            exact_heads = sorted(order[: cfg.exact_top_k])
        else:
            exact_heads = all_heads
        test_pairs, tested[emotion] = exact_pairs(cfg, pairs[emotion], screened[emotion], len(all_heads))
        # Two names, two halves: every exact number is over `pb`, the record's `n_*` over `sel_pb`.
        pb = sel_pb
        selection: ExactBlock | None = None
        if test_pairs is not screened[emotion]:  # the top-k go to the confirmation half (exact_pairs)
            # ... and are measured again on the selection half, the only numbers a choice (top:N, the
            # copy control's skip) may read (analysis.screening.selection: no leakage).
            selection = exact_block(model, cfg, screened[emotion], sel_pb, z_emo, exact_heads, ids, emotion, pairs[emotion])
            sel_ncs[emotion] = selection.nc
            pb = pair_batches(model, test_pairs, cfg.positions, max_unaligned_share=cfg.max_unaligned_share)
            with torch.no_grad():
                z_emo = capture(model, pb.emotion, _z_names(model))
        block = exact_block(model, cfg, test_pairs, pb, z_emo, exact_heads, ids, emotion, pairs[emotion])
        ncs[emotion] = block.nc
        exact, copy_free, floor, clusters = block.exact, block.copy_free, block.floor, block.clusters
        controls[emotion] = block.control
        per_emotion[emotion] = pairs_record(halves[emotion], sel_pb, tested[emotion], pb)
        for layer, head in all_heads:
            row = {
                "layer": layer,
                "head": head,
                "emotion": emotion,
                "delta_attn": float(d_attn[layer, head]),
                "attribution": float(attr[layer, head]),
                "exact": None,
                "exact_ci_low": None,
                "exact_ci_high": None,
                "exact_p": None,
                "exact_q": None,
                "exact_n": None,
                "exact_n_clusters": None,
                "no_effect": None,
                "attribution_ratio": None,
                "ratio_flag": False,
                "exact_copy_free": None,
                "exact_copy_free_n": None,
                "copy_share": None,
                "copy_flag": False,
                "selection": None,
                **SPECIFICITY_FIELDS,
            }
            values = {"delta_attn": row["delta_attn"], "attribution": row["attribution"]}
            if (layer, head) in exact:
                values["exact"] = float(exact[(layer, head)].mean())
            for k, v in values.items():
                if not np.isfinite(v):
                    raise InputError(f"{k} of head {layer}:{head} ({emotion}) is {v}; refusing to write {cfg.model}'s screening")
            if (layer, head) in exact:
                row.update(block_fields(block, (layer, head), cfg, row["attribution"]))
                if selection is not None:
                    # The same fields measured on the selection half: the only ones a choice reads.
                    row["selection"] = {"half": "selection", "emotion": emotion, **block_fields(selection, (layer, head), cfg, row["attribution"])}
            scores.append(row)
    corr = correct_and_correlate(scores, cfg.emotions)
    correct_specificity(cfg, scores, {e: c.gap for e, c in ncs.items()})
    # The selection half's verdicts, in their own family, for the choices (analysis.screening.selection).
    correct_specificity(cfg, [s["selection"] for s in scores if s.get("selection")], {e: c.gap for e, c in sel_ncs.items()})
    return {
        "schema": HEAD_SCORES_SCHEMA,
        "model": cfg.model,
        "profile": cfg.profile,
        "n_layers": spec.n_layers,
        "n_heads": spec.n_heads,
        "emotions": list(cfg.emotions),
        "params": {**asdict(cfg), **model.precision.record()},
        "metric": "M = logsumexp(logits[emotion lexicon]) - logsumexp(logits[neutral lexicon]) at the last prompt position",
        "pairs": per_emotion,
        "split": split_record(cfg),
        "noise_floor": floor_record(cfg, controls),
        "bh_family": family_record(cfg, scores, len(all_heads), tested),
        "copy_control": copy_record(cfg, scores),
        "specificity": specificity_record(cfg, scores, ncs),
        "attribution_ratio": ratio_record(cfg, scores),
        "scores": scores,
        "attribution_vs_exact": corr,
    }


def format_top(doc: dict, n: int = 10) -> str:
    key = ranking_score(doc["scores"])
    rows = rank(doc["scores"], key)[:n]
    return top_lines(doc, rows, n, key, "head")
