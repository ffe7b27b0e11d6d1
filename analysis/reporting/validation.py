"""The validate stage's document (results/<profile>/validation.json) as flat numbers for the
summary, and as the report's tables (structure × metric verdicts, the criteria)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.reporting.format import fmt_num, Text

METRICS = ("delta_attn", "attribution", "exact")
LABELS = {"delta_attn": "Δattn (the seed's)", "attribution": "attribution", "exact": "exact patching"}


def criteria(doc: dict[str, Any]) -> list[tuple[str, float | None, str, bool]]:
    """Issue 16's criteria: (what, measured, threshold, met) per row; `what` starts with the
    summary key's name (up to the colon)."""
    s, n, a = doc["signatures"], doc["nulls"], doc["attribution_vs_exact"]
    rows: list[tuple[str, float | None, str, bool]] = [("exact: AUROC over the causal heads", doc["metrics"]["exact"]["auroc"], ">= 0.95",
                                                         (doc["metrics"]["exact"]["auroc"] or 0) >= 0.95)]
    if "decoy" in s:
        rows.append(("exact: the attention decoy's q", s["decoy"]["exact_q"], ">= 0.05", s["decoy"]["exact_q"] >= 0.05))
    if "distributed" in s:
        c = s["distributed"]["cumulative_denoise"][-1]
        rows.append(("exact: the three distributed heads jointly, share of the gap", c, ">= 0.9", c >= 0.9))
    if "backup" in s:
        b = s["backup"]
        ratio = abs(b["zero_A"]) / b["zero_AB"]
        rows += [
            ("backup: |zero A| / zero A+B", ratio, "<= 0.5", ratio <= 0.5),
            ("backup: noising A+B, share of the gap", b["noise_AB"], ">= 0.8", b["noise_AB"] >= 0.8),
            ("backup: denoising A, share of the gap", b["denoise_A"], ">= 0.8", b["denoise_A"] >= 0.8),
        ]
    if "cancellation" in s:
        c = s["cancellation"]
        rel = abs(c["joint"]) / min(c["plus"], -c["minus"]) if c["plus"] > 0 > c["minus"] else None
        rows.append(("cancellation: |joint patch| / c (opposite signs, both q < 0.05)", rel, "~ 0 (<= 0.05)",
                     rel is not None and rel <= 0.05 and max(c["plus_q"], c["minus_q"]) < 0.05))
    if "copy" in s:
        rows.append(("copy head: copy-free share (flagged)", s["copy"]["copy_share"], "< 0.5", bool(s["copy"]["copy_flag"])))
    rows.append(("copy control: true emotion heads flagged", float(doc["n_causal_copy_flagged"]), "0", doc["n_causal_copy_flagged"] == 0))
    rows.append(("attribution: Spearman with exact above the noise floor", a["spearman"], ">= 0.8", (a["spearman"] or 0) >= 0.8))
    if "saturation" in s:
        rows.append(("attribution: the saturation trap's attribution / exact (flagged)", s["saturation"]["trap_ratio"],
                     f"< {a['ratio_flag']}", s["saturation"]["trap_ratio"] < a["ratio_flag"]))
    if n["n_nulls"]:
        rows.append((f"null models ({n['n_nulls']}): share with any discovery (one-sided binomial test against 0.05)",
                     n["share_with_discovery"], "p >= 0.05", null_criterion_met(n)))
    return rows


def null_criterion_p(nulls: dict[str, Any]) -> float:
    """One-sided exact binomial p of "the share of null screenings with any discovery exceeds
    alpha" (issue 24's criterion, fixed in the issue before this measurement: the share may exceed
    0.05 only by as much as its binomial interval allows). Under a global null a screening's
    FDP is 1 or 0, so the mean FDP is this same share and is not a second criterion."""
    from scipy.stats import binomtest

    k = sum(1 for p in nulls["per_null"] if p["n_discoveries"] > 0)
    return float(binomtest(k, nulls["n_nulls"], p=nulls["alpha"], alternative="greater").pvalue)


def null_criterion_met(nulls: dict[str, Any]) -> bool:
    return null_criterion_p(nulls) >= 0.05


