"""The toy model keeps its promise: the planted heads and the planted MLP units, and only they,
carry the emotions.

Uses results/models/toy when it has been built with planted units; otherwise (no build, or a build
from before units were planted) builds the full model once per session into a temporary folder
(about a minute and a half on 2 cores). Every check here uses plain HF code (GPT2LMHeadModel,
generate, c_proj pre-hooks), not the pipeline's own intervention code, so that the ground truth
is established independently of what it is used to test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from analysis.core.prompts import load_lexicon, load_pairs, Prompt, tokenize
from analysis.base.vocabulary import EMOTIONS, NEUTRAL
from analysis.base.contract import read_planted as load_planted
from analysis.embedded.build import build_toy_model
from analysis.base.contract import PLANTED_FILE, PLANTED_SCHEMA as SCHEMA
from analysis.embedded.construction import ToyConfig
from analysis.embedded.plant import constraint_violations, plant_from_doc
from analysis.measures.metrics import emotion_score, lexicon_token_ids
from analysis.measures.stats import auroc

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data" / "prompts"
LEXICONS = ROOT / "data" / "lexicons"
MAX_NEW_TOKENS = 15
Head = tuple[int, int]
Unit = tuple[int, int]  # (layer, neuron)


def _config(**overrides: object) -> ToyConfig:
    """ToyConfig with data paths anchored at the repository (tests may run from anywhere)."""
    paths = {
        "prompts_root": str(PROMPTS),
        "lexicons_root": str(LEXICONS),
        "continuations": str(ROOT / "data" / "toy" / "continuations.yaml"),
    }
    return ToyConfig(**{**paths, **overrides})  # type: ignore[arg-type]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, shared CPU


@pytest.fixture(scope="session")
def toy_dir(toy_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline's toy build (conftest's `toy_path`) if it has planted units, else one made here.

    results/models/toy may still be a build from before units were planted (until the pipeline
    reruns); testing that one would test the old construction.
    """
    if "units_by_emotion" in load_planted(toy_path):
        return toy_path
    return build_toy_model(_config(), tmp_path_factory.mktemp("toy_units") / "toy")


