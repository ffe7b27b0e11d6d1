r"""Stage `ablate`: remove heads from the emotion prompts and measure what the continuation loses.

    python -m analysis.head_ablation --model toy --profile baseline --head-spec 3:1 \
        --emotion gratitude --max-tokens 15 [--method zero|mean|resample] [--cumulative-k K] \
        [--prompts-file F] [--output results/.../toy_gratitude_31.json]

Baseline = greedy continuation of each emotion prompt with the clean model; ablated = the same
with each selected head's output (`blocks.L.attn.hook_z[..., h, :]`, exactly the head's input to
the output projection) overwritten. The ablation holds at EVERY position, prompt and generated,
at every generation step. Methods:

- `zero`: z = 0 (the head's contribution is the output-projection bias alone).
- `mean`: z = the mean of the head's z over every real token (BOS included, padding excluded) of
  every neutral prompt of the profile (or --neutral-prompts): one vector per head.
- `resample`: for each emotion prompt, z = the mean over real tokens of the head's z on a
  different neutral prompt drawn at random (never the prompt's own template twin; seeded by
  --seed); `resample_draws` independent draws (params.ablation.resample_draws), per-prompt
  metrics averaged over draws (the table's token ids and texts are draw 0's).

Why position-agnostic values (one vector for all positions) rather than position-wise ones:
generated positions have no aligned position in a reference prompt, and prompts differ in
length, so a position-wise reference would be undefined exactly where the ablation must keep
acting. The mean over positions is defined everywhere and is the same at every step.

Metrics per prompt (continuation only), with paired effects (n, mean, 95 % CI and p from one inverted sign-flip test;
pairs sharing an emotion expression resampled and flipped as one cluster, as in the screening):
VADER sentiment, keyword counts per lexicon, continuation changed, emotion score M and
KL(clean || ablated) at the last prompt position. `--cumulative-k K` also ablates the top-1..top-K
heads of the screening jointly. Outputs: summary JSON (schema emotion-heads/ablation/v1) and a
per-prompt Parquet table (--table, default: the output with .parquet). Pickle is refused.

MLP units: `--head-spec mlp:L:N` (or `mlp:L:N1,N2`, `mlp:L1:N1,mlp:L2:N2`, `mlp-top:K` from the unit
screening, analysis.unit_screening) ablates neuron N of layer L's MLP instead
(`blocks.L.mlp.hook_post[..., N]`, exactly column N of the MLP down-projection input), with
the same methods and positions; the summary lists them under `units` (and `sites`), and
`--cumulative-k` then ranks units by the unit screening.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analysis.contract import EXPERIMENT_SCHEMAS
from analysis.core.cli import cli
from analysis.experiments.cli import run_cli

SCHEMA = EXPERIMENT_SCHEMAS["ablation"]


@cli
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run_cli("ablation", __doc__, argv)


if __name__ == "__main__":
    main()
