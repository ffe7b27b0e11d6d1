"""Stage `summarize`: every stage's output → results/summary.json, one flat file of numbers.

Flat keys (`toy.gratitude.ablation.confirmation.emotion_score.mean`) are what `dvc metrics diff`
and `dvc exp show` compare across commits and experiments. Every model key names the half of the
expressions it was measured on (issue 23, no leakage): `selection` (what the screening ranked
on: its attribution, Δattn, and exact effects where every component was tested there),
`confirmation` (the held-out half: the experiments' findings, the primary endpoint, and a top-k's
exact tests) or `all` (every prompt, selection included: descriptive only). Every effect appears
with its n, 95 % interval and p; on the embedded model, the recovery of the planted heads and units
too. MLP units are summarised under `<model>.<emotion>.units.<half>.*` when the unit screening
exists. `<model>.<emotion>.primary.confirmation.*` is the one primary endpoint (params `primary`,
Holm across models × emotions); every other test is secondary, with a BH q per family
(`endpoints`), and the `families.*` keys state each family.
"""

from __future__ import annotations

from typing import Any

from analysis.base.contract import score_half, screened_half
from analysis.base.contract import experiment_file, EXPERIMENT_SCHEMAS, EXPERIMENTS, model_dir, PLANTED_SCHEMA, rank, ranking_score, read_screening, read_unit_screening, screening_file, significant, SUMMARY_SCHEMA, UNIT_ATTRIBUTION_SCHEMA, unit_screening_file
from analysis.base.contract import read_sweep, read_validation, sweep_file, validation_file
from analysis.base.errors import InputError
from analysis.base.io import read_json, read_parquet
from analysis.settings.params import Params
from analysis.reporting.bench_tables import sweep_summary, validation_summary
import numpy as np

from analysis.measures.stats import auroc, benjamini_hochberg, holm


# Signed metrics carried into the summary with their effects; `keywords` is the keyword count of
# the experiment's own emotion. KL and changed (non-negative) get their own keys (`experiment_summary`).
SUMMARY_METRICS = ("emotion_score", "keywords", "sentiment")


EFFECT_FIELDS = ("mean", "ci_low", "ci_high", "p", "n")


def planted_heads(model: str, key: str = "by_emotion") -> dict[str, list[tuple[int, int]]] | None:
    """Planted heads (`by_emotion`) or units (`units_by_emotion`) of the embedded model, else None."""
    path = model_dir(model) / "planted.json"
    if not path.is_file():
        return None
    doc = read_json(path, PLANTED_SCHEMA)
    if key not in doc:
        return None
    return _summarized(path, lambda: {e: [tuple(h) for h in hs] for e, hs in doc[key].items()})


def exact_checks(doc: dict[str, Any], rows: list[dict[str, Any]], emotion: str, top: dict[str, Any], p: str) -> dict[str, float]:
    """Issue 15, per emotion of a head or unit screening: the significant count (q < 0.05 and
    above the noise floor), the noise floor and the rows at or below it, the BH family's size
    (and whether it is a valid FDR family), and the attribution / exact ratios flagged."""
    out: dict[str, float] = {f"{p}.n_significant_q05": sum(1 for s in rows if significant(s))}
    if "noise_floor" not in doc:  # a screening written before the noise floor existed
        return out
    out[f"{p}.noise_floor"] = doc["noise_floor"]["by_emotion"][emotion]["floor"]
    out[f"{p}.n_no_effect"] = sum(1 for s in rows if s["no_effect"])
    out[f"{p}.bh_family_size"] = doc["bh_family"]["size"]
    out[f"{p}.bh_family_valid"] = int(doc["bh_family"]["valid_fdr"])
    out[f"{p}.n_ratio_flagged"] = sum(1 for s in rows if s["ratio_flag"])
    out.update(specific_checks(doc, rows, emotion, p))
    if top.get("attribution_ratio") is not None:
        out[f"{p}.top_attribution_ratio"] = top["attribution_ratio"]
        out[f"{p}.top_ratio_flag"] = int(top["ratio_flag"])
    return out


