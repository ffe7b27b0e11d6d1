"""Stage `validate`: the benchmark with known answers (bench) and its null models -> every
screening metric scored against the answers, in results/<profile>/validation.json.

The computation is analysis.validation.validate; this is its CLI.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli


@cli
def main(argv: Sequence[str] | None = None) -> None:
    from analysis.contract import check_output, VALIDATION_SCHEMA, write_validation
    from analysis.core.loading import resolve_model_path
    from analysis.core.prompts import PROMPTS_ROOT
    from analysis.params import load_params
    from analysis.validation import validate, ValidationConfig

    ap = Parser(prog="python -m analysis.validate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bench", help="the benchmark: `bench` or its folder")
    ap.add_argument("--output", required=True, type=Path, help="results/<profile>/validation.json")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--profile", help="prompt profile (default: params profile)")
    a = ap.parse_args(argv)
    p = load_params(a.params)
    folder = resolve_model_path(a.model)
    profile = a.profile or p.profile
    check_output(a.output, VALIDATION_SCHEMA, inputs=[folder, a.params, PROMPTS_ROOT / profile])
    cfg = ValidationConfig.from_params(p, folder=folder, profile=profile)  # screens as the `screen` stage does
    start = time.perf_counter()
    doc = validate(cfg)
    write_validation(a.output, doc)
    print(f"wrote {a.output} in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
