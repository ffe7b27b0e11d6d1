"""Issue 23 items 2 and 3: the neutral control (specificity), ΔM split into its two terms, and the
copy control's stem rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.core.prompts import load_pairs, Prompt, PromptPairs, subset
from analysis.base.vocabulary import EMOTIONS
from analysis.base.errors import InputError
from analysis.screening.common import (
    correct_specificity, is_specific, neutral_control_prompts, ScreeningConfig, specificity_fields, spliced,
)

N_RESAMPLES = 2000


# --- item 3: the stem rule of the copy control ----------------------------------------------------


def test_stem_rule_by_hand() -> None:
    from analysis.measures.metrics import shares_stem, stem_matches

    assert shares_stem("thank", "thanks") and shares_stem("Thanks", "thankful") and shares_stem("thanked", "THANK")
    assert shares_stem("apology", "apologize") and shares_stem("grateful", "gratitude")
    assert shares_stem("mad", "MAD") and not shares_stem("mad", "madness")  # under 4 letters: equality only
    assert not shares_stem("thank", "think") and not shares_stem("sorry", "sort") and not shares_stem("kind", "king")
    lexicon = ["thanks", "thank", "thanked", "thanking", "thankful", "grateful", "kind", "appreciate", "cheers"]
    # "thank" in the prompt: every variant goes, the unrelated words stay
    assert stem_matches("Hi Ana, thank you for the notes. Well", lexicon) == {"thanks", "thank", "thanked", "thanking", "thankful"}
    assert stem_matches("Thanks, I read it", ["thankful", "thanked", "report"]) == {"thankful", "thanked"}
    assert stem_matches("I paid the parking fee", lexicon) == set()


def test_copy_keep_drops_variants(toy_path: Path, chdir_repo: Path) -> None:
    """On the toy: a pair whose prompt has a "thank" word (the matched twins' spans say "thankful",
    "thanks") keeps none of thanks / thankful / thanked / thanking in its copy-free M, and keeps the
    gratitude words that share no stem with it."""
    from analysis.core.loading import load_model
    from analysis.core.prompts import lexicon_word_ids, load_lexicon
    from analysis.measures.metrics import lexicon_ids
    from analysis.screening.common import copy_keep, pair_batches

    model = load_model(str(toy_path))
    pairs = load_pairs("gratitude", "baseline")
    rows = [i for i, e in enumerate(pairs.emotion_prompts) if "thank" in e.text.lower()][:3]
    assert rows, "the baseline has gratitude spans with a 'thank' word"
    sub = subset(pairs, rows)
    pb = pair_batches(model, sub, "all", max_unaligned_share=0.2)
    lex = lexicon_ids(model.tokenizer)
    ids = (lex["gratitude"], lex["neutral"])
    keep = copy_keep(model, sub, pb, "gratitude", ids)
    words = lexicon_word_ids(model.tokenizer, load_lexicon("gratitude"))
    order = [*ids[0], *ids[1]]
    for w in ("thanks", "thankful", "thanked", "thanking", "thank"):
        for t in words.get(w, []):
            assert not keep[:, order.index(t)].any(), w
    assert any(w in words for w in ("thankful", "thanked")), "the toy's tokenizer has a thank variant to drop"
    kept = [w for w in ("lovely", "generous", "helpful", "indebted") if w in words and all(
        w not in f"{e.text} {n.text}".lower() for e, n in zip(sub.emotion_prompts, sub.neutral_prompts, strict=True))]
    assert kept and all(keep[:, order.index(words[w][0])].all() for w in kept)


# --- item 2: choosing neutral′ ------------------------------------------------------------------


def test_neutral_prime_is_another_span_in_the_twins_template(toy_path: Path, chdir_repo: Path) -> None:
    from analysis.core.loading import load_model
    from analysis.core.prompts import aligned_pairs

    model = load_model(str(toy_path))
    for emotion in EMOTIONS:
        pairs = load_pairs(emotion, "baseline")
        prompts, fallbacks = neutral_control_prompts(model, pairs, pairs, "all", seed=0)
        assert len(prompts) == len(pairs)
        twins = pairs.neutral_prompts
        spans = {n.span_text for n in twins}
        afters = [n.after for n in twins]
        same_template = 0
        for p, n in zip(prompts, twins, strict=True):
            assert p.before == n.before and p.after == n.after  # the twin's own template
            assert p.span_text != n.span_text and p.span_text in spans  # another twin's span, never its own
            donor = [m for m in twins if m.span_text == p.span_text]
            same_template += any(m.after == n.after for m in donor)
        # positions all: the same token count and span position as the twin
        control = PromptPairs(emotion, tuple(prompts), twins)
        assert aligned_pairs(model.tokenizer, control) == list(range(len(pairs)))
        # every pair whose template has another usable twin span takes it from there
        assert same_template == len(pairs) - fallbacks and fallbacks <= sum(afters.count(a) == 1 for a in afters)
        # deterministic given the seed, and the seed matters
        assert neutral_control_prompts(model, pairs, pairs, "all", seed=0) == (prompts, fallbacks)
        assert neutral_control_prompts(model, pairs, pairs, "all", seed=1)[0] != prompts


def test_too_few_neutral_spans_is_one_line(toy_path: Path, chdir_repo: Path) -> None:
    from analysis.core.loading import load_model

    model = load_model(str(toy_path))
    pairs = load_pairs("anger", "baseline")
    same = tuple(spliced(n, "I read the note") for n in pairs.neutral_prompts)  # every twin the same span
    one = PromptPairs("anger", pairs.emotion_prompts, same)
    with pytest.raises(InputError) as err:
        neutral_control_prompts(model, one, one, "last", seed=0)
    assert "\n" not in str(err.value) and "too few neutral spans for the neutral control" in str(err.value)


# --- item 2: the specificity fields by hand --------------------------------------------------------


def _cfg(**kw: object) -> ScreeningConfig:
    return ScreeningConfig(model="m", profile="baseline", emotions=("anger",), n_resamples=N_RESAMPLES, **kw)  # type: ignore[arg-type]


def test_specificity_fields_by_hand() -> None:
    """exact − control per pair, clustered: 8 clusters of 2 pairs; the difference is 1 + a
    cluster's ±0.1, so its mean is exactly 1.0, and ΔM's two terms are passed through as means."""
    clusters = [f"c{i // 2}" for i in range(16)]
    wiggle = np.array([0.1 if i % 4 < 2 else -0.1 for i in range(16)])
    control = np.linspace(0.5, 2.0, 16)
    exact = control + 1.0 + wiggle
    parts = np.stack([exact + 3.0, np.full(16, 3.0)], 1)  # Δ LSE(emotion) − Δ LSE(neutral) = exact
    f = specificity_fields(exact, control, parts, _cfg(), clusters, list(range(16)))
    assert f["control"] == pytest.approx(control.mean()) and f["specificity"] == pytest.approx(1.0)
    # all 8 clusters positive: the sign flips' exact p is 2/2**8 = 0.0078 (here its Monte-Carlo estimate)
    assert f["specificity_ci_low"] > 0.85 and f["specificity_ci_high"] < 1.15 and f["specificity_p"] < 0.02
    assert f["exact_lse_emotion"] - f["exact_lse_neutral"] == pytest.approx(exact.mean())
    # pairs 14 and 15 (cluster c7, wiggle −0.1) have no neutral′: the difference is over the other 14,
    # 8 pairs at +0.1 and 6 at −0.1 around 1
    rows = list(range(14))
    g = specificity_fields(exact, control[rows], parts, _cfg(), clusters, rows)
    assert g["control"] == pytest.approx(control[rows].mean()) and g["specificity"] == pytest.approx(1.0 + 0.1 * 2 / 14)
    assert g["exact_lse_emotion"] == f["exact_lse_emotion"]  # ΔM's terms are over every pair


def _row(exact: float, lo: float, hi: float, q: float, quiet: bool = False) -> dict:
    return {"emotion": "anger", "exact": exact, "no_effect": quiet, "specificity_ci_low": lo, "specificity_ci_high": hi,
            "specificity_q": q, "specificity_p": q}


def test_specific_rule_by_hand() -> None:
    thr = 0.05 * 2.0  # min_share 0.05 of a gap of 2 nats
    assert is_specific(_row(1.0, 0.2, 0.9, 0.01), thr)
    assert not is_specific(_row(1.0, 0.05, 0.9, 0.01), thr)  # interval reaches inside ± 0.1
    assert not is_specific(_row(1.0, 0.2, 0.9, 0.06), thr)  # not significant
    assert not is_specific(_row(1.0, 0.2, 0.9, 0.01, quiet=True), thr)  # exact at the noise floor
    assert not is_specific(_row(1.0, -0.9, -0.2, 0.01), thr)  # neutral′ moved M more than the emotion did
    assert is_specific(_row(-1.0, -0.9, -0.2, 0.01), thr)  # a negative effect, further negative than the control
    assert not is_specific(_row(0.3, 0.2, 0.9, 0.01), 0.25)  # a larger min_share: the interval must clear 0.25
    # the family's BH: three p of 0.01, 0.02, 0.9 -> q 0.03, 0.03, 0.9
    rows = [_row(1.0, 0.2, 0.9, 0.01), _row(1.0, 0.2, 0.9, 0.02), _row(1.0, 0.2, 0.9, 0.9), {"emotion": "anger", "specificity_p": None}]
    correct_specificity(_cfg(), rows, {"anger": 2.0})
    assert [r["specificity_q"] for r in rows] == [pytest.approx(0.03), pytest.approx(0.03), pytest.approx(0.9), None]
    assert [r["specific"] for r in rows] == [True, True, False, False]


def test_min_share_outside_0_1_is_refused() -> None:
    for bad in (-0.01, 1.0, float("nan")):
        with pytest.raises(InputError, match="specificity.min_share must be in"):
            _cfg(specificity_min_share=bad)
    from pydantic import ValidationError

    from analysis.settings.params import Params

    with pytest.raises(ValidationError):
        Params(specificity={"min_share": 1.0})  # type: ignore[arg-type]
    assert Params().specificity.min_share == 0.05


# --- the toy: the planted heads and units are specific, nothing else -----------------------------


@pytest.fixture(scope="module")
def toy_docs(toy_path: Path, chdir_repo: Path) -> tuple[dict, dict, dict]:
    from analysis.core.loading import load_model
    from analysis.base.contract import read_planted
    from analysis.screening.heads import screen as screen_heads
    from analysis.screening.units import screen as screen_units, UnitScreeningConfig

    model = load_model(str(toy_path))
    pairs = {e: load_pairs(e, "baseline") for e in EMOTIONS}
    heads = screen_heads(model, ScreeningConfig(model=str(toy_path), profile="baseline", n_resamples=N_RESAMPLES), pairs)
    units = screen_units(model, UnitScreeningConfig(model=str(toy_path), profile="baseline", n_resamples=N_RESAMPLES), pairs).doc
    return heads, units, read_planted(toy_path)


def test_toy_planted_heads_are_the_specific_ones(toy_docs: tuple[dict, dict, dict]) -> None:
    heads, _, planted = toy_docs
    for e in EMOTIONS:
        truth = {tuple(h) for h in planted["by_emotion"][e]}
        rows = [s for s in heads["scores"] if s["emotion"] == e]
        specific = {(s["layer"], s["head"]) for s in rows if s["specific"]}
        assert specific == truth, e
        for s in rows:
            if (s["layer"], s["head"]) in truth:
                # the neutral′ patch does nothing (nothing but the planted head reads the span's class,
                # and every neutral span has one class), so the difference is the whole effect
                assert abs(s["control"]) < 1e-4 and s["specificity"] == pytest.approx(s["exact"], abs=1e-4)
                assert s["specificity_ci_low"] > heads["specificity"]["by_emotion"][e]["threshold"]
                # the planted head raises the emotion lexicon and lowers the neutral one
                assert s["exact_lse_emotion"] > 1 and s["exact_lse_neutral"] < -1
            assert s["exact_lse_emotion"] - s["exact_lse_neutral"] == pytest.approx(s["exact"], abs=1e-4)
        gap = heads["specificity"]["by_emotion"][e]["gap"]
        assert heads["specificity"]["by_emotion"][e]["threshold"] == pytest.approx(0.05 * abs(gap))


def test_toy_planted_units_are_the_specific_ones(toy_docs: tuple[dict, dict, dict]) -> None:
    """The unit screening tests the top 20 by attribution: among them the planted unit is specific and
    the others (real effects of ~0.02 nats, q < 0.05 but under 5 % of the ~10-nat gap) are not."""
    _, units, planted = toy_docs
    for e in EMOTIONS:
        truth = {tuple(u) for u in planted["units_by_emotion"][e]}
        rows = [s for s in units["scores"] if s["emotion"] == e and s["exact"] is not None]
        assert {(s["layer"], s["neuron"]) for s in rows if s["specific"]} == truth
        others = [s for s in rows if (s["layer"], s["neuron"]) not in truth]
        assert any(s["exact_q"] < 0.05 and not s["no_effect"] for s in others)  # significant, yet not specific


def test_top_k_means_specific(toy_docs: tuple[dict, dict, dict], tmp_path: Path) -> None:
    from analysis.base.contract import write_screening
    from analysis.screening.heads import top_heads

    heads, _, planted = toy_docs
    path = write_screening(tmp_path / "head_scores.json", heads)
    for e in EMOTIONS:
        assert top_heads(path, e, 1, specific_only=True) == (tuple(planted["by_emotion"][e][0]),)
        with pytest.raises(InputError, match="that are specific"):
            top_heads(path, e, 2, specific_only=True)


# --- a head that reacts to ANY change of the span is not specific --------------------------------


def _mismatch(w, c, at) -> None:  # noqa: ANN001
    """Heads A and B attend to the span and move one token-identity (noise) dimension of it into F,
    A with +1 and B with −1, so F is 0 in every clean run; two units read ±F and both write the
    emotion's output, so M rises by ~|F|: whatever span A's (or B's) activation comes from, any
    span but the run's own raises M, an emotion span as much as a neutral one."""
    from analysis.embedded.benchmark import mover

    d = c.dims
    for role, sign in (("A", 1.0), ("B", -1.0)):
        mover(w, *at[role], d.noise[0], {d.F: sign}, (3.0, 0.0, 1.0), d)
    for role, sign in (("up", 1.0), ("down", -1.0)):
        layer, unit = at[role]
        w.wfc[layer, d.F, unit] = 10.0 * sign
        w.wpr[layer, unit, d.O(c.emotion)] = 1.0


def test_head_reacting_to_any_span_change_is_not_specific(tmp_path: Path, chdir_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analysis.core.loading import load_model
    from analysis.embedded import benchmark as bm
    from analysis.screening.heads import screen as screen_heads

    monkeypatch.setitem(bm.STRUCTURES, "mismatch", bm.Structure(
        (("A", 0, 6), ("B", 0, 7)), (("up", 1, 300), ("down", 1, 301)), _mismatch, "reacts to any span change", ("A", "B")))
    monkeypatch.setitem(bm.DEFAULT_EMOTION, "mismatch", "gratitude")
    folder = bm.build_benchmark(bm.BenchConfig(structures=("mismatch",)), tmp_path / "mismatch")
    model = load_model(str(folder))
    pairs = {"gratitude": load_pairs("gratitude", "baseline")}
    cfg = ScreeningConfig(model=str(folder), profile="baseline", emotions=("gratitude",), n_resamples=N_RESAMPLES, split=False)
    doc = screen_heads(model, cfg, pairs)
    rows = {(s["layer"], s["head"]): s for s in doc["scores"]}
    for h in ((0, 6), (0, 7)):
        s = rows[h]
        # a real, significant effect on M ...
        assert s["exact"] > 0.3 and s["exact_q"] < 0.05 and not s["no_effect"], s
        # ... which a neutral span patched the same way produces alike: not an emotion head
        assert s["control"] > 0.3 and not s["specific"], s
        assert s["specificity_ci_low"] < doc["specificity"]["by_emotion"]["gratitude"]["threshold"]


# --- the experiments: the specificity control and the copy-free M -------------------------------


@pytest.mark.parametrize("module,extra,emotion", [
    ("head_patching", ("--direction", "denoising", "--positions", "all"), "gratitude"),
    ("head_patching", ("--direction", "noising", "--positions", "all"), "anger"),
    ("head_ablation", ("--method", "zero"), "apology"),
])
def test_experiments_report_the_control_and_the_copy_free_m(
    module: str, extra: tuple[str, ...], emotion: str, toy_docs: tuple[dict, dict, dict], toy_path: Path, tmp_path: Path,
) -> None:
    """top:1 on the toy is the planted head: its patching control (neutral′ → twin, e′ → emotion
    prompt) moves M by ~0 (every span of one class embeds alike in the toy), so the difference is the
    whole effect; zero ablation on the twins moves M the other way; every run calls it specific; the
    copy-free M stands beside M in the JSON and in the per-prompt table."""
    import importlib

    import pandas as pd

    from analysis.base.contract import write_screening

    heads, _, planted = toy_docs
    screening = write_screening(tmp_path / "head_scores.json", heads)
    out = tmp_path / "run.json"
    try:
        importlib.import_module(f"analysis.{module}").main([
            "--model", str(toy_path), "--emotion", emotion, "--head-spec", "top:1", "--screening-file", str(screening),
            "--cumulative-k", "0", "--max-tokens", "2", "--n-resamples", "500", "--output", str(out), *extra,
        ])
    except SystemExit as exit_:
        assert not exit_.code
    import json

    doc = json.loads(out.read_text())
    assert doc["heads"] == planted["by_emotion"][emotion]
    spec = doc["specificity_control"]
    m = doc["effects"]["emotion_score"]["mean"]
    # the difference of means is the mean of the per-prompt differences (JSON: 6 digits)
    assert spec["difference"]["mean"] == pytest.approx(m - spec["control"]["mean"], abs=1e-4)
    if module == "head_patching":
        assert abs(spec["control"]["mean"]) < 0.05
    else:  # zeroing the planted head on a twin removes its (neutral) evidence: M rises there, and falls on the emotion prompt
        assert m < -1 and spec["control"]["mean"] > 0.5
    assert spec["specific"] and spec["threshold"] == pytest.approx(0.05 * abs(spec["gap"]), rel=1e-5)  # JSON: 6 digits
    assert spec["confirmation"]["specific"]
    cf = doc["effects"]["emotion_score_copy_free"]
    assert np.sign(cf["mean"]) == np.sign(m) and abs(cf["mean"]) > 0.5 * abs(m)  # the planted head does not copy
    table = pd.read_parquet(doc["table"])
    for col in ("baseline_emotion_score_copy_free", "intervened_emotion_score_copy_free", "control_delta_emotion_score"):
        assert col in table.columns and np.isfinite(table[col]).all()
    assert np.mean(table["control_delta_emotion_score"]) == pytest.approx(spec["control"]["mean"], rel=1e-5, abs=1e-6)
    if module == "head_patching":
        srcs = table["control_source_prompt"]
        targets = table["prompt"]
        assert all(s != t for s, t in zip(srcs, targets, strict=True))
