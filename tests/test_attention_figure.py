"""The attention figure's grouping of prompt tokens, checked on a hand-built batch, and its table on the toy model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis.core.prompts import TokenBatch
from analysis.plots.attention import PARTS, part_masks


def test_part_masks_on_a_left_padded_batch() -> None:
    # Row 0: pad, BOS, a, [s, s], b, last.  Row 1: BOS, [s], b, c, d, last (no text before the span).
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    span = torch.tensor([[0, 0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    batch = TokenBatch(input_ids=torch.zeros_like(mask), attention_mask=mask, span_mask=span, lengths=mask.sum(1))
    got = part_masks(batch).int().tolist()
    want = {
        "BOS": [[0, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]],
        "before span": [[0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]],
        "span": [[0, 0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0, 0]],
        "after span": [[0, 0, 0, 0, 0, 1, 0], [0, 0, 1, 1, 1, 1, 0]],
        "last token": [[0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1]],
    }
    assert got == [want[p] for p in PARTS]
    # Every real token is in exactly one part, so a softmax row's parts sum to 1; padding in none.
    assert (part_masks(batch).sum(0) == mask.bool()).all()


def test_committed_attention_table_rows_sum_to_one() -> None:
    # The mean over pairs of per-pair softmax rows: its parts sum to 1 up to float32 rounding.
    from analysis.base.contract import attention_dir, read_attention

    table = read_attention(attention_dir("baseline", "toy"))
    sums = table.groupby(["emotion", "layer", "head", "prompt"])["mean"].sum()
    assert len(sums) == 3 * 2 * 2  # emotions × top-2 heads × (emotion, neutral)
    assert (sums - 1).abs().max() < 1e-5
    assert set(table["part"]) == set(PARTS) and (table["n"] == 70).all()


def test_write_attention_writes_the_table_and_a_deterministic_figure(tmp_path: Path) -> None:
    # The stage's writer on the committed table: the table back at the stored precision (6
    # significant digits), and the same figure bytes from two writes; wrong columns are refused.
    import pandas as pd

    from analysis.base.contract import ATTENTION_PNG, attention_dir, read_attention
    from analysis.plots.attention import write_attention

    table = read_attention(attention_dir("baseline", "toy"))
    first = write_attention(table, "toy", tmp_path / "a")
    second = write_attention(table, "toy", tmp_path / "b")
    pd.testing.assert_frame_equal(read_attention(tmp_path / "a"), table, rtol=1e-5)
    assert first["png"].name == ATTENTION_PNG and first["png"].read_bytes() == second["png"].read_bytes()
    with pytest.raises(ValueError, match="expected"):
        write_attention(table.drop(columns=["sd"]), "toy", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
