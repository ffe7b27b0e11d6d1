"""An experiment's outputs: the JSON document, the per-prompt table and the printed comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
import numpy as np
import pandas as pd

from analysis.base.contract import EXPERIMENT_TABLE_SCHEMAS, write_experiment
from analysis.core.prompts import load_lexicon
from analysis.core.sites import Site
from analysis.experiments.kinds import KINDS
from analysis.experiments.run import control_record, Evidence, ExperimentResult, M, NoiseFloor, NON_NEGATIVE, Outcome
from analysis.measures.metrics import GENERATION_METRICS as METRICS
from analysis.base.io import write_parquet
from analysis.measures.stats import no_effect


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


GAP_DEFINITION = {
    True: "(M_patched - M_neutral) / (M_emotion - M_neutral) over the pairs (ratio of means): the share of the "
          "emotion-neutral gap of M the component restores in the neutral twin",
    False: "(M_emotion - M_intervened) / (M_emotion - M_neutral) over the pairs (ratio of means): the share of the "
           "emotion-neutral gap of M the intervention removes from the emotion prompt",
}


def _evidence(ev: Evidence, noise: NoiseFloor) -> dict[str, Any]:
    """One arm's statistics as JSON: signed effects (with the noise-floor rule), fraction of the
    gap, the non-negative metrics against the random baseline, and the random baseline itself."""
    effects = {k: {**e.to_dict(), "no_effect": no_effect(e, noise.floor[k])} for k, e in ev.effects.items()}
    return {
        "effects": effects,
        "fraction_of_gap": {**ev.gap.to_dict(), "no_effect": effects[M]["no_effect"]},
        "non_negative": {
            k: {"vs_random": {**ev.vs_random[k].to_dict(), "no_effect": no_effect(ev.vs_random[k], noise.floor[k])},
                **({"clusters_changed": ev.changed_share.to_dict()} if k == "changed" else {})}
            for k in NON_NEGATIVE
        },
        "random_baseline": {
            "effects": {k: {"mean": float(np.mean(v)), "per_draw": v} for k, v in ev.random_effects.items()},
            "fraction_of_gap": {
                "mean": float(np.mean([g for g in ev.random_gap if g is not None])) if any(g is not None for g in ev.random_gap) else None,
                "per_draw": ev.random_gap,
            },
            "excess": {k: e.to_dict() for k, e in ev.vs_random.items()},
        },
    }


def _arm(o: Outcome, noise: NoiseFloor) -> dict[str, Any]:
    conf = None if o.evidence_confirmation is None else _evidence(o.evidence_confirmation, noise)
    return {
        **_evidence(o.evidence, noise),
        "random_sites": [[s.label for s in r] for r in o.random_sites],
        "effects_confirmation": None if conf is None else conf.pop("effects"),
        "confirmation": conf,
    }


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
    """The summary JSON (schema contract.EXPERIMENT_SCHEMAS[kind], emotion-heads/<kind>/v2)."""
    c = r.config
    kind = KINDS[c.kind]
    main = _arm(r.main, r.noise)
    doc: dict[str, Any] = {
        "schema": c.schema,
        "experiment": c.name,
        "question": kind.question(c),
        "model": c.model,
        "profile": c.profile,
        "emotion": c.emotion,
        "heads": _heads(r.main.sites),
        "units": _units(r.main.sites),
        "sites": [s.label for s in r.main.sites],
        "head_spec": c.head_spec,
        c.mode_key: c.mode,
        **({"direction": c.direction} if c.direction else {}),
        "target_prompts": "neutral" if kind.targets_neutral(c) else c.emotion,
        "n_prompts": len(r.pairs),
        "max_tokens": c.max_tokens,
        "baseline": _means(r.baseline_scores),
        "intervened": _means(r.main.scores),
        "other_clean": {"prompts": c.emotion if kind.targets_neutral(c) else "neutral", M: float(np.mean(r.other_m))},
        **main,
        "fraction_of_gap_definition": GAP_DEFINITION[kind.targets_neutral(c)],
        "specificity_control": control_record(r),
        "split": _split(r),
        "cumulative": [
            {"k": k, "heads": _heads(o.sites), "units": _units(o.sites), "sites": [s.label for s in o.sites],
             "intervened": _means(o.scores), **_arm(o, r.noise)}
            for k, o in enumerate(r.cumulative, start=1)
        ],
        "noise_floor": {
            "control": "identity: each intervened site's own activations on the target prompts patched back into them at "
                       "every prompt position (0 in exact arithmetic); floor = the control's max |change| + atol; an "
                       "effect with |mean| at or below its metric's floor is no_effect",
            "control_max": r.noise.control_max, "atol": r.noise.atol, "floor": r.noise.floor,
        },
        "random_baseline_definition": (
            f"the same intervention on {len(r.main.random_sites)} seeded draws of as many random "
            f"{_noun(r.main.sites)} as the arm has, drawn outside the top set (every component an arm of this run "
            "intervenes on); `effects.mean` is the mean over draws of each draw's mean change; `excess` is the arm's "
            "per-prompt value minus the draws' mean, with the bootstrap-t interval and p"
        ),
        "min_margin": {"baseline": _margin_stats(r.baseline.min_margin.double().cpu().numpy()), "intervened": _margin_stats(r.main.min_margin)},
        "metrics": {k: m.meaning for k, m in METRICS.items()},
        "effect_definition": (
            "signed metrics: paired per-prompt difference intervened - baseline: n, mean, 95 % CI and two-sided p from the inverted wild "
            "cluster bootstrap-t (Hall's skew-corrected t, Mammen weights); pairs sharing an emotion expression (span) are "
            "one cluster (n_clusters), the standard error two-way over expressions and template endings. KL and changed are >= 0 by construction and get no test against 0: "
            "`non_negative` compares them with the random baseline (`vs_random`), and `clusters_changed` is the share of "
            "clusters in which most continuations changed, with its exact binomial (Clopper-Pearson) interval"
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
            "select_specific": c.select_specific,
            **r.computed_on,
        },
        "notes": list(r.notes),
        "lexicon_words_dropped": _dropped(r),
    }
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
        data[f"random_{k}"] = np.mean([x[k] for x in r.main.random_scores], axis=0)
    data[f"other_clean_{M}"] = r.other_m
    if r.control is not None:  # the specificity control (issue 23): its source (patching) and its ΔM per prompt
        if r.control.sources is not None:
            data["control_source_prompt"] = list(r.control.sources)
        data[f"control_delta_{M}"] = r.control.delta_m
    if r.confirmation_index is None:
        data["half"] = ["all"] * len(r.target_prompts)
    else:
        conf = set(r.confirmation_index)
        data["half"] = ["confirmation" if i in conf else "selection" for i in range(len(r.target_prompts))]
    data["baseline_min_margin"] = r.baseline.min_margin.double().cpu().numpy()
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
        "columns": "intervened_text/_token_ids are draw 0 of resample ablation; intervened_<metric> is the mean over draws; "
        "random_<metric> the mean over the random-site draws; other_clean_emotion_score: M of the clean other prompt "
        "(denoising: the emotion prompt, else the neutral twin); control_delta_emotion_score: the specificity control's ΔM "
        "(its source control_source_prompt where patched)",
    }
    write_parquet(c.table, table(r), meta)
    write_experiment(c.kind, c.output, doc)  # the contract checks the schema and the device/dtype record
    return doc


def _ci_dict(e: dict[str, Any]) -> str:
    return f"{_fmt(e['mean'])} [{_fmt(e['ci_low'])}, {_fmt(e['ci_high'])}]"


def _fmt(x: float) -> str:
    return f"{x:+.4f}" if math.isfinite(x) else "nan"


def _fmt_p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


def _ci(e: Any) -> str:
    return f"{_fmt(e.mean)} [{_fmt(e.ci_low)}, {_fmt(e.ci_high)}]"


def _gap(g: Any) -> str:
    if g.ratio is None:
        return "undefined (no emotion-neutral gap)"
    lo = "-inf" if g.ci_low is None else f"{g.ci_low:+.3f}"
    hi = "+inf" if g.ci_high is None else f"{g.ci_high:+.3f}"
    return f"{g.ratio:+.3f} [{lo}, {hi}]"


def _random_gap(ev: Evidence) -> str:
    vals = [g for g in ev.random_gap if g is not None]
    return f"{np.mean(vals):+.3f}" if vals else "undefined"


def _evidence_lines(ev: Evidence, noise: NoiseFloor, base: dict[str, float], inter: dict[str, float] | None, label: str) -> list[str]:
    head = f"| Metric | Baseline | {label} | Change [95% CI] | p | Random {len(ev.random_gap)}× |" if inter else \
        "| Metric | Change [95% CI] | p | Random |"
    lines = [head, "|---|---|---|---|---|---|" if inter else "|---|---|---|---|"]
    for k, e in ev.effects.items():
        flag = " (no effect)" if no_effect(e, noise.floor[k]) else ""
        rnd = _fmt(float(np.mean(ev.random_effects[k])))
        if inter:
            lines.append(f"| {METRICS[k].label} | {base[k]:.4f} | {inter[k]:.4f} | {_ci(e)}{flag} | {_fmt_p(e.p)} | {rnd} |")
        else:
            lines.append(f"| {METRICS[k].label} | {_ci(e)}{flag} | {_fmt_p(e.p)} | {rnd} |")
    share = ev.changed_share
    lines += [
        "",
        f"Fraction of the emotion-neutral gap of M: {_gap(ev.gap)}; random components: {_random_gap(ev)}",
        f"KL(clean||intervened) minus random: {_ci(ev.vs_random['kl'])}, p {_fmt_p(ev.vs_random['kl'].p)} "
        f"(random mean KL {float(np.mean(ev.random_effects['kl'])):.4g})",
        f"Changed: {share.k} of {share.n} clusters [{share.ci_low:.2f}, {share.ci_high:.2f}] (exact binomial); minus random: "
        f"{_ci(ev.vs_random['changed'])}, p {_fmt_p(ev.vs_random['changed'].p)}",
    ]
    return lines


def comparison_table(r: ExperimentResult) -> str:
    """The seed's table (Metric | Baseline | Ablation/Patched | Change), CI and p and the random
    baseline beside each change; the fraction of the gap, KL and changed below it."""
    c = r.config
    kind = KINDS[c.kind]
    heads = ",".join(s.label for s in r.main.sites)
    extra = f", {c.mode_key} {c.mode}"
    base, inter = _means(r.baseline_scores), _means(r.main.scores)
    lines = [
        f"{c.model} {c.profile} {c.emotion}: {c.name}{' patching' if c.direction else ''} of {heads}{extra}, n={len(r.pairs)}",
        f"Question: {kind.question(c)}",
        f"Noise floor (identity control): M {r.noise.floor[M]:.3g} (control max |change| {r.noise.control_max[M]:.3g})",
        "",
        *_evidence_lines(r.main.evidence, r.noise, base, inter, c.label),
    ]
    if r.main.evidence_confirmation is not None:
        assert r.confirmation_index is not None
        lines += ["", f"Confirmation half (expressions the screening did not see, n={len(r.confirmation_index)}):", "",
                  *_evidence_lines(r.main.evidence_confirmation, r.noise, base, None, c.label)]
    spec = control_record(r)
    if spec is not None and spec["difference"] is None:
        lines += ["", f"Specificity control: {spec['definition']}", "  untested: too few expressions have a control"]
    elif spec is not None:
        lines += ["", f"Specificity control: {spec['definition']}",
                  f"  control ΔM {_ci_dict(spec['control'])}; difference {_ci_dict(spec['difference'])} p={_fmt_p(spec['difference']['p'])}; "
                  f"threshold ±{spec['threshold']:.3g} ({spec['min_share']:g} × gap); specific: {'yes' if spec['specific'] else 'no'}"]
    if r.cumulative:
        kw = f"kw_{c.emotion}"
        noun = _noun(r.main.sites)
        lines += ["", f"Cumulative (top-k screened {noun} jointly): change of {METRICS[kw].label} and M", "",
                  f"| k | {noun} | Δ keywords [95% CI] | Δ M [95% CI] | fraction of gap [95% CI] | random: fraction |",
                  "|---|---|---|---|---|---|"]
        for k, o in enumerate(r.cumulative, start=1):
            ev = o.evidence
            lines.append(
                f"| {k} | {','.join(s.label for s in o.sites)} | {_ci(ev.effects[kw])} | {_ci(ev.effects[M])} "
                f"| {_gap(ev.gap)} | {_random_gap(ev)} |"
            )
    if kind.footer:
        lines += ["", kind.footer]
    return "\n".join(lines)