def specific_checks(doc: dict[str, Any], rows: list[dict[str, Any]], emotion: str, p: str) -> dict[str, float]:
    """Issue 23: the emotion heads (or units) are the `specific` rows (the neutral control): their
    count, the emotion–neutral gap and threshold, and the top specific component (by |exact|)
    with its neutral-control effect and the specificity difference's interval and q."""
    if "specificity" not in doc:  # a screening written before the neutral control existed
        return {}
    index = "head" if rows and "head" in rows[0] else "neuron"
    block = doc["specificity"]["by_emotion"][emotion]
    out: dict[str, float] = {
        f"{p}.n_specific": sum(1 for s in rows if s.get("specific")),
        f"{p}.specificity_gap": block["gap"], f"{p}.specificity_threshold": block["threshold"],
    }
    ranked = rank([s for s in rows if s.get("specific")], "exact", index=index)
    if ranked:
        top = ranked[0]
        q = f"{p}.top_specific"
        out[f"{q}_layer"], out[f"{q}_{index}"] = top["layer"], top[index]
        for field in ("exact", "control", "specificity", "specificity_ci_low", "specificity_ci_high", "specificity_q",
                      "exact_lse_emotion", "exact_lse_neutral"):
            out[f"{q}.{field}"] = top[field]
    return out


def unit_screening_summary(doc: dict[str, Any], planted: dict[str, list[tuple[int, int]]] | None) -> dict[str, float]:
    """Top unit per emotion (with its interval), and the recovery of planted units, under the half
    each was measured on (`<emotion>.units.<half>`, `<emotion>.recovery.units.<half>.<score>`).

    Recovery by attribution ranks every unit (the full table beside the JSON); by exact, the
    units that were patched (the top-k by |attribution|).
    """
    out: dict[str, float] = {}
    table = None
    for emotion in doc["emotions"]:
        rows = [s for s in doc["scores"] if s["emotion"] == emotion]
        key = ranking_score(rows)
        top = rank(rows, key, index="neuron")[0]
        p = f"{emotion}.units.{score_half(doc, emotion, key)}"
        out[f"{p}.top_layer"] = top["layer"]
        out[f"{p}.top_neuron"] = top["neuron"]
        out[f"{p}.top_{key}"] = top[key]
        if key == "exact":
            out[f"{p}.top_exact_ci_low"] = top["exact_ci_low"]
            out[f"{p}.top_exact_ci_high"] = top["exact_ci_high"]
            out[f"{p}.top_exact_q"] = top["exact_q"]
            out[f"{p}.top_exact_n"] = top["exact_n"]
            out[f"{p}.n_exact"] = sum(1 for s in rows if s["exact"] is not None)
            out.update(exact_checks(doc, rows, emotion, top, p))
        if not planted or emotion not in planted:
            continue
        truth = set(planted[emotion])
        if "specificity" in doc:  # issue 23: among the units with an exact score
            r = f"{emotion}.recovery.units.{score_half(doc, emotion, 'exact')}.specific"
            out[f"{r}.n_planted_specific"] = sum(1 for s in rows if s.get("specific") and (s["layer"], s["neuron"]) in truth)
            out[f"{r}.n_other_specific"] = sum(1 for s in rows if s.get("specific") and (s["layer"], s["neuron"]) not in truth)
        if table is None:
            table, _ = read_parquet(doc["attribution_table"], UNIT_ATTRIBUTION_SCHEMA)
        t = table[table["emotion"] == emotion]
        units = list(zip(t["layer"].astype(int), t["neuron"].astype(int), strict=True))
        is_planted = [int(u in truth) for u in units]
        r = f"{emotion}.recovery.units.{score_half(doc, emotion, 'attribution')}.attribution"
        out[f"{r}.planted_rank"] = int(t["attribution_rank"][[bool(x) for x in is_planted]].min())
        out[f"{r}.auroc"] = auroc(t["attribution"].abs().to_numpy(), is_planted)
        scored = [s for s in rows if s["exact"] is not None]
        if any((s["layer"], s["neuron"]) in truth for s in scored):
            order = rank(scored, "exact", index="neuron")
            r = f"{emotion}.recovery.units.{score_half(doc, emotion, 'exact')}.exact"
            out[f"{r}.planted_rank"] = min(i for i, s in enumerate(order, 1) if (s["layer"], s["neuron"]) in truth)
            a = auroc([abs(s["exact"]) for s in scored], [int((s["layer"], s["neuron"]) in truth) for s in scored])
            if a is not None:
                out[f"{r}.auroc"] = a
    return out


