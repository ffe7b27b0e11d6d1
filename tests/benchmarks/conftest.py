"""A GPT-2-small-architecture model with random weights: the FLOPs of GPT-2, no download."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

Timer = Callable[..., dict[str, float]]


def _median_times(fns: dict[str, Callable[[], object]], repeats: int = 3) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved, so drift in machine load hits all alike
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


@pytest.fixture(scope="session")
def median_times() -> Timer:
    """Median wall time per named function over interleaved repeats (ratios, not bare times)."""
    return _median_times


@pytest.fixture(scope="session")
def gpt2_small_random(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    from analysis.random_models import save_random_model

    return save_random_model(
        "gpt2", tmp_path_factory.mktemp("gpt2-small") / "m", tokenizer_dir=tokenizer_dir,
        n_layers=12, n_heads=12, d_model=768, vocab_size=50257, n_ctx=1024, seed=0,
    )
