"""The validate stage's document (results/<profile>/validation.json) as flat numbers for the
summary, and as the report's tables (structure × metric verdicts, the criteria)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.reporting.format import fmt_effect, fmt_num, Text

METRICS = ("delta_attn", "attribution", "exact")
LABELS = {"delta_attn": "Δattn (the seed's)", "attribution": "attribution", "exact": "exact patching"}


# --- the criteria: every threshold in one table, fixed before the measurement it judges ---------
# Changed only with the reason in the commit message (issue 24 item 6). Issue 16 set the aggregate
# ones, issue 24 the null criterion and the per-structure rows.
THRESHOLDS: dict[str, float] = {
    "exact_auroc": 0.95,  # exact patching's AUROC over the causal head × emotion rows, at least
    "unit_auroc": 0.95,  # exact patching's AUROC over the causal unit × emotion rows, at least (issue 24 item 5) ...
    "unit_precision_at_k": 0.95,  # ... and its precision@k (k = the causal rows): every causal unit in the top k
    "q_level": 0.05,  # "above the noise floor": BH q below this (the screening's Q_LEVEL)
    "distributed_joint": 0.9,  # the three distributed heads patched jointly: share of the gap, at least
    "backup_zero_ratio": 0.5,  # |zeroing A alone| / zeroing A and B, at most
    "backup_noise_ab": 0.8,  # noising A+B: share of the gap, at least
    "backup_denoise_a": 0.8,  # denoising A: share of the gap, at least
    "cancellation_joint": 0.05,  # |joint patch| / the smaller |effect| of the pair, at most
    "copy_share": 0.5,  # the copy head's copy-free share, below (the copy control flags it)
    "spearman": 0.8,  # attribution vs exact above the noise floor, at least
    "null_rate": 0.05,  # the share of null screenings with an emotion-head claim, tested against this ...
    "null_p": 0.05,  # ... by a one-sided exact binomial test whose p must be at least this
}

# What the exact screening must say of each planted structure's heads (issue 24 item 3): a causal
# role is found (rank within its emotion's k causal heads by |exact|, q < q_level, not copy-flagged)
# with this sign of ΔM; a non-causal role ("passed over") must not be found; "flagged": the copy
# control must flag it. Roles not named here are causal with sign +1. The signs follow from the
# construction (analysis/embedded/benchmark.py): the cancelling pair writes +c and -c; the
# LayerNorm head's only lever is the final LayerNorm's scale, which it raises in the emotion run,
# shrinking every output dim towards 0 and with them the emotion logits' lead over the neutral ones.
# "specific": found with sign + and passing the neutral control (`specific`); "not specific": found
# with sign + and not passing it. "stem rule": not found, and the copy-free M (which leaves out every
# spelling sharing a stem with a prompt word) keeps less than copy_share of its effect: the variant-copy
# head raises only other spellings of the span's words. (It cannot be flagged: 5 of the 17 held-out
# apology expressions hold a word with a single-token variant, and no 95 % cluster test rejects on 5
# non-zero clusters; on gratitude, 8 of 17, its effect would join the gap the distributed criterion
# divides by.) The confound head reads a class each twin carries as its span does: passed over.
STRUCTURE_EXPECT: dict[str, dict[str, str | int]] = {
    "cancellation": {"plus": +1, "minus": -1},
    "layernorm": {"ln": -1},
    "decoy": {"decoy": "passed over"},
    "copy": {"copy": "flagged"},
    "variant_copy": {"variant": "stem rule"},
    "confound": {"confound": "passed over"},
    "unequal": {"unequal": "specific"},
    "specificity": {"specific": "specific", "nonspecific": "not specific", "reference": "not specific"},
}


def _rank(doc: dict[str, Any], emotion: str, head: list[int]) -> int:
    """1-based rank of `head` among `emotion`'s rows by |exact| under the contract's one ranking, a
    copy-flagged row scoring 0 as the pipeline's rankings skip it (analysis.bench.scoring.rank_of)."""
    from analysis.base.contract import rank

    rows = rank([r for r in doc["scores"] if r["emotion"] == emotion], lambda r: 0.0 if r["copy_flag"] else r["exact"])
    return 1 + [[r["layer"], r["head"]] for r in rows].index(list(head))


