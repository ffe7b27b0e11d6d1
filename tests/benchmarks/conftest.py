"""A GPT-2-small-architecture model with random weights: the FLOPs of GPT-2, no download."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gpt2_small_random(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    from analysis.random_models import save_random_model

    return save_random_model(
        "gpt2", tmp_path_factory.mktemp("gpt2-small") / "m", tokenizer_dir=tokenizer_dir,
        n_layers=12, n_heads=12, d_model=768, vocab_size=50257, n_ctx=1024, seed=0,
    )
