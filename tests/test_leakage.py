"""Issue 23 item 5, no leakage: every choice (top:N, mlp-top:K, the copy control's skip, `specific`)
reads the selection half only, and every summary key names the half it was measured on.

The choice is tested two ways: on hand-built screening rows whose confirmation-half numbers are
scrambled (the choice must not move; scrambling the selection half's must), and on the embedded
toy, screened twice with the confirmation half's prompts changed (the chosen components and every
selection-half number must be identical, while the confirmation half's numbers differ).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import pytest

from analysis.core.loading import load_model
from analysis.core.prompts import in_half, load_pairs, Prompt, PromptPairs, split_expressions
from analysis.base.errors import InputError
from analysis.settings.params import load_params, Params
from analysis.reporting.summary import endpoints, HALVES, summarize
from analysis.screening import units as us_units
from analysis.screening.common import ScreeningConfig
from analysis.screening.heads import screen as screen_heads
from analysis.screening.selection import choose_top, SELECTION_FIELDS, selection_rows
from analysis.measures.stats import holm, min_clusters

EMOTIONS = ("gratitude", "anger", "apology")
REPO = Path(__file__).resolve().parents[1]

# Every field of a screening row measured where the exact effects were (here: the confirmation half).
CONFIRMATION_FIELDS = ("exact", "exact_ci_low", "exact_ci_high", "exact_p", "exact_q", "exact_n", "no_effect",
                       "exact_copy_free", "copy_share", "copy_flag", "specific")


def _doc(rows: list[dict]) -> dict:
    return {"schema": "emotion-heads/unit-scores/v1", "model": "hand", "emotions": ["anger"],
            "pairs": {"anger": {"exact_half": "confirmation"}}, "split": {"half": "selection"}, "scores": rows}


def _row(neuron: int, attribution: float, sel_flag: bool, conf_flag: bool, sel_specific: bool = True) -> dict:
    return {"layer": 0, "neuron": neuron, "emotion": "anger", "attribution": attribution, "attribution_rank": 0,
            "exact": 1.0, "exact_ci_low": 0.5, "exact_ci_high": 1.5, "exact_p": 0.01, "exact_q": 0.02, "exact_n": 10,
            "no_effect": False, "exact_copy_free": 0.1, "copy_share": 0.1, "copy_flag": conf_flag, "specific": not conf_flag,
            "selection": {"half": "selection", "exact": 0.9, "copy_flag": sel_flag, "specific": sel_specific}}


def _hand_rows() -> list[dict]:
    # Attribution order 0 > 1 > 2 > 3. Unit 0 copies on the selection half only, unit 1 on the
    # confirmation half only: a choice that skips by the confirmation half's flag takes 0, 2.
    return [_row(0, 4.0, True, False), _row(1, 3.0, False, True), _row(2, 2.0, False, True), _row(3, 1.0, False, False)]


def _chosen(doc: dict, n: int = 2, **kw) -> list[int]:  # noqa: ANN003
    return [r["neuron"] for r in choose_top(doc, "anger", n, index="neuron", **kw)]


def test_choice_skips_by_the_selection_half_copy_flag() -> None:
    doc = _doc(_hand_rows())
    assert _chosen(doc, skip_flagged=True) == [1, 2]  # not [0, 2], which the confirmation half's flags give
    assert _chosen(doc, skip_flagged=False) == [0, 1]
    # the view carries no confirmation-half number
    for r in selection_rows(doc, "anger"):
        assert r["copy_flag"] == (r["neuron"] == 0) and r["exact"] == 0.9
        assert set(r) <= set(SELECTION_FIELDS) | set(_hand_rows()[0]["selection"])


@pytest.mark.parametrize("seed", range(20))
def test_scrambling_the_confirmation_half_never_moves_a_choice(seed: int) -> None:
    rng = random.Random(seed)
    base = _doc(_hand_rows())
    scrambled = copy.deepcopy(base)
    for r in scrambled["scores"]:
        for k in CONFIRMATION_FIELDS:
            r[k] = rng.choice([True, False]) if k in ("copy_flag", "specific", "no_effect") else rng.uniform(-100, 100)
    for kw in ({}, {"skip_flagged": True}, {"require_specific": True}, {"skip_flagged": True, "require_specific": True}):
        assert _chosen(scrambled, 3, **kw) == _chosen(base, 3, **kw), kw


def test_scrambling_the_selection_half_does_move_it() -> None:
    """The check above has teeth: the same scramble on the selection half's numbers changes the choice."""
    base = _doc(_hand_rows())
    moved = copy.deepcopy(base)
    moved["scores"][1]["selection"]["copy_flag"] = True
    assert _chosen(moved, skip_flagged=True) != _chosen(base, skip_flagged=True)
    moved = copy.deepcopy(base)
    moved["scores"][3]["attribution"] = 10.0
    assert _chosen(moved) != _chosen(base)
    moved = copy.deepcopy(base)
    moved["scores"][0]["selection"]["specific"] = False
    assert _chosen(moved, require_specific=True) != _chosen(base, require_specific=True)


