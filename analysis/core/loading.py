"""Model access: load by name (`toy`, a Hugging Face id, a local folder), head and unit specs.

Every model goes through `TransformerBridge.boot_transformers` with raw Hugging Face weights
(no compatibility mode): folding value biases into the output bias would make a zeroed
`hook_z` leave part of the head behind (docs/DESIGN.md §4), so we never process weights.
"""

from __future__ import annotations

import os
import warnings
import pickle  # noqa: S403 - only for the error type of torch's weights_only loader
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
import torch

from analysis.settings.hardware import Precision, resolve
from analysis.base.errors import InputError
from analysis.modelfacts.families import FAMILIES, SUPPORTED_FAMILIES
if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase


TOY = "toy"


TOY_DIR = Path("results/models/toy")


BENCH = "bench"  # the benchmark with known, hard answers (analysis.embedded.benchmark; issue 16)


# The embedded models, loadable by name: name -> (the folder its stage builds, the command that
# builds it). `toy_dir` arguments below replace the toy's folder only (tests build toys elsewhere).
EMBEDDED: dict[str, tuple[Path, str]] = {
    TOY: (TOY_DIR, "`dvc repro model@toy` or `python -m analysis.toy_model --output results/models/toy`"),
    BENCH: (Path("results/models/bench"), "`dvc repro benchmark` or `python -m analysis.bench_model --output results/models/bench`"),
}


@dataclass(frozen=True)
class ModelSpec:
    """Shape facts every stage checks specs against."""

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
    precision: Precision  # where and in what dtype the weights live; every input goes there

    @property
    def hf(self) -> torch.nn.Module:
        """The wrapped Hugging Face model; bridge hooks fire when it runs."""
        return self.bridge.original_model


def resolve_model_path(name: str, toy_dir: Path = TOY_DIR) -> str:
    """Map a model name to what `from_pretrained` takes; fail in one line if it is not here."""
    if not name or not name.strip():
        raise InputError("model name is empty; use `toy` (works offline), a local folder or a Hugging Face id")
    if name in EMBEDDED:
        folder, how = EMBEDDED[name]
        folder = toy_dir if name == TOY else folder
        if not (folder / "config.json").is_file():
            raise InputError(f"model `{name}` is not built: {folder}/config.json is missing; build it with {how}")
        return str(folder)
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


# Set EMOTION_HEADS_ALLOW_PICKLE_WEIGHTS=1 (an environment variable, so no stage CLI changes): a local folder may then
# be loaded from pytorch_model.bin (still with torch's weights_only loader). Off by default, so a
# folder someone handed over is read only through safetensors, which cannot run code.
ALLOW_PICKLE_ENV = "EMOTION_HEADS_ALLOW_PICKLE_WEIGHTS"


def _pickle_allowed() -> bool:
    return os.environ.get(ALLOW_PICKLE_ENV, "0") not in ("0", "", "false", "False")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def read_config(name: str, path: str):  # noqa: ANN201
    """The model's Hugging Face config; any problem with config.json is one InputError line."""
    from transformers import AutoConfig

    folder = Path(path)
    if folder.is_dir():
        import json

        cfg_file = folder / "config.json"
        try:
            doc = json.loads(cfg_file.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"model {name!r}: {cfg_file} is not valid UTF-8 JSON ({_first_line(err)})") from None
        if not isinstance(doc, dict) or not doc.get("model_type"):
            raise InputError(
                f"model {name!r}: {cfg_file} has no model_type; a Hugging Face config names its family "
                f"(supported: {', '.join(SUPPORTED_FAMILIES)})"
            )
    try:
        return AutoConfig.from_pretrained(path)
    except OSError as err:
        raise _unavailable(name, err) from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"model {name!r}: its config.json cannot be read ({_first_line(err)})") from None


