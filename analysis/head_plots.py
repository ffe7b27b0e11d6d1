"""Stage `plots`: the seed's four head figures, improved, plus the cumulative top-k curve.

    python -m analysis.head_plots --profile baseline \
        --head-scores results/baseline/alignment/head_scores_toy.json [more.json ...] \
        --ablation-file results/baseline/patching/head_ablation/toy_gratitude.json [...] \
        --patching-file results/baseline/patching/head_patching/toy_gratitude.json [...] \
        --output-dir results/baseline/plots/heads --top-n 20 [--emotion E] \
        [--planted results/models/toy/planted.json]

Each file flag takes several files: one screening per model, one ablation / patching summary per
model × emotion. Written to --output-dir (each file atomically, nothing at all on bad input):

- `head_reaction_heatmap.png`: layer × head, one panel per emotion (a row per model), diverging
  colour map centred on 0. Score = `exact` (patching effect on M, nats) where it was computed,
  else the `attribution` estimate of it; the colour-bar label says which. Planted heads of the
  toy model are boxed when --planted is given.
- `top_heads.png`: the top-N heads by |score| over all emotions, 95 % CI whiskers where exact.
- `ablation_sentiment_comparison.png`, `patching_keyword_comparison.png`: per emotion, baseline
  vs intervened mean of sentiment, the emotion's own keyword count and M; the error bar is
  baseline + the 95 % CI of the paired change, annotated Δ [CI].
- `cumulative_topk.png`: change of M and of own-emotion keywords when the top-1..k screened heads
  are intervened on jointly (mean, 95 % CI band), one line per emotion.
- `head_scores.csv`, `effects.csv`, `cumulative.csv`: the numbers behind them (for `dvc plots`).
- `unit_summary.png` + `unit_summary.csv`, when a unit screening is given (--unit-scores; with
  --from-params, the model's unit_scores file if it exists, else a printed note): per emotion, the
  MLP units of each layer that the unit screening kept (its top units per layer by |attribution|
  and every unit patched exactly), x = layer, y = exact ΔM with its 95 % CI where computed (filled),
  else the attribution estimate (open); the top units are labelled `L.N`, the toy model's planted
  units (planted.json `units_by_emotion`) starred.

Deterministic: Agg canvas, fixed rcParams (svg.hashsalt), no timestamp or software metadata,
so the same inputs give byte-identical PNGs on the same machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
import matplotlib

from analysis.core.cli import Parser, cli
from analysis.base.errors import InputError
from analysis.base.contract import check_output_folder
from analysis.plots.data import load, PlotConfig
from analysis.plots.figures import render


def parse_args(argv: Sequence[str] | None) -> PlotConfig:
    ap = Parser(prog="python -m analysis.head_plots", description=__doc__.split("\n\n")[0],
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="prompt profile of the inputs (checked against each file)")
    ap.add_argument("--head-scores", nargs="+", type=Path, help="screening JSON(s), one per model")
    ap.add_argument("--ablation-file", nargs="+", type=Path, help="ablation JSON(s), one per model × emotion")
    ap.add_argument("--patching-file", nargs="+", type=Path, help="patching JSON(s), one per model × emotion")
    ap.add_argument("--output-dir", required=True, type=Path)
    ap.add_argument("--top-n", type=int, default=None, help="heads in top_heads.png (default: params.yaml plots.top_n, 20)")
    ap.add_argument("--emotion", default=None, help="draw only this emotion")
    ap.add_argument("--planted", type=Path, default=None, help="planted.json of the toy model: box its planted heads (and star its planted units)")
    ap.add_argument("--unit-scores", nargs="+", type=Path, default=None,
                    help="unit screening JSON(s), one per model: also draw unit_summary.png")
    ap.add_argument(
        "--from-params", action="store_true",
        help="the pipeline's mode: take profile, emotions and the input files of --model from params.yaml "
        "and the layout of analysis.base.contract",
    )
    ap.add_argument("--model", default=None, help="with --from-params: the model whose outputs to draw")
    a = ap.parse_args(argv)
    if a.from_params:
        from analysis.base.contract import experiment_file, model_dir, screening_file, unit_screening_file
        from analysis.settings.params import load_params

        if not a.model:
            raise InputError("--from-params needs --model")
        p = load_params()
        profile = p.profile if a.profile is None else a.profile
        planted = model_dir(a.model) / "planted.json"
        units = unit_screening_file(profile, a.model)
        notes = () if units.is_file() else (
            f"no unit screening file {units}: unit_summary.png is not drawn "
            f"(run `python -m analysis.unit_screening --model {a.model}` to get it)",
        )
        return PlotConfig(
            profile=profile,
            head_scores=(screening_file(profile, a.model),),
            ablation_files=tuple(experiment_file("ablation", profile, a.model, e) for e in p.emotions),
            patching_files=tuple(experiment_file("denoising", profile, a.model, e) for e in p.emotions),
            output_dir=a.output_dir,
            top_n=a.top_n if a.top_n is not None else p.plots.top_n,
            emotion=a.emotion,
            planted=planted if planted.is_file() else None,
            unit_scores=(units,) if units.is_file() else (),
            notes=notes,
        )
    missing = [f for f in ("profile", "head_scores", "ablation_file", "patching_file") if not getattr(a, f)]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise InputError(f"missing {flags} (or use --from-params --model M)")
    return PlotConfig(
        profile=a.profile,
        head_scores=tuple(a.head_scores),
        ablation_files=tuple(a.ablation_file),
        patching_files=tuple(a.patching_file),
        output_dir=a.output_dir,
        top_n=20 if a.top_n is None else a.top_n,
        emotion=a.emotion,
        planted=a.planted,
        unit_scores=tuple(a.unit_scores or ()),
    )


@cli
def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    matplotlib.use("Agg")
    config = parse_args(argv)
    for note in config.notes:
        print(f"note: {note}", file=sys.stderr)
    inputs = [*config.head_scores, *config.ablation_files, *config.patching_files, *config.unit_scores]
    check_output_folder(config.output_dir, inputs=[*inputs, *([config.planted] if config.planted else [])])
    data = load(config)
    out = render(data, config.output_dir, config.top_n)
    for p in out.values():
        print(f"wrote {p}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
