"""The validate stage's computation: every screening metric scored against the benchmark's known
answers (analysis.embedded.benchmark), on the held-out half of the expressions.

- per metric (Δattn, attribution, exact): AUROC of |score| over every head × emotion row, the
  causal rows (planted.json `by_emotion`) positive, and precision@k with k = the number of
  causal rows; for exact, a row the copy control flags scores 0, as the pipeline skips it;
- the same for the MLP units (`unit_metrics`): the project's unit screening with exact patching of
  every unit, scored over every unit × emotion row against planted.json `units_by_emotion`;
- attribution against exact: Spearman over the rows above the noise floor (exact q < alpha),
  and each such row's attribution / exact ratio, flagged below `ratio_flag` (the saturation trap);
- per structure: the signature its planted.json states, measured with the project's exact
  interventions (zero and patch edits through the bridge's hooks);
- the null screenings: the nulls stage's document (analysis.bench.nulls), carried into this one for the
  null criterion (analysis.reporting.bench_tables).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from analysis.bench.continuations import DEFAULT_STRUCTURES, generation_effects
from analysis.base.contract import rank, read_nulls, read_planted, SWEEP_SCHEMA, VALIDATION_SCHEMA
from analysis.core.loading import LoadedModel, load_model
from analysis.core.prompts import PromptPairs
from analysis.core.sites import head_sites, unit_sites
from analysis.base.vocabulary import EMOTIONS, mlp_post_name, NEUTRAL, pattern_hook, z_hook
from analysis.embedded.benchmark import BenchConfig, build_benchmark, evaluation_pairs as bench_evaluation_pairs, POLY_SOURCES
from analysis.interventions.edits import (
    capture, Edit, hooks_for, last_logits, patch_edits, position_map, tokenize_pairs, zero_edits,
)
from analysis.measures.metrics import lexicon_ids, SCREENING_METRIC
from analysis.base.errors import InputError
from analysis.screening.common import pair_batches, ScreeningConfig
from analysis.screening.heads import exact_block, ExactBlock, screen
from analysis.screening.units import screen as screen_units, UnitScreeningConfig
from analysis.measures.stats import auroc, spearman

METRICS = ("delta_attn", "attribution", "exact")
UNIT_METRICS = ("attribution", "exact")  # a unit has no attention, so no Δattn


@dataclass(frozen=True)
class ValidationConfig:
    folder: str  # the benchmark model folder
    profile: str
    screening: ScreeningConfig  # the `screen` stage's config for the same params, over the held-out half as given
    nulls: str | None = None  # the nulls stage's document (contract nulls_file); None: no null criterion
    selection_share: float = 0.5  # the benchmark's own split (the half its construction used)
    alpha: float = 0.05  # BH level: "above the noise floor"
    ratio_flag: float = 0.3  # attribution / exact below this: attribution misses the effect
    generation_tokens: int = 15  # the generation experiments' greedy tokens (params ablation.max_tokens)
    generation_draws: int = 5  # their random-head draws (params random_baseline.draws)
    generation: bool = True  # run them (the sweep does not: secondary, and ~1 min per benchmark)
    # Exact patching of every bench unit (unit_metrics) costs minutes: the sweep and the in-process
    # tests that are about something else turn it off, as they leave out the null screenings.
    unit_metrics: bool = True
    unit_resamples: int = 1000  # the unit screening's bootstrap draws here (its AUROC ranks means; see unit_screening_config)

    @classmethod
    def from_params(cls, p: Any, *, folder: str, profile: str, nulls: str | None = None) -> "ValidationConfig":
        """The validate stage's config under params `p`: the screening is the `screen` stage's
        (ScreeningConfig.from_params) with split off, since the held-out half is already the one to
        score, and every emotion."""
        # every emotion, whatever params `emotions` asks of the screen stage: the benchmark's structures
        # serve all three, and its criteria read every one (`dvc exp run -S emotions=[anger]` must not break it)
        return cls(folder=folder, profile=profile, nulls=nulls, selection_share=p.split.selection_share,
                   generation_tokens=p.ablation.max_tokens, generation_draws=p.random_baseline.draws,
                   screening=ScreeningConfig.from_params(p, model=folder, profile=profile, split=False, emotions=EMOTIONS))

    @property
    def seed(self) -> int:
        return self.screening.seed


# --- the screening on the held-out half ---------------------------------------------------------


def evaluation_pairs(cfg: ValidationConfig, seed: int) -> dict[str, PromptPairs]:
    return bench_evaluation_pairs(cfg.profile, seed, cfg.selection_share)


def screening_config(model: LoadedModel, cfg: ValidationConfig) -> ScreeningConfig:
    """The screening's config for `model` here: the stage's own, over the held-out half as given (no further split)."""
    return dataclasses.replace(cfg.screening, model=model.path)


def screened(model: LoadedModel, cfg: ValidationConfig, pairs: Mapping[str, PromptPairs]) -> dict:
    """The screening document of `model` over `pairs` (the held-out half; no further split)."""
    return screen(model, screening_config(model, cfg), dict(pairs))


def exact_screening(model: LoadedModel, sc: ScreeningConfig, pairs: PromptPairs, emotion: str) -> ExactBlock:
    """Every head's exact patching over `pairs` as `screen` does it (its batches, copy and identity controls)."""
    pb = pair_batches(model, pairs, sc.positions, max_unaligned_share=sc.max_unaligned_share)
    lex = lexicon_ids(model.tokenizer)
    heads = [(layer, head) for layer in range(model.spec.n_layers) for head in range(model.spec.n_heads)]
    with torch.no_grad():
        z_emo = capture(model, pb.emotion, [z_hook(layer) for layer in range(model.spec.n_layers)])
    return exact_block(model, sc, pairs, pb, z_emo, heads, (lex[emotion], lex[NEUTRAL]), emotion, pairs)