def test_a_confirmation_tested_file_without_selection_blocks_is_refused() -> None:
    rows = _hand_rows()
    for r in rows:
        del r["selection"]
    with pytest.raises(InputError, match="no selection-half copy"):
        choose_top(_doc(rows), "anger", 2, index="neuron", skip_flagged=True)
    with pytest.raises(InputError, match="no selection-half copy"):
        choose_top(_doc(rows), "anger", 2, index="neuron", require_specific=True)
    # a choice that filters on nothing ranks by the selection half's attribution alone
    assert _chosen(_doc(rows)) == [0, 1]


def test_a_selection_tested_file_is_its_own_view() -> None:
    doc = _doc(_hand_rows())
    doc["pairs"]["anger"]["exact_half"] = "selection"
    # every exact is 1.0 (a tie: layer, neuron order); the rows' own flags (units 1, 2) are the selection half's
    assert _chosen(doc, skip_flagged=True) == [0, 3]
    assert selection_rows(doc, "anger") == doc["scores"]


# --- the toy, screened with its confirmation half changed -----------------------------------------


PREFIX = "Note well. "


def _perturbed(pairs: PromptPairs) -> PromptPairs:
    """The same pairs with every confirmation-half prompt given another opening (both twins alike):
    the expressions, so the halves, are unchanged; the confirmation half's activations are not."""
    _, conf = split_expressions(pairs, seed=0, selection_share=0.5, need=min_clusters())
    idx = set(in_half(pairs, conf))

    def shift(i: int, p: Prompt) -> Prompt:
        if i not in idx:
            return p
        return Prompt(PREFIX + p.text, (p.span[0] + len(PREFIX), p.span[1] + len(PREFIX)), p.source)

    return PromptPairs(pairs.emotion, tuple(shift(i, p) for i, p in enumerate(pairs.emotion_prompts)),
                       tuple(shift(i, p) for i, p in enumerate(pairs.neutral_prompts)))


@pytest.fixture(scope="module")
def toy_pairs() -> dict:
    return {e: load_pairs(e, "baseline") for e in EMOTIONS}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("component", ["unit", "head"])
def test_toy_choice_is_blind_to_the_confirmation_half(component: str, toy_path: Path, toy_pairs: dict) -> None:
    model = load_model(str(toy_path))
    if component == "unit":
        cfg = us_units.UnitScreeningConfig(model=str(toy_path), profile="baseline", emotions=EMOTIONS, exact_top_k=4, n_resamples=2000)
        run = lambda p: us_units.screen(model, cfg, p).doc  # noqa: E731
        index = "neuron"
    else:
        cfg = ScreeningConfig(model=str(toy_path), profile="baseline", emotions=EMOTIONS, exact_top_k=4, n_resamples=2000)
        run = lambda p: screen_heads(model, cfg, p)  # noqa: E731
        index = "head"
    clean = run(toy_pairs)
    changed = run({e: _perturbed(p) for e, p in toy_pairs.items()})
    moved = 0
    for e in EMOTIONS:
        assert clean["pairs"][e]["exact_half"] == "confirmation"
        for skip in (False, True):
            a = [(r["layer"], r[index]) for r in choose_top(clean, e, 4, index=index, skip_flagged=skip)]
            b = [(r["layer"], r[index]) for r in choose_top(changed, e, 4, index=index, skip_flagged=skip)]
            assert a == b and len(a) == 4
        # every selection-half number identical; the confirmation half's moved (the perturbation reached it)
        assert selection_rows(clean, e) == selection_rows(changed, e)
        ca = {(r["layer"], r[index]): r["exact"] for r in clean["scores"] if r["emotion"] == e and r["exact"] is not None}
        cb = {(r["layer"], r[index]): r["exact"] for r in changed["scores"] if r["emotion"] == e and r["exact"] is not None}
        assert set(ca) == set(cb)
        moved += sum(ca[k] != cb[k] for k in ca)
        for r in clean["scores"]:
            if r["emotion"] == e and r["exact"] is not None:
                assert r["selection"]["half"] == "selection" and r["selection"]["exact_n_clusters"] == clean["pairs"][e]["n_expressions"]
    assert moved > 0


