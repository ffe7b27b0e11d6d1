"""The word-class shares of analysis/core/twins.py on hand-counted spans (issue 23)."""

from __future__ import annotations

import pytest

from analysis.core.twins import CLASS_NAMES, check_matched, class_gaps, share, signature, word_classes
from analysis.base.errors import InputError


def test_word_classes_by_hand() -> None:
    assert word_classes("You") == ("2nd person",)
    assert word_classes("really") == ("intensifier",)
    assert word_classes("we") == ("1st person",)
    assert word_classes("don't") == ("negation",) and word_classes("cannot") == ("negation",)
    assert word_classes("grateful") == ()
    assert signature("I am so grateful to you") == ("1st person", "intensifier", "2nd person")
    assert signature("I don't see your car") == ("1st person", "negation", "2nd person")


def test_shares_by_hand() -> None:
    spans = ["thank you so much", "I am grateful", "many thanks", "we never forget you"]
    twins = ["I saw it", "the bus is late", "it is noon", "we did not see you"]
    # 2nd person: spans 1 and 4 of 4 -> 0.50; twins 4 -> 0.25
    assert share(spans, "2nd person") == 0.5 and share(twins, "2nd person") == 0.25
    gaps = {g.name: g for g in class_gaps("gratitude", spans, twins)}
    assert list(gaps) == list(CLASS_NAMES)
    assert gaps["intensifier"].emotion_share == 0.25 and gaps["intensifier"].twin_share == 0.0
    assert gaps["1st person"].emotion_share == 0.5 and gaps["1st person"].twin_share == 0.5
    assert gaps["negation"].gap == 0.0  # never / not: one each
    assert gaps["2nd person"].gap == 0.25


def test_check_matched_names_the_worst_class_and_its_shares() -> None:
    spans = ["thank you", "thank you so much", "thanks", "I am grateful"]
    twins = ["I saw it", "I moved it", "it is late", "I am here"]
    with pytest.raises(InputError, match=r"p\.txt: the gratitude spans and their neutral twins differ in the 2nd person class: "
                                          r"0\.50 of the gratitude spans hold a 2nd person word but 0\.00 of their twins \(gap 0\.50 > 0\.10\)"):
        check_matched("gratitude", spans, twins, "p.txt")
    check_matched("gratitude", spans[2:], twins[2:], "p.txt")  # 1st person 0.5 vs 0.5, nothing else: passes
