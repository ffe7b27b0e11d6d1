"""The report's primary endpoint, its abstract, the test families, and the columns other branches of
issue 23 fill (specificity, the split ΔM, the matched-twins table): one place each.

Everything here reads results/summary.json (the `primary.*` and `families.*` keys written by
analysis.reporting.summary.endpoints) or the screening documents; nothing is computed anew.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from analysis.reporting.format import fmt_gap, fmt_num, fmt_p, fmt_sites, join_words, Text
from analysis.reporting.results import Results

# --- columns filled by the other branches of issue 23 -------------------------------------------

# The specificity control (issue 23 item 2) writes `specific` on every screening row: its emotion →
# neutral effect beats the neutral′ → neutral control by more than specificity.min_share of the gap.
SPECIFIC_FIELD = "specific"
# ΔM split into its two terms (issue 23 item 2): the change of logsumexp over the emotion lexicon and
# over the neutral lexicon (ΔM = Δ LSE emotion − Δ LSE neutral), as the screening rows name them
# (analysis.screening.common.specificity_fields).
SPLIT_FIELDS = ("exact_lse_emotion", "exact_lse_neutral")


def specific_text(row: Mapping[str, Any] | None) -> Text:
    """yes / no where the screening row has the specificity verdict, else "not measured"."""
    if row is None or row.get(SPECIFIC_FIELD) is None:
        return Text("not measured")
    return Text("yes" if row[SPECIFIC_FIELD] else "no")


def split_delta_m(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """(Δ LSE emotion lexicon, Δ LSE neutral lexicon) of a screening row, where it has them."""
    vals = [row.get(f) for f in SPLIT_FIELDS]
    return None if any(v is None for v in vals) else (float(vals[0]), float(vals[1]))


def matched_twins_table(r: Results) -> pd.DataFrame | None:
    """Per word class and emotion, the share of emotion spans and of their twins with a word of the
    class (analysis.core.twins; issue 23 item 1: within 0.10), from the profile's prompt files under
    the results' root (None where that tree has none: a results folder copied alone)."""
    from analysis.core.prompts import load_pairs, PROMPTS_ROOT
    from analysis.core.twins import class_gaps, CLASS_NAMES

    root = r.root / PROMPTS_ROOT
    if not (root / r.profile).is_dir():
        return None
    gaps = {}
    for e in r.emotions:
        pairs = load_pairs(e, r.profile, root=root)
        gaps[e] = class_gaps(e, [p.span_text for p in pairs.emotion_prompts], [p.span_text for p in pairs.neutral_prompts])
    rows = []
    for i, name in enumerate(CLASS_NAMES):
        row: dict[str, Any] = {"Word class": name}
        for e in r.emotions:
            g = gaps[e][i]
            row[f"{e}: spans"], row[f"{e}: twins"] = fmt_num(g.emotion_share, 2), fmt_num(g.twin_share, 2)
        rows.append(row)
    return pd.DataFrame(rows)


# --- the primary endpoint -------------------------------------------------------------------------


def _screening_row(r: Results, model: str, emotion: str, layer: int, head: int) -> Mapping[str, Any] | None:
    for s in r.models[model].screening["scores"]:
        if s["emotion"] == emotion and s["layer"] == layer and s["head"] == head:
            return s
    return None


def primary_cells(r: Results) -> list[dict[str, Any]]:
    """One dict per model × emotion measured: its summary keys under `<model>.<emotion>.primary.<half>`."""
    pr = r.params.primary
    out = []
    for model in r.models:
        for e in r.emotions:
            k = f"{model}.{e}.primary.{pr.half}"
            if f"{k}.p_holm" not in r.summary:
                continue
            out.append({
                "model": model, "emotion": e,
                "gap": {f: r.summary[f"{k}.{pr.metric}.{f}"] for f in ("ratio", "ci_low", "ci_high")},
                "n": r.summary[f"{k}.n_prompts"], "p": r.summary[f"{k}.p"], "p_holm": r.summary[f"{k}.p_holm"],
                "rejected": bool(r.summary[f"{k}.rejected"]),
            })
    return out


