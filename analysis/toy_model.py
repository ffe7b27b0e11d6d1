"""Build the embedded toy model into a folder (the `model@toy` stage runs this through analysis.models)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli
from analysis.embedded.build import build_toy_model
from analysis.embedded.construction import ToyConfig


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = ToyConfig()
    p = Parser(prog="python -m analysis.toy_model", description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True, help="model folder to create (e.g. results/models/toy)")
    p.add_argument(
        "--profile",
        action="append",
        help=f"prompt profile in the corpus; repeat for several (default: {' '.join(d.profiles)})",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help="BPE vocabulary before span tokens")
    p.add_argument("--continuations", default=d.continuations, help="continuation bank (YAML)")
    return p.parse_args(argv)


@cli
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    config = ToyConfig(
        profiles=tuple(args.profile) if args.profile else ToyConfig.profiles,
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        vocab_size=args.vocab_size,
        continuations=args.continuations,
    )
    start = time.perf_counter()
    out = build_toy_model(config, Path(args.output))
    seconds = time.perf_counter() - start
    print(
        f"toy model with planted heads {config.planted} and units {config.planted_units} "
        f"written to {out} in {seconds:.0f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
