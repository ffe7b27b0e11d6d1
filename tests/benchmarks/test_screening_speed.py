"""Screening speed on GPT-2-small architecture, 70 prompt pairs, one emotion.

Every number is a ratio against a baseline timed in the same process, interleaved, median of
repeats: a bare time on a shared 2-core machine says little.
Run: pytest -m benchmark -s tests/benchmarks/test_screening_speed.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from analysis.core.loading import load_model
from analysis.core.prompts import TokenBatch
from analysis.interventions.edits import capture, position_map
from analysis.measures.metrics import emotion_score
from analysis.screening.common import PairBatches
from analysis.screening.heads import _z_names, attribution, exact_patching

pytestmark = pytest.mark.benchmark
N_PAIRS, N_TOKENS = 70, 14


def _pairs(spec_bos: int) -> PairBatches:
    torch.manual_seed(0)
    base = torch.randint(1, 1000, (N_PAIRS, N_TOKENS))
    base[:, 0] = spec_bos
    emo_ids = base.clone()
    emo_ids[:, 5:8] = torch.randint(1, 1000, (N_PAIRS, 3))
    ones = torch.ones(N_PAIRS, N_TOKENS, dtype=torch.long)
    span = torch.zeros(N_PAIRS, N_TOKENS, dtype=torch.bool)
    span[:, 5:8] = True
    emo = TokenBatch(emo_ids, ones, span, torch.full((N_PAIRS,), N_TOKENS))
    neu = TokenBatch(base, ones, span, torch.full((N_PAIRS,), N_TOKENS))
    idx, mask = position_map("all", emo, neu)
    return PairBatches(emo, neu, idx, mask, list(range(N_PAIRS)))


def test_attribution_and_exact_patching_speed(gpt2_small_random: Path, median_times) -> None:  # noqa: ANN001
    from transformer_lens import patching

    model = load_model(str(gpt2_small_random))
    pb = _pairs(model.spec.bos_id)
    ids = (list(range(100, 120)), list(range(200, 220)))

    def plain_forward() -> None:
        with torch.no_grad():
            model.hf(input_ids=pb.neutral.input_ids)

    def attribution_all_heads() -> None:
        with torch.no_grad():
            z = capture(model, pb.emotion, _z_names(model))
        attribution(model, pb, z, ids)

    t = median_times({"forward": plain_forward, "attribution": attribution_all_heads})
    ratio_attr = t["attribution"] / t["forward"]
    print(f"\nattribution (144 heads, incl. the emotion run) / one plain forward = {ratio_attr:.2f}  (target <= 3.0)")

    # Exact patching for all 144 heads (ours) against transformer-lens's loop on 24 of them (2 per
    # layer): its cost per head is one full forward whichever the head, so 144 x its mean per-head
    # time is its all-head time; the 24 heads also compare the numbers.
    all_heads = [(layer, head) for layer in range(12) for head in range(12)]
    heads = [(layer, h) for layer in range(12) for h in ((5 * layer) % 12, (5 * layer + 7) % 12)]
    with torch.no_grad():
        z = capture(model, pb.emotion, _z_names(model))
        _, cache = model.bridge.run_with_cache(pb.emotion.input_ids, names_filter=lambda n: n.endswith("hook_z"))
        clean = emotion_score(model.bridge(pb.neutral.input_ids)[:, -1], *ids)
    results: dict[str, object] = {}

    def ours() -> None:
        results["ours"] = exact_patching(model, pb, z, all_heads, ids)

    def tl_loop() -> None:
        # transformer-lens's one-full-forward-per-head loop, restricted to the same heads.
        import pandas as pd

        with torch.no_grad():
            results["tl"] = patching.get_act_patch_attn_head_out_all_pos(
                model.bridge, pb.neutral.input_ids, cache, lambda lg: emotion_score(lg[:, -1], *ids) - clean,
                reduce="none", index_axis_names=None, index_df=pd.DataFrame(heads, columns=["layer", "head"]),
            )

    t = median_times({"tl": tl_loop, "ours": ours}, repeats=2)
    tl_all = t["tl"] / len(heads) * len(all_heads)
    speedup = tl_all / t["ours"]
    print(
        f"exact patching, 144 heads: ours {t['ours']:.1f} s; transformer-lens loop {t['tl'] / len(heads):.2f} s/head "
        f"x 144 = {tl_all:.1f} s; ratio = {speedup:.2f}x  (target >= 3)"
    )
    tl_vals = results["tl"].values  # [n_heads, batch]
    worst = max(abs((tl_vals[i] - results["ours"][h]).abs().max().item()) for i, h in enumerate(heads))
    print(f"max |difference| between the two = {worst:.2e}")
    assert worst <= 1e-5
    assert ratio_attr <= 3.0
    assert speedup >= 3.0


def test_screening_peak_memory(gpt2_small_random: Path, tmp_path: Path, run_measured: Callable) -> None:
    _, peak_gb = run_measured(
        "import runpy, sys; sys.argv[0] = 'head_screening'; runpy.run_module('analysis.head_screening', run_name='__main__')",
        "--model", str(gpt2_small_random), "--output", str(tmp_path / "s.json"), "--emotions", "gratitude",
        "--positions", "last", "--exact-top-k", "12", cwd=Path(__file__).resolve().parents[2],
    )
    print(f"\nscreening run peak RSS = {peak_gb:.2f} GB (target <= 4)")
    assert peak_gb <= 4.0
