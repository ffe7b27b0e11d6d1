"""The benchmark with known, hard answers (issue 16): each planted structure shows the signature
its planted.json states, measured with the project's exact interventions on the held-out half,
and the pipeline's criteria ("What counts as the pipeline passing") hold on it.

One module fixture builds the benchmark (~5-10 s) and runs the validate computation once, with
the stage's own params (params.yaml) but no null screenings (the nulls stage's 260 take ~40 min):
their tests read the stored results/baseline/nulls.json and recompute two of its nulls live.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.core.prompts import span_clusters
from analysis.base.vocabulary import mlp_post_name
from analysis.embedded.benchmark import BenchConfig, build_benchmark, halves, STRUCTURES, write_null
from analysis.settings.params import load_params
from analysis.bench.scoring import runs, validate, ValidationConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("bench") / "bench"
    start = time.perf_counter()
    build_benchmark(BenchConfig(), folder)
    seconds = time.perf_counter() - start
    p = load_params(REPO / "params.yaml")
    # no null screenings (the nulls stage's) and no unit screening of every unit (tests/test_bench_units.py)
    cfg = dataclasses.replace(ValidationConfig.from_params(p, folder=str(folder), profile=p.profile), unit_metrics=False)
    doc = validate(cfg)
    return {"folder": folder, "build_seconds": seconds, "doc": doc, "planted": json.loads((folder / "planted.json").read_text()),
            "cfg": cfg}


def test_build_is_deterministic_and_fast(bench: dict, tmp_path: Path) -> None:
    assert bench["build_seconds"] < 180  # issue 16: <= 3 min for all on 2 cores (measured ~5-10 s)
    again = build_benchmark(BenchConfig(), tmp_path / "again")
    for name in ("model.safetensors", "planted.json", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (bench["folder"] / name).read_bytes(), name


def test_gpt2_with_layernorm_and_gelu(bench: dict) -> None:
    cfg = json.loads((bench["folder"] / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["activation_function"] == "gelu_new"
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"]) == (6, 8, 128)


def test_loadable_by_name(bench: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analysis import models
    from analysis.core import loading

    built = bench["folder"]
    with pytest.raises(loading.InputError, match="model `bench` is built by `dvc repro benchmark`"):
        models.materialize("bench", tmp_path / "m", seed=0, toy_steps=1)
    monkeypatch.setitem(loading.EMBEDDED, "bench", (built, "how"))
    assert loading.resolve_model_path("bench") == str(built)
    assert loading.load_model("bench").spec.n_heads == 8
    monkeypatch.setitem(loading.EMBEDDED, "bench", (tmp_path / "missing", "`dvc repro benchmark`"))
    with pytest.raises(loading.InputError, match="model `bench` is not built.*dvc repro benchmark"):
        loading.resolve_model_path("bench")


def test_construction_and_evaluation_use_disjoint_expressions(bench: dict) -> None:
    for emotion in ("gratitude", "anger", "apology"):
        built, held_out = halves(BenchConfig(), emotion)
        assert not set(span_clusters(built)) & set(span_clusters(held_out))
        assert len(set(span_clusters(held_out))) >= 17 and bench["doc"]["n_pairs"][emotion] == len(held_out)
    fitted = bench["planted"]["benchmark"]["fitted"]
    sat = bench["doc"]["signatures"]["saturation"]
    # the competitor was sized to 0.3 x the trap on the construction half; held out it is near, not equal
    assert fitted["trap_exact_construction"] != pytest.approx(sat["trap"]["exact"], abs=1e-3)
    assert 0.2 <= sat["competitor_over_trap_exact"] <= 0.45


def test_planted_json_records_every_structure_with_its_signature(bench: dict) -> None:
    rec = bench["planted"]["benchmark"]["structures"]
    assert set(rec) == set(STRUCTURES)
    assert all(r["signature"] and r["emotion"] in ("gratitude", "anger", "apology") for r in rec.values())
    assert bench["planted"]["by_emotion"]["gratitude"] == sorted(rec["distributed"]["heads"].values())


# --- each structure's signature, by direct measurement ------------------------------------------


def test_distributed_thirds_and_cumulative_recovery(bench: dict) -> None:
    d = bench["doc"]["signatures"]["distributed"]
    assert all(0.25 <= s <= 0.42 for s in d["shares"]), d["shares"]  # about 1/3 each
    assert d["cumulative_denoise"][0] < d["cumulative_denoise"][1] < d["cumulative_denoise"][2]
    assert d["cumulative_denoise"][2] >= 0.9  # criterion: the three jointly recover >= 0.9 of the gap


def test_backup_takes_over(bench: dict) -> None:
    b = bench["doc"]["signatures"]["backup"]
    assert b["zero_AB"] > 2.0  # nats: without both, the emotion's M falls
    assert abs(b["zero_A"]) <= 0.5 * b["zero_AB"]  # criterion: B compensates
    assert b["noise_AB"] >= 0.8 and b["denoise_A"] >= 0.8  # criterion
    assert b["noise_A"] < 0.3  # noising A alone: B takes over again
    assert b["attention_B_to_span_clean"] < 0.05 and b["attention_B_to_span_A_zeroed"] > 0.4  # the mechanism
    curve = b["curve"]
    assert curve["effect_B_zeroed"][-1] == pytest.approx(b["zero_AB"] - b["zero_B"], abs=1e-4)
    assert max(curve["effect_B_free"]) < 0.5 * curve["effect_B_zeroed"][-1]


def test_attention_decoy(bench: dict) -> None:
    d = bench["doc"]["signatures"]["decoy"]
    assert d["delta_attn"] > 0.9 and d["rank"]["delta_attn"] == 1  # Δattn ranks it first of its emotion
    assert abs(d["exact"]) < 1e-5 and abs(d["attribution"]) < 1e-5
    assert d["exact_q"] >= 0.05  # criterion: below the noise floor


def test_value_only(bench: dict) -> None:
    v = bench["doc"]["signatures"]["value_only"]
    assert v["delta_attn"] == pytest.approx(0.0, abs=1e-6)
    assert v["exact"] > 1.0 and v["exact_q"] < 0.05
    assert v["rank"]["delta_attn"] >= 40 and v["rank"]["exact"] <= 3


def test_saturation_trap(bench: dict) -> None:
    s = bench["doc"]["signatures"]["saturation"]
    assert s["trap"]["exact"] > 0.5 and s["trap_ratio"] < 0.3  # attribution misses the trap ...
    assert 0.8 <= s["competitor_ratio"] <= 1.25  # ... and gets the linear competitor right
    assert s["competitor"]["attribution"] > s["trap"]["attribution"]  # so it ranks the competitor first
    flagged = {(r["emotion"], r["layer"], r["head"]) for r in bench["doc"]["attribution_vs_exact"]["flagged"]}
    trap = bench["planted"]["benchmark"]["structures"]["saturation"]
    assert (trap["emotion"], *trap["heads"]["trap"]) in flagged  # criterion: the trap is flagged
    # the unit is off in the neutral run and on in the emotion run, at the last position
    from analysis.core.loading import load_model

    layer, unit = trap["units"]["unit"]
    r = runs(load_model(str(bench["folder"])), halves(BenchConfig(), trap["emotion"])[1], trap["emotion"])
    neutral, emotion = (z[mlp_post_name(layer)][:, -1, unit] for z in (r.z_neutral, r.z_emotion))
    assert neutral.abs().max() < 0.01 and emotion.mean() > 1.0


def test_cancellation(bench: dict) -> None:
    c = bench["doc"]["signatures"]["cancellation"]
    assert c["plus"] > 0.5 and c["minus"] < -0.5 and c["plus_q"] < 0.05 and c["minus_q"] < 0.05
    assert abs(c["joint"]) <= 0.05 * min(c["plus"], -c["minus"])  # criterion: jointly ~ 0
    assert abs(c["layer"]) <= 0.1 * min(c["plus"], -c["minus"])  # the whole layer too (background heads in it)


def test_layernorm_only_head(bench: dict) -> None:
    from safetensors.torch import load_file

    rec = bench["planted"]["benchmark"]["structures"]["layernorm"]
    layer, head = rec["heads"]["ln"]
    assert layer == 5  # the last block: only the final LayerNorm and the unembedding are downstream
    sd = load_file(bench["folder"] / "model.safetensors")
    d_head = 16
    w_o = sd[f"transformer.h.{layer}.attn.c_proj.weight"][head * d_head : (head + 1) * d_head]  # [d_head, d]
    writes = (w_o.abs().sum(1) > 0).nonzero().flatten()
    assert len(writes) >= 1
    # the unembedding reads nothing of what it writes: its only route to the logits is LayerNorm's scale
    assert (sd["lm_head.weight"] @ w_o[writes].T).abs().max() < 1e-4
    ln = bench["doc"]["signatures"]["layernorm"]
    assert abs(ln["exact"]) > 0.3 and ln["exact_q"] < 0.05


def test_polysemantic_and_decoy_units(bench: dict) -> None:
    u = bench["doc"]["signatures"]["units"]
    assert u["poly"]["gratitude"]["exact"] > 0.3 and u["poly"]["anger"]["exact"] > 0.3
    assert u["decoy_unit"]["activation_change"] > 1.0 and abs(u["decoy_unit"]["exact"]) < 1e-5


def test_copy_head_flagged_and_true_heads_not(bench: dict) -> None:
    c = bench["doc"]["signatures"]["copy"]
    # above the noise floor (its signature); 0.14 nats since issue 24's unequal head lifts three apology
    # tokens far above the copied words', which then weigh less in the lexicon's logsumexp (0.45 before)
    assert c["exact"] > 0.1 and c["exact_q"] < 0.05 and c["copy_flag"] and c["copy_share"] < 0.5  # criterion
    causal = {(e, tuple(h)) for e, hs in bench["planted"]["by_emotion"].items() for h in hs}
    rows = [r for r in bench["doc"]["scores"] if (r["emotion"], (r["layer"], r["head"])) in causal]
    assert len(rows) == 15 and not any(r["copy_flag"] for r in rows)  # criterion: no true emotion head flagged


# --- issue 24's structures: what "emotion head" must mean ------------------------------------------


def _row(bench: dict, structure: str, role: str) -> dict:
    rec = bench["planted"]["benchmark"]["structures"][structure]
    layer, head = rec["heads"][role]
    return next(r for r in bench["doc"]["scores"] if r["emotion"] == rec["emotion"] and (r["layer"], r["head"]) == (layer, head))


def test_unequal_head_raises_a_few_lexicon_tokens_and_is_an_emotion_head(bench: dict) -> None:
    from safetensors.torch import load_file

    from analysis.core.prompts import lexicon_word_ids, load_lexicon

    ids = bench["planted"]["benchmark"]["unequal_token_ids"]
    lexicon = [t for v in lexicon_word_ids(__import__("transformers").AutoTokenizer.from_pretrained(bench["folder"]),
                                           load_lexicon("apology")).values() for t in v]
    assert len(ids) == 3 and set(ids) < set(lexicon) and len(lexicon) >= 2 * len(ids)  # a few of the lexicon
    sd = load_file(bench["folder"] / "model.safetensors")
    layer, head = bench["planted"]["benchmark"]["structures"]["unequal"]["heads"]["unequal"]
    w_o = sd[f"transformer.h.{layer}.attn.c_proj.weight"][head * 16 : (head + 1) * 16]  # [d_head, d]
    lift = (sd["lm_head.weight"] @ w_o.T).abs().max(1).values  # [vocab]: how much its write can move each logit
    assert set((lift > 1.0).nonzero().flatten().tolist()) == set(ids)  # those three tokens and no other
    r = _row(bench, "unequal", "unequal")
    assert r["exact"] > 1.0 and r["exact_q"] < 0.05 and not r["copy_flag"] and r["specific"]


def test_variant_copy_head_is_removed_by_the_stem_rule(bench: dict) -> None:
    """It raises only other spellings of the span's words (never a prompt token: every bench span is
    one token), so the copy-free M, which leaves out every spelling sharing a stem, keeps ~none of it."""
    v = bench["doc"]["signatures"]["variant_copy"]
    assert v["exact"] > 0 and v["copy_share"] < 0.5
    assert bench["planted"]["benchmark"]["variant_words"] == ["apologize", "apologies"]
    assert not (v["rank"]["exact"] <= 10 and v["exact_q"] < 0.05 and not v["copy_flag"])  # not found


def test_confound_head_reads_a_class_the_twins_carry_alike(bench: dict) -> None:
    """Every held-out twin holds a 2nd-person word exactly when its emotion span does (analysis.core.twins),
    so the confound head's patch moves M by float noise only (LayerNorm scales), far below any planted head."""
    from analysis.core.twins import has_class

    _, held_out = halves(BenchConfig(), "apology")
    carried = [(has_class(e.span_text, "2nd person"), has_class(n.span_text, "2nd person"))
               for e, n in zip(held_out.emotion_prompts, held_out.neutral_prompts, strict=True)]
    assert all(a == b for a, b in carried) and 0 < sum(a for a, _ in carried) < len(carried)
    r = _row(bench, "confound", "confound")
    assert abs(r["exact"]) < 0.1 and not r["specific"]


