"""Build GPT-NeoX-20B's tokenizer (Pythia's; data/tokenizers/gpt-neox) from its GGUF vocabulary, offline.

    python -m analysis.gpt_neox_tokenizer [--source data/tokenizers/gpt-neox/source/ggml-vocab-gpt-neox.gguf] \
        [--output data/tokenizers/gpt-neox]

A thin CLI over analysis.tokenizers.gpt_neox_bpe (what is read and how it is built is told there).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli
from analysis.tokenizers.gpt_neox_bpe import OUTPUT, SOURCE, write_tokenizer


@cli
def main(argv: Sequence[str] | None = None) -> None:
    ap = Parser(prog="python -m analysis.gpt_neox_tokenizer", description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=SOURCE, help="GPT-NeoX-20B's vocabulary-only GGUF file")
    ap.add_argument("--output", type=Path, default=OUTPUT, help="folder to write tokenizer.json and its config to")
    args = ap.parse_args(argv)
    paths = write_tokenizer(args.source, args.output)  # a SourceError is an InputError: one line, exit 2
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)


if __name__ == "__main__":
    main()