@pytest.fixture(scope="session")
def toy(toy_dir: Path):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(toy_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(toy_dir)
    return model, tokenizer, load_planted(toy_dir)


@contextmanager
def zeroed(model, heads: Sequence[Head]) -> Iterator[None]:
    """The HF model with these heads removed: their slice of the attention c_proj input is 0."""
    d_head = model.config.n_embd // model.config.n_head
    handles = []
    for layer, head in heads:

        def hook(module, args, head=head):
            x = args[0].clone()
            x[..., head * d_head : (head + 1) * d_head] = 0
            return (x, *args[1:])

        handles.append(model.transformer.h[layer].attn.c_proj.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def units_zeroed(model, row_units: Sequence[Unit] | None) -> Iterator[None]:
    """The HF model with, in batch row r, unit row_units[r] removed: its column of the MLP c_proj input is 0.

    That column is the unit's activation (the pipeline's `blocks.L.mlp.hook_post[..., n]`).
    """
    handles = []
    for layer in range(model.config.n_layer):
        rows = [(r, n) for r, (ul, n) in enumerate(row_units or ()) if ul == layer]
        if not rows:
            continue

        def hook(module, args, rows=rows):
            x = args[0].clone()
            for r, n in rows:
                x[r, :, n] = 0
            return (x, *args[1:])

        handles.append(model.transformer.h[layer].mlp.c_proj.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def continuations(
    model, tokenizer, prompts: Sequence[Prompt], heads: Sequence[Head] = (), row_units: Sequence[Unit] | None = None
) -> list[str]:
    """Greedy continuation text (prompt excluded), BOS prepended, left padding; heads zeroed in
    every row, unit row_units[r] zeroed in row r."""
    batch = tokenize(tokenizer, prompts, bos_id=tokenizer.bos_token_id, pad_id=tokenizer.pad_token_id)
    with zeroed(model, heads), units_zeroed(model, row_units):
        out = model.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    new = out[:, batch.input_ids.shape[1] :]
    return tokenizer.batch_decode(new, skip_special_tokens=True)


@torch.no_grad()
def prompt_logits(model, tokenizer, prompts: Sequence[Prompt], heads: Sequence[Head] = ()) -> torch.Tensor:
    """Logits at every prompt position, left padded (positions counted from BOS)."""
    batch = tokenize(tokenizer, prompts, bos_id=tokenizer.bos_token_id, pad_id=tokenizer.pad_token_id)
    position_ids = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with zeroed(model, heads):
        logits = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids
        ).logits
    return logits * batch.attention_mask[..., None]  # padding positions compared as 0


def keyword_rate(texts: Sequence[str], words: Sequence[str]) -> float:
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
    return sum(bool(pattern.search(t)) for t in texts) / len(texts)


def all_heads(model) -> list[Head]:
    return [(layer, head) for layer in range(model.config.n_layer) for head in range(model.config.n_head)]


def measure_rates(model, tokenizer) -> dict:
    """Keyword rates on the baseline prompts: clean, and with each single head zeroed.

    One generate call per condition over all emotion prompts (generation cost is per step, not
    per row, for a model this small).
    """
    pairs = {e: load_pairs(e, "baseline", root=PROMPTS) for e in EMOTIONS}
    lexicon = {e: load_lexicon(e, root=LEXICONS) for e in EMOTIONS}
    neutral = pairs[EMOTIONS[0]].neutral_prompts
    prompts = [p for e in EMOTIONS for p in pairs[e].emotion_prompts]

    def per_emotion(texts: list[str]) -> dict[str, list[str]]:
        n = len(neutral)  # every emotion file has as many lines as the neutral one
        return {e: texts[i * n : (i + 1) * n] for i, e in enumerate(EMOTIONS)}

    clean = continuations(model, tokenizer, [*prompts, *neutral])
    out: dict = {
        "neutral": {e: keyword_rate(clean[len(prompts) :], lexicon[e]) for e in EMOTIONS},
        "emotion": {e: keyword_rate(t, lexicon[e]) for e, t in per_emotion(clean[: len(prompts)]).items()},
        "ablated": {},
    }
    for head in all_heads(model):
        for e, texts in per_emotion(continuations(model, tokenizer, prompts, [head])).items():
            out["ablated"][e, head] = keyword_rate(texts, lexicon[e])
    return out


@pytest.fixture(scope="session")
def rates(toy) -> dict:
    model, tokenizer, _ = toy
    return measure_rates(model, tokenizer)


def gap_closed(rates: dict, emotion: str, head: Head) -> float:
    gap = rates["emotion"][emotion] - rates["neutral"][emotion]
    return (rates["emotion"][emotion] - rates["ablated"][emotion, head]) / gap


# --------------------------------------------------------------------------------------------
# The folder
# --------------------------------------------------------------------------------------------


def test_folder_and_planted_json(toy_dir: Path, toy) -> None:
    model, tokenizer, doc = toy
    assert {"config.json", "model.safetensors", "tokenizer.json", PLANTED_FILE} <= set(os.listdir(toy_dir))
    assert doc["schema"] == SCHEMA
    assert sorted(doc["by_emotion"]) == sorted(EMOTIONS)
    heads = sorted(tuple(h) for hs in doc["by_emotion"].values() for h in hs)
    assert heads == sorted(tuple(h) for h in doc["heads"])
    assert len(set(heads)) == len(EMOTIONS)
    assert all(layer == model.config.n_layer - 1 for layer, _ in heads)  # all in the last layer
    # one planted MLP unit per emotion, in or after its head's layer ("units" was [] before units were planted)
    assert sorted(doc["units_by_emotion"]) == sorted(EMOTIONS)
    units = sorted(tuple(u) for us in doc["units_by_emotion"].values() for u in us)
    assert units == [tuple(u) for u in doc["units"]]
    assert len(set(units)) == len(EMOTIONS)
    d_mlp = model.transformer.h[0].mlp.c_fc.weight.shape[1]
    for e in EMOTIONS:
        [[layer, neuron]], [[head_layer, _]] = doc["units_by_emotion"][e], doc["by_emotion"][e]
        assert head_layer <= layer < model.config.n_layer and 0 <= neuron < d_mlp
    assert model.config.n_layer == 4 and model.config.n_head == 4 and model.config.n_embd == 128
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
    assert len(doc["construction"]) > 200


def test_tokenizer_round_trips_without_bos(toy) -> None:
    model, tokenizer, doc = toy
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == tokenizer.pad_token_id == 0
    for e in EMOTIONS:
        pairs = load_pairs(e, "baseline", root=PROMPTS)
        for emo, neu in zip(pairs.emotion_prompts, pairs.neutral_prompts, strict=True):
            for p in (emo, neu):
                ids = tokenizer(p.text).input_ids  # default call: no BOS/EOS added
                assert ids == tokenizer(p.text, add_special_tokens=False).input_ids
                assert tokenizer.decode(ids) == p.text
            # the span is one token at the same position in both prompts of a pair
            e_ids, n_ids = tokenizer(emo.text).input_ids, tokenizer(neu.text).input_ids
            assert len(e_ids) == len(n_ids)
            diff = [i for i, (a, b) in enumerate(zip(e_ids, n_ids, strict=True)) if a != b]
            assert len(diff) == 1
            assert tokenizer.decode([e_ids[diff[0]]]) == " " + emo.span_text


def test_weights_satisfy_the_construction_exactly(toy_dir: Path, toy) -> None:
    """Written out again here (not only via constraint_violations): E is written and read only as planted."""
    _, _, doc = toy
    state = load_file(toy_dir / "model.safetensors")
    assert constraint_violations(state, plant_from_doc(doc)) == []
    p = doc["params"]
    e = [p["emotion_dims"][c] for c in (NEUTRAL, *EMOTIONS)]
    u = [p["unit_dims"][x] for x in EMOTIONS]
    assert len(set(e + u)) == len(e) + len(u)
    span = {c: p["span_token_ids"][c] for c in (NEUTRAL, *EMOTIONS)}
    all_span = [i for ids in span.values() for i in ids]
    others = [i for i in range(state["transformer.wte.weight"].shape[0]) if i not in set(all_span)]
    n_embd, n_head = p["n_embd"], p["n_head"]
    d_head = n_embd // n_head
    zero = torch.tensor(0.0)

    wte = state["transformer.wte.weight"]
    assert torch.equal(wte[others][:, e], zero.expand(len(others), len(e)))
    assert (wte[:, u] == 0).all()  # no token writes U, span tokens included
    off_e = [i for i in range(n_embd) if i not in e]
    assert (wte[all_span][:, off_e] == wte[all_span[0], off_e]).all()  # one shared vector off E
    for k, c in enumerate((NEUTRAL, *EMOTIONS)):
        want = torch.full((len(e),), -1.0) * p["span_scale"]
        want[k] = 3.0 * p["span_scale"]
        assert (wte[span[c]][:, e] == want).all()
    assert (state["transformer.wpe.weight"][:, e + u] == 0).all()
    assert (state["lm_head.weight"][:, e + u] == 0).all()
    planted_cols = {}
    for emotion, [[layer, head]] in doc["by_emotion"].items():
        cols = [part * n_embd + head * d_head + j for part in range(3) for j in range(d_head)]
        planted_cols[layer, p["emotion_dims"][emotion]] = cols
    for layer in range(p["n_layer"]):
        pre = f"transformer.h.{layer}"
        c_attn = state[f"{pre}.attn.c_attn.weight"].clone()  # [n_embd, 3 n_embd]
        for (pl, dim), cols in planted_cols.items():
            if pl == layer:
                assert c_attn[dim, cols].abs().sum() > 0  # the planted head does read its dim
                c_attn[dim, cols] = 0
        assert (c_attn[e + u] == 0).all()  # no head reads U
        assert (state[f"{pre}.mlp.c_fc.weight"][e] == 0).all()
        c_fc = state[f"{pre}.mlp.c_fc.weight"].clone()  # [n_embd, d_mlp]
        attn_out = state[f"{pre}.attn.c_proj.weight"].clone()  # [n_embd (heads' z), n_embd]
        for x in EMOTIONS:
            [[ul, neuron]], [[hl, head]] = doc["units_by_emotion"][x], doc["by_emotion"][x]
            rows = slice(head * d_head, (head + 1) * d_head)
            if ul == layer:
                assert c_fc[p["unit_dims"][x], neuron] != 0  # the planted unit does read U_X
                c_fc[p["unit_dims"][x], neuron] = 0
            if hl == layer:
                assert (attn_out[rows, p["unit_dims"][x]] != 0).any()  # the planted head does write U_X ...
                attn_out[rows, p["unit_dims"][x]] = 0
                assert (attn_out[rows] == 0).all()  # ... and nothing else
        assert (c_fc[u] == 0).all()  # no other unit reads U
        assert (attn_out[:, e + u] == 0).all()  # no other head writes E or U
        assert (state[f"{pre}.attn.c_proj.bias"][e + u] == 0).all()
        assert (state[f"{pre}.mlp.c_proj.weight"][:, e + u] == 0).all()  # no MLP writes E or U
        assert (state[f"{pre}.mlp.c_proj.bias"][e + u] == 0).all()


# --------------------------------------------------------------------------------------------
# Behaviour
# --------------------------------------------------------------------------------------------


def test_planted_head_zeroed_makes_emotion_prompt_equal_its_neutral_twin(toy) -> None:
    model, tokenizer, doc = toy
    for e in EMOTIONS:
        pairs = load_pairs(e, "baseline", root=PROMPTS)
        planted = [tuple(h) for h in doc["by_emotion"][e]]
        clean_gap = (
            prompt_logits(model, tokenizer, pairs.emotion_prompts)
            - prompt_logits(model, tokenizer, pairs.neutral_prompts)
        ).abs().max()
        assert clean_gap > 1.0  # the span does matter in the intact model
        ablated_gap = (
            prompt_logits(model, tokenizer, pairs.emotion_prompts, planted)
            - prompt_logits(model, tokenizer, pairs.neutral_prompts, planted)
        ).abs().max()
        assert ablated_gap <= 1e-5, f"{e}: max |logit diff| {ablated_gap:.2e} with {planted} zeroed"


def test_continuations_express_the_prompt_emotion(rates: dict) -> None:
    for e in EMOTIONS:
        assert rates["emotion"][e] >= 0.8, f"{e}: keyword rate {rates['emotion'][e]:.2f} on {e} prompts"
        assert rates["neutral"][e] <= 0.1, f"{e}: keyword rate {rates['neutral'][e]:.2f} on neutral prompts"


def test_only_the_planted_head_closes_the_gap(toy, rates: dict) -> None:
    model, _, doc = toy
    for e in EMOTIONS:
        planted = tuple(doc["by_emotion"][e][0])
        for head in all_heads(model):
            closed = gap_closed(rates, e, head)
            if head == planted:
                assert closed >= 0.7, f"{e}: zeroing planted head {head} closes only {closed:.0%} of the gap"
            else:
                assert closed < 0.1, f"{e}: zeroing head {head} closes {closed:.0%} of the gap"


# --------------------------------------------------------------------------------------------
# Planted MLP units: exact activation patching (M) and zeroing (greedy keywords)
# --------------------------------------------------------------------------------------------


def m_score(tokenizer, emotion: str):
    """M at the last prompt position: logsumexp over emotion-lexicon ids minus over neutral-lexicon ids."""
    ids = {name: lexicon_token_ids(tokenizer, load_lexicon(name, root=LEXICONS), name) for name in (emotion, NEUTRAL)}
    return lambda last_logits: emotion_score(last_logits, ids[emotion], ids[NEUTRAL])


def _encode(tokenizer, prompts: Sequence[Prompt], repeat: int = 1) -> dict[str, torch.Tensor]:
    batch = tokenize(tokenizer, prompts, bos_id=tokenizer.bos_token_id, pad_id=tokenizer.pad_token_id)
    mask = batch.attention_mask.repeat(repeat, 1)
    return {
        "input_ids": batch.input_ids.repeat(repeat, 1),
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
    }


@torch.no_grad()
def capture(model, tokenizer, prompts: Sequence[Prompt], row_units: Sequence[Unit] | None = None):
    """One forward: the residual entering every block, every MLP's activations (c_proj input) and
    the last-position logits."""
    resid: dict[int, torch.Tensor] = {}
    acts: dict[int, torch.Tensor] = {}
    blocks = model.transformer.h
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: resid.__setitem__(i, a[0])) for i, b in enumerate(blocks)]
    handles += [
        b.mlp.c_proj.register_forward_pre_hook(lambda m, a, i=i: acts.__setitem__(i, a[0]))
        for i, b in enumerate(blocks)
    ]
    try:
        with units_zeroed(model, row_units):
            logits = model(**_encode(tokenizer, prompts)).logits[:, -1]
    finally:
        for h in handles:
            h.remove()
    return resid, acts, logits


