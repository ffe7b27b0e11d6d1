"""Seed command / stage `screen`: score every attention head (Δattn, attribution, exact patching ΔM with CI, p, q)."""

from __future__ import annotations

import sys
from pathlib import Path
import torch

from analysis.core.cli import Parser, cli
from analysis.core.loading import resolve_model_path
from analysis.core.prompt_table import stage_pairs
from analysis.core.prompts import PROMPTS_ROOT
from analysis.base.contract import check_output, HEAD_SCORES_SCHEMA, write_screening
from analysis.settings.hardware import from_args
from analysis.core.budget import load_planned
from analysis.screening.common import ScreeningConfig
from analysis.screening.heads import format_top, screen


@cli
def main(argv: list[str] | None = None) -> None:
    from analysis.settings.params import load_params

    ap = Parser(prog="python -m analysis.head_screening", description="Score every head × emotion.")
    ap.add_argument("--model", required=True, help="toy, a Hugging Face id, or a local folder")
    ap.add_argument("--profile", default=None, help="prompt set under data/prompts (default: params.yaml)")
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--emotions", nargs="+", default=None)
    ap.add_argument("--positions", default=None, help="all | last | span")
    ap.add_argument("--exact-top-k", type=int, default=None)
    ap.add_argument("--n-resamples", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-split", action="store_true", help="exploratory: rank on all expressions (params split.enabled)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_compute_flags()
    a = ap.parse_args(argv)
    p = load_params(a.params)
    precision = from_args(a, p)
    flags = dict(profile=a.profile, positions=a.positions, exact_top_k=a.exact_top_k, n_resamples=a.n_resamples, seed=a.seed,
                 emotions=tuple(a.emotions) if a.emotions else None)
    cfg = ScreeningConfig.from_params(p, model=a.model, **{k: v for k, v in flags.items() if v is not None},
                                      **({"split": False} if a.no_split else {}))
    check_output(a.output, HEAD_SCORES_SCHEMA, inputs=[resolve_model_path(cfg.model), a.params, PROMPTS_ROOT / cfg.profile])
    pairs = {e: stage_pairs(e, cfg.profile) for e in cfg.emotions}
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    model = load_planned(cfg.model, precision, cfg.profile, len(cfg.emotions))
    doc = screen(model, cfg, pairs)
    write_screening(a.output, doc)
    print(format_top(doc))
    print(f"wrote {a.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
