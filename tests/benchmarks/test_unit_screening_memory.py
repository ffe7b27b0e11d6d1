"""Unit screening memory on GPT-2-small architecture (12 layers × 3072 neurons), baseline prompts.

Attribution for all 36,864 units comes from one forward and one backward pass; its peak RSS must
stay within 4 GB (docs/DESIGN.md §10: caching every hook of GPT-2 costs ~3 GB). Measured in a fresh
subprocess, the model load alone beside it, so the number says what the attribution adds.
Run: pytest -m benchmark -s tests/benchmarks/test_unit_screening_memory.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark
REPO = Path(__file__).resolve().parents[2]

# Positions `all` is the widest case: every real column's difference is kept until the backward.
SCRIPT = """
import sys, torch
torch.use_deterministic_algorithms(True)
from analysis.models import load_model
from analysis.interventions import plain_hf
from analysis.prompts import load_pairs
from analysis.scoring import lexicon_ids
from analysis.head_screening import pair_batches
from analysis.unit_screening import attribution, unit_activations
model = load_model(sys.argv[1])
plain_hf(model)
if sys.argv[2] == "load":
    raise SystemExit
pb = pair_batches(model, load_pairs("gratitude", "baseline"), sys.argv[2], max_unaligned_share=0.0)
lex = lexicon_ids(model.tokenizer)
attr = attribution(model, pb, unit_activations(model, pb.emotion), (lex["gratitude"], lex["neutral"]))
assert attr.shape == (len(pb.kept), 12, 3072) and torch.isfinite(attr).all()
print(tuple(pb.neutral.input_ids.shape))
"""


def test_unit_attribution_peak_memory(gpt2_small_random: Path, run_measured: Callable) -> None:
    _, loaded = run_measured(SCRIPT, str(gpt2_small_random), "load", cwd=REPO)
    for positions in ("all", "last"):
        r, peak = run_measured(SCRIPT, str(gpt2_small_random), positions, cwd=REPO)
        print(
            f"\nunit attribution, 12 x 3072 units, gratitude pairs {r.stdout.strip()}, positions {positions}: peak RSS = "
            f"{peak:.2f} GB (target <= 4); model load alone = {loaded:.2f} GB; attribution adds {peak - loaded:.2f} GB"
        )
        assert peak <= 4.0
