"""The plots stage: five PNGs and three CSVs from synthetic screening / ablation / patching files.

Inputs are built here with the real schemas (realistic numbers for a 4 × 4 toy with planted heads
3:1 gratitude, 3:2 anger, 3:0 apology); CSV contents are checked against them by hand, the
figure objects are inspected (panels, planted boxes), re-runs are byte-identical, and bad input
gives one `error:` line, exit 2 and no files.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from analysis.base import contract as hp_contract
from analysis import head_plots as hp
from analysis.plots import data as hp_data
from analysis.plots import figures as hp_figures
from analysis.base.io import write_json

REPO = Path(__file__).resolve().parents[1]
CSV_REL = 5e-6  # CSVs hold 6 significant digits (analysis.base.io.FLOAT_FORMAT): at most half a unit of the 6th
EMOTIONS = ("gratitude", "anger", "apology")
PLANTED = {"gratitude": [[3, 1]], "anger": [[3, 2]], "apology": [[3, 0]]}
METRICS = ("sentiment", "kw_gratitude", "kw_anger", "kw_apology", "kw_neutral", "changed", "emotion_score", "kl")


def effect(mean: float, half: float, p: float = 0.01) -> dict:
    return {"n": 70, "mean": mean, "ci_low": mean - half, "ci_high": mean + 0.8 * half, "p": p, "n_clusters": 14}


def screening_doc(model: str = "toy", profile: str = "baseline", exact: str = "all", n_layers: int = 4, n_heads: int = 4) -> dict:
    """exact: 'all' (every head), 'some' (only layer 3), 'none' (attribution only)."""
    rng = np.random.default_rng(0)
    scores = []
    for emotion in EMOTIONS:
        for layer in range(n_layers):
            for head in range(n_heads):
                planted = [layer, head] in PLANTED[emotion]
                ex = float(rng.normal(0, 0.05)) + (2.5 if planted else 0.0)
                if emotion == "anger" and planted:
                    ex = -ex  # a negative effect must be drawn blue and ranked by |score|
                has = exact == "all" or (exact == "some" and layer == 3)
                scores.append({
                    "layer": layer, "head": head, "emotion": emotion,
                    "delta_attn": float(rng.normal(0, 0.01)),
                    "attribution": ex * 0.9 + float(rng.normal(0, 0.02)),
                    "exact": ex if has else None,
                    "exact_ci_low": ex - 0.1 if has else None,
                    "exact_ci_high": ex + 0.12 if has else None,
                    "exact_p": 0.001 if has else None, "exact_q": 0.01 if has else None,
                    "exact_n": 70 if has else None, "exact_n_clusters": 14 if has else None,
                })
    return {
        "schema": hp_contract.HEAD_SCORES_SCHEMA, "model": model, "profile": profile, "n_layers": n_layers, "n_heads": n_heads,
        "emotions": list(EMOTIONS), "scores": scores, "attribution_vs_exact": {e: 0.9 for e in EMOTIONS},
    }


def experiment_doc(kind: str, emotion: str, model: str = "toy", cumulative_k: int = 3, profile: str = "baseline") -> dict:
    i = EMOTIONS.index(emotion)
    sign = -1.0 if kind == "ablation" else 1.0
    base = {m: 0.1 * (j + 1) for j, m in enumerate(METRICS)}
    base.update(sentiment=0.6 if kind == "ablation" else 0.05, emotion_score=1.5 if kind == "ablation" else -1.0)
    base[f"kw_{emotion}"] = 1.2 if kind == "ablation" else 0.05
    change = {m: 0.01 * (j - 3) for j, m in enumerate(METRICS)}
    change.update(sentiment=sign * (0.3 + 0.05 * i), emotion_score=sign * (2.0 + 0.2 * i), changed=0.8, kl=0.4)
    change[f"kw_{emotion}"] = sign * (1.0 + 0.1 * i)
    effects = {m: effect(change[m], 0.1 + 0.02 * j) for j, m in enumerate(METRICS)}
    head = PLANTED[emotion][0]
    heads_by_rank = [head, [0, 0], [1, 2]]
    cumulative = [
        {"k": k, "heads": heads_by_rank[:k], "intervened": {m: base[m] + change[m] for m in METRICS},
         "effects": {m: effect(change[m] * (1 + 0.1 * (k - 1)), 0.1 + 0.05 * k) for m in METRICS}}
        for k in range(1, cumulative_k + 1)
    ]
    doc = {
        "schema": hp_contract.EXPERIMENT_SCHEMAS[kind], "model": model, "profile": profile, "emotion": emotion,
        "heads": [head], "head_spec": "top:1", "n_prompts": 70,
        "baseline": base, "intervened": {m: base[m] + change[m] for m in METRICS},
        "effects": effects, "cumulative": cumulative,
    }
    doc["method" if kind == "ablation" else "positions"] = "zero" if kind == "ablation" else "all"
    return doc


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path] | Path]:
    root = tmp_path_factory.mktemp("plot_inputs")
    scores = write_json(root / "head_scores_toy.json", screening_doc())
    out: dict[str, list[Path] | Path] = {"scores": [scores], "ablation": [], "patching": []}
    for kind in ("ablation", "patching"):
        for e in EMOTIONS:
            out[kind].append(write_json(root / f"{kind}_toy_{e}.json", experiment_doc(kind, e)))  # type: ignore[union-attr]
    out["planted"] = write_json(root / "planted.json", {"schema": hp_contract.PLANTED_SCHEMA, "by_emotion": PLANTED, "heads": [[3, 0], [3, 1], [3, 2]]})
    return out


def argv(inputs: dict, out: Path, *extra: str, planted: bool = True) -> list[str]:
    a = ["--profile", "baseline", "--head-scores", *map(str, inputs["scores"]),
         "--ablation-file", *map(str, inputs["ablation"]), "--patching-file", *map(str, inputs["patching"]),
         "--output-dir", str(out), "--top-n", "5", *extra]
    return a + (["--planted", str(inputs["planted"])] if planted else [])


def config(inputs: dict, out: Path, **kw: object) -> hp_data.PlotConfig:
    base = dict(profile="baseline", head_scores=tuple(inputs["scores"]), ablation_files=tuple(inputs["ablation"]),
                patching_files=tuple(inputs["patching"]), output_dir=out, top_n=5, planted=inputs["planted"])
    base.update(kw)
    return hp_data.PlotConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rendered(inputs: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plots") / "heads"
    hp.main(argv(inputs, out))
    return out


def panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]


# --- outputs --------------------------------------------------------------------------------


def test_every_file_is_written(rendered: Path) -> None:
    assert sorted(p.name for p in rendered.iterdir()) == sorted(hp_figures.FILES.values())  # no temp files left
    for name in hp_figures.FILES.values():
        data = (rendered / name).read_bytes()
        if name.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            assert b"Software" not in data and b"matplotlib" not in data.lower()


def test_head_scores_csv_matches_input(rendered: Path) -> None:
    doc = screening_doc()
    csv = pd.read_csv(rendered / "head_scores.csv")
    assert list(csv.columns) == hp_data.SCORE_COLUMNS
    assert len(csv) == len(doc["scores"]) == 48
    for s, row in zip(doc["scores"], csv.itertuples(), strict=True):
        assert (row.layer, row.head, row.emotion, row.kind) == (s["layer"], s["head"], s["emotion"], "exact")
        assert math.isclose(row.score, s["exact"], rel_tol=CSV_REL)
        assert math.isclose(row.ci_low, s["exact_ci_low"], rel_tol=CSV_REL)


def test_effects_csv_matches_input(rendered: Path) -> None:
    csv = pd.read_csv(rendered / "effects.csv")
    assert list(csv.columns) == hp_data.EFFECT_COLUMNS
    assert len(csv) == 2 * 3 * len(METRICS)
    for kind in ("ablation", "patching"):
        for e in EMOTIONS:
            doc = experiment_doc(kind, e)
            for m in METRICS:
                row = csv[(csv.experiment == kind) & (csv.emotion == e) & (csv.metric == m)].iloc[0]
                assert math.isclose(row.change, doc["effects"][m]["mean"], rel_tol=CSV_REL, abs_tol=1e-12)
                assert math.isclose(row.ci_low, doc["effects"][m]["ci_low"], rel_tol=CSV_REL, abs_tol=1e-12)
                assert math.isclose(row.baseline, doc["baseline"][m], rel_tol=CSV_REL)
                assert math.isclose(row.intervened, doc["intervened"][m], rel_tol=CSV_REL)
                assert math.isclose(row.p, doc["effects"][m]["p"], rel_tol=CSV_REL)


def test_cumulative_csv_matches_input(rendered: Path) -> None:
    csv = pd.read_csv(rendered / "cumulative.csv")
    assert list(csv.columns) == hp_data.CUMULATIVE_COLUMNS
    assert len(csv) == 2 * 3 * 3 * len(METRICS)
    doc = experiment_doc("patching", "anger")
    rows = csv[(csv.experiment == "patching") & (csv.emotion == "anger") & (csv.metric == "emotion_score")]
    assert list(rows.k) == [1, 2, 3]
    assert np.allclose(rows["mean"], [c["effects"]["emotion_score"]["mean"] for c in doc["cumulative"]])
    assert np.allclose(rows.ci_high, [c["effects"]["emotion_score"]["ci_high"] for c in doc["cumulative"]])


def test_top_heads_ordered_by_absolute_score(inputs: dict, tmp_path: Path) -> None:
    data = hp_data.load(config(inputs, tmp_path))
    top = hp_figures.top_rows(data.scores, 5)
    assert list(top.score.abs()) == sorted(data.scores.score.abs(), reverse=True)[:5]
    # the three planted heads lead, the negative anger head among them
    assert {(r.layer, r.head, r.emotion) for r in top.head(3).itertuples()} == {(3, 1, "gratitude"), (3, 2, "anger"), (3, 0, "apology")}
    fig = hp_figures.top_heads_figure(data, 5, tmp_path / "top.png")
    ax = panels(fig)[0]
    ticks = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True), reverse=True)
    assert len(ticks) == 5
    first = ticks[0][1]  # the label drawn at the top is rank 1
    assert first.startswith(f"L{top.layer[0]} H{top['head'][0]} · {top.emotion[0]}") and first.endswith("★")


def test_heatmap_panels_and_planted_boxes(inputs: dict, tmp_path: Path) -> None:
    data = hp_data.load(config(inputs, tmp_path))
    fig = hp_figures.heatmap_figure(data, tmp_path / "heat.png")
    axes = panels(fig)
    assert len(axes) == len(EMOTIONS)
    colourbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colourbars) == 1 and "exact patching" in colourbars[0].get_ylabel() and "nats" in colourbars[0].get_ylabel()
    for ax, emotion in zip(axes, EMOTIONS, strict=True):
        assert ax.get_title() == emotion
        boxes = [p for p in ax.patches if isinstance(p, Rectangle) and (p.get_gid() or "").startswith("planted:")]
        (layer, head), = PLANTED[emotion]
        assert [(b.get_gid(), b.get_xy(), b.get_width()) for b in boxes] == [(f"planted:{layer}:{head}", (head - 0.5, layer - 0.5), 1)]
        image = ax.images[0]
        assert image.norm.vmin == -image.norm.vmax  # centred on 0
        assert np.isclose(image.get_array()[layer, head], data.scores.query(
            "emotion == @emotion and layer == @layer and head == @head").score.iloc[0])


def test_no_planted_boxes_without_flag(inputs: dict, tmp_path: Path) -> None:
    data = hp_data.load(config(inputs, tmp_path, planted=None))
    fig = hp_figures.heatmap_figure(data, tmp_path / "heat.png")
    assert not any(isinstance(p, Rectangle) for ax in panels(fig) for p in ax.patches)


def test_attribution_fallback_is_labelled(inputs: dict, tmp_path: Path) -> None:
    for exact, kinds, label in (("none", {"attribution"}, "attribution estimate"), ("some", {"exact", "attribution"}, "attribution")):
        path = write_json(tmp_path / f"scores_{exact}.json", screening_doc(exact=exact))
        data = hp_data.load(config(inputs, tmp_path, head_scores=(path,)))
        assert set(data.scores.kind) == kinds
        fig = hp_figures.heatmap_figure(data, tmp_path / f"heat_{exact}.png")
        (cbar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert label in cbar.get_ylabel()
        if exact == "none":
            csv_scores = data.scores.set_index(["layer", "head", "emotion"]).score
            doc = screening_doc(exact="none")
            assert all(math.isclose(csv_scores[(s["layer"], s["head"], s["emotion"])], s["attribution"], rel_tol=CSV_REL) for s in doc["scores"])


def test_emotion_filter_and_comparison_panels(inputs: dict, tmp_path: Path) -> None:
    data = hp_data.load(config(inputs, tmp_path, emotion="anger"))
    assert set(data.scores.emotion) == set(data.effects.emotion) == set(data.cumulative.emotion) == {"anger"}
    assert len(panels(hp_figures.heatmap_figure(data, tmp_path / "h.png"))) == 1
    fig = hp_figures.comparison_figure(data, "patching", tmp_path / "p.png")
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == ["Own-emotion keywords", "Emotion score M", "Sentiment"]
    assert all(ax.get_ylabel() for ax in axes)


def test_two_models_one_row_each(inputs: dict, tmp_path: Path) -> None:
    gpt = write_json(tmp_path / "gpt.json", screening_doc(model="gpt2", exact="none", n_layers=6, n_heads=10))
    abl = write_json(tmp_path / "gpt_abl.json", experiment_doc("ablation", "gratitude", model="gpt2", cumulative_k=0))
    data = hp_data.load(config(inputs, tmp_path, head_scores=(*inputs["scores"], gpt), ablation_files=(*inputs["ablation"], abl)))
    assert data.models == ("toy", "gpt2") and set(data.planted) == {"toy"}
    assert len(panels(hp_figures.heatmap_figure(data, tmp_path / "h.png"))) == 2 * len(EMOTIONS)
    assert len(panels(hp_figures.comparison_figure(data, "ablation", tmp_path / "a.png"))) == 2 * 3
    hp_figures.cumulative_figure(data, tmp_path / "c.png")


def test_rerun_is_byte_identical(inputs: dict, rendered: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    hp.main(argv(inputs, out))
    for name in hp_figures.FILES.values():
        assert (out / name).read_bytes() == (rendered / name).read_bytes(), name


def test_no_cumulative_curve_still_draws(inputs: dict, tmp_path: Path) -> None:
    ab = [write_json(tmp_path / f"a_{e}.json", experiment_doc("ablation", e, cumulative_k=0)) for e in EMOTIONS]
    data = hp_data.load(config(inputs, tmp_path, ablation_files=tuple(ab)))
    assert set(data.cumulative.experiment) == {"patching"}
    fig = hp_figures.cumulative_figure(data, tmp_path / "c.png")
    assert any("no cumulative curve" in t.get_text() for ax in fig.axes for t in ax.texts)


# --- bad input ------------------------------------------------------------------------------


def _bad_cases(inputs: dict, tmp: Path) -> dict[str, list[str]]:
    wrong_schema = write_json(tmp / "wrong.json", {**experiment_doc("ablation", "anger"), "schema": "emotion-heads/patching/v1"})
    no_effects = experiment_doc("ablation", "anger")
    del no_effects["effects"]["emotion_score"]
    no_effects_path = write_json(tmp / "no_effects.json", no_effects)
    other_profile = write_json(tmp / "ext.json", screening_doc(profile="extended"))
    out = tmp / "out"
    return {
        "missing file": argv(inputs, out)[:3] + [str(tmp / "nope.json")] + argv(inputs, out)[4:],
        "wrong schema": [*argv(inputs, out), "--ablation-file", str(wrong_schema)],
        "missing metric": [*argv(inputs, out), "--ablation-file", str(no_effects_path)],
        "other profile": [*argv(inputs, out), "--head-scores", str(other_profile)],
        "top-n 0": [*argv(inputs, out), "--top-n", "0"],
        "emotion matches nothing": [*argv(inputs, out), "--emotion", "joy"],
        "missing flag": argv(inputs, out)[:-6],
    }


def test_bad_input_in_process(inputs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, args in _bad_cases(inputs, tmp_path).items():
        with pytest.raises(SystemExit) as exc:
            hp.main(args)
        err = capsys.readouterr().err
        assert exc.value.code == 2, name
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert not (tmp_path / "out").exists(), name
    err_lines = {}
    for name, args in _bad_cases(inputs, tmp_path).items():
        with pytest.raises(SystemExit):
            hp.main(args)
        err_lines[name] = capsys.readouterr().err
    assert "nope.json" in err_lines["missing file"]
    assert "emotion_score" in err_lines["missing metric"]
    assert "--top-n" in err_lines["top-n 0"]
    assert "joy" in err_lines["emotion matches nothing"]


def test_bad_input_subprocess(inputs: dict, tmp_path: Path) -> None:
    """The real entry point: one line on stderr, exit 2, no output folder."""
    out = tmp_path / "out"
    args = [*argv(inputs, out), "--emotion", "joy"]
    r = subprocess.run([sys.executable, "-m", "analysis.head_plots", *args], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("error: --emotion joy") and r.stderr.count("\n") == 1
    assert not out.exists()


# --- MLP units: unit_summary.png ------------------------------------------------------------

PLANTED_UNITS = {"gratitude": [[2, 5]], "anger": [[3, 7]], "apology": [[1, 30]]}  # apology's is not kept below


def unit_doc(model: str = "toy", profile: str = "baseline", n_layers: int = 4, d_mlp: int = 32) -> dict:
    """Per emotion: the top 3 units of each layer by |attribution|; exact for 4 of them (the
    planted one among them for gratitude and anger, with a large effect, negative for anger)."""
    rng = np.random.default_rng(1)
    scores = []
    for emotion in EMOTIONS:
        planted = tuple(PLANTED_UNITS[emotion][0])
        exact_units = {planted, (0, 1), (1, 2), (3, 3)} if emotion != "apology" else {(0, 1), (1, 2), (3, 3), (2, 4)}
        for layer in range(n_layers):
            neurons = sorted({(layer * 7 + k * 5) % d_mlp for k in range(3)} | {n for (lay, n) in exact_units if lay == layer})
            for neuron in neurons:
                big = (layer, neuron) == planted and emotion != "apology"
                attribution = float(rng.normal(0, 0.02)) + (0.9 if big else 0.0)
                has = (layer, neuron) in exact_units
                ex = attribution * 1.1 + float(rng.normal(0, 0.005)) if has else None
                if big and emotion == "anger":
                    attribution, ex = -attribution, -ex  # drawn below zero, ranked by |score|
                scores.append({
                    "layer": layer, "neuron": neuron, "emotion": emotion, "attribution": attribution,
                    "attribution_rank": 1 if big else 2 + len(scores) % 50, "exact": ex,
                    "exact_ci_low": ex - 0.05 if has else None, "exact_ci_high": ex + 0.04 if has else None,
                    "exact_p": 0.001 if has else None, "exact_q": 0.004 if has else None,
                    "exact_n": 70 if has else None, "exact_n_clusters": 14 if has else None,
                })
    return {
        "schema": hp_contract.UNIT_SCORES_SCHEMA, "model": model, "profile": profile, "n_layers": n_layers, "d_mlp": d_mlp,
        "emotions": list(EMOTIONS), "params": {"top_per_layer": 3}, "scores": scores,
    }


@pytest.fixture(scope="module")
def unit_inputs(inputs: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("unit_inputs")
    planted = {"schema": hp_contract.PLANTED_SCHEMA, "by_emotion": PLANTED, "units_by_emotion": PLANTED_UNITS}
    return {**inputs, "units": write_json(root / "unit_scores_toy.json", unit_doc()), "planted": write_json(root / "planted.json", planted)}


@pytest.fixture(scope="module")
def unit_rendered(unit_inputs: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("unit_plots") / "heads"
    hp.main([*argv(unit_inputs, out), "--unit-scores", str(unit_inputs["units"])])
    return out


def test_unit_files_are_written_beside_the_head_files(unit_rendered: Path) -> None:
    assert sorted(p.name for p in unit_rendered.iterdir()) == sorted([*hp_figures.FILES.values(), *hp_figures.UNIT_FILES.values()])
    data = (unit_rendered / "unit_summary.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and b"Software" not in data


def test_unit_summary_csv_matches_input(unit_rendered: Path) -> None:
    doc = unit_doc()
    csv = pd.read_csv(unit_rendered / "unit_summary.csv")
    assert list(csv.columns) == hp_data.UNIT_COLUMNS and len(csv) == len(doc["scores"])
    by_unit = csv.set_index(["emotion", "layer", "neuron"])
    for s in doc["scores"]:
        row = by_unit.loc[(s["emotion"], s["layer"], s["neuron"])]
        if s["exact"] is None:
            assert row.kind == "attribution" and math.isclose(row.score, s["attribution"], rel_tol=CSV_REL) and math.isnan(row.exact)
        else:
            assert row.kind == "exact" and math.isclose(row.score, s["exact"], rel_tol=CSV_REL)
            assert math.isclose(row.ci_low, s["exact_ci_low"], rel_tol=CSV_REL) and math.isclose(row.q, s["exact_q"], rel_tol=CSV_REL)
        assert bool(row.planted) == ([s["layer"], s["neuron"]] in PLANTED_UNITS[s["emotion"]])
    assert list(dict.fromkeys(csv.emotion)) == list(EMOTIONS)  # canonical emotion order
    assert csv.planted.sum() == 2  # apology's planted unit is not among the kept rows


def test_unit_summary_figure_panels_marks_and_labels(unit_inputs: dict, tmp_path: Path) -> None:
    data = hp_data.load(config(unit_inputs, tmp_path, unit_scores=(unit_inputs["units"],)))
    fig = hp_figures.unit_summary_figure(data, tmp_path / "u.png")
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == [f"{e} · 32 units per layer" for e in EMOTIONS]
    for ax, emotion in zip(axes, EMOTIONS, strict=True):
        layer, neuron = PLANTED_UNITS[emotion][0]
        marks = [line for line in ax.lines if (line.get_gid() or "").startswith("planted:")]
        assert [m.get_gid() for m in marks] == [f"planted:{layer}:{neuron}"]
        texts = [t.get_text() for t in ax.texts]
        if emotion == "apology":
            assert any("not kept" in t for t in texts)  # marked on the axis, not at a made-up value
        else:
            # the planted unit is the largest effect: labelled, and drawn at its exact value
            assert f"{layer}.{neuron}" in texts
            (y,) = marks[0].get_ydata()
            expected = data.units.query("emotion == @emotion and layer == @layer and neuron == @neuron").score.iloc[0]
            assert math.isclose(y, expected) and (y < 0) == (emotion == "anger")
        scores = data.units.query("emotion == @emotion").score.abs().sort_values(ascending=False).head(hp_figures.UNIT_LABELLED)
        labelled = int((scores >= hp_figures.UNIT_LABEL_MIN_FRACTION * scores.iloc[0]).sum())
        assert sum(1 for t in texts if t.count(".") == 1 and "\n" not in t) == labelled >= 1
        exact_points = [c for c in ax.collections if c.get_gid() == "exact"]
        assert len(exact_points) == 1 and len(exact_points[0].get_offsets()) == 4
        assert ax.get_xlim()[0] < 0 < 3 < ax.get_xlim()[1]


def test_unit_summary_rerun_is_byte_identical(unit_inputs: dict, unit_rendered: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    hp.main([*argv(unit_inputs, out), "--unit-scores", str(unit_inputs["units"])])
    for name in hp_figures.UNIT_FILES.values():
        assert (out / name).read_bytes() == (unit_rendered / name).read_bytes(), name


def test_unit_emotion_filter(unit_inputs: dict, tmp_path: Path) -> None:
    data = hp_data.load(config(unit_inputs, tmp_path, unit_scores=(unit_inputs["units"],), emotion="anger"))
    assert set(data.units.emotion) == {"anger"}
    assert len(panels(hp_figures.unit_summary_figure(data, tmp_path / "u.png"))) == 1


def test_bad_unit_inputs_are_one_line(unit_inputs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = write_json(tmp_path / "planted.json", {"schema": hp_contract.PLANTED_SCHEMA, "by_emotion": PLANTED,
                                                    "units_by_emotion": {"anger": [[3, 32]]}})
    malformed = write_json(tmp_path / "planted2.json", {"schema": hp_contract.PLANTED_SCHEMA, "by_emotion": PLANTED,
                                                       "units_by_emotion": {"anger": [3, 7]}})
    doc = unit_doc()
    doc["scores"].append(dict(doc["scores"][0]))
    twice = write_json(tmp_path / "twice.json", doc)
    out = tmp_path / "out"
    cases = {
        "head file as unit scores": (["--unit-scores", str(unit_inputs["scores"][0])], "expected 'emotion-heads/unit-scores/v1'"),
        "unit scored twice": (["--unit-scores", str(twice)], "is scored twice"),
        "planted unit outside": (["--unit-scores", str(unit_inputs["units"]), "--planted", str(outside)], "unit mlp:3:32 (anger) is outside"),
        "planted units malformed": (["--unit-scores", str(unit_inputs["units"]), "--planted", str(malformed)], "units_by_emotion.anger"),
    }
    for name, (extra, needle) in cases.items():
        with pytest.raises(SystemExit) as exc:
            hp.main([*argv(unit_inputs, out), *extra])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, (name, err)
        assert not out.exists(), name


def test_from_params_draws_units_when_the_file_exists(
    unit_inputs: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pipeline's mode: the unit figure follows the unit screening file; without it, a note."""
    import shutil

    from analysis.base.contract import experiment_file, model_dir, screening_file, unit_screening_file

    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    write_json(screening_file("baseline", "toy"), screening_doc())
    for name, kind in (("ablation", "ablation"), ("denoising", "patching")):
        for e in EMOTIONS:
            write_json(experiment_file(name, "baseline", "toy", e), experiment_doc(kind, e))
    model_dir("toy").mkdir(parents=True)
    shutil.copy(unit_inputs["planted"], model_dir("toy") / "planted.json")

    hp.main(["--from-params", "--model", "toy", "--output-dir", "plots1", "--top-n", "5"])
    err = capsys.readouterr().err
    assert f"note: no unit screening file {unit_screening_file('baseline', 'toy')}: unit_summary.png is not drawn" in err
    assert sorted(p.name for p in Path("plots1").iterdir()) == sorted(hp_figures.FILES.values())

    write_json(unit_screening_file("baseline", "toy"), unit_doc())
    hp.main(["--from-params", "--model", "toy", "--output-dir", "plots2", "--top-n", "5"])
    assert "note:" not in capsys.readouterr().err
    assert (Path("plots2") / "unit_summary.png").is_file()
    assert pd.read_csv(Path("plots2") / "unit_summary.csv").planted.sum() == 2  # planted.json of the model folder


def test_unit_experiment_condition_names_units(tmp_path: Path) -> None:
    doc = experiment_doc("ablation", "anger")
    doc.update(heads=[], units=[[1, 5], [1, 7]], head_spec="mlp:1:5,7")
    path = write_json(tmp_path / "a.json", doc)
    _, _, condition, _, _ = hp_data.load_experiment(path, "ablation", "baseline")
    assert condition == "zero ablation, units mlp:1:5,mlp:1:7"
    _, _, condition, _, _ = hp_data.load_experiment(write_json(tmp_path / "b.json", experiment_doc("patching", "anger")), "patching", "baseline")
    assert condition == "positions all, heads 3:2"  # head experiments as before
