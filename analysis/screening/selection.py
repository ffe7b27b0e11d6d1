"""The one place a screening file's rows become a choice of components (issue 23, no leakage).

Every choice an experiment makes from a screening (`top:N`, `mlp-top:K`, the cumulative curve's
top-1..k, the copy control's skip, and `specific` once the specificity control fills it) goes
through `choose_top`, which sees only `selection_rows`: the numbers of each row measured on the
**selection half** of the expressions. The experiments then report their findings on the other
(confirmation) half, which no choice has seen.

Where the screening measured its exact effects on the selection half (exact_top_k 0: every
component tested where it was ranked), a row is its own selection view. Where a top-k chosen by
|attribution| was exact-tested on the confirmation half (`pairs[emotion].exact_half ==
"confirmation"`), the row's exact, copy and specificity fields are confirmation-half numbers: the
view keeps the selection-half scores (attribution, Δattn) and the row's `selection` block, the same
exact fields measured again on the selection half (analysis.screening.heads / units write it), and
drops the rest. A file of that kind without `selection` blocks predates this rule: skipping by its
copy flags would filter by the confirmation half, so it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.base.contract import exact_half, rank, selection_score
from analysis.base.errors import InputError

# Fields of a screening row that are measured on the selection half whatever the exact half is
# (identity fields and the scores the whole screening ranks on).
SELECTION_FIELDS = ("layer", "head", "neuron", "emotion", "delta_attn", "attribution", "attribution_rank")

# Row fields a choice may filter on (a component left out when the field is true).
SKIP_FIELDS = {"copy": "copy_flag"}
# Row fields a choice may require (a component kept only when the field is true); `specific` is the
# specificity control's verdict (issue 23 item 2), filled in by the screening where it exists.
REQUIRE_FIELDS = {"specific": "specific"}


def selection_rows(doc: Mapping[str, Any], emotion: str, *, strict: bool = True) -> list[dict[str, Any]]:
    """The rows of `emotion` with only their selection-half numbers (see the module docstring).
    `strict`: refuse a confirmation-tested file without selection blocks (a choice that filters on
    their flags needs them); else such rows keep only their selection-half scores."""
    rows = [dict(s) for s in doc["scores"] if s["emotion"] == emotion]
    if exact_half(doc, emotion) != "confirmation":
        return rows
    out = []
    for s in rows:
        view = {k: s[k] for k in SELECTION_FIELDS if k in s}
        sel = s.get("selection")
        if strict and sel is None and s.get("exact") is not None:
            raise InputError(
                f"screening of {doc.get('model')} ({emotion}) measured its exact effects on the confirmation half and "
                f"has no selection-half copy of them (`selection`): choosing by its copy flags would choose on the half "
                f"the experiments confirm on; rerun the screening"
            )
        view.update(sel or {})
        out.append(view)
    return out


def selection_key(doc: Mapping[str, Any], emotion: str, rows: list[dict[str, Any]]) -> str:
    """The score a choice ranks by: exact where the selection half has it for every ranked row of the
    file, else attribution (a top-k tested on the confirmation half: its selection-half exact covers
    only the top-k, and the order beyond them is attribution's)."""
    return selection_score(doc, emotion, rows)


def selection_ranking(
    doc: Mapping[str, Any], emotion: str, *, index: str = "head", skip_flagged: bool = False, require_specific: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    """Every component a choice may take, best first, and the score ranked by: the selection half's
    ranking of `emotion`, leaving out copy-flagged ones (`skip_flagged`) and, with
    `require_specific`, keeping only specific ones. Rows as `selection_rows` gives them."""
    rows = selection_rows(doc, emotion, strict=skip_flagged or require_specific)
    key = selection_key(doc, emotion, rows)
    kept = [
        r for r in rows
        if not (skip_flagged and r.get(SKIP_FIELDS["copy"])) and not (require_specific and not r.get(REQUIRE_FIELDS["specific"]))
    ]
    return rank(kept, key, index=index), key


def choose_top(doc: Mapping[str, Any], emotion: str, n: int, **kw: Any) -> list[dict[str, Any]]:
    """The n components an experiment intervenes on (fewer where fewer qualify): `selection_ranking`'s first n."""
    return selection_ranking(doc, emotion, **kw)[0][:n]
