"""Where and in what precision a stage computes: `device` and `dtype`, resolved and checked up front.

`device: auto | cpu | cuda | cuda:N | mps` and `dtype: float32 | bfloat16 | float16` (params keys
of the same names, `--device` / `--dtype` on the command line). `auto` is the first accelerator
present (CUDA, then MPS), else the CPU. Everything a device or dtype can get wrong fails here, in
one line naming the param, before a model is loaded: an unknown name, `cuda` where torch has no
CUDA, `cuda:N` beyond the device count, a dtype whose kernels the device lacks.

Whether a dtype works is probed, not looked up: a tiny forward and backward of the operations a
transformer block uses runs on the device in that dtype. A table would go stale (torch 2.13's CPU
build runs float16 matmul, layer norm, softmax and their backward, which older builds did not).

Lower precisions cannot meet float32's exactness tolerance; `TOLERANCE` states what each one
meets against float32, measured (see its comment), for the exactness checks to use.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from analysis.base.errors import InputError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Max |log p - log p_float32| over every real position and every vocabulary entry that an
# exactness check may allow, per dtype. float32 keeps the project's 1e-5 (docs/DESIGN.md §5). The others
# come from `python -m analysis.device --measure` (CPU, torch 2.13, 16 baseline prompts): random
# GPT-2 configs 2x4x64, 4x8x256 and GPT-2-small's 12x12x768 with vocab 50257 gave at most 0.024
# (bfloat16) and 0.0034 (float16); the trained toy, whose logits are sharper, 0.075 and 0.0096.
# The tolerances are 2x the largest, rounded: a margin for other weights and devices, not a
# guarantee; trained models with sharper logits may need more (rerun --measure on them).
TOLERANCE: dict[str, float] = {"float32": 1e-5, "bfloat16": 0.15, "float16": 0.02}


@dataclass(frozen=True)
class Backend:
    """One kind of device: whether torch can reach it here, and how many there are."""

    available: Callable[[], bool]
    count: Callable[[], int]
    indexed: bool  # accepts `kind:N`


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


BACKENDS: dict[str, Backend] = {
    "cuda": Backend(available=lambda: torch.cuda.is_available(), count=lambda: torch.cuda.device_count(), indexed=True),
    "mps": Backend(available=_mps_available, count=lambda: int(_mps_available()), indexed=False),
    "cpu": Backend(available=lambda: True, count=lambda: 1, indexed=False),
}
AUTO_ORDER = ("cuda", "mps", "cpu")  # accelerators first; the CPU is always there
_SPEC = re.compile(r"(?P<kind>[a-z]+)(?::(?P<index>\d+))?")


def _choices() -> str:
    return "auto, cpu, cuda, cuda:N, mps"


def parse_device(spec: str, param: str = "device") -> tuple[str, int | None]:
    """`auto | cpu | cuda | cuda:N | mps` -> (kind, index), by its spelling alone (params.yaml's
    check: a report rendered on a machine without the run's GPU still reads its params)."""
    text = (spec or "").strip().lower()
    if text == "auto":
        return "auto", None
    m = _SPEC.fullmatch(text)
    backend = BACKENDS.get(m["kind"]) if m else None
    if backend is None or (m["index"] is not None and not backend.indexed):
        raise InputError(f"{param}: unknown device {spec!r}; allowed: {_choices()}")
    return m["kind"], None if m["index"] is None else int(m["index"])


def resolve_device(spec: str, param: str = "device") -> torch.device:
    """`auto | cpu | cuda | cuda:N | mps` -> the torch device here, or one InputError line naming `param`."""
    kind, index = parse_device(spec, param)
    if kind == "auto":
        kind = next(k for k in AUTO_ORDER if BACKENDS[k].available())
        return torch.device(f"{kind}:0" if BACKENDS[kind].indexed else kind)
    backend = BACKENDS[kind]
    if not backend.available():
        raise InputError(
            f"{param}: {kind!r} is not available on this machine (torch {torch.__version__}); "
            f"use {param}: auto or cpu"
        )
    if not backend.indexed:
        return torch.device(kind)
    index, count = index or 0, backend.count()
    if index >= count:
        raise InputError(f"{param}: {spec!r} does not exist: this machine has {count} {kind} device(s), {kind}:0..{kind}:{count - 1}")
    return torch.device(f"{kind}:{index}")


def resolve_dtype(name: str, param: str = "dtype") -> torch.dtype:
    try:
        return DTYPES[(name or "").strip().lower()]
    except KeyError:
        raise InputError(f"{param}: unknown dtype {name!r}; allowed: {', '.join(DTYPES)}") from None


def probe(device: torch.device, dtype: torch.dtype) -> None:
    """Run, in `dtype` on `device`, one small step of every kind of kernel a block needs.

    Forward: embedding, linear (addmm), batched matmul, softmax, layer norm, GELU, log-softmax;
    backward through all of them (attribution screening differentiates). Raises what torch raises.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, generator=g).to(device=device, dtype=dtype).requires_grad_()
    w = torch.randn(8, 8, generator=g).to(device=device, dtype=dtype)
    table = torch.randn(5, 8, generator=g).to(device=device, dtype=dtype)
    h = torch.nn.functional.linear(x, w, w[0]) + torch.nn.functional.embedding(torch.tensor([[1, 2, 3]], device=device), table)
    scores = torch.matmul(h, h.transpose(-1, -2)).softmax(-1)  # [2, 3, 3]
    y = torch.nn.functional.layer_norm(torch.matmul(scores, h), (8,))
    out = torch.nn.functional.gelu(y, approximate="tanh").log_softmax(-1).sum()
    out.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# memory_budget_gb: auto on an accelerator: this share of its memory for the exact fast path's
# batched patched runs (the rest holds the weights, the plain HF copy and the other scores' tensors).
ACCELERATOR_BUDGET_SHARE = 0.4
# On the CPU, auto is a fixed 0.25 GB: tests/benchmarks/test_exact_batching.py (2 cores shared
# with other jobs, load 6-7) timed batched / unbatched at what it gives (a toy layer's 4 heads;
# 4 heads of a 6x8x512 GPT-2 with GPT-2's vocabulary) at 0.59 and 0.67 on 2 threads, 0.96 and
# 0.60 on 1; fixed sizes ranged 0.42-1.94 on 2 threads (that much noise) and 0.73-1.08 on 1.
# A small budget keeps the gain (GPT-2 small: 1-2 sites of 70 prompts) without growing the
# screening's 3-3.4 GB peak much.
CPU_AUTO_BUDGET = 0.25e9


@dataclass(frozen=True)
class Precision:
    """A checked (device, dtype) pair, the exactness tolerance that dtype meets vs float32, and the
    memory the exact fast path may fill with several sites' patched runs in one forward."""

    device: torch.device
    dtype: torch.dtype
    dtype_name: str
    budget_bytes: float = 0.0  # 0: one site per forward

    @property
    def tolerance(self) -> float:
        return TOLERANCE[self.dtype_name]

    def record(self) -> dict[str, str]:
        """What a result file stores about how it was computed."""
        return {"device": str(self.device), "dtype": self.dtype_name}


def resolve_budget(value: float | str, device: torch.device, param: str = "memory_budget_gb") -> float:
    """`auto | GB > 0` -> bytes the exact fast path may use for batched sites on `device`."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return ACCELERATOR_BUDGET_SHARE * device_memory_bytes(device) if device.type != "cpu" else CPU_AUTO_BUDGET
    try:
        gb = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{param}: {value!r} is not a number of GB; allowed: auto or a number > 0") from None
    if not gb > 0 or gb == float("inf"):
        raise InputError(f"{param}: {value!r} must be a finite number of GB > 0, or auto")
    return gb * 1e9


def resolve(device: str = "auto", dtype: str = "float32", memory_budget_gb: float | str = "auto") -> Precision:
    """Resolve the three params and prove the device/dtype pair works, or fail in one line naming the param."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    budget = resolve_budget(memory_budget_gb, dev)
    try:
        probe(dev, dt)
    except (RuntimeError, TypeError, NotImplementedError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise InputError(
            f"dtype: {dtype!r} does not run on {dev} ({first}); use dtype: float32"
            + (" or another device" if dev.type == "cpu" else " or device: cpu")
        ) from None
    return Precision(device=dev, dtype=dt, dtype_name=(dtype or "").strip().lower(), budget_bytes=budget)


def from_args(args: object, params: object) -> Precision:
    """The Precision of a command: its --device / --dtype / --memory-budget-gb flags
    (analysis.core.cli.Parser.add_compute_flags), else params.yaml's keys of the same names."""

    def pick(key: str) -> object:
        flag = getattr(args, key)
        return getattr(params, key) if flag is None else flag

    return resolve(pick("device"), pick("dtype"), pick("memory_budget_gb"))


def device_memory_bytes(device: torch.device) -> int:
    """Memory a run may use on `device`: a GPU's total, MPS's recommended cap, the CPU's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory())
    import psutil

    return int(psutil.virtual_memory().available)
