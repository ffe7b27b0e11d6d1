"""A Hugging Face hub cache written by hand, laid out as `huggingface_hub` lays it out, so that models
load *by hub name* offline: `HF_HOME/hub/models--<org>--<name>/refs/main` holds a commit id and
`snapshots/<commit>/` the files (config.json, model.safetensors, the tokenizer's files).

Each model gets its published config (analysis.modelfacts.architectures.PUBLIC) with the depth cut
to `n_layers` (width, heads, vocabulary, context and the family's knobs kept), random weights, and
its family's real tokenizer from data/tokenizers/ (GPT-2's BPE for GPT-2 and GPT-Neo, GPT-NeoX-20B's
for Pythia). No network: nothing here calls the hub.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the hub names of the three families' paper models (the seed's GPT-2 and its future work), and the
# tokenizer each ships with
HUB_MODELS = {
    "gpt2": "data/tokenizers/gpt2",
    "EleutherAI/pythia-160m": "data/tokenizers/gpt-neox",
    "EleutherAI/gpt-neo-125M": "data/tokenizers/gpt2",
}


def snapshot_dir(home: Path, repo_id: str) -> Path:
    """The snapshot folder of `repo_id` in the cache under `home` (HF_HOME), created with its ref."""
    folder = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex id: the ref only has to name the snapshot
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def write_hub_model(home: Path, repo_id: str, *, n_layers: int | None = 2, seed: int = 0) -> Path:
    """`repo_id` (a key of HUB_MODELS) at its published width, `n_layers` deep (None: its real depth)."""
    from transformers import AutoTokenizer

    from analysis.modelfacts.architectures import hf_config, PUBLIC
    from analysis.modelfacts.families import save_random_weights

    arch = PUBLIC[repo_id] if n_layers is None else replace(PUBLIC[repo_id], n_layers=n_layers)
    tok_dir = REPO / HUB_MODELS[repo_id]
    snap = snapshot_dir(home, repo_id)
    save_random_weights(hf_config(arch), AutoTokenizer.from_pretrained(tok_dir), snap, seed=seed, bias_std=0.1, init_std=0.02)
    for f in ("tokenizer.json", "tokenizer_config.json"):  # the shipped files themselves, not a re-save
        shutil.copy2(tok_dir / f, snap / f)
    return snap


def write_hub_cache(home: Path, *, n_layers: int | None = 2, seed: int = 0) -> Path:
    """All of HUB_MODELS into the cache under `home`; returns `home` (set HF_HOME to it, and HF_HUB_OFFLINE=1)."""
    for repo_id in HUB_MODELS:
        write_hub_model(home, repo_id, n_layers=n_layers, seed=seed)
    return home
