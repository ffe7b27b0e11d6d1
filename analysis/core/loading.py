"""Model access: load by name (`toy`, a Hugging Face id, a local folder), head and unit specs.

Every model goes through `TransformerBridge.boot_transformers` with raw Hugging Face weights
(no compatibility mode): folding value biases into the output bias would make a zeroed
`hook_z` leave part of the head behind (DESIGN §4), so we never process weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
import torch

from analysis.contract import MODEL_SOURCE_SCHEMA
from analysis.errors import InputError
from analysis.families import FAMILIES, SUPPORTED_FAMILIES
if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase


TOY = "toy"


TOY_DIR = Path("results/models/toy")


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
                f"`dvc repro model@toy` or `python -m analysis.toy_model --output {toy_dir}`"
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
    if family not in FAMILIES:
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




def materialize(name: str, output: Path, *, seed: int, toy_steps: int) -> Path:
    """Build `toy` into `output`, or record where another model's weights were found.

    Each model gets its own folder, so a stage for GPT-2 never depends on the toy's build.
    """
    import hashlib

    from analysis.io import check_output_path, write_json

    check_output_path(output / "x")
    if name == TOY:
        from analysis.embedded.config import ToyConfig
        from analysis.embedded.build import build_toy_model

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
            "schema": MODEL_SOURCE_SCHEMA,
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
