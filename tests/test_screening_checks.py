"""Issue 15, the screening side: the identity-control noise floor and `no_effect`, the BH family
(units: top-k chosen on the selection half, tested on the confirmation half), the attribution /
exact ratio, and the significance rule every count and star uses. The embedded toy model is the
ground truth (planted heads gratitude L3H1, anger L3H2, apology L3H0; units 3:137, 3:301, 3:458)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from analysis.base.contract import read_planted, selection_score, significant
from analysis.core.loading import load_model
from analysis.core.prompts import in_half, load_pairs, span_clusters, split_expressions, subset
from analysis.measures.metrics import lexicon_ids
from analysis.reporting.summary import exact_checks
from analysis.screening import units as us_units
from analysis.screening.common import exact_fields, pair_batches, RATIO_HIGH, RATIO_LOW, ScreeningConfig
from analysis.screening.heads import screen as screen_heads
from analysis.measures.stats import min_clusters

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, shared CPU
EMOTIONS = ("gratitude", "anger", "apology")
N_RESAMPLES = 2000


@pytest.fixture(scope="module")
def pairs() -> dict:
    return {e: load_pairs(e, "baseline") for e in EMOTIONS}


@pytest.fixture(scope="module")
def planted(toy_path: Path) -> dict:
    doc = read_planted(toy_path)
    return {"heads": {e: {tuple(h) for h in hs} for e, hs in doc["by_emotion"].items()},
            "units": {e: {tuple(u) for u in us} for e, us in doc["units_by_emotion"].items()}}


@pytest.fixture(scope="module")
def heads_doc(toy_path: Path, pairs: dict) -> dict:
    cfg = ScreeningConfig(model=str(toy_path), profile="baseline", emotions=EMOTIONS, n_resamples=N_RESAMPLES)
    return screen_heads(load_model(str(toy_path)), cfg, pairs)


@pytest.fixture(scope="module")
def units_doc(toy_path: Path, pairs: dict) -> dict:
    cfg = us_units.UnitScreeningConfig(model=str(toy_path), profile="baseline", emotions=EMOTIONS, n_resamples=N_RESAMPLES)
    return us_units.screen(load_model(str(toy_path)), cfg, pairs).doc


# --- the noise floor ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["heads_doc", "units_doc"])
def test_toy_floor_is_float_noise_and_only_the_planted_effects_are_above_it(
    which: str, request: pytest.FixtureRequest, planted: dict
) -> None:
    """The identity control is float noise (well under 1e-5 nats, float32 on ~10-nat logits), the
    floor is exactly its max |effect| + atol; on the toy's heads everything but the planted head is
    at or below it (0 in truth: the toy's M reads layer 3's planted heads only), and the planted
    effects (~10 nats) are 1e5 floors above it."""
    doc = request.getfixturevalue(which)
    comp, truth = ("head", planted["heads"]) if which == "heads_doc" else ("neuron", planted["units"])
    nf = doc["noise_floor"]
    assert nf["atol"] == 1.0e-5
    for e in EMOTIONS:
        block = nf["by_emotion"][e]
        assert 0.0 <= block["max_abs_control"] < 1.0e-5
        assert block["floor"] == block["max_abs_control"] + nf["atol"]
        rows = [s for s in doc["scores"] if s["emotion"] == e and s["exact"] is not None]
        for s in rows:
            assert s["no_effect"] == (abs(s["exact"]) <= block["floor"])
        (top,) = [s for s in rows if (s["layer"], s[comp]) in truth[e]]
        assert top["exact"] > 1e5 * block["floor"] and not top["no_effect"] and significant(top)
        if comp == "head":
            assert [(s["layer"], s["head"]) for s in rows if not s["no_effect"]] == [(top["layer"], top["head"])]
            assert sum(significant(s) for s in rows) == 1
    assert nf["floor"] == max(b["floor"] for b in nf["by_emotion"].values())


def test_exact_fields_at_the_floor() -> None:
    """Hand-made: a constant 1e-7-nat effect in every one of 18 clusters reaches the p floor and
    its interval excludes 0, but it is below a 1e-5 floor: no_effect, no ratio, no copy flag,
    never significant. A 0.5-nat effect beside it is an effect, with ratio attribution / exact."""
    cfg = ScreeningConfig(model="m", profile="p", n_resamples=999)
    clusters = [f"c{i // 2}" for i in range(36)]
    rng = np.random.default_rng(0)
    tiny = 1e-7 + 1e-9 * rng.random(36)
    row = exact_fields(tiny, np.full(36, 1e-9), cfg, clusters, floor=1e-5, attribution=1e-6)
    assert row["exact_ci_low"] > 0 and row["exact_p"] < 0.01  # "significant" without the floor
    assert row["no_effect"] and row["attribution_ratio"] is None and not row["ratio_flag"] and not row["copy_flag"]
    assert not significant({**row, "exact_q": row["exact_p"]})
    big = exact_fields(0.5 + 0.01 * rng.standard_normal(36), np.full(36, 0.01), cfg, clusters, floor=1e-5, attribution=0.1)
    assert not big["no_effect"] and big["attribution_ratio"] == pytest.approx(0.1 / big["exact"], rel=1e-12)
    assert big["ratio_flag"] and big["copy_flag"]  # 0.2 < RATIO_LOW; copy-free 0.01 < half of 0.5
    assert significant({**big, "exact_q": 0.01}) and not significant({**big, "exact_q": 0.05})


def test_argmax_is_none_when_every_unit_is_under_the_floor() -> None:
    """Hand-made attributions: layer 0 all at or below the floor (one exactly at it) → no argmax;
    layer 1 has one unit above → that unit."""
    floor = 1e-5
    attr = np.array([[1e-9, -1e-5, 3e-7, 0.0], [1e-9, 2e-9, -0.5, 0.2]])
    summary, top = us_units.layer_summary(attr, floor, top_per_layer=2)
    assert [s["argmax_neuron"] for s in summary] == [None, 2]
    assert [s["max_abs_attribution"] for s in summary] == [1e-5, 0.5]
    assert top == {(0, 1), (0, 2), (1, 2), (1, 3)}
    assert summary[1]["sum_attribution"] == pytest.approx(-0.3 + 3e-9, abs=1e-15)


def test_toy_argmax_only_in_the_planted_layer(units_doc: dict, planted: dict) -> None:
    """Layers 0-2 of the toy have attributions of ~1e-9 nats (float noise: the argmax flipped
    13 → 381 between machines): None; layer 3's argmax is the planted unit."""
    for e in EMOTIONS:
        (unit,) = planted["units"][e]
        layers = units_doc["layers"][e]
        assert [s["argmax_neuron"] for s in layers[:3]] == [None, None, None]
        assert max(s["max_abs_attribution"] for s in layers[:3]) <= units_doc["noise_floor"]["by_emotion"][e]["floor"]
        assert (3, layers[3]["argmax_neuron"]) == unit


