"""Model access: load by name (`toy`, a Hugging Face id, a local folder), head and unit specs.

Every model goes through `TransformerBridge.boot_transformers` with raw Hugging Face weights
(no compatibility mode): folding value biases into the output bias would make a zeroed
`hook_z` leave part of the head behind (DESIGN §4), so we never process weights.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from analysis.errors import InputError, cli

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase

TOY = "toy"
TOY_DIR = Path("results/models/toy")

# The module whose input is the concatenation of head outputs, per supported family. Zeroing
# one head's slice of that input is "the HF model with that head removed": the reference every
# intervention is checked against.
HEAD_OUT_PROJ: dict[str, str] = {
    "gpt2": "transformer.h.{layer}.attn.c_proj",
    "gpt_neox": "gpt_neox.layers.{layer}.attention.dense",
    "gpt_neo": "transformer.h.{layer}.attn.attention.out_proj",
}
# The module whose input is the MLP's post-activation hidden layer (`blocks.L.mlp.hook_post`):
# neuron n is column n of that input. Editing the column there is editing the unit exactly.
MLP_OUT_PROJ: dict[str, str] = {
    "gpt2": "transformer.h.{layer}.mlp.c_proj",
    "gpt_neox": "gpt_neox.layers.{layer}.mlp.dense_4h_to_h",
    "gpt_neo": "transformer.h.{layer}.mlp.c_proj",
}
SUPPORTED_FAMILIES = tuple(HEAD_OUT_PROJ)


@dataclass(frozen=True)
class ModelSpec:
    """Shape facts every stage validates specs against."""

    name: str
    family: str
    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int | None  # 0 or None: no MLP layers (an attention-only model), so no unit specs
    bos_id: int
    pad_id: int


@dataclass(frozen=True)
class LoadedModel:
    bridge: TransformerBridge
    tokenizer: PreTrainedTokenizerBase
    spec: ModelSpec
    path: str

    @property
    def hf(self) -> torch.nn.Module:
        """The wrapped Hugging Face model; bridge hooks fire when it runs."""
        return self.bridge.original_model


def resolve_model_path(name: str, toy_dir: Path = TOY_DIR) -> str:
    """Map a model name to what `from_pretrained` takes; fail in one line if it is not here."""
    if not name or not name.strip():
        raise InputError("model name is empty; use `toy` (works offline), a local folder or a Hugging Face id")
    if name == TOY:
        if not (toy_dir / "config.json").is_file():
            raise InputError(
                f"model `toy` is not built: {toy_dir}/config.json is missing; build it with "
                f"`dvc repro toy_model` or `python -m analysis.toy_model --output {toy_dir}`"
            )
        return str(toy_dir)
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise InputError(f"model folder {name} has no config.json (expected a Hugging Face model folder)")
        return name
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return name
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise InputError(
            f"model {name!r} is not available: it is not in the local Hugging Face cache and the hub "
            f"is offline (HF_HUB_OFFLINE=1); download it where the hub is reachable "
            f"(`huggingface-cli download {name}`) or pass a local folder; `toy` works offline"
        )
    return name


def load_tokenizer(name: str, toy_dir: Path = TOY_DIR) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    path = resolve_model_path(name, toy_dir)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise _unavailable(name, err) from None


def _unavailable(name: str, err: Exception) -> InputError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InputError(
        f"model {name!r} is not available ({first[:160]}); download it where the hub is reachable "
        f"(`huggingface-cli download {name}`) or pass a local folder; `toy` works offline"
    )


def load_model(name: str, *, device: str = "cpu", toy_dir: Path = TOY_DIR) -> LoadedModel:
    """Load `name` through the bridge with raw weights, eval mode, gradients off."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoConfig

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would flood CI logs
    path = resolve_model_path(name, toy_dir)
    try:
        hf_config = AutoConfig.from_pretrained(path)
    except OSError as err:
        raise _unavailable(name, err) from None
    family = hf_config.model_type
    if family not in HEAD_OUT_PROJ:
        raise InputError(
            f"model {name!r} is of family {family!r}, which is not supported; supported families: "
            f"{', '.join(SUPPORTED_FAMILIES)}"
        )
    tokenizer = load_tokenizer(name, toy_dir)
    try:
        bridge = TransformerBridge.boot_transformers(path, device=device, dtype=torch.float32, tokenizer=tokenizer)
    except OSError as err:
        raise _unavailable(name, err) from None
    bridge.eval()
    install_kv_cache_fix(bridge)
    for p in bridge.parameters():
        p.requires_grad_(False)
    cfg = bridge.cfg
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else bos
    spec = ModelSpec(
        name=name,
        family=family,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_head=cfg.d_head,
        d_mlp=cfg.d_mlp,
        bos_id=int(bos),
        pad_id=int(pad),
    )
    return LoadedModel(bridge=bridge, tokenizer=tokenizer, spec=spec, path=path)


