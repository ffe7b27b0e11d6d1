"""Plan a run before anything runs: weights' size, each stage's peak memory and time, from the config alone.

    python -m analysis.plan --model gpt2-xl [--device auto] [--dtype float32] [--profile baseline] [--params params.yaml]
    python -m analysis.plan --ladder   (the Phase 8 sizes on this CPU and on one 80 GB GPU, a Markdown table)

The estimates and their constants are in `analysis.core.budget` (which every model-loading stage
also calls, to stop before a run that does not fit); this command prints them and ends with one line
saying what to change when the run does not fit (exit 2).
"""

from __future__ import annotations

from pathlib import Path

from analysis.core.budget import check_fits, LADDER, ladder, ladder_machines, plan, profile_workload
from analysis.core.cli import Parser, cli
from analysis.settings.params import load_params


@cli
def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog="python -m analysis.plan", description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="a local folder, a cached Hugging Face id, or a model of the embedded table")
    what.add_argument("--ladder", action="store_true", help="plan the Phase 8 sizes: " + ", ".join(LADDER))
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (--model only)")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 (--model only)")
    ap.add_argument("--profile", default="baseline", help="prompt set under data/prompts/")
    ap.add_argument("--batch", type=int, default=None, help="prompts per forward (default: the whole set)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="what the experiments generate (ablation, patching, random_baseline, emotions)")
    a = ap.parse_args(argv)
    params = load_params(a.params)
    if a.ladder:
        print(ladder(LADDER, ladder_machines(), profile_workload(a.profile, params)), flush=True)
        return
    p = plan(a.model, a.device, a.dtype, a.profile, a.batch, params=params)
    print(p.text, flush=True)  # the numbers first, so a run that does not fit shows why
    check_fits(p.arch, p.workload, p.precision, p.available)


if __name__ == "__main__":
    main()