def test_specific_and_non_specific_heads(bench: dict) -> None:
    """The specific head beats the neutral control; the two that react to any span change move M as
    much when a neutral span is patched in (control ~ exact), so they are real effects but not emotion heads."""
    specific = _row(bench, "specificity", "specific")
    assert specific["exact"] > 1.0 and specific["specific"] and abs(specific["control"]) < 0.1 * specific["exact"]
    for role in ("nonspecific", "reference"):
        r = _row(bench, "specificity", role)
        assert r["exact"] > 0.1 and r["exact_q"] < 0.05 and not r["specific"], role
        assert r["control"] > 0.5 * r["exact"] and abs(r["specificity"]) < 0.5 * r["exact"], role


def test_structures_planted_or_not_leave_the_background_alone(bench: dict, tmp_path: Path) -> None:
    """The background is drawn for every head and cleared where a structure plants: a benchmark with
    two structures has every other head's weights of the full one, bit for bit."""
    from safetensors.torch import load_file

    few = build_benchmark(BenchConfig(structures=("distributed", "backup")), tmp_path / "few")
    a, b = load_file(bench["folder"] / "model.safetensors"), load_file(few / "model.safetensors")
    planted = {(layer, h) for rec in bench["planted"]["benchmark"]["structures"].values() for layer, h in rec["heads"].values()}
    free = [(layer, h) for layer in range(6) for h in range(8) if (layer, h) not in planted]
    assert len(free) == 48 - len(planted) > 20
    for layer, head in free:
        rows = slice(head * 16, (head + 1) * 16)
        key = f"transformer.h.{layer}.attn.c_proj.weight"
        assert torch.equal(a[key][rows], b[key][rows]), (layer, head)