def _weight_files(name: str, folder: Path) -> list[Path]:
    """The safetensors files of a local model folder (sharded or not); refuse pickled weights."""
    import json

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise InputError(f"model {name!r}: {index} is not a valid shard index ({_first_line(err)})") from None
        files = [folder / s for s in shards]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InputError(f"model {name!r}: shard {missing[0]} named in {index} does not exist")
        return files
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    pickled = [f.name for f in sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pth"))]
    if pickled and not _pickle_allowed():
        raise InputError(
            f"model folder {folder} has only pickled weights ({', '.join(pickled)}); local folders are "
            f"loaded from model.safetensors only (pickle can run code); convert them, or set "
            f"{ALLOW_PICKLE_ENV}=1 to load them with torch's weights_only loader"
        )
    if not pickled:
        raise InputError(f"model folder {folder} has no weights (model.safetensors is missing)")
    return []


def check_model_folder(name: str, folder: Path, hf_config) -> None:  # noqa: ANN001
    """Weights that do not match the config are one InputError line, never a random init.

    Reads only the safetensors headers (names, shapes) and compares them with the tensors the
    config's architecture has (built on the meta device: no memory, no compute). A truncated,
    padded or corrupt file is caught here too: safetensors checks that the header covers the file.
    """
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    files = _weight_files(name, folder)
    if not files:
        return  # pickled weights, explicitly allowed: transformers' loader reports mismatches
    have: dict[str, tuple[int, ...]] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    sl = st.get_slice(k)
                    have[k] = tuple(sl.get_shape())
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise InputError(f"model {name!r}: {f} is not a readable safetensors file ({_first_line(err)})") from None
    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(hf_config)
    except Exception as err:  # noqa: BLE001 - a config transformers cannot build
        raise InputError(f"model {name!r}: config.json does not describe a buildable model ({_first_line(err)})") from None
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    renamed = _checkpoint_names(have, skeleton)
    by_name = renamed is not None
    have = renamed if renamed is not None else have
    tied = getattr(skeleton, "all_tied_weights_keys", None) or getattr(skeleton, "_tied_weights_keys", None) or {}
    tied_keys = set(tied) if not isinstance(tied, dict) else set(tied)
    tie = bool(getattr(hf_config, "tie_word_embeddings", False))
    missing = [k for k in want if by_name and k not in have and not (tie and k in tied_keys)]
    unexpected = [k for k in have if by_name and k not in want]
    shapes = [f"{k} {list(have[k])} vs {list(want[k])}" for k in want if k in have and have[k] != want[k]]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} of the wrong shape (e.g. {shapes[0]}, file vs config)")
        raise InputError(
            f"model {name!r}: the weights in {folder} do not match its config.json: {'; '.join(parts)}; "
            f"refusing to fill them with random initialisation"
        )


def _checkpoint_names(have: dict[str, tuple[int, ...]], skeleton: torch.nn.Module) -> dict[str, tuple[int, ...]] | None:
    """The file's tensor names as transformers will load them (its renamings, e.g. GPT-NeoX's
    embed_out → lm_head, replayed), or None where the model's mapping also merges or splits
    tensors (then only the shapes of the names in common are compared)."""
    import re

    try:
        from transformers.conversion_mapping import get_model_conversion_mapping, WeightRenaming
    except ImportError:
        return dict(have)
    transforms = get_model_conversion_mapping(skeleton)
    if any(type(t) is not WeightRenaming for t in transforms):
        return None
    out: dict[str, tuple[int, ...]] = {}
    for key, shape in have.items():
        for t in transforms:
            targets = list(t.target_patterns)
            for i, src in enumerate(t.source_patterns):
                tgt = targets[i] if len(targets) == len(t.source_patterns) else targets[0]
                key = re.sub(src, tgt, key)
        out[key] = shape
    return out


def load_tokenizer(name: str, toy_dir: Path = TOY_DIR) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    path = resolve_model_path(name, toy_dir)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise _unavailable(name, err) from None
    except Exception as err:  # noqa: BLE001 - a corrupt tokenizer.json raises the tokenizers' own errors
        raise InputError(f"model {name!r}: its tokenizer cannot be loaded ({_first_line(err)})") from None