def _score(row: Mapping[str, Any], metric: str) -> float:
    if metric == "exact" and row["copy_flag"]:
        return 0.0  # the pipeline's rankings skip what the copy control flags
    return abs(float(row[metric]))


def metric_scores(doc: dict, causal: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, dict]:
    """AUROC and precision@k of each metric over every head × emotion row."""
    rows = doc["scores"]
    truth = {(e, tuple(h)) for e, hs in causal.items() for h in hs}
    labels = [int((r["emotion"], (r["layer"], r["head"])) in truth) for r in rows]
    return {metric: ranking_quality([_score(r, metric) for r in rows], labels) for metric in METRICS}


def ranking_quality(scores: Sequence[float], labels: Sequence[int]) -> dict:
    """How well `scores` [row] (|score|, higher = more causal) rank the rows whose `labels` [row]
    are 1: AUROC, and precision@k with k = the number of positives (the share of positives among the
    k best scores; ties keep row order). None where there is no positive (or no negative, for AUROC)."""
    k = int(sum(labels))
    top = np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]
    return {"auroc": auroc(scores, labels), "precision_at_k": float(np.mean([labels[i] for i in top])) if k else None, "k": k}


def unit_screening_config(model: LoadedModel, cfg: ValidationConfig) -> UnitScreeningConfig:
    """The unit screening's config here: the validate stage's screening config (screening_config:
    the screen stage's for the same params, no further split) with exact patching of every unit
    (exact_top_k 0), so that every unit × emotion row has an exact score to rank. Its positions are
    the head screening's: the validate stage's params are `screening`, not `unit_screening` (equal in
    params.yaml). Its bootstrap draws are `cfg.unit_resamples`: the AUROC ranks the exact means, which
    the draws do not touch, and 9216 rows' tests at the stage's 10000 draws took ~13 of ~20 min."""
    sc = screening_config(model, cfg)
    fields = {f.name: getattr(sc, f.name) for f in dataclasses.fields(sc)}
    return UnitScreeningConfig(**{**fields, "exact_top_k": 0, "n_resamples": cfg.unit_resamples})


