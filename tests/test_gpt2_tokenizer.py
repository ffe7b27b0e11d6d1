"""GPT-2's tokenizer shipped in data/tokenizers/gpt2: current, and token for token equal to tiktoken.

The reference is tiktoken's own BPE (a separate implementation, in Rust) on the same vocabulary,
loaded from the committed .tiktoken file with GPT-2's pattern: never `tiktoken.get_encoding`,
which downloads.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analysis.tokenizers.gpt2_bpe import EOT, FILES, SOURCE_SHA256, write_tokenizer

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "data" / "tokenizers" / "gpt2"
SOURCE = FOLDER / "source" / "gpt2.tiktoken"
GPT2_EOT_ID = 50256


@pytest.fixture(scope="module")
def reference():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's pattern (a constant, no download)

    return tiktoken.Encoding(
        name="gpt2-local",
        pat_str=r50k_pat_str,
        mergeable_ranks=load_tiktoken_bpe(str(SOURCE), expected_hash=SOURCE_SHA256),
        special_tokens={EOT: GPT2_EOT_ID},
        explicit_n_vocab=GPT2_EOT_ID + 1,
    )


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(FOLDER, local_files_only=True)


def project_texts() -> list[str]:
    """Every prompt line (as written and with its brackets removed), lexicon line and continuation."""
    texts: list[str] = []
    for path in sorted((REPO / "data" / "prompts").glob("*/*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            texts += [line, line.replace("[", "").replace("]", "")]
    for path in sorted((REPO / "data" / "lexicons").glob("*.txt")):
        texts += path.read_text(encoding="utf-8").splitlines()
    bank = yaml.safe_load((REPO / "data" / "toy" / "continuations.yaml").read_text(encoding="utf-8"))
    texts += [t for key, value in bank.items() if key != "schema" for t in value]
    return texts


def test_source_is_gpt2s_vocabulary() -> None:
    assert hashlib.sha256(SOURCE.read_bytes()).hexdigest() == SOURCE_SHA256
    assert len(SOURCE.read_bytes().splitlines()) == GPT2_EOT_ID
    readme = (FOLDER / "SOURCE.md").read_text(encoding="utf-8")
    assert SOURCE_SHA256 in readme and "openai-whisper==20250625" in readme
    assert (FOLDER / "source" / "LICENSE-whisper").read_text(encoding="utf-8").startswith("MIT License")


def test_committed_tokenizer_is_current(tmp_path: Path) -> None:
    """Rebuilding from the source gives the committed files byte for byte."""
    written = write_tokenizer(SOURCE, tmp_path)
    assert sorted(p.name for p in written) == sorted(FILES)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (FOLDER / name).read_bytes(), (
            f"{FOLDER / name} is stale: run python -m analysis.gpt2_tokenizer"
        )


def test_known_encoding_and_special_ids(tokenizer, reference) -> None:
    # GPT-2's published encoding of this string (the shared README checked it with tiktoken).
    assert tokenizer("Hello world, the", add_special_tokens=False).input_ids == [15496, 995, 11, 262]
    assert tokenizer("Hello world, the").input_ids == [15496, 995, 11, 262]  # no BOS added
    assert tokenizer.is_fast
    assert len(tokenizer) == GPT2_EOT_ID + 1 == reference.n_vocab
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == tokenizer.pad_token_id == GPT2_EOT_ID
    assert tokenizer.unk_token_id == GPT2_EOT_ID == reference.eot_token
    assert tokenizer.convert_tokens_to_ids(EOT) == GPT2_EOT_ID
    assert tokenizer.model_max_length == 1024


def test_every_id_decodes_as_tiktoken_does(tokenizer, reference) -> None:
    """All 50,257 ids: the same string for each (invalid UTF-8 pieces replaced the same way)."""
    ids = list(range(GPT2_EOT_ID + 1))
    ours = tokenizer.batch_decode([[i] for i in ids])
    theirs = [reference.decode([i]) for i in ids]
    assert ours == theirs


def test_matches_tiktoken_on_every_project_line(tokenizer, reference) -> None:
    texts = project_texts()
    assert len(texts) > 2000  # prompts of both profiles, lexicons and continuations were all read
    variants = [v for t in texts for v in (t, " " + t)]
    ours = tokenizer(variants, add_special_tokens=False).input_ids
    mismatches = [(v, o, reference.encode_ordinary(v)) for v, o in zip(variants, ours, strict=True)
                  if o != reference.encode_ordinary(v)]
    assert not mismatches, mismatches[:3]


def test_eot_text_is_the_special_token(tokenizer, reference) -> None:
    text = f"Thanks!{EOT} Next"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids == reference.encode(text, allowed_special={EOT})
    assert ids.count(GPT2_EOT_ID) == 1


def test_cli_rejects_a_foreign_source_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "other.tiktoken"
    bad.write_bytes(SOURCE.read_bytes()[:-20])
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.gpt2_tokenizer", "--source", str(bad), "--output", str(out)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: tokenizer source {bad} has sha256 ")
    assert not out.exists()
