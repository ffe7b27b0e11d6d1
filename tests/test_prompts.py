"""Prompt parsing, pairing, lexicons, tokenization and the prepare_prompts CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analysis.core.prompts import available_profiles, equal_length_pairs, load_lexicon, load_pairs, load_prompt_file, parse_prompt, Prompt, PromptPairs, tokenize
from analysis.base.vocabulary import EMOTIONS, NEUTRAL
from analysis.base.errors import InputError

REPO = Path(__file__).resolve().parents[1]
PROMPTS = REPO / "data" / "prompts"
LEXICONS = REPO / "data" / "lexicons"
SIZES = {"baseline": 70, "extended": 210}


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


# --------------------------------------------------------------------------------------------
# parse_prompt / load_prompt_file
# --------------------------------------------------------------------------------------------


def test_parse_prompt_offsets_by_hand() -> None:
    p = parse_prompt("Hi Maria, [thank you so much]. Now", "x:1")
    # "Hi Maria, " is 10 characters; "thank you so much" is 17.
    assert p.text == "Hi Maria, thank you so much. Now"
    assert p.span == (10, 27)
    assert p.span_text == "thank you so much"
    assert p.before == "Hi Maria, " and p.after == ". Now"


@pytest.mark.parametrize(
    "line, needle",
    [
        ("Hi Maria, thank you. Now", "no emotion span"),
        ("Hi [Maria], [thank you]. Now", "exactly one"),
        ("Hi Maria, []. Now", "empty"),
        ("Hi Maria, [ ]. Now", "empty"),
        ("Hi Maria, [thank you. Now", "stray '['"),
        ("Hi Maria, thank you]. Now", "stray ']'"),
        ("Hi Maria, ]thank you[. Now", "before"),
    ],
)
def test_parse_prompt_rejects(line: str, needle: str) -> None:
    with pytest.raises(InputError, match=re.escape(needle)) as err:
        parse_prompt(line, "f.txt:7")
    assert str(err.value).startswith("f.txt:7: ")


def test_load_prompt_file_empty_line(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", ["Hi [a]. Now", "", "Hi [b]. Now"])
    with pytest.raises(InputError, match=re.escape(f"{f}:2: empty line")):
        load_prompt_file(f)


def test_load_prompt_file_duplicate_names_both_lines(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", ["Hi [a]. Now", "Hi [b]. Now", "Hi [a]. Now"])
    with pytest.raises(InputError, match=re.escape(f"{f}:3: duplicate of line 1")):
        load_prompt_file(f)


def test_load_prompt_file_missing_span_names_line(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", ["Hi [a]. Now", "Hi b. Now"])
    with pytest.raises(InputError, match=re.escape(f"{f}:2: no emotion span")):
        load_prompt_file(f)


def test_load_prompt_file_two_spans_names_line(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", ["Hi [a] and [b]. Now"])
    with pytest.raises(InputError, match=re.escape(f"{f}:1: ")):
        load_prompt_file(f)


def test_load_prompt_file_trailing_space(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", ["Hi [a]. Now "])
    with pytest.raises(InputError, match=re.escape(f"{f}:1: ")):
        load_prompt_file(f)


def test_load_prompt_file_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "nope.txt"))):
        load_prompt_file(tmp_path / "nope.txt")


def test_load_prompt_file_ok(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", ["Hi [a]. Now", "Yo [bc], so"])
    assert load_prompt_file(f) == (Prompt("Hi a. Now", (3, 4)), Prompt("Yo bc, so", (3, 5)))


# --------------------------------------------------------------------------------------------
# load_pairs
# --------------------------------------------------------------------------------------------


def make_profile(root: Path, name: str, emotion: list[str], neutral: list[str], emo: str = "anger") -> None:
    write(root / name / f"{emo}.txt", emotion)
    write(root / name / "neutral.txt", neutral)


def test_load_pairs_ok(tmp_path: Path) -> None:
    make_profile(tmp_path, "p", ["Hi [I am mad]. Now", "Yo [grr], so"], ["Hi [I am here]. Now", "Yo [ok], so"])
    pairs = load_pairs("anger", "p", root=tmp_path)
    assert isinstance(pairs, PromptPairs) and len(pairs) == 2 and pairs.emotion == "anger"
    assert pairs.emotion_prompts[0].span_text == "I am mad"
    assert pairs.neutral_prompts[1].text == "Yo ok, so"


def test_load_pairs_prefers_the_emotions_own_twin_file(tmp_path: Path) -> None:
    """Issue 23: <profile>/<emotion>.neutral.txt holds that emotion's twins when present; the other
    emotions keep the shared neutral.txt."""
    make_profile(tmp_path, "p", ["Hi [I am mad at you]. Now"], ["Hi [it is late]. Now"])
    write(tmp_path / "p" / "gratitude.txt", ["Hi [thank you]. Now"])
    write(tmp_path / "p" / "anger.neutral.txt", ["Hi [I am next to you]. Now"])
    anger = load_pairs("anger", "p", root=tmp_path)
    assert anger.neutral_prompts[0].span_text == "I am next to you"
    assert anger.neutral_prompts[0].source == f"{tmp_path / 'p' / 'anger.neutral.txt'}:1"
    assert load_pairs("gratitude", "p", root=tmp_path).neutral_prompts[0].span_text == "it is late"
    # an explicit neutral file still overrides both
    other = write(tmp_path / "other.txt", ["Hi [we are here]. Now"])
    assert load_pairs("anger", "p", root=tmp_path, neutral_file=other).neutral_prompts[0].span_text == "we are here"


def test_prepared_profile_keeps_each_emotions_twin_file(tmp_path: Path) -> None:
    """prepare() records the per-emotion twin file as a source of its own, and rebuilds the pairs from it;
    the twins of each emotion pass the class-share check."""
    from analysis.core.prompt_table import _from_records, prepare

    make_profile(tmp_path, "p", ["Hi [I am mad at you]. Now"], ["Hi [I saw you]. Now"])
    write(tmp_path / "p" / "gratitude.txt", ["Hi [I thank you]. Now"])
    write(tmp_path / "p" / "anger.neutral.txt", ["Hi [I am next to you]. Now"])
    doc = prepare("p", ["gratitude", "anger"], root=tmp_path)
    assert sorted(doc["sources"]) == ["anger", "anger.neutral", "gratitude", "neutral"]
    assert doc["sources"]["anger.neutral"]["path"] == (tmp_path / "p" / "anger.neutral.txt").as_posix()
    pairs = _from_records("anger", doc["pairs"]["anger"], doc["sources"])
    assert pairs.neutral_prompts[0].span_text == "I am next to you"
    assert pairs.neutral_prompts[0].source.startswith((tmp_path / "p" / "anger.neutral.txt").as_posix())
    assert _from_records("gratitude", doc["pairs"]["gratitude"], doc["sources"]).neutral_prompts[0].span_text == "I saw you"


def test_prepare_refuses_twins_that_differ_in_a_word_class(tmp_path: Path) -> None:
    """Every gratitude span says "you", no twin does: 1.00 vs 0.00, past the 0.10 allowed."""
    from analysis.core.prompt_table import prepare

    make_profile(tmp_path, "p", ["Hi [thank you]. Now", "Yo [thank you all], so"], ["Hi [it is late]. Now", "Yo [it is noon], so"],
                 emo="gratitude")
    with pytest.raises(InputError, match=r"gratitude\.txt: the gratitude spans and their neutral twins differ in the 2nd person "
                                          r"class: 1\.00 of the gratitude spans hold a 2nd person word but 0\.00 of their twins"):
        prepare("p", ["gratitude"], root=tmp_path)


def test_load_pairs_unequal_counts(tmp_path: Path) -> None:
    make_profile(tmp_path, "p", ["Hi [a]. Now", "Yo [b], so"], ["Hi [c]. Now"])
    with pytest.raises(InputError) as err:
        load_pairs("anger", "p", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "p" / "anger.txt") in msg and "has 2 lines" in msg
    assert str(tmp_path / "p" / "neutral.txt") in msg and "has 1" in msg


@pytest.mark.parametrize(
    "neutral_second",
    ["Yo [c]. so", "Hey [c], so"],  # text after the span differs; text before differs
)
def test_load_pairs_misaligned_template(tmp_path: Path, neutral_second: str) -> None:
    make_profile(tmp_path, "p", ["Hi [a]. Now", "Yo [b], so"], ["Hi [c]. Now", neutral_second])
    with pytest.raises(InputError) as err:
        load_pairs("anger", "p", root=tmp_path)
    msg = str(err.value)
    assert f"{tmp_path / 'p' / 'anger.txt'}:2" in msg
    assert f"{tmp_path / 'p' / 'neutral.txt'}:2" in msg
    assert "not the same template" in msg


def test_load_pairs_unknown_emotion(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown emotion 'joy'; allowed: gratitude, anger, apology"):
        load_pairs("joy", "baseline", root=tmp_path)


def test_load_pairs_missing_profile_lists_existing(tmp_path: Path) -> None:
    make_profile(tmp_path, "alpha", ["Hi [a]. Now"], ["Hi [b]. Now"])
    with pytest.raises(InputError, match=r"profile 'nope' not found .*existing profiles: alpha"):
        load_pairs("anger", "nope", root=tmp_path)


def test_load_pairs_profile_without_emotion_file(tmp_path: Path) -> None:
    make_profile(tmp_path, "alpha", ["Hi [a]. Now"], ["Hi [b]. Now"])
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "alpha" / "gratitude.txt"))):
        load_pairs("gratitude", "alpha", root=tmp_path)


def test_load_pairs_empty_file(tmp_path: Path) -> None:
    make_profile(tmp_path, "p", [], ["Hi [b]. Now"])
    with pytest.raises(InputError, match=r"has no prompts"):
        load_pairs("anger", "p", root=tmp_path)


def test_load_pairs_error_names_bad_line(tmp_path: Path) -> None:
    make_profile(tmp_path, "p", ["Hi [a]. Now", "Hi [a]. Now"], ["Hi [b]. Now", "Hi [c]. Now"])
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'p' / 'anger.txt'}:2: duplicate of line 1")):
        load_pairs("anger", "p", root=tmp_path)


def test_load_pairs_explicit_files_override_profile(tmp_path: Path) -> None:
    e = write(tmp_path / "e.txt", ["Hi [grr]. Now"])
    n = write(tmp_path / "n.txt", ["Hi [ok]. Now"])
    pairs = load_pairs("anger", None, emotion_file=e, neutral_file=n, root=tmp_path / "absent")
    assert pairs.emotion_prompts[0].span_text == "grr"
    with pytest.raises(InputError, match="no prompt profile"):
        load_pairs("anger", None, emotion_file=e)


def test_available_profiles(tmp_path: Path) -> None:
    assert available_profiles(tmp_path / "absent") == []
    make_profile(tmp_path, "b", ["Hi [a]. Now"], ["Hi [b]. Now"])
    make_profile(tmp_path, "a", ["Hi [a]. Now"], ["Hi [b]. Now"])
    assert available_profiles(tmp_path) == ["a", "b"]
    assert {"baseline", "extended"} <= set(available_profiles(PROMPTS))


# --------------------------------------------------------------------------------------------
# Shipped data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(SIZES))
@pytest.mark.parametrize("emotion", EMOTIONS)
def test_shipped_profiles_load(profile: str, emotion: str) -> None:
    pairs = load_pairs(emotion, profile, root=PROMPTS)
    assert len(pairs) == SIZES[profile]


@pytest.mark.parametrize("profile", sorted(SIZES))
def test_shipped_profiles_follow_the_format(profile: str) -> None:
    for name in (*EMOTIONS, NEUTRAL):
        path = PROMPTS / profile / f"{name}.txt"
        raw = path.read_text()
        assert raw.count("[") == raw.count("]") == SIZES[profile], path
        prompts = load_prompt_file(path)
        assert len(prompts) == SIZES[profile]
        for p in prompts:
            assert p.before.strip() and p.before.endswith(" "), p.source
            assert p.after.strip() and p.after == p.after.rstrip(), p.source
        distinct = {p.span_text for p in prompts}
        assert len(distinct) >= {"baseline": 35, "extended": 70}[profile], (path, len(distinct))  # issue 14.1
    # Varied templates: many openers and tails, not one repeated frame.
    neutral = load_prompt_file(PROMPTS / profile / "neutral.txt")
    assert len({p.after for p in neutral}) >= 10
    assert len({p.before for p in neutral}) >= 20


def test_lexicons_load_and_are_disjoint() -> None:
    lex = {name: load_lexicon(name, root=LEXICONS) for name in (*EMOTIONS, NEUTRAL)}
    for name, words in lex.items():
        assert 15 <= len(words) <= 30, name
        assert all(re.fullmatch(r"[a-z]+", w) for w in words), name
        assert (LEXICONS / f"{name}.txt").read_text().startswith("#")
    names = list(lex)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not set(lex[a]) & set(lex[b]), (a, b, set(lex[a]) & set(lex[b]))
    assert {"thanks", "grateful"} <= set(lex["gratitude"])
    assert {"furious", "angry"} <= set(lex["anger"])
    assert {"sorry", "apologize"} <= set(lex["apology"])


def test_load_lexicon_skips_comments_and_lowercases(tmp_path: Path) -> None:
    write(tmp_path / "x.txt", ["# a comment", "Thanks", "", "grateful", "thanks"])
    assert load_lexicon("x", root=tmp_path) == ("thanks", "grateful")
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "y.txt"))):
        load_lexicon("y", root=tmp_path)


# --------------------------------------------------------------------------------------------
# Tokenization
# --------------------------------------------------------------------------------------------

CORPUS = [
    "Hi Maria, thank you. Now",
    "Hi Tom, sorry. Now",
    "Hi Maria, I read it. Now",
    "Hi Tom, thank you, and I",
]


@pytest.fixture(scope="module")
def tiny_tokenizer():
    """A byte-level BPE whose vocabulary is big enough that every corpus word is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def words(tokenizer, text: str) -> list[str]:
    return [tokenizer.decode([i]) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def test_tiny_tokenizer_is_one_token_per_word(tiny_tokenizer) -> None:
    assert words(tiny_tokenizer, "Hi Maria, thank you. Now") == ["Hi", " Maria", ",", " thank", " you", ".", " Now"]
    assert words(tiny_tokenizer, "Hi Tom, sorry. Now") == ["Hi", " Tom", ",", " sorry", ".", " Now"]


def test_tokenize_left_pads_prepends_bos_and_marks_span(tiny_tokenizer) -> None:
    bos, pad = 0, 99
    prompts = [
        parse_prompt("Hi Maria, [thank you]. Now", "t:1"),  # 7 tokens + BOS = 8
        parse_prompt("Hi Tom, [sorry]. Now", "t:2"),  # 6 tokens + BOS = 7 -> one pad on the left
    ]
    batch = tokenize(tiny_tokenizer, prompts, bos_id=bos, pad_id=pad)
    assert batch.input_ids.shape == (2, 8)
    assert batch.input_ids.dtype == torch.long and batch.attention_mask.dtype == torch.long
    assert batch.span_mask.dtype == torch.bool
    assert batch.lengths.tolist() == [8, 7]
    assert batch.attention_mask.tolist() == [[1] * 8, [0] + [1] * 7]
    assert batch.input_ids[0, 0].item() == bos
    assert batch.input_ids[1, :2].tolist() == [pad, bos]
    # Row 0: BOS Hi Maria , thank you . Now -> span at positions 4, 5.
    # Row 1: pad BOS Hi Tom , sorry . Now   -> span at position 5.
    assert batch.span_mask.tolist() == [
        [False, False, False, False, True, True, False, False],
        [False, False, False, False, False, True, False, False],
    ]
    # The last real token of every row is the last column.
    now = tiny_tokenizer(" Now", add_special_tokens=False)["input_ids"][0]
    assert batch.input_ids[:, -1].tolist() == [now, now]
    # The tokens between BOS and the end are exactly the tokenizer's own.
    own = tiny_tokenizer("Hi Tom, sorry. Now", add_special_tokens=False)["input_ids"]
    assert batch.input_ids[1, 2:].tolist() == own


def test_tokenize_span_without_token_is_an_error() -> None:
    class Fake:
        is_fast = True

        def __call__(self, texts, **kwargs):
            assert kwargs == {"add_special_tokens": False, "return_offsets_mapping": True}
            # One token covering "ab", nothing covering the span "c".
            return {"input_ids": [[5] for _ in texts], "offset_mapping": [[(0, 2)] for _ in texts]}

    with pytest.raises(InputError, match=r"f:3: span 'c' maps to no token"):
        tokenize(Fake(), [parse_prompt("ab[c]", "f:3")], bos_id=0, pad_id=0)


def test_equal_length_pairs(tiny_tokenizer) -> None:
    pairs = PromptPairs(
        emotion="gratitude",
        emotion_prompts=(parse_prompt("Hi Maria, [thank you]. Now", "e:1"), parse_prompt("Hi Tom, [thank you]. Now", "e:2")),
        # Pair 1: "I read it" is 3 tokens vs 2 -> unequal. Pair 2: "sorry" 1 token vs 2 -> unequal.
        neutral_prompts=(parse_prompt("Hi Maria, [I read it]. Now", "n:1"), parse_prompt("Hi Tom, [sorry]. Now", "n:2")),
    )
    assert equal_length_pairs(tiny_tokenizer, pairs) == 0
    same = PromptPairs(
        emotion="gratitude",
        emotion_prompts=(parse_prompt("Hi Maria, [thank you]. Now", "e:1"), parse_prompt("Hi [Tom], sorry. Now", "e:2")),
        neutral_prompts=(parse_prompt("Hi Maria, [I read]. Now", "n:1"), parse_prompt("Hi Tom, [sorry]. Now", "n:2")),
    )
    # Pair 1: same length, span at the same tokens. Pair 2: same length, span elsewhere.
    assert equal_length_pairs(tiny_tokenizer, same) == 1


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analysis.prepare_prompts", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--profile", "nope"],
        ["--profile", "baseline", "--emotions", "joy"],
        ["--profile", "bad"],  # a profile with a misaligned pair, made below
        ["--profile", "baseline", "--tokenizer", "{tmp}/no-such-tokenizer"],
        ["--profile", "baseline", "--no-such-flag"],
    ],
)
def test_cli_bad_input_one_line_exit_2_no_file(tmp_path: Path, args: list[str]) -> None:
    root = tmp_path / "prompts"
    for name in (*EMOTIONS, NEUTRAL):
        write(root / "baseline" / f"{name}.txt", [f"Hi [{name} one]. Now", f"Yo [{name} two], so"])
        write(root / "bad" / f"{name}.txt", [f"Hi [{name} one]. Now", f"Yo [{name} two], so"])
    write(root / "bad" / "neutral.txt", ["Hi [neutral one]. Now", "Yo [neutral two]. so"])
    out = tmp_path / "out" / "prompts.json"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = run_cli(*args, "--prompts-root", str(root), "--output", str(out))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert not out.exists()
    assert not list(out.parent.glob("*")) if out.parent.exists() else True


