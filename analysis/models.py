"""Stage `model`: a model name -> a local folder the pipeline can depend on (`toy` is built; others are located)."""

from __future__ import annotations

from pathlib import Path

from analysis.core.cli import Parser, cli
from analysis.contract import check_model_output
from analysis.core.loading import materialize, TOY


@cli
def main(argv: list[str] | None = None) -> None:

    from analysis.params import load_params

    ap = Parser(prog="python -m analysis.models", description="Stage `model`: build toy or locate a model.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    a = ap.parse_args(argv)
    p = load_params(a.params)  # the first stage: a bad params.yaml fails here, in one line
    check_model_output(a.output, "toy" if a.model == TOY else "located", inputs=[a.params])
    materialize(a.model, a.output, seed=p.seed, toy_steps=p.toy.steps)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
