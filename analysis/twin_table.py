"""Measure how well the neutral twins match their emotion spans (issue 23), per profile and emotion.

    python -m analysis.twin_table [--profiles baseline extended] [--tokenizer data/tokenizers/gpt2 ...] [--toy]

Prints, per profile, emotion and word class (analysis/core/twins.py), the share of the emotion's
spans and of their twins holding a word of the class; how many pairs have the same class
signature (classes in word order) and word count; and per tokenizer how many pairs align (same
token count, span at the same positions). A tool for editing the prompts; it writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from analysis.core.cli import Parser, cli
from analysis.core.prompts import PROMPTS_ROOT, aligned_pairs, load_pairs
from analysis.core.twins import CLASS_NAMES, MAX_SHARE_GAP, class_gaps, signature, span_words
from analysis.base.vocabulary import EMOTIONS

TOKENIZERS = ("data/tokenizers/gpt2", "data/tokenizers/gpt-neox")


@cli
def main(argv: Sequence[str] | None = None) -> None:
    ap = Parser(prog="python -m analysis.twin_table", description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", default=["baseline", "extended"])
    ap.add_argument("--tokenizer", dest="tokenizers", nargs="*", default=list(TOKENIZERS), help="tokenizer folders")
    ap.add_argument("--toy", action="store_true", help="also the toy's tokenizer, built from the prompts (slower)")
    ap.add_argument("--prompts-root", type=Path, default=PROMPTS_ROOT)
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    tokenizers = {t: AutoTokenizer.from_pretrained(t, local_files_only=True) for t in args.tokenizers}
    if args.toy:
        from analysis.embedded.construction import ToyConfig
        from analysis.embedded.corpus import corpus_tokenizer, load_continuations, load_templates, span_classes, wrap_tokenizer

        config = ToyConfig()
        templates = load_templates(config)
        tokenizers["toy"] = wrap_tokenizer(
            corpus_tokenizer(templates, load_continuations(config), span_classes(templates), config.vocab_size)
        )
    worst = 0.0
    for profile in args.profiles:
        print(f"## {profile}")
        print("| class | " + " | ".join(f"{e} | twins" for e in EMOTIONS) + " |")
        pairs = {e: load_pairs(e, profile, root=args.prompts_root) for e in EMOTIONS}
        gaps = {
            e: class_gaps(e, [p.span_text for p in pairs[e].emotion_prompts], [p.span_text for p in pairs[e].neutral_prompts])
            for e in EMOTIONS
        }
        for i, name in enumerate(CLASS_NAMES):
            cells = " | ".join(f"{gaps[e][i].emotion_share:.2f} | {gaps[e][i].twin_share:.2f}" for e in EMOTIONS)
            print(f"| {name} | {cells} |")
            worst = max(worst, *(gaps[e][i].gap for e in EMOTIONS))
        for e in EMOTIONS:
            ps = pairs[e]
            same = sum(
                signature(a.span_text) == signature(b.span_text) and len(span_words(a.span_text)) == len(span_words(b.span_text))
                for a, b in zip(ps.emotion_prompts, ps.neutral_prompts, strict=True)
            )
            aligned = ", ".join(f"{name} {len(aligned_pairs(tok, ps))}/{len(ps)}" for name, tok in tokenizers.items())
            print(f"{e}: same signature and word count {same}/{len(ps)}; aligned: {aligned}")
    print(f"largest class-share gap: {worst:.2f} (allowed {MAX_SHARE_GAP:.2f})")


if __name__ == "__main__":
    main()
