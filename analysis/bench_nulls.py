"""Stage `nulls`: the benchmark's null screenings (neutral-vs-neutral pairs on the benchmark with its
span embeddings permuted and on random-weight models of each family) -> results/<profile>/nulls.json,
which the validate stage's null criterion reads (issue 24).

The computation is analysis.bench.nulls.null_document; this is its CLI.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli


@cli
def main(argv: Sequence[str] | None = None) -> None:
    from analysis.base.contract import check_output, NULLS_SCHEMA, write_nulls
    from analysis.core.loading import resolve_model_path
    from analysis.core.prompts import PROMPTS_ROOT
    from analysis.bench.nulls import null_document, NullConfig
    from analysis.settings.params import load_params

    ap = Parser(prog="python -m analysis.bench_nulls", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bench", help="the benchmark: `bench` or its folder")
    ap.add_argument("--output", required=True, type=Path, help="results/<profile>/nulls.json")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--profile", help="prompt profile (default: params profile)")
    a = ap.parse_args(argv)
    p = load_params(a.params)
    folder = resolve_model_path(a.model)
    profile = a.profile or p.profile
    check_output(a.output, NULLS_SCHEMA, inputs=[folder, a.params, PROMPTS_ROOT / profile])
    cfg = NullConfig.from_params(p, folder=folder, profile=profile)  # screens as the `screen` stage does
    start = time.perf_counter()
    doc = null_document(cfg)
    write_nulls(a.output, doc)
    print(f"wrote {a.output} ({doc['n_nulls']} null screenings) in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
