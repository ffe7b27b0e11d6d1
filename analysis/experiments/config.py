"""An experiment's checked config and its command line."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from analysis.core.cli import Parser
from analysis.settings.hardware import from_args, Precision
from analysis.base.contract import check_output, EXPERIMENT_FOLDERS, EXPERIMENT_SCHEMAS, EXPERIMENT_TABLE_SCHEMAS, screening_file, unit_screening_file
from analysis.core.specs import is_unit_spec, parse_unit_spec
from analysis.base.vocabulary import EMOTIONS
from analysis.base.errors import InputError
from analysis.experiments.kinds import KINDS
from analysis.settings.params import Params
from analysis.measures.stats import min_resamples


Kind = Literal["ablation", "patching"]  # a key of analysis.experiments.kinds.KINDS




@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; built by a CLI from flags and params.yaml, then checked."""

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
    split: bool = True  # held-out confirmation: also report every effect on the confirmation half
    selection_share: float = 0.5
    skip_copy_flagged: bool = True  # top:N / mlp-top:K and the cumulative curve skip copy-flagged components
    max_unaligned_share: float = 0.2  # patching at positions all: most of the pairs that may be left out (keep_aligned)
    chunk_size: int = 128  # prompts per generate call: the baseline sets (70) in one
    direction: str | None = None  # patching: denoising | noising (analysis.interventions.plans.PATCH_DIRECTIONS)
    noise_atol: float = 1.0e-5  # params noise_floor.atol: added to the identity control's max |effect|
    random_draws: int = 5  # params random_baseline.draws: random site sets per arm
    specificity_min_share: float = 0.05  # params specificity.min_share: the control's `specific` threshold (share of the gap)
    select_specific: bool = True  # params specificity.select: top:N / mlp-top:K and the cumulative curve rank specific components only
    precision: Precision | None = None  # device and dtype (analysis.settings.hardware.from_args); None: CPU, float32

    @property
    def name(self) -> str:
        """The experiment's name (analysis.base.contract.EXPERIMENTS): ablation, denoising or noising."""
        return self.direction or self.kind

    @property
    def schema(self) -> str:
        return EXPERIMENT_SCHEMAS[self.kind]

    @property
    def mode_key(self) -> str:
        return KINDS[self.kind].mode_flag

    @property
    def label(self) -> str:
        return KINDS[self.kind].label


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


def default_output(kind: Kind, profile: str, model: str, emotion: str, head_spec: str, direction: str | None = None) -> Path:
    """The seed's layout, with .json instead of .pkl; a patching run's folder named by its direction."""
    folder = EXPERIMENT_FOLDERS[kind] + (f"/{direction}" if direction else "")
    return Path(f"results/{profile}/patching/{folder}/{model_tag(model)}_{emotion}_{spec_tag(head_spec)}.json")


