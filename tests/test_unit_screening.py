"""Unit screening: exact patching of MLP units is right (against a naive full re-run through the
bridge's `mlp.hook_post`), attribution is its derivative, the shared exact loop leaves head
screening bit-identical, the file keeps what `mlp-top:K` needs, and bad input is one line."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.base import contract as us_contract
from analysis.screening import units as us_units
from analysis import unit_screening as us
from analysis.base.contract import unit_screening_file
from analysis.core.loading import load_model, ModelSpec
from analysis.core.prompts import load_pairs, PromptPairs
from analysis.core.sites import head_sites, Site
from analysis.base.errors import InputError
from analysis.interventions.edits import capture, Edit, hooks_for, last_logits, patch_edits
from analysis.interventions.exact import exact_patching_sites, plain_hf
from analysis.base.io import read_parquet, write_json
from analysis.measures.metrics import emotion_score, lexicon_ids
from analysis.modelfacts.families import SUPPORTED_FAMILIES as FAMILIES
from analysis.modelfacts.random_weights import save_random_model
from analysis.screening.common import pair_batches, unchanged_prefix
from analysis.screening.heads import _z_names, exact_patching as head_exact_patching

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, shared CPU


def _subset(pairs: PromptPairs, n: int) -> PromptPairs:
    return PromptPairs(pairs.emotion, pairs.emotion_prompts[:n], pairs.neutral_prompts[:n])


@pytest.fixture(scope="module")
def unit_dirs(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> dict[str, Path]:
    """2 layers × 256 neurons per family; init_std 0.1 so one neuron moves M far above 1e-5."""
    root = tmp_path_factory.mktemp("unit_models")
    return {f: save_random_model(f, root / f, tokenizer_dir=tokenizer_dir, seed=1, init_std=0.1) for f in FAMILIES}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """d_model 16 → 64 neurons per layer: small enough to patch every unit exactly."""
    return save_random_model("gpt2", tmp_path_factory.mktemp("tiny") / "m", tokenizer_dir=tokenizer_dir, d_model=16, n_heads=2, seed=4, init_std=0.2)


UNITS = [(0, 3), (1, 100), (1, 7)]


# --- exactness ------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", ["last", "all", "span"])
@pytest.mark.parametrize("family", FAMILIES)
def test_unit_exact_equals_naive_bridge_rerun(family: str, positions: str, unit_dirs: dict[str, Path]) -> None:
    """The fast path (plain HF from the cached residual, prefix KV cache, lexicon logits) equals a
    full bridge forward with the unit patched on `blocks.L.mlp.hook_post`, for every family."""
    model = load_model(str(unit_dirs[family]))
    pb = pair_batches(model, _subset(load_pairs("anger", "baseline"), 12), positions, max_unaligned_share=0.0)
    lex = lexicon_ids(model.tokenizer)
    ids = (lex["anger"], lex["neutral"])
    fast = us_units.exact_patching(model, pb, us_units.unit_activations(model, pb.emotion), UNITS, ids)
    # the reference: activations captured through the bridge, one full forward per unit
    source = capture(model, pb.emotion, [f"blocks.{layer}.mlp.hook_post" for layer in range(model.spec.n_layers)])
    clean = emotion_score(last_logits(model, pb.neutral), *ids)
    moved = 0.0
    for unit in UNITS:
        edits = patch_edits([Site("mlp", *unit)], source, pb.idx, pb.mask)
        slow = emotion_score(last_logits(model, pb.neutral, hooks_for(edits)), *ids) - clean
        assert abs((fast[unit] - slow).abs().max().item()) <= 1e-5, unit
        moved = max(moved, slow.abs().max().item())
    assert moved > 1e-4, "patching changed nothing: the comparison is vacuous"


def test_shared_exact_loop_on_heads_is_bit_identical_to_head_screening(unit_dirs: dict[str, Path]) -> None:
    model = load_model(str(unit_dirs["gpt_neo"]))
    pb = pair_batches(model, _subset(load_pairs("gratitude", "baseline"), 10), "span", max_unaligned_share=0.0)
    lex = lexicon_ids(model.tokenizer)
    ids = (lex["gratitude"], lex["neutral"])
    z = capture(model, pb.emotion, _z_names(model))
    heads = [(0, 1), (1, 3), (1, 0)]
    old = head_exact_patching(model, pb, z, heads, ids)
    new = exact_patching_sites(model, pb.neutral, z, pb.idx, pb.mask, unchanged_prefix(pb), head_sites(heads), ids)
    for head in heads:
        assert torch.equal(old[head], new[Site("head", *head)]), head


def _same_width(model, pairs: PromptPairs, n: int) -> PromptPairs:  # noqa: ANN001
    """n pairs that fill the padded width in both prompts: a batch without padding."""
    emo, neu = pair_batches(model, pairs, "last", max_unaligned_share=0.0).emotion, pair_batches(model, pairs, "last", max_unaligned_share=0.0).neutral
    full = (emo.attention_mask.all(1) & neu.attention_mask.all(1)).nonzero().flatten().tolist()
    if len(full) < n:  # fall back to the most common width
        widths = (emo.attention_mask.sum(1) * 1000 + neu.attention_mask.sum(1)).tolist()
        common = max(set(widths), key=widths.count)
        full = [i for i, w in enumerate(widths) if w == common]
    rows = full[:n]
    return PromptPairs(pairs.emotion, tuple(pairs.emotion_prompts[i] for i in rows), tuple(pairs.neutral_prompts[i] for i in rows))


# gpt_neo is left out: its attention always runs in float32, so float64 does not help the finite
# difference. gpt_neox gets a batch without padding: in float64 its HF attention turns left-padded
# rows into NaN (fully masked padding queries), a quirk of the float64 reference only.
@pytest.mark.parametrize("family", ["gpt2", "gpt_neox"])
def test_attribution_is_the_derivative_of_unit_patching(family: str, unit_dirs: dict[str, Path]) -> None:
    """Patching a unit eps of the way (through the bridge's hook_post) moves M by eps × attribution.

    In float64: float32 rounding of M (~1e-7 relative) would swamp eps-sized changes.
    """
    model = load_model(str(unit_dirs[family]))
    model.bridge.to(torch.float64)
    hf = plain_hf(model)
    hf.to(torch.float64)  # the cached fast-path model: restored below for the other tests
    try:
        pairs = load_pairs("gratitude", "baseline")
        pb = pair_batches(model, _same_width(model, pairs, 8) if family == "gpt_neox" else _subset(pairs, 8), "all", max_unaligned_share=0.0)
        lex = lexicon_ids(model.tokenizer)
        ids = (lex["gratitude"], lex["neutral"])
        attr = us_units.attribution(model, pb, us_units.unit_activations(model, pb.emotion), ids)  # [batch, layer, d_mlp]
        assert attr.dtype == torch.float64 and attr.shape[1:] == (2, 256) and len(attr) >= 4
        names = [f"blocks.{layer}.mlp.hook_post" for layer in range(2)]
        emo, neu = capture(model, pb.emotion, names), capture(model, pb.neutral, names)
        clean = emotion_score(last_logits(model, pb.neutral), *ids)
        eps = 1e-4
        for layer, neuron in UNITS:
            src = emo[names[layer]][:, :, neuron].gather(1, pb.idx)
            cur = neu[names[layer]][:, :, neuron]
            edit = Edit(Site("mlp", layer, neuron), cur + eps * (src - cur), pb.mask, True)
            moved = (emotion_score(last_logits(model, pb.neutral, hooks_for([edit])), *ids) - clean) / eps
            a = attr[:, layer, neuron]
            assert a.abs().max().item() > 1e-5
            assert abs((moved - a).abs().max().item()) <= 1e-3 * a.abs().max().item(), (layer, neuron)
    finally:
        hf.to(torch.float32)


def test_attribution_tracks_exact_on_a_near_linear_case(unit_dirs: dict[str, Path]) -> None:
    """Small source/target differences (twins that differ in one span token, last position):
    first order should rank units as exact patching does. A weak claim, but one that fails if
    attribution is computed for the wrong units or with the wrong sign."""
    model = load_model(str(unit_dirs["gpt2"]))
    pb = pair_batches(model, _subset(load_pairs("apology", "baseline"), 16), "last", max_unaligned_share=0.0)
    lex = lexicon_ids(model.tokenizer)
    ids = (lex["apology"], lex["neutral"])
    attr = us_units.attribution(model, pb, us_units.unit_activations(model, pb.emotion), ids).mean(0)
    units = [(layer, n) for layer in range(2) for n in range(0, 256, 8)]
    exact = us_units.exact_patching(model, pb, us_units.unit_activations(model, pb.emotion), units, ids)
    a = np.array([attr[u].item() for u in units])
    e = np.array([exact[u].mean().item() for u in units])
    assert np.corrcoef(a, e)[0, 1] > 0.9
    assert (np.sign(a) == np.sign(e))[np.abs(e) > 0.1 * np.abs(e).max()].all()


def test_attribution_memory_tricks_change_nothing(unit_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Recomputing the activation in the backward pass is bit-identical to keeping its tape; the
    pass consumes the emotion activations and leaves the cached HF model as it was."""
    model = load_model(str(unit_dirs["gpt_neo"]))
    pb = pair_batches(model, _subset(load_pairs("anger", "baseline"), 8), "span", max_unaligned_share=0.0)
    lex = lexicon_ids(model.tokenizer)
    ids = (lex["anger"], lex["neutral"])
    hf = plain_hf(model)
    acts_before = [type(hf.transformer.h[layer].mlp.act) for layer in range(2)]
    act_emo = us_units.unit_activations(model, pb.emotion)
    with_recompute = us_units.attribution(model, pb, act_emo, ids)
    assert act_emo == {}
    assert [type(hf.transformer.h[layer].mlp.act) for layer in range(2)] == acts_before
    assert not any(m._forward_pre_hooks for m in hf.modules())
    monkeypatch.setattr(us_units, "recomputed_activations", lambda *a, **k: contextlib.nullcontext())
    plain = us_units.attribution(model, pb, us_units.unit_activations(model, pb.emotion), ids)
    assert torch.equal(with_recompute, plain)
    assert with_recompute.abs().max().item() > 1e-4


# --- the document -----------------------------------------------------------------------------


def test_screen_document(unit_dirs: dict[str, Path]) -> None:
    model = load_model(str(unit_dirs["gpt2"]))
    pairs = {e: _subset(load_pairs(e, "baseline"), 10) for e in ("gratitude", "apology")}
    cfg = us_units.UnitScreeningConfig(model="m", profile="baseline", emotions=tuple(pairs), positions="last", exact_top_k=4,
                                 n_resamples=200, top_per_layer=3, split=False)
    res = us_units.screen(model, cfg, pairs)
    doc, table = res.doc, res.table
    assert doc["schema"] == us_contract.UNIT_SCORES_SCHEMA and doc["n_layers"] == 2 and doc["d_mlp"] == 256
    assert doc["params"]["exact_top_k"] == 4 and doc["params"]["top_per_layer"] == 3
    assert len(table) == 2 * 2 * 256 and list(table.columns) == ["emotion", "layer", "neuron", "attribution", "attribution_rank"]
    for e in pairs:
        t = table[table.emotion == e]
        rows = [s for s in doc["scores"] if s["emotion"] == e]
        exact = [s for s in rows if s["exact"] is not None]
        # exact for the top 4 by |attribution|, and rank 1..4 are exactly those
        assert sorted(s["attribution_rank"] for s in exact) == [1, 2, 3, 4]
        assert all(s["exact_q"] is not None and s["exact_ci_low"] <= s["exact"] <= s["exact_ci_high"] for s in exact)
        # every layer's top 3 by |attribution| is listed, nothing else besides the exact units
        listed = {(s["layer"], s["neuron"]) for s in rows}
        expected = {(s["layer"], s["neuron"]) for s in exact}
        for layer in range(2):
            expected |= set(t[t.layer == layer].assign(a=t.attribution.abs()).nlargest(3, "a").set_index(["layer", "neuron"]).index)
        assert listed == expected
        # the JSON rows and the table agree, and the per-layer summary is the table's
        by_unit = t.set_index(["layer", "neuron"])
        for s in rows:
            assert s["attribution"] == by_unit.loc[(s["layer"], s["neuron"]), "attribution"]
            assert s["attribution_rank"] == by_unit.loc[(s["layer"], s["neuron"]), "attribution_rank"]
        assert sorted(t.attribution_rank) == list(range(1, 513))
        for summary in doc["layers"][e]:
            a = t[t.layer == summary["layer"]].attribution
            assert summary["max_abs_attribution"] == a.abs().max() and abs(summary["sum_attribution"] - a.sum()) < 1e-12
            assert summary["argmax_neuron"] == int(t.neuron[a.abs().idxmax()])
        assert doc["attribution_vs_exact"][e] is not None and doc["attribution_vs_exact"][e] > 0
    n_clusters = doc["pairs"]["gratitude"]["n_clusters"]
    assert doc["pairs"]["gratitude"] == {"n_pairs": 10, "n_pairs_used": 10, "n_clusters": n_clusters,
                                        "half": "all", "exact_half": "all", "n_expressions": 10, "n_expressions_total": 10,
                                        "exact_n_pairs": 10, "exact_n_pairs_used": 10, "exact_n_clusters": n_clusters}


def test_exact_top_k_zero_patches_every_unit(tiny_dir: Path) -> None:
    model = load_model(str(tiny_dir))
    pairs = {"anger": _subset(load_pairs("anger", "baseline"), 6)}
    cfg = us_units.UnitScreeningConfig(model="m", profile="baseline", emotions=("anger",), positions="span", exact_top_k=0, n_resamples=100, split=False)
    doc = us_units.screen(model, cfg, pairs).doc
    assert doc["d_mlp"] == 64 and len(doc["scores"]) == 2 * 64
    assert all(s["exact"] is not None for s in doc["scores"])
    assert us_contract.ranking_score(doc["scores"]) == "exact"


def test_model_without_mlp_units_is_refused() -> None:
    spec = ModelSpec(name="attn-only", family="gpt2", n_layers=2, n_heads=4, d_head=16, d_mlp=0, bos_id=0, pad_id=0)
    with pytest.raises(InputError, match="attn-only has no MLP units"):
        us_units.check_has_units(spec)


# --- mlp-top:K --------------------------------------------------------------------------------


def _unit_doc(rows: list[dict], emotions: Sequence[str] = ("anger", "gratitude"), top_per_layer: int = 10) -> dict:
    full = [{"exact": None, "attribution_rank": 1, **r} for r in rows]
    return {"schema": us_contract.UNIT_SCORES_SCHEMA, "model": "m", "profile": "baseline", "n_layers": 2, "d_mlp": 8,
            "emotions": list(emotions), "params": {"top_per_layer": top_per_layer}, "scores": full}


def test_top_units_ranks_by_exact_then_ties_by_position(tmp_path: Path) -> None:
    rows = [
        {"layer": 1, "neuron": 5, "emotion": "anger", "exact": 0.3, "attribution": 9.0},
        {"layer": 0, "neuron": 7, "emotion": "anger", "exact": -0.5, "attribution": 0.1},
        {"layer": 1, "neuron": 2, "emotion": "anger", "exact": 0.3 + 1e-9, "attribution": 0.0},  # ties 1:5 at 1e-6
        {"layer": 0, "neuron": 1, "emotion": "anger", "attribution": 50.0},  # no exact: not ranked
        {"layer": 0, "neuron": 0, "emotion": "gratitude", "exact": 2.0, "attribution": 0.0},
    ]
    f = write_json(tmp_path / "u.json", _unit_doc(rows))
    assert us_units.top_units(f, "anger", 3) == ((0, 7), (1, 2), (1, 5))
    with pytest.raises(InputError, match=r"ranks only 3 units for anger by exact .*--exact-top-k >= 4"):
        us_units.top_units(f, "anger", 4)
    with pytest.raises(InputError, match="no scores for emotion 'apology'"):
        us_units.top_units(f, "apology", 1)
    with pytest.raises(InputError, match="unit screening file .* does not exist; run `python -m analysis.unit_screening`"):
        us_units.top_units(tmp_path / "missing.json", "anger", 1)
    head_file = write_json(tmp_path / "h.json", {"schema": "emotion-heads/head-scores/v1", "scores": []})
    with pytest.raises(InputError, match="expected 'emotion-heads/unit-scores/v1'"):
        us_units.top_units(head_file, "anger", 1)


def test_top_units_falls_back_to_attribution_within_what_the_file_keeps(tmp_path: Path) -> None:
    rows = [{"layer": layer, "neuron": n, "emotion": "anger", "attribution": (-1) ** n * (10 * layer + n)} for layer in range(2) for n in range(2)]
    f = write_json(tmp_path / "u.json", _unit_doc(rows, emotions=("anger",), top_per_layer=2))
    assert us_units.top_units(f, "anger", 2) == ((1, 1), (1, 0))
    with pytest.raises(InputError, match="by attribution; rerun it with --top-per-layer >= 3"):
        us_units.top_units(f, "anger", 3)


def test_format_top_lists_units_with_intervals(unit_dirs: dict[str, Path]) -> None:
    rows = [
        {"layer": 1, "neuron": 5, "emotion": "anger", "exact": -0.25, "attribution": 0.1, "exact_ci_low": -0.3,
         "exact_ci_high": -0.2, "exact_q": 0.01},
        {"layer": 0, "neuron": 3, "emotion": "anger", "exact": 0.125, "attribution": 0.1, "exact_ci_low": 0.1,
         "exact_ci_high": 0.15, "exact_q": 0.02},
    ]
    text = us_units.format_top(_unit_doc(rows, emotions=("anger",)), n=2)
    lines = text.splitlines()
    assert lines[0] == "Top 2 MLP units by |exact| (m, baseline):"
    assert lines[1].startswith("  1. Layer 1, Neuron 5, Emotion: anger, exact: -0.250000  95% CI [-0.3, -0.2]  q=0.01")
    assert lines[2].startswith("  2. Layer 0, Neuron 3")


# --- the command line -------------------------------------------------------------------------


def call(main: Callable[[Sequence[str]], object], argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        rc = 0
    except SystemExit as exit_:
        rc = int(exit_.code or 0)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


BAD = {
    "unknown emotion": (["--emotions", "joy"], "unknown emotion 'joy'"),
    "repeated emotion": (["--emotions", "anger", "anger"], "given twice"),
    "unknown positions": (["--positions", "first"], "unknown positions 'first'"),
    "negative k": (["--exact-top-k", "-1"], "--exact-top-k must be >= 0"),
    "zero resamples": (["--n-resamples", "0"], "--n-resamples"),
    "pickle output": (["--output", "{out}/u.pkl"], "pickled outputs are refused"),
    "table not parquet": (["--table", "{out}/u.csv"], "must end in .parquet"),
    "same file": (["--table", "{out}/u.json"], "must end in .parquet"),
    "unknown profile": (["--profile", "nope"], "nope"),
    "unavailable model": (["--model", "EleutherAI/not-here"], "not available"),
    "unknown flag": (["--heads", "3"], "unrecognized arguments"),
    "bad params": (["--params", "{out}/missing.yaml"], "missing.yaml does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_bad_input_is_one_line_exit_2_and_no_file(
    case: str, tmp_path: Path, unit_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str], chdir_repo: Path
) -> None:
    extra, needle = BAD[case]
    out = tmp_path / "out"
    argv = ["--model", str(unit_dirs["gpt2"]), "--output", str(out / "u.json"), "--emotions", "anger",
            "--positions", "last", "--exact-top-k", "2", "--n-resamples", "100"]
    rc, _, err = call(us.main, [*argv, *(x.format(out=out) for x in extra)], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (case, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (case, err)
    assert not out.exists(), case


def test_cli_refuses_nan_and_leaves_no_file(tmp_path: Path, tokenizer_dir: Path, capsys: pytest.CaptureFixture[str], chdir_repo: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = save_random_model("gpt2", tmp_path / "nan", tokenizer_dir=tokenizer_dir, d_model=16, n_heads=2, seed=2)
    weights = load_file(path / "model.safetensors")
    weights["transformer.h.1.mlp.c_proj.weight"][:, :] = float("nan")
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "out" / "u.json"
    rc, _, err = call(us.main, ["--model", str(path), "--output", str(out), "--emotions", "anger", "--positions", "last",
                                "--exact-top-k", "2", "--n-resamples", "100"], capsys)
    assert rc == 2 and "refusing to write" in err and err.count("\n") == 1, err
    assert not out.exists() and not out.with_suffix(".parquet").exists()


def test_cli_writes_json_and_table(tmp_path: Path, unit_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str], chdir_repo: Path) -> None:
    out = tmp_path / "alignment" / "unit_scores_m.json"
    rc, stdout, err = call(us.main, ["--model", str(unit_dirs["gpt_neox"]), "--output", str(out), "--emotions", "anger", "gratitude",
                                     "--positions", "span", "--exact-top-k", "3", "--n-resamples", "200", "--seed", "3"], capsys)
    assert rc == 0, err
    doc = json.loads(out.read_text())
    assert doc["schema"] == "emotion-heads/unit-scores/v1" and doc["emotions"] == ["anger", "gratitude"]
    assert doc["params"]["positions"] == "span" and doc["params"]["seed"] == 3 and doc["params"]["n_resamples"] == 200
    assert sum(s["exact"] is not None for s in doc["scores"]) == 2 * 3
    assert doc["attribution_table"] == str(out.with_suffix(".parquet"))
    table, meta = read_parquet(out.with_suffix(".parquet"), us_contract.UNIT_ATTRIBUTION_SCHEMA)
    assert len(table) == 2 * 2 * 256 and meta["model"] == str(unit_dirs["gpt_neox"])
    assert stdout.startswith("Top 10 MLP units by |exact|") and "Layer" in stdout and "Neuron" in stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["unit_scores_m.json", "unit_scores_m.parquet"]  # no temp files
    # the file serves mlp-top:K
    ranked = us_units.top_units(out, "anger", 3)
    exact = {(s["layer"], s["neuron"]): abs(s["exact"]) for s in doc["scores"] if s["emotion"] == "anger" and s["exact"] is not None}
    assert set(ranked) == set(exact) and [exact[u] for u in ranked] == sorted(exact.values(), reverse=True)


def test_default_output_is_the_pipeline_layout() -> None:
    assert str(unit_screening_file("baseline", "toy")) == "results/baseline/alignment/unit_scores_toy.json"


def test_cli_entry_point_is_one_line(tmp_path: Path) -> None:
    """`python -m analysis.unit_screening`, not just main(): one line, exit 2, no file."""
    out = tmp_path / "x" / "u.pkl"
    r = subprocess.run([sys.executable, "-m", "analysis.unit_screening", "--model", "toy", "--output", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and ".pkl" in lines[0]
    assert not out.parent.exists()


def test_table_is_every_unit(unit_dirs: dict[str, Path]) -> None:
    """Every unit's attribution is kept (Parquet), even those the JSON leaves out."""
    model = load_model(str(unit_dirs["gpt2"]))
    pairs = {"anger": _subset(load_pairs("anger", "baseline"), 6)}
    res = us_units.screen(model, us_units.UnitScreeningConfig(model="m", profile="baseline", emotions=("anger",), positions="last",
                                                  exact_top_k=1, n_resamples=100, top_per_layer=1, split=False), pairs)
    assert isinstance(res.table, pd.DataFrame) and len(res.table) == 512 and len(res.doc["scores"]) <= 3
    attr = us_units.attribution(model, pair_batches(model, pairs["anger"], "last", max_unaligned_share=0.0),
                          us_units.unit_activations(model, pair_batches(model, pairs["anger"], "last", max_unaligned_share=0.0).emotion),
                          (lexicon_ids(model.tokenizer)["anger"], lexicon_ids(model.tokenizer)["neutral"])).mean(0)
    assert np.array_equal(res.table.attribution.to_numpy(), attr.double().numpy().ravel())


# --- ground truth: the embedded model's planted units -------------------------------------------


@pytest.mark.parametrize("emotion", ["gratitude", "anger", "apology"])
def test_toy_planted_unit_is_recovered(toy_path: Path, emotion: str) -> None:
    """The toy plants one MLP unit per emotion (planted.json `units_by_emotion`): the unit
    screening must put it first by |exact|, and among the exact-patched units by attribution."""
    planted = json.loads((toy_path / "planted.json").read_text()).get("units_by_emotion")
    assert planted, f"{toy_path}/planted.json plants no MLP units: rebuild the toy (dvc repro model@toy)"
    model = load_model(str(toy_path))
    cfg = us_units.UnitScreeningConfig(model="toy", profile="baseline", emotions=(emotion,), n_resamples=1000)
    doc = us_units.screen(model, cfg, {emotion: load_pairs(emotion, "baseline")}).doc
    truth = {tuple(u) for u in planted[emotion]}
    exact = [s for s in doc["scores"] if s["exact"] is not None]
    top = min(exact, key=lambda s: (-abs(s["exact"]), s["layer"], s["neuron"]))
    assert (top["layer"], top["neuron"]) in truth, (top["layer"], top["neuron"], truth)
    assert top["exact_ci_low"] * top["exact_ci_high"] > 0 and top["exact_q"] < 0.05