def unit_rows(model: LoadedModel, cfg: ValidationConfig, pairs: Mapping[str, PromptPairs]) -> list[dict]:
    """Every unit × emotion row of the project's unit screening (analysis.screening.units.screen) of
    `model` over `pairs` (the held-out half), under unit_screening_config.

    With exact_top_k 0 the JSON's rows are every unit (it keeps the exact-patched units and each
    layer's top units by attribution; the Parquet holds every attribution): checked here, so that an
    AUROC is never taken over a subset the screening happened to keep."""
    uc = unit_screening_config(model, cfg)
    rows = screen_units(model, uc, dict(pairs)).doc["scores"]
    n_units = model.spec.n_layers * int(model.spec.d_mlp)  # type: ignore[arg-type]
    seen = {(r["emotion"], r["layer"], r["neuron"]) for r in rows if r["exact"] is not None}
    if len(rows) != len(seen) or len(seen) != n_units * len(uc.emotions):
        raise RuntimeError(f"the unit screening returned {len(rows)} rows, {len(seen)} with an exact score; "
                           f"expected every one of {n_units} units x {len(uc.emotions)} emotions")
    return rows


def unit_metric_scores(rows: Sequence[Mapping[str, Any]], causal: Mapping[str, Sequence[Sequence[int]]], shown: int = 10) -> dict:
    """AUROC and precision@k of attribution and exact over every unit × emotion row, the causal
    units (`causal`: emotion -> [[layer, neuron], ...], planted.json `units_by_emotion`) positive;
    |score|, a copy-flagged row scoring 0 for exact as for heads. Per metric also `outranking`: the
    non-causal rows that rank above some causal row (at most `shown`, best first), to say why."""
    truth = {(e, tuple(u)) for e, us in causal.items() for u in us}
    labels = [int((r["emotion"], (r["layer"], r["neuron"])) in truth) for r in rows]  # [row]
    out: dict[str, Any] = {}
    for metric in UNIT_METRICS:
        scores = [_score(r, metric) for r in rows]  # [row]
        ordered = rank(rows, lambda r, m=metric: _score(r, m), index="neuron")  # the contract's one ranking
        last_causal = max((i for i, r in enumerate(ordered) if (r["emotion"], (r["layer"], r["neuron"])) in truth), default=-1)
        above = [r for r in ordered[:last_causal] if (r["emotion"], (r["layer"], r["neuron"])) not in truth]
        out[metric] = {
            **ranking_quality(scores, labels),
            "n_outranking": len(above),
            "outranking": [{"emotion": r["emotion"], "layer": r["layer"], "neuron": r["neuron"], metric: r[metric],
                            "copy_flag": r["copy_flag"]} for r in above[:shown]],
        }
    return out


def unit_metrics(model: LoadedModel, cfg: ValidationConfig, pairs: Mapping[str, PromptPairs],
                 causal: Mapping[str, Sequence[Sequence[int]]]) -> dict:
    """The unit screening of `model` over `pairs` (unit_rows) scored against `causal` (unit_metric_scores)."""
    rows = unit_rows(model, cfg, pairs)
    return {
        "truth": {e: [list(u) for u in us] for e, us in causal.items()},
        "n_rows": len(rows),
        "screening": "analysis.screening.units.screen under the validate stage's screening config, exact_top_k 0 "
        "(exact patching of every unit), on the held-out half",
        **unit_metric_scores(rows, causal),
    }


def rank_of(doc: dict, emotion: str, head: Sequence[int], metric: str) -> int:
    """1-based rank of `head` among `emotion`'s heads by |metric| (ties: lower layer, head)."""
    rows = [r for r in doc["scores"] if r["emotion"] == emotion]
    order = sorted(rows, key=lambda r: (-round(_score(r, metric), 6), r["layer"], r["head"]))
    return 1 + next(i for i, r in enumerate(order) if [r["layer"], r["head"]] == list(head))


def row_of(doc: dict, emotion: str, head: Sequence[int]) -> dict:
    return next(r for r in doc["scores"] if r["emotion"] == emotion and [r["layer"], r["head"]] == list(head))


