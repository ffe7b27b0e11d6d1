"""The validate stage's computation: every screening metric scored against the benchmark's known
answers (analysis.embedded.benchmark), on the held-out half of the expressions.

- per metric (Δattn, attribution, exact): AUROC of |score| over every head × emotion row, the
  causal rows (planted.json `by_emotion`) positive, and precision@k with k = the number of
  causal rows; for exact, a row the copy control flags scores 0, as the pipeline skips it;
- attribution against exact: Spearman over the rows above the noise floor (exact q < alpha),
  and each such row's attribution / exact ratio, flagged below `ratio_flag` (the saturation trap);
- per structure: the signature its planted.json states, measured with the project's exact
  interventions (zero and patch edits through the bridge's hooks);
- the null screenings (`nulls`): the benchmark with its span embeddings permuted, and random-weight
  models of each family, screened as the `screen` stage screens on neutral-vs-neutral pairs; the
  share of them with any emotion-head claim, which under this complete null is also the mean
  false-discovery proportion (issue 24: a null that can fail; the fair sign of M per cluster of
  analysis.screening.null stays a test of the BH bookkeeping only).
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import as_completed, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm import tqdm

from analysis.contract import read_planted, significant, SWEEP_SCHEMA, VALIDATION_SCHEMA
from analysis.core.cli import progress_disabled, quiet_worker
from analysis.core.loading import LoadedModel, load_model
from analysis.core.prompts import PromptPairs
from analysis.core.sites import head_sites, unit_sites
from analysis.core.vocabulary import EMOTIONS, mlp_post_name, NEUTRAL, pattern_hook, z_hook
from analysis.embedded.benchmark import BenchConfig, build_benchmark, halves, POLY_SOURCES, write_null
from analysis.interventions.edits import (
    capture, Edit, hooks_for, last_logits, patch_edits, position_map, tokenize_pairs, zero_edits,
)
from analysis.metrics import lexicon_ids, SCREENING_METRIC
from analysis.errors import InputError
from analysis.families import SUPPORTED_FAMILIES
from analysis.random_models import save_random_model
from analysis.screening.common import neutral_control_prompts, pair_batches, ScreeningConfig
from analysis.screening.heads import exact_block, ExactBlock, screen
from analysis.stats import auroc, share_interval, spearman

METRICS = ("delta_attn", "attribution", "exact")
NULL_SOURCES = ("bench", *SUPPORTED_FAMILIES)  # where null models come from (nulls)
# The fewest null screenings the null criterion (one-sided exact binomial test of the share with a
# claim against alpha 0.05, at level 0.05) may run on: with 200 a pipeline that claims emotion heads in
# 10 % of nulls, twice the nominal rate, fails it with probability 0.857 (with 20, 0.13). Fixed
# before any measurement (issue 24).
MIN_NULLS = 200


@dataclass(frozen=True)
class ValidationConfig:
    folder: str  # the benchmark model folder
    profile: str
    screening: ScreeningConfig  # the `screen` stage's config for the same params, over the held-out half as given
    n_nulls: int = 200  # permuted benchmarks screened on neutral-vs-neutral pairs (nulls)
    n_random_nulls: int = 20  # random-weight models of each family, screened likewise
    workers: int = 1  # null screenings at a time (processes; the numbers do not depend on it)
    selection_share: float = 0.5  # the benchmark's own split (the half its construction used)
    alpha: float = 0.05  # BH level: "above the noise floor" and "a discovery"
    ratio_flag: float = 0.3  # attribution / exact below this: attribution misses the effect

    def __post_init__(self) -> None:
        n = self.n_null_screenings
        if 0 < n < MIN_NULLS:
            raise InputError(f"benchmark.n_nulls {self.n_nulls} + {len(SUPPORTED_FAMILIES)} x benchmark.n_random_nulls "
                             f"{self.n_random_nulls} = {n} null screenings: the null criterion needs at least {MIN_NULLS} "
                             "(or 0: no null screenings)")

    @property
    def n_null_screenings(self) -> int:
        return self.n_nulls + len(SUPPORTED_FAMILIES) * self.n_random_nulls

    @classmethod
    def from_params(cls, p: Any, *, folder: str, profile: str) -> "ValidationConfig":
        """The validate stage's config under params `p`: the screening is the `screen` stage's
        (ScreeningConfig.from_params) with split off, since the held-out half is already the one to
        score, and every emotion."""
        # every emotion, whatever params `emotions` asks of the screen stage: the benchmark's structures
        # serve all three, and its criteria read every one (`dvc exp run -S emotions=[anger]` must not break it)
        return cls(folder=folder, profile=profile, n_nulls=p.benchmark.n_nulls, n_random_nulls=p.benchmark.n_random_nulls,
                   workers=p.benchmark.workers, selection_share=p.split.selection_share,
                   screening=ScreeningConfig.from_params(p, model=folder, profile=profile, split=False, emotions=EMOTIONS))

    @property
    def seed(self) -> int:
        return self.screening.seed


# --- the screening on the held-out half ---------------------------------------------------------


def evaluation_pairs(cfg: ValidationConfig, seed: int) -> dict[str, PromptPairs]:
    bench = BenchConfig(profile=cfg.profile, seed=seed, selection_share=cfg.selection_share)
    return {e: halves(bench, e)[1] for e in EMOTIONS}


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
    k = sum(labels)
    out = {}
    for metric in METRICS:
        scores = [_score(r, metric) for r in rows]
        top = np.argsort(-np.asarray(scores), kind="stable")[:k]
        out[metric] = {"auroc": auroc(scores, labels), "precision_at_k": float(np.mean([labels[i] for i in top])), "k": k}
    return out


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
    for name, role in (("decoy", "decoy"), ("value_only", "value"), ("layernorm", "ln"), ("copy", "copy")):
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
            roles = rec["causal"] or list(rec["heads"])
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


def null_pairs(model: LoadedModel, pairs: PromptPairs, positions: str, seed: int) -> PromptPairs:
    """Neutral-vs-neutral pairs of one emotion's held-out pairs: per pair (e_i, n_i), the twin n_i and
    n′_i, n_i's template around another twin's neutral span (drawn as the specificity control draws
    its neutral′: analysis.screening.common.neutral_control_prompts, seeded by `seed`), in a fair
    random orientation (n′_i → n_i or n_i → n′_i). No emotion word is in either prompt; a pair
    without a usable n′_i is left out."""
    spliced, _ = neutral_control_prompts(model, pairs, pairs, positions, seed)
    rng = np.random.default_rng([seed, 24])
    kept = [(x, n) for x, n in zip(spliced, pairs.neutral_prompts, strict=True) if x is not None]
    oriented = [(x, n) if flip else (n, x) for (x, n), flip in zip(kept, rng.integers(0, 2, len(kept)), strict=True)]
    return PromptPairs(pairs.emotion, tuple(a for a, _ in oriented), tuple(b for _, b in oriented))


def null_screening(model: LoadedModel, cfg: ValidationConfig, pairs: Mapping[str, PromptPairs], source: str, k: int,
                   causal: Mapping[str, Sequence[Sequence[int]]]) -> dict:
    """One null screening: `model` screened exactly as the `screen` stage screens (every score,
    both controls, one BH family), on neutral-vs-neutral pairs (null_pairs) in place of the
    emotion pairs, seeded by (seed, source, k). Nothing in a pair is emotional, so an emotion-head
    claim (a row `specific`: above the noise floor and beating the neutral control) is false. The
    neutral′ of the pair and the control's neutral″ are drawn alike from the same template's
    neutral spans, so their difference is exchangeable, with mean 0 in expectation over the draws.

    `discoveries`: the claims (the criterion counts screenings with any). `n_significant`
    (secondary): rows with an exact effect above the noise floor (q < Q_LEVEL, not copy-flagged),
    which a neutral span change may really cause (the heads that read the span); the reason
    "emotion head" needs the neutral control."""
    seed = int(np.random.default_rng([cfg.seed, NULL_SOURCES.index(source), k]).integers(2**31))
    sc = dataclasses.replace(screening_config(model, cfg), seed=seed)
    doc = screen(model, sc, {e: null_pairs(model, pairs[e], sc.positions, seed + 1) for e in EMOTIONS})
    rows = doc["scores"]
    truth = {(e, tuple(h)) for e, hs in causal.items() for h in hs}
    found = [r for r in rows if r.get("specific")]
    planted = [r["exact"] for r in rows if (r["emotion"], (r["layer"], r["head"])) in truth]
    return {
        "source": source, "null": k, "n_discoveries": len(found),
        "discoveries": [{f: r[f] for f in ("emotion", "layer", "head", "exact", "specificity", "specificity_q")} for r in found],
        "n_significant": sum(1 for r in rows if significant(r) and not r["copy_flag"]),
        "n_pairs": {e: doc["pairs"][e]["exact_n_pairs_used"] for e in EMOTIONS},
        "min_specificity_q": min((r["specificity_q"] for r in rows if r.get("specificity_q") is not None), default=None),
        "planted_exact": float(np.mean(planted)) if planted else None,
    }


def _null_model(cfg: ValidationConfig, source: str, k: int, folder: Path) -> LoadedModel:
    """Null model k of `source`: the benchmark with its span embeddings permuted (write_null: no
    emotion routing left), or a random-weight model of that family with the benchmark's tokenizer
    (2 layers × 4 heads, init_std 0.2 so that patching moves M well above the noise floor)."""
    if source == "bench":
        return load_model(str(write_null(cfg.folder, k, folder)))
    return load_model(str(save_random_model(source, folder, tokenizer_dir=Path(cfg.folder), seed=k, init_std=0.2)))


def _one_null(cfg: ValidationConfig, pairs: Mapping[str, PromptPairs], causal: Mapping[str, Sequence[Sequence[int]]],
              source: str, k: int) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a null's numbers do not depend on how many run beside it
    try:
        with tempfile.TemporaryDirectory(prefix="bench-null-") as tmp:
            model = _null_model(cfg, source, k, Path(tmp) / f"{source}_{k:03d}")
            return null_screening(model, cfg, pairs, source, k, causal if source == "bench" else {})
    finally:
        torch.set_num_threads(threads)


def null_jobs(cfg: ValidationConfig) -> list[tuple[str, int]]:
    """(source, k) of every null screening the config asks for."""
    return [("bench", k) for k in range(cfg.n_nulls)] + [(f, k) for f in SUPPORTED_FAMILIES for k in range(cfg.n_random_nulls)]


def nulls(cfg: ValidationConfig, pairs: Mapping[str, PromptPairs], causal: Mapping[str, Sequence[Sequence[int]]],
          jobs: Sequence[tuple[str, int]] | None = None) -> dict:
    """Every null screening (null_screening): `n_nulls` permuted benchmarks and `n_random_nulls`
    random-weight models of each family, `workers` at a time (each on one torch thread, so the
    numbers do not depend on `workers`); the share with any emotion-head claim and its exact
    binomial interval, overall and per source. Under a complete null a screening's false-discovery
    proportion is 1 with any claim and 0 without: the share is the mean FDP, reported once.
    `jobs`: (source, k) pairs in place of the config's null_jobs (a test's few)."""
    jobs = null_jobs(cfg) if jobs is None else list(jobs)
    run = functools.partial(_one_null, cfg, dict(pairs), {e: [list(h) for h in hs] for e, hs in causal.items()})
    bar = tqdm(total=len(jobs), desc="null screenings", disable=progress_disabled())
    if cfg.workers > 1 and len(jobs) > 1:
        # spawn: a fresh interpreter per worker (fork would copy torch's thread pool state)
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn"), initializer=quiet_worker) as pool:
            futures = [pool.submit(run, s, k) for s, k in jobs]
            for f in as_completed(futures):
                bar.update()
            per = [f.result() for f in futures]
    else:
        per = []
        for s, k in jobs:
            per.append(run(s, k))
            bar.update()
    bar.close()

    def share(records: list[dict]) -> dict:
        si = share_interval([p["n_discoveries"] > 0 for p in records])
        return {"n": len(records), "with_discovery": sum(p["n_discoveries"] > 0 for p in records), "share": si.share,
                "ci": [si.ci_low, si.ci_high],
                "share_significant": float(np.mean([p["n_significant"] > 0 for p in records]))}

    bench = [p for p in per if p["source"] == "bench"]
    return {
        "n_nulls": len(per), "alpha": cfg.alpha, "per_null": per,
        "construction": "neutral-vs-neutral pairs (each held-out twin and its template around another neutral span, "
        "a random orientation) screened as the screen stage screens, on the benchmark with its span embeddings permuted "
        f"({sum(s == 'bench' for s, _ in jobs)}) and on random-weight models of {', '.join(SUPPORTED_FAMILIES)} "
        f"({', '.join(str(sum(s == f for s, _ in jobs)) for f in SUPPORTED_FAMILIES)}); "
        "a discovery is an emotion-head claim (a row `specific`)",
        "share_with_discovery": share(per)["share"] if per else None,
        # BH at alpha on a model without a true head claims anything with probability <= ~alpha:
        # a calibrated pipeline's share is alpha up to this binomial interval
        "share_with_discovery_ci": share(per)["ci"] if per else None,
        "by_source": {s: share([p for p in per if p["source"] == s]) for s in dict.fromkeys(p["source"] for p in per)},
        "planted_exact_mean": float(np.mean([p["planted_exact"] for p in bench])) if bench else None,
    }


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
        "attribution_vs_exact": attribution_vs_exact(doc, cfg),
        "signatures": signatures(model, planted, pairs, doc),
        "verdicts": verdicts(doc, planted),
        "n_causal_copy_flagged": sum(
            1 for r in doc["scores"] if r["copy_flag"] and [r["layer"], r["head"]] in planted["by_emotion"][r["emotion"]]
        ),
        "nulls": nulls(cfg, pairs, planted["by_emotion"]),
        "scores": [{k: r[k] for k in ("layer", "head", "emotion", *METRICS, "exact_q", "copy_flag")} for r in doc["scores"]],
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
            doc = validate(dataclasses.replace(cfg, folder=str(folder), n_nulls=0, n_random_nulls=0))
            # the temporary folder's name is not part of the result
            doc["model"] = label
            doc["params"] = {**doc["params"], "folder": label, "screening": {**doc["params"]["screening"], "model": label}}
            runs.append({"background": float(strength), "validation": doc})
    return {"schema": SWEEP_SCHEMA, "profile": cfg.profile, "strengths": [float(s) for s in strengths], "runs": runs,
            "knob": "the background heads' and units' output weights times the strength (their std: "
            "analysis.embedded.benchmark BG_WRITE, BG_UNIT_WRITE); the planted structures unchanged"}
