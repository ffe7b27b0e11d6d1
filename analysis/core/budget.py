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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from analysis.modelfacts.architectures import lookup, PUBLIC
from analysis.modelfacts.shapes import Arch, EMBEDDED_FAMILY, EMBEDDED_SHAPES
from analysis.settings.hardware import ACCELERATOR_BUDGET_SHARE, CPU_AUTO_BUDGET, Precision, device_memory_bytes, resolve
from analysis.base.vocabulary import EMOTIONS
from analysis.base.errors import InputError
from analysis.settings.params import MIN_PROMPT_TOKENS, Params, longest_prompt

if TYPE_CHECKING:
    from analysis.core.loading import LoadedModel

GB = 1e9
POS = 20  # tokens per prompt: the baseline prompts are 14-20 GPT-2 tokens with BOS
UNIT_EXACT_TOP_K = 20  # params.yaml unit_screening.exact_top_k

# Calibration: tests/benchmarks/plan_calibration.py (CPU, 2 threads shared with other jobs,
# torch 2.13; random GPT-2 configs 4x8x256, 8x8x512, 12x12x768, vocab 50257, 70 prompts x 20
# tokens). Measured forward+backward activation peaks 0.62, 1.17, 2.21 GB; the least-squares fit
# below reproduces them within 3 %.
PROCESS_BYTES = 0.65e9  # a stage before its weights: 0.51 GB RSS after its imports, + 0.14 GB building a model (measured)
ACT_LAYER_SCALE = 1.14  # measured / counted per-layer activation bytes (fitted)
VOCAB_COPIES = 1.4  # vocabulary-wide float tensors per token alive at the peak (fitted)

# The time model's one measurement: the paper run (GPT-2 small's architecture with GPT-2's real
# tokenizer, baseline profile, default params, 2 torch threads, nothing else running), each model
# stage's seconds as `pytest -m slow -s tests/test_pipeline_gpt2_bpe.py -k full` prints them
# (issue 30, 2026-12-07: screen 198 s, screen_units 62 s, the nine experiments 177-198 s each;
# the ablations and patchings are not told apart there, so both get the nine's middle), on this
# build machine, whose [1400 x 768] x [768 x 3072] float32 matmul (`matmul_flops_per_s`) ran at
# PAPER_RUN_MATMUL when idle. A stage's time elsewhere = its FLOPs (below) x the seconds per FLOP
# that stage took in the paper run x PAPER_RUN_MATMUL / the matmul rate measured where `plan` runs:
# the stage's efficiency (unit captures, scoring, Python per site, process start) is carried over
# as measured, and only the device's raw speed is measured anew.
PAPER_RUN_SECONDS = {"screen": 198.0, "screen_units": 62.0, "ablate": 187.5, "patch": 187.5}
PAPER_RUN_MATMUL = 167e9  # measured idle on the build machine, 2026-12-07: five 3-s runs of matmul_flops_per_s gave 165-168 GFLOP/s
PAPER_RUN_ARCH = PUBLIC["gpt2"]
# An 80 GB accelerator for the size ladder where none is present: an H100 SXM's float32 (CUDA-core,
# no TF32: torch's default for float32 matmul) peak, NVIDIA's datasheet, 67 TFLOP/s. A datasheet
# figure, not a measurement: the ladder says so and measures the rate instead where a GPU is present.
# With the CPU's efficiency carried over and a GPU's peak, its times are lower bounds.
GPU_80GB_NAME, GPU_80GB_BYTES, GPU_80GB_DATASHEET_FLOPS = "one 80 GB GPU (H100 SXM)", 80e9, 67e12
# The Phase 8 ladder (the seed's future work): the sizes `python -m analysis.plan --ladder` plans.
LADDER = ("gpt2", "gpt2-medium", "gpt2-large", "EleutherAI/pythia-70m", "EleutherAI/pythia-160m",
          "EleutherAI/pythia-410m", "EleutherAI/gpt-neo-125M")


def generation_passes(spec: str, cumulative_k: int, draws: int, random_draws: int) -> int:
    """Greedy generations over the prompt set in one ablate or patch stage, as
    analysis.experiments.run.execute runs them: the clean baseline and the identity control, then
    each distinct site set (the requested one and the cumulative top-1..k jointly; `top:1` is the
    curve's first, run once) under the plan's draws, each beside `random_draws` random sets."""
    sets = cumulative_k + (0 if cumulative_k and spec.strip() == "top:1" else 1)
    return 2 + sets * draws * (1 + random_draws)


