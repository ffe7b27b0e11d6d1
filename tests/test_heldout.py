"""Issue 14: held-out confirmation (the split by expression) and the copy control."""

from __future__ import annotations

import pytest

from analysis.core.prompts import in_half, load_pairs, span_clusters, split_expressions, subset
from analysis.base.errors import InputError
from analysis.screening.common import ScreeningConfig, screened_pairs, split_record
from analysis.measures.stats import min_clusters


@pytest.fixture(scope="module")
def pairs(chdir_repo):  # noqa: ANN001, ANN201
    return load_pairs("anger", "baseline")


def test_split_is_by_expression_disjoint_and_complete(pairs) -> None:  # noqa: ANN001
    sel, conf = split_expressions(pairs, seed=0, selection_share=0.5, need=min_clusters())
    labels = set(span_clusters(pairs))
    assert sel | conf == labels and not sel & conf
    assert abs(len(sel) - len(conf)) <= 1
    # a cluster never straddles the halves: every pair of an expression lands in one half
    i_sel, i_conf = in_half(pairs, sel), in_half(pairs, conf)
    assert sorted(i_sel + i_conf) == list(range(len(pairs)))
    assert not set(span_clusters(subset(pairs, i_sel))) & set(span_clusters(subset(pairs, i_conf)))


def test_split_is_seeded(pairs) -> None:  # noqa: ANN001
    a = split_expressions(pairs, seed=0, selection_share=0.5, need=2)
    assert a == split_expressions(pairs, seed=0, selection_share=0.5, need=2)
    assert a != split_expressions(pairs, seed=1, selection_share=0.5, need=2)


def test_split_too_small_is_one_line(pairs) -> None:  # noqa: ANN001
    n = len(set(span_clusters(pairs)))
    with pytest.raises(InputError) as err:
        split_expressions(pairs, seed=0, selection_share=0.9, need=min_clusters())
    msg = str(err.value)
    assert "\n" not in msg and f"of the {n} anger expressions" in msg and f"at least {min_clusters()}" in msg
    assert f"leaves {round(0.9 * n)} for selection and {n - round(0.9 * n)} for confirmation" in msg


def test_screening_ranks_on_the_selection_half_or_all(pairs) -> None:  # noqa: ANN001
    on = ScreeningConfig(model="m", profile="baseline", emotions=("anger",))
    sub, info = screened_pairs(on, pairs)
    sel, _ = split_expressions(pairs, seed=0, selection_share=0.5, need=min_clusters())
    assert set(span_clusters(sub)) == sel and info["half"] == "selection" and split_record(on)["half"] == "selection"
    off = ScreeningConfig(model="m", profile="baseline", emotions=("anger",), split=False)
    sub, info = screened_pairs(off, pairs)
    assert sub is pairs and info["half"] == "all" and split_record(off)["half"] == "all"


# --- the copy control ---------------------------------------------------------------------------


def test_copy_free_score_by_hand() -> None:
    import torch

    from analysis.measures.metrics import copy_free_emotion_score, emotion_score

    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0, 9.0], [3.0, 0.0, 1.0, 2.0, 9.0]])
    emo, neu = [0, 1], [2, 3]
    keep_all = torch.ones(2, 4, dtype=torch.bool)
    assert torch.allclose(copy_free_emotion_score(logits, emo, neu, keep_all), emotion_score(logits, emo, neu))
    keep = torch.tensor([[False, True, True, True], [False, False, True, True]])
    m = copy_free_emotion_score(logits, emo, neu, keep)
    assert abs(float(m[0]) - (2.0 - float(torch.tensor([0.5, -1.0]).logsumexp(0)))) < 1e-6
    assert torch.isnan(m[1])  # no emotion token left: no copy-free M for that row


@pytest.mark.parametrize(
    "exact, ci, copy_free, share, flag",
    [
        (2.0, (1.0, 3.0), 0.4, 0.2, True),  # mostly copying: 20 % left without the prompt's words
        (2.0, (1.0, 3.0), 1.5, 0.75, False),  # mostly not
        (2.0, (1.0, 3.0), 1.0, 0.5, False),  # exactly at the threshold: not below it
        (2.0, (1.0, 3.0), -0.5, -0.25, True),  # the copy-free effect goes the other way
        (-2.0, (-3.0, -1.0), -0.2, 0.1, True),  # a negative ΔM copies too
        (2.0, (-0.5, 4.5), 0.1, 0.05, False),  # ΔM's interval includes 0: never flagged
        (2.0, (1.0, 3.0), None, None, False),  # no usable copy-free M
        (None, (None, None), None, None, False),  # no exact score
    ],
)
def test_copy_flag_by_hand(exact, ci, copy_free, share, flag) -> None:  # noqa: ANN001
    from analysis.screening.common import copy_fields

    f = copy_fields(exact, *ci, copy_free, 0.5, False)
    assert f["copy_flag"] is flag and f["exact_copy_free"] == copy_free
    assert (f["copy_share"] is None) if share is None else abs(f["copy_share"] - share) < 1e-12
    # at or below the noise floor (`no_effect`) nothing is flagged, the share is still reported
    quiet = copy_fields(exact, *ci, copy_free, 0.5, True)
    assert quiet["copy_flag"] is False and quiet["copy_share"] == f["copy_share"]


