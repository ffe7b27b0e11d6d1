"""Stage `prepare_prompts`: check a profile's prompt pairs into results/<profile>/prompts.json."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli
from analysis.core.loading import resolve_model_path, TOY
from analysis.core.prompt_table import load_tokenizer, prepare
from analysis.core.prompts import PROMPTS_ROOT
from analysis.base.vocabulary import EMOTIONS
from analysis.base.errors import InputError
from analysis.base.contract import check_output, PROMPTS_SCHEMA, write_prompts


def _parser() -> argparse.ArgumentParser:
    ap = Parser(prog="python -m analysis.prepare_prompts", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="baseline", help="prompt profile: a folder under --prompts-root")
    ap.add_argument("--emotions", nargs="+", default=list(EMOTIONS), help=f"subset of {' '.join(EMOTIONS)}")
    ap.add_argument("--output", required=True, help="prepared JSON file to write")
    ap.add_argument(
        "--tokenizer",
        dest="tokenizers",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME_OR_PATH",
        help="tokenizer(s) to report token alignment for (loaded offline)",
    )
    ap.add_argument("--prompts-root", default=str(PROMPTS_ROOT), help="folder holding the profiles")
    return ap


def report(doc: dict) -> str:
    """Per tokenizer (model): pairs aligned per emotion, and each lexicon word without a
    single-token form (dropped from M and the keyword counts alike), one line each."""
    lines = [f"{doc['profile']}: {doc['n_pairs']} pairs per emotion ({', '.join(doc['emotions'])})"]
    for tok, per_emotion in doc["token_alignment"].items():
        for e, a in per_emotion.items():
            lines.append(f"{tok}: {e}: {a['n_equal_length']}/{a['n_pairs']} pairs aligned (equal token length)")
        for name, lex in doc["lexicon_words"][tok].items():
            lines.append(f"{tok}: lexicon {name}: {lex['n_single_token']}/{lex['n_words']} words have a single-token form")
            lines += [f"{tok}: lexicon {name}: dropped {w!r} (no single-token form; left out of M and the keyword counts)" for w in lex["dropped"]]
    return "\n".join(lines)


@cli
def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point: parse, check everything, then write one file atomically."""
    args = _parser().parse_args(argv)
    # toy names the model folder; any other tokenizer is a folder of its own (tokenizer.json, no config needed)
    tokenizer_dirs = [Path(resolve_model_path(t)) if t == TOY else Path(t) for t in args.tokenizers if t == TOY or Path(t).is_dir()]
    check_output(args.output, PROMPTS_SCHEMA, inputs=[Path(args.prompts_root) / args.profile, *tokenizer_dirs])
    for e in args.emotions:
        if e not in EMOTIONS:
            raise InputError(f"unknown emotion {e!r}; allowed: {', '.join(EMOTIONS)}")
    tokenizers = {name: load_tokenizer(name) for name in dict.fromkeys(args.tokenizers)}
    doc = prepare(args.profile, args.emotions, tokenizers, root=Path(args.prompts_root))
    write_prompts(args.output, doc)
    print(report(doc))


if __name__ == "__main__":
    main()