@dataclass(frozen=True)
class Workload:
    """How much a run computes: prompts per emotion, emotions, prompts per forward, and what the
    experiments generate (the defaults are params.yaml's: `Workload.of` reads a Params)."""

    n_prompts: int
    n_emotions: int
    batch: int  # prompts per forward (the stages run all of a set in one batch today)
    directions: int = 2  # patching.directions: one patch stage per model x emotion x direction
    max_tokens: int = 15  # ablation / patching max_tokens
    ablate_passes: int = 20  # generation_passes("top:1", 3, 1, 5)
    patch_passes: int = 20

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InputError(f"batch: {self.batch} is too small; at least one prompt per forward")

    @classmethod
    def of(cls, params: Params, n_prompts: int, batch: int | None = None) -> Workload:
        ab, pa, rb = params.ablation, params.patching, params.random_baseline.draws
        draws = ab.resample_draws if ab.method == "resample" else 1
        return cls(
            n_prompts=n_prompts, n_emotions=len(params.emotions), batch=batch or n_prompts, directions=len(pa.directions),
            max_tokens=max(ab.max_tokens, pa.max_tokens),
            ablate_passes=generation_passes(ab.head_spec, ab.cumulative_k, draws, rb),
            patch_passes=generation_passes(pa.head_spec, pa.cumulative_k, 1, rb),
        )

    def runs(self, stage: str) -> int:
        """How many DVC stages of this kind one model runs."""
        return {"ablate": self.n_emotions, "patch": self.n_emotions * self.directions}.get(stage, 1)


STAGES = ("screen", "screen_units", "ablate", "patch")
PER_EMOTION = ("ablate", "patch")  # one DVC stage per model x emotion (patch: x direction); the screenings cover every emotion
REFERENCE = Workload(n_prompts=70, n_emotions=3, batch=70)  # the paper run's (the baseline profile, default params)


def profile_workload(profile: str, params: Params | None = None, prompts_dir: Path = Path("data/prompts")) -> Workload:
    folder = prompts_dir / profile
    # the prompts per set: an emotion file's lines (its twins, shared neutral.txt or its own
    # <emotion>.neutral.txt, have as many)
    first = next((folder / f"{e}.txt" for e in EMOTIONS if (folder / f"{e}.txt").is_file()), None)
    if first is None:
        known = ", ".join(sorted(p.name for p in prompts_dir.iterdir() if p.is_dir()))
        raise InputError(f"profile: {profile!r} has no emotion prompts in {folder}; profiles: {known}")
    n = sum(1 for line in first.read_text().splitlines() if line.strip())
    return Workload.of(params or Params(profile=profile), n)


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
    kv = 2 * a.n_layers * w.batch * (POS + w.max_tokens) * a.d_model * elem + w.batch * w.max_tokens * a.vocab * 4
    gen = PROCESS_BYTES + weights + kv + w.batch * POS * a.vocab * 4  # + the prefill's logits
    return {"screen": screen, "screen_units": units, "ablate": gen, "patch": gen}


def stage_flops(a: Arch, w: Workload) -> dict[str, float]:
    """FLOPs of each model stage (one DVC stage: a screening covers every emotion, an experiment one)."""
    n_batches = -(-w.n_prompts // w.batch)
    full = n_batches * forward_flops(a, w.batch, POS, logits_at=1)  # the screenings unembed the last position only
    # screen, per emotion: delta_attn on both sets, the emotion z capture, attribution (a backward ~ 2
    # forwards); then per head one patched forward from its layer on, twice (emotion -> twin and the
    # specificity control's neutral' -> twin)
    exact = n_batches * a.n_heads * sum(forward_flops(a, w.batch, POS, logits_at=1, from_layer=layer) for layer in range(a.n_layers))
    screen = w.n_emotions * (5 * full + 2 * exact)
    # screen_units, per emotion: capture + attribution (3), the top-k units patched twice (half the blocks on average)
    units = w.n_emotions * (3 * full + 2 * UNIT_EXACT_TOP_K * n_batches * forward_flops(a, w.batch, POS, logits_at=1, from_layer=a.n_layers // 2))
    # ablate / patch, one emotion: each greedy generation a prefill, then one position a step (KV cache)
    one = n_batches * (forward_flops(a, w.batch, POS) + w.max_tokens * forward_flops(a, w.batch, 1))
    return {"screen": screen, "screen_units": units, "ablate": w.ablate_passes * one, "patch": w.patch_passes * one}


def stage_seconds(a: Arch, w: Workload, flops_per_s: float) -> dict[str, float]:
    """Estimated wall time of each model stage at `flops_per_s` matmul throughput: the paper run's
    measured seconds per FLOP of that stage (PAPER_RUN_SECONDS), scaled by the FLOPs and by the
    matmul rate against the paper run's machine's."""
    flops, ref = stage_flops(a, w), stage_flops(PAPER_RUN_ARCH, REFERENCE)
    return {s: PAPER_RUN_SECONDS[s] * flops[s] / ref[s] * PAPER_RUN_MATMUL / flops_per_s for s in STAGES}


def run_seconds(seconds: dict[str, float], w: Workload) -> float:
    """One model's model stages in all: a screening each, an ablation per emotion, a patching per emotion and direction."""
    return sum(t * w.runs(stage) for stage, t in seconds.items())


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
                     if max(stage_peaks(a, replace(w, batch=b), dtype, budget).values()) <= available), None)

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
    workload = replace(profile_workload(profile), n_emotions=n_emotions)
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
         available: float | None = None, params: Params | None = None) -> Plan:
    """The plan of a run, before anything runs; `check_fits` on it says whether the run fits.
    `params`: what the experiments generate (default: params.yaml's defaults)."""
    arch, source = embedded_arch(model) or lookup(model)
    precision = resolve(device, dtype)
    w = profile_workload(profile, params)
    if batch is not None:
        w = replace(w, batch=batch)
    available = device_memory_bytes(precision.device) if available is None else available
    peaks = stage_peaks(arch, w, precision.dtype, precision.budget_bytes)
    flops = matmul_flops_per_s(precision, PAPER_RUN_ARCH.d_model)
    seconds = stage_seconds(arch, w, flops)
    lines = [
        f"model {model}: {arch.family}, {arch.n_layers} layers x {arch.n_heads} heads (d_head {arch.d_head}), "
        f"d_model {arch.d_model}, d_mlp {arch.d_mlp}, vocab {arch.vocab}  [config: {source}]",
        f"parameters {arch.n_params:,}; weights {arch.n_params * bytes_per(precision.dtype) / GB:.2f} GB in {precision.dtype_name}",
        f"device {precision.device}: {available / GB:.1f} GB available, matmul {flops / 1e9:.0f} GFLOP/s measured now "
        f"(the paper run's machine: {PAPER_RUN_MATMUL / 1e9:.0f}); "
        f"memory_budget_gb auto: {precision.budget_bytes / GB:.2g} GB for the exact fast path's batched sites",
        f"profile {profile}: {w.n_prompts} pairs x {w.n_emotions} emotions, {w.batch} prompts per forward, ~{POS} tokens each; "
        f"{w.ablate_passes} / {w.patch_passes} generations of {w.max_tokens} tokens per ablation / patching",
        f"{'stage':<22}{'peak memory':>12}{'time':>12}",
    ]
    for stage in STAGES:
        label = {"ablate": "ablate (per emotion)", "patch": f"patch (x{w.runs('patch')})"}.get(stage, stage)
        lines.append(f"{label:<22}{peaks[stage] / GB:>9.2f} GB{_duration(seconds[stage]):>12}")
    lines.append(f"{'model stages in all':<22}{'':>12}{_duration(run_seconds(seconds, w)):>12}")
    return Plan(arch=arch, workload=w, precision=precision, available=available, text="\n".join(lines))


