"""Plan a run before anything runs: weights' size, each stage's peak memory and time, from the config alone.

    python -m analysis.plan --model gpt2-xl   (the command; this module is its library)

The model's architecture comes from a local folder's config.json, the Hugging Face cache, or the
embedded table of published configs (analysis.modelfacts.architectures), so nothing is downloaded. A run
whose estimated peak exceeds the device's memory ends, after the table, with one line saying
what to change (exit 2); `check_fits` is the same check, for a stage to call before it loads a model.

The models are counts times constants fitted on this project's CPU measurements
(tests/benchmarks/plan_calibration.py; the numbers are in the comments at each constant):
- memory: the process (python, torch, transformers, transformer-lens), the weights once per copy
  a stage holds (screenings keep a plain HF copy for the fast path), and the activations the
  stage keeps alive: forward+backward over the prompt batch for the screenings, the KV cache and
  the per-step scores for generation;
- time: FLOPs over (a fitted share of) the matrix-multiply throughput measured on the device when
  `plan` runs, so a busy or faster machine is seen as such. On a GPU the share is the CPU's: small
  per-head forwards use a GPU less well than a big matmul, so GPU times are a lower bound.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from analysis.modelfacts.architectures import lookup
from analysis.modelfacts.shapes import Arch, EMBEDDED_FAMILY, EMBEDDED_SHAPES
from analysis.settings.hardware import Precision, device_memory_bytes, resolve
from analysis.base.vocabulary import EMOTIONS
from analysis.base.errors import InputError

if TYPE_CHECKING:
    from analysis.core.loading import LoadedModel

GB = 1e9
POS = 20  # tokens per prompt: the baseline prompts are 14-20 GPT-2 tokens with BOS
MAX_TOKENS = 15  # params.yaml ablation/patching.max_tokens
RUNS_PER_GENERATION_STAGE = 5  # clean, the top:1 intervention, cumulative top-1..3 (k=1 is the intervention)
UNIT_EXACT_TOP_K = 20  # params.yaml unit_screening.exact_top_k

# Calibration: tests/benchmarks/plan_calibration.py (CPU, 2 threads shared with other jobs,
# torch 2.13; random GPT-2 configs 4x8x256, 8x8x512, 12x12x768, vocab 50257, 70 prompts x 20
# tokens). Measured forward+backward activation peaks 0.62, 1.17, 2.21 GB; the least-squares fit
# below reproduces them within 3 %.
PROCESS_BYTES = 0.65e9  # a stage before its weights: 0.51 GB RSS after its imports, + 0.14 GB building a model (measured)
ACT_LAYER_SCALE = 1.14  # measured / counted per-layer activation bytes (fitted)
VOCAB_COPIES = 1.4  # vocabulary-wide float tensors per token alive at the peak (fitted)
# Model FLOP/s over the matmul FLOP/s measured alongside: 0.86, 0.66, 0.65 for the three sizes
# (the smallest is unembedding-bound); the larger models are what plans are for.
MATMUL_SHARE = 0.65
# KV-cached greedy decoding, one position a step: docs/DESIGN.md §10's GPT-2-small numbers (forward of
# 70 x 20 tokens 1.3 s, 15-token greedy generation 2.7 s) put its FLOP rate at 0.84 x a forward's.
GENERATION_SHARE = 0.55
# Whole-stage time over the FLOP model's, from the README's measured per-model stage times of
# random GPT-2-small on 2 cores (screen_units 1.2-1.4 min, ablate/patch 4.1-4.4 min for six
# stages) at the rate that makes docs/DESIGN.md's 1.3 s forward: the FLOP model gives 0.61 min and 13 s,
# so what it leaves out (unit captures, scoring, starting the process) is fitted here. `screen`
# is not fitted: the FLOP model gives 3.9 min against the 4.1-4.4 min measured.
STAGE_FIT = {"screen": 1.0, "screen_units": 2.1, "ablate": 3.2, "patch": 3.2}


@dataclass(frozen=True)
class Workload:
    """How much a run computes: prompts per emotion, emotions, and prompts per forward."""

    n_prompts: int
    n_emotions: int
    batch: int  # prompts per forward (the stages run all of a set in one batch today)

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InputError(f"batch: {self.batch} is too small; at least one prompt per forward")


STAGES = ("screen", "screen_units", "ablate", "patch")
PER_EMOTION = ("ablate", "patch")  # one DVC stage per model x emotion; the screenings cover every emotion


def profile_workload(profile: str, n_emotions: int = 3, prompts_dir: Path = Path("data/prompts")) -> Workload:
    folder = prompts_dir / profile
    # the prompts per set: an emotion file's lines (its twins, shared neutral.txt or its own
    # <emotion>.neutral.txt, have as many)
    first = next((folder / f"{e}.txt" for e in EMOTIONS if (folder / f"{e}.txt").is_file()), None)
    if first is None:
        known = ", ".join(sorted(p.name for p in prompts_dir.iterdir() if p.is_dir()))
        raise InputError(f"profile: {profile!r} has no emotion prompts in {folder}; profiles: {known}")
    n = sum(1 for line in first.read_text().splitlines() if line.strip())
    return Workload(n_prompts=n, n_emotions=n_emotions, batch=n)


def bytes_per(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def forward_flops(a: Arch, batch: int, pos: int, *, logits_at: int | None = None, from_layer: int = 0) -> float:
    """2 x multiply-adds of one forward: projections, attention scores and mixing, unembedding.

    logits_at: positions unembedded per prompt (None: every position, as a plain HF forward);
    from_layer: blocks before it are skipped (the fast path starts at the patched layer)."""
    layers = a.n_layers - from_layer
    dense = 2 * batch * pos * layers * (4 * a.d_model**2 + 2 * a.d_model * a.d_mlp)
    attention = 4 * batch * layers * pos * pos * a.d_model
    unembed = 2 * batch * (pos if logits_at is None else logits_at) * a.d_model * a.vocab
    return dense + attention + unembed


def activation_bytes(a: Arch, batch: int, pos: int, elem: int, logits_at: int) -> float:
    """Bytes a forward+backward keeps alive at its peak. Counted per layer and token: ~10 d (layer
    norms, q/k/v, head outputs, residuals), 5 d_mlp (the MLP input and GELU's intermediates),
    2 n_heads x pos (scores, probabilities); vocabulary-wide tensors at the `logits_at`
    unembedded positions per prompt. The scales are fitted (see the constants)."""
    per_layer = 10 * a.d_model + 5 * a.d_mlp + 2 * a.n_heads * pos
    return batch * (pos * ACT_LAYER_SCALE * a.n_layers * per_layer + logits_at * VOCAB_COPIES * a.vocab) * elem


def patched_forward_bytes(a: Arch, rows: int, new: int, total: int, elem: int) -> float:
    """Bytes one site's patched run adds when several share a forward of the exact fast path
    (analysis.interventions.exact, no gradients): its copy of every layer's keys and values over
    the `total` columns (the prefix's and its own `new` ones) and the transients of one block for
    its `new` columns (layer-norm output, q/k/v, the heads' output, residuals: ~6 d; the MLP's
    hidden layer and its activation: 2 d_mlp; scores and probabilities: 2 n_heads x total).
    Counted, not fitted: what stays alive between blocks is the cache and the residual."""
    kv = 2 * a.n_layers * total * a.d_model
    block = new * (6 * a.d_model + 2 * a.d_mlp + 2 * a.n_heads * total)
    return rows * (kv + block) * elem


def stage_peaks(a: Arch, w: Workload, dtype: torch.dtype, budget: float = 0.0) -> dict[str, float]:
    """Estimated peak bytes of each model stage (one process each). `budget`: memory_budget_gb in
    bytes, what the screenings' exact fast path may add by stacking the sites of one layer (all
    its heads; at most the top-k units) in one forward (0: one site per forward, counted already)."""
    elem = bytes_per(dtype)
    weights = a.n_params * elem
    # the screenings hold the bridge and a plain HF copy of the weights (the fast path), and
    # unembed the last position only (`logits_to_keep=1`)
    screen = PROCESS_BYTES + 2 * weights + activation_bytes(a, w.batch, POS, elem, logits_at=1)
    units = screen + 2 * w.batch * POS * a.n_layers * a.d_mlp * 4  # every unit's activation and gradient, float32
    site = patched_forward_bytes(a, w.batch, POS, POS, elem)
    screen += min(budget, a.n_heads * site)
    units += min(budget, UNIT_EXACT_TOP_K * site)
    # generation: one copy; keys and values of every layer, and the float32 scores of every step
    kv = 2 * a.n_layers * w.batch * (POS + MAX_TOKENS) * a.d_model * elem + w.batch * MAX_TOKENS * a.vocab * 4
    gen = PROCESS_BYTES + weights + kv + w.batch * POS * a.vocab * 4  # + the prefill's logits
    return {"screen": screen, "screen_units": units, "ablate": gen, "patch": gen}


def stage_seconds(a: Arch, w: Workload, flops_per_s: float) -> dict[str, float]:
    """Estimated wall time of each model stage at `flops_per_s` plain-matmul throughput."""
    n_batches = -(-w.n_prompts // w.batch)
    full = n_batches * forward_flops(a, w.batch, POS, logits_at=1)  # the screenings unembed the last position only
    # screen, per emotion: delta_attn on both sets (2), the emotion z capture (1), attribution
    # (forward+backward ~ 2 forwards: gradients w.r.t. activations only), then one patched forward per head from its layer on, lexicon
    # logits at the last position only
    exact = n_batches * a.n_heads * sum(forward_flops(a, w.batch, POS, logits_at=1, from_layer=layer) for layer in range(a.n_layers))
    screen = w.n_emotions * (5 * full + exact)
    # screen_units, per emotion: capture + attribution (3), the top-k units patched (half the blocks on average)
    units = w.n_emotions * (3 * full + UNIT_EXACT_TOP_K * n_batches * forward_flops(a, w.batch, POS, logits_at=1, from_layer=a.n_layers // 2))
    # ablate / patch, one emotion: greedy generation for each run: prefill, then one position a step
    gen = RUNS_PER_GENERATION_STAGE * n_batches * (forward_flops(a, w.batch, POS) + MAX_TOKENS * forward_flops(a, w.batch, 1))
    dense, decode = MATMUL_SHARE * flops_per_s, GENERATION_SHARE * flops_per_s
    raw = {"screen": screen / dense, "screen_units": units / dense, "ablate": gen / decode, "patch": gen / decode}
    return {stage: STAGE_FIT[stage] * t for stage, t in raw.items()}


def matmul_flops_per_s(precision: Precision, d_model: int, seconds: float = 0.5) -> float:
    """FLOP/s of a [70 x POS, d] x [d, 4d] matmul on the device now (what the time model scales)."""
    x = torch.randn(70 * POS, d_model).to(device=precision.device, dtype=precision.dtype)
    w = torch.randn(d_model, 4 * d_model).to(device=precision.device, dtype=precision.dtype)
    sync = (lambda: torch.cuda.synchronize(precision.device)) if precision.device.type == "cuda" else (lambda: None)
    x @ w  # warm-up: kernel selection, first-touch allocation
    sync()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x @ w
        n += 1
    sync()
    return n * 2 * x.shape[0] * d_model * 4 * d_model / (time.perf_counter() - start)


def check_fits(a: Arch, w: Workload, precision: Precision, available: float | None = None) -> dict[str, float]:
    """The stage peaks, or InputError (one line) when one exceeds the device's memory, naming
    the changes that would fit: a smaller memory budget for batched sites, a lower dtype, a
    smaller batch, a bigger device."""
    available = device_memory_bytes(precision.device) if available is None else available
    budget = precision.budget_bytes
    peaks = stage_peaks(a, w, precision.dtype, budget)
    stage, peak = max(peaks.items(), key=lambda kv: kv[1])
    if peak <= available:
        return peaks

    def largest_batch(dtype: torch.dtype) -> int | None:
        return next((b for b in range(w.batch - 1, 0, -1)
                     if max(stage_peaks(a, Workload(w.n_prompts, w.n_emotions, b), dtype, budget).values()) <= available), None)

    fixes = []
    unbatched = max(stage_peaks(a, w, precision.dtype).values())
    left = math.floor((available - unbatched) / GB * 100) / 100  # GB, rounded down: what is named must fit
    if budget > 0 and left > 0:
        fixes.append(f"memory_budget_gb {left:g} (batched sites within what is left)")
    low_dtype = precision.dtype if bytes_per(precision.dtype) == 2 else torch.bfloat16  # bfloat16 and float16 weigh alike
    low = max(stage_peaks(a, w, low_dtype, budget).values())
    if low_dtype != precision.dtype and low <= available:
        fixes.append(f"dtype bfloat16 (peak {low / GB:.1f} GB)")
    if (b := largest_batch(precision.dtype)) is not None:
        fixes.append(f"batch {b} prompts per forward")
    elif not fixes and low_dtype != precision.dtype and (b := largest_batch(low_dtype)) is not None:
        fixes.append(f"dtype bfloat16 with batch {b} prompts per forward")
    fixes.append(f"a device with at least {peak / GB:.1f} GB")
    raise InputError(
        f"{stage} needs about {peak / GB:.1f} GB in {precision.dtype_name} but {precision.device} has "
        f"{available / GB:.1f} GB; use " + ", or ".join(fixes)
    )


def preflight(model: str, path: str, precision: Precision, profile: str, n_emotions: int,
              available: float | None = None) -> None:
    """What a model-loading stage checks before it loads the weights: the estimated peaks fit the
    device (`check_fits`), and the exact fast path's memory budget holds one site's patched run of
    one prompt (the longest the profile can have, with BOS; a budget of 0 batches nothing).
    `path`: where the model's config is (analysis.core.loading.resolve_model_path)."""
    try:
        arch, _ = lookup(path)
    except (InputError, ValueError, KeyError, TypeError, OSError):
        # a hub model neither the cache nor the table knows (its loader fetches the config), or a
        # config.json this cannot read (the loader's checks report it, in one line)
        return
    workload = profile_workload(profile, n_emotions)
    check_fits(arch, workload, precision, available)
    if precision.budget_bytes > 0:
        tokens = _longest_tokens(model, profile)
        need = patched_forward_bytes(arch, 1, tokens, tokens, bytes_per(precision.dtype))
        if precision.budget_bytes < need:
            raise InputError(
                f"memory_budget_gb: {precision.budget_bytes / GB:.3g} GB is too small for one prompt: one patched run of "
                f"a {tokens}-token prompt of {model} in {precision.dtype_name} needs about {need / GB:.3g} GB; "
                f"raise it or use memory_budget_gb: auto"
            )


def _longest_tokens(model: str, profile: str) -> int:
    """Tokens of the profile's longest prepared prompt under the model's tokenizer (with BOS), or
    POS where that cannot be read here (analysis.settings.params.longest_prompt's lower bound is too low
    for a memory check)."""
    from analysis.settings.params import MIN_PROMPT_TOKENS, Params, longest_prompt

    n, _ = longest_prompt(model, Params(profile=profile))
    return n if n > MIN_PROMPT_TOKENS else POS


def load_planned(model: str, precision: Precision, profile: str, n_emotions: int) -> LoadedModel:
    """A model-loading stage's load: `preflight` first (nothing heavy has run), then the weights on
    `precision`'s device in its dtype."""
    from analysis.core.loading import load_model, resolve_model_path

    preflight(model, resolve_model_path(model), precision, profile, n_emotions)
    return load_model(model, precision=precision)


@dataclass(frozen=True)
class Plan:
    arch: Arch
    workload: Workload
    precision: Precision
    available: float  # bytes the device offers
    text: str


def embedded_arch(name: str) -> tuple[Arch, str] | None:
    """The architecture of an embedded model (toy, bench): from its folder when built, else from the
    numbers its builder constructs it with; None for any other name."""
    from analysis.core.loading import EMBEDDED

    if name not in EMBEDDED:
        return None
    folder, _ = EMBEDDED[name]
    if (folder / "config.json").is_file():
        return lookup(str(folder))
    shape = EMBEDDED_SHAPES[name]  # the builders' numbers; vocab: the BPE target, before the span tokens
    n_layers, n_heads, d_model, n_ctx = (shape[k] for k in ("n_layer", "n_head", "n_embd", "n_positions"))
    arch = Arch(family=EMBEDDED_FAMILY, n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_mlp=4 * d_model, vocab=shape["vocab_size"],
                n_ctx=n_ctx, tied=False, learned_pos=True, qkv_bias=True)
    return arch, f"construction params ({folder} is not built yet; vocab: the BPE target, before the span tokens)"


def plan(model: str, device: str = "auto", dtype: str = "float32", profile: str = "baseline", batch: int | None = None,
         available: float | None = None) -> Plan:
    """The plan of a run, before anything runs; `check_fits` on it says whether the run fits."""
    arch, source = embedded_arch(model) or lookup(model)
    precision = resolve(device, dtype)
    w = profile_workload(profile)
    if batch is not None:
        w = Workload(w.n_prompts, w.n_emotions, batch)
    available = device_memory_bytes(precision.device) if available is None else available
    peaks = stage_peaks(arch, w, precision.dtype, precision.budget_bytes)
    flops = matmul_flops_per_s(precision, arch.d_model)
    seconds = stage_seconds(arch, w, flops)
    lines = [
        f"model {model}: {arch.family}, {arch.n_layers} layers x {arch.n_heads} heads (d_head {arch.d_head}), "
        f"d_model {arch.d_model}, d_mlp {arch.d_mlp}, vocab {arch.vocab}  [config: {source}]",
        f"parameters {arch.n_params:,}; weights {arch.n_params * bytes_per(precision.dtype) / GB:.2f} GB in {precision.dtype_name}",
        f"device {precision.device}: {available / GB:.1f} GB available, matmul {flops / 1e9:.0f} GFLOP/s measured now; "
        f"memory_budget_gb auto: {precision.budget_bytes / GB:.2g} GB for the exact fast path's batched sites",
        f"profile {profile}: {w.n_prompts} pairs x {w.n_emotions} emotions, {w.batch} prompts per forward, ~{POS} tokens each",
        f"{'stage':<22}{'peak memory':>12}{'time':>12}",
    ]
    for stage in STAGES:
        label = f"{stage} (per emotion)" if stage in PER_EMOTION else stage
        lines.append(f"{label:<22}{peaks[stage] / GB:>9.2f} GB{_duration(seconds[stage]):>12}")
    total = sum(s * (w.n_emotions if stage in PER_EMOTION else 1) for stage, s in seconds.items())
    lines.append(f"{'model stages in all':<22}{'':>12}{_duration(total):>12}")
    return Plan(arch=arch, workload=w, precision=precision, available=available, text="\n".join(lines))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
