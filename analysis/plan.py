"""Plan a run before anything runs: weights' size, each stage's peak memory and time, from the config alone.

    python -m analysis.plan --model gpt2-xl [--device auto] [--dtype float32] [--profile baseline]

The estimates and their constants are in `analysis.core.budget` (which every model-loading stage
also calls, to stop before a run that does not fit); this command prints them and ends with one line
saying what to change when the run does not fit (exit 2).
"""

from __future__ import annotations

from analysis.core.budget import check_fits, plan
from analysis.core.cli import Parser, cli


@cli
def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog="python -m analysis.plan", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a local folder, a cached Hugging Face id, or a model of the embedded table")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    ap.add_argument("--profile", default="baseline", help="prompt set under data/prompts/")
    ap.add_argument("--batch", type=int, default=None, help="prompts per forward (default: the whole set)")
    a = ap.parse_args(argv)
    p = plan(a.model, a.device, a.dtype, a.profile, a.batch)
    print(p.text, flush=True)  # the numbers first, so a run that does not fit shows why
    check_fits(p.arch, p.workload, p.precision, p.available)


if __name__ == "__main__":
    main()