def primary_table(r: Results) -> pd.DataFrame:
    """Model × emotion: the heads (chosen on the selection half), whether they are specific, the
    fraction of the gap restored on the confirmation half [95 % CI], n, p, Holm's p and the verdict."""
    pr = r.params.primary
    rows = []
    for c in primary_cells(r):
        doc = r.models[c["model"]].experiment(pr.experiment, c["emotion"])
        heads = doc.get("heads") or []
        specific = [specific_text(_screening_row(r, c["model"], c["emotion"], h[0], h[1])) for h in heads]
        rows.append({
            "Model": c["model"], "Emotion": c["emotion"], "Heads": fmt_sites(doc),
            "Specific": Text(", ".join(specific) if specific else "—"),
            f"Fraction of gap ({pr.half}) [95 % CI]": fmt_gap(c["gap"]),
            "n": c["n"], "p": fmt_p(c["p"]), "p (Holm)": fmt_p(c["p_holm"]),
            f"Holm p < {pr.alpha:g}": Text("yes" if c["rejected"] else "no"),
        })
    return pd.DataFrame(rows)


def families_markdown(r: Results) -> str:
    """The test families of the run as a Markdown list, from the summary's `families.*` statements:
    the primary family, the secondary families of the experiments (one per experiment × metric, each
    named with its size) and the screenings'."""
    fams = {k: v for k, v in r.summary.items() if k.startswith("families.") and isinstance(v, str)}
    lines = [f"- **{fams['families.primary']}**"] if "families.primary" in fams else []
    secondary = sorted(k.removeprefix("families.secondary.") for k in fams if k.startswith("families.secondary."))
    if secondary:
        sizes = sorted({fams[f"families.secondary.{k}"].rsplit("(m = ", 1)[-1].rstrip(")") for k in secondary})
        by_exp: dict[str, list[str]] = {}
        for k in secondary:
            exp, metric = k.split(".", 1)
            by_exp.setdefault(exp, []).append(metric)
        listed = "; ".join(f"{exp}: {', '.join(ms)}" for exp, ms in by_exp.items())
        lines.append(f"- secondary, one Benjamini–Hochberg family per experiment × metric on the confirmation half, "
                     f"each across emotions × models (m = {', '.join(sizes)}): {listed}")
    if "families.screening" in fams:
        lines.append(f"- {fams['families.screening']}")
    return "\n".join(lines) + "\n"


def bench_verdict(r: Results) -> str | None:
    """The benchmark's verdict in one sentence, from the summary's `bench.validation.*` keys (None: not run)."""
    met, n = r.summary.get("bench.validation.criteria.met"), r.summary.get("bench.validation.criteria.n")
    if met is None or n is None:
        return None
    share, k = r.summary.get("bench.validation.nulls.share_with_discovery"), r.summary.get("bench.validation.nulls.n")
    nulls = (f"; in {fmt_num(k)} null screenings (neutral-vs-neutral pairs on models without emotion heads) it claimed an "
             f"emotion head in a share {fmt_num(share, 2)} of them" if share is not None and k is not None else "")
    word = "meets every one" if met == n else f"meets {met}"
    return (f"Benchmark verdict: on the benchmark model with known answers (bench), whose planted structures are built to "
            f"mislead the screening scores, the pipeline {word} of its {n} criteria (@tbl-bench-criteria){nulls}.")


def abstract_text(r: Results) -> Text:
    """The abstract's findings: the primary endpoint per model and emotion, and the benchmark's verdict."""
    pr = r.params.primary
    cells = primary_cells(r)
    if not cells:
        lead = ("No primary endpoint was measured: the run has no held-out confirmation half (split.enabled is false), "
                "so every number below is exploratory.")
    else:
        ratios = [c["gap"]["ratio"] for c in cells if c["gap"]["ratio"] is not None]
        rejected = sum(c["rejected"] for c in cells)
        span = fmt_num(min(ratios), 2) if min(ratios) == max(ratios) else Text(f"{fmt_num(min(ratios), 2)}–{fmt_num(max(ratios), 2)}")
        models = join_words([*dict.fromkeys(c["model"] for c in cells)])
        lead = (
            f"Primary endpoint (declared in params.yaml): {pr.experiment} of the heads chosen on the selection half "
            f"restores a fraction {span} of the emotion–neutral gap of M on the held-out {pr.half} half, per model and "
            f"emotion in @tbl-primary; {rejected} of {len(cells)} model × emotion tests reject a zero effect after Holm's "
            f"correction across {models} × {join_words(r.emotions)} (α = {pr.alpha:g})."
        )
    verdict = bench_verdict(r)
    bench = f" {verdict}" if verdict else " The benchmark with known answers is not in this run (no validation.json)."
    return Text(lead + bench)


def count_secondary(r: Results) -> Text:
    """How many secondary families the run's summary states (experiments × metrics, and the screenings')."""
    n = sum(1 for k in r.summary if k.startswith("families.secondary."))
    return Text(str(n + (1 if "families.screening" in r.summary else 0)))
