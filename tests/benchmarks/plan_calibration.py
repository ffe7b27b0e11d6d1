"""Measure what `analysis.core.budget`'s memory and time models are calibrated on; prints one JSON line per size.

    python -m tests.benchmarks.plan_calibration

Each size runs in a fresh process (peak RSS is per process, VmHWM): import cost, weights, then
a forward and a forward+backward (gradient w.r.t. the input embeddings, as attribution needs
gradients w.r.t. activations, not weights) of random GPT-2 configs on a batch of prompts.
"""

from __future__ import annotations

import json
import subprocess
import sys

SIZES = [(4, 8, 256), (8, 8, 512), (12, 12, 768)]  # (layers, heads, d_model), vocab 50257
BATCH, POS = 70, 20  # the baseline profile's 70 prompts, about 20 tokens each

CHILD = r"""
import json, sys, time, statistics
def kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import torch
from transformers import AutoModelForCausalLM
from analysis.modelfacts.architectures import PUBLIC, hf_config, reduced
from dataclasses import replace
L, H, D, B, T = map(int, sys.argv[1:6])
torch.manual_seed(0)
arch = replace(PUBLIC["gpt2"], n_layers=L, n_heads=H, d_model=D, d_mlp=4 * D)
base = kib("VmRSS:")
model = AutoModelForCausalLM.from_config(hf_config(arch)).eval()
for p in model.parameters():
    p.requires_grad_(False)
weights = kib("VmRSS:")
ids = torch.randint(0, arch.vocab, (B, T))
def fwd():
    with torch.no_grad():
        model(input_ids=ids)
def fwd_bwd():
    emb = model.transformer.wte(ids).detach().requires_grad_()
    out = model(inputs_embeds=emb).logits[:, -1].logsumexp(-1).sum()
    out.backward()
t = {"fwd": [], "fwd_bwd": []}
for _ in range(3):
    for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
        s = time.perf_counter(); fn(); t[name].append(time.perf_counter() - s)
a = torch.randn(B * T, D); w = torch.randn(D, 4 * D)
s = time.perf_counter(); n = 0
while time.perf_counter() - s < 1.0:
    a @ w; n += 1
mm_flops = n * 2 * B * T * D * 4 * D / (time.perf_counter() - s)
print(json.dumps(dict(layers=L, heads=H, d_model=D, batch=B, pos=T, threads=torch.get_num_threads(), params=arch.n_params,
    rss_import=base, rss_weights=weights, peak=kib("VmHWM:"), fwd_s=statistics.median(t["fwd"]),
    fwd_bwd_s=statistics.median(t["fwd_bwd"]), matmul_flops=mm_flops)))
"""


def main() -> None:
    for layers, heads, d in SIZES:
        r = subprocess.run([sys.executable, "-c", CHILD, *map(str, (layers, heads, d, BATCH, POS))],
                           capture_output=True, text=True, check=True)
        print(r.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
