"""Interventions are exact: checked against the Hugging Face model itself, for every family."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis.core.loading import load_model, LoadedModel
from analysis.core.prompts import Prompt, tokenize
from analysis.core.sites import Site
from analysis.modelfacts.families import component_input
from analysis.interventions.edits import capture, Edit, hooks_for, last_logits, patch_edits, position_ids, position_map, split_batch, zero_edits
from analysis.interventions.exact import component_edits, component_inputs, plain_hf
from analysis.modelfacts.families import SUPPORTED_FAMILIES as FAMILIES

TEXTS = [
    "Hi Maria, thank you so much for your help.",
    "The meeting is at noon",
    "I am so sorry for the trouble with the schedule and the report.",
    "Dear team, please find",
]


def _prompts(texts: list[str]) -> list[Prompt]:
    return [Prompt(t, (0, 2)) for t in texts]


def _batch(model: LoadedModel, texts: list[str]):  # noqa: ANN202
    return tokenize(model.tokenizer, _prompts(texts), bos_id=model.spec.bos_id, pad_id=model.spec.pad_id)


def _hf_reference(path: Path):  # noqa: ANN202
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()


def _hf_logprobs(hf, batch, zero_head: tuple[int, int] | None = None, d_head: int = 0) -> torch.Tensor:  # noqa: ANN001
    handle = None
    if zero_head is not None:
        layer, head = zero_head
        proj = hf.get_submodule(component_input("head", hf.config.model_type, layer))

        def drop(module, args):  # noqa: ANN001, ANN202
            x = args[0].clone()
            x[..., head * d_head : (head + 1) * d_head] = 0
            return (x, *args[1:])

        handle = proj.register_forward_pre_hook(drop)
    try:
        with torch.no_grad():
            out = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids(batch.attention_mask))
    finally:
        if handle is not None:
            handle.remove()
    return out.logits.log_softmax(-1)


def _bridge_logprobs(model: LoadedModel, batch, hooks=()) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(hooks)):
        out = model.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids(batch.attention_mask))
    return out.logits.log_softmax(-1)


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request: pytest.FixtureRequest, random_model_dirs: dict[str, Path]) -> tuple[LoadedModel, Path]:
    path = random_model_dirs[request.param]
    return load_model(str(path)), path


def _real(batch) -> torch.Tensor:  # noqa: ANN001
    return batch.attention_mask.bool()


def test_bridge_equals_hf_and_identity_hook_changes_nothing(family_model: tuple[LoadedModel, Path]) -> None:
    model, path = family_model
    batch = _batch(model, TEXTS)
    plain = _bridge_logprobs(model, batch)
    ident = _bridge_logprobs(model, batch, [(f"blocks.{layer}.attn.hook_z", lambda x, hook: x) for layer in range(model.spec.n_layers)])
    assert torch.equal(plain, ident), "an identity hook on hook_z must change nothing, bit for bit"
    ref = _hf_logprobs(_hf_reference(path), batch)
    diff = (plain - ref).abs()[_real(batch)].max().item()
    assert abs(diff) <= 1e-5, diff


def test_zeroed_head_equals_hf_with_head_removed(family_model: tuple[LoadedModel, Path]) -> None:
    model, path = family_model
    hf = _hf_reference(path)
    batch = _batch(model, TEXTS)
    units = {Site("head", layer, h): (model.spec.d_head,) for layer in range(model.spec.n_layers) for h in range(model.spec.n_heads)}
    clean = _hf_logprobs(hf, batch)
    for layer, head in [(0, 0), (model.spec.n_layers - 1, model.spec.n_heads - 1), (0, 2)]:
        site = Site("head", layer, head)
        ours = _bridge_logprobs(model, batch, hooks_for(zero_edits([site], len(TEXTS), units)))
        ref = _hf_logprobs(hf, batch, zero_head=(layer, head), d_head=model.spec.d_head)
        diff = (ours - ref).abs()[_real(batch)].max().item()
        assert abs(diff) <= 1e-5, (layer, head, diff)
        # and the head mattered: removing it moved the output (so the check is not vacuous)
        moved = (ours - clean).abs()[_real(batch)].max().item()
        assert abs(moved) > 1e-4, (layer, head, moved)


def test_patching_all_heads_equals_patching_attention_output(family_model: tuple[LoadedModel, Path]) -> None:
    model, _ = family_model
    # Two runs of equal token length: patch layer L's every head from A into B.
    a_texts = ["Hi Maria, thank you so much for your help.", "I am furious about this delay."]
    b_texts = ["Hi Maria, I read your message this morning.", "The meeting is at noon today."]
    both = _batch(model, a_texts + b_texts)
    a, b = split_batch(both, 2)
    layer = model.spec.n_layers - 1
    sites = [Site("head", layer, h) for h in range(model.spec.n_heads)]
    src = capture(model, a, [s.hook_name for s in sites] + [f"blocks.{layer}.hook_attn_out"])
    idx = torch.arange(a.input_ids.shape[1]).expand_as(a.input_ids)
    mask = torch.ones_like(a.attention_mask, dtype=torch.bool)
    by_heads = _bridge_logprobs(model, b, hooks_for(patch_edits(sites, src, idx, mask)))
    attn_out = src[f"blocks.{layer}.hook_attn_out"]
    by_layer = _bridge_logprobs(model, b, [(f"blocks.{layer}.hook_attn_out", lambda x, hook: attn_out)])
    diff = (by_heads - by_layer).abs()[_real(b)].max().item()
    assert abs(diff) <= 1e-5, diff
    clean = _bridge_logprobs(model, b)
    assert abs((by_heads - clean).abs()[_real(b)].max().item()) > 1e-4


def test_left_padding_matches_unpadded(family_model: tuple[LoadedModel, Path]) -> None:
    model, _ = family_model
    batch = _batch(model, TEXTS)
    padded = last_logits(model, batch)
    for i, text in enumerate(TEXTS):
        alone = last_logits(model, _batch(model, [text]))
        assert abs((padded[i] - alone[0]).abs().max().item()) <= 1e-4


def test_position_map_span_aligns_span_ends() -> None:
    # target span at positions 2..4 (3 tokens), source span at 3..4 (2 tokens): end-aligned.
    from analysis.core.prompts import TokenBatch

    def tb(span: list[int]) -> TokenBatch:
        m = torch.zeros(1, 6, dtype=torch.bool)
        m[0, span] = True
        return TokenBatch(torch.zeros(1, 6, dtype=torch.long), torch.ones(1, 6, dtype=torch.long), m, torch.tensor([6]))

    idx, mask = position_map("span", source=tb([3, 4]), target=tb([2, 3, 4]))
    assert mask[0].tolist() == [False, False, False, True, True, False]
    assert idx[0, 3].item() == 3 and idx[0, 4].item() == 4
    idx, mask = position_map("last", source=tb([3]), target=tb([3]))
    assert mask[0].tolist() == [False] * 5 + [True]


def test_edit_on_mlp_unit_matches_manual_zero(family_model: tuple[LoadedModel, Path]) -> None:
    model, _ = family_model
    batch = _batch(model, TEXTS)
    site = Site("mlp", 0, 3)
    ours = _bridge_logprobs(model, batch, hooks_for(zero_edits([site], len(TEXTS), {site: ()})))

    def manual(x, hook):  # noqa: ANN001, ANN202
        x = x.clone()
        x[..., 3] = 0
        return x

    ref = _bridge_logprobs(model, batch, [("blocks.0.mlp.hook_post", manual)])
    assert torch.equal(ours, ref)
    assert isinstance(Edit, type)


# --- MLP units on the fast path (plain HF modules, edit at the down-projection input) ----------


@pytest.fixture(scope="module", params=FAMILIES)
def unit_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> LoadedModel:
    """2 layers, d_mlp 256; init_std 0.1 so one neuron moves the logits far above the 1e-5 tolerance."""
    from analysis.modelfacts.random_weights import save_random_model

    path = save_random_model(request.param, tmp_path_factory.mktemp("unit") / request.param, tokenizer_dir=tokenizer_dir, seed=2, init_std=0.1)
    return load_model(str(path))


def _plain_logprobs(model: LoadedModel, batch, edits=()) -> torch.Tensor:  # noqa: ANN001
    hf = plain_hf(model)
    with torch.no_grad(), component_edits(hf, model.spec.family, list(edits), model.spec.d_head):
        out = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids(batch.attention_mask))
    return out.logits.log_softmax(-1)


@pytest.mark.usefixtures("one_thread")
def test_fast_path_unit_edit_equals_bridge_hook_post(unit_model: LoadedModel) -> None:
    """One Edit, two paths: the bridge's `blocks.L.mlp.hook_post` and the plain HF module's
    down-projection input. Several units, partial masks, values far from the clean ones."""
    model = unit_model
    batch = _batch(model, TEXTS)
    b, t = batch.input_ids.shape
    g = torch.Generator().manual_seed(0)
    edits = [
        Edit(Site("mlp", 0, 5), torch.randn(b, t, generator=g) * 3, torch.rand(b, t, generator=g) < 0.5, False),
        Edit(Site("mlp", 1, 200), torch.randn(b, t, generator=g) * 3, torch.ones(b, t, dtype=torch.bool), True),
        Edit(Site("mlp", 1, 7), torch.full((b, 1), 2.5), torch.ones(b, 1, dtype=torch.bool), False),
    ]
    bridge = _bridge_logprobs(model, batch, hooks_for(edits))
    fast = _plain_logprobs(model, batch, edits)
    diff = (bridge - fast).abs()[_real(batch)].max().item()
    assert abs(diff) <= 1e-5, diff
    moved = (fast - _plain_logprobs(model, batch)).abs()[_real(batch)].max().item()
    assert abs(moved) > 1e-3, moved


@pytest.mark.usefixtures("one_thread")
def test_fast_path_identity_unit_edit_changes_nothing(unit_model: LoadedModel) -> None:
    model = unit_model
    batch = _batch(model, TEXTS)
    hf = plain_hf(model)
    sites = [Site("mlp", layer, n) for layer in range(model.spec.n_layers) for n in (0, 17, 255)]
    acts = component_inputs(hf, model.spec.family, batch, sites, model.spec.d_head)
    b, t = batch.input_ids.shape
    identity = [Edit(s, acts[s.hook_name][:, :, s.index], torch.ones(b, t, dtype=torch.bool), True) for s in sites]
    masked_out = [Edit(s, torch.full((b, t), 9.0), torch.zeros(b, t, dtype=torch.bool), False) for s in sites]
    clean = _plain_logprobs(model, batch)
    assert torch.equal(_plain_logprobs(model, batch, identity), clean), "writing back the unit's own value must change nothing"
    assert torch.equal(_plain_logprobs(model, batch, masked_out), clean), "an edit masked everywhere must change nothing"
    # the fast path's captured activations are the bridge's hook_post
    ref = capture(model, batch, [s.hook_name for s in sites])
    worst = max((acts[k] - ref[k]).abs()[_real(batch)].max().item() for k in ref)
    assert abs(worst) <= 1e-5, worst


@pytest.mark.usefixtures("one_thread")
def test_zeroed_unit_equals_hf_with_down_projection_column_zeroed(unit_model: LoadedModel) -> None:
    """The reference is written by hand: column n of the MLP down-projection input set to 0."""
    from transformers import AutoModelForCausalLM

    model = unit_model
    hf = AutoModelForCausalLM.from_pretrained(model.path, attn_implementation="eager").eval()
    batch = _batch(model, TEXTS)
    clean = _hf_logprobs(hf, batch)
    for layer, neuron in [(0, 0), (1, 255), (0, 128)]:
        site = Site("mlp", layer, neuron)
        ours = _bridge_logprobs(model, batch, hooks_for(zero_edits([site], len(TEXTS), {site: ()})))
        fast = _plain_logprobs(model, batch, zero_edits([site], len(TEXTS), {site: ()}))

        def drop(module, args, n=neuron):  # noqa: ANN001, ANN202
            x = args[0].clone()
            x[..., n] = 0
            return (x, *args[1:])

        handle = hf.get_submodule(component_input("mlp", model.spec.family, layer)).register_forward_pre_hook(drop)
        try:
            ref = _hf_logprobs(hf, batch)
        finally:
            handle.remove()
        for name, got in (("bridge", ours), ("fast path", fast)):
            diff = (got - ref).abs()[_real(batch)].max().item()
            assert abs(diff) <= 1e-5, (name, layer, neuron, diff)
        moved = (ref - clean).abs()[_real(batch)].max().item()
        assert abs(moved) > 1e-4, (layer, neuron, moved)
