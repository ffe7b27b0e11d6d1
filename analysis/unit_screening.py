"""Stage `screen_units`: attribution for every MLP unit, exact patching with CI, p, q for the top-k."""

from __future__ import annotations

import sys
from pathlib import Path
import torch

from analysis.core.cli import Parser, cli
from analysis.core.loading import resolve_model_path
from analysis.base.contract import check_output, UNIT_ATTRIBUTION_SCHEMA, UNIT_SCORES_SCHEMA, unit_screening_file
from analysis.core.prompt_table import stage_pairs
from analysis.core.prompts import PROMPTS_ROOT
from analysis.settings.hardware import from_args
from analysis.base.errors import InputError
from analysis.core.budget import load_planned
from analysis.screening.units import check_has_units, format_top, screen, TOP_PER_LAYER, UnitScreeningConfig, write_outputs


@cli
def main(argv: list[str] | None = None) -> dict:
    from analysis.settings.params import load_params

    ap = Parser(prog="python -m analysis.unit_screening", description="Score every MLP unit × emotion.")
    ap.add_argument("--model", required=True, help="toy, a Hugging Face id, or a local folder")
    ap.add_argument("--profile", default=None, help="prompt set under data/prompts (default: params.yaml)")
    ap.add_argument("--output", type=Path, default=None, help="JSON (default: results/<profile>/alignment/unit_scores_<model>.json)")
    ap.add_argument("--table", type=Path, default=None, help="Parquet of every unit's attribution (default: the output with .parquet)")
    ap.add_argument("--emotions", nargs="+", default=None)
    ap.add_argument("--positions", default=None, help="all | last | span")
    ap.add_argument("--exact-top-k", type=int, default=None, help="exact patching for the top-k units by |attribution| per emotion; 0 = every unit")
    ap.add_argument("--n-resamples", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-split", action="store_true", help="exploratory: rank on all expressions (params split.enabled)")
    ap.add_argument("--top-per-layer", type=int, default=TOP_PER_LAYER, help=f"units per layer kept in the JSON (default {TOP_PER_LAYER})")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_compute_flags()
    a = ap.parse_args(argv)
    p = load_params(a.params)
    precision = from_args(a, p)
    cfg = UnitScreeningConfig(
        model=a.model,
        profile=p.profile if a.profile is None else a.profile,
        emotions=tuple(a.emotions or p.emotions),
        positions=a.positions or p.unit_screening.positions,
        exact_top_k=p.unit_screening.exact_top_k if a.exact_top_k is None else a.exact_top_k,
        n_resamples=p.unit_screening.n_resamples if a.n_resamples is None else a.n_resamples,
        seed=p.seed if a.seed is None else a.seed,
        split=p.split.enabled and not a.no_split,
        selection_share=p.split.selection_share,
        copy_max_share=p.copy_control.max_share,
        noise_atol=p.noise_floor.atol,
        specificity_min_share=p.specificity.min_share,
        max_unaligned_share=p.alignment.max_unaligned_share,
        top_per_layer=a.top_per_layer,
    )
    output = a.output or unit_screening_file(cfg.profile, cfg.model)
    table = a.table or output.with_suffix(".parquet")
    inputs = [resolve_model_path(cfg.model), a.params, PROMPTS_ROOT / cfg.profile]
    check_output(output, UNIT_SCORES_SCHEMA, inputs=inputs)
    check_output(table, UNIT_ATTRIBUTION_SCHEMA, inputs=inputs)
    if output.resolve() == table.resolve():
        raise InputError(f"--output and --table are the same file {output}")
    pairs = {e: stage_pairs(e, cfg.profile) for e in cfg.emotions}
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    model = load_planned(cfg.model, precision, cfg.profile, len(cfg.emotions))
    check_has_units(model.spec)
    doc = write_outputs(screen(model, cfg, pairs), output, table)
    print(format_top(doc))
    print(f"wrote {output} and {table}", file=sys.stderr)
    return doc


if __name__ == "__main__":
    main()