def attribution_vs_exact(doc: dict, cfg: ValidationConfig) -> dict:
    """Spearman of attribution with exact over the rows above the noise floor, and their ratios."""
    above = [r for r in doc["scores"] if r["exact_q"] is not None and r["exact_q"] < cfg.alpha and not r["copy_flag"]]
    ratios = [
        {"emotion": r["emotion"], "layer": r["layer"], "head": r["head"], "attribution": r["attribution"], "exact": r["exact"],
         "ratio": r["attribution"] / r["exact"]}
        for r in above
    ]
    return {
        "n_above_floor": len(above),
        "spearman": spearman([r["attribution"] for r in above], [r["exact"] for r in above]),
        "ratio_flag": cfg.ratio_flag,
        "flagged": [x for x in ratios if x["ratio"] < cfg.ratio_flag],
        "rows": ratios,
    }


# --- interventions on several heads at once (the signatures) ------------------------------------


def _m(model: LoadedModel, batch, ids, edits: Sequence[Edit] = ()) -> Float[Tensor, " batch"]:
    with torch.no_grad():
        return SCREENING_METRIC.score(last_logits(model, batch, hooks_for(edits)), *ids)


@dataclass(frozen=True)
class Runs:
    """One emotion's held-out pairs on a model: both batches, their activations and M."""

    model: LoadedModel
    emotion_batch: Any
    neutral_batch: Any
    ids: tuple[list[int], list[int]]
    z_emotion: dict[str, Tensor]
    z_neutral: dict[str, Tensor]
    m_emotion: float
    m_neutral: float

    @property
    def gap(self) -> float:
        return self.m_emotion - self.m_neutral

    def _patch(self, heads: Sequence[Sequence[int]], denoise: bool) -> list[Edit]:
        src, tgt = (self.emotion_batch, self.neutral_batch) if denoise else (self.neutral_batch, self.emotion_batch)
        idx, mask = position_map("all", source=src, target=tgt)
        return patch_edits(head_sites([tuple(h) for h in heads]), self.z_emotion if denoise else self.z_neutral, idx, mask)

    def denoise(self, heads: Sequence[Sequence[int]]) -> float:
        """Share of the gap recovered by patching `heads` from the emotion prompts into their twins."""
        return (float(_m(self.model, self.neutral_batch, self.ids, self._patch(heads, True)).mean()) - self.m_neutral) / self.gap

    def noise(self, heads: Sequence[Sequence[int]]) -> float:
        """Share of the gap removed by patching `heads` from the twins into the emotion prompts."""
        return (self.m_emotion - float(_m(self.model, self.emotion_batch, self.ids, self._patch(heads, False)).mean())) / self.gap

    def patch_effect(self, heads: Sequence[Sequence[int]]) -> float:
        """ΔM (nats) of the denoising patch of `heads` jointly."""
        return float(_m(self.model, self.neutral_batch, self.ids, self._patch(heads, True)).mean()) - self.m_neutral

    def unit(self, unit: Sequence[int]) -> dict[str, float]:
        """A unit's denoising ΔM and how much its activation at the last position changes."""
        (site,) = unit_sites([tuple(unit)])
        idx, mask = position_map("all", source=self.emotion_batch, target=self.neutral_batch)
        edits = patch_edits([site], self.z_emotion, idx, mask)
        delta = self.z_emotion[site.hook_name][:, -1, site.index] - self.z_neutral[site.hook_name][:, -1, site.index]
        effect = float(_m(self.model, self.neutral_batch, self.ids, edits).mean()) - self.m_neutral
        return {"exact": effect, "activation_change": float(delta.mean())}

    def zero_effect(self, heads: Sequence[Sequence[int]], scale: float = 0.0) -> float:
        """M(emotion) - M(emotion with `heads`' z multiplied by `scale`; 0 = zero ablation)."""
        edits = [e for h in heads for e in _scaled(self, h, scale)]
        return self.m_emotion - float(_m(self.model, self.emotion_batch, self.ids, edits).mean())


def runs(model: LoadedModel, pairs: PromptPairs, emotion: str) -> Runs:
    emo, neu = tokenize_pairs(model, pairs)
    lex = lexicon_ids(model.tokenizer)
    ids = (lex[emotion], lex[NEUTRAL])
    names = [z_hook(layer) for layer in range(model.spec.n_layers)] + [mlp_post_name(layer) for layer in range(model.spec.n_layers)]
    with torch.no_grad():
        z_e, z_n = capture(model, emo, names), capture(model, neu, names)
    return Runs(model, emo, neu, ids, z_e, z_n, float(_m(model, emo, ids).mean()), float(_m(model, neu, ids).mean()))


