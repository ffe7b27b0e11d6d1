"""The exact fast path with several sites per forward against one site per forward, on the CPU.

Every head of the model and one emotion's 70 baseline pairs (positions `all`), timed interleaved
in the same process (median of repeats): the unbatched path (`batch=1`, one patched forward per
site as before batching) is the baseline, and the ratio is batched time / unbatched time (< 1:
batching is faster), at fixed sites per forward and at what memory_budget_gb: auto gives on the
CPU. The numbers must agree within 1e-5 whatever the batch.
Run: pytest -m benchmark -s tests/benchmarks/test_exact_batching.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis.core.loading import load_model
from analysis.core.prompts import load_pairs
from analysis.core.sites import head_sites
from analysis.interventions.exact import exact_patching_sites, plain_hf, sites_per_forward
from analysis.measures.metrics import lexicon_ids
from analysis.screening.common import pair_batches, unchanged_prefix
from analysis.screening.heads import _z_names
from analysis.interventions.edits import capture

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def gpt2_reduced(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """GPT-2's vocabulary and width per head, 6 layers x 8 heads x 512: a reduced GPT-2."""
    from analysis.modelfacts.random_weights import save_random_model

    return save_random_model("gpt2", tmp_path_factory.mktemp("gpt2-reduced") / "m", tokenizer_dir=tokenizer_dir,
                             n_layers=6, n_heads=8, d_model=512, vocab_size=50257, n_ctx=1024, seed=0)


def _ratios(model_dir: str, median_times, batches: tuple[int, ...], repeats: int) -> dict[int, float]:  # noqa: ANN001
    model = load_model(model_dir)
    emotion = "gratitude"
    pb = pair_batches(model, load_pairs(emotion, "baseline"), "all", max_unaligned_share=0.0)
    lex = lexicon_ids(model.tokenizer)
    ids = (lex[emotion], lex["neutral"])
    with torch.no_grad():
        z = capture(model, pb.emotion, _z_names(model))
    spec = model.spec
    sites = head_sites((layer, h) for layer in range(spec.n_layers) for h in range(spec.n_heads))
    prefix = unchanged_prefix(pb)
    out: dict[int, dict] = {}

    def run(k: int):  # noqa: ANN202
        def fn() -> None:
            out[k] = exact_patching_sites(model, pb.neutral, z, pb.idx, pb.mask, prefix, sites, ids, batch=k)

        return fn

    rows, width = pb.neutral.input_ids.shape
    # sites per forward that memory_budget_gb: auto gives, and at most a layer's heads (what runs)
    auto = min(sites_per_forward(model, plain_hf(model), rows, width - prefix, width), spec.n_heads)
    batches = tuple(dict.fromkeys(min(k, spec.n_heads) for k in (*batches, auto)))
    t = median_times({f"batch {k}": run(k) for k in (1, *batches)}, repeats=repeats)
    worst = max(float((out[k][s] - out[1][s]).abs().max()) for k in batches for s in sites)
    print(f"\n{model_dir}: {len(sites)} heads, {rows} prompts x {width} tokens (prefix {prefix}); "
          f"one site per forward {t['batch 1']:.2f} s")
    ratios = {k: t[f"batch {k}"] / t["batch 1"] for k in batches}
    for k, r in ratios.items():
        label = f" (auto, {model.precision.budget_bytes / 1e9:g} GB)" if k == auto else ""
        print(f"  {k} sites per forward{label}: {t[f'batch {k}']:.2f} s, ratio batched / unbatched = {r:.2f}")
    print(f"  max |difference| to one site per forward = {worst:.2e}")
    assert worst <= 1e-5
    return ratios


def test_batching_on_the_toy(toy_path: Path, median_times) -> None:  # noqa: ANN001
    _ratios(str(toy_path), median_times, (2, 4), repeats=5)


def test_batching_on_a_reduced_gpt2(gpt2_reduced: Path, median_times) -> None:  # noqa: ANN001
    _ratios(str(gpt2_reduced), median_times, (2, 8), repeats=3)
