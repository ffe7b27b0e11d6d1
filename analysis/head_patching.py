r"""Stage `patch`: put heads' emotion-prompt outputs into neutral prompts and measure what they add.

    python -m analysis.head_patching --model toy --profile baseline --head-spec 3:1 \
        --emotion gratitude --max-tokens 15 [--positions all|last|span] [--cumulative-k K] \
        [--emotion-prompts F] [--neutral-prompts F] [--output results/.../toy_gratitude_31.json]

Baseline = greedy continuation of each neutral prompt with the clean model; patched = the same
with each selected head's output (`blocks.L.attn.hook_z[..., h, :]`, exactly the head's input to
the output projection; not `hook_v`, which the seed swapped) replaced by its value on the aligned
emotion prompt (line i of the emotion file is the twin of line i of the neutral file), at:

- `all`: every prompt position (needs pairs of equal token length with the span at the same
  positions; otherwise the run stops and says how many pairs differ);
- `last`: the last prompt position only;
- `span`: the span tokens, the two spans aligned at their ends.

Only prompt positions have a source: the emotion prompt has no counterpart of the tokens the
patched run generates, so generated positions run clean (the patched prompt positions still act
on them through the KV cache). The output says so in `patched_positions`.

Metrics per prompt (continuation only), with paired effects (n, mean, 95 % CI and p from one inverted sign-flip test;
pairs sharing an emotion expression resampled and flipped as one cluster, as in the screening):
VADER sentiment, keyword counts per lexicon, continuation changed, emotion score M and
KL(clean || patched) at the last prompt position. `--cumulative-k K` also patches the top-1..top-K
heads of the screening jointly. Outputs: summary JSON (schema emotion-heads/patching/v1) and a
per-prompt Parquet table (--table, default: the output with .parquet). Pickle is refused.

MLP units: `--head-spec mlp:L:N` (or `mlp:L:N1,N2`, `mlp:L1:N1,mlp:L2:N2`, `mlp-top:K` from the unit
screening, analysis.unit_screening) patches neuron N of layer L's MLP instead
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

SCHEMA = EXPERIMENT_SCHEMAS["patching"]


@cli
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run_cli("patching", __doc__, argv)


if __name__ == "__main__":
    main()