def test_copy_keep_drops_the_prompts_lexicon_tokens(random_model_dirs, chdir_repo) -> None:  # noqa: ANN001
    """A hand-checkable copy situation: apology prompts that contain 'sorry' lose every single-token
    spelling of 'sorry' from their copy-free M, and no kept token occurs in either prompt."""
    from analysis.core.loading import load_model
    from analysis.core.prompts import lexicon_word_ids, load_lexicon
    from analysis.measures.metrics import keyword_count, lexicon_ids
    from analysis.screening.common import copy_keep, pair_batches

    model = load_model(str(random_model_dirs["gpt2"]))
    pairs = load_pairs("apology", "baseline")
    pb = pair_batches(model, pairs, "last", max_unaligned_share=0.0)
    lex = lexicon_ids(model.tokenizer)
    ids = (lex["apology"], lex["neutral"])
    keep = copy_keep(model, pairs, pb, "apology", ids)
    order = [*ids[0], *ids[1]]
    sorry = set(lexicon_word_ids(model.tokenizer, load_lexicon("apology")).get("sorry", []))
    with_sorry = 0
    for r, e in enumerate(pairs.emotion_prompts):
        kept = {i for i, k in zip(order, keep[r].tolist(), strict=True) if k}
        in_prompt = {int(t) for b in (pb.emotion, pb.neutral) for t in b.input_ids[r][b.attention_mask[r].bool()]}
        assert not kept & in_prompt
        if keyword_count(e.text, ["sorry"]):
            with_sorry += 1
            assert sorry and not kept & sorry
    assert with_sorry > 0  # the data has the situation the control is for


def test_exact_copy_free_equals_exact_when_nothing_is_left_out(random_model_dirs, chdir_repo) -> None:  # noqa: ANN001
    import torch

    from analysis.core.loading import load_model
    from analysis.measures.metrics import lexicon_ids
    from analysis.screening.common import pair_batches
    from analysis.screening.heads import _z_names, exact_patching
    from analysis.interventions.edits import capture

    model = load_model(str(random_model_dirs["gpt2"]))
    pairs = subset(load_pairs("anger", "baseline"), list(range(8)))
    pb = pair_batches(model, pairs, "last", max_unaligned_share=0.0)
    lex = lexicon_ids(model.tokenizer)
    ids = (lex["anger"], lex["neutral"])
    with torch.no_grad():
        z = capture(model, pb.emotion, _z_names(model))
    cf: dict = {}
    keep = torch.ones(len(pb.kept), len(ids[0]) + len(ids[1]), dtype=torch.bool)
    exact = exact_patching(model, pb, z, [(0, 0), (1, 3)], ids, copy_free=(keep, cf))
    for h in exact:
        assert torch.allclose(exact[h], cf[h], atol=1e-6)


def test_top_heads_skips_copy_flagged(tmp_path) -> None:  # noqa: ANN001
    from analysis.base.io import write_json
    from analysis.screening.heads import top_heads

    scores = [
        {"layer": 0, "head": 0, "emotion": "anger", "exact": 3.0, "attribution": 0.0, "copy_flag": True},
        {"layer": 1, "head": 2, "emotion": "anger", "exact": -0.5, "attribution": 0.0, "copy_flag": False},
        {"layer": 1, "head": 3, "emotion": "anger", "exact": 0.2, "attribution": 0.0, "copy_flag": False},
    ]
    f = write_json(tmp_path / "s.json", {"schema": "emotion-heads/head-scores/v1", "emotions": ["anger"], "scores": scores})
    assert top_heads(f, "anger", 2) == ((0, 0), (1, 2))
    assert top_heads(f, "anger", 2, skip_flagged=True) == ((1, 2), (1, 3))
    with pytest.raises(InputError, match="not flagged by the copy control"):
        top_heads(f, "anger", 3, skip_flagged=True)


# --- one word list per model --------------------------------------------------------------------


class _Tok:
    """A hand tokenizer: every word in `single` is one token, everything else two."""

    def __init__(self, single: set[str]) -> None:
        self.single = single

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        w = text.strip().lower()
        return {"input_ids": [hash(w) % 1000] if w in self.single else [1, 2]}


