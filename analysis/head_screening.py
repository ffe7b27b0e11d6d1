"""Stage `screen`: prompt pairs × model → per-head scores (Δattn, attribution, exact patching).

(under construction: the file format functions below are stable)
"""

from __future__ import annotations

from pathlib import Path

from analysis.errors import InputError
from analysis.io import read_json

SCHEMA = "emotion-heads/head-scores/v1"
SCORE_KINDS = ("exact", "attribution", "delta_attn")


def screening_path(profile: str, model: str) -> Path:
    """Where the pipeline keeps a model's screening (the seed's layout)."""
    return Path(f"results/{profile}/alignment/head_scores_{model}.json")


def ranking_score(doc: dict) -> str:
    """The score heads are ranked by: exact patching where it was computed, else attribution."""
    has_exact = any(s.get("exact") is not None for s in doc["scores"])
    return "exact" if has_exact else "attribution"


def top_heads(path: Path, emotion: str, n: int) -> tuple[tuple[int, int], ...]:
    """The n heads with the largest |score| for `emotion` in a screening file (for `top:N`)."""
    if not Path(path).is_file():
        raise InputError(
            f"head spec top:{n} needs the screening file {path}, which does not exist; run "
            f"`python -m analysis.head_screening` (or `dvc repro screen`) first, or give heads as L:H"
        )
    doc = read_json(path, SCHEMA)
    if emotion not in doc["emotions"]:
        raise InputError(f"screening file {path} has no scores for emotion {emotion!r} (it has {', '.join(doc['emotions'])})")
    key = ranking_score(doc)
    rows = [s for s in doc["scores"] if s["emotion"] == emotion and s.get(key) is not None]
    rows.sort(key=lambda s: (-abs(s[key]), s["layer"], s["head"]))
    if n > len(rows):
        raise InputError(f"head spec top:{n}: screening file {path} ranks only {len(rows)} heads for {emotion}")
    return tuple((int(s["layer"]), int(s["head"])) for s in rows[:n])