@dataclass(frozen=True)
class Machine:
    """Where a ladder row is planned: its memory, its matmul rate, and where that rate came from."""

    name: str
    memory: float  # bytes
    flops_per_s: float
    rate_source: str
    budget: float  # memory_budget_gb auto's bytes there


def ladder_machines() -> tuple[Machine, ...]:
    """This CPU (its rate measured now) and one 80 GB GPU: the first CUDA device's measured rate and
    memory where one is present, else the datasheet figure GPU_80GB_DATASHEET_FLOPS, said so."""
    cpu = resolve("cpu", "float32")
    machines = [Machine(f"this CPU, {torch.get_num_threads()} threads", device_memory_bytes(cpu.device),
                        matmul_flops_per_s(cpu, PAPER_RUN_ARCH.d_model), "measured now", CPU_AUTO_BUDGET)]
    if torch.cuda.is_available():
        gpu = resolve("cuda", "float32")
        memory = device_memory_bytes(gpu.device)
        machines.append(Machine(f"{torch.cuda.get_device_name(gpu.device)}, {memory / GB:.0f} GB", memory,
                                matmul_flops_per_s(gpu, PAPER_RUN_ARCH.d_model), "measured now", gpu.budget_bytes))
    else:
        machines.append(Machine(GPU_80GB_NAME, GPU_80GB_BYTES, GPU_80GB_DATASHEET_FLOPS,
                                "NVIDIA's datasheet float32 peak, not measured: no GPU here; times are lower bounds",
                                ACCELERATOR_BUDGET_SHARE * GPU_80GB_BYTES))
    return tuple(machines)


def ladder(models: tuple[str, ...], machines: tuple[Machine, ...], w: Workload, dtype: torch.dtype = torch.float32) -> str:
    """The Phase 8 size ladder: per model its parameters and, on each machine, the paper run's peak
    memory (the largest stage's) and its model stages' time in all (a Markdown table)."""
    head = ["model", "family", "layers x heads", "parameters"]
    for m in machines:
        head += [f"peak GB ({m.name})", f"time ({m.name})"]
    rows = [head, [":--", ":--", "--:", "--:"] + ["--:"] * (2 * len(machines))]
    for name in models:
        arch, _ = lookup(name)
        row = [name, arch.family, f"{arch.n_layers} x {arch.n_heads}", f"{arch.n_params / 1e6:,.0f} M"]
        for m in machines:
            peak = max(stage_peaks(arch, w, dtype, m.budget).values())
            fits = "" if peak <= m.memory else " (does not fit)"
            row += [f"{peak / GB:.1f}{fits}", _duration(run_seconds(stage_seconds(arch, w, m.flops_per_s), w))]
        rows.append(row)
    notes = [f"- {m.name}: {m.memory / GB:.0f} GB, matmul {m.flops_per_s / 1e9:,.0f} GFLOP/s ({m.rate_source})" for m in machines]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n\n" + "\n".join(notes)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