def test_lexicon_report_names_the_dropped_words_and_refuses_an_empty_lexicon(chdir_repo) -> None:  # noqa: ANN001
    from analysis.core.prompt_table import lexicon_report
    from analysis.core.prompts import load_lexicon

    everything = {w for name in ("anger", "neutral") for w in load_lexicon(name)}
    rep = lexicon_report("hand", _Tok(everything - {"livid", "furious"}), ("anger",))
    assert rep["anger"]["dropped"] == [w for w in load_lexicon("anger") if w in {"livid", "furious"}]
    assert rep["anger"]["n_single_token"] == rep["anger"]["n_words"] - 2 and rep["neutral"]["dropped"] == []
    with pytest.raises(InputError) as err:
        lexicon_report("hand", _Tok(set(load_lexicon("neutral"))), ("anger",))
    assert "\n" not in str(err.value) and "anger.txt has no word with a single-token form under tokenizer hand" in str(err.value)


def test_keyword_counts_use_the_words_m_uses() -> None:
    import numpy as np
    import torch

    from analysis.measures.metrics import ArmOutput, GENERATION_METRICS

    z = torch.zeros(1, 3)
    texts = ("I am livid and furious",)
    full = ArmOutput(texts, z, z, z, z, [0], [1])
    model_words = ArmOutput(texts, z, z, z, z, [0], [1], {"anger": ("furious",)})
    assert GENERATION_METRICS["kw_anger"].score(full) == np.array([2.0])
    assert GENERATION_METRICS["kw_anger"].score(model_words) == np.array([1.0])


def test_prepare_prompts_reports_alignment_and_dropped_words(chdir_repo, tmp_path, capsys) -> None:  # noqa: ANN001
    from analysis import prepare_prompts

    try:
        prepare_prompts.main(["--profile", "baseline", "--output", str(tmp_path / "p.json"), "--tokenizer", "data/tokenizers/gpt2"])
    except SystemExit as done:
        assert done.code in (0, None)
    out = capsys.readouterr().out.splitlines()
    assert "data/tokenizers/gpt2: anger: 70/70 pairs aligned (equal token length)" in out
    dropped = sorted(line.split("'")[1] for line in out if "dropped" in line)
    assert dropped == sorted(["gratefully", "appreciative", "livid", "infuriating", "infuriated", "regretful"])


def _copy_head_model(out, tok_dir):  # noqa: ANN001, ANN202
    """A hand-built copy head: one GPT-2 layer whose one head attends uniformly (q = k = 0) and
    copies (identity OV, large tied embeddings): it raises the logit of every prompt token and
    knows nothing of emotion."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    d = 64
    m = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=d, n_layer=1, n_head=1, tie_word_embeddings=True))
    with torch.no_grad():
        m.transformer.wpe.weight.zero_()
        m.transformer.wte.weight.mul_(50.0)  # std 1: a copied token moves its own logit by nats
        a = m.transformer.h[0].attn
        a.c_attn.weight.zero_()
        a.c_attn.bias.zero_()
        a.c_attn.weight[:, 2 * d :] = torch.eye(d)
        a.c_proj.weight.copy_(20.0 * torch.eye(d))
        a.c_proj.bias.zero_()
        for p in m.transformer.h[0].mlp.parameters():
            p.zero_()
    m.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_a_hand_built_copy_head_is_flagged(tmp_path, chdir_repo) -> None:  # noqa: ANN001
    """Apology spans contain apology-lexicon words ("sorry"): the copy head's patching raises M by
    nats (significant), while M over the lexicon tokens absent from the prompt hardly moves."""
    from analysis.core.loading import load_model
    from analysis.core.prompts import PROMPTS_ROOT
    from analysis.screening.heads import screen

    path = _copy_head_model(tmp_path / "copy", chdir_repo / "data/tokenizers/gpt2")
    pairs = {"apology": load_pairs("apology", "baseline", root=PROMPTS_ROOT)}
    # All 35 expressions (no split): with the matched twins only the spans holding an apology word
    # give the copy head something to copy, and on the selection half's 18 its interval reaches 0
    # (measured: +3.23 [−0.29, +6.13]); the test is of the copy flag, not of the split.
    cfg = ScreeningConfig(model="copy", profile="baseline", emotions=("apology",), n_resamples=2000, split=False)
    doc = screen(load_model(str(path)), cfg, pairs)
    (row,) = doc["scores"]
    assert row["exact"] > 1.0 and row["exact_ci_low"] > 0  # seed 0: +4.21 [+1.36, +6.98]
    assert row["copy_share"] < 0.2 and row["copy_flag"] is True  # copy-free −1.12: share −0.27
    assert doc["copy_control"]["flagged"] == [
        {"layer": 0, "head": 0, "emotion": "apology", "exact": row["exact"], "exact_copy_free": row["exact_copy_free"], "copy_share": row["copy_share"]}
    ]
