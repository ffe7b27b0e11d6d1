"""A GPT-2-small-architecture model with random weights: the FLOPs of GPT-2, no download."""

from __future__ import annotations

import statistics
import subprocess
import sys
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
    from analysis.modelfacts.random_weights import save_random_model

    return save_random_model(
        "gpt2", tmp_path_factory.mktemp("gpt2-small") / "m", tokenizer_dir=tokenizer_dir,
        n_layers=12, n_heads=12, d_model=768, vocab_size=50257, n_ctx=1024, seed=0,
    )



# The peak RSS of a child process, from the child itself. ru_maxrss cannot be used: Linux carries
# the forking pytest process's high-water mark (gigabytes, once a benchmark has loaded GPT-2)
# into the child across exec. VmHWM belongs to the child's own address space.
REPORT_PEAK = (
    "import atexit, sys; atexit.register(lambda: print('VmHWM', next(l.split()[1] for l in "
    "open('/proc/self/status') if l.startswith('VmHWM:')), file=sys.stderr))\n"
)


@pytest.fixture(scope="session")
def run_measured() -> Callable[..., tuple[subprocess.CompletedProcess[str], float]]:
    """`run(code, *args, cwd=...)`: `python -c code args` in a fresh process; (result, its peak RSS in GiB)."""

    def run(code: str, *args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
        r = subprocess.run([sys.executable, "-c", REPORT_PEAK + code, *args], cwd=cwd, capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, r.stderr
        kib = [int(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("VmHWM ")]
        assert kib, "the child printed no VmHWM line"
        return r, kib[-1] / 1024**2

    return run