def structure_verdict(doc: dict[str, Any], name: str) -> tuple[str, bool]:
    """(what was seen, met) for one structure's exact screening against STRUCTURE_EXPECT."""
    rec, q_level = doc["structures"][name], THRESHOLDS["q_level"]
    k = len(doc["structures_by_emotion"][rec["emotion"]])
    seen, ok = [], []
    for role, head in rec["heads"].items():
        row = next(r for r in doc["scores"] if r["emotion"] == rec["emotion"] and [r["layer"], r["head"]] == list(head))
        rank, q = _rank(doc, rec["emotion"], head), row["exact_q"]
        found = rank <= k and q is not None and q < q_level and not row["copy_flag"]
        expect = STRUCTURE_EXPECT.get(name, {}).get(role, +1 if role in rec["causal"] else "passed over")
        specific = ", specific" if row.get("specific") else ", not specific" if expect in ("specific", "not specific") else ""
        share = f", copy-free share {fmt_num(row.get('copy_share'))}" if expect == "stem rule" else ""
        seen.append(f"{role} rank {rank}, q {fmt_num(q)}, {row['exact']:+.3g}{', flagged' if row['copy_flag'] else ''}{specific}{share}")
        if expect == "passed over":
            ok.append(not found)
        elif expect == "flagged":
            ok.append(bool(row["copy_flag"]))
        elif expect == "stem rule":
            ok.append(not found and row.get("copy_share") is not None and row["copy_share"] < THRESHOLDS["copy_share"])
        elif expect in ("specific", "not specific"):
            ok.append(found and row["exact"] > 0 and bool(row.get("specific")) == (expect == "specific"))
        else:
            ok.append(found and (row["exact"] > 0) == (expect > 0))
    return "; ".join(seen), all(ok)


def _expectation(doc: dict[str, Any], name: str) -> str:
    rec = doc["structures"][name]
    k = len(doc["structures_by_emotion"][rec["emotion"]])
    parts = []
    for role in rec["heads"]:
        expect = STRUCTURE_EXPECT.get(name, {}).get(role, +1 if role in rec["causal"] else "passed over")
        found = f"rank <= {k}, q < {THRESHOLDS['q_level']:g}"
        if expect == "stem rule":
            parts.append(f"{role} not found, copy-free share < {THRESHOLDS['copy_share']:g}")
        elif expect in ("specific", "not specific"):
            parts.append(f"{role} {found}, sign +, {expect}")
        else:
            parts.append(f"{role} {expect}" if isinstance(expect, str) else f"{role} {found}, sign {'+' if expect > 0 else '-'}")
    return "; ".join(parts)


