"""The prepared profile: check a prompt profile into one JSON file, and read the pairs back from it.

Later stages read the pairs from this file (`stage_pairs`), so a broken profile fails here, once, with one line.
The file records a sha256 of every source file (so a changed prompt set is visible in a diff) and,
per tokenizer given, how many pairs have equal token length (only those can be patched at `all`
positions).

    python -m analysis.prepare_prompts --profile baseline --output results/baseline/prompts.json \
        [--emotions gratitude anger apology] [--tokenizer NAME_OR_PATH ...]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.base.contract import PROMPTS_SCHEMA, prompts_file, read_prompts
from analysis.core.prompts import (
    equal_length_pairs, lexicon_word_ids, LEXICONS_ROOT, load_lexicon, load_pairs, Prompt, PromptPairs, PROMPTS_ROOT,
    twin_file, twin_file_name,
)
from analysis.core.twins import check_matched
from analysis.base.vocabulary import EMOTIONS, NEUTRAL
from analysis.base.errors import InputError
if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase




def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Load a tokenizer offline; one that is neither a local folder nor cached is an InputError."""
    from transformers import AutoTokenizer

    from analysis.core.loading import resolve_model_path, TOY

    path = resolve_model_path(name) if name == TOY else name  # `toy` names the built embedded model's folder
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as err:  # transformers raises OSError, ValueError, ... depending on the case
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            f"tokenizer {name!r} cannot be loaded offline (not a local folder and not in the Hugging "
            f"Face cache; download it where a network is available, or use a local path): {reason}"
        ) from None


def lexicon_report(
    tok_name: str, tokenizer: PreTrainedTokenizerBase, emotions: Sequence[str] = EMOTIONS
) -> dict[str, dict[str, Any]]:
    """Per lexicon: how many words it has and which have no single-token form under `tokenizer`
    (M and the keyword counts both leave those out). A lexicon with none left is an InputError."""
    out: dict[str, dict[str, Any]] = {}
    for name in (*emotions, NEUTRAL):
        words = load_lexicon(name)
        kept = lexicon_word_ids(tokenizer, words)
        if not kept:
            raise InputError(
                f"lexicon {LEXICONS_ROOT / name}.txt has no word with a single-token form under tokenizer {tok_name}; "
                f"the score M and the keyword counts need at least one"
            )
        out[name] = {"n_words": len(words), "n_single_token": len(kept), "dropped": [w for w in words if w not in kept]}
    return out


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
    """Check every requested emotion of `profile` and build the prepared document."""
    if not emotions:
        raise InputError("no emotions given")
    if len(set(emotions)) != len(emotions):
        raise InputError(f"emotion listed twice in {list(emotions)}")
    all_pairs = {e: load_pairs(e, profile, root=root) for e in emotions}
    sizes = {len(p) for p in all_pairs.values()}
    if len(sizes) != 1:  # cannot happen with one neutral file, kept as a guard
        raise InputError(f"profile {profile!r}: emotions have different pair counts {sorted(sizes)}")
    for e, p in all_pairs.items():  # twins that differ from their emotion spans in more than emotion stop here
        check_matched(e, [x.span_text for x in p.emotion_prompts], [x.span_text for x in p.neutral_prompts], p.origin)
    folder = Path(root) / profile
    # the twins' file per emotion: its own <emotion>.neutral.txt, or the shared neutral.txt
    files = {e: folder / f"{e}.txt" for e in emotions}
    for e in emotions:
        twins = twin_file(e, profile, root)
        files[twin_source(e, twins)] = twins
    sources = {name: {"path": f.as_posix(), "sha256": sha256_file(f)} for name, f in files.items()}
    lexicons = {tok_name: lexicon_report(tok_name, tok, emotions) for tok_name, tok in (tokenizers or {}).items()}
    alignment = {
        tok_name: {
            e: {"n_pairs": len(p), "n_equal_length": equal_length_pairs(tok, p)} for e, p in all_pairs.items()
        }
        for tok_name, tok in (tokenizers or {}).items()
    }
    return {
        "schema": PROMPTS_SCHEMA,
        "profile": profile,
        "emotions": list(emotions),
        "n_pairs": sizes.pop(),
        "pairs": {e: _pair_records(p) for e, p in all_pairs.items()},
        "sources": sources,
        "token_alignment": alignment,
        "lexicon_words": lexicons,
        "params": {"profile": profile, "emotions": list(emotions), "tokenizers": list(tokenizers or {})},
    }


def twin_source(emotion: str, twins: Path) -> str:
    """The `sources` key of an emotion's twins: `<emotion>.neutral` for its own file, else `neutral`."""
    return twin_file_name(emotion) if twins.name == f"{twin_file_name(emotion)}.txt" else NEUTRAL


def twin_key(emotion: str, sources: dict[str, Any]) -> str:
    """Which `sources` entry of a prepared document holds `emotion`'s twins."""
    return twin_file_name(emotion) if twin_file_name(emotion) in sources else NEUTRAL


def _from_records(emotion: str, records: list[dict[str, Any]], sources: dict[str, Any]) -> PromptPairs:
    def prompt(r: dict[str, Any], side: str, name: str) -> Prompt:
        return Prompt(r[f"{side}_text"], tuple(r[f"{side}_span"]), source=f"{sources[name]['path']}:{r['index'] + 1}")

    return PromptPairs(
        emotion=emotion,
        emotion_prompts=tuple(prompt(r, "emotion", emotion) for r in records),
        neutral_prompts=tuple(prompt(r, "neutral", twin_key(emotion, sources)) for r in records),
    )


def stage_pairs(
    emotion: str, profile: str, *, emotion_file: Path | None = None, neutral_file: Path | None = None
) -> PromptPairs:
    """The pairs a stage runs on: from results/<profile>/prompts.json, the prepared profile.

    The file is the input (not a by-product): its pairs were checked once, by
    `prepare_prompts`, and its sha256 of each source file must match the file on disk, or the
    stage stops (one line) instead of running on a profile nobody checked. Explicit prompt
    files, or a profile that was never prepared (ad-hoc runs of the seed commands), are read
    and checked from data/prompts directly.
    """
    path = prompts_file(profile)
    if emotion_file is not None or neutral_file is not None or not path.is_file():
        return load_pairs(emotion, profile, emotion_file=emotion_file, neutral_file=neutral_file)
    doc = read_prompts(path)
    if emotion not in doc["pairs"]:
        return load_pairs(emotion, profile)  # prepared for other emotions only: check here
    for name in (emotion, twin_key(emotion, doc["sources"])):
        src = doc["sources"][name]
        if not Path(src["path"]).is_file() or sha256_file(Path(src["path"])) != src["sha256"]:
            raise InputError(
                f"{path} is stale: {src['path']} changed after it was prepared; rerun "
                f"`python -m analysis.prepare_prompts --profile {profile} --output {path}` (or `dvc repro prepare_prompts`)"
            )
    return _from_records(emotion, doc["pairs"][emotion], doc["sources"])
