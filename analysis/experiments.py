"""The experiment core shared by `analysis.head_ablation` and `analysis.head_patching`.

One experiment = a set of components (`Site`s) × an intervention plan × target prompts:

1. `prepare` validates every input (output paths, prompts, head spec, screening file, model,
   head ranges, lexicons, position alignment) before anything heavy runs, so bad input is one
   `error:` line and leaves no file;
2. `execute` runs the baseline (clean target prompts) once, and each intervened arm (the
   requested sites, then the top-1..top-K screened sites jointly for the cumulative curve):
   greedy generation with the edits held as the plan says, plus teacher-forced logits at the
   last prompt position;
3. per-prompt scores (VADER sentiment and keyword counts of the continuation only, whether
   the continuation changed, emotion score M, KL(clean || intervened)) → paired effects with
   n, mean, 95 % BCa CI and sign-flip p (`analysis.stats`), pairs that share an emotion
   expression resampled and flipped as one cluster, as in the screening;
4. `document` / `table` / `comparison_table` render the JSON summary, the per-prompt Parquet
   table and the console table; `write_outputs` writes both files atomically.

The two CLIs differ only in the plan they build (`ZeroPlan`, `MeanPlan`, `ResamplePlan` for
ablation, `PatchPlan` for patching) and which prompts are the target (emotion prompts for
ablation, their neutral twins for patching). Sites are generic, so MLP units go through the
same code: `--head-spec` (params `ablation.head_spec` / `patching.head_spec`) takes heads
(`L:H`, `L:H,L:H`, `top:N` from the head screening) or MLP units (`mlp:L:N`, `mlp:L:N1,N2`,
`mlp-top:K` from the unit screening, analysis.unit_screening), and the cumulative curve ranks
the same kind of component from the same kind of screening.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from analysis.errors import InputError
from analysis.generation import decode, greedy_generate, progress_disabled
from analysis.interventions import (
    ABLATION_METHODS,
    POSITION_MODES,
    Edit,
    Site,
    capture,
    constant_edits,
    head_sites,
    hooks_for,
    last_logits,
    mean_over_positions,
    patch_edits,
    position_map,
    site_values,
    tokenize_pairs,
    unit_sites,
    zero_edits,
)
from analysis.io import check_output_path, write_json, write_parquet
from analysis.models import (
    LoadedModel,
    UnitSpec,
    is_unit_spec,
    load_model,
    parse_site_spec,
    parse_unit_spec,
    validate_heads,
    validate_units,
)
from analysis.params import Params
from analysis.prompts import EMOTIONS, NEUTRAL, PromptPairs, TokenBatch, aligned_pairs, load_pairs, span_clusters, subset
from analysis.scoring import LEXICONS, emotion_score, kl_divergence, lexicon_ids, text_scores
from analysis.stats import Effect, paired_effect

Kind = Literal["ablation", "patching"]
SCHEMAS: dict[str, str] = {
    "ablation": "emotion-heads/ablation/v1",
    "patching": "emotion-heads/patching/v1",
}
TABLE_SCHEMAS: dict[str, str] = {
    "ablation": "emotion-heads/ablation-prompts/v1",
    "patching": "emotion-heads/patching-prompts/v1",
}
PATCHED_POSITIONS = "prompt only (generated positions have no source)"
ABLATED_POSITIONS = "every position, prompt and generated, at every generation step"
SMALL_MARGIN = 1e-3  # top-1 minus top-2 logit gap below which another machine may pick another token

# Metric keys, in table order, with the console label and what they mean (stored in the JSON).
METRICS: dict[str, tuple[str, str]] = {
    "sentiment": ("Sentiment mean", "VADER compound sentiment of the continuation, in [-1, 1]"),
    **{
        f"kw_{name}": (
            f"{name.capitalize()} keywords",
            f"word-boundary count of data/lexicons/{name}.txt words in the continuation",
        )
        for name in LEXICONS
    },
    "changed": ("Changed continuations", "1 if the continuation's token ids differ from the baseline's, else 0"),
    "emotion_score": (
        "Emotion score M",
        "logsumexp of next-token logits over the emotion lexicon's token ids minus the same over "
        "the neutral lexicon's, at the last prompt position (teacher-forced), in nats",
    ),
    "kl": ("KL(clean||intervened)", "KL divergence of the clean from the intervened next-token distribution at the last prompt position, in nats"),
}


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; built by a CLI from flags and params.yaml, then validated."""

    kind: Kind
    model: str
    profile: str
    emotion: str
    head_spec: str
    mode: str  # ablation: zero | mean | resample; patching: all | last | span
    max_tokens: int
    output: Path
    table: Path
    emotion_file: Path | None = None
    neutral_file: Path | None = None
    screening_file: Path | None = None
    cumulative_k: int = 0
    cumulative_k_explicit: bool = True  # from a flag (missing screening → error) or params (→ skipped)
    seed: int = 0
    n_resamples: int = 2000
    resample_draws: int = 3
    chunk_size: int = 128  # prompts per generate call: the baseline sets (70) in one

    @property
    def schema(self) -> str:
        return SCHEMAS[self.kind]

    @property
    def mode_key(self) -> str:
        return "method" if self.kind == "ablation" else "positions"

    @property
    def label(self) -> str:
        return "Ablation" if self.kind == "ablation" else "Patched"