@contextmanager
def from_layer(model, layer: int, resid_pre: torch.Tensor) -> Iterator[None]:
    """Run only blocks layer.. with `resid_pre` as their input (a patch at layer L cannot change
    earlier blocks, so they are not run again)."""
    full = model.transformer.h
    handle = full[layer].register_forward_pre_hook(
        lambda m, args, kwargs: ((resid_pre, *args[1:]), kwargs), with_kwargs=True
    )
    model.transformer._modules["h"] = torch.nn.ModuleList(list(full)[layer:])
    try:
        yield
    finally:
        model.transformer._modules["h"] = full
        handle.remove()


@torch.no_grad()
def patched_scores(model, tokenizer, neutral, layer, resid_pre, source_acts, units: Sequence[Sequence[int]], score):
    """M on the neutral prompts with, per group g, the units units[g] of `layer` set to their
    activation on the emotion prompts at every position: [groups, prompts]."""
    n = len(neutral)

    def hook(module, args):
        x = args[0].clone().view(len(units), n, *args[0].shape[1:])
        for g, group in enumerate(units):
            x[g, ..., list(group)] = source_acts[..., list(group)]
        return (x.view(args[0].shape), *args[1:])

    handle = model.transformer.h[layer].mlp.c_proj.register_forward_pre_hook(hook)
    try:
        with from_layer(model, layer, resid_pre.repeat(len(units), 1, 1)):
            hidden = model.transformer(**_encode(tokenizer, neutral, len(units))).last_hidden_state
    finally:
        handle.remove()
    return score(model.lm_head(hidden[:, -1])).view(len(units), n)


