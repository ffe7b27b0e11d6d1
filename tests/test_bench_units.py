"""Issue 24 item 5: the unit screening scored against the benchmark's planted units.

analysis.bench.scoring.unit_metrics runs the project's unit screening (analysis.screening.units.screen)
with exact patching of every unit on the held-out half and scores attribution and exact over every
unit × emotion row against planted.json `units_by_emotion`: AUROC and precision@k.

The scoring is checked on hand-made rows whose numbers are worked out below; the plumbing (every
unit × emotion row comes back, none missing) on a tiny random model in seconds; the stored
validation's scores are read. The live run on the stored bench patches 6 × 512 units × 3 emotions
(19-23 min under load with 10000 draws per test, of which ~65 % the tests; the validate stage uses
ValidationConfig.unit_resamples 1000: the AUROC ranks the exact means), so it is `slow`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from analysis.base.contract import read_planted, read_validation, validation_file
from analysis.core.loading import load_model
from analysis.settings.params import load_params
from analysis.screening.common import ScreeningConfig
from analysis.screening.units import UnitScreeningConfig
from analysis.bench.scoring import (
    evaluation_pairs, ranking_quality, unit_metric_scores, unit_metrics, unit_rows, unit_screening_config, ValidationConfig,
)

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "results/models/bench"


def _row(emotion: str, layer: int, neuron: int, attribution: float, exact: float, copy_flag: bool = False) -> dict:
    return {"emotion": emotion, "layer": layer, "neuron": neuron, "attribution": attribution, "exact": exact, "copy_flag": copy_flag}


# Causal: anger's unit 1:2 and gratitude's 0:1 (a unit is causal for an emotion, not for every emotion:
# gratitude 1:2 and anger 0:1 are negatives).
CAUSAL = {"anger": [[1, 2]], "gratitude": [[0, 1]], "apology": []}
ROWS = [
    _row("anger", 1, 2, 0.9, 1.0),  # causal
    _row("gratitude", 0, 1, 0.2, -0.5),  # causal, a negative ΔM: ranked by |exact| = 0.5
    _row("anger", 0, 0, -0.8, 0.6, copy_flag=True),  # copy-flagged: exact scores 0, attribution 0.8
    _row("anger", 0, 1, 0.1, 0.05),
    _row("gratitude", 1, 2, 0.3, 0.7),
    _row("gratitude", 0, 0, 0.0, 0.0),
]


def test_unit_scores_on_hand_made_rows() -> None:
    got = unit_metric_scores(ROWS, CAUSAL)
    # exact, |score|: causal 1.0, 0.5; the rest 0 (flagged), 0.05, 0.7, 0.0.
    # AUROC = pairs (causal, other) won / 8: 1.0 beats all 4; 0.5 beats 0, 0.05, 0 and loses to 0.7 -> 7/8.
    # The top k = 2: 1.0 (causal) and 0.7 (gratitude 1:2) -> precision 1/2; gratitude 1:2 outranks a causal row.
    assert got["exact"]["auroc"] == pytest.approx(7 / 8)
    assert (got["exact"]["k"], got["exact"]["precision_at_k"], got["exact"]["n_outranking"]) == (2, 0.5, 1)
    assert [(r["emotion"], r["layer"], r["neuron"]) for r in got["exact"]["outranking"]] == [("gratitude", 1, 2)]
    # attribution, |score|: causal 0.9, 0.2; the rest 0.8 (the copy flag does not apply), 0.1, 0.3, 0.0.
    # 0.9 beats all 4; 0.2 beats 0.1 and 0.0 only -> 6/8. Top 2: 0.9 and 0.8 -> 1/2. Above 0.2: 0.8, 0.3.
    assert got["attribution"]["auroc"] == pytest.approx(6 / 8)
    assert (got["attribution"]["k"], got["attribution"]["precision_at_k"]) == (2, 0.5)
    assert [(r["emotion"], r["layer"], r["neuron"]) for r in got["attribution"]["outranking"]] == [("anger", 0, 0), ("gratitude", 1, 2)]
    # without the copy flag, anger 0:0 (0.6) would also beat the causal 0.5: 6/8
    unflagged = [dict(r, copy_flag=False) for r in ROWS]
    assert unit_metric_scores(unflagged, CAUSAL)["exact"]["auroc"] == pytest.approx(6 / 8)


def test_ranking_quality_perfect_and_empty() -> None:
    assert ranking_quality([3.0, 2.0, 1.0, 0.0], [1, 1, 0, 0]) == {"auroc": 1.0, "precision_at_k": 1.0, "k": 2}
    # a tie between a causal and another row counts 1/2 (Mann-Whitney); the top k keeps row order
    assert ranking_quality([1.0, 1.0, 0.0], [0, 1, 0]) == {"auroc": 0.75, "precision_at_k": 0.0, "k": 1}
    assert ranking_quality([1.0, 0.0], [0, 0]) == {"auroc": None, "precision_at_k": None, "k": 0}


def _cfg(folder: Path | str, **screening: object) -> ValidationConfig:
    p = load_params(REPO / "params.yaml")
    cfg = ValidationConfig.from_params(p, folder=str(folder), profile=p.profile)
    return dataclasses.replace(cfg, screening=dataclasses.replace(cfg.screening, **screening))


def test_unit_config_is_the_validate_stages_with_every_unit_patched() -> None:
    cfg = _cfg(BENCH)
    uc = unit_screening_config(SimpleNamespace(path=str(BENCH)), cfg)  # type: ignore[arg-type] - only .path is read
    assert isinstance(uc, UnitScreeningConfig) and uc.exact_top_k == 0 and not uc.split
    head = {f.name: getattr(cfg.screening, f.name) for f in dataclasses.fields(ScreeningConfig)}
    assert {f: getattr(uc, f) for f in head} == {**head, "model": str(BENCH), "exact_top_k": 0, "n_resamples": cfg.unit_resamples}


def test_every_unit_and_emotion_comes_back(tmp_path: Path) -> None:
    """The screening's JSON keeps every unit only with exact_top_k 0: unit_rows gets all of them
    (a tiny random GPT-2 with the bench's tokenizer, 2 layers x 64 units, over the bench's held-out pairs)."""
    from analysis.modelfacts.random_weights import save_random_model

    folder = save_random_model("gpt2", tmp_path / "tiny", tokenizer_dir=BENCH, d_model=16, n_heads=2, seed=1, init_std=0.2)
    model = load_model(str(folder))
    cfg = _cfg(folder, n_resamples=199, emotions=("anger", "apology"))
    pairs = evaluation_pairs(cfg, read_planted(BENCH)["benchmark"]["seed"])
    rows = unit_rows(model, cfg, pairs)
    units = model.spec.n_layers * int(model.spec.d_mlp)
    assert units == 2 * 64 and len(rows) == units * 2
    assert {(r["emotion"], r["layer"], r["neuron"]) for r in rows} == {
        (e, layer, n) for e in ("anger", "apology") for layer in range(2) for n in range(64)}
    got = unit_metric_scores(rows, {"anger": [[1, 5]], "apology": []})
    assert got["exact"]["k"] == 1 and 0.0 <= got["exact"]["auroc"] <= 1.0


def test_a_screening_that_keeps_some_units_only_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a top-k the JSON keeps each layer's top units only: an AUROC over them would be over a subset."""
    import analysis.bench.scoring as v

    spec = SimpleNamespace(n_layers=1, d_mlp=3)
    kept = [dict(_row("anger", 0, n, 0.1, 0.1)) for n in (0, 2)]
    monkeypatch.setattr(v, "screen_units", lambda model, uc, pairs: SimpleNamespace(doc={"scores": kept}))
    cfg = _cfg(BENCH, emotions=("anger",))
    with pytest.raises(RuntimeError, match="2 rows, 2 with an exact score; expected every one of 3 units x 1 emotions"):
        unit_rows(SimpleNamespace(path=str(BENCH), spec=spec), cfg, {})  # type: ignore[arg-type]


