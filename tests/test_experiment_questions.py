"""Issue 15's pieces, each against a hand computation: mean ablation without BOS, the resample's
role-aligned positions and its value at generated positions, the random-head baseline's draws,
the fraction of the gap and the changed share over clusters."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from analysis.core.loading import ModelSpec
from analysis.core.prompts import TokenBatch
from analysis.core.sites import head_sites, Site
from analysis.base.errors import InputError
from analysis.experiments.run import cluster_flags, gap_parts, random_site_sets
from analysis.interventions.edits import _apply, Edit
from analysis.interventions.plans import MeanPlan, NO_ROLE, position_roles, role_positions

SITE = Site("head", 0, 1)


def _batch(rows: list[tuple[int, int, int]], width: int) -> TokenBatch:
    """Rows given as (length with BOS, span start, span end) in unpadded positions (BOS = 0)."""
    n = len(rows)
    attn = torch.zeros(n, width, dtype=torch.long)
    span = torch.zeros(n, width, dtype=torch.bool)
    for i, (length, s0, s1) in enumerate(rows):
        off = width - length
        attn[i, off:] = 1
        span[i, off + s0 : off + s1 + 1] = True
    return TokenBatch(torch.zeros(n, width, dtype=torch.long), attn, span, torch.tensor([r[0] for r in rows]))


def test_resample_positions_are_aligned_by_role() -> None:
    # width 9. Target: BOS (0), before x2 (1-2), span x3 (3-5), after x3 (6-8): no padding.
    # Source: BOS, before x1, span x2, after x3: length 7, so padding at 0-1, BOS at 2,
    # before at 3, span at 4-5, after at 6-8.
    target = _batch([(9, 3, 5)], 9)
    source = _batch([(7, 2, 3)], 9)
    index = role_positions(target, source, np.array([0]))
    # BOS 0→2; before (from its start): 1→3, 2→3 (the source's before has one token);
    # span (from its end): 5→5, 4→4, 3→4 (the source's span has two); after (from the end): 6→6, 7→7, 8→8.
    assert index[0].tolist() == [2, 3, 3, 4, 4, 5, 6, 7, 8]


def test_resample_positions_without_text_before_the_span_use_bos() -> None:
    target = _batch([(5, 2, 2)], 5)  # BOS, before (1), span (2), after (3-4)
    source = _batch([(4, 1, 1)], 5)  # pad, BOS (1), span (2), after (3-4): nothing before the span
    # BOS 0→1, the target's before-token 1→ the source's BOS 1 (its neighbour), span 2→2, after 3→3, 4→4.
    assert role_positions(target, source, np.array([0]))[0].tolist() == [1, 1, 2, 3, 4]


def test_a_position_wise_edit_holds_its_tail_at_generated_positions() -> None:
    # The prompt pass (3 positions) takes `value`; a cached step (1 new position) takes `tail`.
    # An MLP unit (one number per position): x is [batch, pos, d_mlp], the value [batch, pos].
    value = torch.arange(2 * 3, dtype=torch.float).view(2, 3)
    tail = torch.tensor([[40.0], [50.0]])
    e = Edit(Site("mlp", 0, 0), value, torch.ones(2, 3, dtype=torch.bool), False, tail=tail)
    prompt = _apply(torch.zeros(2, 3, 1), [e])
    assert prompt[:, :, 0].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    step = _apply(torch.zeros(2, 1, 1), [e])
    assert step[:, 0, 0].tolist() == [40.0, 50.0]
    patch = Edit(Site("mlp", 0, 0), value, torch.ones(2, 3, dtype=torch.bool), True)  # patching: no tail
    assert _apply(torch.full((2, 1, 1), 7.0), [patch])[:, 0, 0].tolist() == [7.0, 7.0]


def _model(n_layers: int = 2, n_heads: int = 4) -> SimpleNamespace:
    return SimpleNamespace(spec=ModelSpec("m", "gpt2", n_layers, n_heads, 8, 16, 0, 0))


def test_random_heads_are_drawn_outside_the_top_set_and_seeded() -> None:
    arm = head_sites([(1, 1), (0, 2)])
    top = set(head_sites([(1, 1), (0, 2), (0, 0)]))
    sets = random_site_sets(arm, top, _model(), draws=6, seed=3)
    assert len(sets) == 6 and all(len(s) == 2 and len(set(s)) == 2 and not (set(s) & top) for s in sets)
    assert sets == random_site_sets(arm, top, _model(), draws=6, seed=3)
    assert sets != random_site_sets(arm, top, _model(), draws=6, seed=4)
    assert len({x for s in sets for x in s}) > 2  # several heads of the 5 outside the top set are used


def test_random_heads_more_than_outside_the_top_set_is_an_error() -> None:
    arm = head_sites([(0, h) for h in range(4)] + [(1, 0)])  # 5 heads; 8 - 5 = 3 outside
    with pytest.raises(InputError, match="random-head baseline.*needs 5 random heads.*only 3 heads outside"):
        random_site_sets(arm, set(arm), _model(), draws=2, seed=0)


def test_fraction_of_gap_parts_by_direction() -> None:
    m_emotion, m_neutral = np.array([4.0, 6.0]), np.array([-2.0, 0.0])
    # Denoising (target: neutral twin): the patched twin reaches M = 1 and 3, half way both times.
    num, den = gap_parts(np.array([1.0, 3.0]), m_neutral, m_emotion, targets_neutral=True)
    assert num.tolist() == [3.0, 3.0] and den.tolist() == [6.0, 6.0]
    # Noising / ablation (target: emotion prompt): M falls to 2.5 and 1.5, a quarter and three quarters.
    num, den = gap_parts(np.array([2.5, 1.5]), m_emotion, m_neutral, targets_neutral=False)
    assert num.tolist() == [1.5, 4.5] and den.tolist() == [6.0, 6.0] and num.sum() / den.sum() == 0.5


def test_changed_is_flagged_per_cluster_by_majority() -> None:
    changed = np.array([1, 1, 0, 0, 0, 1, 1, 1, 0.5, 0.5])
    clusters = ["a", "a", "a", "b", "b", "c", "c", "c", "d", "d"]  # a: 2/3, b: 0, c: 1, d: a half (not more)
    assert cluster_flags(changed, clusters).tolist() == [True, False, True, False]


def test_mean_ablation_holds_each_role_at_its_own_mean_bos_excluded() -> None:
    """Per-position mean ablation by hand. Reference rows (width 6, left-padded):
    row 0 = [pad, BOS, b, S, a, a]: before 1 token, span 1, after 2;
    row 1 = [BOS, b, b, S, S, a]: before 2, span 2, after 1.
    Values: BOS 1000 (an attention-sink outlier, never in a mean), padding −77 (never counted),
    before-tokens 1, 2, 3; span 10, 20, 30; after 100, 200, 300."""
    z = torch.zeros(2, 6, 2, 1)
    z[0, :, 1, 0] = torch.tensor([-77.0, 1000.0, 1.0, 10.0, 100.0, 200.0])
    z[1, :, 1, 0] = torch.tensor([1000.0, 2.0, 3.0, 20.0, 30.0, 300.0])
    ref = _batch([(5, 2, 2), (6, 3, 4)], 6)
    assert position_roles(ref).tolist() == [[NO_ROLE, NO_ROLE, 0, 1, 2, 2], [NO_ROLE, 0, 0, 1, 1, 2]]
    # Target (width 6): [pad, pad, BOS, S, a, a]: no text before the span.
    target = _batch([(4, 1, 1)], 6)
    plan = MeanPlan({SITE.hook_name: z}, ref, target)
    means = plan.role_means(SITE)[:, 0].tolist()
    assert means == pytest.approx([(1 + 2 + 3) / 3, (10 + 20 + 30) / 3, (100 + 200 + 300) / 3])  # 2, 20, 200
    (edit,) = plan.draws([SITE])[0]
    # BOS and padding are left alone (mask False); the span gets 20, the text after it 200.
    assert edit.mask[0].tolist() == [False, False, False, True, True, True]
    assert edit.value[0, 3:].flatten().tolist() == pytest.approx([20.0, 200.0, 200.0])
    assert edit.tail.flatten().tolist() == pytest.approx([200.0])  # generated tokens come after the span
    # Applied to a target activation: BOS keeps its value, every other position its role's mean.
    x = torch.full((1, 6, 2, 1), 5.0)
    out = _apply(x, [edit])
    assert out[0, :, 1, 0].tolist() == pytest.approx([5.0, 5.0, 5.0, 20.0, 200.0, 200.0])
    assert out[0, :, 0, 0].tolist() == [5.0] * 6  # the other head untouched
    # A cached generation step (one new position) gets the after-span mean.
    assert _apply(torch.zeros(1, 1, 2, 1), [edit])[0, 0, 1, 0].item() == pytest.approx(200.0)


def test_mean_ablation_role_without_reference_tokens_falls_back_to_the_mean_without_bos() -> None:
    # No reference has text before its span: that role's mean is the mean over every non-BOS token.
    z = torch.zeros(1, 4, 2, 1)
    z[0, :, 1, 0] = torch.tensor([1000.0, 10.0, 100.0, 300.0])  # BOS, span, after, after
    plan = MeanPlan({SITE.hook_name: z}, _batch([(4, 1, 1)], 4), _batch([(4, 2, 2)], 4))
    assert plan.role_means(SITE)[:, 0].tolist() == pytest.approx([(10 + 100 + 300) / 3, 10.0, 200.0])
