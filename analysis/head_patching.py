r"""Stage `patch`: activation patching between emotion prompts and their neutral twins, in one of two directions.

    python -m analysis.head_patching --model toy --profile baseline --head-spec 3:1 \
        --emotion gratitude --max-tokens 15 [--direction denoising|noising] [--positions all|last|span] \
        [--cumulative-k K] [--emotion-prompts F] [--neutral-prompts F] [--output results/.../toy_gratitude_31.json]

- `denoising` (the default, the seed's patching): baseline = greedy continuation of each neutral
  prompt with the clean model; patched = the same with each selected head's output replaced by
  its value on the aligned emotion prompt. Question: is the head *sufficient* to bring the
  emotion into a neutral context?
- `noising`: baseline = the emotion prompt; patched = the same with the head's output replaced by
  its value on the neutral twin. Question: is the head *necessary* (Heimersheim & Nanda 2024)?

The head's output is `blocks.L.attn.hook_z[..., h, :]`, exactly the head's input to the output
projection (not `hook_v`, which the seed swapped); line i of the emotion file is the twin of line
i of the neutral file. Positions:

- `all`: every prompt position (needs pairs of equal token length with the span at the same
  positions; otherwise the run stops and says how many pairs differ);
- `last`: the last prompt position only;
- `span`: the span tokens, the two spans aligned at their ends.

Only prompt positions have a source: the source prompt has no counterpart of the tokens the
patched run generates, so generated positions run clean (the patched prompt positions still act
on them through the KV cache). The output says so in `patched_positions`.

Metrics and statistics as in analysis.head_ablation (signed metrics with the bootstrap-t interval
and p; KL and changed against the random-head baseline; the random-head baseline and the
identity control's noise floor beside every effect). M's change is also the fraction of the
emotion–neutral gap: denoising (M_patched − M_neutral) / (M_emotion − M_neutral), the share the
head restores; noising (M_emotion − M_patched) / (M_emotion − M_neutral), the share it removes.
`--cumulative-k K` also patches the top-1..top-K heads of the screening jointly. Outputs: summary
JSON (schema emotion-heads/patching/v2; `experiment`, `direction` and `question` name the run) and
a per-prompt Parquet table (--table, default: the output with .parquet), by default under
results/<profile>/patching/head_patching/<direction>/. Pickle is refused.

MLP units: `--head-spec mlp:L:N` (or `mlp:L:N1,N2`, `mlp:L1:N1,mlp:L2:N2`, `mlp-top:K` from the unit
screening, analysis.unit_screening) patches neuron N of layer L's MLP instead
(`blocks.L.mlp.hook_post[..., N]`, exactly column N of the MLP down-projection input), with
the same methods and positions; the summary lists them under `units` (and `sites`), and
`--cumulative-k` then ranks units by the unit screening.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analysis.base.contract import EXPERIMENT_SCHEMAS
from analysis.core.cli import cli
from analysis.experiments.command import run_cli

SCHEMA = EXPERIMENT_SCHEMAS["patching"]


@cli
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run_cli("patching", __doc__, argv)


if __name__ == "__main__":
    main()