def attention_to_span(r: Runs, head: Sequence[int], edits: Sequence[Edit] = ()) -> float:
    """Mean last-position attention of `head` onto the span in the emotion run (under `edits`)."""
    layer, h = head
    store = {}

    def grab(pattern: Tensor, hook: object) -> Tensor:
        store["p"] = pattern[:, h, -1, :].detach()
        return pattern

    with torch.no_grad(), r.model.bridge.hooks(fwd_hooks=[*hooks_for(edits), (pattern_hook(layer), grab)]):
        last_logits(r.model, r.emotion_batch)
    return float((store["p"] * r.emotion_batch.span_mask.to(store["p"].dtype)).sum(-1).mean())


def signatures(model: LoadedModel, planted: dict, pairs: Mapping[str, PromptPairs], doc: dict) -> dict:
    """Each planted structure's stated signature, measured."""
    s = planted["benchmark"]["structures"]
    by_emotion = {e: runs(model, pairs[e], e) for e in {rec["emotion"] for rec in s.values()}}
    out: dict[str, dict] = {}
    if "distributed" in s:
        rec = s["distributed"]
        r, heads = by_emotion[rec["emotion"]], [rec["heads"][k] for k in ("d1", "d2", "d3")]
        each = [row_of(doc, rec["emotion"], h)["exact"] for h in heads]
        out["distributed"] = {
            "exact": each, "shares": [x / sum(each) for x in each],
            "cumulative_denoise": [r.denoise(heads[: i + 1]) for i in range(3)], "gap": r.gap,
        }
    if "backup" in s:
        rec = s["backup"]
        r, a, b = by_emotion[rec["emotion"]], rec["heads"]["A"], rec["heads"]["B"]
        scales = [round(x, 2) for x in np.linspace(1.0, 0.0, 11)]
        out["backup"] = {
            "gap": r.gap,
            "zero_A": r.zero_effect([a]), "zero_B": r.zero_effect([b]), "zero_AB": r.zero_effect([a, b]),
            "noise_A": r.noise([a]), "noise_AB": r.noise([a, b]),
            "denoise_A": r.denoise([a]), "denoise_AB": r.denoise([a, b]),
            "curve": {
                "scale_A": scales,
                "effect_B_free": [r.zero_effect([a], x) for x in scales],
                "effect_B_zeroed": [r.zero_effect([a, b], x) - r.zero_effect([b]) for x in scales],
                "attention_B_to_span": [attention_to_span(r, b, _scaled(r, a, x)) for x in scales],
            },
            "attention_B_to_span_A_zeroed": attention_to_span(r, b, _scaled(r, a, 0.0)),
            "attention_B_to_span_clean": attention_to_span(r, b),
        }
    if "cancellation" in s:
        rec = s["cancellation"]
        r, plus, minus = by_emotion[rec["emotion"]], rec["heads"]["plus"], rec["heads"]["minus"]
        layer = plus[0]
        out["cancellation"] = {
            "plus": row_of(doc, rec["emotion"], plus)["exact"], "minus": row_of(doc, rec["emotion"], minus)["exact"],
            "plus_q": row_of(doc, rec["emotion"], plus)["exact_q"], "minus_q": row_of(doc, rec["emotion"], minus)["exact_q"],
            "joint": r.patch_effect([plus, minus]),
            "layer": r.patch_effect([[layer, h] for h in range(model.spec.n_heads)]),
        }
    for name, role in (("decoy", "decoy"), ("value_only", "value"), ("layernorm", "ln"), ("copy", "copy"), ("variant_copy", "variant"),
                       ("confound", "confound"), ("unequal", "unequal")):
        if name in s:
            rec = s[name]
            row = row_of(doc, rec["emotion"], rec["heads"][role])
            out[name] = {
                **{m: row[m] for m in METRICS}, "exact_q": row["exact_q"], "copy_share": row["copy_share"], "copy_flag": row["copy_flag"],
                "rank": {m: rank_of(doc, rec["emotion"], rec["heads"][role], m) for m in METRICS},
            }
    if "units" in s:
        poly, decoy = s["units"]["units"]["poly"], s["units"]["units"]["decoy_unit"]
        out["units"] = {
            "poly": {e: by_emotion.get(e, runs(model, pairs[e], e)).unit(poly) for e in (s[src]["emotion"] for src in POLY_SOURCES)},
            "decoy_unit": by_emotion.get(s["units"]["emotion"], runs(model, pairs[s["units"]["emotion"]], s["units"]["emotion"])).unit(decoy),
        }
    if "saturation" in s:
        rec = s["saturation"]
        trap, comp = (row_of(doc, rec["emotion"], rec["heads"][k]) for k in ("trap", "competitor"))
        out["saturation"] = {
            "trap": {m: trap[m] for m in METRICS}, "competitor": {m: comp[m] for m in METRICS},
            "trap_ratio": trap["attribution"] / trap["exact"], "competitor_over_trap_exact": comp["exact"] / trap["exact"],
            "competitor_ratio": comp["attribution"] / comp["exact"],
        }
    return out