# --- the summary's keys name their half; the primary endpoint ---------------------------------------


def test_every_model_key_of_the_summary_names_its_half(chdir_repo: Path) -> None:
    params = load_params(REPO / "params.yaml")
    doc = summarize(params)
    model_keys = [k for k in doc if k.split(".")[0] in params.models]
    assert model_keys
    for k in model_keys:
        assert sum(f".{h}." in f".{k}." for h in HALVES) == 1, k
    # the findings: the primary endpoint and every experiment's q are on the confirmation half
    assert all(".confirmation." in k for k in model_keys if ".primary." in k or k.endswith(".q"))
    # the head screening ranks and tests every head on the selection half (exact_top_k 0)
    assert all(".screening.selection." in k for k in model_keys if ".screening." in k)


def test_primary_endpoint_is_holm_over_models_and_emotions_and_secondary_is_bh() -> None:
    params = Params(models=("a", "b"), emotions=("gratitude", "anger"))
    metrics: dict = {}
    ps = {("a", "gratitude"): 0.001, ("a", "anger"): 0.02, ("b", "gratitude"): 0.04, ("b", "anger"): 0.3}
    for (m, e), p in ps.items():
        b = f"{m}.{e}.denoising.confirmation"
        metrics |= {f"{b}.fraction_of_gap.ratio": 0.5, f"{b}.fraction_of_gap.ci_low": 0.2, f"{b}.fraction_of_gap.ci_high": 0.8,
                    f"{b}.n_prompts": 34, f"{b}.emotion_score.p": p, f"{b}.emotion_score.no_effect": False,
                    f"{m}.{e}.ablation.confirmation.sentiment.p": p}
    out = endpoints(metrics, params)
    # Holm by hand: sorted 0.001, 0.02, 0.04, 0.3 × 4, 3, 2, 1 = 0.004, 0.06, 0.08, 0.3 (already non-decreasing)
    expect = {("a", "gratitude"): 0.004, ("a", "anger"): 0.06, ("b", "gratitude"): 0.08, ("b", "anger"): 0.3}
    for (m, e), v in expect.items():
        assert out[f"{m}.{e}.primary.confirmation.p_holm"] == pytest.approx(v)
        assert out[f"{m}.{e}.primary.confirmation.rejected"] == int(v < 0.05)
        assert out[f"{m}.{e}.primary.confirmation.fraction_of_gap.ratio"] == 0.5
    assert out["families.primary.size"] == 4 and "Holm" in out["families.primary"]
    # the secondary family: BH of the four sentiment p's (0.001·4/1, 0.02·4/2, 0.04·4/3, 0.3) → 0.004, 0.04, 0.0533, 0.3
    q = {k: v for k, v in out.items() if k.endswith("sentiment.q")}
    assert q["a.gratitude.ablation.confirmation.sentiment.q"] == pytest.approx(0.004)
    assert q["a.anger.ablation.confirmation.sentiment.q"] == pytest.approx(0.04)
    assert q["b.gratitude.ablation.confirmation.sentiment.q"] == pytest.approx(0.04 * 4 / 3)
    assert "m = 4" in out["families.secondary.ablation.sentiment"]


def test_holm_by_hand() -> None:
    # p 0.01, 0.04, 0.03, 0.005 → sorted × (4, 3, 2, 1): 0.02, 0.03, 0.06, 0.04 → running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = holm([0.5, None, 0.9])
    assert np.isnan(got[1]) and got[0] == pytest.approx(1.0) and got[2] == pytest.approx(1.0)  # capped at 1, m = 2
