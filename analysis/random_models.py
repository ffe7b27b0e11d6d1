"""Save a random-weight model of a supported family as a local Hugging Face folder.

The builder and why the weights are drawn as they are: `analysis.modelfacts.random_weights`.
"""

from __future__ import annotations

from pathlib import Path

from analysis.core.cli import Parser, cli
from analysis.modelfacts.families import SUPPORTED_FAMILIES
from analysis.modelfacts.random_weights import save_random_model


@cli
def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog="python -m analysis.random_models", description=__doc__.splitlines()[0])
    ap.add_argument("--family", required=True, choices=SUPPORTED_FAMILIES)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--tokenizer", required=True, type=Path, help="folder with a saved tokenizer (e.g. the toy model)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--vocab-size", type=int, default=50257)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    save_random_model(
        a.family, a.output, tokenizer_dir=a.tokenizer, n_layers=a.layers, n_heads=a.heads,
        d_model=a.d_model, vocab_size=a.vocab_size, seed=a.seed,
    )


if __name__ == "__main__":
    main()