def screening_summary(doc: dict[str, Any], planted: dict[str, list[tuple[int, int]]] | None) -> dict[str, float]:
    """Top head per emotion, the exact checks, the copy control and the recovery of planted heads,
    under the half each was measured on (`<emotion>.screening.<half>`, `<emotion>.recovery.<half>.<score>`)."""
    out: dict[str, float] = {}
    key = ranking_score(doc["scores"])
    for emotion in doc["emotions"]:
        rows = [s for s in doc["scores"] if s["emotion"] == emotion]
        ranked = rank(rows, key)
        top = ranked[0]
        p = f"{emotion}.screening.{score_half(doc, emotion, key)}"
        out[f"{p}.top_layer"] = top["layer"]
        out[f"{p}.top_head"] = top["head"]
        out[f"{p}.top_{key}"] = top[key]
        if key == "exact":
            out[f"{p}.top_exact_ci_low"] = top["exact_ci_low"]
            out[f"{p}.top_exact_ci_high"] = top["exact_ci_high"]
            out[f"{p}.top_exact_q"] = top["exact_q"]
            out.update(exact_checks(doc, rows, emotion, top, p))
        # Issue 14: the screening's half, and the copy control (flagged = mostly copying).
        half = screened_half(doc)
        out[f"{emotion}.screening.{half}.n_expressions"] = doc["pairs"][emotion].get("n_expressions", doc["pairs"][emotion]["n_clusters"])
        if "copy_flag" in top:
            out[f"{p}.n_copy_flagged"] = sum(1 for s in rows if s.get("copy_flag"))
            out[f"{p}.top_copy_flag"] = int(bool(top["copy_flag"]))
            if top["copy_share"] is not None:
                out[f"{p}.top_copy_share"] = top["copy_share"]
        rho = doc["attribution_vs_exact"].get(emotion)
        if rho is not None:
            out[f"{emotion}.screening.{score_half(doc, emotion, 'exact')}.attribution_vs_exact_spearman"] = rho
        if planted and emotion in planted:
            truth = set(planted[emotion])
            for score in ("exact", "attribution", "delta_attn"):
                scored = [s for s in rows if s[score] is not None]
                order = rank(scored, score)
                ranks = [i for i, s in enumerate(order, 1) if (s["layer"], s["head"]) in truth]
                r = f"{emotion}.recovery.{score_half(doc, emotion, score)}.{score}"
                if ranks:
                    out[f"{r}.planted_rank"] = min(ranks)
                a = auroc([abs(s[score]) for s in scored], [int((s["layer"], s["head"]) in truth) for s in scored])
                if a is not None:
                    out[f"{r}.auroc"] = a
            if "specificity" in doc:  # issue 23: the planted heads are emotion heads, no other head is
                r = f"{emotion}.recovery.{score_half(doc, emotion, 'exact')}.specific"
                out[f"{r}.n_planted_specific"] = sum(
                    1 for s in rows if s.get("specific") and (s["layer"], s["head"]) in truth)
                out[f"{r}.n_other_specific"] = sum(
                    1 for s in rows if s.get("specific") and (s["layer"], s["head"]) not in truth)
    return out


HALVES = ("selection", "confirmation", "all")  # every model key names one (issue 23: no leakage)


