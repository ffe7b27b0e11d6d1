"""An experiment's outputs: the JSON document, the per-prompt table and the printed comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
import numpy as np
import pandas as pd

from analysis.contract import EXPERIMENT_TABLE_SCHEMAS, write_experiment
from analysis.core.prompts import load_lexicon
from analysis.core.sites import Site
from analysis.experiments.kinds import KINDS
from analysis.experiments.run import ExperimentResult
from analysis.metrics import GENERATION_METRICS as METRICS
from analysis.io import write_parquet


SMALL_MARGIN = 1e-3  # top-1 minus top-2 logit gap below which another machine may pick another token


def _means(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _margin_stats(m: np.ndarray) -> dict[str, float | int]:
    return {
        "min": float(np.min(m)),
        "median": float(np.median(m)),
        f"n_below_{SMALL_MARGIN:g}": int(np.sum(m < SMALL_MARGIN)),
    }


def _heads(sites: Sequence[Site]) -> list[list[int]]:
    return [[s.layer, s.index] for s in sites if s.kind == "head"]


def _units(sites: Sequence[Site]) -> list[list[int]]:
    """MLP units as [layer, neuron]."""
    return [[s.layer, s.index] for s in sites if s.kind == "mlp"]


def _noun(sites: Sequence[Site]) -> str:
    return "units" if sites and all(s.kind == "mlp" for s in sites) else "heads"


def _effects(effects: dict | None) -> dict | None:
    return None if effects is None else {k: e.to_dict() for k, e in effects.items()}


def _dropped(r: ExperimentResult) -> dict[str, list[str]] | None:
    """Per lexicon, the words without a single-token form under the model's tokenizer: left out
    of M and of the keyword counts alike (one word list per model)."""
    if r.lexicon_words is None:
        return None
    return {name: [w for w in load_lexicon(name) if w not in kept] for name, kept in r.lexicon_words.items()}


def _split(r: ExperimentResult) -> dict[str, Any]:
    """Which half each effects block is over (issue 14: held-out confirmation)."""
    c = r.config
    if r.confirmation_index is None:
        return {"enabled": False, "effects": "all", "effects_confirmation": None,
                "meaning": "split off (exploratory): the screening ranked on all expressions, effects are over all"}
    n_expr = len({r.pairs.emotion_prompts[i].span_text + "|" + r.pairs.neutral_prompts[i].span_text for i in r.confirmation_index})
    return {
        "enabled": True, "selection_share": c.selection_share, "seed": c.seed,
        "effects": "all", "effects_confirmation": "confirmation",
        "n_prompts_all": len(r.pairs), "n_prompts_confirmation": len(r.confirmation_index),
        "n_expressions_confirmation": n_expr,
        "meaning": "the screening ranked components on the selection half of the expressions; `effects` are over all "
        "prompts (selection included), `effects_confirmation` over the held-out confirmation half only",
    }


def document(r: ExperimentResult) -> dict[str, Any]:
    """The summary JSON (schema emotion-heads/<kind>/v1)."""
    c = r.config
    doc: dict[str, Any] = {
        "schema": c.schema,
        "model": c.model,
        "profile": c.profile,
        "emotion": c.emotion,
        "heads": _heads(r.main.sites),
        "units": _units(r.main.sites),
        "sites": [s.label for s in r.main.sites],
        "head_spec": c.head_spec,
        c.mode_key: c.mode,
        "n_prompts": len(r.pairs),
        "max_tokens": c.max_tokens,
        "baseline": _means(r.baseline_scores),
        "intervened": _means(r.main.scores),
        "effects": {k: e.to_dict() for k, e in r.main.effects.items()},
        "effects_confirmation": _effects(r.main.effects_confirmation),
        "split": _split(r),
        "cumulative": [
            {
                "k": k, "heads": _heads(o.sites), "units": _units(o.sites), "sites": [s.label for s in o.sites],
                "intervened": _means(o.scores), "effects": {m: e.to_dict() for m, e in o.effects.items()},
                "effects_confirmation": _effects(o.effects_confirmation),
            }
            for k, o in enumerate(r.cumulative, start=1)
        ],
        "min_margin": {"baseline": _margin_stats(r.baseline.min_margin.double().numpy()), "intervened": _margin_stats(r.main.min_margin)},
        "metrics": {k: m.meaning for k, m in METRICS.items()},
        "effect_definition": (
            "paired per-prompt difference intervened - baseline: n, mean, 95 % CI from the inverted cluster sign-flip test, two-sided "
            "sign-flip permutation p; pairs sharing an emotion expression (span) are resampled and sign-flipped "
            "as one cluster (n_clusters)"
        ),
        "table": str(c.table),
        "params": {
            "head_spec": c.head_spec,
            c.mode_key: c.mode,
            "max_tokens": c.max_tokens,
            "cumulative_k": len(r.cumulative),
            "seed": c.seed,
            "n_resamples": c.n_resamples,
            "emotion_file": str(c.emotion_file) if c.emotion_file else None,
            "neutral_file": str(c.neutral_file) if c.neutral_file else None,
            "screening_file": str(c.screening_file) if c.screening_file else None,
            "skip_copy_flagged": c.skip_copy_flagged,
            **r.computed_on,
        },
        "notes": list(r.notes),
        "lexicon_words_dropped": _dropped(r),
    }
    kind = KINDS[c.kind]
    doc[kind.positions_key] = kind.positions
    doc["params"].update(kind.extra_params(c))
    return doc


def table(r: ExperimentResult) -> pd.DataFrame:
    """One row per prompt: prompt, both continuations and token ids, every score, margins."""
    data: dict[str, Any] = {"index": np.arange(len(r.target_prompts)), "prompt": list(r.target_prompts)}
    if r.source_prompts is not None:
        data["source_prompt"] = list(r.source_prompts)
    data["baseline_text"] = list(r.baseline.texts)
    data["intervened_text"] = list(r.main.first.texts)
    data["baseline_token_ids"] = r.baseline.tokens.tolist()
    data["intervened_token_ids"] = r.main.first.tokens.tolist()
    for k in METRICS:
        data[f"baseline_{k}"] = r.baseline_scores[k]
        data[f"intervened_{k}"] = r.main.scores[k]
    if r.confirmation_index is None:
        data["half"] = ["all"] * len(r.target_prompts)
    else:
        conf = set(r.confirmation_index)
        data["half"] = ["confirmation" if i in conf else "selection" for i in range(len(r.target_prompts))]
    data["baseline_min_margin"] = r.baseline.min_margin.double().numpy()
    data["intervened_min_margin"] = r.main.min_margin
    if r.resample_sources is not None:
        data["resample_sources"] = r.resample_sources.T.tolist()
    return pd.DataFrame(data)


def write_outputs(r: ExperimentResult) -> dict[str, Any]:
    """Table first, summary last: the summary (the DVC output) exists only if both were written."""
    c = r.config
    doc = document(r)
    meta = {
        "schema": EXPERIMENT_TABLE_SCHEMAS[c.kind],
        "summary_schema": c.schema,
        "model": c.model,
        "profile": c.profile,
        "emotion": c.emotion,
        "heads": doc["heads"],
        "units": doc["units"],
        c.mode_key: c.mode,
        "params": doc["params"],
        "columns": "intervened_text/_token_ids are draw 0 of resample ablation; intervened_<metric> is the mean over draws",
    }
    write_parquet(c.table, table(r), meta)
    write_experiment(c.kind, c.output, doc)  # the contract checks the schema and the device/dtype record
    return doc


def _fmt(x: float) -> str:
    return f"{x:+.4f}" if math.isfinite(x) else "nan"


def _fmt_p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


def comparison_table(r: ExperimentResult) -> str:
    """The seed's table (Metric | Baseline | Ablation/Patched | Change), CI and p beside each change."""
    c = r.config
    heads = ",".join(s.label for s in r.main.sites)
    extra = f", {c.mode_key} {c.mode}"
    lines = [
        f"{c.model} {c.profile} {c.emotion}: {c.kind} of {heads}{extra}, n={len(r.pairs)}",
        "",
        f"| Metric | Baseline | {c.label} | Change (all) [95% CI] | p |",
        "|---|---|---|---|---|",
    ]
    base, inter = _means(r.baseline_scores), _means(r.main.scores)
    for k, m in METRICS.items():
        label = m.label
        e = r.main.effects[k]
        lines.append(
            f"| {label} | {base[k]:.4f} | {inter[k]:.4f} | {_fmt(e.mean)} [{_fmt(e.ci_low)}, {_fmt(e.ci_high)}] | {_fmt_p(e.p)} |"
        )
    if r.main.effects_confirmation is not None:
        assert r.confirmation_index is not None
        lines += ["", f"Confirmation half (expressions the screening did not see, n={len(r.confirmation_index)}): change [95% CI], p", "",
                  "| Metric | Change (confirmation) [95% CI] | p |", "|---|---|---|"]
        for k, m in METRICS.items():
            e = r.main.effects_confirmation[k]
            lines.append(f"| {m.label} | {_fmt(e.mean)} [{_fmt(e.ci_low)}, {_fmt(e.ci_high)}] | {_fmt_p(e.p)} |")
    if r.cumulative:
        kw = f"kw_{c.emotion}"
        noun = _noun(r.main.sites)
        lines += ["", f"Cumulative (top-k screened {noun} jointly): change of {METRICS[kw].label} and M", "",
                  f"| k | {noun} | Δ keywords [95% CI] | Δ M [95% CI] |", "|---|---|---|---|"]
        for k, o in enumerate(r.cumulative, start=1):
            a, m = o.effects[kw], o.effects["emotion_score"]
            lines.append(
                f"| {k} | {','.join(s.label for s in o.sites)} | {_fmt(a.mean)} [{_fmt(a.ci_low)}, {_fmt(a.ci_high)}] "
                f"| {_fmt(m.mean)} [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}] |"
            )
    if KINDS[c.kind].footer:
        lines += ["", KINDS[c.kind].footer]
    return "\n".join(lines)
