"""GPT-NeoX-20B's tokenizer (Pythia's) as a Hugging Face fast tokenizer, built offline from a GGUF vocabulary.

The project ships llama.cpp's vocabulary-only GGUF file of GPT-NeoX-20B
(`data/tokenizers/gpt-neox/source/ggml-vocab-gpt-neox.gguf`: tokens, merges and token types, no
weights) and the tokenizer built from it (`data/tokenizers/gpt-neox/`, loadable with
`AutoTokenizer.from_pretrained(folder)`), so that alignment checks can use Pythia's real tokenizer
without the model hub.

Unlike GPT-2's .tiktoken, the GGUF file stores the merges themselves, so nothing is recovered:
the BPE takes ids 0..50253 and the 50,009 merges as they are, with NFC normalisation and the
byte-level pre-tokenizer (no prefix space), as Hugging Face's GPT-NeoX-20B tokenizer.json has them.
Ids 50254..50276 are whitespace runs (24 spaces down to 2) that GPT-NeoX added as tokens; they
are added here too (not special, normalised), which is what makes runs of spaces encode as Hugging
Face encodes them. Ids 50277.. are `[PADn]` fillers of the embedding matrix, not tokens: left out.

The command is `python -m analysis.gpt_neox_tokenizer` (a thin CLI over this module). Like the
GPT-2 builder, this module imports nothing from `analysis` but the one error type.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from analysis.base.errors import InputError
from analysis.tokenizers.files import save_tokenizer

FOLDER = Path("data/tokenizers/gpt-neox")
SOURCE = FOLDER / "source" / "ggml-vocab-gpt-neox.gguf"
OUTPUT = FOLDER
# sha256 of models/ggml-vocab-gpt-neox.gguf in llama.cpp (SOURCE.md), as shared/data/gpt-neox-bpe has it
SOURCE_SHA256 = "ae593a7f9b8bb174ed4f5019e41530463e4dac7aa06e42dee8aa650d2bdac53d"
EOT = "<|endoftext|>"  # id 0: BOS, EOS and UNK of GPT-NeoX-20B
PAD = "<|padding|>"  # id 1: GPT-NeoX's own padding token
N_BPE = 50254  # ids 0..50253: the two special tokens and the byte-level BPE vocabulary
N_TOKENS = 50277  # the tokenizer ends here: 23 whitespace tokens follow the BPE ids
N_ENTRIES = 50432  # entries in the GGUF file (the [PADn] fillers included)
N_MERGES = 50009
MODEL_MAX_LENGTH = 2048  # GPT-NeoX-20B's and Pythia's context length
# The files save_pretrained writes for this tokenizer; the rebuild check compares exactly these.
FILES = ("tokenizer.json", "tokenizer_config.json")
# llama.cpp's token types (gguf.TokenType): what each id range must be for this to be GPT-NeoX's file
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4


class SourceError(InputError):
    """The source vocabulary is missing or is not GPT-NeoX-20B's; the message is one line."""


def _fields(path: Path) -> dict[str, Any]:
    """The GGUF key-value fields (tokenizer.ggml.* and general.*) as Python values."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        return {name: field.contents() for name, field in reader.fields.items()}
    except (ValueError, OSError, KeyError, IndexError, TypeError) as err:
        # gguf raises ValueError for a wrong magic or version, numpy/struct errors for a cut file
        raise SourceError(f"tokenizer source {path} is not a readable GGUF file ({type(err).__name__})") from None


def read_vocabulary(path: Path) -> tuple[list[str], list[str]]:
    """The BPE tokens (ids 0..N_TOKENS-1) and merges of GPT-NeoX-20B from its GGUF file.

    Checked to be GPT-NeoX-20B's by its content first (so that a foreign file is named for what it
    is) and then by sha256 (so that the build is of exactly the committed vocabulary).
    """
    if not path.is_file():
        raise SourceError(f"tokenizer source {path} does not exist")
    fields = _fields(path)
    not_neox = f"tokenizer source {path} is not GPT-NeoX-20B's vocabulary"
    model, arch = fields.get("tokenizer.ggml.model"), fields.get("general.architecture")
    if model != "gpt2" or arch != "gptneox":
        raise SourceError(f"{not_neox}: its tokenizer model is {model!r} for architecture {arch!r}, not 'gpt2' for 'gptneox'")
    tokens, types, merges = (fields.get(f"tokenizer.ggml.{k}") or [] for k in ("tokens", "token_type", "merges"))
    if (len(tokens), len(types), len(merges)) != (N_ENTRIES, N_ENTRIES, N_MERGES):
        raise SourceError(
            f"{not_neox}: it has {len(tokens)} tokens, {len(types)} token types and {len(merges)} merges, "
            f"not {N_ENTRIES}, {N_ENTRIES} and {N_MERGES}"
        )
    whitespace = [" " * n for n in range(24, 1, -1)]
    expected_types = [CONTROL] * 2 + [NORMAL] * (N_BPE - 2) + [USER_DEFINED] * (N_ENTRIES - N_BPE)
    if tokens[:2] != [EOT, PAD] or tokens[N_BPE:N_TOKENS] != whitespace or list(types) != expected_types:
        raise SourceError(f"{not_neox}: ids 0, 1 and {N_BPE}..{N_TOKENS - 1} are not {EOT}, {PAD} and the 23 whitespace runs")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise SourceError(f"tokenizer source {path} has sha256 {digest}, not GPT-NeoX-20B's {SOURCE_SHA256}")
    return list(tokens[:N_TOKENS]), list(merges)


def build_tokenizer(tokens: list[str], merges: list[str]) -> Any:
    """transformers' GPTNeoXTokenizer over the BPE ids, with the whitespace tokens added.

    EOT (0) is BOS, EOS and UNK and `<|padding|>` (1) is PAD, as in GPT-NeoX-20B's tokenizer
    config; no BOS is added when encoding (the stages prepend it), no prefix space.
    """
    from tokenizers import AddedToken
    from transformers import GPTNeoXTokenizer

    vocab = {token: i for i, token in enumerate(tokens[:N_BPE])}
    tok = GPTNeoXTokenizer(
        vocab=vocab,
        merges=[tuple(m.split(" ")) for m in merges],
        unk_token=EOT,
        bos_token=EOT,
        eos_token=EOT,
        pad_token=PAD,
        add_prefix_space=False,
        add_bos_token=False,
        add_eos_token=False,
        model_max_length=MODEL_MAX_LENGTH,
    )
    # Hugging Face's tokenizer.json lists the whitespace runs as added tokens (normalized, not special)
    tok.add_tokens([AddedToken(t, normalized=True, special=False) for t in tokens[N_BPE:]])
    ids = [tok.convert_tokens_to_ids(t) for t in tokens]
    if len(tok) != N_TOKENS or ids != list(range(N_TOKENS)):
        wrong = next(i for i, got in enumerate(ids) if got != i) if ids != list(range(N_TOKENS)) else None
        raise SourceError(f"the built tokenizer has {len(tok)} ids (want {N_TOKENS}); first misplaced id: {wrong}")
    return tok


def write_tokenizer(source: Path, output: Path) -> list[Path]:
    """Build from `source` and replace FILES in `output` atomically (other files there are kept)."""
    return save_tokenizer(build_tokenizer(*read_vocabulary(source)), output, FILES, "gpt-neox-tokenizer")