def validation_summary(doc: dict[str, Any]) -> dict[str, float]:
    """Flat `validation.*` keys for results/summary.json."""
    out: dict[str, float] = {}
    for metric in METRICS:
        for k in ("auroc", "precision_at_k"):
            out[f"validation.{metric}.{k}"] = doc["metrics"][metric][k]
    out["validation.attribution_vs_exact.spearman"] = doc["attribution_vs_exact"]["spearman"]
    out["validation.attribution_vs_exact.n_flagged"] = len(doc["attribution_vs_exact"]["flagged"])
    for name, rec in doc["signatures"].items():
        for metric, rank in rec.get("rank", {}).items():
            out[f"validation.{name}.rank.{metric}"] = rank
    for name, row in doc["verdicts"].items():
        for metric, verdict in row.items():
            out[f"validation.{name}.{metric}.found"] = int(verdict == "found")
    if doc["nulls"]["n_nulls"]:
        out["validation.nulls.mean_fdp"] = doc["nulls"]["mean_fdp"]
        out["validation.nulls.share_with_discovery"] = doc["nulls"]["share_with_discovery"]
    met = [m for *_, m in criteria(doc)]
    out["validation.criteria.n"], out["validation.criteria.met"] = len(met), sum(met)
    return out


# --- the report's section -------------------------------------------------------------------------

VERDICT_MARKS = {"found": "found", "missed": "**missed**", "misleading": "**misleading**"}


def load_validation(root: Path, profile: str) -> dict[str, Any] | None:
    """results/<profile>/validation.json, or None where the validate stage has not run."""
    from analysis.contract import read_validation, validation_file

    path = Path(root) / validation_file(profile)
    return read_validation(path) if path.is_file() else None


def verdict_frame(doc: dict[str, Any]) -> pd.DataFrame:
    """Structure × metric -> found / missed / misleading, with where each structure sits."""
    planted = doc["structures"]
    rows = []
    for name, verdicts in doc["verdicts"].items():
        rec = planted[name]
        heads = ", ".join(f"{role} {layer}:{head}" for role, (layer, head) in rec["heads"].items())
        rows.append({"structure": name.replace("_", "-"), "emotion": rec["emotion"], "heads": heads,
                     **{LABELS[m]: VERDICT_MARKS[verdicts[m]] for m in METRICS}})
    return pd.DataFrame(rows)


def criteria_frame(doc: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"criterion": what, "measured": fmt_num(value), "needs": need, "met": "yes" if met else "**no**"}
         for what, value, need, met in criteria(doc)]
    )


def validation_figure(doc: dict[str, Any]):  # noqa: ANN201 - a matplotlib Figure
    """Left: attribution against exact for every head × emotion above the noise floor, the
    saturation trap and the copy head marked. Right: the backup head's curve (A's output scaled)."""
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    rows = doc["scores"]
    above = {(r["emotion"], r["layer"], r["head"]) for r in doc["attribution_vs_exact"]["rows"]}
    grey = [r for r in rows if (r["emotion"], r["layer"], r["head"]) not in above]
    ax.scatter([r["exact"] for r in grey], [r["attribution"] for r in grey], s=10, c="0.75", label="below the noise floor")
    shown = [r for r in rows if (r["emotion"], r["layer"], r["head"]) in above]
    ax.scatter([r["exact"] for r in shown], [r["attribution"] for r in shown], s=14, c="tab:blue", label="above the noise floor (q < 0.05)")
    lim = max(abs(r[k]) for r in rows for k in ("exact", "attribution")) * 1.1
    ax.plot([-lim, lim], [-lim, lim], c="0.5", lw=0.8, ls="--", label="attribution = exact")
    for name, role, colour in (("saturation", "trap", "tab:red"), ("copy", "copy", "tab:orange"), ("saturation", "competitor", "tab:green")):
        if name in doc["structures"]:
            rec = doc["structures"][name]
            layer, head = rec["heads"][role]
            r = next(r for r in rows if r["emotion"] == rec["emotion"] and (r["layer"], r["head"]) == (layer, head))
            ax.scatter([r["exact"]], [r["attribution"]], s=60, facecolors="none", edgecolors=colour, lw=1.5,
                       label=f"{name if name == role else f'{name} {role}'} {layer}:{head}")
    ax.set_xlabel("exact patching ΔM (nats)")
    ax.set_ylabel("attribution (nats)")
    ax.set_title("Attribution against exact, every head × emotion")
    ax.legend(fontsize=7, loc="upper left")
    if "backup" in doc["signatures"]:
        c = doc["signatures"]["backup"]["curve"]
        a, b = doc["structures"]["backup"]["heads"]["A"], doc["structures"]["backup"]["heads"]["B"]
        bx.plot(c["scale_A"], c["effect_B_free"], marker="o", label=f"B {b[0]}:{b[1]} free")
        bx.plot(c["scale_A"], c["effect_B_zeroed"], marker="s", label=f"B {b[0]}:{b[1]} zeroed")
        bx.set_xlabel(f"A {a[0]}:{a[1]}: its output scaled by")
        bx.set_ylabel("drop of M in the emotion run (nats)")
        bx.invert_xaxis()
        tx = bx.twinx()
        tx.plot(c["scale_A"], c["attention_B_to_span"], c="0.4", ls=":", label="B's attention to the span")
        tx.set_ylabel("B's last-position attention to the span")
        tx.set_ylim(0, 1)
        bx.legend(fontsize=7, loc="upper left")
        tx.legend(fontsize=7, loc="center left")
        bx.set_title("Backup: B takes over as A is scaled away")
    fig.tight_layout()
    return fig


