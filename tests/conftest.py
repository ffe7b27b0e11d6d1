"""Shared fixtures: a small tokenizer and random-weight models of every supported family.

Everything is built locally in a session temp folder: tests never touch the network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
torch.use_deterministic_algorithms(True)

REPO = Path(__file__).resolve().parents[1]

CORPUS = [
    "Thank you so much for your help with the report yesterday.",
    "I am furious about this delay and the missing invoice.",
    "I am so sorry for the trouble with the schedule.",
    "The meeting is at noon in the small room on the second floor.",
    "Hi Maria, I read your message this morning and I just wanted to say that",
    "Dear team, please find the agenda attached, and honestly the weather is fine.",
] * 20


def _project_corpus() -> list[str]:
    """The baseline prompts and every lexicon word (so each becomes a single token)."""
    texts = list(CORPUS)
    for f in sorted((REPO / "data/prompts/baseline").glob("*.txt")):
        texts += [line.replace("[", "").replace("]", "") for line in f.read_text().splitlines()]
    for f in sorted((REPO / "data/lexicons").glob("*.txt")):
        words = [w for w in f.read_text().split() if not w.startswith("#") and w.isalpha()]
        texts += [f" {w} {w.capitalize()}" for w in words] * 5
    return texts


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from analysis.modelfacts.random_weights import build_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(out, _project_corpus(), vocab_size=2048)  # >= the corpus: every word one token
    return out


@pytest.fixture(scope="session")
def random_model_dirs(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> dict[str, Path]:
    """One small random model per family: 2 layers x 4 heads, d_model 64, non-zero biases."""
    from analysis.modelfacts.families import SUPPORTED_FAMILIES as FAMILIES
    from analysis.modelfacts.random_weights import save_random_model

    root = tmp_path_factory.mktemp("random_models")
    return {f: save_random_model(f, root / f, tokenizer_dir=tokenizer_dir, seed=1) for f in FAMILIES}


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run as fast on one thread, and several times faster on a shared 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def chdir_repo() -> Path:
    os.chdir(REPO)
    return REPO


@pytest.fixture(scope="session")
def toy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded ground-truth model: the pipeline's copy, or one built here (same seed)."""
    built = REPO / "results/models/toy"
    if (built / "planted.json").is_file():
        return built
    from analysis.embedded.construction import ToyConfig
    from analysis.embedded.build import build_toy_model

    os.chdir(REPO)
    return build_toy_model(ToyConfig(), tmp_path_factory.mktemp("toy") / "toy")
