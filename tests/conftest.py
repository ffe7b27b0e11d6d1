"""Shared fixtures: a small tokenizer and random-weight models of every supported family.

Everything is built locally in a session temp folder: tests never touch the network.
"""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from analysis.random_models import build_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(out, CORPUS, vocab_size=400)
    return out


@pytest.fixture(scope="session")
def random_model_dirs(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> dict[str, Path]:
    """One small random model per family: 2 layers x 4 heads, d_model 64, non-zero biases."""
    from analysis.random_models import FAMILIES, save_random_model

    root = tmp_path_factory.mktemp("random_models")
    return {f: save_random_model(f, root / f, tokenizer_dir=tokenizer_dir, seed=1) for f in FAMILIES}


@pytest.fixture(scope="session")
def chdir_repo() -> Path:
    os.chdir(REPO)
    return REPO