class Facts(dict):
    """The section's facts; without a validation.json every fact reads as that."""

    def __missing__(self, key: str) -> Text:
        return Text("(no validation.json)")


def validation_facts(doc: dict[str, Any] | None) -> Facts:
    """Every number the section's prose cites, formatted (texts that display without quotes)."""
    if doc is None:
        return Facts()
    s, m, n = doc["signatures"], doc["metrics"], doc["nulls"]
    out = {f"{k}_{metric}": fmt_num(m[metric][k]) for metric in METRICS for k in ("auroc", "precision_at_k")}
    out["k"] = str(m["exact"]["k"])
    out["n_rows"] = str(len(doc["scores"]))
    out["n_heads"] = str(len({(r["layer"], r["head"]) for r in doc["scores"]}))
    causal = [abs(r["exact"]) for r in doc["scores"] if [r["layer"], r["head"]] in doc["structures_by_emotion"][r["emotion"]]]
    out["causal_range"] = f"{fmt_num(min(causal))}–{fmt_num(max(causal))}"
    out["spearman"] = fmt_num(doc["attribution_vs_exact"]["spearman"])
    out["n_above"] = str(doc["attribution_vs_exact"]["n_above_floor"])
    out["n_pairs"] = str(sum(doc["n_pairs"].values()))
    if "decoy" in s:
        d = s["decoy"]
        layer, head = doc["structures"]["decoy"]["heads"]["decoy"]
        out.update(decoy_head=f"{layer}:{head}", decoy_dattn=fmt_num(d["delta_attn"]), decoy_rank=str(d["rank"]["delta_attn"]),
                   decoy_exact=fmt_num(d["exact"]), decoy_q=fmt_num(d["exact_q"]), decoy_exact_rank=str(d["rank"]["exact"]))
    if "value_only" in s:
        out.update(value_rank=str(s["value_only"]["rank"]["delta_attn"]), value_exact=fmt_num(s["value_only"]["exact"]))
    if "saturation" in s:
        t = s["saturation"]
        out.update(trap_ratio=fmt_num(t["trap_ratio"]), trap_exact=fmt_num(t["trap"]["exact"]), trap_attr=fmt_num(t["trap"]["attribution"]),
                   comp_exact=fmt_num(t["competitor"]["exact"]), comp_attr=fmt_num(t["competitor"]["attribution"]))
    if "backup" in s:
        b = s["backup"]
        out.update(zero_a=fmt_num(b["zero_A"]), zero_ab=fmt_num(b["zero_AB"]), noise_ab=fmt_num(b["noise_AB"]), denoise_a=fmt_num(b["denoise_A"]),
                   noise_a=fmt_num(b["noise_A"]))
    if n["n_nulls"]:
        lo, hi = n["share_with_discovery_ci"]
        out.update(n_nulls=str(n["n_nulls"]), n_null_disc=str(sum(p["n_discoveries"] > 0 for p in n["per_null"])),
                   null_share=fmt_num(n["share_with_discovery"]), null_lo=fmt_num(lo), null_hi=fmt_num(hi),
                   null_planted=fmt_num(n["planted_exact_mean"]),
                   null_discoveries="; ".join(f"null {p['null']}: {d['emotion']} {d['layer']}:{d['head']} ({fmt_num(d['exact'])} nats)"
                                              for p in n["per_null"] for d in p["discoveries"]) or "none",
                   null_verdict=(f"The criterion (the share exceeds 0.05 by no more than a one-sided binomial test at 0.05 allows) is "
                                 f"{'met' if null_criterion_met(n) else 'not met'} (p = {null_criterion_p(n):.3g})."))
    return Facts({k: Text(v) for k, v in out.items()})
