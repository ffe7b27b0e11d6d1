"""Stage `sweep`: the benchmark rebuilt at each background strength (benchmark.sweep) and validated
-> results/<profile>/sweep.json: how hard the benchmark must get before a score stops finding a
structure (issue 24).

The computation is analysis.bench.scoring.difficulty_sweep; this is its CLI.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli


@cli
def main(argv: Sequence[str] | None = None) -> None:
    from analysis.base.contract import check_output, SWEEP_SCHEMA, write_sweep
    from analysis.core.prompts import PROMPTS_ROOT
    from analysis.settings.params import load_params
    from analysis.bench.scoring import difficulty_sweep, ValidationConfig

    ap = Parser(prog="python -m analysis.bench_sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--output", required=True, type=Path, help="results/<profile>/sweep.json")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--profile", help="prompt profile (default: params profile)")
    a = ap.parse_args(argv)
    p = load_params(a.params)
    profile = a.profile or p.profile
    check_output(a.output, SWEEP_SCHEMA, inputs=[a.params, PROMPTS_ROOT / profile])
    cfg = ValidationConfig.from_params(p, folder="bench", profile=profile)
    start = time.perf_counter()
    doc = difficulty_sweep(cfg, p.benchmark.sweep, seed=p.seed)
    write_sweep(a.output, doc)
    print(f"wrote {a.output} ({len(doc['runs'])} strengths) in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