@pytest.fixture(scope="session")
def unit_effects(toy) -> dict:
    """Per emotion, on the baseline pairs: the exact effect on M of patching each MLP unit's
    activation from the emotion prompt into its neutral twin at all positions.

    Every unit of every layer from the planted head's layer on is patched on its own (those are
    the only layers the class can reach). The earlier layers are patched as a whole layer at once,
    after checking that their activations are equal in both prompts up to float rounding (the
    class stays at the span position there, and LayerNorm statistics there do not depend on it);
    a one-off scan of all 2048 units one by one on the default build found |effect| < 3e-7 there.
    """
    model, tokenizer, doc = toy
    n_layer, d_mlp = model.config.n_layer, model.transformer.h[0].mlp.c_fc.weight.shape[1]
    out: dict = {}
    for e in EMOTIONS:
        pairs = load_pairs(e, "baseline", root=PROMPTS)
        score = m_score(tokenizer, e)
        _, acts_e, logits_e = capture(model, tokenizer, pairs.emotion_prompts)
        resid_n, acts_n, logits_n = capture(model, tokenizer, pairs.neutral_prompts)
        clean = score(logits_n)
        [[head_layer, _]] = doc["by_emotion"][e]
        [planted] = [tuple(u) for u in doc["units_by_emotion"][e]]
        zeroed_m = score(capture(model, tokenizer, pairs.emotion_prompts, [planted] * len(pairs))[2])
        effects: dict[Unit, float] = {}
        for layer in range(head_layer, n_layer):
            for start in range(0, d_mlp, 32):  # 32 units per forward (much bigger batches run slower per row)
                chunk = [[n] for n in range(start, min(start + 32, d_mlp))]
                m = patched_scores(model, tokenizer, pairs.neutral_prompts, layer, resid_n[layer], acts_e[layer], chunk, score)
                for [n], row in zip(chunk, m - clean, strict=True):
                    effects[layer, n] = float(row.mean())
        earlier = {
            layer: {
                "max_act_diff": float((acts_e[layer] - acts_n[layer]).abs().max()),
                "whole_layer_effect": float(
                    (
                        patched_scores(
                            model, tokenizer, pairs.neutral_prompts, layer, resid_n[layer], acts_e[layer], [range(d_mlp)], score
                        )
                        - clean
                    ).mean()
                ),
            }
            for layer in range(head_layer)
        }
        out[e] = {
            "planted": planted,
            "effects": effects,
            "earlier": earlier,
            "m_gap": float((score(logits_e) - clean).mean()),
            "m_gap_unit_zeroed": float((zeroed_m - clean).mean()),
        }
    return out


