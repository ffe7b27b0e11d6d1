"""Build GPT-2's tokenizer (data/tokenizers/gpt2) from its tiktoken vocabulary, offline.

    python -m analysis.gpt2_tokenizer [--source data/tokenizers/gpt2/source/gpt2.tiktoken] \
        [--output data/tokenizers/gpt2]

A thin CLI over analysis.tokenizers.gpt2_bpe (how the merges are recovered is told there).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli
from analysis.tokenizers.gpt2_bpe import OUTPUT, SOURCE, write_tokenizer


@cli
def main(argv: Sequence[str] | None = None) -> None:
    ap = Parser(prog="python -m analysis.gpt2_tokenizer", description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=SOURCE, help="GPT-2's gpt2.tiktoken")
    ap.add_argument("--output", type=Path, default=OUTPUT, help="folder to write tokenizer.json and its config to")
    args = ap.parse_args(argv)
    paths = write_tokenizer(args.source, args.output)  # a SourceError is an InputError: one line, exit 2
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)


if __name__ == "__main__":
    main()
