"""Stage `summarize`: flat metrics for `dvc metrics diff` in results/summary.json."""

from __future__ import annotations

from pathlib import Path

from analysis.base.contract import check_output, RESULTS, SUMMARY, SUMMARY_SCHEMA, write_summary
from analysis.core.cli import Parser, cli
from analysis.settings.params import load_params
from analysis.reporting.summary import summarize


@cli
def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog="python -m analysis.summarize", description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--output", type=Path, default=SUMMARY)
    a = ap.parse_args(argv)
    params = load_params(a.params)
    check_output(a.output, SUMMARY_SCHEMA, inputs=[a.params, RESULTS / params.profile, RESULTS / "models"])
    doc = summarize(params)
    write_summary(a.output, doc)
    print(f"wrote {a.output} ({len(doc) - 2} metrics)")


if __name__ == "__main__":
    main()
