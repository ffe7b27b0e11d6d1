"""GPT-2's tokenizer as a Hugging Face fast tokenizer, built offline from its tiktoken vocabulary.

The project ships GPT-2's byte-pair vocabulary (`data/tokenizers/gpt2/source/gpt2.tiktoken`: one
base64 byte sequence and its rank per line; rank = GPT-2 token id) and the tokenizer built from it
(`data/tokenizers/gpt2/`, loadable with `AutoTokenizer.from_pretrained(folder)`), so that
alignment and lexicon checks can use GPT-2's real tokenizer without the model hub.

A .tiktoken file stores ranks, not merges. Hugging Face's BPE needs the merges, recovered here:
the merge that creates token t (rank r) is the pair left after running byte-pair merging on t's
own bytes with only the ranks below r allowed, which is how tiktoken would have built t.

The command is `python -m analysis.gpt2_tokenizer` (a thin CLI over this module). This module
imports nothing from `analysis` but the one error type and the tokenizer room's atomic file writer
(shared with the GPT-NeoX builder): a data-building tool that runs (and is checked) on its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import Any

from analysis.base.errors import InputError
from analysis.tokenizers.files import save_tokenizer

SOURCE = Path("data/tokenizers/gpt2/source/gpt2.tiktoken")
OUTPUT = Path("data/tokenizers/gpt2")
# sha256 of whisper/assets/gpt2.tiktoken in the PyPI sdist openai-whisper==20250625 (SOURCE.md)
SOURCE_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
EOT = "<|endoftext|>"
N_RANKS = 50256  # byte sequences in GPT-2's vocabulary; EOT follows them as id 50256
MODEL_MAX_LENGTH = 1024  # GPT-2's n_positions
# The files save_pretrained writes for this tokenizer; the rebuild check compares exactly these.
FILES = ("tokenizer.json", "tokenizer_config.json")


class SourceError(InputError):
    """The source vocabulary is missing or is not GPT-2's; the message is one line."""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (the alphabet of byte-level BPE vocabularies).

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100 onwards, in
    byte order, so every byte sequence has a unique string of visible characters.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def read_ranks(path: Path) -> dict[bytes, int]:
    """Byte sequence -> rank from a .tiktoken file; checked to be GPT-2's (by sha256 and shape)."""
    if not path.is_file():
        raise SourceError(f"tokenizer source {path} does not exist")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        raise SourceError(f"tokenizer source {path} has sha256 {digest}, not GPT-2's {SOURCE_SHA256}")
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise SourceError(f"{path}:{number}: not a 'base64 rank' line") from None
    if sorted(ranks.values()) != list(range(N_RANKS)) or any(bytes([b]) not in ranks for b in range(256)):
        raise SourceError(f"{path}: ranks are not 0..{N_RANKS - 1} with every single byte present")
    return ranks


def _split(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two parts byte-pair merging leaves of `token` when only ranks below its own may merge."""
    limit = ranks[token]
    parts = [token[i : i + 1] for i in range(len(token))]
    while True:
        best: tuple[int, int] | None = None  # (rank, index) of the lowest-rank mergeable pair
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < limit and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise SourceError(f"token {token!r} (rank {limit}) is not one merge of two lower-ranked tokens")
    return parts[0], parts[1]


def vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Hugging Face BPE vocabulary (byte-level strings -> id) and merges in priority (= rank) order."""
    alphabet = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(alphabet[x] for x in b)

    vocab = {text(b): r for b, r in ranks.items()}
    merges = [
        (text(left), text(right))
        for left, right in (_split(b, ranks) for b in sorted((b for b in ranks if len(b) > 1), key=ranks.__getitem__))
    ]
    return vocab, merges


def build_tokenizer(ranks: dict[bytes, int]) -> Any:
    """GPT-2's tokenizer as transformers' fast GPT-2 tokenizer; EOT is BOS, EOS, UNK and PAD (50256)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import GPT2TokenizerFast

    vocab, merges = vocab_and_merges(ranks)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    # ByteLevel's built-in split regex is GPT-2's pre-tokenizer pattern; GPT-2 adds no prefix space.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
    if tok.token_to_id(EOT) != N_RANKS:
        raise SourceError(f"{EOT} got id {tok.token_to_id(EOT)}, not GPT-2's {N_RANKS}")
    # GPT-2 has no pad token; the pipeline left-pads, and 50256 is what GPT-2 users pad with.
    return GPT2TokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=EOT,
        add_bos_token=False,  # stages prepend BOS themselves
        add_prefix_space=False,
        model_max_length=MODEL_MAX_LENGTH,
    )


def write_tokenizer(source: Path, output: Path) -> list[Path]:
    """Build from `source` and replace FILES in `output` atomically (other files there are kept)."""
    return save_tokenizer(build_tokenizer(read_ranks(source)), output, FILES, "gpt2-tokenizer")
