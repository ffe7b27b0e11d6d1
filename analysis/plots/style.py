"""One look for every figure: colours, fonts, figure and file helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any
import matplotlib
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.base.io import FLOAT_FORMAT, atomic_path




EMOTION_COLOURS = {"gratitude": "#009E73", "anger": "#D55E00", "apology": "#0072B2"}  # Okabe–Ito


EXTRA_COLOURS = ("#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


MODEL_STYLES = ("-", "--", ":", "-.")


STYLE: dict[str, Any] = {
    "svg.hashsalt": "emotion-heads",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.interpolation": "nearest",
}


DPI = 150


ANNOT_PT = 9  # smallest text in any figure


# Panel labels with units; `kw_own` is the emotion's own lexicon count.
METRIC_LABELS = {
    "sentiment": "VADER sentiment\n(compound, −1…1)",
    "kw_own": "own-emotion keywords\n(count per continuation)",
    "emotion_score": "emotion score M (nats)",
}


METRIC_TITLES = {"sentiment": "Sentiment", "kw_own": "Own-emotion keywords", "emotion_score": "Emotion score M"}


def emotion_colour(emotion: str) -> str:
    if emotion in EMOTION_COLOURS:
        return EMOTION_COLOURS[emotion]
    return EXTRA_COLOURS[sum(map(ord, emotion)) % len(EXTRA_COLOURS)]


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Save atomically, without the metadata that would make re-runs differ."""
    with matplotlib.rc_context(STYLE), atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return Path(path)


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format=FLOAT_FORMAT)
    return Path(path)