def criteria(doc: dict[str, Any]) -> list[tuple[str, float | str | None, str, bool]]:
    """The criteria: (what, measured, threshold, met) per row, thresholds from THRESHOLDS;
    `what` starts with the subject's name (up to the colon). Aggregates first, then one row per
    planted structure with heads (STRUCTURE_EXPECT), then the null screenings."""
    t = THRESHOLDS
    s, n, a = doc["signatures"], doc["nulls"], doc["attribution_vs_exact"]
    auroc = doc["metrics"]["exact"]["auroc"]
    rows: list[tuple[str, float | str | None, str, bool]] = [
        ("exact: AUROC over the causal heads", auroc, f">= {t['exact_auroc']:g}", (auroc or 0) >= t["exact_auroc"])]
    # the sweep's runs (and documents written before issue 24 item 5) have no unit screening
    if doc.get("unit_metrics"):
        u = doc["unit_metrics"]["exact"]
        rows += [
            ("exact: AUROC over the causal MLP units", u["auroc"], f">= {t['unit_auroc']:g}", (u["auroc"] or 0) >= t["unit_auroc"]),
            (f"exact: precision@{u['k']} over the causal MLP units", u["precision_at_k"], f">= {t['unit_precision_at_k']:g}",
             (u["precision_at_k"] or 0) >= t["unit_precision_at_k"]),
        ]
    if "decoy" in s:
        rows.append(("exact: the attention decoy's q", s["decoy"]["exact_q"], f">= {t['q_level']:g}", s["decoy"]["exact_q"] >= t["q_level"]))
    if "distributed" in s:
        c = s["distributed"]["cumulative_denoise"][-1]
        rows.append(("exact: the three distributed heads jointly, share of the gap", c, f">= {t['distributed_joint']:g}",
                     c >= t["distributed_joint"]))
    if "backup" in s:
        b = s["backup"]
        ratio = abs(b["zero_A"]) / b["zero_AB"]
        rows += [
            ("backup: |zero A| / zero A+B", ratio, f"<= {t['backup_zero_ratio']:g}", ratio <= t["backup_zero_ratio"]),
            ("backup: noising A+B, share of the gap", b["noise_AB"], f">= {t['backup_noise_ab']:g}", b["noise_AB"] >= t["backup_noise_ab"]),
            ("backup: denoising A, share of the gap", b["denoise_A"], f">= {t['backup_denoise_a']:g}", b["denoise_A"] >= t["backup_denoise_a"]),
        ]
    if "cancellation" in s:
        c = s["cancellation"]
        rel = abs(c["joint"]) / min(c["plus"], -c["minus"]) if c["plus"] > 0 > c["minus"] else None
        rows.append((f"cancellation: |joint patch| / c (opposite signs, both q < {t['q_level']:g})", rel,
                     f"~ 0 (<= {t['cancellation_joint']:g})",
                     rel is not None and rel <= t["cancellation_joint"] and max(c["plus_q"], c["minus_q"]) < t["q_level"]))
    if "copy" in s:
        rows.append(("copy head: copy-free share (flagged)", s["copy"]["copy_share"], f"< {t['copy_share']:g}", bool(s["copy"]["copy_flag"])))
    rows.append(("copy control: true emotion heads flagged", float(doc["n_causal_copy_flagged"]), "0", doc["n_causal_copy_flagged"] == 0))
    rows.append(("attribution: Spearman with exact above the noise floor", a["spearman"], f">= {t['spearman']:g}", (a["spearman"] or 0) >= t["spearman"]))
    if "saturation" in s:
        rows.append(("attribution: the saturation trap's attribution / exact (flagged)", s["saturation"]["trap_ratio"],
                     f"< {a['ratio_flag']}", s["saturation"]["trap_ratio"] < a["ratio_flag"]))
    for name in sorted(doc["structures"]):
        if doc["structures"][name]["heads"]:
            seen, met = structure_verdict(doc, name)
            rows.append((f"structure {name}: the exact screening", seen, _expectation(doc, name), met))
    if n["n_nulls"]:
        rows.append((f"null screenings ({n['n_nulls']}): share with an emotion-head claim (one-sided exact binomial test "
                     f"against {t['null_rate']:g})", n["share_with_discovery"], f"p >= {t['null_p']:g}", null_criterion_met(n)))
    return rows


def null_criterion_p(nulls: dict[str, Any]) -> float:
    """One-sided exact binomial p of "the share of null screenings with an emotion-head claim
    exceeds THRESHOLDS null_rate" (issue 24's criterion, fixed in the issue before this
    measurement: the share may exceed 0.05 only by as much as its binomial interval allows). Under
    a complete null a screening's FDP is 1 or 0, so the mean FDP is this same share and is not a
    second criterion."""
    from scipy.stats import binomtest

    k = sum(1 for p in nulls["per_null"] if p["n_discoveries"] > 0)
    return float(binomtest(k, nulls["n_nulls"], p=THRESHOLDS["null_rate"], alternative="greater").pvalue)


def null_criterion_met(nulls: dict[str, Any]) -> bool:
    return null_criterion_p(nulls) >= THRESHOLDS["null_p"]


