"""The toy model keeps its promise: the planted heads, and only they, carry the emotions.

Uses results/models/toy when it has been built; otherwise builds the full model once per session
into a temporary folder (about a minute and a half on 2 cores). Every check here uses plain HF
code (GPT2LMHeadModel, generate, a c_proj pre-hook), not the pipeline's own intervention code,
so that the ground truth is established independently of what it is used to test.
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

from analysis.prompts import EMOTIONS, NEUTRAL, Prompt, load_lexicon, load_pairs, tokenize
from analysis.toy_model import (
    PLANTED_FILE,
    SCHEMA,
    ToyConfig,
    build_toy_model,
    constraint_violations,
    load_planted,
    plant_from_doc,
)

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data" / "prompts"
LEXICONS = ROOT / "data" / "lexicons"
MAX_NEW_TOKENS = 15
Head = tuple[int, int]


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
def toy_dir(toy_path: Path) -> Path:
    """The pipeline's toy build, or one made here (conftest's `toy_path`)."""
    return toy_path


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


@torch.no_grad()
def continuations(model, tokenizer, prompts: Sequence[Prompt], heads: Sequence[Head] = ()) -> list[str]:
    """Greedy continuation text (prompt excluded), BOS prepended, left padding."""
    batch = tokenize(tokenizer, prompts, bos_id=tokenizer.bos_token_id, pad_id=tokenizer.pad_token_id)
    with zeroed(model, heads):
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
    assert doc["units"] == []
    assert sorted(doc["by_emotion"]) == sorted(EMOTIONS)
    heads = sorted(tuple(h) for hs in doc["by_emotion"].values() for h in hs)
    assert heads == sorted(tuple(h) for h in doc["heads"])
    assert len(set(heads)) == len(EMOTIONS)
    assert all(layer == model.config.n_layer - 1 for layer, _ in heads)  # all in the last layer
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
    span = {c: p["span_token_ids"][c] for c in (NEUTRAL, *EMOTIONS)}
    all_span = [i for ids in span.values() for i in ids]
    others = [i for i in range(state["transformer.wte.weight"].shape[0]) if i not in set(all_span)]
    n_embd, n_head = p["n_embd"], p["n_head"]
    d_head = n_embd // n_head
    zero = torch.tensor(0.0)

    wte = state["transformer.wte.weight"]
    assert torch.equal(wte[others][:, e], zero.expand(len(others), len(e)))
    off_e = [i for i in range(n_embd) if i not in e]
    assert (wte[all_span][:, off_e] == wte[all_span[0], off_e]).all()  # one shared vector off E
    for k, c in enumerate((NEUTRAL, *EMOTIONS)):
        want = torch.full((len(e),), -1.0) * p["span_scale"]
        want[k] = 3.0 * p["span_scale"]
        assert (wte[span[c]][:, e] == want).all()
    assert (state["transformer.wpe.weight"][:, e] == 0).all()
    assert (state["lm_head.weight"][:, e] == 0).all()
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
        assert (c_attn[e] == 0).all()
        assert (state[f"{pre}.mlp.c_fc.weight"][e] == 0).all()
        for proj in (f"{pre}.attn.c_proj", f"{pre}.mlp.c_proj"):
            assert (state[f"{proj}.weight"][:, e] == 0).all()
            assert (state[f"{proj}.bias"][e] == 0).all()


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
    ],
)
def test_config_rejects_bad_values(overrides: dict) -> None:
    from analysis.errors import InputError

    with pytest.raises(InputError):
        _config(**overrides)