def test_cli_refuses_pickle_output(tmp_path: Path) -> None:
    res = run_cli("--profile", "baseline", "--output", str(tmp_path / "prompts.pkl"))
    assert res.returncode == 2
    assert res.stderr.startswith("error: ") and "pickle" in res.stderr
    assert not (tmp_path / "prompts.pkl").exists()


def test_cli_baseline_writes_prepared_file(tmp_path: Path, tiny_tokenizer) -> None:
    tok_dir = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok_dir)
    out = tmp_path / "results" / "baseline" / "prompts.json"
    # The tiny tokenizer has no single-token anger word: M could not be computed for a model with it
    # (issue 14: one word list per model), so the CLI refuses in one line and writes nothing.
    res = run_cli(
        "--profile", "baseline", "--emotions", *EMOTIONS, "--output", str(out), "--tokenizer", str(tok_dir)
    )
    assert res.returncode == 2 and res.stderr.startswith("error: lexicon") and res.stderr.count("\n") == 1, res.stderr
    assert not out.exists()
    tok_dir = REPO / "data/tokenizers/gpt2"
    res = run_cli(
        "--profile", "baseline", "--emotions", *EMOTIONS, "--output", str(out), "--tokenizer", str(tok_dir)
    )
    assert res.returncode == 0, res.stderr
    assert f"{tok_dir}: lexicon anger: dropped 'livid'" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == "emotion-heads/prompts/v1"
    assert doc["profile"] == "baseline" and doc["emotions"] == list(EMOTIONS) and doc["n_pairs"] == 70
    for emotion in EMOTIONS:
        pairs = doc["pairs"][emotion]
        assert len(pairs) == 70 and [p["index"] for p in pairs] == list(range(70))
        first = pairs[0]
        s, e = first["emotion_span"]
        ns, ne = first["neutral_span"]
        assert first["emotion_text"][:s] == first["neutral_text"][:ns]
        assert first["emotion_text"][e:] == first["neutral_text"][ne:]
        assert doc["token_alignment"][str(tok_dir)][emotion]["n_pairs"] == 70
        assert 0 <= doc["token_alignment"][str(tok_dir)][emotion]["n_equal_length"] <= 70
    assert set(doc["sources"]) == {*EMOTIONS, NEUTRAL}
    assert all(re.fullmatch(r"[0-9a-f]{64}", v["sha256"]) for v in doc["sources"].values())
    assert not [p for p in out.parent.iterdir() if p.name != "prompts.json"]  # no temp file left


def test_template_labels_are_the_shared_ending() -> None:
    # The statistics' second clustering dimension: the text after the span, the same for both
    # twins, and shared across expressions (each ending holds several of them).
    from analysis.core.prompts import span_clusters, template_labels

    pairs = load_pairs("gratitude", "baseline")
    labels = template_labels(pairs)
    assert labels == [e.after for e in pairs.emotion_prompts] == [n.after for n in pairs.neutral_prompts]
    assert 1 < len(set(labels)) < len(set(span_clusters(pairs)))
    by_label = {t: {c for c, u in zip(span_clusters(pairs), labels, strict=True) if u == t} for t in set(labels)}
    assert max(len(v) for v in by_label.values()) >= 2  # an ending shared by two expressions or more