def install_kv_cache_fix(bridge: TransformerBridge) -> int:
    """Hand the KV cache to the bridge's attention under the name it reads.

    transformers 5 blocks pass the cache as `cache=`; the bridge's attention looks only for
    `past_key_values` / `layer_past`, so under `generate` every new token attended to itself
    alone (DESIGN §4). A pre-hook copies `cache` to `past_key_values` when the latter is absent;
    where a later release passes the right name, it does nothing. Returns the modules patched.
    """

    def pass_cache(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
            kwargs = {**kwargs, "past_key_values": kwargs["cache"]}
        return args, kwargs

    n = 0
    for module in bridge.modules():
        if hasattr(module, "_update_kv_cache") and not getattr(module, "_emotion_heads_cache_fix", False):
            module.register_forward_pre_hook(pass_cache, with_kwargs=True)
            module._emotion_heads_cache_fix = True
            n += 1
    return n


# --- head and unit specs -----------------------------------------------------------------
#
# One flag (`--head-spec`, params `ablation.head_spec` / `patching.head_spec`) names either
# attention heads or MLP units (neurons), never both:
#   heads: "L:H", "L1:H1,L2:H2", "top:N" (top N of the model's head screening);
#   units: "mlp:L:N", "mlp:L:N1,N2" (neurons of layer L), "mlp:L1:N1,mlp:L2:N2",
#          "mlp-top:K" (top K of the model's unit screening, analysis.unit_screening).

Head = tuple[int, int]
Unit = tuple[int, int]  # (layer, neuron)


@dataclass(frozen=True)
class HeadSpec:
    """Parsed `--head-spec`: explicit heads, or the top N of a screening file."""

    heads: tuple[Head, ...] = ()
    top: int | None = None

    @property
    def is_top(self) -> bool:
        return self.top is not None


@dataclass(frozen=True)
class UnitSpec:
    """Parsed unit spec: explicit MLP units (layer, neuron), or the top K of a unit screening file."""

    units: tuple[Unit, ...] = ()
    top: int | None = None

    @property
    def is_top(self) -> bool:
        return self.top is not None


_PAIR = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_TOP = re.compile(r"^\s*top\s*:\s*(\d+)\s*$")
_UNIT = re.compile(r"^\s*mlp\s*:\s*(\d+)\s*:\s*(\d+)\s*$", re.IGNORECASE)
_NEURON = re.compile(r"^\s*(\d+)\s*$")
_UNIT_TOP = re.compile(r"^\s*mlp-top\s*:\s*(\d+)\s*$", re.IGNORECASE)
_UNIT_HINT = 'expected "mlp:L:N", "mlp:L:N1,N2" (neurons of layer L), "mlp:L1:N1,mlp:L2:N2" or "mlp-top:K", e.g. "mlp:3:17,42"'


def is_unit_spec(spec: str | None) -> bool:
    """Whether a spec names MLP units (it starts with `mlp`); cheap, no validation."""
    return spec is not None and spec.strip().lower().startswith("mlp")


def parse_head_spec(spec: str) -> HeadSpec:
    """Parse `"0:0"`, `"0:0,3:5"` or `"top:N"`; anything else is an InputError."""
    hint = 'expected "L:H", "L1:H1,L2:H2" or "top:N", e.g. "0:0,3:5"'
    if spec is None or not spec.strip():
        raise InputError(f"head spec is empty; {hint}")
    if m := _TOP.match(spec):
        n = int(m.group(1))
        if n < 1:
            raise InputError(f"head spec {spec!r}: top:N needs N >= 1")
        return HeadSpec(top=n)
    heads: list[Head] = []
    for part in spec.split(","):
        m = _PAIR.match(part)
        if not m:
            if is_unit_spec(part):
                raise InputError(f"head spec {spec!r} mixes heads and MLP units; give heads or units (mlp:L:N), not both")
            raise InputError(f"head spec {spec!r}: cannot parse {part.strip()!r}; {hint}")
        head = (int(m.group(1)), int(m.group(2)))
        if head in heads:
            raise InputError(f"head spec {spec!r}: head {head[0]}:{head[1]} is given twice")
        heads.append(head)
    return HeadSpec(heads=tuple(heads))


def parse_unit_spec(spec: str) -> UnitSpec:
    """Parse `"mlp:3:17"`, `"mlp:3:17,42"`, `"mlp:0:1,mlp:2:5"` or `"mlp-top:K"`.

    A bare number continues the layer of the `mlp:L:N` before it, so `mlp:3:17,42` is
    neurons 17 and 42 of layer 3. Anything else is an InputError.
    """
    if spec is None or not spec.strip():
        raise InputError(f"unit spec is empty; {_UNIT_HINT}")
    if m := _UNIT_TOP.match(spec):
        k = int(m.group(1))
        if k < 1:
            raise InputError(f"unit spec {spec!r}: mlp-top:K needs K >= 1")
        return UnitSpec(top=k)
    units: list[Unit] = []
    layer: int | None = None
    for part in spec.split(","):
        if m := _UNIT.match(part):
            layer, neuron = int(m.group(1)), int(m.group(2))
        elif (m := _NEURON.match(part)) and layer is not None:
            neuron = int(m.group(1))
        elif _PAIR.match(part) or _TOP.match(part):
            raise InputError(f"unit spec {spec!r} mixes heads and MLP units; give heads (L:H) or units (mlp:L:N), not both")
        else:
            raise InputError(f"unit spec {spec!r}: cannot parse {part.strip()!r}; {_UNIT_HINT}")
        if (layer, neuron) in units:
            raise InputError(f"unit spec {spec!r}: unit mlp:{layer}:{neuron} is given twice")
        units.append((layer, neuron))
    return UnitSpec(units=tuple(units))


def parse_site_spec(spec: str) -> HeadSpec | UnitSpec:
    """A head spec or a unit spec, told apart by the `mlp` prefix."""
    return parse_unit_spec(spec) if is_unit_spec(spec) else parse_head_spec(spec)


def validate_heads(heads: tuple[Head, ...], spec: ModelSpec) -> tuple[Head, ...]:
    for layer, head in heads:
        if not 0 <= layer < spec.n_layers:
            raise InputError(
                f"head {layer}:{head}: layer {layer} is out of range for {spec.name} "
                f"(layers 0..{spec.n_layers - 1})"
            )
        if not 0 <= head < spec.n_heads:
            raise InputError(
                f"head {layer}:{head}: head {head} is out of range for {spec.name} "
                f"(heads 0..{spec.n_heads - 1})"
            )
    return heads


def validate_units(units: tuple[Unit, ...], spec: ModelSpec) -> tuple[Unit, ...]:
    """Check MLP units against the loaded model's shape (like `validate_heads`)."""
    if units and not spec.d_mlp:
        raise InputError(
            f"unit mlp:{units[0][0]}:{units[0][1]}: model {spec.name} has no MLP units (d_mlp = {spec.d_mlp}: "
            f"attention-only); use a head spec (L:H) for it"
        )
    for layer, neuron in units:
        if not 0 <= layer < spec.n_layers:
            raise InputError(
                f"unit mlp:{layer}:{neuron}: layer {layer} is out of range for {spec.name} "
                f"(layers 0..{spec.n_layers - 1})"
            )
        if not 0 <= neuron < spec.d_mlp:  # type: ignore[operator]  # d_mlp checked above
            raise InputError(
                f"unit mlp:{layer}:{neuron}: neuron {neuron} is out of range for {spec.name} "
                f"(neurons 0..{spec.d_mlp - 1} in each of its {spec.n_layers} MLP layers)"  # type: ignore[operator]
            )
    return units


def z_hook_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def pattern_hook_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def mlp_post_name(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"


def resid_pre_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


# --- stage `model`: a model name -> a local folder the pipeline can depend on ---------------

SOURCE_SCHEMA = "emotion-heads/model-source/v1"


def materialize(name: str, output: Path, *, seed: int, toy_steps: int) -> Path:
    """Build `toy` into `output`, or record where another model's weights were found.

    Each model gets its own folder, so a stage for GPT-2 never depends on the toy's build.
    """
    import hashlib

    from analysis.io import check_output_dir, write_json

    check_output_dir(output)
    if name == TOY:
        from analysis.toy_model import ToyConfig, build_toy_model

        return build_toy_model(ToyConfig(seed=seed, steps=toy_steps), output)
    model = load_model(name)
    folder = Path(model.path) if Path(model.path).is_dir() else None
    if folder is None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        folder = Path(cached).parent if isinstance(cached, str) else None
    digests = {}
    if folder is not None:
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix in (".json", ".safetensors", ".txt", ".model"):
                digests[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    write_json(
        output / "source.json",
        {
            "schema": SOURCE_SCHEMA,
            "model": name,
            "family": model.spec.family,
            "n_layers": model.spec.n_layers,
            "n_heads": model.spec.n_heads,
            "d_head": model.spec.d_head,
            "d_mlp": model.spec.d_mlp,
            "folder": str(folder) if folder else None,
            "sha256": digests,
        },
    )
    return output


@cli
def main(argv: list[str] | None = None) -> None:
    import argparse

    from analysis.params import load_params

    ap = argparse.ArgumentParser(prog="python -m analysis.models", description="Stage `model`: build toy or locate a model.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    a = ap.parse_args(argv)
    p = load_params(a.params)  # the first stage: a bad params.yaml fails here, in one line
    materialize(a.model, a.output, seed=p.seed, toy_steps=p.toy.steps)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
