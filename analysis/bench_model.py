"""Stage `benchmark`: build the benchmark model with known, hard answers into a folder.

analysis.embedded.benchmark builds it; its null models are derived from it by the validate
stage; `bench` is then loadable by name (analysis.core.loading.EMBEDDED)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli
from analysis.embedded.benchmark import BenchConfig, build_benchmark, DEFAULT_EMOTION


@cli
def main(argv: Sequence[str] | None = None) -> None:
    from analysis.settings.params import load_params

    ap = Parser(prog="python -m analysis.bench_model", description=__doc__.splitlines()[0])
    ap.add_argument("--output", required=True, type=Path, help="model folder to create (results/models/bench)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--profile", help="prompt profile whose halves build and evaluate (default: params profile)")
    ap.add_argument("--structures", help=f"comma-separated subset of: {', '.join(DEFAULT_EMOTION)} (default: all)")
    ap.add_argument("--emotion", action="append", default=[], metavar="STRUCTURE=EMOTION",
                    help="the emotion a structure serves (default: " + ", ".join(f"{k}={v}" for k, v in DEFAULT_EMOTION.items()) + ")")
    a = ap.parse_args(argv)
    p = load_params(a.params)
    emotions = dict(e.split("=", 1) if "=" in e else (e, "") for e in a.emotion)
    config = BenchConfig(
        profile=a.profile or p.profile, seed=p.seed, emotions=emotions,
        structures=tuple(s.strip() for s in a.structures.split(",")) if a.structures else (),
        selection_share=p.split.selection_share,
    )
    start = time.perf_counter()
    out = build_benchmark(config, a.output)
    print(f"benchmark ({', '.join(config.planted)}) written to {out} "
          f"in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
