"""Stage `validate`: the benchmark with known answers (bench) -> every screening metric scored
against the answers, and the nulls stage's null screenings judged, in results/<profile>/validation.json.

The computation is analysis.bench.scoring.validate; this is its CLI.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli


@cli
def main(argv: Sequence[str] | None = None) -> None:
    from analysis.base.contract import check_output, VALIDATION_SCHEMA, write_validation
    from analysis.core.loading import resolve_model_path
    from analysis.core.prompts import PROMPTS_ROOT
    from analysis.settings.params import load_params
    from analysis.bench.scoring import validate, ValidationConfig

    ap = Parser(prog="python -m analysis.validate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bench", help="the benchmark: `bench` or its folder")
    ap.add_argument("--output", required=True, type=Path, help="results/<profile>/validation.json")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--profile", help="prompt profile (default: params profile)")
    ap.add_argument("--nulls", type=Path, help="the nulls stage's results/<profile>/nulls.json (default: none, no null criterion)")
    ap.add_argument("--no-unit-metrics", action="store_true",
                    help="skip the unit screening of every benchmark unit (unit_metrics, minutes); for tests")
    a = ap.parse_args(argv)
    p = load_params(a.params)
    folder = resolve_model_path(a.model)
    profile = a.profile or p.profile
    check_output(a.output, VALIDATION_SCHEMA, inputs=[folder, a.params, PROMPTS_ROOT / profile, *([a.nulls] if a.nulls else [])])
    cfg = ValidationConfig.from_params(p, folder=folder, profile=profile, nulls=None if a.nulls is None else str(a.nulls))  # screens as the `screen` stage does
    if a.no_unit_metrics:
        cfg = dataclasses.replace(cfg, unit_metrics=False)
    start = time.perf_counter()
    doc = validate(cfg)
    write_validation(a.output, doc)
    print(f"wrote {a.output} in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