def context_length(config) -> int | None:  # noqa: ANN001
    """Positions the model can attend over (n_positions / max_position_embeddings), if it says."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def check_context(model: LoadedModel, prompt_tokens: int, max_tokens: int, what: str = "the longest prompt") -> None:
    """Prompt (with BOS) plus generated tokens must fit the model's context; one line if not."""
    limit = context_length(model.hf.config)
    if limit is not None and prompt_tokens + max_tokens > limit:
        raise InputError(
            f"model {model.spec.name!r} has a context of {limit} tokens, but {what} is {prompt_tokens} "
            f"tokens and max_tokens is {max_tokens} ({prompt_tokens} + {max_tokens} = "
            f"{prompt_tokens + max_tokens} > {limit}); lower max_tokens to at most {max(limit - prompt_tokens, 0)} "
            f"or shorten the prompts"
        )


def _unavailable(name: str, err: Exception) -> InputError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InputError(
        f"model {name!r} is not available ({first[:160]}); download it where the hub is reachable "
        f"(`huggingface-cli download {name}`) or pass a local folder; `toy` works offline"
    )


def load_model(
    name: str, *, device: str = "cpu", dtype: str = "float32", precision: Precision | None = None, toy_dir: Path = TOY_DIR
) -> LoadedModel:
    """Load `name` through the bridge with raw weights, eval mode, gradients off, on `device` in
    `dtype` (checked first by analysis.settings.hardware.resolve: a bad pair fails before the weights load),
    or per `precision`, a stage's already resolved one (analysis.settings.hardware.from_args)."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers.utils import logging as hf_logging

    precision = precision if precision is not None else resolve(device, dtype)
    hf_logging.disable_progress_bar()  # weight-loading bars would flood CI logs
    path = resolve_model_path(name, toy_dir)
    hf_config = read_config(name, path)
    family = hf_config.model_type
    if family not in FAMILIES:
        raise InputError(
            f"model {name!r} is of family {family!r}, which is not supported; supported families: "
            f"{', '.join(SUPPORTED_FAMILIES)}"
        )
    if Path(path).is_dir():
        check_model_folder(name, Path(path), hf_config)
    tokenizer = load_tokenizer(name, toy_dir)
    rows = getattr(hf_config, "vocab_size", None)
    if rows is not None and len(tokenizer) > rows:
        # a token id past the embedding's rows fails deep inside a forward (or, on a GPU, reads another row)
        raise InputError(
            f"model {name!r}: its tokenizer has {len(tokenizer):,} tokens but its embedding only {rows:,} rows; the tokenizer "
            f"files {'in ' + path if Path(path).is_dir() else 'of its Hugging Face cache snapshot'} are not this model's "
            f"(put the model's own tokenizer beside its weights)"
        )
    try:
        with warnings.catch_warnings():
            # an allowed pytorch_model.bin: torch's protocol note would be a second line before ours
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            bridge = TransformerBridge.boot_transformers(
                path, device=str(precision.device), dtype=precision.dtype, tokenizer=tokenizer
            )
    except OSError as err:
        raise _unavailable(name, err) from None
    except (RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as err:
        # e.g. torch's weights_only loader refusing a pickled object in an allowed .bin
        raise InputError(f"model {name!r}: its weights cannot be loaded ({_first_line(err)})") from None
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
    return LoadedModel(bridge=bridge, tokenizer=tokenizer, spec=spec, path=path, precision=precision)


def install_kv_cache_fix(bridge: TransformerBridge) -> int:
    """Hand the KV cache to the bridge's attention under the name it reads.

    transformers 5 blocks pass the cache as `cache=`; the bridge's attention looks only for
    `past_key_values` / `layer_past`, so under `generate` every new token attended to itself
    alone (docs/DESIGN.md §4). A pre-hook copies `cache` to `past_key_values` when the latter is absent;
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
