"""The command shared by head_ablation and head_patching: parse, run, write, print."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any
import torch

from analysis.core.loading import LoadedModel
from analysis.experiments.config import Kind, parse_config
from analysis.experiments.render import comparison_table, write_outputs
from analysis.experiments.run import execute, ExperimentResult, prepare


def run_experiment(kind: Kind, argv: Sequence[str], *, model: LoadedModel | None = None) -> ExperimentResult:
    """What the CLI computes, without writing or printing (for drivers and tests that reuse a model)."""
    config = parse_config(kind, argv)
    torch.manual_seed(config.seed)
    return execute(prepare(config, model))


def run_cli(kind: Kind, description: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """parse → check → run → write → print; shared body of both CLIs' `main`."""
    config = parse_config(kind, argv, description)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(config.seed)
    prepared = prepare(config)
    for note in prepared.notes:
        print(f"warning: {note}", file=sys.stderr)
    result = execute(prepared)
    for note in result.notes[len(prepared.notes):]:  # what only the plan could know (resample fallbacks)
        print(f"warning: {note}", file=sys.stderr)
    doc = write_outputs(result)
    print(comparison_table(result))
    print(f"wrote {config.output} and {config.table}")
    return doc