def test_criteria_and_summary_read_the_unit_metrics() -> None:
    from analysis.reporting.bench_tables import criteria, THRESHOLDS, validation_summary

    stored = {**read_validation(REPO / validation_file("baseline")), "unit_metrics": None}  # as the sweep's runs: no unit rows
    before = criteria(stored)
    metrics = unit_metric_scores(ROWS, CAUSAL)
    rows = criteria({**stored, "unit_metrics": metrics})
    added = rows[1:3]
    assert len(rows) == len(before) + 2 and rows[:1] + rows[3:] == before
    assert added[0] == ("exact: AUROC over the causal MLP units", 7 / 8, ">= 0.95", False)
    assert added[1] == ("exact: precision@2 over the causal MLP units", 0.5, ">= 0.95", False)
    assert THRESHOLDS["unit_auroc"] == 0.95
    flat = validation_summary({**stored, "unit_metrics": metrics})
    assert flat["validation.units.exact.auroc"] == 7 / 8 and flat["validation.units.attribution.precision_at_k"] == 0.5


def test_stored_unit_screening_finds_the_planted_units() -> None:
    """The validate stage's stored unit screening of the bench (every unit x emotion row): the planted
    units (planted.json units_by_emotion: the polysemantic unit for gratitude and anger, the saturation
    unit for apology) rank first by |exact| (criteria: AUROC and precision@k >= 0.95)."""
    planted = read_planted(BENCH)
    u = read_validation(REPO / validation_file("baseline"))["unit_metrics"]
    assert u["n_rows"] == 6 * 512 * 3 and u["truth"] == planted["units_by_emotion"]
    assert u["exact"]["k"] == sum(len(us) for us in planted["units_by_emotion"].values()) == 3
    assert u["exact"]["auroc"] >= 0.95 and u["exact"]["precision_at_k"] >= 0.95 and u["exact"]["n_outranking"] == 0


@pytest.mark.slow
def test_bench_unit_screening_finds_the_planted_units() -> None:
    """The stored bench, the validate stage's config: exact patching ranks the planted units first
    (AUROC >= 0.95, issue 24 item 5). Measured 2026-12-03: exact 0.99995, attribution 0.99989 (k = 2,
    precision@2 0.5 for both: the saturation structure's unit, a large true effect on apology that
    planted.json's units_by_emotion did not list yet, ranks 2nd), 23 min on 2 cores under load 6-7."""
    planted = read_planted(BENCH)
    cfg = _cfg(BENCH)
    pairs = evaluation_pairs(cfg, planted["benchmark"]["seed"])
    start = time.perf_counter()
    got = unit_metrics(load_model(str(BENCH)), cfg, pairs, planted["units_by_emotion"])
    print(f"unit screening of bench: {time.perf_counter() - start:.0f} s; exact {got['exact']}; attribution {got['attribution']}")
    assert got["n_rows"] == 6 * 512 * 3
    assert got["exact"]["k"] == sum(len(us) for us in planted["units_by_emotion"].values())
    assert got["exact"]["auroc"] >= 0.95