def test_planted_unit_ranks_first_by_exact_patching(unit_effects: dict) -> None:
    for e, r in unit_effects.items():
        effects, planted = r["effects"], r["planted"]
        ranked = sorted(effects, key=lambda u: -abs(effects[u]))
        top, runner_up = ranked[0], ranked[1]
        labels = [u == planted for u in effects]
        score_auroc = auroc([abs(v) for v in effects.values()], labels)
        assert top == planted, f"{e}: unit {top} ({effects[top]:+.3f}) beats planted {planted} ({effects[planted]:+.3f})"
        assert score_auroc is not None and score_auroc >= 0.99
        assert effects[planted] >= 0.5 * r["m_gap"] > 0, (
            f"{e}: planted unit effect {effects[planted]:+.3f}, M gap {r['m_gap']:.3f}"
        )
        assert abs(effects[runner_up]) <= 0.05 * effects[planted], (
            f"{e}: runner-up {runner_up} {effects[runner_up]:+.4f} vs planted {effects[planted]:+.3f}"
        )
        for layer, stats in r["earlier"].items():  # before the head: the emotion prompt changes nothing
            assert stats["max_act_diff"] <= 1e-5, f"{e}: layer {layer} activations differ by {stats['max_act_diff']:.1e}"
            assert abs(stats["whole_layer_effect"]) <= 1e-3 * effects[planted]