# --- the pipeline's criteria ----------------------------------------------------------------------


def test_exact_auroc(bench: dict) -> None:
    assert bench["doc"]["metrics"]["exact"]["auroc"] >= 0.95


def test_attribution_spearman_above_noise_floor(bench: dict) -> None:
    a = bench["doc"]["attribution_vs_exact"]
    assert a["n_above_floor"] >= 11 and a["spearman"] >= 0.8


def test_delta_attn_reported_as_it_is(bench: dict) -> None:
    """Not a criterion of the pipeline: what the seed's score does here (the report discusses it)."""
    v = bench["doc"]["verdicts"]
    assert v["decoy"]["delta_attn"] == "misleading" and v["value_only"]["delta_attn"] == "missed"
    assert v["saturation"]["attribution"] == "missed" and v["saturation"]["exact"] == "found"
    assert all(row["exact"] == "found" for row in v.values())


def _stored_nulls() -> dict:
    from analysis.base.contract import nulls_file, read_nulls, read_validation, validation_file

    doc = read_nulls(REPO / nulls_file("baseline"))
    carried = read_validation(REPO / validation_file("baseline"))["nulls"]  # the validate stage's copy for its criterion
    assert carried == {k: v for k, v in doc.items() if k not in ("schema", "model", "profile", "params")}
    return doc


