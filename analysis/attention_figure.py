"""Stage `attention`: what each emotion's top heads attend to from the last prompt position.

    python -m analysis.attention_figure --model toy --top-n 2 --output-dir results/baseline/plots/attention/toy

Writes `attention_pattern.png` (one panel per emotion × head, emotion prompt vs neutral twin,
by part of the prompt) and `attention_pattern.csv` (the plotted means, with the per-pair standard
deviation and n) into --output-dir. The computation is analysis.plots.attention's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from analysis.base.contract import check_output_folder, prompts_file, screening_file
from analysis.core.cli import Parser, cli
from analysis.core.loading import resolve_model_path
from analysis.core.prompts import PROMPTS_ROOT
from analysis.settings.hardware import from_args
from analysis.plots.attention import AttentionConfig, attention_pattern, write_attention


@cli
def main(argv: list[str] | None = None) -> None:
    from analysis.settings.params import load_params

    ap = Parser(prog="python -m analysis.attention_figure", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="toy, a Hugging Face id, or a local folder")
    ap.add_argument("--profile", default=None, help="prompt profile (default: params.yaml)")
    ap.add_argument("--top-n", type=int, default=2, help="heads per emotion, by the screening's ranking")
    ap.add_argument("--output-dir", required=True, type=Path)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_compute_flags()
    a = ap.parse_args(argv)
    p = load_params(a.params)
    precision = from_args(a, p)
    config = AttentionConfig(model=a.model, profile=a.profile or p.profile, emotions=tuple(p.emotions), top_n=a.top_n)
    inputs = [resolve_model_path(config.model), a.params, PROMPTS_ROOT / config.profile,
              prompts_file(config.profile), screening_file(config.profile, config.model)]
    check_output_folder(a.output_dir, inputs=inputs)  # before any work; creates nothing
    table = attention_pattern(config, precision)
    out = write_attention(table, a.model, a.output_dir)
    print(f"wrote {out['png']} and {out['csv']}", file=sys.stderr)


if __name__ == "__main__":
    main()