# --- BH families -------------------------------------------------------------------------------


def test_heads_family_is_every_head_and_emotion(heads_doc: dict) -> None:
    fam = heads_doc["bh_family"]
    assert (fam["size"], fam["per_emotion"], fam["n_components"], fam["tested_on"], fam["valid_fdr"]) == (48, 16, 16, "selection", True)
    assert sum(s["exact_q"] is not None for s in heads_doc["scores"]) == 48


def test_units_family_is_chosen_on_selection_and_tested_on_confirmation(toy_path: Path, pairs: dict, units_doc: dict) -> None:
    """The top 20 units per emotion by |attribution| on the selection half are exact-tested on the
    confirmation half: the rows' exact equals a patching run on the confirmation pairs alone, the
    cluster count is the confirmation half's, and BH spans exactly those 20 × 3."""
    fam = units_doc["bh_family"]
    assert (fam["size"], fam["per_emotion"], fam["n_components"], fam["tested_on"], fam["valid_fdr"]) == (60, 20, 2048, "confirmation", True)
    model = load_model(str(toy_path))
    lex = lexicon_ids(model.tokenizer)
    for e in EMOTIONS:
        rows = [s for s in units_doc["scores"] if s["emotion"] == e and s["exact"] is not None]
        assert sorted(s["attribution_rank"] for s in rows) == list(range(1, 21))  # the selection half's top 20
        sel, conf = split_expressions(pairs[e], seed=0, selection_share=0.5, need=min_clusters())
        assert units_doc["pairs"][e]["exact_half"] == "confirmation" and units_doc["pairs"][e]["n_expressions"] == len(sel)
        held = subset(pairs[e], in_half(pairs[e], conf))
        pb = pair_batches(model, held, "all", max_unaligned_share=0.0)
        # the record's n_* count the half it names (selection), exact_n_* the tested one (issue 30: the
        # baseline's halves are 18 and 17 expressions, so a count from the other half differs)
        chosen = subset(pairs[e], in_half(pairs[e], sel))
        assert len(sel) != len(conf) and {k: units_doc["pairs"][e][k] for k in ("n_pairs", "n_clusters", "exact_n_pairs", "exact_n_clusters")} == {
            "n_pairs": len(chosen), "n_clusters": len(sel), "exact_n_pairs": len(held), "exact_n_clusters": len(conf)}
        assert {s["exact_n_clusters"] for s in rows} == {len({span_clusters(held)[i] for i in pb.kept})}
        probe = sorted((s["layer"], s["neuron"]) for s in rows)[:3]
        ref = us_units.exact_patching(model, pb, us_units.unit_activations(model, pb.emotion, [3]), probe, (lex[e], lex["neutral"]))
        for s in rows:
            if (s["layer"], s["neuron"]) in ref:
                assert s["exact"] == pytest.approx(float(ref[(s["layer"], s["neuron"])].double().mean()), rel=1e-5, abs=1e-9)
    # top units for experiments are chosen on the selection half (attribution), not on the half that tested them
    assert selection_score(units_doc, "anger", units_doc["scores"]) == "attribution"
    assert selection_score(units_doc | {"pairs": {"anger": {"exact_half": "selection"}}}, "anger", units_doc["scores"]) == "exact"


