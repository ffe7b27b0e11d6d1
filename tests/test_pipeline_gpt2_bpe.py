"""A reduced-size random-weight GPT-2 with GPT-2's real tokenizer through the whole pipeline.

tests/test_pipeline_families.py gives every family the toy's tokenizer, where every span phrase
is one token, so alignment is never in question. Here the model carries data/tokenizers/gpt2
(byte-level BPE, vocabulary 50257), on the first N_PAIRS pairs of the baseline profile with
`positions: all`: a pair whose span and neutral twin differ in token count would be dropped from
the screening, so `n_pairs_used == N_PAIRS` checks the data's alignment as the pipeline sees it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from test_pipeline_families import cwd, make_project, run_in_process, stage_commands

REPO = Path(__file__).resolve().parents[1]
GPT2_TOKENIZER = REPO / "data" / "tokenizers" / "gpt2"
MODEL = "local/gpt2"  # make_project saves each family under local/ with the tokenizer it is given
N_PAIRS = 12
EMOTIONS = ("gratitude", "anger", "apology")


@pytest.fixture(scope="module")
def gpt2_bpe_project(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    root = make_project(
        tmp_path_factory.mktemp("gpt2_bpe") / "repo", GPT2_TOKENIZER, profile_pairs=N_PAIRS,
        size=dict(n_layers=2, n_heads=4, d_model=64),
    )
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["models"] = [MODEL]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with cwd(root):
        for _, cmd in stage_commands(root):
            run_in_process(cmd)
    return root


def test_model_carries_gpt2s_tokenizer(gpt2_bpe_project: Path) -> None:
    source = json.loads((gpt2_bpe_project / "results/models" / MODEL / "source.json").read_text())
    assert source["family"] == "gpt2" and (source["n_layers"], source["n_heads"]) == (2, 4)
    config = json.loads((gpt2_bpe_project / MODEL / "config.json").read_text())
    assert config["vocab_size"] == 50257
    # save_pretrained rewrites tokenizer.json (not byte-identical), so compare what it does.
    ours, shipped = (AutoTokenizer.from_pretrained(f, local_files_only=True) for f in (gpt2_bpe_project / MODEL, GPT2_TOKENIZER))
    assert ours.get_vocab() == shipped.get_vocab() and len(ours.get_vocab()) == 50257
    texts = [line.replace("[", "").replace("]", "") for f in sorted((gpt2_bpe_project / "data/prompts/tiny").glob("*.txt"))
             for line in f.read_text().splitlines()]
    assert len(texts) == 4 * N_PAIRS
    assert ours(texts, add_special_tokens=False).input_ids == shipped(texts, add_special_tokens=False).input_ids


def test_every_pair_is_used_under_gpt2s_tokenizer(gpt2_bpe_project: Path) -> None:
    doc = json.loads((gpt2_bpe_project / f"results/tiny/alignment/head_scores_{MODEL}.json").read_text())
    assert doc["params"]["positions"] == "all"
    assert doc["split"]["half"] == "selection"  # held-out confirmation: the screening sees the selection half
    for emotion in EMOTIONS:
        n = doc["pairs"][emotion]["n_pairs"]
        assert doc["pairs"][emotion]["n_pairs_used"] == n and 0 < n < N_PAIRS  # every pair of that half is used
        rows = [s for s in doc["scores"] if s["emotion"] == emotion]
        assert len(rows) == 2 * 4 and all(s["exact_n"] == n for s in rows)


def test_summary_has_gpt2_bpe_numbers(gpt2_bpe_project: Path) -> None:
    s = json.loads((gpt2_bpe_project / "results/summary.json").read_text())
    for emotion in EMOTIONS:
        for kind in ("ablation", "denoising", "noising"):
            key = f"{MODEL}.{emotion}.{kind}.emotion_score"
            assert s[f"{key}.n"] == N_PAIRS
            assert s[f"{key}.ci_low"] <= s[f"{key}.mean"] + 1e-12 <= s[f"{key}.ci_high"] + 2e-12