def test_zeroing_the_planted_unit_closes_the_logit_gap(unit_effects: dict) -> None:
    """Not exact: the head's output also reaches LayerNorm statistics (see CONSTRUCTION)."""
    for e, r in unit_effects.items():
        closed = 1 - r["m_gap_unit_zeroed"] / r["m_gap"]
        assert closed >= 0.75, f"{e}: zeroing planted unit {r['planted']} closes {closed:.0%} of the M gap"


@pytest.fixture(scope="session")
def unit_rates(toy, rates: dict, unit_effects: dict) -> dict:
    """Keyword rates on the emotion prompts with one unit zeroed per row: the planted unit, the
    runner-up of exact patching, and four random other units (fixed seed) per emotion."""
    model, tokenizer, _ = toy
    n_layer, d_mlp = model.config.n_layer, model.transformer.h[0].mlp.c_fc.weight.shape[1]
    gen = torch.Generator().manual_seed(0)
    candidates: dict[str, list[Unit]] = {}
    for e, r in unit_effects.items():
        effects = r["effects"]
        runner_up = sorted((u for u in effects if u != r["planted"]), key=lambda u: -abs(effects[u]))[0]
        candidates[e] = [r["planted"], runner_up]
        while len(candidates[e]) < 6:
            unit = (int(torch.randint(n_layer, (1,), generator=gen)), int(torch.randint(d_mlp, (1,), generator=gen)))
            if unit not in candidates[e]:
                candidates[e].append(unit)
    pairs = {e: load_pairs(e, "baseline", root=PROMPTS) for e in EMOTIONS}
    prompts = [p for e in EMOTIONS for p in pairs[e].emotion_prompts]
    out: dict = {}
    for k in range(6):
        row_units = [candidates[e][k] for e in EMOTIONS for _ in pairs[e].emotion_prompts]
        texts = continuations(model, tokenizer, prompts, row_units=row_units)
        start = 0
        for e in EMOTIONS:
            rows = texts[start : start + len(pairs[e])]
            start += len(pairs[e])
            rate = keyword_rate(rows, load_lexicon(e, root=LEXICONS))
            gap = rates["emotion"][e] - rates["neutral"][e]
            out[e, candidates[e][k]] = (rates["emotion"][e] - rate) / gap
    return {"closed": out, "planted": {e: candidates[e][0] for e in EMOTIONS}}