def test_units_family_without_split_is_marked_exploratory(toy_path: Path, pairs: dict) -> None:
    few = {"anger": subset(pairs["anger"], list(range(14)))}
    cfg = us_units.UnitScreeningConfig(model=str(toy_path), profile="baseline", emotions=("anger",), exact_top_k=3,
                                       n_resamples=200, split=False)
    fam = us_units.screen(load_model(str(toy_path)), cfg, few).doc["bh_family"]
    assert (fam["size"], fam["tested_on"], fam["valid_fdr"]) == (3, "all", False) and "exploratory" in fam["chosen"]


# --- attribution vs exact ----------------------------------------------------------------------


def test_toy_planted_heads_are_flagged_by_the_ratio(heads_doc: dict, planted: dict) -> None:
    """Attribution underestimates the planted heads (GELU saturation at the planted unit): the
    ratio is below RATIO_LOW (or of the wrong sign) for each, and they are the only rows compared
    (every other head is at the noise floor, where no ratio is taken)."""
    flagged = heads_doc["attribution_ratio"]["flagged"]
    assert {(f["emotion"], f["layer"], f["head"]) for f in flagged} == {(e, *h) for e, hs in planted["heads"].items() for h in hs}
    assert heads_doc["attribution_ratio"]["n_compared"] == 3
    for f in flagged:
        assert f["attribution_ratio"] == pytest.approx(f["attribution"] / f["exact"], rel=1e-5)
        assert f["attribution_ratio"] < RATIO_LOW and abs(f["attribution_ratio"]) < RATIO_LOW
    for s in heads_doc["scores"]:
        assert (s["attribution_ratio"] is None) == bool(s["no_effect"])


def test_toy_planted_units_ratio_is_within_bounds(units_doc: dict, planted: dict) -> None:
    """On the units attribution is close (0.79-0.86 of exact on the planted ones, ~1 elsewhere):
    nothing is flagged, and the ratio is attribution / exact per row."""
    assert units_doc["attribution_ratio"]["flagged"] == [] and units_doc["attribution_ratio"]["n_compared"] == 60
    for e, us in planted["units"].items():
        (row,) = [s for s in units_doc["scores"] if s["emotion"] == e and (s["layer"], s["neuron"]) in us]
        assert 0.7 < row["attribution_ratio"] < 0.95 and RATIO_LOW < row["attribution_ratio"] < RATIO_HIGH


# --- the summary -------------------------------------------------------------------------------


