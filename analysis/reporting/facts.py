"""Every number the report's prose cites, computed once from results/."""

from __future__ import annotations

import math

from analysis.base.contract import significant
from analysis.reporting.format import _minus, by_emotion, count_text, fmt_effect, fmt_gap, fmt_head, fmt_heads, fmt_num, fmt_p, fmt_sites, join_words, ordinal, per_emotion, plural, Text
from analysis.reporting.results import EMBEDDED, GPT2, KINDS, ranked, ranking_key, Results, SCORE_KINDS, TINY
from analysis.reporting.tables import delta_attn_summary, max_other_exact, SCORE_LABELS, SEED

# The experiments and the short names of their facts (F.abl_M, F.patch_M = denoising, F.noise_M).
EXPERIMENT_SHORT = (("ablation", "abl"), ("denoising", "patch"), ("noising", "noise"))


class Facts:
    """Every inline value of the report, as `Text`, computed from one `Results`.

    Attributes are sentences or numbers the prose of report/index.qmd refers to by name
    (`F.n_pairs`); `as_dict()` lists them all (the tests check each is non-empty).
    """

    def __init__(self, r: Results) -> None:
        self._r = r
        p = r.primary
        m = r.models[p]
        doc = m.screening
        first = m.experiment("ablation", r.emotions[0])
        first_patch = m.experiment("denoising", r.emotions[0])
        t = Text

        # Overview
        self.models = join_words(r.model_names)
        self.n_models = plural(len(r.models), "model")
        self.primary = t(p)
        self.profile = t(r.profile)
        self.emotions = join_words(r.emotions)
        # All pairs of the profile, as the experiments use them (the screening may see only the selection half)
        self.n_pairs = count_text({e: r.s(p, e, "ablation", "all", "n_prompts") for e in r.emotions}, "aligned prompt pairs")
        self.arch = t(f"{doc['n_layers']} layers × {doc['n_heads']} heads = {m.n_heads_total} heads")
        self.n_tests = t(str(m.n_heads_total * len(r.emotions)))
        self.archs = join_words(
            f"{name} ({mr.screening['n_layers']} layers × {mr.screening['n_heads']} heads)" for name, mr in r.models.items()
        )

        # Method parameters, as the stage outputs record them
        sp = doc["params"]
        self.n_resamples = t(str(sp["n_resamples"]))
        self.seed = t(str(sp["seed"]))
        self.screen_positions = t(sp["positions"])
        self.exact_scope = t("every head" if not sp.get("exact_top_k") else f"the top {sp['exact_top_k']} heads by |attribution|")
        self.ranking = t(SCORE_LABELS[ranking_key(doc)])
        k = r.params.unit_screening.exact_top_k
        self.unit_exact_k = t(f"the top {k} per emotion by |attribution|" if k else "all of them")
        self.abl_method = t(first.get("method", "?"))
        self.abl_spec = t(first["head_spec"])
        self.patch_spec = t(first_patch["head_spec"])
        self.patch_positions = t(first_patch.get("positions", "?"))
        self.max_tokens = t(str(first["max_tokens"]))
        self.abl_resamples = t(str(first["params"]["n_resamples"]))
        self.cum_k = t(str(max(len(first.get("cumulative", [])), len(first_patch.get("cumulative", [])))))
        used = {e: doc["pairs"][e].get("n_pairs_used", doc["pairs"][e]["n_pairs"]) for e in r.emotions}
        clusters = {e: doc["pairs"][e].get("n_clusters") for e in r.emotions}
        self.n_pairs_used = count_text(used, "pairs")
        self.n_clusters = count_text(clusters, "expressions")

        # Data design: held-out confirmation and the copy control, as the screening records them
        split = doc.get("split", {})
        screened = {e: doc["pairs"][e].get("n_expressions", doc["pairs"][e].get("n_clusters")) for e in r.emotions}
        totals = {e: doc["pairs"][e].get("n_expressions_total", screened[e]) for e in r.emotions}
        self.n_expressions = count_text(totals, "distinct expressions")
        if split.get("enabled"):
            self.split = t(
                f"split by expression (seed {split['seed']}, selection share {split['selection_share']}) into a "
                f"selection half of {count_text(screened, 'expressions')}, on which every head and unit is screened and "
                f"ranked, and a confirmation half with the rest, on which the ablation and patching experiments "
                f"report their effects (and, labelled as such, on all expressions)"
            )
        else:
            self.split = t("not split (`split.enabled: false`): screening and experiments use the same expressions, so "
                           "the experiments' effects are exploratory, not a confirmation")
        cc = doc.get("copy_control", {})
        flagged = sum(int(r.summary.get(f"{name}.{e}.screening.{r.half(name, e)}.n_copy_flagged", 0)) for name in r.models for e in r.emotions)
        self.copy_rule = t(f"below {cc.get('max_share', '?')} of ΔM while ΔM's interval excludes 0")
        self.copy_flagged = t("no head" if flagged == 0 else plural(flagged, "head × emotion"))
        shares = {e: r.summary.get(f"{p}.{e}.screening.{r.half(p, e)}.top_copy_share") for e in r.emotions}
        self.top_copy_share = per_emotion({e: fmt_num(v, 2) if v is not None else "not measured" for e, v in shares.items()})

        # Screening
        key = ranking_key(doc)
        tops = {}
        for e in r.emotions:
            head = fmt_head((r.s(p, e, "screening", r.half(p, e), "top_layer"), r.s(p, e, "screening", r.half(p, e), "top_head")))
            if key == "exact":
                eff = {k: r.s(p, e, "screening", r.half(p, e), f"top_exact{s}") for k, s in (("mean", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))}
                tops[e] = f"{head} for {e} (ΔM = {fmt_effect(eff, p=False)} nats, q = {fmt_p(r.s(p, e, 'screening', r.half(p, e), 'top_exact_q'))})"
            else:
                tops[e] = f"{head} for {e} (attribution {fmt_num(r.s(p, e, 'screening', r.half(p, e), 'top_attribution'), sign=True)})"
        self.screen_top = join_words(tops.values(), "and") if len(tops) > 1 else t(next(iter(tops.values())))
        # the prose names the heads; their numbers stand in @tbl-screening-overview
        heads = {e: fmt_head((r.s(p, e, "screening", r.half(p, e), "top_layer"), r.s(p, e, "screening", r.half(p, e), "top_head")))
                 for e in r.emotions}
        self.screen_heads = per_emotion(heads)
        if key == "exact":
            n_sig = sum(int(r.s(p, e, "screening", r.half(p, e), "n_significant_q05")) for e in r.emotions)
            self.n_sig = t(str(n_sig))
        else:
            self.n_sig = t("none (no exact scores)")
        rhos = {e: r.summary.get(f"{p}.{e}.screening.{r.half(p, e)}.attribution_vs_exact_spearman") for e in r.emotions}
        self.rho = per_emotion({e: fmt_num(v, 2) if v is not None else "undefined" for e, v in rhos.items()})
        self.dattn_distinct = per_emotion({e: delta_attn_summary(doc, e) for e in r.emotions})
        same = []
        for e in r.emotions:
            by_attr, by_key = ranked(doc, e, "attribution"), ranked(doc, e, key)
            if by_attr and by_key and (by_attr[0]["layer"], by_attr[0]["head"]) == (by_key[0]["layer"], by_key[0]["head"]):
                same.append(e)
        if len(same) == len(r.emotions):
            self.attr_top_same = t("for every emotion" if len(same) > 1 else f"for {same[0]}")
        elif same:
            self.attr_top_same = t(f"for {join_words(same)} (not for {join_words(e for e in r.emotions if e not in same)})")
        else:
            self.attr_top_same = t("for no emotion")
        dattn_top = {}
        for e in r.emotions:
            rows = ranked(doc, e, "delta_attn")
            dattn_top[e] = fmt_head((rows[0]["layer"], rows[0]["head"])) if rows else "none"
        self.dattn_top = per_emotion(dattn_top)

        # Issue 15: the noise floor, the BH families, attribution / exact
        self._screening_checks(doc, m.units)

        # Effects of float-rounding size that still test "significant"
        tiny = [sc for sc in doc["scores"] if sc.get("exact") is not None and abs(sc["exact"]) < TINY]
        self.tiny = t(f"10^{_minus(str(round(math.log10(TINY))))}^")  # pandoc superscript: 10⁻⁶
        self.n_tiny = t(str(len(tiny)))
        self.n_tiny_q05 = t(str(sum(1 for sc in tiny if sc["exact_q"] is not None and sc["exact_q"] < 0.05)))

        # Ablation, denoising and noising of the primary model
        for kind, short in EXPERIMENT_SHORT:
            if kind not in m.experiments:
                setattr(self, f"{short}_heads", t("not run (params patching.directions)"))
                for name in ("M", "sent", "kw", "gap", "verdict"):
                    setattr(self, f"{short}_{name}", t("not run"))
                continue
            heads = per_emotion({e: fmt_sites(m.experiment(kind, e)) for e in r.emotions})
            setattr(self, f"{short}_heads", heads)
            # The prose states these; baselines, changed share and KL are in the tables.
            for metric, name in (("emotion_score", "M"), ("sentiment", "sent"), ("keywords", "kw")):
                val = by_emotion({e: fmt_effect(r.s_effect(p, e, kind, metric)) for e in r.emotions})
                setattr(self, f"{short}_{name}", val)
            setattr(self, f"{short}_gap", by_emotion({e: fmt_gap(r.s_gap(p, e, kind)) for e in r.emotions}))
            setattr(self, f"{short}_verdict", self._verdict(kind))

        # Cumulative curve (ΔM at each k, per emotion)
        for kind, short in EXPERIMENT_SHORT:
            parts = []
            for e in r.emotions:
                pre = f"{p}.{e}.{kind}.{r.finding_half}.cumulative.k"
                ks = sorted({int(k[len(pre):].split(".")[0]) for k in r.summary if k.startswith(pre)})
                if not ks:
                    continue
                vals = ", ".join(
                    f"k = {k}: {fmt_num(r.s(p, e, kind, r.finding_half, 'cumulative', f'k{k}', 'emotion_score', 'mean'), sign=True)}"
                    for k in ks
                )
                parts.append(f"{e} ({vals})")
            setattr(self, f"cum_{short}", join_words(parts) if parts else t("not computed (cumulative_k = 0)"))

        # Validation on the embedded model
        self.validation_lead, self.validation_effects = self._validation()
        # The seed's GPT-2 numbers, and this run's
        self.gpt2 = self._gpt2()

    def _verdict(self, kind: str) -> Text:
        """What the overview table of `kind` shows, in words and counts (its numbers stay in the table):
        in how many model × emotion cells ΔM's interval excludes 0 in the direction the experiment
        expects, and in how many the text metrics move, on the findings' half."""
        r = self._r
        up = kind == "denoising"  # denoising raises M in the neutral twins; ablation and noising lower it
        cells = [(m, e) for m in r.models if kind in r.models[m].experiments for e in r.emotions]

        def moved(metric: str, signed: bool) -> int:
            n = 0
            for m, e in cells:
                eff = r.s_effect(m, e, kind, metric)
                lo, hi = eff["ci_low"], eff["ci_high"]
                if eff.get("no_effect") or lo is None or hi is None:
                    continue
                n += (lo > 0 if up else hi < 0) if signed else (lo > 0 or hi < 0)
            return n

        direction = "above" if up else "below"
        return Text(
            f"ΔM's 95 % interval lies {direction} 0 in {moved('emotion_score', True)} of {len(cells)} model × emotion "
            f"cells; sentiment moves (interval excluding 0) in {moved('sentiment', False)} and the emotion's own keywords "
            f"in {moved('keywords', False)} of them, on the {r.finding_half} half"
        )

    def _screening_checks(self, doc: dict, units: dict | None) -> None:
        """The noise floor and "no effect" rule, the BH family of heads and of units, the ratio rule."""
        r, t = self._r, Text
        nf = doc.get("noise_floor")
        if nf is None:
            self.noise_floor = self.noise_control = self.noise_atol = self.n_no_effect = t(
                "not measured (a screening written before the noise floor existed)")
        else:
            self.noise_floor = per_emotion({e: f"{fmt_num(nf['by_emotion'][e]['floor'])} nats" for e in r.emotions})
            self.noise_control = per_emotion({e: f"{fmt_num(nf['by_emotion'][e]['max_abs_control'])} nats" for e in r.emotions})
            self.noise_atol = fmt_num(nf["atol"])
            quiet = sum(1 for sc in doc["scores"] if sc.get("no_effect"))
            self.n_no_effect = t(f"{quiet} of {sum(1 for sc in doc['scores'] if sc.get('exact') is not None)}")
        self.head_family = self._family(doc.get("bh_family"))
        self.unit_family = self._family(units.get("bh_family")) if units else t("no unit screening in this run")
        self.unit_significant = self._unit_significant(units)
        flagged = [sc for sc in doc["scores"] if sc.get("ratio_flag")]
        compared = sum(1 for sc in doc["scores"] if sc.get("attribution_ratio") is not None)
        ratios = [abs(sc["attribution_ratio"]) for sc in flagged]
        if "attribution_ratio" not in doc:
            self.ratio_sentence = t("This screening file predates the attribution / exact ratios.")
        elif not flagged:
            self.ratio_sentence = t(f"Attribution / exact is within [0.3, 3] for all {compared} heads × emotions with an "
                                    f"effect above the noise floor.")
        else:  # the table exists only where something is flagged (markdown.ratio_markdown)
            self.ratio_sentence = t(
                f"Their sizes disagree more than their ranks: {len(flagged)} of the {compared} heads × emotions with an "
                f"effect above the noise floor have attribution / exact outside [0.3, 3], at {fmt_num(min(ratios), 2)}–"
                f"{fmt_num(max(ratios), 2)} in absolute value (@tbl-ratio)."
            )
        toy = r.toy
        if toy is None:
            self.ratio_planted = t("This run has no embedded model, so no planted head to check the ratio on.")
        elif "attribution_ratio" not in toy.screening:
            self.ratio_planted = t("Rerun the screening (`dvc repro screen`) to get them.")
        else:
            planted = [sc for sc in toy.screening["scores"] if (sc["layer"], sc["head"]) in set(toy.planted_heads(sc["emotion"]))]
            hit = [sc for sc in planted if sc.get("ratio_flag")]
            under = [sc for sc in hit if abs(sc["attribution_ratio"]) < 1]
            self.ratio_planted = t(
                f"On {EMBEDDED}, {len(hit)} of its {len(planted)} planted head × emotion rows are flagged"
                + (f"; attribution is {fmt_num(min(abs(sc['attribution_ratio']) for sc in under), 2)}–"
                   f"{fmt_num(max(abs(sc['attribution_ratio']) for sc in under), 2)} of the exact effect in absolute value "
                   f"({len(under)} of them underestimated, {sum(sc['attribution_ratio'] < 0 for sc in hit)} with the opposite "
                   f"sign): a first-order estimate misses the saturation of the planted unit's GELU, so it can rank the "
                   f"planted heads but not size them." if under else ".")
            )

    def _unit_significant(self, units: dict | None) -> Text:
        """How many tested units are significant, and how large the significant effects besides the top one are."""
        if not units or "bh_family" not in units:
            return Text("No unit screening with a noise floor and a BH family is in this run.")
        tested = [sc for sc in units["scores"] if sc.get("exact") is not None]
        sig = [sc for sc in tested if significant(sc)]
        text = f"On {self._r.primary}, {len(sig)} of the {len(tested)} tested units are significant"
        tops = {e: max((abs(sc["exact"]) for sc in sig if sc["emotion"] == e), default=0.0) for e in units["emotions"]}
        rest = [abs(sc["exact"]) for sc in sig if abs(sc["exact"]) < tops[sc["emotion"]]]
        if rest:
            share = max(abs(sc["exact"]) / tops[sc["emotion"]] for sc in sig if abs(sc["exact"]) < tops[sc["emotion"]])
            text += (f"; besides each emotion's top unit their effects are {fmt_num(min(rest))}–{fmt_num(max(rest))} nats "
                     f"(at most {fmt_num(100 * share, 2)} % of the top unit's)")
            if units["bh_family"]["tested_on"] == "confirmation":
                text += (". They reproduce on the expressions that did not choose them, so they are real, but small: "
                         "read significance as \"not zero\", and size from the interval")
        return Text(text + ".")

    @staticmethod
    def _family(fam: dict | None) -> Text:
        if fam is None:
            return Text("not recorded (a screening written before the families were)")
        half = {"selection": "the selection half", "confirmation": "the confirmation half", "all": "all expressions"}
        return Text(f"{fam['chosen']} ({fam['size']} tests, on {half.get(fam['tested_on'], fam['tested_on'])})")

    def _validation(self) -> tuple[Text, Text]:
        r = self._r
        m = r.toy
        if m is None:
            lead = Text(
                f"This run has no embedded model (its models are {join_words(r.model_names)}), so there is no "
                f"ground truth to check the screening against here; add {EMBEDDED} to the models in params.yaml "
                f"to include it."
            )
            return lead, Text("No planted-head effects to report for this run.")
        planted = {e: fmt_heads(m.planted_heads(e)) for e in r.emotions}
        ranks = {}
        for score in SCORE_KINDS:
            vals = {}
            for e in r.emotions:
                rank = r.summary.get(f"{EMBEDDED}.{e}.recovery.{r.half(EMBEDDED, e, score)}.{score}.planted_rank")
                auc = r.summary.get(f"{EMBEDDED}.{e}.recovery.{r.half(EMBEDDED, e, score)}.{score}.auroc")
                vals[e] = (f"{ordinal(rank)} of {m.n_heads_total}" if rank is not None else "unranked") + (
                    f" (AUROC {fmt_num(auc, 2)})" if auc is not None else ""
                )
            ranks[score] = per_emotion(vals)
        other = max_other_exact(m.screening, {e: m.planted_heads(e) for e in r.emotions})
        noise = (f" Every other head × emotion has |exact ΔM| ≤ {fmt_num(other)} nats: by construction it cannot tell "
                 f"an emotion prompt from its twin, so what is left is float rounding." if other is not None else "")
        lead = Text(
            f"The embedded model {EMBEDDED} has {m.n_heads_total} heads; its planted heads are "
            f"{per_emotion(planted)} (results/models/{EMBEDDED}/planted.json). By @tbl-recovery, exact patching ranks the planted "
            f"head {ranks['exact']}; attribution ranks it {ranks['attribution']}; Δattn ranks it {ranks['delta_attn']}."
            f"{noise}"
        )
        hits, misses = [], []
        for e in r.emotions:
            heads = {tuple(h) for kind in KINDS for h in m.experiment(kind, e)["heads"]}
            (hits if heads == set(m.planted_heads(e)) else misses).append(e)
        if not misses:
            which = "The heads ablated and patched on it are the planted heads for every emotion."
        else:
            wrong = join_words(
                f"{fmt_heads(m.experiment('ablation', e)['heads'])} for {e}" for e in misses
            )
            which = (f"The heads ablated and patched on it are the planted heads for {join_words(hits)}; "
                     f"they are not for {join_words(misses)} ({wrong})." if hits else
                     f"The heads ablated and patched on it are not the planted heads ({wrong}).")
        abl = by_emotion({e: fmt_gap(r.s_gap(EMBEDDED, e, "ablation")) for e in r.emotions})
        pat = by_emotion({e: fmt_gap(r.s_gap(EMBEDDED, e, "denoising")) for e in r.emotions})
        effects = Text(f"{which} As a fraction of the emotion–neutral gap of M [95 % CI], ablating them removes {abl}; "
                       f"patching them into the neutral twins (denoising) restores {pat}.")
        return lead, effects

    def _gpt2(self) -> Text:
        r = self._r
        if GPT2 not in r.models:
            return Text(
                f"No GPT-2 run is in this report's results: the models of params.yaml are {join_words(r.model_names)}. "
                f"GPT-2 needs the Hugging Face hub or a local copy (offline, only the embedded model runs); with one, "
                f"`dvc exp run -S 'models=[toy,gpt2]'` adds it, and this section then puts its numbers beside the seed's."
            )
        e = SEED["emotion"] if SEED["emotion"] in r.emotions else r.emotions[0]
        m = r.models[GPT2]
        abl, pat = m.experiment("ablation", e), m.experiment("denoising", e)
        sa, sp = r.s_effect(GPT2, e, "ablation", "sentiment"), r.s_effect(GPT2, e, "denoising", "sentiment")
        return Text(
            f"This run's GPT-2 ({e}): {abl.get('method', '?')} ablation of {fmt_heads(abl['heads'])} moves sentiment "
            f"from {fmt_num(sa['baseline'])} by {fmt_effect(sa)} (n = {sa['n']}); patching {fmt_heads(pat['heads'])} "
            f"moves it from {fmt_num(sp['baseline'])} by {fmt_effect(sp)} (n = {sp['n']}). The top head by exact "
            f"patching is {fmt_head((r.s(GPT2, e, 'screening', r.half(GPT2, e), 'top_layer'), r.s(GPT2, e, 'screening', r.half(GPT2, e), 'top_head')))}."
        )

    def as_dict(self) -> dict[str, Text]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
