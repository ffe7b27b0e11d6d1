"""The benchmark's planted structures seen through the generation experiments (issue 24 item 5).

The validate stage scores the *screening* against the benchmark's known answers. This module asks
the same of the *experiments*: for a planted structure whose effect on the continuation the
construction fixes, does the project's own ablation / patching experiment (analysis.experiments.run:
`prepare`, `execute`, the statistics they report) measure that effect with the planted sign, its
95 % interval clear of 0?

Per structure it reports two effects, each with the sign the construction implies (PLANNED: derived
from analysis/embedded/benchmark.py alone and not revised after any measurement; where a
measurement contradicts one, the record says so and the comment beside it says why):

- the keyword effect: the experiment's paired change of `kw_<emotion>` (the structure's emotion's
  lexicon words in the greedy continuation), n, mean, interval, p;
- the changed-share effect: the experiment's share of clusters whose continuation changed (exact
  binomial interval, no p: it is >= 0 by construction), and its signed form, the per-prompt
  changed flag minus the random-head arms' mean (`vs_random["changed"]`, n, mean, interval, p),
  the comparison the experiments themselves make for a non-negative metric. The verdict reads the
  signed form: a changed share above 0 alone says little in a model whose greedy margins are small.

A library, not a stage: nothing here writes a file the pipeline keeps or reads a stage's output.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.core.loading import LoadedModel, load_model
from analysis.core.prompts import Prompt, PromptPairs
from analysis.base.errors import InputError
from analysis.experiments.config import ExperimentConfig, Kind
from analysis.experiments.kinds import KINDS
from analysis.experiments.run import execute, ExperimentResult, prepare


@dataclass(frozen=True)
class Planned:
    """One structure's intervention and the signs its construction implies (never fitted to a measurement)."""

    structure: str  # a key of planted["benchmark"]["structures"]
    roles: tuple[str, ...]  # which of its heads are intervened on, jointly (their layer:head come from planted.json)
    kind: Kind  # "ablation" | "patching" (analysis.experiments.kinds.KINDS)
    mode: str  # ablation: zero | mean | resample; patching: all | last | span
    direction: str | None  # patching: denoising | noising; ablation: None
    keyword_sign: int  # the sign of the kw_<emotion> effect the construction implies
    keyword_why: str
    changed_sign: int  # the sign of (changed flag - random arms' mean)
    changed_why: str


# Shared reason for every changed-share sign below, fixed from the construction before measuring:
# each planted head writes its emotion's output dim O with weight 1-3 (benchmark.py: mover writes,
# _value_only 3.0), the background heads theirs with std BG_WRITE = 0.05, and the unembedding reads O
# with weight 2 on every lexicon token; so zeroing a planted head moves the last-position logits by
# nats where zeroing as many random background heads moves them by hundredths, and greedy tokens
# should flip more often: above the random arms.
# Measured (2026-12-07, current bench, held-out half) it does not hold: the clean continuations'
# median greedy margin is ~0.025 nats and most generated tokens are not lexicon words but tokens whose
# logits only the 16 noise dims set (unembedding std 0.5), which the background heads write too; so
# zeroing 1-2 random heads changes 35-100 % of the continuations, as many as the planted ones.
_CHANGED_WHY = (
    "the planted heads write O with weight 1-3, background heads with std 0.05 (BG_WRITE): zeroing them should flip "
    "more greedy tokens than zeroing as many random heads outside the structure"
)

PLANNED: dict[str, Planned] = {
    # backup (benchmark._backup): A moves the span's class dim E_anger (+3 on an anger span, CLASS_VECTORS)
    # into O_anger with weight 1.0; B copies it (weight 1.2) only when A's flag F is missing. Zeroing A
    # and B together removes every span -> O_anger route on the anger prompts (B cannot stand in, it is
    # zeroed too), at every prompt and generated position. The anger lexicon's unembedding rows read
    # O_anger with +2, so their logits fall: fewer anger words in the continuation, sign -1.
    "backup": Planned(
        "backup", ("A", "B"), "ablation", "zero", None,
        -1, "A and B move E_anger (+3 on an anger span) into O_anger (+1.0, +1.2); the anger lexicon reads O_anger "
        "with +2: zeroing both lowers every anger word's logit", +1, _CHANGED_WHY,
    ),
    # value_only (benchmark._value_only): uniform attention, value = E_apology, written to O_apology with
    # weight 3.0. On an apology prompt the span's E_apology is +3, so the head adds 9/T to O_apology;
    # zeroing it on the apology prompts lowers the apology lexicon's logits: fewer apology words, -1.
    "value_only": Planned(
        "value_only", ("value",), "ablation", "zero", None,
        -1, "the value head writes 3.0 x mean(E_apology) (> 0 on an apology prompt) into O_apology; the apology "
        "lexicon reads O_apology with +2: zeroing it lowers every apology word's logit", +1, _CHANGED_WHY,
    ),
    # distributed (benchmark._distributed): d1, d2, d3 each move E_gratitude into O_gratitude with
    # weight 1/3; zeroing all three on the gratitude prompts lowers the gratitude lexicon's logits, -1.
    # (Not a default: see DEFAULT_STRUCTURES.)
    "distributed": Planned(
        "distributed", ("d1", "d2", "d3"), "ablation", "zero", None,
        -1, "d1-d3 move E_gratitude into O_gratitude (1/3 each); the gratitude lexicon reads O_gratitude with +2: "
        "zeroing all three lowers every gratitude word's logit", +1, _CHANGED_WHY,
    ),
}

