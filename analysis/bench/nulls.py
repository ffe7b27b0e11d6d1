"""The null screenings of the benchmark (issue 24: a null that can fail), the `nulls` stage's
computation; the validate stage's null criterion reads their document (contract `nulls_file`).

Each null screening is the `screen` stage's own screening (analysis.screening.heads.screen: Δattn,
attribution, exact patching of every head, copy control, identity floor, neutral control, one BH
family, `specific`) of a model without any emotion routing, on neutral-vs-neutral pairs: the
benchmark with its span embeddings permuted (analysis.embedded.benchmark.write_null), and
random-weight models of each family. An emotion-head claim there is false; the share of screenings
with any claim, which under this complete null is also the mean false-discovery proportion, is the
criterion (analysis.reporting.bench_tables). The fair sign of M per cluster (analysis.screening.null)
stays a test of the BH bookkeeping only.

A stage of its own: its ~40 min do not rerun when only the benchmark's other scores change.
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
from tqdm import tqdm

from analysis.base.contract import NULLS_SCHEMA, read_planted, significant
from analysis.core.cli import progress_disabled, quiet_worker
from analysis.core.loading import LoadedModel, load_model
from analysis.core.prompts import PromptPairs
from analysis.base.vocabulary import EMOTIONS
from analysis.embedded.benchmark import evaluation_pairs, write_null
from analysis.base.errors import InputError
from analysis.modelfacts.families import SUPPORTED_FAMILIES
from analysis.modelfacts.random_weights import save_random_model
from analysis.screening.common import neutral_control_prompts, ScreeningConfig
from analysis.screening.heads import screen
from analysis.measures.stats import share_interval

NULL_SOURCES = ("bench", *SUPPORTED_FAMILIES)  # where null models come from
# The fewest null screenings the null criterion (one-sided exact binomial test of the share with a
# claim against alpha 0.05, at level 0.05) may run on: with 200 a pipeline that claims emotion heads in
# 10 % of nulls, twice the nominal rate, fails it with probability 0.857 (with 20, 0.13). Fixed
# before any measurement (issue 24).
MIN_NULLS = 200


@dataclass(frozen=True)
class NullConfig:
    folder: str  # the benchmark model folder
    profile: str
    screening: ScreeningConfig  # the `screen` stage's config for the same params, over the held-out half as given
    n_nulls: int = 200  # permuted benchmarks screened on neutral-vs-neutral pairs
    n_random_nulls: int = 20  # random-weight models of each family, screened likewise
    workers: int = 1  # null screenings at a time (processes; the numbers do not depend on it)
    selection_share: float = 0.5  # the benchmark's own split (the half its construction used)
    alpha: float = 0.05  # BH level: "a discovery"

    def __post_init__(self) -> None:
        n = self.n_null_screenings
        if 0 < n < MIN_NULLS:
            raise InputError(f"benchmark.n_nulls {self.n_nulls} + {len(SUPPORTED_FAMILIES)} x benchmark.n_random_nulls "
                             f"{self.n_random_nulls} = {n} null screenings: the null criterion needs at least {MIN_NULLS} "
                             "(or 0: no null screenings)")

    @property
    def n_null_screenings(self) -> int:
        return self.n_nulls + len(SUPPORTED_FAMILIES) * self.n_random_nulls

    @property
    def seed(self) -> int:
        return self.screening.seed

    @classmethod
    def from_params(cls, p: Any, *, folder: str, profile: str) -> "NullConfig":
        """The nulls stage's config under params `p`: the `screen` stage's screening
        (ScreeningConfig.from_params) with split off (the held-out half is the one screened) and
        every emotion, whatever params `emotions` asks of the screen stage."""
        return cls(folder=folder, profile=profile, n_nulls=p.benchmark.n_nulls, n_random_nulls=p.benchmark.n_random_nulls,
                   workers=p.benchmark.workers, selection_share=p.split.selection_share,
                   screening=ScreeningConfig.from_params(p, model=folder, profile=profile, split=False, emotions=EMOTIONS))


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


def null_screening(model: LoadedModel, cfg: NullConfig, pairs: Mapping[str, PromptPairs], source: str, k: int,
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
    sc = dataclasses.replace(cfg.screening, model=model.path, seed=seed)
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


def _null_model(cfg: NullConfig, source: str, k: int, folder: Path) -> LoadedModel:
    """Null model k of `source`: the benchmark with its span embeddings permuted (write_null: no
    emotion routing left), or a random-weight model of that family with the benchmark's tokenizer
    (2 layers × 4 heads, init_std 0.2 so that patching moves M well above the noise floor)."""
    if source == "bench":
        return load_model(str(write_null(cfg.folder, k, folder)))
    return load_model(str(save_random_model(source, folder, tokenizer_dir=Path(cfg.folder), seed=k, init_std=0.2)))


def _one_null(cfg: NullConfig, pairs: Mapping[str, PromptPairs], causal: Mapping[str, Sequence[Sequence[int]]],
              source: str, k: int) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a null's numbers do not depend on how many run beside it
    try:
        with tempfile.TemporaryDirectory(prefix="bench-null-") as tmp:
            model = _null_model(cfg, source, k, Path(tmp) / f"{source}_{k:03d}")
            return null_screening(model, cfg, pairs, source, k, causal if source == "bench" else {})
    finally:
        torch.set_num_threads(threads)


def null_jobs(cfg: NullConfig) -> list[tuple[str, int]]:
    """(source, k) of every null screening the config asks for."""
    return [("bench", k) for k in range(cfg.n_nulls)] + [(f, k) for f in SUPPORTED_FAMILIES for k in range(cfg.n_random_nulls)]


def nulls(cfg: NullConfig, pairs: Mapping[str, PromptPairs], causal: Mapping[str, Sequence[Sequence[int]]],
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


def null_document(cfg: NullConfig) -> dict:
    """The nulls stage's document (contract NULLS_SCHEMA): `nulls` over the benchmark's held-out pairs."""
    planted = read_planted(cfg.folder)
    pairs = evaluation_pairs(cfg.profile, planted["benchmark"]["seed"], cfg.selection_share)
    return {
        "schema": NULLS_SCHEMA, "model": cfg.folder, "profile": cfg.profile,
        "params": {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                   for k, v in ((k, getattr(cfg, k)) for k in cfg.__dataclass_fields__)},
        **nulls(cfg, pairs, planted["by_emotion"]),
    }