def validation_summary(doc: dict[str, Any]) -> dict[str, float]:
    """Flat `validation.*` keys for results/summary.json."""
    out: dict[str, float] = {}
    for metric in METRICS:
        for k in ("auroc", "precision_at_k"):
            out[f"validation.{metric}.{k}"] = doc["metrics"][metric][k]
    for metric, rec in (doc.get("unit_metrics") or {}).items():
        if isinstance(rec, dict) and "auroc" in rec:
            out[f"validation.units.{metric}.auroc"], out[f"validation.units.{metric}.precision_at_k"] = rec["auroc"], rec["precision_at_k"]
    out["validation.attribution_vs_exact.spearman"] = doc["attribution_vs_exact"]["spearman"]
    out["validation.attribution_vs_exact.n_flagged"] = len(doc["attribution_vs_exact"]["flagged"])
    for name, rec in doc["signatures"].items():
        for metric, rank in rec.get("rank", {}).items():
            out[f"validation.{name}.rank.{metric}"] = rank
    for name, row in doc["verdicts"].items():
        for metric, verdict in row.items():
            out[f"validation.{name}.{metric}.found"] = int(verdict == "found")
    if doc["nulls"]["n_nulls"]:
        out["validation.nulls.n"] = doc["nulls"]["n_nulls"]
        out["validation.nulls.share_with_discovery"] = doc["nulls"]["share_with_discovery"]
        for source, rec in doc["nulls"]["by_source"].items():
            out[f"validation.nulls.{source}.share_with_discovery"] = rec["share"]
            out[f"validation.nulls.{source}.share_significant"] = rec["share_significant"]  # secondary
    for name, rec in doc.get("generation", {}).get("structures", {}).items():  # secondary
        out[f"validation.generation.{name}.keyword.mean"] = rec["keyword"]["effect"]["mean"]
        out[f"validation.generation.{name}.keyword.has_sign"] = int(rec["keyword"]["has_expected_sign"])
        out[f"validation.generation.{name}.changed_vs_random.mean"] = rec["changed"]["vs_random"]["mean"]
        out[f"validation.generation.{name}.changed_vs_random.has_sign"] = int(rec["changed"]["has_expected_sign"])
    met = [m for *_, m in criteria(doc)]
    out["validation.criteria.n"], out["validation.criteria.met"] = len(met), sum(met)
    return out


def _strength(x: float) -> str:
    return f"x{x:g}"


def sweep_summary(doc: dict[str, Any]) -> dict[str, float]:
    """Flat `sweep.x<strength>.*` keys: per background strength each score's AUROC and precision@k,
    and the criteria met (of those that need no null screenings)."""
    out: dict[str, float] = {}
    for run in doc["runs"]:
        v, key = run["validation"], f"sweep.{_strength(run['background'])}"
        for metric in METRICS:
            for k in ("auroc", "precision_at_k"):
                out[f"{key}.{metric}.{k}"] = v["metrics"][metric][k]
        met = [m for *_, m in criteria(v)]
        out[f"{key}.criteria.n"], out[f"{key}.criteria.met"] = len(met), sum(met)
    return out


def sweep_frame(doc: dict[str, Any]) -> pd.DataFrame:
    """One row per strength: each score's AUROC / precision@k, and the criteria not met."""
    rows = []
    for run in doc["runs"]:
        v = run["validation"]
        crit = criteria(v)
        rows.append({"background": _strength(run["background"]),
                     **{f"{LABELS[m]} AUROC / P@k": f"{fmt_num(v['metrics'][m]['auroc'], 2)} / {fmt_num(v['metrics'][m]['precision_at_k'], 2)}"
                        for m in METRICS},
                     "criteria met": f"{sum(met for *_, met in crit)} of {len(crit)}",
                     "not met": _not_met(crit)})
    return pd.DataFrame(rows)


def _not_met(crit: list[tuple[str, Any, str, bool]]) -> str:
    """The criteria not met, short: each aggregate's subject (with a count where several of one
    subject fail), then the structures whose row fails."""
    failed = [what.split(":")[0] for what, _, _, met in crit if not met]
    structures = [w.removeprefix("structure ").replace("_", "-") for w in failed if w.startswith("structure ")]
    subjects = [w for w in failed if not w.startswith("structure ")]
    parts = [f"{w} ×{subjects.count(w)}" if subjects.count(w) > 1 else w for w in dict.fromkeys(subjects)]
    if structures:
        parts.append("structures: " + ", ".join(structures))
    return "; ".join(parts) or "none"