def experiment_summary(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """One experiment's flat keys `<emotion>.<name>.<half>...` (name: ablation, denoising, noising;
    half: `all` prompts, selection included, or the held-out `confirmation` half, the findings)."""
    emotion = doc["emotion"]
    pre = f"{emotion}.{name}"
    out: dict[str, Any] = {}

    def signed(prefix: str, block: dict[str, Any]) -> None:
        for metric in SUMMARY_METRICS:
            effect = block[f"kw_{emotion}" if metric == "keywords" else metric]
            for field in (*EFFECT_FIELDS, "no_effect"):
                out[f"{prefix}.{metric}.{field}"] = effect[field]

    def gap(prefix: str, arm: dict[str, Any]) -> None:
        for field in ("ratio", "ci_low", "ci_high"):
            out[f"{prefix}.fraction_of_gap.{field}"] = arm["fraction_of_gap"][field]
        rb = arm["random_baseline"]
        out[f"{prefix}.random.fraction_of_gap"] = rb["fraction_of_gap"]["mean"]
        out[f"{prefix}.random.emotion_score"] = rb["effects"]["emotion_score"]["mean"]

    def non_negative(prefix: str, arm: dict[str, Any], intervened: dict[str, float] | None) -> None:
        for metric, block in arm["non_negative"].items():
            if intervened is not None:
                out[f"{prefix}.{metric}.mean"] = intervened[metric]
            out[f"{prefix}.{metric}.random"] = arm["random_baseline"]["effects"][metric]["mean"]
            for field in EFFECT_FIELDS:
                out[f"{prefix}.{metric}.excess.{field}"] = block["vs_random"][field]
            for field, value in block.get("clusters_changed", {}).items():
                out[f"{prefix}.{metric}.clusters.{field}"] = value

    every = f"{pre}.all"
    out[f"{every}.n_prompts"] = doc["n_prompts"]
    out[f"{every}.noise_floor.emotion_score"] = doc["noise_floor"]["floor"]["emotion_score"]
    signed(every, doc["effects"])
    for metric in SUMMARY_METRICS:
        out[f"{every}.{metric}.baseline"] = doc["baseline"][f"kw_{emotion}" if metric == "keywords" else metric]
    gap(every, doc)
    non_negative(every, doc, doc["intervened"])
    conf = f"{pre}.confirmation"
    if doc.get("effects_confirmation"):
        out[f"{conf}.n_prompts"] = doc["split"]["n_prompts_confirmation"]
        signed(conf, doc["effects_confirmation"])
        gap(conf, doc["confirmation"])
        non_negative(conf, doc["confirmation"], None)
    # Issue 23: the specificity control (all prompts and the confirmation half) and the copy-free M.
    spec = doc.get("specificity_control")
    for half, block in (("all", spec), ("confirmation", (spec or {}).get("confirmation"))):
        if block and block["difference"] is not None:
            q = f"{pre}.{half}.specificity"
            out[f"{q}.control.mean"] = block["control"]["mean"]
            for field in EFFECT_FIELDS:
                out[f"{q}.difference.{field}"] = block["difference"][field]
            out[f"{q}.threshold"], out[f"{q}.specific"] = block["threshold"], int(block["specific"])
    for half, effects in (("all", doc["effects"]), ("confirmation", doc.get("effects_confirmation") or {})):
        if "emotion_score_copy_free" in effects:
            for field in EFFECT_FIELDS:
                out[f"{pre}.{half}.emotion_score_copy_free.{field}"] = effects["emotion_score_copy_free"][field]
    for entry in doc.get("cumulative", []):
        halves = [("all", entry["effects"], entry)]
        if entry.get("effects_confirmation"):
            halves.append(("confirmation", entry["effects_confirmation"], entry["confirmation"]))
        for half, effects, arm in halves:
            effect = effects["emotion_score"]
            for field in ("mean", "ci_low", "ci_high"):
                out[f"{pre}.{half}.cumulative.k{entry['k']}.emotion_score.{field}"] = effect[field]
            out[f"{pre}.{half}.cumulative.k{entry['k']}.fraction_of_gap.ratio"] = arm["fraction_of_gap"]["ratio"]
    return out


def _summarized(path: Any, fn: Any, *args: Any) -> dict[str, float]:
    """fn(*args) on the document read from `path`; a document with the right schema but a missing
    or mistyped field is one InputError line naming the file and the field, not a traceback."""
    try:
        return fn(*args)
    except KeyError as err:
        raise InputError(
            f"input file {path} has the right schema but lacks the key {err.args[0]!r}; "
            f"rerun the stage that writes it (`dvc repro`)"
        ) from None
    except (TypeError, IndexError, ValueError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"input file {path} has the right schema but a malformed field ({first[:160]}); "
                         f"rerun the stage that writes it (`dvc repro`)") from None


def summarize(params: Params) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    for model in params.models:
        flat: dict[str, float] = {}
        path = screening_file(params.profile, model)
        screening = read_screening(path)
        flat.update(_summarized(path, screening_summary, screening, planted_heads(model)))
        units = unit_screening_file(params.profile, model)
        if units.is_file():
            flat.update(_summarized(units, unit_screening_summary, read_unit_screening(units),
                                    planted_heads(model, "units_by_emotion")))
        for emotion in params.emotions:
            for name, (kind, direction) in EXPERIMENTS.items():
                if direction is not None and direction not in params.patching.directions:
                    continue  # a direction the pipeline does not run (params patching.directions)
                path = experiment_file(name, params.profile, model, emotion)
                doc = read_json(path, EXPERIMENT_SCHEMAS[kind])
                flat.update(_summarized(path, experiment_summary, doc, name))
        metrics.update({f"{model}.{k}": v for k, v in flat.items()})
    metrics.update(endpoints(metrics, params))
    path = validation_file(params.profile)
    if path.is_file():  # the benchmark with known answers (issue 16)
        metrics.update({f"bench.{k}": v for k, v in _summarized(path, validation_summary, read_validation(path)).items()})
    path = sweep_file(params.profile)
    if path.is_file():  # the benchmark's difficulty sweep (issue 24)
        metrics.update({f"bench.{k}": v for k, v in _summarized(path, sweep_summary, read_sweep(path)).items()})
    return {"schema": SUMMARY_SCHEMA, "profile": params.profile, **metrics}


def _family_text(what: str, m: int, rule: str) -> str:
    return f"{what}; {rule} across emotions × models (m = {m})"


def endpoints(metrics: dict[str, Any], params: Params) -> dict[str, Any]:
    """The primary endpoint (params `primary`) with its Holm-adjusted p, and the secondary families' BH q.

    Primary: per model × emotion, the fraction of the gap of the experiment's main arm on the
    confirmation half (`<model>.<emotion>.primary.confirmation.*`). Its p is the test (analysis.measures.stats) of
    θ = 0, which is the test of the numerator's mean = 0, i.e. of ΔM = 0 (the same cluster sums:
    analysis.measures.stats.ratio_effect at θ0 = 0), so it is read from the arm's emotion_score effect.
    `p_holm` is Holm over every model × emotion; `rejected`: p_holm < alpha and ΔM above the noise floor.

    Secondary: every other test of the confirmation half (each experiment's signed metrics against
    0, KL and changed against the random baseline) is its own Benjamini–Hochberg family per
    (experiment, metric) across emotions × models: `<...>.confirmation.<metric>.q` (or `.excess.q`).
    The `families.*` keys state every family and its size; the screenings' own BH families are
    their files' `bh_family` blocks.
    """
    pr = params.primary
    out: dict[str, Any] = {}
    cells = [(m, e) for m in params.models for e in params.emotions]
    bases = {c: f"{c[0]}.{c[1]}.{pr.experiment}.{pr.half}" for c in cells}
    measured = [c for c in cells if f"{bases[c]}.{pr.metric}.ratio" in metrics]
    adjusted = holm([metrics[f"{bases[c]}.emotion_score.p"] for c in measured])
    for c, p_holm in zip(measured, adjusted, strict=True):
        b, k = bases[c], f"{c[0]}.{c[1]}.primary.{pr.half}"
        for f in ("ratio", "ci_low", "ci_high"):
            out[f"{k}.{pr.metric}.{f}"] = metrics[f"{b}.{pr.metric}.{f}"]
        out[f"{k}.n_prompts"] = metrics[f"{b}.n_prompts"]
        out[f"{k}.p"] = metrics[f"{b}.emotion_score.p"]
        out[f"{k}.p_holm"] = float(p_holm)
        out[f"{k}.rejected"] = int(p_holm < pr.alpha and not metrics[f"{b}.emotion_score.no_effect"])
    out["families.primary"] = _family_text(
        f"primary: the {pr.experiment} {pr.metric.replace('_', ' ')} of the main arm on the {pr.half} half "
        f"(the test of θ = 0, i.e. of ΔM = 0)", len(measured), f"Holm, family-wise error at α = {pr.alpha:g},",
    ) if measured else "primary: not measured (no confirmation half: split.enabled is false)"
    out["families.primary.size"] = len(measured)
    # The secondary families: one per (experiment, metric) on the confirmation half.
    tests: dict[tuple[str, str], list[str]] = {}
    for key in metrics:
        parts = key.split(".")
        if len(parts) >= 6 and parts[3] == "confirmation" and parts[-1] == "p" and parts[4] != "cumulative":
            metric = ".".join(parts[4:-1])  # emotion_score, keywords, sentiment, kl.excess, changed.excess
            tests.setdefault((parts[2], metric), []).append(key)
    for (experiment, metric), keys in sorted(tests.items()):
        q = benjamini_hochberg([metrics[k] for k in keys])
        for k, qv in zip(keys, q, strict=True):
            out[k[: -len(".p")] + ".q"] = None if np.isnan(qv) else float(qv)
        out[f"families.secondary.{experiment}.{metric}"] = _family_text(
            f"secondary: {experiment} {metric} on the confirmation half", len(keys), "Benjamini–Hochberg q",
        )
    out["families.screening"] = ("secondary: each screening's exact q is Benjamini–Hochberg over its own family "
                                 "(its file's bh_family: every head × emotion of a model, or the top-k units × emotions)")
    return out