# The two the issue asks for, chosen before issue 24's new structures were planted. backup: the
# issue's own example. value_only: a single head whose zero ablation moved its emotion's keywords
# a lot on that bench (held-out half: -2.5 apology words per continuation of 14.1, interval [-5.0, -0.6]).
# On the bench with issue 24's structures (2026-12-07) neither has its keyword sign: the apology
# continuations are apology words throughout (15 of 15 tokens: the decoy's constant write and the
# unequal head's lifted tokens), so removing one route flips no word, and the anger continuations
# hold no anger word to remove. distributed is kept in PLANNED but left out: its gratitude keywords
# are mostly the word "thanks" inside the one-token span phrase " thanks for the tea", whose logit
# only the noise dims set, so kw_gratitude does not follow the planted route (measured +1.8).
DEFAULT_STRUCTURES = ("backup", "value_only")


def has_sign(effect: Mapping[str, Any], sign: int) -> bool:
    """Whether an effect (n, mean, ci_low, ci_high, ...) has `sign` with its interval excluding 0:
    +1: ci_low > 0; -1: ci_high < 0. An interval touching 0 is not a sign."""
    if sign not in (-1, 1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    low, high = effect["ci_low"], effect["ci_high"]
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return False
    return bool(low > 0) if sign > 0 else bool(high < 0)


def _bracketed(p: Prompt) -> str:
    """A prompt back in the prompt files' format (analysis.core.prompts.parse_prompt inverts it)."""
    return f"{p.before}[{p.span_text}]{p.after}"


def _write_pairs(pairs: PromptPairs, folder: Path) -> tuple[Path, Path]:
    """The pairs as an emotion and a neutral prompt file (line i of both one pair), so that the
    experiment's `prepare` loads and checks exactly these pairs, as `--prompts-file` /
    `--neutral-prompts` make the CLIs do."""
    emotion, neutral = folder / f"{pairs.emotion}.txt", folder / f"{pairs.emotion}.neutral.txt"
    emotion.write_text("".join(_bracketed(p) + "\n" for p in pairs.emotion_prompts))
    neutral.write_text("".join(_bracketed(p) + "\n" for p in pairs.neutral_prompts))
    return emotion, neutral


def _config(plan: Planned, folder: str, profile: str, emotion: str, head_spec: str, files: tuple[Path, Path], scratch: Path, *,
            seed: int, n_resamples: int, max_tokens: int, random_draws: int) -> ExperimentConfig:
    """The experiment's config as its CLI would build it from flags, split off: the pairs given are
    already the held-out half. Output paths point into `scratch`; nothing is written there."""
    out = scratch / f"{plan.structure}.json"
    return ExperimentConfig(
        kind=plan.kind, model=folder, profile=profile, emotion=emotion, head_spec=head_spec, mode=plan.mode,
        max_tokens=max_tokens, output=out, table=out.with_suffix(".parquet"),
        emotion_file=files[0], neutral_file=files[1],
        screening_file=scratch / "no-screening.json",  # read only for top:N or a cumulative curve, neither asked
        cumulative_k=0, seed=seed, n_resamples=n_resamples, split=False, direction=plan.direction, random_draws=random_draws,
    )


def planted_heads(planted: Mapping[str, Any]) -> dict[tuple[int, int], str]:
    """Every planted head of the benchmark -> "structure.role" (the random-head baseline may draw them)."""
    return {(int(h[0]), int(h[1])): f"{name}.{role}" for name, rec in planted["benchmark"]["structures"].items()
            for role, h in rec["heads"].items()}


def structure_record(plan: Planned, rec: Mapping[str, Any], result: ExperimentResult, planted: Mapping[str, Any],
                     seconds: float) -> dict[str, Any]:
    """One structure's record from its experiment's result (the evidence over every given pair)."""
    emotion = rec["emotion"]
    kw = f"kw_{emotion}"
    ev = result.main.evidence
    c = result.config
    keyword = ev.effects[kw].to_dict()
    changed = ev.vs_random["changed"].to_dict()
    share = ev.changed_share.to_dict()
    clean_kw: np.ndarray = result.baseline_scores[kw]  # [n_pairs] keyword counts of the clean continuations
    named = planted_heads(planted)
    random_sites = [[s.label for s in draw] for draw in result.main.random_sites]  # [draws][len(roles)]
    return {
        "structure": plan.structure,
        "emotion": emotion,
        "heads": {r: list(rec["heads"][r]) for r in plan.roles},
        "intervention": {
            "kind": c.kind, c.mode_key: c.mode, "direction": c.direction, "head_spec": c.head_spec,
            "target": "neutral twins" if KINDS[c.kind].targets_neutral(c) else "emotion prompts",
            "question": KINDS[c.kind].question(c), "max_tokens": c.max_tokens,
        },
        "n_pairs": len(result.pairs),
        # whether the clean continuation holds the emotion's words at all: a keyword effect needs some to move
        "clean_keywords_per_prompt": float(clean_kw.mean()),
        "clean_prompts_with_keyword": int((clean_kw > 0).sum()),
        # the teacher-forced logit effect beside them: what the structure does to M, whatever greedy decoding keeps
        "delta_m": ev.effects["emotion_score"].to_dict(),
        "keyword": {
            "metric": kw, "expected_sign": plan.keyword_sign, "why": plan.keyword_why, "effect": keyword,
            "random_means": ev.random_effects[kw], "has_expected_sign": has_sign(keyword, plan.keyword_sign),
        },
        "changed": {
            "expected_sign": plan.changed_sign, "why": plan.changed_why,
            "share": share,  # clusters in which most prompts' continuation changed, exact binomial interval
            "share_excludes_0": bool(share["ci_low"] > 0),  # the weak form: something changed
            "vs_random": changed,  # per prompt: changed flag - the random arms' mean; the verdict's effect
            "random_means": ev.random_effects["changed"],
            "has_expected_sign": has_sign(changed, plan.changed_sign),
        },
        # the random-head baseline's draws (the experiments draw from every head outside the run's
        # sites, so other structures' planted heads may be among them: named here)
        "random_sites": random_sites,
        "random_sites_planted": [[named[(s.layer, s.index)] for s in draw if (s.layer, s.index) in named]
                                 for draw in result.main.random_sites],
        "seconds": seconds,  # wall time of the experiment (prepare + execute)
    }


def generation_effects(
    folder: str, profile: str, pairs: Mapping[str, PromptPairs], planted: dict, *, seed: int, n_resamples: int,
    structures: Sequence[str] = DEFAULT_STRUCTURES, max_tokens: int = 15, random_draws: int = 5,
    model: LoadedModel | None = None,
) -> dict[str, Any]:
    """The generation experiments' keyword and changed-share effects of `structures` on the
    benchmark in `folder`, over `pairs` (emotion -> the held-out pairs, analysis.bench.scoring.
    evaluation_pairs), each beside the sign its construction implies (PLANNED).

    Each structure's heads are read from `planted` (planted.json of `folder`); each experiment runs
    through analysis.experiments.run (`prepare`, `execute`) as the CLIs run it, with the pairs as
    prompt files and no further split. `max_tokens` and `random_draws` are the experiments' params
    (params.yaml ablation.max_tokens, random_baseline.draws); `model`: `folder` already loaded.

    Returns {"model", "profile", "seed", "n_resamples", "structures": {name: record}}, each record
    as `structure_record` builds it; effects are analysis.measures.stats.Effect dicts (n, mean, ci_low,
    ci_high, p, n_clusters), the changed share an analysis.measures.stats.Share dict (k, n, share, ci_low,
    ci_high).
    """
    known = planted["benchmark"]["structures"]
    for name in structures:
        if name not in PLANNED:
            raise InputError(f"no generation experiment is planned for benchmark structure {name!r}; planned: {', '.join(PLANNED)}")
        if name not in known:
            raise InputError(f"benchmark {folder} has no structure {name!r}; it has {', '.join(known)}")
        missing = [r for r in PLANNED[name].roles if r not in known[name]["heads"]]
        if missing:
            raise InputError(f"benchmark structure {name!r} has no head for role {missing[0]!r}; its heads: {known[name]['heads']}")
        if known[name]["emotion"] not in pairs:
            raise InputError(f"structure {name!r} serves {known[name]['emotion']}, which has no pairs here")
    model = model if model is not None else load_model(folder)
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp:
        scratch = Path(tmp)
        for name in structures:
            plan, rec = PLANNED[name], known[name]
            emotion = rec["emotion"]
            head_spec = ",".join(f"{rec['heads'][r][0]}:{rec['heads'][r][1]}" for r in plan.roles)
            sub = scratch / name
            sub.mkdir()
            files = _write_pairs(pairs[emotion], sub)
            config = _config(plan, folder, profile, emotion, head_spec, files, sub, seed=seed, n_resamples=n_resamples,
                             max_tokens=max_tokens, random_draws=random_draws)
            start = time.perf_counter()
            # as analysis.experiments.command.run_experiment seeds it, without moving the caller's RNG
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                result = execute(prepare(config, model))
            out[name] = structure_record(plan, rec, result, planted, time.perf_counter() - start)
    return {
        "model": folder, "profile": profile, "seed": seed, "n_resamples": n_resamples,
        "structures": out,
    }