def test_summary_counts_only_effects_above_the_floor(heads_doc: dict) -> None:
    e = "gratitude"
    rows = [s for s in heads_doc["scores"] if s["emotion"] == e]
    (top,) = [s for s in rows if not s["no_effect"]]
    # a noise-level row with a small q is not counted
    noisy = [dict(rows[0], exact_q=0.001, no_effect=True), *rows[1:]]
    out = exact_checks(heads_doc, noisy, e, top, "p")
    assert out["p.n_significant_q05"] == 1 and out["p.n_no_effect"] == 15
    assert out["p.noise_floor"] == heads_doc["noise_floor"]["by_emotion"][e]["floor"]
    assert (out["p.bh_family_size"], out["p.bh_family_valid"], out["p.n_ratio_flagged"], out["p.top_ratio_flag"]) == (48, 1, 1, 1)
    assert math.isclose(out["p.top_attribution_ratio"], top["attribution"] / top["exact"], rel_tol=1e-5)


def test_report_ratio_table_lists_the_planted_heads(heads_doc: dict, units_doc: dict, toy_path: Path) -> None:
    """The report's ratio table, from a live toy screening: the three planted heads, marked planted,
    with the ratio as the screening recorded it; no unit (none flagged)."""
    from analysis.settings.params import Params
    from analysis.reporting.results import ModelResults, Results
    from analysis.reporting.tables import ratio_table

    planted = read_planted(toy_path)
    m = ModelResults("toy", heads_doc, {}, planted, toy_path, None, units_doc)
    table = ratio_table(Results(toy_path, Params(), "baseline", EMOTIONS, {"toy": m}, {}))
    assert list(table["Component"]) == ["L3H0", "L3H1", "L3H2"]  # by |exact|: apology 11.1, gratitude 9.9, anger 8.8
    assert list(table["Planted"]) == ["yes"] * 3 and list(table["Emotion"]) == ["apology", "gratitude", "anger"]
    by_emotion = {f["emotion"]: f["attribution_ratio"] for f in heads_doc["attribution_ratio"]["flagged"]}
    for e, text in zip(table["Emotion"], table["Attribution / exact"], strict=True):
        assert float(text.replace("−", "-")) == pytest.approx(by_emotion[e], abs=5e-4)


def test_heads_top_k_are_tested_on_the_confirmation_half(toy_path: Path, pairs: dict, heads_doc: dict, tmp_path: Path) -> None:
    """exact_top_k 4 with the split on: the 4 heads per emotion by |attribution| on the selection
    half are tested on the confirmation half (its cluster count, a 12-test family), and top:N
    chooses by attribution, not by the confirmation half's exact."""
    from analysis.base.contract import write_screening
    from analysis.screening.heads import top_heads

    cfg = ScreeningConfig(model=str(toy_path), profile="baseline", emotions=EMOTIONS, exact_top_k=4, n_resamples=N_RESAMPLES)
    doc = screen_heads(load_model(str(toy_path)), cfg, pairs)
    fam = doc["bh_family"]
    assert (fam["size"], fam["per_emotion"], fam["tested_on"], fam["valid_fdr"]) == (12, 4, "confirmation", True)
    for e in EMOTIONS:
        _, conf = split_expressions(pairs[e], seed=0, selection_share=0.5, need=min_clusters())
        rows = [s for s in doc["scores"] if s["emotion"] == e]
        tested = [s for s in rows if s["exact"] is not None]
        by_attr = sorted(rows, key=lambda s: (-abs(s["attribution"]), s["layer"], s["head"]))[:4]
        assert {(s["layer"], s["head"]) for s in tested} == {(s["layer"], s["head"]) for s in by_attr}
        assert {s["exact_n_clusters"] for s in tested} == {len(conf)} and doc["pairs"][e]["exact_half"] == "confirmation"
        # the same attribution as the all-heads screening (both on the selection half)
        full = {(s["layer"], s["head"]): s["attribution"] for s in heads_doc["scores"] if s["emotion"] == e}
        assert all(s["attribution"] == full[(s["layer"], s["head"])] for s in rows)
    path = write_screening(tmp_path / "head_scores.json", doc)
    assert top_heads(path, "anger", 2) == tuple((s["layer"], s["head"]) for s in sorted(
        (s for s in doc["scores"] if s["emotion"] == "anger"), key=lambda s: (-round(abs(s["attribution"]), 6), s["layer"], s["head"]))[:2])