def sweep_breaks(doc: dict[str, Any]) -> dict[str, str]:
    """Per planted structure with heads: the first strength at which the exact screening's row
    (STRUCTURE_EXPECT) is not met, or that it held at every strength swept."""
    out = {}
    first = doc["runs"][0]["validation"]
    for name in sorted(first["structures"]):
        if not first["structures"][name]["heads"]:
            continue
        broken = [run["background"] for run in doc["runs"] if not structure_verdict(run["validation"], name)[1]]
        out[name] = f"fails from {_strength(min(broken))}" if broken else f"holds up to {_strength(max(doc['strengths']))}"
    return out


def sweep_figure(doc: dict[str, Any]):  # noqa: ANN201 - a matplotlib Figure
    """AUROC and precision@k of each score against the background strength."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    xs = [run["background"] for run in doc["runs"]]
    for ax, k, title in zip(axes, ("auroc", "precision_at_k"), ("AUROC", "precision@k"), strict=True):
        for metric in METRICS:
            ax.plot(xs, [run["validation"]["metrics"][metric][k] for run in doc["runs"]], marker="o", label=LABELS[metric])
        ax.set_xscale("log")
        ax.set_xticks(xs, [_strength(x) for x in xs])
        ax.minorticks_off()
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("background writes × (difficulty)")
        ax.set_title(f"{title} over the causal head × emotion rows")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


# --- the report's section -------------------------------------------------------------------------

VERDICT_MARKS = {"found": "found", "missed": "**missed**", "misleading": "**misleading**"}


def load_validation(root: Path, profile: str) -> dict[str, Any] | None:
    """results/<profile>/validation.json, or None where the validate stage has not run."""
    from analysis.base.contract import read_validation, validation_file

    path = Path(root) / validation_file(profile)
    return read_validation(path) if path.is_file() else None


def load_sweep(root: Path, profile: str) -> dict[str, Any] | None:
    """results/<profile>/sweep.json, or None where the sweep stage has not run."""
    from analysis.base.contract import read_sweep, sweep_file

    path = Path(root) / sweep_file(profile)
    return read_sweep(path) if path.is_file() else None


def sweep_facts(doc: dict[str, Any] | None) -> Facts:
    """The sweep's numbers the prose cites: the strengths, where exact patching's AUROC falls
    below the criterion, and per structure the first strength at which its row fails."""
    if doc is None:
        return Facts()
    t = THRESHOLDS["exact_auroc"]
    low = [run["background"] for run in doc["runs"] if (run["validation"]["metrics"]["exact"]["auroc"] or 0) < t]
    breaks = sweep_breaks(doc)
    held = [n for n, b in breaks.items() if b.startswith("holds")]
    out = {
        "strengths": ", ".join(_strength(x) for x in doc["strengths"]),
        "auroc_break": (f"falls below {t:g} from {_strength(min(low))}" if low else f"stays at or above {t:g} up to "
                        f"{_strength(max(doc['strengths']))}"),
        "breaks": "; ".join(f"{n.replace('_', '-')} {b}" for n, b in breaks.items() if not b.startswith("holds")) or "none",
        "held": ", ".join(n.replace("_", "-") for n in held) or "none",
    }
    return Facts({k: Text(v) for k, v in out.items()})


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


def _signed(effect: dict[str, Any], sign: int, met: bool) -> str:
    return f"{fmt_effect(effect)} (planted {'+' if sign > 0 else '−'}: {'yes' if met else '**no**'})"


def generation_frame(doc: dict[str, Any]) -> pd.DataFrame:
    """The generation experiments on the benchmark (secondary): per structure its intervention, the
    clean continuations' keywords, the keyword effect and the changed share against the random-head
    arms, each beside the sign its construction implies, and ΔM (teacher-forced) for scale."""
    rows = []
    for name, rec in doc.get("generation", {}).get("structures", {}).items():
        kw, ch = rec["keyword"], rec["changed"]
        share = ch["share"]
        rows.append({
            "structure": name.replace("_", "-"), "intervention": f"{rec['intervention']['kind']} ({rec['intervention'].get('method') or rec['intervention'].get('position') or ''}) "
            f"of {', '.join(f'{r} {h[0]}:{h[1]}' for r, h in rec['heads'].items())} on the {rec['intervention']['target']}",
            "clean keywords / prompt": fmt_num(rec["clean_keywords_per_prompt"]),
            "keyword effect": f"{kw['metric']}: {_signed(kw['effect'], kw['expected_sign'], kw['has_expected_sign'])}",
            "changed, share of clusters": f"{fmt_num(share['share'])} [{fmt_num(share['ci_low'])}, {fmt_num(share['ci_high'])}]",
            "changed minus random heads": _signed(ch["vs_random"], ch["expected_sign"], ch["has_expected_sign"]),
            "ΔM": fmt_effect(rec["delta_m"], p=False),
        })
    return pd.DataFrame(rows)


def criteria_frame(doc: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"criterion": what, "measured": value if isinstance(value, str) else fmt_num(value), "needs": need,
          "met": "yes" if met else "**no**"}
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


def _planted_claims(doc: dict[str, Any]) -> str:
    """How many of the permuted benchmarks' claims are the benchmark's own causal heads of that
    emotion: the permutation can give a neutral expression an emotion word's embedding, and
    then the planted heads really react to it in that model."""
    causal = doc["structures_by_emotion"]
    claims = [(p["null"], d) for p in doc["nulls"]["per_null"] if p["source"] == "bench" for d in p["discoveries"]]
    planted = [(k, d) for k, d in claims if [d["layer"], d["head"]] in causal[d["emotion"]]]
    nulls = sorted({k for k, _ in planted})
    return (f"{len(planted)} of the {len(claims)} claims on permuted benchmarks are the benchmark's own causal heads of that "
            f"emotion (null{'s' if len(nulls) != 1 else ''} {', '.join(map(str, nulls))})" if planted
            else f"none of the {len(claims)} claims on permuted benchmarks is one of the benchmark's causal heads")


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
        src = n["by_source"]
        bench = src.get("bench", {"n": 0, "share_significant": None})
        out.update(n_nulls=str(n["n_nulls"]), n_null_disc=str(sum(p["n_discoveries"] > 0 for p in n["per_null"])),
                   null_share=fmt_num(n["share_with_discovery"]), null_lo=fmt_num(lo), null_hi=fmt_num(hi),
                   null_planted=fmt_num(n["planted_exact_mean"]), null_bench_n=str(bench["n"]),
                   null_random_n=str(sum(rec["n"] for s_, rec in src.items() if s_ != "bench")),
                   null_families=", ".join(s_ for s_ in src if s_ != "bench"),
                   null_bench_significant=fmt_num(bench["share_significant"]),
                   null_planted_claims=_planted_claims(doc),
                   null_discoveries="; ".join(f"{p['source']} null {p['null']}: {d['emotion']} {d['layer']}:{d['head']} "
                                              f"({fmt_num(d['exact'])} nats)" for p in n["per_null"] for d in p["discoveries"]) or "none",
                   null_verdict=(f"The criterion (the share exceeds {THRESHOLDS['null_rate']:g} by no more than a one-sided exact "
                                 f"binomial test at {THRESHOLDS['null_p']:g} allows) is "
                                 f"{'met' if null_criterion_met(n) else 'not met'} (p = {null_criterion_p(n):.3g})."))
    u = doc.get("unit_metrics")
    if u:
        out.update(unit_auroc=fmt_num(u["exact"]["auroc"]), unit_p_at_k=fmt_num(u["exact"]["precision_at_k"]), unit_k=str(u["exact"]["k"]),
                   unit_attr_auroc=fmt_num(u["attribution"]["auroc"]), unit_attr_p_at_k=fmt_num(u["attribution"]["precision_at_k"]),
                   unit_rows=str(u["n_rows"]))
    g = doc.get("generation", {}).get("structures", {})
    if g:
        def which(key: str) -> str:
            hit = [n.replace("_", "-") for n, rec in g.items() if rec[key]["has_expected_sign"]]
            return ", ".join(hit) if hit else "none of them"

        out.update(gen_structures=", ".join(n.replace("_", "-") for n in g), gen_keyword_met=which("keyword"),
                   gen_changed_met=which("changed"),
                   gen_clean=", ".join(f"{n.replace('_', '-')} {fmt_num(rec['clean_keywords_per_prompt'])}" for n, rec in g.items()),
                   gen_tokens=str(next(iter(g.values()))["intervention"]["max_tokens"]))
    return Facts({k: Text(v) for k, v in out.items()})