def build_parser(kind: Kind, description: str, params: Params) -> Parser:
    """The seed's flags plus ours; kind-specific ones (--method/--positions, prompt files) included."""
    section = KINDS[kind].section(params)
    p = Parser(
        prog=f"python -m {KINDS[kind].command}", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
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
    KINDS[kind].add_flags(p, params)
    p.add_argument(
        "--cumulative-k", type=int, default=None,
        help=f"also intervene on the top-1..top-k screened heads (or units, for a unit spec) jointly; 0 = off (default {section.cumulative_k})",
    )
    p.add_argument(
        "--screening-file", type=Path, default=None,
        help="screening JSON for top:N / mlp-top:K and the cumulative curve (default: the model's head screening, "
        "or its unit screening for a unit spec)",
    )
    p.add_argument(
        "--no-split", action="store_true",
        help="exploratory run: no held-out confirmation half, every effect over all expressions (params split.enabled)",
    )
    p.add_argument("--seed", type=int, default=params.seed, help=f"seed of the bootstrap draws and resampling (default {params.seed})")
    p.add_argument("--n-resamples", type=int, default=params.scoring.n_resamples, help=f"wild bootstrap draws per effect (default {params.scoring.n_resamples})")
    p.add_compute_flags()
    return p


def config_from_args(kind: Kind, args: argparse.Namespace, params: Params) -> ExperimentConfig:

    section = KINDS[kind].section(params)
    direction = getattr(args, "direction", None)
    output = args.output or default_output(kind, args.profile, args.model, args.emotion, args.head_spec, direction)
    explicit_k = args.cumulative_k is not None
    return ExperimentConfig(
        kind=kind,
        model=args.model,
        profile=args.profile,
        emotion=args.emotion,
        head_spec=args.head_spec,
        mode=getattr(args, KINDS[kind].mode_flag),
        max_tokens=args.max_tokens,
        output=output,
        table=args.table or output.with_suffix(".parquet"),
        emotion_file=getattr(args, KINDS[kind].emotion_file_flag),
        neutral_file=args.neutral_prompts,
        screening_file=args.screening_file or (unit_screening_file if is_unit_spec(args.head_spec) else screening_file)(args.profile, args.model),
        cumulative_k=args.cumulative_k if explicit_k else section.cumulative_k,
        cumulative_k_explicit=explicit_k,
        seed=args.seed,
        n_resamples=args.n_resamples,
        resample_draws=getattr(args, "resample_draws", params.ablation.resample_draws),
        split=params.split.enabled and not args.no_split,
        selection_share=params.split.selection_share,
        skip_copy_flagged=params.copy_control.skip_flagged,
        direction=direction,
        noise_atol=params.noise_floor.atol,
        random_draws=params.random_baseline.draws,
        specificity_min_share=params.specificity.min_share,
        select_specific=params.specificity.select,
        max_unaligned_share=params.alignment.max_unaligned_share,
        precision=from_args(args, params),
    )


def parse_config(kind: Kind, argv: Sequence[str] | None, description: str = "") -> ExperimentConfig:
    """Flags (and params.yaml for what they leave out) → a config; bad flags are InputErrors."""
    from analysis.settings.params import load_params

    params = load_params()
    args = build_parser(kind, description, params).parse_args(argv)
    return config_from_args(kind, args, params)


def _model_folder(name: str) -> Path | None:
    """The local folder of model `name` (toy or a folder given by path), an input of the run; None for
    a hub id or a model that is not here (loading it names the problem)."""
    from analysis.core.loading import resolve_model_path

    try:
        path = Path(resolve_model_path(name))
    except InputError:
        return None
    return path if path.is_dir() else None


def _check_config_values(c: ExperimentConfig) -> None:
    if c.max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1 (got {c.max_tokens}): the metrics score generated tokens")
    if c.cumulative_k < 0:
        raise InputError(f"--cumulative-k must be 0 (off) or more (got {c.cumulative_k})")
    need = min_resamples()
    if c.n_resamples < need:
        raise InputError(f"--n-resamples must be at least {need} for a 95 % interval (got {c.n_resamples})")
    if c.seed < 0:
        raise InputError(f"--seed must be >= 0 (got {c.seed})")
    KINDS[c.kind].check(c)
    modes = KINDS[c.kind].modes
    if c.mode not in modes:
        raise InputError(f"unknown {c.mode_key} {c.mode!r}; allowed: {', '.join(modes)}")
    # Checked before any work and creating nothing (the folders are made at the write).
    inputs = [p for p in (_model_folder(c.model), c.screening_file, c.emotion_file, c.neutral_file) if p is not None]
    check_output(c.output, EXPERIMENT_SCHEMAS[c.kind], inputs=inputs)
    check_output(c.table, EXPERIMENT_TABLE_SCHEMAS[c.kind], inputs=inputs)
    if c.output.resolve() == c.table.resolve():
        raise InputError(f"--output and --table are the same file {c.output}")
