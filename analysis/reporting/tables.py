"""The report's tables, as DataFrames of formatted text, built from results/ only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
import pandas as pd

from analysis.base.contract import EXPERIMENT_SCHEMAS, rank
from analysis.reporting.format import _effect_decimals, decimals_for, fmt_change, fmt_ci, fmt_effect, fmt_gap, fmt_head, gap_parts, fmt_heads, fmt_num, fmt_p, fmt_sites, plural, Text
from analysis.reporting.endpoints import specific_text, split_delta_m
from analysis.reporting.results import EMBEDDED, GPT2, KINDS, ModelResults, ranked, ranking_key, Results, SCORE_KINDS


# The seed's ("Phase 7", ../shared/seed/000_0e875f0d7127b424.txt) GPT-2 numbers, as it reported
# them: one head (L0H0), gratitude only, hook_v approximations, n = 70, no interval or test.
SEED: dict[str, Any] = {
    "model": Text("gpt2"),
    "head": Text("L0H0"),
    "emotion": Text("gratitude"),
    "n": 70,
    "delta_attn": -0.025819,  # the |Δattn| of its top-10 heads, all identical: a bug
    "delta_attn_heads": 10,
    "n_scores": 432,
    "ablation_sentiment_baseline": 0.9151,
    "ablation_sentiment_ablated": 0.8803,
    "ablation_sentiment_change": -0.0349,
    "patching_sentiment_baseline": 0.5113,
    "patching_sentiment_patched": 0.6215,
    "patching_sentiment_change": 0.1102,
}


SCORE_LABELS = {"exact": "exact patching ΔM", "attribution": "attribution (gradient × Δz)", "delta_attn": "Δattn"}


def screening_table(doc: Mapping[str, Any], emotion: str | None = None, top_n: int = 10) -> pd.DataFrame:
    """The top heads by the ranking score: Rank | Head | Emotion | Exact ΔM | 95 % CI | q | Attribution | Δattn."""
    rows = ranked(doc, emotion)[:top_n]
    out = []
    for i, s in enumerate(rows, 1):
        exact = {"mean": s.get("exact"), "ci_low": s.get("exact_ci_low"), "ci_high": s.get("exact_ci_high")}
        has_exact = s.get("exact") is not None
        out.append({
            "Rank": i,
            "Head": fmt_head((s["layer"], s["head"])),
            "Emotion": s["emotion"],
            "Exact ΔM (nats)": fmt_change(exact) if has_exact else Text("—"),
            "95 % CI": fmt_ci(exact) if has_exact and s.get("exact_ci_low") is not None else Text("—"),
            # at or below the noise floor a p-value tests float noise: the row is "no effect"
            "p": Text("no effect") if s.get("no_effect") else fmt_p(s.get("exact_p")),
            "q (BH)": Text("no effect") if s.get("no_effect") else fmt_p(s.get("exact_q")),
            "Attribution": fmt_num(s["attribution"], sign=True),
            "Δattn": fmt_num(s["delta_attn"], sign=True),
            "Specific": specific_text(s),
            "Δ LSE emotion / neutral": Text(" / ".join(fmt_num(v, sign=True) for v in split_delta_m(s)))
            if split_delta_m(s) else Text("—"),
        })
    columns = ["Rank", "Head", "Emotion", "Exact ΔM (nats)", "95 % CI", "p", "q (BH)", "Attribution", "Δattn", "Specific",
               "Δ LSE emotion / neutral"]
    table = pd.DataFrame(out, columns=columns)
    # columns no row of this file has (a screening before the specificity control) are left out,
    # so the table keeps to the text column
    for col, field in (("Specific", "specific"), ("Δ LSE emotion / neutral", None)):
        if not any(s.get(field) is not None if field else split_delta_m(s) for s in rows):
            table = table.drop(columns=col)
    return table


def distinct_delta_attn(doc: Mapping[str, Any], emotion: str, decimals: int = 6) -> int:
    """How many distinct Δattn values (rounded as the seed printed them) the heads of `emotion` have."""
    return len({round(float(s["delta_attn"]), decimals) for s in doc["scores"] if s["emotion"] == emotion})


def delta_attn_summary(doc: Mapping[str, Any], emotion: str, decimals: int = 6) -> Text:
    """`3 non-zero values (3 distinct) and 13 heads at 0.000000`: the seed's bug was many heads
    sharing one non-zero value, so distinct non-zero values are what to count."""
    vals = [round(float(s["delta_attn"]), decimals) for s in doc["scores"] if s["emotion"] == emotion]
    nonzero = [v for v in vals if v != 0.0]
    text = f"{plural(len(nonzero), 'non-zero value')} ({len(set(nonzero))} distinct)"
    zeros = len(vals) - len(nonzero)
    if zeros:
        text += f" and {plural(zeros, 'head')} at {0.0:.{decimals}f}"
    return Text(text)


def max_other_exact(doc: Mapping[str, Any], planted: Mapping[str, Sequence[Sequence[int]]]) -> float | None:
    """The largest |exact ΔM| of any head × emotion that is not planted for that emotion."""
    vals = [abs(s["exact"]) for s in doc["scores"] if s.get("exact") is not None
            and (s["layer"], s["head"]) not in {tuple(h) for h in planted.get(s["emotion"], [])}]
    return max(vals) if vals else None


def screening_overview(r: Results) -> pd.DataFrame:
    """Model × emotion: top head and its exact ΔM with CI and q, heads with q < 0.05, ρ(attribution, exact)."""
    out = []
    for model, m in r.models.items():
        key = ranking_key(m.screening)
        for e in r.emotions:
            top = (r.s(model, e, "screening", r.half(model, e), "top_layer"), r.s(model, e, "screening", r.half(model, e), "top_head"))
            row: dict[str, Any] = {"Model": model, "Emotion": e, "Top head": fmt_head(top)}
            top_row = next((s for s in m.screening["scores"] if s["emotion"] == e and (s["layer"], s["head"]) == tuple(top)), None)
            row["Specific"] = specific_text(top_row)
            if key == "exact":
                eff = {
                    "mean": r.s(model, e, "screening", r.half(model, e), "top_exact"),
                    "ci_low": r.s(model, e, "screening", r.half(model, e), "top_exact_ci_low"),
                    "ci_high": r.s(model, e, "screening", r.half(model, e), "top_exact_ci_high"),
                }
                row["Exact ΔM [95 % CI] (nats)"] = fmt_effect(eff, p=False)
                row["q (BH)"] = fmt_p(r.s(model, e, "screening", r.half(model, e), "top_exact_q"))
                row["Heads with q < 0.05"] = Text(f"{r.s(model, e, 'screening', r.half(model, e), 'n_significant_q05')} of {m.n_heads_total}")
            else:
                row["Attribution (top)"] = fmt_num(r.s(model, e, "screening", r.half(model, e), "top_attribution"), sign=True)
            rho = r.summary.get(f"{model}.{e}.screening.{r.half(model, e)}.attribution_vs_exact_spearman")
            row["ρ(attribution, exact)"] = fmt_num(rho, 2) if rho is not None else Text("—")
            out.append(row)
    return pd.DataFrame(out)


def unit_overview(r: Results) -> pd.DataFrame:
    """Model × emotion: top MLP unit, its exact ΔM [CI], q, n; planted units' ranks where planted.
    Each number under the half it was measured on (the top-k's exact: the confirmation half)."""
    out = []
    for model, m in r.models.items():
        for e in r.emotions:
            if m.units is None:
                continue  # no unit screening for this model
            key = "exact" if any(s["emotion"] == e and s.get("exact") is not None for s in m.units["scores"]) else "attribution"
            half = r.half(model, e, key, units=True)

            def u(field: str) -> Any:
                return r.s(model, e, "units", half, field)  # noqa: B023 - used within the iteration

            row: dict[str, Any] = {"Model": model, "Emotion": e, "Top unit": Text(f"mlp:{u('top_layer')}:{u('top_neuron')}")}
            if key == "exact":
                eff = {k: u(f"top_exact{suffix}") for k, suffix in (("mean", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))}
                row[f"Exact ΔM [95 % CI] (nats), {half}"] = fmt_effect(eff, p=False)
                row["q (BH)"] = fmt_p(u("top_exact_q"))
                row["n"] = fmt_num(u("top_exact_n"), 0)
                row["Units with q < 0.05"] = Text(f"{u('n_significant_q05')} of {u('n_exact')} patched")
            else:
                row["Attribution (top)"] = fmt_num(u("top_attribution"), sign=True)
            for score in ("attribution", "exact"):
                rank = r.summary.get(f"{model}.{e}.recovery.units.{r.half(model, e, score, units=True)}.{score}.planted_rank")
                if rank is not None:
                    auc = r.summary.get(f"{model}.{e}.recovery.units.{r.half(model, e, score, units=True)}.{score}.auroc")
                    row[f"Planted unit: rank, AUROC ({score})"] = Text(f"{rank}, {fmt_num(auc, 3)}")
            out.append(row)
    return pd.DataFrame(out)


def ratio_table(r: Results, per_model: int = 10) -> pd.DataFrame:
    """Attribution / exact where flagged (outside [0.3, 3], exact above the noise floor), heads and
    units of every model, planted components first (and marked): Model | Emotion | Component |
    Planted | Attribution | Exact ΔM | Ratio. At most `per_model` rows per model and kind."""
    out = []
    for model, m in r.models.items():
        planted = m.planted or {}
        for doc, key, comp, truth in ((m.screening, "head", "head", "by_emotion"), (m.units, "neuron", "unit", "units_by_emotion")):
            if not doc or "attribution_ratio" not in doc:
                continue
            rows = [s for s in doc["scores"] if s.get("ratio_flag")]
            is_planted = lambda s: [s["layer"], s[key]] in planted.get(truth, {}).get(s["emotion"], [])  # noqa: E731
            ordered = rank(rows, "exact", index=key)
            for s in ([s for s in ordered if is_planted(s)] + [s for s in ordered if not is_planted(s)])[:per_model]:
                out.append({
                    "Model": model, "Emotion": s["emotion"],
                    "Component": fmt_head((s["layer"], s["head"])) if comp == "head" else Text(f"mlp:{s['layer']}:{s['neuron']}"),
                    "Planted": Text("yes" if is_planted(s) else ("no" if planted else "—")),
                    "Attribution": fmt_num(s["attribution"], sign=True), "Exact ΔM (nats)": fmt_num(s["exact"], sign=True),
                    "Attribution / exact": fmt_num(s["attribution_ratio"], 3, sign=True),
                })
    return pd.DataFrame(out, columns=["Model", "Emotion", "Component", "Planted", "Attribution", "Exact ΔM (nats)", "Attribution / exact"])


METRIC_ORDER = ("emotion_score", "emotion_score_copy_free", "kl", "sentiment", "kw_gratitude", "kw_anger", "kw_apology", "kw_neutral", "changed")


def metric_label(metric: str, emotion: str | None = None) -> Text:
    labels = {
        "emotion_score": "Emotion score M (nats)",
        "emotion_score_copy_free": "Emotion score M, copy-free (nats)",
        "kl": "KL(clean ‖ intervened) (nats)",
        "sentiment": "Sentiment (VADER compound)",
        "changed": "Changed continuations (share)",
    }
    if metric in labels:
        return Text(labels[metric])
    if metric.startswith("kw_"):
        name = metric[3:]
        own = " (own emotion)" if name == emotion else ""
        return Text(f"{name.capitalize()} keywords per continuation{own}")
    return Text(metric)


def _metrics_in(doc: Mapping[str, Any]) -> list[str]:
    present = list(doc["effects"])
    return [m for m in METRIC_ORDER if m in present] + [m for m in present if m not in METRIC_ORDER]


def arm_half(doc: Mapping[str, Any], half: str = "all") -> Mapping[str, Any]:
    """An experiment arm's statistics over `half`: the document's own blocks (all prompts), or with
    half "confirmation" its `effects_confirmation` and `confirmation` blocks (the held-out half),
    where the run has them (else all)."""
    if half != "confirmation" or not doc.get("effects_confirmation"):
        return doc
    return {**doc, **doc["confirmation"], "effects": doc["effects_confirmation"]}


def experiment_table(doc: Mapping[str, Any], half: str = "all") -> pd.DataFrame:
    """The seed's table with statistics: Metric | Baseline | Ablation/Patched | Change | 95 % CI | p |
    random heads' change; KL and changed (non-negative) against the random baseline, no p against 0;
    the fraction of the emotion–neutral gap of M last. Change, interval, p and the random heads over
    `half` (`arm_half`); baseline and intervened are the means over all prompts."""
    kind = "ablation" if doc["schema"] == EXPERIMENT_SCHEMAS["ablation"] else "patching"
    label = "Ablation" if kind == "ablation" else "Patched"
    doc = arm_half(doc, half)
    random = doc["random_baseline"]["effects"]
    out = []
    for m in _metrics_in(doc):
        e = doc["effects"][m]
        d_eff = _effect_decimals(e)
        d_all = decimals_for(doc["baseline"][m], doc["intervened"][m], e["ci_low"], e["ci_high"])
        d = d_all if d_eff is None else max(d_eff, decimals_for(doc["baseline"][m], doc["intervened"][m]))
        out.append({
            "Metric": metric_label(m, doc["emotion"]),
            "Baseline": fmt_num(doc["baseline"][m], d),
            label: fmt_num(doc["intervened"][m], d),
            "Change": Text(fmt_change(e) + (" (no effect)" if e.get("no_effect") else "")),
            "95 % CI": fmt_ci(e),
            "p": Text("—") if e.get("no_effect") else fmt_p(e["p"]),
            "Random heads": fmt_num(random[m]["mean"], d, sign=True),
        })
    for m, block in doc["non_negative"].items():
        x = block["vs_random"]
        d = max(_effect_decimals(x) or 3, 3)
        share = block.get("clusters_changed")
        change = f"{fmt_num(doc['intervened'][m], d)} − random {fmt_num(random[m]['mean'], d)}"
        if share:
            change += f"; {share['k']} of {share['n']} clusters [{fmt_num(share['ci_low'], 2)}, {fmt_num(share['ci_high'], 2)}]"
        out.append({
            "Metric": metric_label(m, doc["emotion"]),
            "Baseline": fmt_num(doc["baseline"][m], d),
            label: fmt_num(doc["intervened"][m], d),
            "Change": Text(f"{change}: excess {fmt_num(x['mean'], d, sign=True)}"),
            "95 % CI": fmt_ci(x),
            "p": fmt_p(x["p"]),
            "Random heads": fmt_num(random[m]["mean"], d),
        })
    random_gap = doc["random_baseline"]["fraction_of_gap"]["mean"]
    parts = gap_parts(doc["fraction_of_gap"])  # its interval inverts the test of the residual num − θ·den
    out.append({
        "Metric": Text("Fraction of the emotion–neutral gap of M"), "Baseline": Text("—"), label: Text("—"),
        "Change": Text("undefined (no emotion–neutral gap)" if parts is None else parts[0]),
        "95 % CI": Text("—" if parts is None else parts[1]),
        "p": Text("—"), "Random heads": fmt_num(random_gap, 2) if random_gap is not None else Text("—"),
    })
    return pd.DataFrame(out, columns=["Metric", "Baseline", label, "Change", "95 % CI", "p", "Random heads"])


def experiment_caption(doc: Mapping[str, Any], half: str = "all") -> Text:
    kind = "ablation" if doc["schema"] == EXPERIMENT_SCHEMAS["ablation"] else "patching"
    shown = arm_half(doc, half)
    n = shown["effects"]["emotion_score"].get("n", doc["n_prompts"])
    clusters = {e.get("n_clusters") for e in shown["effects"].values()} - {None}
    cl = f" in {min(clusters)} expression clusters" if clusters else ""
    if kind == "ablation":
        how = f"{doc.get('method', '?')} ablation of {fmt_heads(doc['heads'])} on the {doc['emotion']} prompts"
    elif doc.get("direction") == "noising":
        how = (f"noising: patching {fmt_heads(doc['heads'])} from the neutral twins into the {doc['emotion']} prompts "
               f"(positions: {doc.get('positions', '?')})")
    else:
        how = (f"denoising: patching {fmt_heads(doc['heads'])} from the {doc['emotion']} prompts into their neutral twins "
               f"(positions: {doc.get('positions', '?')})")
    floor = doc["noise_floor"]["floor"]["emotion_score"]
    draws = len(doc["random_sites"])
    where = ("the held-out confirmation half (changes, intervals, p, random heads; baseline and intervened: means over "
             f"all {doc['n_prompts']} prompts)" if shown is not doc else "all prompts")
    return Text(
        f"{doc['model']}, {how}, on {where}. Question: {doc['question']} n = {n} prompts{cl}, {doc.get('max_tokens', '?')} greedy "
        f"tokens each; random heads: the same intervention on {draws} seeded draws of as many heads outside the top set; "
        f"noise floor of M (identity control) {floor:.1g} nats."
    )


def experiment_overview(r: Results, kind: str) -> pd.DataFrame:
    """Model × emotion: heads, n, and ΔM, fraction of the gap, Δsentiment, Δown keywords with CI
    and p; the changed share over clusters; each beside the random-head baseline."""
    out = []
    for model, m in r.models.items():
        if kind not in m.experiments:
            continue
        for e in r.emotions:
            doc = m.experiment(kind, e)
            row = {"Model": model, "Emotion": e, "Heads": fmt_sites(doc), "n": r.s(model, e, kind, r.finding_half, "n_prompts")}
            row["ΔM (nats)"] = fmt_effect(r.s_effect(model, e, kind, "emotion_score"))
            # secondary: BH across emotions × models (analysis.reporting.summary.endpoints); the random
            # heads' ΔM is in the per-emotion tables, their fraction of the gap beside this one's
            q = r.summary.get(f"{model}.{e}.{kind}.{r.finding_half}.emotion_score.q")
            row["q (BH)"] = fmt_p(q) if q is not None else Text("—")
            row["Fraction of gap"] = fmt_gap(r.s_gap(model, e, kind))
            for metric, label in (("sentiment", "Δ sentiment"), ("keywords", "Δ own keywords")):
                row[label] = fmt_effect(r.s_effect(model, e, kind, metric))
            share = {f: r.s(model, e, kind, r.finding_half, "changed", "clusters", f) for f in ("k", "n", "ci_low", "ci_high")}
            row["Changed (clusters)"] = Text(
                f"{share['k']} of {share['n']} [{fmt_num(share['ci_low'], 2)}, {fmt_num(share['ci_high'], 2)}] "
                f"(random {fmt_num(r.s(model, e, kind, r.finding_half, 'changed', 'random'), 2)})"
            )
            out.append(row)
    return pd.DataFrame(out)


def cumulative_overview(m: ModelResults, kind: str, emotions: Sequence[str], half: str = "all") -> pd.DataFrame:
    """`cumulative_table` of every emotion of one model and kind, with an Emotion column."""
    tables = []
    for e in emotions if kind in m.experiments else ():
        t = cumulative_table(m.experiment(kind, e), half)
        t.insert(0, "Emotion", e)
        tables.append(t)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def cumulative_table(doc: Mapping[str, Any], half: str = "all") -> pd.DataFrame:
    """k | Heads | ΔM [95 % CI] | Δ own keywords [95 % CI] | Δ sentiment [95 % CI] for the top-1..k heads
    jointly, over `half` (`arm_half`)."""
    own = f"kw_{doc['emotion']}"
    out = []
    for entry in doc.get("cumulative", []):
        entry = arm_half(entry, half)
        eff = entry["effects"]
        out.append({
            "k": entry["k"],
            "Heads": fmt_sites(entry),
            "ΔM (nats)": fmt_effect(eff["emotion_score"]),
            "Fraction of gap": fmt_gap({**entry["fraction_of_gap"], "random": entry["random_baseline"]["fraction_of_gap"]["mean"]}),
            "Δ own keywords": fmt_effect(eff[own]) if own in eff else Text("—"),
            "Δ sentiment": fmt_effect(eff["sentiment"]) if "sentiment" in eff else Text("—"),
        })
    return pd.DataFrame(out, columns=["k", "Heads", "ΔM (nats)", "Fraction of gap", "Δ own keywords", "Δ sentiment"])


def recovery_table(r: Results, model: str = EMBEDDED) -> pd.DataFrame:
    """Per emotion: the planted head, its rank and the AUROC by each score, and the effects of
    the experiments' heads (from summary.json)."""
    m = r.models[model]
    out = []
    for e in r.emotions:
        planted = m.planted_heads(e)
        row: dict[str, Any] = {"Emotion": e, "Planted head": fmt_heads(planted)}
        for score in SCORE_KINDS:
            rank = r.summary.get(f"{model}.{e}.recovery.{r.half(model, e, score)}.{score}.planted_rank")
            auc = r.summary.get(f"{model}.{e}.recovery.{r.half(model, e, score)}.{score}.auroc")
            rank_text = f"{rank} of {m.n_heads_total}" if rank is not None else "—"
            auc_text = f" ({fmt_num(auc, 2)})" if auc is not None else ""
            row[f"{SCORE_LABELS[score]}: rank (AUROC)"] = Text(rank_text + auc_text)
        for kind in (k for k in KINDS if k in m.experiments):
            doc = m.experiment(kind, e)
            hit = set(map(tuple, doc["heads"])) == set(planted)
            row[f"{kind.capitalize()}: heads"] = Text(f"{fmt_heads(doc['heads'])}{' (planted)' if hit else ''}")
            row[f"{kind.capitalize()}: ΔM (nats)"] = fmt_effect(r.s_effect(model, e, kind, "emotion_score"))
        out.append(row)
    return pd.DataFrame(out)


def seed_table(r: Results | None = None) -> pd.DataFrame:
    """The seed's GPT-2 numbers (as it reported them) beside this run's GPT-2 ones when present."""
    s = SEED
    rows = [
        ("Screening score", "Δattn (one value for many heads)", None),
        ("Top score", f"{fmt_num(s['delta_attn'], 6)} (same for its top {s['delta_attn_heads']} heads)", None),
        ("Head ablated / patched", f"{s['head']} (hook_v, approximate)", None),
        ("Ablation: sentiment baseline → ablated", f"{fmt_num(s['ablation_sentiment_baseline'], 4)} → {fmt_num(s['ablation_sentiment_ablated'], 4)}", None),
        ("Ablation: change [95 % CI], p", f"{fmt_num(s['ablation_sentiment_change'], 4, sign=True)} (no interval, no test)", None),
        ("Patching: sentiment baseline → patched", f"{fmt_num(s['patching_sentiment_baseline'], 4)} → {fmt_num(s['patching_sentiment_patched'], 4)}", None),
        ("Patching: change [95 % CI], p", f"{fmt_num(s['patching_sentiment_change'], 4, sign=True)} (no interval, no test)", None),
        ("n prompts", str(s["n"]), None),
    ]
    cols = {"Quantity": [q for q, _, _ in rows], f"Seed ({s['model']}, {s['emotion']})": [Text(v) for _, v, _ in rows]}
    if r is not None and GPT2 in r.models:
        e = s["emotion"] if s["emotion"] in r.emotions else r.emotions[0]
        m = r.models[GPT2]
        key = ranking_key(m.screening)
        top = ranked(m.screening, e)[0]
        abl, pat = m.experiment("ablation", e), m.experiment("denoising", e)
        sa, sp = r.s_effect(GPT2, e, "ablation", "sentiment"), r.s_effect(GPT2, e, "denoising", "sentiment")
        cols[f"This run ({GPT2}, {e})"] = [
            Text(SCORE_LABELS[key]),
            Text(f"{fmt_num(top[key], sign=True)} ({fmt_head((top['layer'], top['head']))}; "
                 f"{distinct_delta_attn(m.screening, e)} distinct Δattn values over {m.n_heads_total} heads)"),
            Text(f"{fmt_heads(abl['heads'])} / {fmt_heads(pat['heads'])} (hook_z, exact)"),
            Text(f"{fmt_num(sa['baseline'])} → {fmt_num(abl['intervened']['sentiment'])}"),
            fmt_effect(sa),
            Text(f"{fmt_num(sp['baseline'])} → {fmt_num(pat['intervened']['sentiment'])}"),
            fmt_effect(sp),
            Text(f"{sa['n']} / {sp['n']}"),
        ]
    return pd.DataFrame(cols)


def _summary_effect(r: Results, *key: str) -> dict[str, Any]:
    """mean, ci_low, ci_high, p of one summary.json effect (its key prefix)."""
    return {f: r.s(*key, f) for f in ("mean", "ci_low", "ci_high", "p")}


def confirmation_table(r: Results) -> pd.DataFrame:
    """Model × emotion × measure, long so that it fits the text column: the top head's exact ΔM where
    it was selected (the selection half's screening), then the same head's denoising, noising and
    ablation ΔM on the held-out confirmation half and on all expressions (n prompts of each), and its
    copy share (copy-free ΔM / ΔM) on the screening's row."""
    out = []
    for model, m in r.models.items():
        split = m.screening.get("split", {})
        halves = ("confirmation", "all") if split.get("enabled") else ("all",)
        for e in r.emotions:
            h = r.half(model, e)
            head = fmt_head((r.s(model, e, "screening", h, "top_layer"), r.s(model, e, "screening", h, "top_head")))
            screened = {"mean": r.s(model, e, "screening", h, "top_exact"), "ci_low": r.s(model, e, "screening", h, "top_exact_ci_low"),
                        "ci_high": r.s(model, e, "screening", h, "top_exact_ci_high"), "p": None}
            share = r.summary.get(f"{model}.{e}.screening.{h}.top_copy_share")
            base = {"Model": model, "Emotion": e, "Head": head}
            columns = (h, *halves) if h not in halves else halves
            row = {**base, "Measure": Text(f"screening exact ΔM (copy share {fmt_num(share, 2) if share is not None else '—'})")}
            for half in columns:
                row[half.capitalize()] = fmt_effect(screened, p=False) if half == h else Text("—")
            out.append(row)
            for kind in (k for k in ("denoising", "noising", "ablation") if k in m.experiments):
                row = {**base, "Measure": Text(f"{kind} ΔM"), **({h.capitalize(): Text("—")} if h not in halves else {})}
                for half in halves:
                    eff = _summary_effect(r, model, e, kind, half, "emotion_score")
                    n = r.s(model, e, kind, half, "emotion_score", "n")
                    row[half.capitalize()] = Text(f"{fmt_effect(eff, p=False)} (n = {n})")
                out.append(row)
    return pd.DataFrame(out)
