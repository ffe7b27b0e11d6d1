"""The cross-model comparison: one colour scale, top heads per model × emotion, one-line errors.

Three hand-made screening files of different shapes, with numbers chosen so that every
expected value below can be checked by eye:

- `toy` (2 × 2, exact ΔM for every head; attribution 9.0 everywhere, which must never show),
  planted heads gratitude 1:0, anger 0:0;
- `EleutherAI/pythia-tiny` (3 layers × 1 head, exact for some heads only: the others, with
  attribution ∓10 and 5, are "not computed", not 0 and not their attribution);
- `local/gpt2-random` (1 × 3, attribution only).

Shared colour limit = max |score| over the panels drawn = |−4.0| (local/gpt2-random, gratitude,
0:0); the exact-ranked files' attributions (9, −10, 5) are not drawn.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from analysis.base import contract as mc_contract
from analysis import model_comparison as mc
from analysis.plots import comparison as mc_comparison
from analysis.base.errors import InputError
from analysis.base.io import write_json

PROFILE = "baseline"
EMOTIONS = ("gratitude", "anger")
MODELS = ("toy", "EleutherAI/pythia-tiny", "local/gpt2-random")
VMAX = 4.0

# (layer, head) -> (exact or None, attribution, q)
TOY = {
    "gratitude": {(0, 0): (0.1, 9.0, 0.5), (0, 1): (-0.5, 9.0, 0.5), (1, 0): (2.0, 9.0, 0.01), (1, 1): (0.3, 9.0, 0.5)},
    "anger": {(0, 0): (-3.0, 9.0, 0.02), (0, 1): (0.7, 9.0, 0.6), (1, 0): (-0.7, 9.0, 0.6), (1, 1): (0.0, 9.0, 0.6)},
}
PYTHIA = {
    "gratitude": {(0, 0): (2.5, 0.1, 0.001), (1, 0): (None, -10.0, None), (2, 0): (-1.0, 0.1, 0.2)},
    # 0.2 and −0.2000000001 tie at 1e-6 nats: the tie goes by layer (1 before 2), as `top:N`.
    "anger": {(0, 0): (None, 5.0, None), (1, 0): (0.2, 0.1, 0.3), (2, 0): (-0.2000000001, 0.1, 0.3)},
    "apology": {(0, 0): (0.1, 0.1, 0.9), (1, 0): (None, 0.1, None), (2, 0): (0.1, 0.1, 0.9)},
}
GPT2R = {
    "gratitude": {(0, 0): (None, -4.0, None), (0, 1): (None, 1.0, None), (0, 2): (None, 0.5, None)},
    "anger": {(0, 0): (None, 0.25, None), (0, 1): (None, -0.5, None), (0, 2): (None, 3.9, None)},
}
SPECS = {"toy": (2, 2, TOY), "EleutherAI/pythia-tiny": (3, 1, PYTHIA), "local/gpt2-random": (1, 3, GPT2R)}
# The screening's `specific` heads (their effect beats the neutral′ → twin control) and each emotion's
# gap of M, for the size table: toy gratitude 1:0 and anger 0:0, pythia-tiny gratitude 0:0 and 2:0.
SPECIFIC = {("toy", "gratitude", 1, 0), ("toy", "anger", 0, 0),
            ("EleutherAI/pythia-tiny", "gratitude", 0, 0), ("EleutherAI/pythia-tiny", "gratitude", 2, 0)}
GAP = {"gratitude": 4.0, "anger": 6.0, "apology": 1.0}


def hf_config(model: str):  # noqa: ANN201 - a transformers config of the model's shape (vocab 50, width 4 per head)
    from transformers import GPT2Config, GPTNeoXConfig

    n_layers, n_heads, _ = SPECS[model]
    if model.startswith("EleutherAI/"):
        return GPTNeoXConfig(num_hidden_layers=n_layers, num_attention_heads=n_heads, hidden_size=4 * n_heads,
                             intermediate_size=16 * n_heads, vocab_size=50, max_position_embeddings=16)
    return GPT2Config(n_layer=n_layers, n_head=n_heads, n_embd=4 * n_heads, vocab_size=50, n_positions=16)


def screening_doc(model: str, profile: str = PROFILE) -> dict:
    n_layers, n_heads, table = SPECS[model]
    scores = []
    for emotion, cells in table.items():
        for (layer, head), (exact, attribution, q) in cells.items():
            has = exact is not None
            scores.append({
                "layer": layer, "head": head, "emotion": emotion, "delta_attn": 0.0, "attribution": attribution,
                "exact": exact, "exact_ci_low": exact - 0.1 if has else None, "exact_ci_high": exact + 0.1 if has else None,
                "exact_p": q, "exact_q": q, "exact_n": 70 if has else None, "exact_n_clusters": 12 if has else None,
                "specific": (model, emotion, layer, head) in SPECIFIC,
            })
    return {"schema": mc_contract.HEAD_SCORES_SCHEMA, "model": model, "profile": profile, "n_layers": n_layers, "n_heads": n_heads,
            "emotions": list(table), "scores": scores,
            "specificity": {"by_emotion": {e: {"gap": GAP[e]} for e in table}}}


def write_results(root: Path, models: tuple[str, ...] = MODELS) -> None:
    for m in models:
        write_json(root / "results" / PROFILE / "alignment" / f"head_scores_{m}.json", screening_doc(m))
        folder = root / "results" / "models" / m
        folder.mkdir(parents=True, exist_ok=True)
        hf_config(m).save_pretrained(folder)
    write_json(root / "results" / "models" / "toy" / "planted.json",
               {"schema": "emotion-heads/planted/v1", "by_emotion": {"gratitude": [[1, 0]], "anger": [[0, 0]], "apology": [[1, 1]]}})


def config(root: Path, **kw) -> mc_comparison.ComparisonConfig:
    base = {"profile": PROFILE, "models": MODELS, "emotions": EMOTIONS, "output_dir": root / "out", "top_n": 2, "root": root}
    return mc_comparison.ComparisonConfig(**{**base, **kw})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_results(tmp_path)
    return tmp_path


def test_paths_with_slash_are_subfolders(root: Path) -> None:
    cfg = config(root)
    assert cfg.screening_path("EleutherAI/pythia-tiny") == root / "results/baseline/alignment/head_scores_EleutherAI/pythia-tiny.json"
    assert cfg.screening_path("local/gpt2-random").is_file()
    comp = mc_comparison.load(cfg)
    assert comp.names == MODELS
    assert [(m.n_layers, m.n_heads, m.kind) for m in comp.models] == [
        (2, 2, "exact"), (3, 1, "exact"), (1, 3, "attribution")
    ]


def test_grids_and_shared_limit(root: Path) -> None:
    comp = mc_comparison.load(config(root))
    toy, pythia, gpt2r = comp.models
    np.testing.assert_array_equal(toy.grid("gratitude"), [[0.1, -0.5], [2.0, 0.3]])  # exact, not attribution 9.0
    g = pythia.grid("gratitude")
    assert g[0, 0] == 2.5 and g[2, 0] == -1.0 and math.isnan(g[1, 0])  # not computed: NaN, not 0 or −10
    np.testing.assert_array_equal(gpt2r.grid("anger"), [[0.25, -0.5, 3.9]])
    assert mc_comparison.shared_limit(comp) == VMAX
    assert toy.planted == {"gratitude": ((1, 0),), "anger": ((0, 0),)}  # apology not compared
    assert pythia.planted == {} and gpt2r.planted == {}


def test_top_heads_table(root: Path) -> None:
    table = mc_comparison.top_heads_table(mc_comparison.load(config(root)), top_n=2)
    assert list(table.columns) == mc_comparison.TOP_COLUMNS
    got = [(r.model, r.emotion, r.rank, r.layer, r.head, r.score_kind, r.score) for r in table.itertuples()]
    assert got == [
        ("toy", "gratitude", 1, 1, 0, "exact", 2.0),
        ("toy", "gratitude", 2, 0, 1, "exact", -0.5),
        ("toy", "anger", 1, 0, 0, "exact", -3.0),
        ("toy", "anger", 2, 0, 1, "exact", 0.7),  # ties with 1:0 (−0.7): layer:head order
        ("EleutherAI/pythia-tiny", "gratitude", 1, 0, 0, "exact", 2.5),
        ("EleutherAI/pythia-tiny", "gratitude", 2, 2, 0, "exact", -1.0),  # 1:0 has no exact value
        ("EleutherAI/pythia-tiny", "anger", 1, 1, 0, "exact", 0.2),
        ("EleutherAI/pythia-tiny", "anger", 2, 2, 0, "exact", -0.2),  # stored at 6 significant digits
        ("local/gpt2-random", "gratitude", 1, 0, 0, "attribution", -4.0),
        ("local/gpt2-random", "gratitude", 2, 0, 1, "attribution", 1.0),
        ("local/gpt2-random", "anger", 1, 0, 2, "attribution", 3.9),
        ("local/gpt2-random", "anger", 2, 0, 1, "attribution", -0.5),
    ]
    first = table.iloc[0]
    assert (first.ci_low, first.ci_high, first.q, first.n) == (pytest.approx(1.9), pytest.approx(2.1), 0.01, 70)
    attr = table[table.score_kind == "attribution"]
    assert attr[["ci_low", "ci_high", "q"]].isna().all().all() and attr.n.isna().all()
    # More than there are: every scored head, no error.
    big = mc_comparison.top_heads_table(mc_comparison.load(config(root)), top_n=10)
    assert big.groupby(["model", "emotion"], sort=False).size().tolist() == [4, 4, 2, 2, 3, 3]


def test_markdown_table(root: Path) -> None:
    comp = mc_comparison.load(config(root))
    md = mc_comparison.markdown_table(comp, mc_comparison.top_heads_table(comp, 2))
    lines = md.splitlines()
    assert lines[0].startswith("Top 2 heads per model and emotion") and lines[1] == ""
    assert lines[2].startswith("| Model | Emotion | Rank | Head |")
    assert len(lines) == 4 + 12
    assert lines[4] == "| toy | gratitude | 1 | L1H0 ★ | exact | +2.00 | [1.90, 2.10] | 0.01 | 70 |"
    assert lines[6] == "| toy | anger | 1 | L0H0 ★ | exact | −3.00 | [−3.10, −2.90] | 0.02 | 70 |"
    assert lines[12] == "| local/gpt2-random | gratitude | 1 | L0H0 | attribution | −4.00 | — | — | — |"


def test_heatmaps_figure(root: Path) -> None:
    comp = mc_comparison.load(config(root))
    path = root / "out" / "heatmaps.png"
    fig = mc_comparison.heatmaps_figure(comp, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = [im for ax in fig.axes for im in ax.get_images() if isinstance(im, AxesImage)]
    panels = [im for im in images if (im.get_gid() or "").startswith("heatmap:")]
    assert len(panels) == len(EMOTIONS) * len(MODELS)
    assert {im.get_clim() for im in panels} == {(-VMAX, VMAX)}
    assert len(fig.axes) == len(panels) + 1  # one colour bar for all
    by_gid = {im.get_gid(): im.axes for im in panels}
    ax = by_gid["heatmap:EleutherAI/pythia-tiny:gratitude"]
    assert "exact ΔM (2 of 3 heads)" in ax.get_title()
    assert [p.get_gid() for p in ax.patches if isinstance(p, Rectangle)] == ["missing:1:0"]
    assert "attribution" in by_gid["heatmap:local/gpt2-random:anger"].get_title()
    ax = by_gid["heatmap:toy:anger"]
    assert [p.get_gid() for p in ax.patches] == ["planted:0:0"]
    (stars,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_array_equal(stars.get_offsets(), [[0, 0]])  # (head, layer) with q < 0.05
    assert not [c for c in by_gid["heatmap:local/gpt2-random:gratitude"].collections if isinstance(c, PathCollection)]


def test_cli_writes_all_three(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)
    out = mc.main(["--profile", PROFILE, "--models", *MODELS, "--emotions", *EMOTIONS, "--top-n", "1"])
    folder = Path("results/baseline/plots/models")  # the default --output-dir
    assert out == {k: folder / v for k, v in mc_comparison.FILES.items()}
    assert all(p.is_file() and p.stat().st_size > 0 for p in out.values())
    csv = pd.read_csv(out["csv"])
    assert csv[["model", "emotion", "layer", "head"]].values.tolist() == [
        ["toy", "gratitude", 1, 0], ["toy", "anger", 0, 0],
        ["EleutherAI/pythia-tiny", "gratitude", 0, 0], ["EleutherAI/pythia-tiny", "anger", 1, 0],
        ["local/gpt2-random", "gratitude", 0, 0], ["local/gpt2-random", "anger", 0, 2],
    ]
    assert out["md"].read_text().count("\n| ") == 1 + 6


def test_missing_file_is_one_line_and_writes_nothing(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(root)
    before = sorted(p for p in root.rglob("*"))
    with pytest.raises(SystemExit) as exc:
        mc.main(["--profile", PROFILE, "--models", "toy", "org/absent", "--emotions", *EMOTIONS, "--output-dir", "out"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "results/baseline/alignment/head_scores_org/absent.json" in err
    assert "python -m analysis.head_screening --model org/absent --profile baseline" in err
    assert sorted(p for p in root.rglob("*")) == before  # no output folder, no files


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"emotions": ("gratitude", "apology")}, "no scores for emotion 'apology'"),
        ({"top_n": 0}, "--top-n must be at least 1"),
        ({"models": ("toy", "toy")}, "--models lists 'toy' twice"),
        ({"profile": "extended"}, "does not exist"),
    ],
)
def test_bad_input(root: Path, change: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        mc_comparison.compare(config(root, **change))
    assert not (root / "out").exists()


def test_file_of_another_model_or_profile(root: Path) -> None:
    write_json(root / "results/baseline/alignment/head_scores_gpt2.json", screening_doc("toy"))
    with pytest.raises(InputError, match="holds the screening of model 'toy', not 'gpt2'"):
        mc_comparison.load(config(root, models=("gpt2",)))
    write_json(root / "results/baseline/alignment/head_scores_toy.json", screening_doc("toy", profile="extended"))
    with pytest.raises(InputError, match="is for profile 'extended'"):
        mc_comparison.load(config(root, models=("toy",)))


def test_defaults_from_params(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("profile: baseline\nmodels: [toy, local/gpt2-random]\nemotions: [anger]\n")
    cfg = mc.parse_args(["--params", str(params)])
    assert (cfg.profile, cfg.models, cfg.emotions, cfg.top_n) == ("baseline", ("toy", "local/gpt2-random"), ("anger",), 5)
    assert cfg.output_dir == Path("results/baseline/plots/models")
    cfg = mc.parse_args(["--params", str(params), "--models", "gpt2", "--top-n", "3", "--output-dir", "x"])
    assert (cfg.models, cfg.top_n, cfg.output_dir) == (("gpt2",), 3, Path("x"))


def test_no_star_at_or_below_the_noise_floor(root: Path) -> None:
    """A head with q < 0.05 whose exact effect is at or below the noise floor (`no_effect`) is float
    noise: no star (the toy's anger L0H0 here); gratitude's L1H0 (q 0.01, an effect) keeps its star."""
    doc = screening_doc("toy")
    for s in doc["scores"]:
        s["no_effect"] = (s["emotion"], s["layer"], s["head"]) == ("anger", 0, 0)
    write_json(root / "results" / PROFILE / "alignment" / "head_scores_toy.json", doc)
    fig = mc_comparison.heatmaps_figure(mc_comparison.load(config(root)), root / "out" / "heatmaps.png")
    by_gid = {im.get_gid(): im.axes for ax in fig.axes for im in ax.get_images() if (im.get_gid() or "").startswith("heatmap:")}
    assert not [c for c in by_gid["heatmap:toy:anger"].collections if isinstance(c, PathCollection)]
    (stars,) = [c for c in by_gid["heatmap:toy:gratitude"].collections if isinstance(c, PathCollection)]
    np.testing.assert_array_equal(stars.get_offsets(), [[0, 1]])  # (head, layer) of L1H0


def test_size_table_by_hand(root: Path) -> None:
    """Issue 25 item 2: per model × emotion, models by parameter count (the config's, as Hugging Face
    counts them), the top specific head's ΔM, its fraction of the gap, and the mean relative depth
    of the top-2 specific heads: pythia-tiny gratitude 0:0 (2.5 / 4.0) and 2:0, depth (0/2 + 2/2) / 2."""
    from transformers import AutoModelForCausalLM

    comp = mc_comparison.load(config(root))
    table = mc_comparison.size_table(comp, top_n=2)
    assert list(table.columns) == mc_comparison.SIZE_COLUMNS
    params = {m: AutoModelForCausalLM.from_config(hf_config(m)).num_parameters() for m in MODELS}
    order = sorted(MODELS, key=params.get)
    assert table.model.tolist() == [m for m in order for _ in EMOTIONS]
    assert dict(zip(table.model, table.parameters, strict=True)) == params
    got = {(r.model, r.emotion): (r.n_specific, None if pd.isna(r.top_layer) else (r.top_layer, r.top_head), r.top_effect,
                                   r.fraction_of_gap, r.relative_depth) for r in table.itertuples()}
    nan = math.nan
    want = {
        ("toy", "gratitude"): (1, (1, 0), 2.0, 0.5, 1.0),
        ("toy", "anger"): (1, (0, 0), -3.0, -0.5, 0.0),
        ("EleutherAI/pythia-tiny", "gratitude"): (2, (0, 0), 2.5, 0.625, 0.5),
        ("EleutherAI/pythia-tiny", "anger"): (0, None, nan, nan, nan),
        ("local/gpt2-random", "gratitude"): (0, None, nan, nan, nan),  # attribution only: never specific
        ("local/gpt2-random", "anger"): (0, None, nan, nan, nan),
    }
    for key, (n, top, effect, fraction, depth) in want.items():
        assert got[key][:2] == (n, top), key
        np.testing.assert_allclose(got[key][2:], (effect, fraction, depth), rtol=1e-12, err_msg=str(key))
    toy = table[(table.model == "toy") & (table.emotion == "gratitude")].iloc[0]
    assert (toy.top_ci_low, toy.top_ci_high, toy.gap) == (pytest.approx(1.9), pytest.approx(2.1), 4.0)
    md = mc_comparison.size_markdown(comp, table, 2).splitlines()
    assert md[0].startswith("Secondary, descriptive") and len(md) == 4 + 6
    # the toy's 2,288 by hand: embeddings 50 x 8 + 16 x 8, final norm 16, two blocks of 872 (two norms 16 + 16,
    # q/k/v 8 x 24 + 24, out 8 x 8 + 8, MLP 8 x 32 + 32 and 32 x 8 + 8)
    assert md[4:6] == ["| EleutherAI/pythia-tiny | 1,140 | gratitude | 2 | L0H0 | +2.50 | [2.40, 2.60] | 0.625 | 0.500 |",
                       "| EleutherAI/pythia-tiny | 1,140 | anger | 0 | no specific head | — | — | — | — |"]
    assert md[6] == "| toy | 2,288 | gratitude | 1 | L1H0 | +2.00 | [1.90, 2.10] | 0.500 | 1.00 |"
    assert any(line.startswith("| local/gpt2-random |") and "no specific head" in line for line in md)


def test_size_figure_draws_each_emotions_points(root: Path) -> None:
    comp = mc_comparison.load(config(root))
    table = mc_comparison.size_table(comp, top_n=2)
    fig = mc_comparison.size_figure(comp, table, root / "out" / "size.png")
    assert (root / "out" / "size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_xscale() for ax in fig.axes] == ["log"] * 3
    drawn = {a.get_gid(): a for ax in fig.axes for a in ax.lines if a.get_gid()}
    # gratitude: toy and pythia-tiny have a specific head; anger: toy only (x: parameters in millions, side by side)
    assert len(drawn["size:fraction_of_gap:gratitude"].get_xdata()) == 2
    np.testing.assert_allclose(drawn["size:fraction_of_gap:anger"].get_ydata(), [-0.5])


def test_a_model_without_a_config_is_one_line(root: Path) -> None:
    (root / "results" / "models" / "local/gpt2-random" / "config.json").unlink()
    with pytest.raises(InputError, match="model 'local/gpt2-random': no config.json"):
        mc_comparison.load(config(root))
