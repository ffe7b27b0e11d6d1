"""Every stage's output, in one place: where it lives and what it holds.

The pipeline (dvc.yaml) writes exactly these paths; stages that aggregate (plots, summarize)
and `top:N` head specs find their inputs through these functions, never by globbing.

| stage            | turns ...                          | into ...                                                      |
|------------------|------------------------------------|---------------------------------------------------------------|
| model@M          | a model name                       | results/models/M/: the toy's HF folder + planted.json, or     |
|                  |                                    | source.json (where a hub/local model's weights were found)    |
| prepare_prompts  | data/prompts/P/*.txt               | results/P/prompts.json: validated pairs, spans, file hashes   |
| screen@M         | pairs × model M                    | results/P/alignment/head_scores_M.json: per layer × head ×    |
|                  |                                    | emotion Δattn, attribution, exact ΔM with CI, p, q            |
| screen_units@M   | pairs × model M                    | results/P/alignment/unit_scores_M.json: attribution for every |
|                  |                                    | MLP unit; exact ΔM with CI, p, q for the top-k units          |
| ablate@M-E       | emotion-E prompts × heads of M     | results/P/patching/head_ablation/M_E.json (effects with CIs)  |
|                  |                                    | + M_E.parquet (per prompt: both continuations, ids, scores)   |
| patch@M-E        | E prompts → neutral twins × heads  | results/P/patching/head_patching/M_E.{json,parquet}           |
| plots@M          | the above for model M              | results/P/plots/heads/M/*.png + CSV plot data                 |
| attention@M      | pairs × the top heads of M         | results/P/plots/attention/M/attention_pattern.{png,csv}:      |
|                  |                                    | last-position attention by prompt part, emotion vs neutral    |
| compare_models   | every model's screening            | results/P/plots/models/: heatmaps.png (all models, one colour |
|                  |                                    | scale), top_heads.csv + .md (top heads per model × emotion)   |
| summarize        | all of the above                   | results/summary.json: flat metrics for `dvc metrics diff`     |

P is `params.yaml: profile`; M a name from `models`; E one of `emotions`.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path("results")
SUMMARY = RESULTS / "summary.json"


def model_dir(model: str) -> Path:
    return RESULTS / "models" / model


def prompts_file(profile: str) -> Path:
    return RESULTS / profile / "prompts.json"


def screening_file(profile: str, model: str) -> Path:
    return RESULTS / profile / "alignment" / f"head_scores_{model}.json"


def unit_screening_file(profile: str, model: str) -> Path:
    return RESULTS / profile / "alignment" / f"unit_scores_{model}.json"


def experiment_file(kind: str, profile: str, model: str, emotion: str) -> Path:
    """kind: "ablation" or "patching" (the seed's head_ablation / head_patching folders)."""
    folder = {"ablation": "head_ablation", "patching": "head_patching"}[kind]
    return RESULTS / profile / "patching" / folder / f"{model}_{emotion}.json"


def plots_dir(profile: str, model: str) -> Path:
    return RESULTS / profile / "plots" / "heads" / model


def attention_dir(profile: str, model: str) -> Path:
    return RESULTS / profile / "plots" / "attention" / model


def comparison_dir(profile: str) -> Path:
    return RESULTS / profile / "plots" / "models"