def test_null_criterion() -> None:
    """Issue 24's criterion (fixed in the issue before this measurement), which replaced issue 16's
    two point estimates (mean FDP <= 0.05 and share <= 0.05: one number twice under a complete
    null, and undecidable with 20 nulls): the share of null screenings with an emotion-head claim
    may exceed 0.05 only as far as a one-sided exact binomial test at 0.05 allows. Checked against
    a binomial reference computed here, on the stored screenings, and shown able to fail."""
    from scipy.stats import binom

    from analysis.reporting.bench_tables import null_criterion_met, null_criterion_p
    from analysis.bench.nulls import MIN_NULLS

    n = _stored_nulls()
    k = sum(1 for p in n["per_null"] if p["n_discoveries"] > 0)
    assert n["n_nulls"] == len(n["per_null"]) >= MIN_NULLS
    assert null_criterion_p(n) == pytest.approx(binom.sf(k - 1, n["n_nulls"], 0.05), rel=1e-9)
    assert null_criterion_met(n)  # criterion
    # claims in 10 % of the screenings (twice the nominal rate) would fail it
    worse = {**n, "per_null": [{"n_discoveries": int(i < n["n_nulls"] // 10)} for i in range(n["n_nulls"])]}
    assert not null_criterion_met(worse)


def test_stored_null_screenings_are_what_the_params_ask() -> None:
    from analysis.modelfacts.families import SUPPORTED_FAMILIES

    p, n = load_params(REPO / "params.yaml"), _stored_nulls()
    count = {s: sum(1 for x in n["per_null"] if x["source"] == s) for s in ("bench", *SUPPORTED_FAMILIES)}
    assert count == {"bench": p.benchmark.n_nulls, **{f: p.benchmark.n_random_nulls for f in SUPPORTED_FAMILIES}}
    assert sum(rec["n"] for rec in n["by_source"].values()) == n["n_nulls"]
    low, high = n["share_with_discovery_ci"]
    assert low <= 0.05  # not anti-conservative
    for x in n["per_null"]:  # a claim is a specific row, whose neutral-control difference survived BH
        assert x["n_discoveries"] == len(x["discoveries"])
        assert all(d["specificity_q"] < 0.05 for d in x["discoveries"])


def test_two_stored_null_screenings_recomputed() -> None:
    """The stored null screenings are what the code computes: the benchmark's null 0 and the first
    GPT-2 random model screened again here (one process, as the stage's workers do: one thread)."""
    from analysis.base.contract import read_planted
    from analysis.embedded.benchmark import evaluation_pairs
    from analysis.bench.nulls import NullConfig, nulls

    p = load_params(REPO / "params.yaml")
    folder = str(REPO / "results/models/bench")
    cfg = NullConfig.from_params(p, folder=folder, profile=p.profile)
    planted = read_planted(folder)
    pairs = evaluation_pairs(cfg.profile, planted["benchmark"]["seed"], cfg.selection_share)
    again = nulls(dataclasses.replace(cfg, workers=1), pairs, planted["by_emotion"], jobs=[("bench", 0), ("gpt2", 0)])
    stored = {(x["source"], x["null"]): x for x in _stored_nulls()["per_null"]}
    for x in again["per_null"]:
        y = stored[(x["source"], x["null"])]
        assert (x["n_discoveries"], x["n_significant"], x["n_pairs"]) == (y["n_discoveries"], y["n_significant"], y["n_pairs"])
        assert x["min_specificity_q"] == pytest.approx(y["min_specificity_q"], rel=1e-4)
    assert again["per_null"][0]["planted_exact"] == pytest.approx(stored[("bench", 0)]["planted_exact"], rel=1e-4, abs=1e-6)


def test_null_sign_of_m_is_exact(bench: dict, tmp_path: Path) -> None:
    """The nulls' sign construction (analysis.screening.null): counting the other lexicon positive
    negates every pair's and so every cluster's ΔM exactly, in float, on a null model whose
    effects are real (the permutation alone leaves backup head A a nonzero effect)."""
    from analysis.core.loading import load_model
    from analysis.base.vocabulary import NEUTRAL, z_hook
    from analysis.interventions.edits import capture
    from analysis.measures.metrics import lexicon_ids
    from analysis.screening.common import pair_batches
    from analysis.screening.heads import exact_patching
    from analysis.screening.null import cluster_signs, signed_rows
    from analysis.bench.scoring import evaluation_pairs, exact_screening, screening_config

    model = load_model(str(write_null(bench["folder"], 0, tmp_path / "null")))
    rec = bench["planted"]["benchmark"]["structures"]["backup"]
    emotion, head = rec["emotion"], tuple(rec["heads"]["A"])
    pairs = evaluation_pairs(bench["cfg"], bench["planted"]["benchmark"]["seed"])[emotion]
    pb = pair_batches(model, pairs, "all", max_unaligned_share=0.2)
    z_emo = capture(model, pb.emotion, [z_hook(layer) for layer in range(model.spec.n_layers)])
    lex = lexicon_ids(model.tokenizer)
    a = exact_patching(model, pb, z_emo, [head], (lex[emotion], lex[NEUTRAL]))[head].double().numpy()
    b = exact_patching(model, pb, z_emo, [head], (lex[NEUTRAL], lex[emotion]))[head].double().numpy()  # M's sign flipped
    clusters = np.array([span_clusters(pairs)[i] for i in pb.kept])
    per_a = [a[clusters == c].mean() for c in sorted(set(clusters))]
    per_b = [b[clusters == c].mean() for c in sorted(set(clusters))]
    assert max(abs(x) for x in per_a) > 0.01  # a real effect, not float noise around 0
    assert (b == -a).all() and per_b == [-x for x in per_a]  # exact: a == -b in float
    # the stage's route gives the same numbers: its block, a cluster's sign applied to all of its pairs
    block = exact_screening(model, screening_config(model, bench["cfg"]), pairs, emotion)
    assert (block.exact[head].double().numpy() == a).all()
    signs = cluster_signs(list(clusters), np.random.default_rng(0))
    assert all(len(set(signs[clusters == c])) == 1 for c in set(clusters))  # one sign per cluster
    assert set(signs) == {-1.0, 1.0}
    (row,) = signed_rows(emotion, {head: a}, None, signs, screening_config(model, bench["cfg"]), list(clusters), 0.0)
    assert row["exact"] == float(np.mean(np.where(signs > 0, a, b)))  # each pair's ΔM under its cluster's M


def test_null_permutes_span_embeddings_only(bench: dict, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    null = write_null(bench["folder"], 0, tmp_path / "null")
    a, b = load_file(bench["folder"] / "model.safetensors"), load_file(null / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a if k != "transformer.wte.weight")
    spans = bench["planted"]["benchmark"]["span_token_ids"]
    rest = [i for i in range(a["transformer.wte.weight"].shape[0]) if i not in set(spans)]
    assert torch.equal(a["transformer.wte.weight"][rest], b["transformer.wte.weight"][rest])
    moved = (a["transformer.wte.weight"][spans] != b["transformer.wte.weight"][spans]).any(1)
    assert moved.float().mean() > 0.9  # a uniform permutation moves almost every span row
    rows_a = {tuple(r.tolist()) for r in a["transformer.wte.weight"][spans]}
    assert rows_a == {tuple(r.tolist()) for r in b["transformer.wte.weight"][spans]}  # the same rows, reassigned


# --- the stage, the summary and the report's section ----------------------------------------------


def test_validate_stage_writes_the_contract_file(bench: dict, tmp_path: Path) -> None:
    import yaml

    from analysis.base.contract import read_validation
    from analysis.validate import main

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["screening"]["n_resamples"] = 1000  # the validate stage screens with the screen stage's draws
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "validation.json"
    main(["--model", str(bench["folder"]), "--params", str(tmp_path / "params.yaml"), "--output", str(out), "--no-unit-metrics"])
    doc = read_validation(out)
    assert doc["nulls"]["n_nulls"] == 0 and doc["params"]["screening"]["n_resamples"] == 1000
    # the same model and halves: the exact effects do not depend on the resampling (the file keeps 6 digits)
    assert doc["signatures"]["backup"]["zero_AB"] == pytest.approx(bench["doc"]["signatures"]["backup"]["zero_AB"], rel=1e-5)


def test_summary_and_report_readers(bench: dict) -> None:
    from analysis.reporting.bench_tables import criteria, criteria_frame, validation_facts, validation_figure, validation_summary, verdict_frame

    doc = bench["doc"]
    flat = validation_summary(doc)
    assert flat["validation.exact.auroc"] == doc["metrics"]["exact"]["auroc"]
    assert flat["validation.decoy.rank.delta_attn"] == 1
    rows = criteria(doc)
    n_structures = sum(1 for rec in doc["structures"].values() if rec["heads"])
    assert n_structures == 12 and flat["validation.criteria.n"] == len(rows) == 11 + n_structures  # no nulls in this doc
    assert [what for what, _, _, met in rows if not met] == []  # the nulls' included (test_null_models_criterion)
    assert list(verdict_frame(doc).columns) == ["structure", "emotion", "heads", "Δattn (the seed's)", "attribution", "exact patching"]
    assert len(criteria_frame(doc)) == len(rows) and validation_facts(doc)["decoy_rank"] == "1"
    assert len(validation_figure(doc).axes) == 3


# --- the difficulty sweep (issue 24 item 2) --------------------------------------------------------


def test_background_strength_scales_the_background_writes_only(bench: dict, tmp_path: Path) -> None:
    """x3 multiplies every non-planted head's output weights by 3 (exactly, up to float32 rounding)
    and leaves each planted head's alone, except the competitor, whose write is fitted against the
    background (its 0.3 x the trap's effect) and recorded in planted.json."""
    from safetensors.torch import load_file

    x3 = build_benchmark(BenchConfig(background=3.0), tmp_path / "x3")
    a, b = load_file(bench["folder"] / "model.safetensors"), load_file(x3 / "model.safetensors")
    planted = {(layer, head): role for rec in bench["planted"]["benchmark"]["structures"].values()
               for role, (layer, head) in rec["heads"].items()}
    d_head = 128 // 8
    for layer in range(6):
        wa, wb = a[f"transformer.h.{layer}.attn.c_proj.weight"], b[f"transformer.h.{layer}.attn.c_proj.weight"]
        for head in range(8):
            rows = slice(head * d_head, (head + 1) * d_head)
            role = planted.get((layer, head))
            if role is None:
                torch.testing.assert_close(wb[rows], 3.0 * wa[rows], rtol=1e-6, atol=1e-7)
            elif role != "competitor":
                assert torch.equal(wb[rows], wa[rows]), (layer, head, role)
    doc = json.loads((x3 / "planted.json").read_text())["benchmark"]
    assert doc["background"] == 3.0 and bench["planted"]["benchmark"]["background"] == 1.0
    assert doc["constants"] == bench["planted"]["benchmark"]["constants"] and doc["constants"]["bg_write"] == 0.05


def test_stored_sweep_matches_the_validation_at_x1() -> None:
    """The sweep's x1 is the stored benchmark validated with the same config: its every metric,
    verdict and exact score equal results/baseline/validation.json's (which only adds the nulls)."""
    from analysis.base.contract import read_sweep, read_validation, sweep_file, validation_file
    from analysis.reporting.bench_tables import criteria, sweep_breaks, sweep_frame, sweep_summary

    sweep, val = read_sweep(REPO / sweep_file("baseline")), read_validation(REPO / validation_file("baseline"))
    assert tuple(sweep["strengths"]) == load_params(REPO / "params.yaml").benchmark.sweep
    (x1,) = [run["validation"] for run in sweep["runs"] if run["background"] == 1.0]
    assert x1["metrics"] == val["metrics"] and x1["verdicts"] == val["verdicts"] and x1["scores"] == val["scores"]
    assert x1["nulls"]["n_nulls"] == 0 and val["nulls"]["n_nulls"] > 0
    flat = sweep_summary(sweep)
    assert flat["sweep.x1.exact.auroc"] == val["metrics"]["exact"]["auroc"]
    assert flat["sweep.x1.criteria.met"] == flat["sweep.x1.criteria.n"] == len(criteria(x1))  # all met at x1
    assert len(sweep_frame(sweep)) == len(sweep["strengths"])
    assert set(sweep_breaks(sweep)) == {n for n, rec in val["structures"].items() if rec["heads"]}


def test_sweep_refuses_a_strength_that_is_not_positive(tmp_path: Path, capsys) -> None:  # noqa: ANN001 - pytest's capsys
    import yaml

    from analysis.bench_sweep import main

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["benchmark"]["sweep"] = [1, 0]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "sweep.json"
    with pytest.raises(SystemExit) as exit_:
        main(["--params", str(tmp_path / "params.yaml"), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and "benchmark.sweep" in err[0], err
    assert not out.exists()
    with pytest.raises(Exception, match="background strength must be a positive number"):
        BenchConfig(background=-1.0)
