"""Stage `prepare_prompts`: validate a prompt profile and write it as one prepared JSON file.

Later stages read the pairs from this file, so a broken profile fails here, once, with one line.
The file records a sha256 of every source file (so a changed prompt set is visible in a diff) and,
per tokenizer given, how many pairs have equal token length (only those can be patched at `all`
positions).

    python -m analysis.prepare_prompts --profile baseline --output results/baseline/prompts.json \
        [--emotions gratitude anger apology] [--tokenizer NAME_OR_PATH ...]
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.errors import InputError, cli
from analysis.io import check_output_path, write_json
from analysis.prompts import EMOTIONS, NEUTRAL, PROMPTS_ROOT, PromptPairs, equal_length_pairs, load_pairs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SCHEMA = "emotion-heads/prompts/v1"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Load a tokenizer offline; one that is neither a local folder nor cached is an InputError."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception as err:  # transformers raises OSError, ValueError, ... depending on the case
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            f"tokenizer {name!r} cannot be loaded offline (not a local folder and not in the Hugging "
            f"Face cache; download it where a network is available, or use a local path): {reason}"
        ) from None


def _pair_records(pairs: PromptPairs) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "emotion_text": e.text,
            "emotion_span": list(e.span),
            "neutral_text": n.text,
            "neutral_span": list(n.span),
        }
        for i, (e, n) in enumerate(zip(pairs.emotion_prompts, pairs.neutral_prompts, strict=True))
    ]


def prepare(
    profile: str,
    emotions: Sequence[str] = EMOTIONS,
    tokenizers: dict[str, PreTrainedTokenizerBase] | None = None,
    *,
    root: Path = PROMPTS_ROOT,
) -> dict[str, Any]:
    """Validate every requested emotion of `profile` and build the prepared document."""
    if not emotions:
        raise InputError("no emotions given")
    if len(set(emotions)) != len(emotions):
        raise InputError(f"emotion listed twice in {list(emotions)}")
    all_pairs = {e: load_pairs(e, profile, root=root) for e in emotions}
    sizes = {len(p) for p in all_pairs.values()}
    if len(sizes) != 1:  # cannot happen with one neutral file, kept as a guard
        raise InputError(f"profile {profile!r}: emotions have different pair counts {sorted(sizes)}")
    folder = Path(root) / profile
    sources = {
        name: {"path": (folder / f"{name}.txt").as_posix(), "sha256": sha256_file(folder / f"{name}.txt")}
        for name in (*emotions, NEUTRAL)
    }
    alignment = {
        tok_name: {
            e: {"n_pairs": len(p), "n_equal_length": equal_length_pairs(tok, p)} for e, p in all_pairs.items()
        }
        for tok_name, tok in (tokenizers or {}).items()
    }
    return {
        "schema": SCHEMA,
        "profile": profile,
        "emotions": list(emotions),
        "n_pairs": sizes.pop(),
        "pairs": {e: _pair_records(p) for e, p in all_pairs.items()},
        "sources": sources,
        "token_alignment": alignment,
        "params": {"profile": profile, "emotions": list(emotions), "tokenizers": list(tokenizers or {})},
    }


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one InputError line, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m analysis.prepare_prompts", description=__doc__.splitlines()[0])
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


@cli
def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point: parse, validate everything, then write one file atomically."""
    args = _parser().parse_args(argv)
    check_output_path(args.output, suffix=".json", inputs=[Path(args.prompts_root) / args.profile])
    for e in args.emotions:
        if e not in EMOTIONS:
            raise InputError(f"unknown emotion {e!r}; allowed: {', '.join(EMOTIONS)}")
    tokenizers = {name: load_tokenizer(name) for name in dict.fromkeys(args.tokenizers)}
    doc = prepare(args.profile, args.emotions, tokenizers, root=Path(args.prompts_root))
    write_json(args.output, doc)


if __name__ == "__main__":
    main()