def _scaled(r: Runs, head: Sequence[int], scale: float) -> list[Edit]:
    sites = head_sites([tuple(head)])
    if scale == 0.0:
        return zero_edits(sites, r.emotion_batch.input_ids.shape[0], {sites[0]: (r.model.spec.d_head,)})
    idx, mask = position_map("all", source=r.emotion_batch, target=r.emotion_batch)
    return patch_edits(sites, {s.hook_name: r.z_emotion[s.hook_name] * scale for s in sites}, idx, mask)


# --- verdicts, nulls, the document ----------------------------------------------------------------


def verdicts(doc: dict, planted: dict) -> dict[str, dict[str, str]]:
    """Structure × metric -> found / missed / misleading (the report's table).

    A causal head is found by a metric when it ranks within the top k_e of its emotion (k_e: the
    emotion's causal heads). A structure with causal heads is found when all are (the cancellation
    pair also with opposite signs: the same sign is misleading), else missed. A structure without
    one (decoy, copy head) is misleading when the metric ranks it within the top k_e, else found
    (the metric correctly passes it over).
    """
    causal = planted["by_emotion"]
    out: dict[str, dict[str, str]] = {}
    for name, rec in planted["benchmark"]["structures"].items():
        if not rec["heads"]:
            continue
        e, k = rec["emotion"], len(causal[rec["emotion"]])
        out[name] = {}
        for metric in METRICS:
            roles = [r for r in rec["causal"] if r in rec["heads"]] or list(rec["heads"])
            top = [rank_of(doc, e, rec["heads"][r], metric) <= k for r in roles]
            if not rec["causal"]:
                out[name][metric] = "misleading" if any(top) else "found"
                continue
            verdict = "found" if all(top) else "missed"
            if name == "cancellation" and verdict == "found":
                signs = {np.sign(row_of(doc, e, rec["heads"][r])[metric]) for r in roles}
                verdict = "found" if len(signs) == 2 else "misleading"
            out[name][metric] = verdict
    return out


NO_NULLS = {"n_nulls": 0, "per_null": [], "share_with_discovery": None, "share_with_discovery_ci": None, "by_source": {},
            "construction": "none: no null screenings were asked for"}


def null_record(cfg: ValidationConfig) -> dict:
    """The nulls stage's document for this validation (its per-null records and shares), checked
    to be of this benchmark and profile; NO_NULLS without one."""
    if cfg.nulls is None:
        return dict(NO_NULLS)
    doc = read_nulls(cfg.nulls)
    if doc["profile"] != cfg.profile or Path(doc["model"]).resolve() != Path(cfg.folder).resolve():
        raise InputError(f"input file {cfg.nulls}: null screenings of {doc['model']} on profile {doc['profile']}, "
                         f"not of {cfg.folder} on profile {cfg.profile}")
    return {k: v for k, v in doc.items() if k not in ("schema", "model", "profile", "params")}


