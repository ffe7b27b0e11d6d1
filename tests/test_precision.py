"""Device, dtype and batching through the stages: several sites per forward give the one-site
results (1e-5), bfloat16 meets its stated tolerance against float32, outputs record both, and a
run the device cannot hold stops before it loads the weights."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch

from analysis.core.loading import load_model
from analysis.core.prompts import load_pairs
from analysis.core.sites import head_sites, unit_sites
from analysis.settings.hardware import TOLERANCE
from analysis.interventions.exact import component_inputs, exact_patching_sites, plain_hf, sites_per_forward
from analysis.measures.metrics import lexicon_ids
from analysis.core.budget import bytes_per, patched_forward_bytes
from analysis.modelfacts.architectures import from_hf_config
from analysis.screening.common import copy_keep, pair_batches, ScreeningConfig, unchanged_prefix
from analysis.screening.heads import screen

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(toy_path: Path):  # noqa: ANN201
    return load_model(str(toy_path))


def _forwards(hf: torch.nn.Module) -> tuple[list[int], object]:
    """Count the base model's forwards (block inputs, the prefix cache, each patched run)."""
    calls: list[int] = []
    handle = hf.base_model.register_forward_pre_hook(lambda m, a, k: calls.append(1), with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("positions", ["all", "last"])
def test_batched_sites_equal_one_site_per_forward(toy, positions: str, one_thread: None) -> None:  # noqa: ANN001
    """Heads and MLP units of every layer, with the copy-free M, at 1, 3 and all sites of a layer
    per forward: the same numbers within 1e-5, and the forwards the batching promises."""
    emotion = "gratitude"
    pairs = load_pairs(emotion, "baseline")
    pb = pair_batches(toy, pairs, positions, max_unaligned_share=0.0)
    lex = lexicon_ids(toy.tokenizer)
    ids = (lex[emotion], lex["neutral"])
    spec = toy.spec
    sites = [*head_sites((layer, h) for layer in range(spec.n_layers) for h in range(spec.n_heads)),
             *unit_sites((layer, u) for layer in range(spec.n_layers) for u in (5, 137, 301))]
    hf = plain_hf(toy)
    acts = component_inputs(hf, spec.family, pb.emotion, sites, spec.d_head)
    keep = copy_keep(toy, pairs, pb, emotion, ids)
    prefix = unchanged_prefix(pb)
    per_layer = len(sites) // spec.n_layers  # 4 heads + 3 units of every layer
    runs = {}
    for k in (1, 3, per_layer):
        cf: dict = {}
        calls, handle = _forwards(hf)
        try:
            out = exact_patching_sites(toy, pb.neutral, acts, pb.idx, pb.mask, prefix, sites, ids, copy_free=(keep, cf), batch=k)
        finally:
            handle.remove()
        # one clean forward for the block inputs, one for the prefix's cache, then the patched runs
        assert len(calls) == 1 + (prefix > 0) + spec.n_layers * math.ceil(per_layer / k)
        assert list(out) == sites
        runs[k] = (out, cf)
    ref, ref_cf = runs[1]
    assert max(float(v.abs().max()) for v in ref.values()) > 0.1  # the planted heads move M
    for k in (3, per_layer):
        out, cf = runs[k]
        assert max(float((out[s] - ref[s]).abs().max()) for s in sites) <= 1e-5
        assert max(float((cf[s] - ref_cf[s]).nan_to_num().abs().max()) for s in sites) <= 1e-5


def test_the_budget_sets_sites_per_forward(toy) -> None:  # noqa: ANN001
    hf = plain_hf(toy)
    need = patched_forward_bytes(from_hf_config(hf.config.to_dict()), 35, 10, 14, bytes_per(torch.float32))
    # by hand for the toy (4 layers, d_model 64 per its config, d_mlp 4 x 64, 4 heads)
    cfg = hf.config
    d, m, h, n = cfg.n_embd, cfg.n_inner or 4 * cfg.n_embd, cfg.n_head, cfg.n_layer
    assert need == 35 * (2 * n * 14 * d + 10 * (6 * d + 2 * m + 2 * h * 14)) * 4

    def k_for(budget: float) -> int:
        model = dataclasses.replace(toy, precision=dataclasses.replace(toy.precision, budget_bytes=budget))
        return sites_per_forward(model, hf, 35, 10, 14)

    assert k_for(0.0) == 1  # the CPU's auto: one site per forward, as before batching
    assert k_for(need * 7.5) == 7 and k_for(need * 0.5) == 1


@pytest.fixture(scope="module")
def toy_screenings(toy_path: Path) -> dict[str, dict]:
    pairs = {e: load_pairs(e, "baseline") for e in ("gratitude", "anger", "apology")}
    cfg = ScreeningConfig(model="toy", profile="baseline", emotions=tuple(pairs), n_resamples=200)
    return {dtype: screen(load_model(str(toy_path), dtype=dtype), cfg, pairs) for dtype in ("float32", "bfloat16")}


def test_bfloat16_screening_meets_its_tolerance(toy_screenings: dict[str, dict], toy_path: Path) -> None:
    """The whole toy screening in bfloat16 on the CPU against float32: every head's exact ΔM and
    Δattn within TOLERANCE["bfloat16"]; the planted heads still come first; each records its dtype."""
    f32, bf16 = toy_screenings["float32"], toy_screenings["bfloat16"]
    assert f32["params"]["dtype"] == "float32" and bf16["params"]["dtype"] == "bfloat16"
    assert f32["params"]["device"] == bf16["params"]["device"] == "cpu"
    for key in ("exact", "delta_attn"):
        worst = max(abs(a[key] - b[key]) for a, b in zip(f32["scores"], bf16["scores"], strict=True))
        print(f"bfloat16 vs float32, max |Δ {key}| = {worst:.4f} (tolerance {TOLERANCE['bfloat16']})")
        assert 0 < worst <= TOLERANCE["bfloat16"]  # > 0: the run really was in another precision
    planted = json.loads((toy_path / "planted.json").read_text())["by_emotion"]
    for emotion, heads in planted.items():
        rows = [s for s in bf16["scores"] if s["emotion"] == emotion]
        top = max(rows, key=lambda s: abs(s["exact"]))
        assert [top["layer"], top["head"]] in heads


def test_a_run_that_does_not_fit_stops_before_loading(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, chdir_repo: Path
) -> None:
    """check_fits in the stage: 100 MB of device memory cannot hold the toy's stages (the
    process alone is estimated at 0.65 GB); one line naming the fixes, exit 2, no file, no load."""
    import analysis.core.loading as loading
    import analysis.head_screening as stage
    import analysis.core.budget as plan

    monkeypatch.setattr(plan, "device_memory_bytes", lambda device: 100e6)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("loaded the weights"))
    out = tmp_path / "s.json"
    with pytest.raises(SystemExit) as exc:
        stage.main(["--model", "toy", "--output", str(out), "--device", "cpu"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(lines) == 1, lines
    assert re.match(r"error: screen(_units)? needs about \d+\.\d GB in float32 but cpu has 0\.1 GB; use ", lines[0]), lines[0]
    assert "a device with at least" in lines[0]
    assert not out.exists()


def test_check_fits_counts_the_budget_and_names_a_smaller_one() -> None:
    """On a GPU the batched sites take memory too: a budget that does not fit is named down to
    what is left, and the budget named fits."""
    from analysis.modelfacts.architectures import PUBLIC
    from analysis.settings.hardware import resolve
    from analysis.base.errors import InputError
    from analysis.core.budget import check_fits, stage_peaks, Workload

    gpt2, w = PUBLIC["gpt2"], Workload(70, 3, 70)
    unbatched = max(stage_peaks(gpt2, w, torch.float32).values())
    site = patched_forward_bytes(gpt2, 70, 20, 20, 4)
    # by hand: GPT-2 small, 70 prompts x 20 tokens, float32
    assert site == 70 * (2 * 12 * 20 * 768 + 20 * (6 * 768 + 2 * 3072 + 2 * 12 * 20)) * 4
    peaks = stage_peaks(gpt2, w, torch.float32, budget=100e9)  # more than any layer's sites need
    assert peaks["screen"] == stage_peaks(gpt2, w, torch.float32)["screen"] + 12 * site
    assert peaks["screen_units"] == stage_peaks(gpt2, w, torch.float32)["screen_units"] + 20 * site
    cpu = dataclasses.replace(resolve("cpu"), budget_bytes=100e9)
    available = unbatched + 0.5e9  # the unbatched run fits; 20 units' sites (~1 GB) do not
    with pytest.raises(InputError) as err:
        check_fits(gpt2, w, cpu, available=available)
    named = float(re.search(r"use memory_budget_gb ([\d.]+) \(batched sites", str(err.value))[1])
    assert 0.49 <= named <= 0.5
    check_fits(gpt2, w, dataclasses.replace(cpu, budget_bytes=named * 1e9), available=available)
