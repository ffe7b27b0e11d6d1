"""Stage `compare_models`: every model's head screening side by side, and the top heads per model × emotion."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
import matplotlib

from analysis.base.contract import comparison_dir
from analysis.core.cli import Parser, cli
from analysis.plots.comparison import compare, ComparisonConfig


def parse_args(argv: Sequence[str] | None) -> ComparisonConfig:
    ap = Parser(prog="python -m analysis.model_comparison", description=__doc__.split("\n\n")[0],
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="prompt profile (default: params.yaml profile)")
    ap.add_argument("--models", nargs="+", default=None, help="models, in column order (default: params.yaml models)")
    ap.add_argument("--emotions", nargs="+", default=None, help="emotions, in row order (default: params.yaml emotions)")
    ap.add_argument("--output-dir", type=Path, default=None, help="default: results/<profile>/plots/models")
    ap.add_argument("--top-n", type=int, default=5, help="heads per model × emotion in the tables (default 5)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="read only for what is not given")
    a = ap.parse_args(argv)
    if a.profile is None or a.models is None or a.emotions is None:
        from analysis.settings.params import load_params

        p = load_params(a.params)
        a.profile = p.profile if a.profile is None else a.profile
        a.models = a.models or list(p.models)
        a.emotions = a.emotions or list(p.emotions)
    return ComparisonConfig(
        profile=a.profile,
        models=tuple(a.models),
        emotions=tuple(a.emotions),
        output_dir=a.output_dir if a.output_dir is not None else comparison_dir(a.profile),
        top_n=a.top_n,
    )


@cli
def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    matplotlib.use("Agg")
    out = compare(parse_args(argv))
    for p in out.values():
        print(f"wrote {p}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
