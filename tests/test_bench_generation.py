"""The benchmark's planted structures through the generation experiments (issue 24 item 5,
analysis.bench.continuations): the record's schema, its sign verdicts on hand-made evidence, and one
live run of the experiments on a freshly built benchmark's held-out half whose signs are checked.

One module fixture builds the benchmark (~5-10 s) and runs the default structures once with 199
bootstrap draws (~5 s, one torch thread); the stage-size numbers (10000 draws) are in the module's comments.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from analysis.bench.continuations import DEFAULT_STRUCTURES, generation_effects, has_sign, PLANNED, structure_record
from analysis.base.contract import read_planted
from analysis.core.loading import load_model
from analysis.core.prompts import span_clusters
from analysis.core.sites import head_sites
from analysis.base.vocabulary import EMOTIONS
from analysis.embedded.benchmark import BenchConfig, build_benchmark, halves
from analysis.base.errors import InputError
from analysis.experiments.config import ExperimentConfig
from analysis.measures.stats import Effect, Share

N_RESAMPLES = 199  # enough for a 95 % interval (min_resamples is 19); the sign checks do not hinge on it


def _effect(mean: float, low: float, high: float, p: float = 0.01) -> Effect:
    return Effect(n=20, mean=mean, ci_low=low, ci_high=high, p=p, n_clusters=10)


# --- the verdict logic, on hand-made numbers -----------------------------------------------------


@pytest.mark.parametrize(("low", "high", "sign", "expected"), [
    (0.1, 0.5, +1, True),
    (0.0, 0.5, +1, False),  # touching 0 is not a sign
    (-0.1, 0.5, +1, False),
    (-0.5, -0.1, +1, False),  # the other sign
    (-0.5, -0.1, -1, True),
    (-0.5, 0.0, -1, False),
    (0.1, 0.5, -1, False),
    (None, 0.5, +1, False),  # an unbounded end (a ratio's interval) is no verdict
    (float("nan"), -0.1, -1, False),
])
def test_has_sign_reads_the_interval_not_the_mean(low: float | None, high: float, sign: int, expected: bool) -> None:
    # the mean always has the asked sign: only the interval may decide
    assert has_sign({"mean": 0.3 * sign, "ci_low": low, "ci_high": high}, sign) is expected


def test_has_sign_refuses_a_sign_of_0() -> None:
    with pytest.raises(ValueError, match="sign must be"):
        has_sign({"ci_low": 0.1, "ci_high": 0.2}, 0)


def _fake_result(kw: dict[str, Effect], changed_vs_random: Effect, share: Share, random_sites: list[list[tuple[int, int]]]) -> SimpleNamespace:
    """What structure_record reads of an ExperimentResult, built by hand."""
    evidence = SimpleNamespace(
        effects={**{f"kw_{e}": v for e, v in kw.items()}, "emotion_score": _effect(-2.0, -3.0, -1.0)},
        vs_random={"changed": changed_vs_random}, changed_share=share,
        random_effects={**{f"kw_{e}": [0.0, 0.1] for e in kw}, "changed": [0.4, 0.6]},
    )
    config = ExperimentConfig(kind="ablation", model="m", profile="baseline", emotion="anger", head_spec="1:2,3:2", mode="zero",
                              max_tokens=15, output=Path("x.json"), table=Path("x.parquet"))
    main = SimpleNamespace(evidence=evidence, random_sites=tuple(head_sites(d) for d in random_sites))
    base = {"kw_anger": np.array([0.0, 1.0, 0.0, 2.0])}  # [n_pairs]
    return SimpleNamespace(main=main, config=config, baseline_scores=base, pairs=[None] * 4)


def test_the_record_reads_its_own_emotions_keywords_and_the_signed_changed_effect() -> None:
    """backup serves anger: its keyword verdict is kw_anger's, whatever the other lexicons do; the
    changed verdict reads the comparison with the random heads, not the share (which clears 0 here)."""
    planted = {"benchmark": {"structures": {
        "backup": {"emotion": "anger", "heads": {"A": [1, 2], "B": [3, 2]}},
        "decoy": {"emotion": "apology", "heads": {"decoy": [0, 3]}},
    }}}
    result = _fake_result(
        kw={"anger": _effect(-0.4, -0.7, -0.1), "apology": _effect(0.5, 0.2, 0.8), "gratitude": _effect(0.5, 0.2, 0.8)},
        changed_vs_random=_effect(0.05, -0.2, 0.3, p=0.6),
        share=Share(k=11, n=17, share=11 / 17, ci_low=0.38, ci_high=0.86),
        random_sites=[[(0, 3), (5, 6)], [(1, 3), (2, 3)]],
    )
    rec = structure_record(PLANNED["backup"], planted["benchmark"]["structures"]["backup"], result, planted, 1.0)
    assert rec["keyword"]["metric"] == "kw_anger" and rec["keyword"]["effect"]["mean"] == -0.4
    assert rec["keyword"]["expected_sign"] == -1 and rec["keyword"]["has_expected_sign"] is True
    assert rec["changed"]["has_expected_sign"] is False and rec["changed"]["share_excludes_0"] is True
    assert rec["changed"]["vs_random"]["p"] == 0.6
    assert rec["clean_keywords_per_prompt"] == 0.75 and rec["clean_prompts_with_keyword"] == 2
    assert rec["heads"] == {"A": [1, 2], "B": [3, 2]} and rec["intervention"]["method"] == "zero"
    assert rec["intervention"]["target"] == "emotion prompts"
    assert rec["random_sites"] == [["0:3", "5:6"], ["1:3", "2:3"]]
    assert rec["random_sites_planted"] == [["decoy.decoy"], []]  # the random baseline drew another structure's head
    # the same record with the keyword interval reaching 0: no verdict
    result.main.evidence.effects["kw_anger"] = _effect(-0.15, -0.29, 0.0, p=0.063)
    assert structure_record(PLANNED["backup"], planted["benchmark"]["structures"]["backup"], result, planted, 1.0)[
        "keyword"]["has_expected_sign"] is False


def test_every_planned_sign_is_a_sign() -> None:
    for plan in PLANNED.values():
        assert plan.keyword_sign in (-1, 1) and plan.changed_sign in (-1, 1) and plan.keyword_why and plan.changed_why
    assert set(DEFAULT_STRUCTURES) <= set(PLANNED) and len(DEFAULT_STRUCTURES) == 2


# --- live, on a freshly built benchmark's held-out half -------------------------------------------


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """The bench's matrices are tiny (d_model 128): a second torch thread only adds synchronization, and
    on this 2-core machine shared with other jobs it made the live run 50 s instead of 4 s (2026-12-07).
    The signs checked here do not depend on the thread count (the same at 1 and 2 threads, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict:
    folder = build_benchmark(BenchConfig(), tmp_path_factory.mktemp("bench") / "bench")
    planted = read_planted(folder)
    b = planted["benchmark"]
    pairs = {e: halves(BenchConfig(profile=b["profile"], seed=b["seed"], selection_share=b["selection_share"]), e)[1] for e in EMOTIONS}
    model = load_model(str(folder))
    rng = torch.random.get_rng_state()
    start = time.perf_counter()
    doc = generation_effects(str(folder), b["profile"], pairs, planted, seed=0, n_resamples=N_RESAMPLES, model=model)
    return {"folder": folder, "planted": planted, "pairs": pairs, "model": model, "doc": doc,
            "seconds": time.perf_counter() - start, "rng_kept": torch.equal(rng, torch.random.get_rng_state())}


def test_the_record_has_its_schema(live: dict) -> None:
    doc = live["doc"]
    assert set(doc) == {"model", "profile", "seed", "n_resamples", "structures"}
    assert list(doc["structures"]) == list(DEFAULT_STRUCTURES) and doc["n_resamples"] == N_RESAMPLES
    effect_keys = {"n", "mean", "ci_low", "ci_high", "p", "n_clusters"}
    for name, rec in doc["structures"].items():
        s = live["planted"]["benchmark"]["structures"][name]
        held_out = live["pairs"][s["emotion"]]
        assert rec["emotion"] == s["emotion"] and rec["n_pairs"] == len(held_out)
        assert rec["heads"] == {r: s["heads"][r] for r in PLANNED[name].roles}
        assert rec["intervention"]["head_spec"] == ",".join(f"{s['heads'][r][0]}:{s['heads'][r][1]}" for r in PLANNED[name].roles)
        for effect in (rec["keyword"]["effect"], rec["changed"]["vs_random"], rec["delta_m"]):
            assert set(effect) == effect_keys and effect["n"] == len(held_out)
            assert effect["n_clusters"] == len(set(span_clusters(held_out)))
            assert effect["ci_low"] <= effect["mean"] <= effect["ci_high"] and 0 < effect["p"] <= 1
        share = rec["changed"]["share"]
        assert set(share) == {"k", "n", "share", "ci_low", "ci_high"} and share["n"] == len(set(span_clusters(held_out)))
        assert rec["keyword"]["has_expected_sign"] == has_sign(rec["keyword"]["effect"], rec["keyword"]["expected_sign"])
        assert rec["changed"]["has_expected_sign"] == has_sign(rec["changed"]["vs_random"], rec["changed"]["expected_sign"])
        assert len(rec["random_sites"]) == 5 and all(len(d) == len(PLANNED[name].roles) for d in rec["random_sites"])
        assert not {h for d in rec["random_sites"] for h in d} & set(rec["intervention"]["head_spec"].split(","))
    assert live["rng_kept"]  # the caller's torch RNG is not moved


def test_zeroing_the_value_only_head_lowers_m_but_not_the_saturated_apology_words(live: dict) -> None:
    """Measured on this bench (issue 24's structures included): every token of the clean apology
    continuations is an apology word (15 of 15: the decoy's constant write and the unequal head's three
    lifted tokens hold the apology lexicon far above the rest), so removing one of several apology
    routes flips no word: the keyword effect is exactly 0 and lacks its planted sign, while M,
    teacher-forced, falls by about a nat with its interval below 0. (On the bench before issue 24's
    structures it was -2.5 words of 14.1, interval [-5.0, -0.6].)"""
    rec = live["doc"]["structures"]["value_only"]
    assert rec["clean_keywords_per_prompt"] >= 14  # saturated: nothing left to gain, every word can only be swapped
    assert rec["keyword"]["effect"]["mean"] == 0 and rec["keyword"]["has_expected_sign"] is False
    assert rec["delta_m"]["ci_high"] < 0 and rec["delta_m"]["mean"] < -0.5


def test_zeroing_the_backup_pair_lowers_m_where_no_anger_word_is_written(live: dict) -> None:
    """The clean anger continuations hold no anger word (the decoy's constant write lifts the apology
    words above them), so the pair's keyword effect is 0: it cannot fall. M, teacher-forced, falls by
    nats with its interval below 0."""
    rec = live["doc"]["structures"]["backup"]
    assert rec["clean_keywords_per_prompt"] < 0.5 and rec["keyword"]["effect"]["mean"] <= 0
    assert rec["keyword"]["has_expected_sign"] is False
    assert rec["delta_m"]["ci_high"] < 0 and rec["delta_m"]["mean"] < -1


def test_the_heads_come_from_planted_json(live: dict) -> None:
    """A benchmark rebuilt with the value head elsewhere is intervened on there: nothing is hard-coded."""
    planted = copy.deepcopy(live["planted"])
    planted["benchmark"]["structures"]["value_only"]["heads"]["value"] = [5, 2]  # a background head of this build
    doc = generation_effects(str(live["folder"]), "baseline", live["pairs"], planted, seed=0, n_resamples=N_RESAMPLES,
                             structures=("value_only",), model=live["model"])
    rec = doc["structures"]["value_only"]
    assert rec["heads"] == {"value": [5, 2]} and rec["intervention"]["head_spec"] == "5:2"
    # a background head moves M by hundredths where the value head moves it by about a nat
    assert abs(rec["delta_m"]["mean"]) < 0.2 * abs(live["doc"]["structures"]["value_only"]["delta_m"]["mean"])


def test_unknown_structures_and_roles_are_refused_before_any_work(live: dict) -> None:
    with pytest.raises(InputError, match="no generation experiment is planned for benchmark structure 'decoy'"):
        generation_effects("absent", "baseline", live["pairs"], live["planted"], seed=0, n_resamples=N_RESAMPLES, structures=("decoy",))
    planted = copy.deepcopy(live["planted"])
    del planted["benchmark"]["structures"]["backup"]["heads"]["B"]
    with pytest.raises(InputError, match="has no head for role 'B'"):
        generation_effects("absent", "baseline", live["pairs"], planted, seed=0, n_resamples=N_RESAMPLES)


def test_the_live_run_is_fast(live: dict) -> None:
    assert live["seconds"] < 60  # measured ~8 s for both structures at 199 draws, one thread, on 2 loaded cores


def test_the_reports_generation_table(live: dict) -> None:
    """One row per structure, one keyword column whatever emotion each serves (its metric named in the cell)."""
    from analysis.reporting.bench_tables import generation_frame

    frame = generation_frame({"generation": live["doc"]})
    assert list(frame["structure"]) == [s.replace("_", "-") for s in DEFAULT_STRUCTURES]
    assert not frame.isna().any().any()
    assert frame.loc[0, "keyword effect"].startswith("kw_anger: ") and frame.loc[1, "keyword effect"].startswith("kw_apology: ")
    assert generation_frame({}).empty
