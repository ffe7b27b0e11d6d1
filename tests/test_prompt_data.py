"""The shipped prompt sets as data (issue 14.1): many independent expressions, none shared between
the profiles, every pair aligned under GPT-2's tokenizer and the toy's, and which lexicon words
GPT-2 can score as one token.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.core.prompts import aligned_pairs, load_lexicon, load_pairs, load_prompt_file
from analysis.base.vocabulary import EMOTIONS, NEUTRAL

REPO = Path(__file__).resolve().parents[1]
PROMPTS = REPO / "data" / "prompts"
LEXICONS = REPO / "data" / "lexicons"
GPT2 = REPO / "data" / "tokenizers" / "gpt2"
NEOX = REPO / "data" / "tokenizers" / "gpt-neox"
CLASSES = (*EMOTIONS, NEUTRAL)
MIN_EXPRESSIONS = {"baseline": 35, "extended": 70}  # distinct expressions per class (issue 14.1)
PAIRS = {"baseline": 70, "extended": 210}


def expressions(profile: str, name: str) -> list[str]:
    return [p.span_text for p in load_prompt_file(PROMPTS / profile / f"{name}.txt")]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@pytest.fixture(scope="module")
def gpt2():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(GPT2, local_files_only=True)


@pytest.fixture(scope="module")
def neox():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(NEOX, local_files_only=True)


@pytest.fixture(scope="module")
def toy_tokenizer():
    """The toy model's tokenizer exactly as its build makes it (BPE on the corpus + span tokens)."""
    from analysis.embedded.construction import ToyConfig
    from analysis.embedded.corpus import corpus_tokenizer, load_continuations, load_templates, span_classes, wrap_tokenizer

    config = ToyConfig()
    templates = load_templates(config)
    bank = load_continuations(config)
    return wrap_tokenizer(corpus_tokenizer(templates, bank, span_classes(templates), config.vocab_size))