def generation_record(cfg: ValidationConfig, model: LoadedModel, pairs: Mapping[str, PromptPairs], planted: dict) -> dict:
    """The generation experiments on the benchmark (analysis.bench.continuations: each structure's
    keyword and changed-share effects beside the sign its construction implies), secondary: not a
    criterion (see the report). Run times are left out, so a rerun writes the same bytes."""
    planned = [s for s in DEFAULT_STRUCTURES if s in planted["benchmark"]["structures"]]
    if not cfg.generation or not planned:
        return {}
    doc = generation_effects(cfg.folder, cfg.profile, pairs, planted, seed=cfg.seed, n_resamples=cfg.screening.n_resamples,
                             structures=planned, max_tokens=cfg.generation_tokens, random_draws=cfg.generation_draws, model=model)
    return {**doc, "model": "bench", "structures": {k: {f: v for f, v in rec.items() if f != "seconds"}
                                                   for k, rec in doc["structures"].items()}}


def validate(cfg: ValidationConfig) -> dict:
    """The validation document (contract VALIDATION_SCHEMA)."""
    planted = read_planted(cfg.folder)
    pairs = evaluation_pairs(cfg, planted["benchmark"]["seed"])
    model = load_model(cfg.folder)
    doc = screened(model, cfg, pairs)
    return {
        "schema": VALIDATION_SCHEMA,
        "model": cfg.folder,
        "profile": cfg.profile,
        "half": "confirmation: the expressions the benchmark's construction did not use",
        "n_pairs": {e: len(p) for e, p in pairs.items()},
        "params": {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                   for k, v in ((k, getattr(cfg, k)) for k in cfg.__dataclass_fields__)},
        "structures": planted["benchmark"]["structures"],
        "structures_by_emotion": planted["by_emotion"],
        "metrics": metric_scores(doc, planted["by_emotion"]),
        "unit_metrics": unit_metrics(model, cfg, pairs, planted["units_by_emotion"]) if cfg.unit_metrics else None,
        "attribution_vs_exact": attribution_vs_exact(doc, cfg),
        "signatures": signatures(model, planted, pairs, doc),
        "verdicts": verdicts(doc, planted),
        "n_causal_copy_flagged": sum(
            1 for r in doc["scores"] if r["copy_flag"] and [r["layer"], r["head"]] in planted["by_emotion"][r["emotion"]]
        ),
        "generation": generation_record(cfg, model, pairs, planted),
        "nulls": null_record(cfg),
        "scores": [{k: r.get(k) for k in ("layer", "head", "emotion", *METRICS, "exact_q", "copy_flag", "copy_share", "control", "specificity",
                                          "specificity_q", "specific")} for r in doc["scores"]],
    }


def difficulty_sweep(cfg: ValidationConfig, strengths: Sequence[float], *, seed: int) -> dict:
    """The benchmark rebuilt at each background strength (BenchConfig.background: the background
    heads' and units' writes times it; 1 is the stored benchmark) and validated as the validate
    stage validates, without null screenings (the null criterion is the validate stage's)."""
    bad = [s for s in strengths if not (np.isfinite(s) and s > 0)]
    if bad or not strengths:
        raise InputError(f"benchmark.sweep: every background strength must be a positive number, got {list(strengths)!r}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for strength in strengths:
            label = f"bench x{strength:g}"
            folder = build_benchmark(BenchConfig(profile=cfg.profile, seed=seed, selection_share=cfg.selection_share,
                                                 background=float(strength)), Path(tmp) / f"x{strength:g}")
            doc = validate(dataclasses.replace(cfg, folder=str(folder), nulls=None, generation=False, unit_metrics=False))
            # the temporary folder's name is not part of the result
            doc["model"] = label
            doc["params"] = {**doc["params"], "folder": label, "screening": {**doc["params"]["screening"], "model": label}}
            runs.append({"background": float(strength), "validation": doc})
    return {"schema": SWEEP_SCHEMA, "profile": cfg.profile, "strengths": [float(s) for s in strengths], "runs": runs,
            "knob": "the background heads' and units' output weights times the strength (their std: "
            "analysis.embedded.benchmark BG_WRITE, BG_UNIT_WRITE); the planted structures unchanged"}