def model_tag(name: str) -> str:
    """A file-name-safe form of a model name (`EleutherAI/pythia-160m` → `EleutherAI_pythia-160m`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def spec_tag(head_spec: str) -> str:
    """The seed's file-name tag of a head spec: `0:0` → `00`, `0:0,3:5` → `00_35`, `top:3` → `top3`.

    Unit specs get an unambiguous tag of their own (layer and neuron numbers would run together
    in the seed's scheme): `mlp:3:17` → `mlp3n17`, `mlp:3:17,42` → `mlp3n17_3n42`,
    `mlp-top:5` → `mlptop5`.
    """
    if is_unit_spec(head_spec):
        try:
            spec = parse_unit_spec(head_spec)
        except InputError:  # reported by `prepare`, with the whole story; the tag only names a file
            return re.sub(r"[^A-Za-z0-9]+", "_", head_spec).strip("_") or "units"
        if spec.is_top:
            return f"mlptop{spec.top}"
        return "mlp" + "_".join(f"{layer}n{neuron}" for layer, neuron in spec.units)
    return "_".join(re.sub(r"[^A-Za-z0-9]", "", part) for part in head_spec.split(",")) or "heads"


def default_output(kind: Kind, profile: str, model: str, emotion: str, head_spec: str) -> Path:
    """The seed's layout, with .json instead of .pkl."""
    folder = "head_ablation" if kind == "ablation" else "head_patching"
    return Path(f"results/{profile}/patching/{folder}/{model_tag(model)}_{emotion}_{spec_tag(head_spec)}.json")


# --------------------------------------------------------------------------------------------
# Command line (shared by both CLIs)
# --------------------------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors become one `error:` line and exit 2 (via `analysis.errors.cli`)."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message} (see {self.prog} --help)")


def build_parser(kind: Kind, description: str, params: Params) -> OneLineParser:
    """The seed's flags plus ours; kind-specific ones (--method/--positions, prompt files) included."""
    section = params.ablation if kind == "ablation" else params.patching
    module = "analysis.head_ablation" if kind == "ablation" else "analysis.head_patching"
    p = OneLineParser(
        prog=f"python -m {module}", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="`toy`, a Hugging Face id (cached) or a local model folder")
    p.add_argument("--profile", default=params.profile, help=f"prompt profile under data/prompts (default {params.profile})")
    p.add_argument(
        "--head-spec", default=section.head_spec,
        help=f'heads "L:H", "L:H,L:H", "top:N", or MLP units "mlp:L:N", "mlp:L:N1,N2", "mlp-top:K" (default {section.head_spec})',
    )
    p.add_argument("--emotion", required=True, choices=EMOTIONS)
    p.add_argument("--max-tokens", type=int, default=section.max_tokens, help=f"greedy tokens per prompt (default {section.max_tokens})")
    p.add_argument("--output", type=Path, default=None, help="summary JSON (default: the seed's results/<profile>/patching/... layout)")
    p.add_argument("--table", type=Path, default=None, help="per-prompt Parquet table (default: the output with .parquet)")
    if kind == "ablation":
        p.add_argument("--method", choices=ABLATION_METHODS, default=section.method, help=f"default {section.method}")
        p.add_argument("--prompts-file", type=Path, default=None, help="emotion prompts (default: the profile's)")
        p.add_argument("--neutral-prompts", type=Path, default=None, help="neutral reference prompts for mean/resample (default: the profile's)")
        p.add_argument(
            "--resample-draws", type=int, default=params.ablation.resample_draws,
            help=f"draws averaged for resample ablation (default {params.ablation.resample_draws})",
        )
    else:
        p.add_argument("--positions", choices=POSITION_MODES, default=section.positions, help=f"default {section.positions}")
        p.add_argument("--neutral-prompts", type=Path, default=None, help="neutral (target) prompts (default: the profile's)")
        p.add_argument("--emotion-prompts", type=Path, default=None, help="emotion (source) prompts (default: the profile's)")
    p.add_argument(
        "--cumulative-k", type=int, default=None,
        help=f"also intervene on the top-1..top-k screened heads (or units, for a unit spec) jointly; 0 = off (default {section.cumulative_k})",
    )
    p.add_argument(
        "--screening-file", type=Path, default=None,
        help="screening JSON for top:N / mlp-top:K and the cumulative curve (default: the model's head screening, "
        "or its unit screening for a unit spec)",
    )
    p.add_argument("--seed", type=int, default=params.seed, help=f"seed of the bootstrap, permutations and resampling (default {params.seed})")
    p.add_argument("--n-resamples", type=int, default=params.scoring.n_resamples, help=f"bootstrap and permutation resamples (default {params.scoring.n_resamples})")
    return p


def config_from_args(kind: Kind, args: argparse.Namespace, params: Params) -> ExperimentConfig:
    from analysis.head_screening import screening_path
    from analysis.outputs import unit_screening_file

    section = params.ablation if kind == "ablation" else params.patching
    output = args.output or default_output(kind, args.profile, args.model, args.emotion, args.head_spec)
    explicit_k = args.cumulative_k is not None
    return ExperimentConfig(
        kind=kind,
        model=args.model,
        profile=args.profile,
        emotion=args.emotion,
        head_spec=args.head_spec,
        mode=args.method if kind == "ablation" else args.positions,
        max_tokens=args.max_tokens,
        output=output,
        table=args.table or output.with_suffix(".parquet"),
        emotion_file=args.prompts_file if kind == "ablation" else args.emotion_prompts,
        neutral_file=args.neutral_prompts,
        screening_file=args.screening_file or (unit_screening_file if is_unit_spec(args.head_spec) else screening_path)(args.profile, args.model),
        cumulative_k=args.cumulative_k if explicit_k else section.cumulative_k,
        cumulative_k_explicit=explicit_k,
        seed=args.seed,
        n_resamples=args.n_resamples,
        resample_draws=getattr(args, "resample_draws", params.ablation.resample_draws),
    )


def parse_config(kind: Kind, argv: Sequence[str] | None, description: str = "") -> ExperimentConfig:
    """Flags (and params.yaml for what they leave out) → a config; bad flags are InputErrors."""
    from analysis.params import load_params

    params = load_params()
    args = build_parser(kind, description, params).parse_args(argv)
    return config_from_args(kind, args, params)


def run_experiment(kind: Kind, argv: Sequence[str], *, model: LoadedModel | None = None) -> ExperimentResult:
    """What the CLI computes, without writing or printing (for drivers and tests that reuse a model)."""
    config = parse_config(kind, argv)
    torch.manual_seed(config.seed)
    return execute(prepare(config, model))


def run_cli(kind: Kind, description: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """parse → validate → run → write → print; shared body of both CLIs' `main`."""
    config = parse_config(kind, argv, description)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(config.seed)
    prepared = prepare(config)
    for note in prepared.notes:
        print(f"warning: {note}", file=sys.stderr)
    result = execute(prepared)
    doc = write_outputs(result)
    print(comparison_table(result))
    print(f"wrote {config.output} and {config.table}")
    return doc


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A validated config with everything cheap already loaded."""

    config: ExperimentConfig
    model: LoadedModel
    pairs: PromptPairs
    sites: tuple[Site, ...]
    cumulative: tuple[tuple[Site, ...], ...]  # k = 1..K
    lexicon_ids: dict[str, list[int]]
    notes: tuple[str, ...] = ()


def _check_config_values(c: ExperimentConfig) -> None:
    if c.max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1 (got {c.max_tokens}): the metrics score generated tokens")
    if c.cumulative_k < 0:
        raise InputError(f"--cumulative-k must be 0 (off) or more (got {c.cumulative_k})")
    if c.n_resamples < 1:
        raise InputError(f"--n-resamples must be at least 1 (got {c.n_resamples})")
    if c.seed < 0:
        raise InputError(f"--seed must be >= 0 (got {c.seed})")
    if c.kind == "ablation" and c.resample_draws < 1:
        raise InputError(f"--resample-draws must be at least 1 (got {c.resample_draws})")
    modes = ABLATION_METHODS if c.kind == "ablation" else POSITION_MODES
    if c.mode not in modes:
        raise InputError(f"unknown {c.mode_key} {c.mode!r}; allowed: {', '.join(modes)}")
    inputs = [p for p in (c.screening_file, c.emotion_file, c.neutral_file) if p is not None]
    check_output_path(c.output, suffix=".json", inputs=inputs)
    check_output_path(c.table, suffix=".parquet", inputs=inputs)
    if c.output.resolve() == c.table.resolve():
        raise InputError(f"--output and --table are the same file {c.output}")


def _sites_from_spec(c: ExperimentConfig) -> tuple[tuple[Site, ...], tuple[tuple[Site, ...], ...], list[str]]:
    """The requested sites and the cumulative top-1..K site sets, ranked by the screening of
    the spec's kind (heads: analysis.head_screening; units: analysis.unit_screening)."""
    spec = parse_site_spec(c.head_spec)
    if isinstance(spec, UnitSpec):
        from analysis.unit_screening import top_units as top
        explicit, to_sites, stage, what = spec.units, unit_sites, "analysis.unit_screening", "unit screening file"
    else:
        from analysis.head_screening import top_heads as top
        explicit, to_sites, stage, what = spec.heads, head_sites, "analysis.head_screening", "screening file"
    notes: list[str] = []
    assert c.screening_file is not None
    chosen = top(c.screening_file, c.emotion, spec.top) if spec.is_top else explicit
    cumulative: tuple[tuple[Site, ...], ...] = ()
    if c.cumulative_k > 0:
        if not Path(c.screening_file).is_file() and not c.cumulative_k_explicit:
            notes.append(
                f"no cumulative curve: cumulative_k={c.cumulative_k} (params.yaml) needs the {what} "
                f"{c.screening_file}, which does not exist; run the screening first or pass --cumulative-k 0"
            )
        else:
            if not Path(c.screening_file).is_file():
                raise InputError(
                    f"--cumulative-k {c.cumulative_k} needs the {what} {c.screening_file}, which does not "
                    f"exist; run `python -m {stage}` first, pass --screening-file, or --cumulative-k 0"
                )
            ranked = top(c.screening_file, c.emotion, c.cumulative_k)
            cumulative = tuple(to_sites(ranked[:k]) for k in range(1, c.cumulative_k + 1))
    return to_sites(chosen), cumulative, notes


def prepare(c: ExperimentConfig, model: LoadedModel | None = None) -> Prepared:
    """Validate every input in order of cost; raise InputError (one line) on the first problem.

    `model`: an already loaded `c.model` (several runs in one process skip reloading it).
    """
    _check_config_values(c)
    pairs = load_pairs(c.emotion, c.profile, emotion_file=c.emotion_file, neutral_file=c.neutral_file)
    sites, cumulative, notes = _sites_from_spec(c)
    model = model if model is not None else load_model(c.model)
    for group in (sites, *cumulative):
        validate_heads(tuple((s.layer, s.index) for s in group if s.kind == "head"), model.spec)
        validate_units(tuple((s.layer, s.index) for s in group if s.kind == "mlp"), model.spec)
    lex = lexicon_ids(model.tokenizer)
    if c.kind == "patching" and c.mode == "all":
        # Position-by-position patching needs twins of equal token length. As in the screening,
        # the others are dropped and counted (a real tokenizer splits "thank you so much" and
        # its neutral twin differently); none left is an error.
        keep = aligned_pairs(model.tokenizer, pairs)
        if not keep:
            raise InputError(
                f"--positions all needs emotion/neutral pairs of the same token length with the span at the "
                f"same positions, but none of the {len(pairs)} pairs is under the tokenizer of {c.model}; "
                f"use --positions last or --positions span"
            )
        if len(keep) < len(pairs):
            notes.append(
                f"positions all: {len(pairs) - len(keep)} of {len(pairs)} pairs differ in token length or span "
                f"position under the tokenizer of {c.model} and were left out (n_prompts counts the rest)"
            )
            pairs = subset(pairs, keep)
    if c.kind == "ablation" and c.mode == "resample" and len(pairs) < 2:
        raise InputError("resample ablation needs at least 2 neutral prompts (each prompt draws a different one)")
    return Prepared(c, model, pairs, sites, cumulative, lex, tuple(notes))


# --------------------------------------------------------------------------------------------
# Intervention plans: a set of sites → one list of edits per draw
# --------------------------------------------------------------------------------------------


class Plan(Protocol):
    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]: ...


def unit_shape(model: LoadedModel, site: Site) -> tuple[int, ...]:
    """Shape of one component's activation at one position: [d_head] for a head, [] for a neuron."""
    return (model.spec.d_head,) if site.kind == "head" else ()


@dataclass(frozen=True)
class ZeroPlan:
    model: LoadedModel
    n: int

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        return [zero_edits(sites, self.n, {s: unit_shape(self.model, s) for s in sites})]


@dataclass(frozen=True)
class MeanPlan:
    """Hold each site at its mean over every real token of every reference (neutral) prompt."""

    reference: dict[str, Tensor]  # captured hook activations of the reference prompts
    reference_mask: Int[Tensor, "ref pos"]
    n: int

    def value(self, site: Site) -> Float[Tensor, " *unit"]:
        x = site_values(self.reference, site)  # [ref, pos, *unit]
        w = self.reference_mask.to(x.dtype).view(*self.reference_mask.shape, *([1] * (x.dim() - 2)))
        return (x * w).sum((0, 1)) / w.sum()

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        values = {}
        for s in sites:
            v = self.value(s)  # one value for every prompt and every position
            values[s] = v.expand(self.n, *v.shape).clone()
        return [constant_edits(sites, values)]


@dataclass(frozen=True)
class ResamplePlan:
    """Per draw, hold each prompt's site at the mean z of another, randomly drawn reference prompt."""

    reference: dict[str, Tensor]
    reference_mask: Int[Tensor, "ref pos"]
    sources: Int[np.ndarray, "draw n"]  # reference row used for each target row, per draw

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        per_row = {s: mean_over_positions(site_values(self.reference, s), self.reference_mask) for s in sites}
        return [
            constant_edits(sites, {s: per_row[s][torch.as_tensor(src)] for s in sites}) for src in self.sources
        ]


def resample_sources(n_target: int, n_reference: int, draws: int, seed: int) -> Int[np.ndarray, "draw n"]:
    """For each draw and target row i, a reference row j != i, uniform and seeded.

    Row i of the target and row i of the reference are one template pair, so j != i keeps a
    prompt from being ablated with its own twin's activations.
    """
    rng = np.random.default_rng(seed)
    j = rng.integers(0, n_reference - 1, size=(draws, n_target))
    rows = np.arange(n_target)[None, :]
    return np.where((j >= rows) & (rows < n_reference), j + 1, j)


@dataclass(frozen=True)
class PatchPlan:
    """Copy each site's activation from the source prompt into the target at mapped prompt positions."""

    source: dict[str, Tensor]
    index: Int[Tensor, "n pos"]
    mask: Bool[Tensor, "n pos"]

    def draws(self, sites: Sequence[Site]) -> list[list[Edit]]:
        return [patch_edits(sites, self.source, self.index, self.mask)]


# --------------------------------------------------------------------------------------------
# Running arms and scoring them
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    """One pass over the target prompts: greedy continuation and last-position logits."""

    tokens: Int[Tensor, "n new"]
    texts: tuple[str, ...]
    min_margin: Float[Tensor, " n"]
    logits: Float[Tensor, "n vocab"]


def run_arm(model: LoadedModel, batch: TokenBatch, edits: Sequence[Edit], max_tokens: int, *, chunk_size: int = 64, desc: str = "generate") -> Arm:
    gen = greedy_generate(model, batch, max_tokens, edits, chunk_size=chunk_size, desc=desc)
    logits = last_logits(model, batch, hooks_for(edits))
    return Arm(gen.tokens, tuple(decode(model, gen.tokens)), gen.min_margin, logits)


def score_arm(arm: Arm, clean: Arm, lex: dict[str, list[int]], emotion: str) -> dict[str, np.ndarray]:
    """Per-prompt scores of one arm; `changed` and `kl` are against the clean arm (0 for it)."""
    scores = {k: np.asarray(v, dtype=float) for k, v in text_scores(arm.texts).items()}
    scores["changed"] = (arm.tokens != clean.tokens).any(1).double().numpy()
    scores["emotion_score"] = emotion_score(arm.logits, lex[emotion], lex[NEUTRAL]).double().numpy()
    scores["kl"] = kl_divergence(clean.logits, arm.logits).double().numpy()
    return {k: scores[k] for k in METRICS}


@dataclass(frozen=True)
class Outcome:
    """An intervention on one set of sites: per-prompt scores averaged over draws, and effects."""

    sites: tuple[Site, ...]
    scores: dict[str, np.ndarray]
    effects: dict[str, Effect]
    first: Arm  # draw 0: its tokens and texts go into the per-prompt table
    min_margin: np.ndarray  # per prompt, smallest over draws
    n_draws: int


def effects(
    intervened: dict[str, np.ndarray], baseline: dict[str, np.ndarray], *, n_resamples: int, seed: int,
    clusters: Sequence[str] | None = None,
) -> dict[str, Effect]:
    """Paired effect per metric; pairs sharing an emotion expression are one cluster (analysis.stats)."""
    return {
        k: paired_effect(intervened[k], baseline[k], n_resamples=n_resamples, seed=seed, clusters=clusters)
        for k in METRICS
    }


def intervene(
    model: LoadedModel,
    batch: TokenBatch,
    plan: Plan,
    sites: tuple[Site, ...],
    clean: Arm,
    baseline_scores: dict[str, np.ndarray],
    *,
    lex: dict[str, list[int]],
    emotion: str,
    max_tokens: int,
    n_resamples: int,
    seed: int,
    clusters: Sequence[str] | None = None,
    chunk_size: int = 64,
) -> Outcome:
    per_draw: list[dict[str, np.ndarray]] = []
    first: Arm | None = None
    margins = []
    draws = plan.draws(sites)
    label = ",".join(s.label for s in sites)
    for d, edits in enumerate(draws):
        arm = run_arm(model, batch, edits, max_tokens, chunk_size=chunk_size, desc=f"{label} draw {d + 1}/{len(draws)}")
        first = first or arm
        per_draw.append(score_arm(arm, clean, lex, emotion))
        margins.append(arm.min_margin.double().numpy())
    assert first is not None
    scores = {k: np.mean([s[k] for s in per_draw], axis=0) for k in METRICS}
    return Outcome(
        sites=sites,
        scores=scores,
        effects=effects(scores, baseline_scores, n_resamples=n_resamples, seed=seed, clusters=clusters),
        first=first,
        min_margin=np.min(margins, axis=0),
        n_draws=len(draws),
    )


@dataclass(frozen=True)
class ExperimentResult:
    config: ExperimentConfig
    pairs: PromptPairs
    target_prompts: tuple[str, ...]
    source_prompts: tuple[str, ...] | None  # patching: the emotion prompt each row got its z from
    baseline: Arm
    baseline_scores: dict[str, np.ndarray]
    main: Outcome
    cumulative: tuple[Outcome, ...]
    resample_sources: np.ndarray | None = None
    notes: tuple[str, ...] = field(default=())


def build_plan(p: Prepared, emotion_batch: TokenBatch, neutral_batch: TokenBatch) -> tuple[Plan, TokenBatch, np.ndarray | None]:
    """The plan of the config's kind and mode, the target batch, and resample sources if any."""
    c = p.config
    all_sites = sorted({s for group in (p.sites, *p.cumulative) for s in group})
    names = sorted({s.hook_name for s in all_sites})
    n = len(p.pairs)
    if c.kind == "patching":
        source = capture(p.model, emotion_batch, names)
        index, mask = position_map(c.mode, emotion_batch, neutral_batch)
        return PatchPlan(source, index, mask), neutral_batch, None
    if c.mode == "zero":
        return ZeroPlan(p.model, n), emotion_batch, None
    reference = capture(p.model, neutral_batch, names)
    if c.mode == "mean":
        return MeanPlan(reference, neutral_batch.attention_mask, n), emotion_batch, None
    sources = resample_sources(n, n, c.resample_draws, c.seed)
    return ResamplePlan(reference, neutral_batch.attention_mask, sources), emotion_batch, sources


@torch.no_grad()
def execute(p: Prepared) -> ExperimentResult:
    """Baseline once, then every distinct site set (requested, top-1..top-K) under the plan."""
    c = p.config
    emotion_batch, neutral_batch = tokenize_pairs(p.model, p.pairs)
    plan, target, sources = build_plan(p, emotion_batch, neutral_batch)
    clean = run_arm(p.model, target, (), c.max_tokens, chunk_size=c.chunk_size, desc="baseline")
    base_scores = score_arm(clean, clean, p.lexicon_ids, c.emotion)
    clusters = span_clusters(p.pairs)

    done: dict[tuple[Site, ...], Outcome] = {}
    groups = [p.sites, *p.cumulative]
    for sites in tqdm(groups, desc="interventions", disable=progress_disabled() or len(groups) == 1, leave=False):
        if sites not in done:  # top-1 of the curve is often the requested head: run it once
            done[sites] = intervene(
                p.model, target, plan, sites, clean, base_scores, lex=p.lexicon_ids, emotion=c.emotion,
                max_tokens=c.max_tokens, n_resamples=c.n_resamples, seed=c.seed, clusters=clusters,
                chunk_size=c.chunk_size,
            )
    if c.kind == "ablation":
        target_prompts, source_prompts = p.pairs.emotion_prompts, None
    else:
        target_prompts, source_prompts = p.pairs.neutral_prompts, tuple(x.text for x in p.pairs.emotion_prompts)
    return ExperimentResult(
        config=c,
        pairs=p.pairs,
        target_prompts=tuple(x.text for x in target_prompts),
        source_prompts=source_prompts,
        baseline=clean,
        baseline_scores=base_scores,
        main=done[p.sites],
        cumulative=tuple(done[s] for s in p.cumulative),
        resample_sources=sources,
        notes=p.notes,
    )


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def _means(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _margin_stats(m: np.ndarray) -> dict[str, float | int]:
    return {
        "min": float(np.min(m)),
        "median": float(np.median(m)),
        f"n_below_{SMALL_MARGIN:g}": int(np.sum(m < SMALL_MARGIN)),
    }


def _heads(sites: Sequence[Site]) -> list[list[int]]:
    return [[s.layer, s.index] for s in sites if s.kind == "head"]


def _units(sites: Sequence[Site]) -> list[list[int]]:
    """MLP units as [layer, neuron]."""
    return [[s.layer, s.index] for s in sites if s.kind == "mlp"]


def _noun(sites: Sequence[Site]) -> str:
    return "units" if sites and all(s.kind == "mlp" for s in sites) else "heads"


def document(r: ExperimentResult) -> dict[str, Any]:
    """The summary JSON (schema emotion-heads/<kind>/v1)."""
    c = r.config
    doc: dict[str, Any] = {
        "schema": c.schema,
        "model": c.model,
        "profile": c.profile,
        "emotion": c.emotion,
        "heads": _heads(r.main.sites),
        "units": _units(r.main.sites),
        "sites": [s.label for s in r.main.sites],
        "head_spec": c.head_spec,
        c.mode_key: c.mode,
        "n_prompts": len(r.pairs),
        "max_tokens": c.max_tokens,
        "baseline": _means(r.baseline_scores),
        "intervened": _means(r.main.scores),
        "effects": {k: e.to_dict() for k, e in r.main.effects.items()},
        "cumulative": [
            {
                "k": k, "heads": _heads(o.sites), "units": _units(o.sites), "sites": [s.label for s in o.sites],
                "intervened": _means(o.scores), "effects": {m: e.to_dict() for m, e in o.effects.items()},
            }
            for k, o in enumerate(r.cumulative, start=1)
        ],
        "min_margin": {"baseline": _margin_stats(r.baseline.min_margin.double().numpy()), "intervened": _margin_stats(r.main.min_margin)},
        "metrics": {k: desc for k, (_, desc) in METRICS.items()},
        "effect_definition": (
            "paired per-prompt difference intervened - baseline: n, mean, 95 % BCa bootstrap CI, two-sided "
            "sign-flip permutation p; pairs sharing an emotion expression (span) are resampled and sign-flipped "
            "as one cluster (n_clusters)"
        ),
        "table": str(c.table),
        "params": {
            "head_spec": c.head_spec,
            c.mode_key: c.mode,
            "max_tokens": c.max_tokens,
            "cumulative_k": len(r.cumulative),
            "seed": c.seed,
            "n_resamples": c.n_resamples,
            "emotion_file": str(c.emotion_file) if c.emotion_file else None,
            "neutral_file": str(c.neutral_file) if c.neutral_file else None,
            "screening_file": str(c.screening_file) if c.screening_file else None,
        },
        "notes": list(r.notes),
    }
    if c.kind == "ablation":
        doc["ablated_positions"] = ABLATED_POSITIONS
        if c.mode == "resample":
            doc["params"]["resample_draws"] = c.resample_draws
    else:
        doc["patched_positions"] = PATCHED_POSITIONS
    return doc


def table(r: ExperimentResult) -> pd.DataFrame:
    """One row per prompt: prompt, both continuations and token ids, every score, margins."""
    data: dict[str, Any] = {"index": np.arange(len(r.target_prompts)), "prompt": list(r.target_prompts)}
    if r.source_prompts is not None:
        data["source_prompt"] = list(r.source_prompts)
    data["baseline_text"] = list(r.baseline.texts)
    data["intervened_text"] = list(r.main.first.texts)
    data["baseline_token_ids"] = r.baseline.tokens.tolist()
    data["intervened_token_ids"] = r.main.first.tokens.tolist()
    for k in METRICS:
        data[f"baseline_{k}"] = r.baseline_scores[k]
        data[f"intervened_{k}"] = r.main.scores[k]
    data["baseline_min_margin"] = r.baseline.min_margin.double().numpy()
    data["intervened_min_margin"] = r.main.min_margin
    if r.resample_sources is not None:
        data["resample_sources"] = r.resample_sources.T.tolist()
    return pd.DataFrame(data)


def write_outputs(r: ExperimentResult) -> dict[str, Any]:
    """Table first, summary last: the summary (the DVC output) exists only if both were written."""
    c = r.config
    doc = document(r)
    meta = {
        "schema": TABLE_SCHEMAS[c.kind],
        "summary_schema": c.schema,
        "model": c.model,
        "profile": c.profile,
        "emotion": c.emotion,
        "heads": doc["heads"],
        "units": doc["units"],
        c.mode_key: c.mode,
        "params": doc["params"],
        "columns": "intervened_text/_token_ids are draw 0 of resample ablation; intervened_<metric> is the mean over draws",
    }
    write_parquet(c.table, table(r), meta)
    write_json(c.output, doc)
    return doc


def _fmt(x: float) -> str:
    return f"{x:+.4f}" if math.isfinite(x) else "nan"


def _fmt_p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


def comparison_table(r: ExperimentResult) -> str:
    """The seed's table (Metric | Baseline | Ablation/Patched | Change), CI and p beside each change."""
    c = r.config
    heads = ",".join(s.label for s in r.main.sites)
    extra = f", {c.mode_key} {c.mode}"
    lines = [
        f"{c.model} {c.profile} {c.emotion}: {c.kind} of {heads}{extra}, n={len(r.pairs)}",
        "",
        f"| Metric | Baseline | {c.label} | Change [95% CI] | p |",
        "|---|---|---|---|---|",
    ]
    base, inter = _means(r.baseline_scores), _means(r.main.scores)
    for k, (label, _) in METRICS.items():
        e = r.main.effects[k]
        lines.append(
            f"| {label} | {base[k]:.4f} | {inter[k]:.4f} | {_fmt(e.mean)} [{_fmt(e.ci_low)}, {_fmt(e.ci_high)}] | {_fmt_p(e.p)} |"
        )
    if r.cumulative:
        kw = f"kw_{c.emotion}"
        noun = _noun(r.main.sites)
        lines += ["", f"Cumulative (top-k screened {noun} jointly): change of {METRICS[kw][0]} and M", "",
                  f"| k | {noun} | Δ keywords [95% CI] | Δ M [95% CI] |", "|---|---|---|---|"]
        for k, o in enumerate(r.cumulative, start=1):
            a, m = o.effects[kw], o.effects["emotion_score"]
            lines.append(
                f"| {k} | {','.join(s.label for s in o.sites)} | {_fmt(a.mean)} [{_fmt(a.ci_low)}, {_fmt(a.ci_high)}] "
                f"| {_fmt(m.mean)} [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}] |"
            )
    if c.kind == "patching":
        lines += ["", f"Patched positions: {PATCHED_POSITIONS}."]
    return "\n".join(lines)

