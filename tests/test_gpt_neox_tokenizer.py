"""GPT-NeoX-20B's tokenizer (Pythia's) shipped in data/tokenizers/gpt-neox: current, and equal to
Hugging Face's on the 47 reference strings.

The reference ids (source/tests.inp, tests.out) are llama.cpp's test vectors for this vocabulary,
made with Hugging Face's own GPT-NeoX-20B tokenizer: unicode, whitespace runs (which the 23 added
whitespace tokens encode), code, digits and emoji.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.tokenizers.gpt_neox_bpe import EOT, FILES, N_TOKENS, PAD, SOURCE_SHA256, write_tokenizer

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "data" / "tokenizers" / "gpt-neox"
SOURCE = FOLDER / "source" / "ggml-vocab-gpt-neox.gguf"
SEPARATOR = "\n__ggml_vocab_test__\n"


def write_foreign_gguf(path: Path, arch: str = "gpt2") -> None:
    """A well-formed vocabulary-only GGUF file of a tiny byte-pair vocabulary (not GPT-NeoX-20B's)."""
    import gguf

    writer = gguf.GGUFWriter(path, arch=arch)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([EOT, "a", "b", "ab"])
    writer.add_token_types([3, 1, 1, 1])
    writer.add_token_merges(["a b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def reference_vectors() -> list[tuple[str, list[int]]]:
    """The strings as llama.cpp splits tests.inp (the last, after the closing separator, is empty)
    and their ids, one line each in tests.out."""
    texts = (FOLDER / "source" / "tests.inp").read_text(encoding="utf-8").split(SEPARATOR)
    lines = (FOLDER / "source" / "tests.out").read_text(encoding="utf-8").split("\n")
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines, strict=True)]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(FOLDER, local_files_only=True)


def test_source_and_licences() -> None:
    assert hashlib.sha256(SOURCE.read_bytes()).hexdigest() == SOURCE_SHA256
    readme = (FOLDER / "SOURCE.md").read_text(encoding="utf-8")
    assert SOURCE_SHA256 in readme and "llama.cpp" in readme and "Apache" in readme
    assert (FOLDER / "source" / "LICENSE-llama.cpp").read_text(encoding="utf-8").startswith("MIT License")
    assert "Apache License" in (FOLDER / "source" / "LICENSE-gpt-neox").read_text(encoding="utf-8")[:200]


def test_committed_tokenizer_is_current(tmp_path: Path) -> None:
    """Rebuilding from the source gives the committed files byte for byte."""
    written = write_tokenizer(SOURCE, tmp_path)
    assert sorted(p.name for p in written) == sorted(FILES)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (FOLDER / name).read_bytes(), (
            f"{FOLDER / name} is stale: run python -m analysis.gpt_neox_tokenizer"
        )


def test_hello_world_and_special_ids(tokenizer) -> None:
    assert tokenizer("Hello world").input_ids == [12092, 1533]  # no BOS added
    assert tokenizer(" Hello world", add_special_tokens=False).input_ids == [24387, 1533]
    assert tokenizer.is_fast
    assert len(tokenizer) == N_TOKENS == 50277
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == tokenizer.unk_token_id == 0
    assert tokenizer.pad_token_id == 1 and tokenizer.convert_ids_to_tokens([0, 1]) == [EOT, PAD]
    assert tokenizer.model_max_length == 2048
    assert tokenizer(f"Thanks!{EOT} Next", add_special_tokens=False).input_ids.count(0) == 1


def test_reproduces_all_47_reference_vectors(tokenizer) -> None:
    vectors = reference_vectors()
    assert len(vectors) == 47
    assert sum(1 for _, ids in vectors if ids) == 45  # two are the empty string
    wrong = [(text, ids, tokenizer(text, add_special_tokens=False).input_ids) for text, ids in vectors
             if tokenizer(text, add_special_tokens=False).input_ids != ids]
    assert not wrong, wrong[:3]
    # decoding gives the text back (NFC-normal strings; every one here is)
    assert all(tokenizer.decode(ids) == text for text, ids in vectors)


def test_whitespace_runs_are_the_added_tokens(tokenizer) -> None:
    """24 spaces down to 2 are ids 50254..50276; a run of 25 is 24 + one."""
    for n in range(2, 25):
        assert tokenizer(" " * n + "x", add_special_tokens=False).input_ids[0] == 50254 + 24 - n
    assert tokenizer(" " * 25, add_special_tokens=False).input_ids == [50254, 209]


@pytest.mark.parametrize("kind", ["foreign", "cut", "tiktoken"])
def test_cli_rejects_a_source_that_is_not_gpt_neox_in_one_line(tmp_path: Path, kind: str) -> None:
    bad = tmp_path / "other.gguf"
    if kind == "foreign":
        write_foreign_gguf(bad)
        expect = f"error: tokenizer source {bad} is not GPT-NeoX-20B's vocabulary: its tokenizer model is 'gpt2' for architecture 'gpt2'"
    elif kind == "cut":
        bad.write_bytes(SOURCE.read_bytes()[:100_000])
        expect = f"error: tokenizer source {bad} is not a readable GGUF file"
    else:
        bad.write_bytes((REPO / "data" / "tokenizers" / "gpt2" / "source" / "gpt2.tiktoken").read_bytes())
        expect = f"error: tokenizer source {bad} is not a readable GGUF file"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.gpt_neox_tokenizer", "--source", str(bad), "--output", str(out)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(expect), proc.stderr
    assert not out.exists()


def test_a_gptneox_file_with_other_tokens_is_refused(tmp_path: Path) -> None:
    """The architecture says gptneox but the vocabulary is not the 50,432 entries of GPT-NeoX-20B."""
    from analysis.tokenizers.gpt_neox_bpe import SourceError, read_vocabulary

    bad = tmp_path / "neoxish.gguf"
    write_foreign_gguf(bad, arch="gptneox")
    with pytest.raises(SourceError, match="it has 4 tokens, 4 token types and 1 merges, not 50432, 50432 and 50009"):
        read_vocabulary(bad)
