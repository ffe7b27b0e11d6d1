r"""Stage `ablate`: remove heads from the emotion prompts and measure what the continuation loses.

    python -m analysis.head_ablation --model toy --profile baseline --head-spec 3:1 \
        --emotion gratitude --max-tokens 15 [--method zero|mean|resample] [--cumulative-k K] \
        [--prompts-file F] [--output results/.../toy_gratitude_31.json]

Baseline = greedy continuation of each emotion prompt with the clean model; ablated = the same
with each selected head's output (`blocks.L.attn.hook_z[..., h, :]`, exactly the head's input to
the output projection) overwritten. The ablation holds at EVERY position, prompt and generated,
at every generation step. Methods:

- `zero`: z = 0 (the head's contribution is the output-projection bias alone).
- `mean`: z = the mean of the head's z over every real token of every neutral prompt of the
  profile (or --neutral-prompts), BOS excluded (the same token everywhere, an attention-sink
  outlier) and padding excluded: one vector per head, at every position.
- `resample`: per draw, each emotion prompt takes, position by position, the head's z on another
  neutral prompt of the same template (the same text after the span; never its own twin; seeded
  by --seed), positions aligned by role (BOS, the text before the span from its start, the span
  from its end, the text after it from the prompt's end; prompts differ in token length, so
  position t of one is not position t of another), and at generated positions the source's z at
  its last prompt position; `resample_draws` draws (params.ablation.resample_draws), per-prompt
  metrics averaged over draws (the table's token ids and texts are draw 0's).

Every method asks about necessity: does removing what the head carries remove the emotion?

Metrics per prompt (continuation only): VADER sentiment, keyword counts per lexicon and emotion
score M (signed: paired effects, n, mean, 95 % CI and p from one inverted wild cluster
bootstrap-t), and the non-negative continuation changed and KL(clean || ablated) at the last prompt
position (compared with the random-head baseline; changed also as an exact binomial share over
clusters). M's change is also given as the fraction of the emotion–neutral gap it removes,
(M_emotion − M_ablated) / (M_emotion − M_neutral), with its Fieller-type interval
(analysis.measures.stats.ratio_effect). Beside every effect: the same ablation of as many random heads
outside the top set (params random_baseline.draws seeded draws), and the noise floor of an
identity control (the heads' own z patched back: 0 in exact arithmetic; effects at or below it
are "no effect"). `--cumulative-k K` also ablates the top-1..top-K heads of the screening
jointly. Outputs: summary JSON (schema emotion-heads/ablation/v2) and a per-prompt Parquet table
(--table, default: the output with .parquet). Pickle is refused.

MLP units: `--head-spec mlp:L:N` (or `mlp:L:N1,N2`, `mlp:L1:N1,mlp:L2:N2`, `mlp-top:K` from the unit
screening, analysis.unit_screening) ablates neuron N of layer L's MLP instead
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

SCHEMA = EXPERIMENT_SCHEMAS["ablation"]


@cli
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run_cli("ablation", __doc__, argv)


if __name__ == "__main__":
    main()