@pytest.mark.parametrize("profile", sorted(MIN_EXPRESSIONS))
@pytest.mark.parametrize("name", CLASSES)
def test_many_expressions_each_in_equally_many_templates(profile: str, name: str) -> None:
    spans = expressions(profile, name)
    assert len(spans) == PAIRS[profile]
    distinct = set(spans)
    assert len(distinct) >= MIN_EXPRESSIONS[profile], (profile, name, len(distinct))
    # Every expression in the same number of templates: no expression outweighs another.
    assert {spans.count(s) for s in distinct} == {PAIRS[profile] // len(distinct)}


def test_no_expression_is_in_both_profiles() -> None:
    base = {s for name in CLASSES for s in expressions("baseline", name)}
    ext = {s for name in CLASSES for s in expressions("extended", name)}
    assert len(base) == 4 * 35 and len(ext) == 4 * 70  # and no string serves two classes
    assert not base & ext, sorted(base & ext)


@pytest.mark.parametrize("profile", sorted(MIN_EXPRESSIONS))
def test_each_expression_has_one_neutral_twin(profile: str) -> None:
    """Line i of every file is one template; an expression is always paired with the same neutral one."""
    neutral = expressions(profile, NEUTRAL)
    for emotion in EMOTIONS:
        pairs = load_pairs(emotion, profile, root=PROMPTS)  # checks the shared template of each line
        twins = {e.span_text: set() for e in pairs.emotion_prompts}
        for e, n in zip(pairs.emotion_prompts, pairs.neutral_prompts, strict=True):
            twins[e.span_text].add(n.span_text)
        assert all(len(t) == 1 for t in twins.values()), emotion
        assert sorted(t.pop() for t in twins.values()) == sorted(set(neutral)), emotion


@pytest.mark.parametrize("profile", sorted(MIN_EXPRESSIONS))
def test_spans_hold_no_word_of_another_class(profile: str) -> None:
    """An emotion span never uses another class's lexicon words (neutral ones included), nor a
    neutral span an emotion's: M and the keyword counts would otherwise see the other class."""
    lexicons = {c: set(load_lexicon(c, root=LEXICONS)) for c in CLASSES}
    for name in CLASSES:
        for span in set(expressions(profile, name)):
            foreign = {w for w in words(span) for c in CLASSES if c != name and w in lexicons[c]}
            assert not foreign, (profile, name, span, foreign)


@pytest.mark.parametrize("profile", sorted(MIN_EXPRESSIONS))
def test_no_span_holds_a_neutral_lexicon_word(profile: str) -> None:
    """Not even a neutral span: M's neutral term would otherwise read the prompt's own words."""
    neutral = set(load_lexicon(NEUTRAL, root=LEXICONS))
    for name in CLASSES:
        found = {(s, w) for s in set(expressions(profile, name)) for w in words(s) if w in neutral}
        assert not found, (profile, name, sorted(found)[:5])


@pytest.mark.parametrize("profile", sorted(MIN_EXPRESSIONS))
@pytest.mark.parametrize("emotion", EMOTIONS)
def test_twins_match_their_emotion_spans_in_every_word_class(profile: str, emotion: str) -> None:
    """Issue 23: per word class (2nd person, intensifier, 1st person, negation), the share of the
    emotion's spans holding one of its words and the share of their twins differ by at most 0.10.
    Before the rewrite, gratitude baseline was 0.71 vs 0.00 for the 2nd person."""
    from analysis.core.twins import CLASS_NAMES, MAX_SHARE_GAP, class_gaps, share

    pairs = load_pairs(emotion, profile, root=PROMPTS)
    spans = [p.span_text for p in pairs.emotion_prompts]
    twins = [p.span_text for p in pairs.neutral_prompts]
    gaps = class_gaps(emotion, spans, twins)
    assert [g.name for g in gaps] == list(CLASS_NAMES)
    assert all(g.gap <= MAX_SHARE_GAP for g in gaps), [(g.name, g.emotion_share, g.twin_share) for g in gaps]
    # the classes are really present (a table of zeros would pass trivially)
    assert share(spans, "2nd person") > 0.3 and share(spans, "1st person") > 0.3 and share(spans, "intensifier") > 0.2


@pytest.mark.parametrize("profile", sorted(MIN_EXPRESSIONS))
@pytest.mark.parametrize("emotion", EMOTIONS)
def test_twins_match_pair_by_pair(profile: str, emotion: str) -> None:
    """Stronger than the shares: each twin has the emotion span's classes in the same word order and
    as many words."""
    from analysis.core.twins import signature, span_words

    pairs = load_pairs(emotion, profile, root=PROMPTS)
    for e, n in zip(pairs.emotion_prompts, pairs.neutral_prompts, strict=True):
        assert signature(e.span_text) == signature(n.span_text), (e.source, e.span_text, n.span_text)
        assert len(span_words(e.span_text)) == len(span_words(n.span_text)), (e.source, e.span_text, n.span_text)


def test_prompts_end_where_a_continuation_starts_with_a_space() -> None:
    """Every prompt ends in a word or a comma, so the first continuation token carries a leading
    space: that is the lexicon form M must score (see the next test)."""
    for path in sorted(PROMPTS.glob("*/*.txt")):
        for p in load_prompt_file(path):
            assert re.search(r"[A-Za-z,]$", p.text), p.source


@pytest.mark.parametrize("profile", sorted(MIN_EXPRESSIONS))
@pytest.mark.parametrize("emotion", EMOTIONS)
def test_every_pair_aligns_under_gpt2(gpt2, profile: str, emotion: str) -> None:
    pairs = load_pairs(emotion, profile, root=PROMPTS)
    assert aligned_pairs(gpt2, pairs) == list(range(PAIRS[profile]))
    # The same, counted directly: the span and its twin are equally many tokens (leading space in),
    # and equally many words (pre-tokens), so any tokenizer that makes each of the profile's words
    # one token aligns them too (the random models' tokenizer in tests/conftest.py does).
    words_of = gpt2.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    for e, n in zip(pairs.emotion_prompts, pairs.neutral_prompts, strict=True):
        e_len = len(gpt2(" " + e.span_text, add_special_tokens=False).input_ids)
        assert e_len == len(gpt2(" " + n.span_text, add_special_tokens=False).input_ids), (e.source, n.source)
        assert len(words_of(" " + e.span_text)) == len(words_of(" " + n.span_text)), (e.source, n.source)


@pytest.mark.parametrize("profile", sorted(MIN_EXPRESSIONS))
@pytest.mark.parametrize("emotion", EMOTIONS)
def test_every_pair_aligns_under_gpt_neox(neox, profile: str, emotion: str) -> None:
    """Pythia's tokenizer (GPT-NeoX-20B's BPE): before issue 23, 66/66/58 of 70 baseline pairs aligned."""
    pairs = load_pairs(emotion, profile, root=PROMPTS)
    assert aligned_pairs(neox, pairs) == list(range(PAIRS[profile]))
    for e, n in zip(pairs.emotion_prompts, pairs.neutral_prompts, strict=True):
        e_len = len(neox(" " + e.span_text, add_special_tokens=False).input_ids)
        assert e_len == len(neox(" " + n.span_text, add_special_tokens=False).input_ids), (e.source, n.source)


@pytest.mark.parametrize("profile", sorted(MIN_EXPRESSIONS))
@pytest.mark.parametrize("emotion", EMOTIONS)
def test_every_pair_aligns_under_the_toy_tokenizer(toy_tokenizer, profile: str, emotion: str) -> None:
    pairs = load_pairs(emotion, profile, root=PROMPTS)
    assert aligned_pairs(toy_tokenizer, pairs) == list(range(PAIRS[profile]))


# Lexicon words with no single-token GPT-2 spelling, per spelling (checked against tiktoken below).
NO_SINGLE_TOKEN = {
    # " word": how a continuation's first word arrives (weekdays are one token only capitalised)
    "space": {
        "gratitude": {"gratefully", "appreciative"},
        "anger": {"livid", "infuriating", "infuriated"},
        "apology": {"regretful", "oops"},
        "neutral": {"monday", "tuesday", "wednesday", "thursday", "friday"},
    },
    # " word" or " Word": the spellings M should use; these six are what GPT-2 cannot score
    "space_any_case": {
        "gratitude": {"gratefully", "appreciative"},
        "anger": {"livid", "infuriating", "infuriated"},
        "apology": {"regretful"},  # " Oops" is one token, " oops" is not
        "neutral": set(),
    },
    # "word", no space: a word-internal piece ("kind" of "mankind"); no continuation here starts so
    "bare": {
        "gratitude": {
            "thanked", "thanking", "thankful", "grateful", "gratefully", "gratitude", "appreciate",
            "appreciated", "appreciation", "appreciative", "kindness", "generous", "generosity", "helpful",
            "blessed", "indebted", "cheers", "wonderful", "lovely",
        },
        "anger": {
            "furious", "angry", "angrily", "outrageous", "outraged", "outrage", "livid", "annoyed", "annoying",
            "irritated", "infuriating", "infuriated", "unacceptable", "ridiculous", "disgusted", "disgusting",
            "terrible", "awful", "useless", "pathetic",
        },
        "apology": {
            "apologize", "apologise", "apologized", "apologizing", "apologies", "apology", "regret", "regrets",
            "regretful", "forgive", "forgiveness", "pardon", "mistake", "mistakes", "fault", "blame",
            "inconvenience", "remorse",
        },
        "neutral": {
            "meeting", "schedule", "agenda", "invoice", "monday", "tuesday", "wednesday", "thursday", "friday",
            "calendar", "delivery", "attached", "attachment", "spreadsheet",
        },
    },
}
SPELLINGS = {"space": lambda w: [f" {w}"], "space_any_case": lambda w: [f" {w}", f" {w.capitalize()}"],
             "bare": lambda w: [w]}


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str

    from analysis.tokenizers.gpt2_bpe import SOURCE_SHA256

    ranks = load_tiktoken_bpe(str(GPT2 / "source" / "gpt2.tiktoken"), expected_hash=SOURCE_SHA256)
    return tiktoken.Encoding(name="gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={})


@pytest.mark.parametrize("spelling", sorted(NO_SINGLE_TOKEN))
@pytest.mark.parametrize("name", CLASSES)
def test_lexicon_words_without_a_single_gpt2_token(gpt2, tiktoken_gpt2, spelling: str, name: str) -> None:
    lexicon = load_lexicon(name, root=LEXICONS)
    for encode in (lambda s: gpt2(s, add_special_tokens=False).input_ids, tiktoken_gpt2.encode_ordinary):
        missing = {w for w in lexicon if not any(len(encode(s)) == 1 for s in SPELLINGS[spelling](w))}
        assert missing == NO_SINGLE_TOKEN[spelling][name]
    # Every lexicon keeps most of its words for M.
    assert len(lexicon) - len(NO_SINGLE_TOKEN["space_any_case"][name]) >= 15


# Hand-built pairs, counted by hand under GPT-2's BPE (leading space in): " thank you" 2 tokens,
# " I see" 2, " thanks" 1, " noted" 1, " many thanks" 2, " got it" 2, " thank you so much" 4,
# " okay" 1, " cheers" 1, " sure" 1, " I am so grateful" 4, " fine" 1. Pairs 3 and 5 differ in
# length (4 vs 1); twins share their template (load_pairs checks), so a span never moves.
MISALIGNED = {
    "gratitude": ["Hi Ana, [thank you]. Now", "Hey Bo, [thanks]. Well", "Dear Cy, [many thanks]. So",
                  "Hi Di, [thank you so much]. Then", "Yo Ed, [cheers]. Fine", "Hi Fay, [I am so grateful]. Ok"],
    "neutral": ["Hi Ana, [I see]. Now", "Hey Bo, [noted]. Well", "Dear Cy, [got it]. So",
                "Hi Di, [okay]. Then", "Yo Ed, [sure]. Fine", "Hi Fay, [fine]. Ok"],
}


def test_keep_aligned_drops_up_to_the_share_and_refuses_beyond(gpt2, tmp_path: Path) -> None:
    from analysis.core.prompts import keep_aligned
    from analysis.base.errors import InputError

    for name, lines in MISALIGNED.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(lines) + "\n")
    pairs = load_pairs("gratitude", None, emotion_file=tmp_path / "gratitude.txt", neutral_file=tmp_path / "neutral.txt")
    assert aligned_pairs(gpt2, pairs) == [0, 1, 2, 4]
    # 2 of 6 left out: a share of 1/3 allows floor(6/3) = 2, so the four aligned pairs are kept
    assert keep_aligned(gpt2, pairs, max_unaligned_share=1 / 3, model="gpt2") == [0, 1, 2, 4]
    # 0.2 allows floor(1.2) = 1: refused, in one line naming the file, the model, 2 of 6 and the share
    with pytest.raises(InputError) as err:
        keep_aligned(gpt2, pairs, max_unaligned_share=0.2, model="gpt2")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'gratitude.txt'}: 2 of 6 gratitude pairs do not align under the tokenizer of gpt2")
    assert "alignment.max_unaligned_share 0.2 allows (at most 1)" in msg
    # the aligned four alone pass at share 0: nothing to leave out
    from analysis.core.prompts import subset

    assert keep_aligned(gpt2, subset(pairs, [0, 1, 2, 4]), max_unaligned_share=0.0, model="gpt2") == [0, 1, 2, 3]