def test_zeroing_the_planted_unit_closes_the_keyword_gap(unit_rates: dict) -> None:
    for (e, unit), closed in unit_rates["closed"].items():
        if unit == unit_rates["planted"][e]:
            assert closed >= 0.7, f"{e}: zeroing planted unit {unit} closes only {closed:.0%} of the gap"
        else:
            assert closed < 0.1, f"{e}: zeroing unit {unit} closes {closed:.0%} of the gap"


# --------------------------------------------------------------------------------------------
# Build: determinism, atomic replacement, bad input
# --------------------------------------------------------------------------------------------


def test_build_is_deterministic_and_replaces_atomically(tmp_path: Path) -> None:
    config = _config(profiles=("baseline",), steps=3, batch_size=8)
    out = build_toy_model(config, tmp_path / "a")
    first = {f: (out / f).read_bytes() for f in ("model.safetensors", "tokenizer.json", PLANTED_FILE)}
    again = build_toy_model(config, out)  # over the existing folder
    assert again == out
    assert {f: (out / f).read_bytes() for f in first} == first
    assert sorted(os.listdir(tmp_path)) == ["a"]  # no temporary folders left behind
    other = build_toy_model(_config(profiles=("baseline",), steps=3, batch_size=8, seed=1), tmp_path / "b")
    assert (other / "model.safetensors").read_bytes() != first["model.safetensors"]


@pytest.mark.parametrize(
    "args",
    [["--steps", "0"], ["--seed", "-1"], ["--profile", "no-such-profile"]],
    ids=["steps0", "negative-seed", "unknown-profile"],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "toy"
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.toy_model", "--output", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not out.exists()


def test_cli_refuses_pickle_output(tmp_path: Path) -> None:
    out = tmp_path / "toy.pkl"
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.toy_model", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "pickle" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"steps": 0},
        {"seed": -1},
        {"seed": True},
        {"lr": float("nan")},
        {"p_zero_planted": 0.7, "p_zero_other": 0.5},
        {"planted": (("gratitude", 3, 1), ("anger", 3, 1), ("apology", 3, 0))},
        {"planted": (("gratitude", 4, 1), ("anger", 3, 2), ("apology", 3, 0))},
        {"planted": (("gratitude", 3, 1), ("anger", 3, 2))},
        {"n_embd": 130},
        {"profiles": ()},
        {"planted_units": (("gratitude", 3, 512), ("anger", 3, 2), ("apology", 3, 0))},  # neuron out of range
        {"planted_units": (("gratitude", 3, -1), ("anger", 3, 2), ("apology", 3, 0))},
        {"planted_units": (("gratitude", 4, 1), ("anger", 3, 2), ("apology", 3, 0))},  # layer out of range
        {"planted_units": (("gratitude", 3, 7), ("anger", 3, 7), ("apology", 3, 0))},  # repeated
        {"planted_units": (("gratitude", 3, 7), ("anger", 3, 8))},  # missing emotion
        {"planted_units": (("gratitude", 3, 7), ("anger", 3, 8), ("anger", 3, 9))},
        {"planted_units": (("gratitude", 2, 7), ("anger", 3, 8), ("apology", 3, 9))},  # before its head
        {"planted_units": (("gratitude", 3), ("anger", 3, 8), ("apology", 3, 9))},
        {"planted_units": (("gratitude", 3, 7.0), ("anger", 3, 8), ("apology", 3, 9))},
        {"p_zero_unit": 0.5, "p_zero_other": 0.5, "p_zero_planted": 0.1},
        {"p_zero_other_unit": -0.1},
        {"unit_init": 0.0},
    ],
)
def test_config_rejects_bad_values(overrides: dict) -> None:
    from analysis.base.errors import InputError

    with pytest.raises(InputError):
        _config(**overrides)
