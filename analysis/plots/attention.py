"""What each emotion's top heads attend to from the last prompt position (stage `attention`).

For every emotion, the `top_n` heads its screening ranks first (`top:N`,
analysis.screening.heads.top_heads) are run on the emotion prompts and on their neutral twins;
the attention pattern of the last prompt position (the one the emotion score M is read at) is
summed over the prompt's parts and averaged over pairs. Prompts differ in length, so tokens are
grouped by role, which every template shares: BOS, the text before the span, the span (the
emotion expression or its neutral replacement), the text after it, and the last token itself.
The parts of a row sum to 1 (softmax over the keys).

`attention_pattern` computes the table (columns: analysis.base.contract.ATTENTION_COLUMNS: the means,
with the per-pair standard deviation and n); `write_attention` writes it and its figure
(one panel per emotion × head, emotion vs neutral twin).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from analysis.base.contract import ATTENTION_COLUMNS, ATTENTION_CSV, ATTENTION_PNG, check_attention_columns, check_output_folder, screening_file
from analysis.core.loading import LoadedModel
from analysis.settings.hardware import Precision
from analysis.core.prompt_table import stage_pairs
from analysis.core.prompts import PromptPairs, TokenBatch
from analysis.base.vocabulary import pattern_hook
from analysis.base.errors import InputError
from analysis.core.budget import load_planned
from analysis.interventions.edits import last_logits, tokenize_pairs
from analysis.plots.style import DPI, emotion_colour, save_png, write_csv
from analysis.screening.heads import top_heads

PARTS = ("BOS", "before span", "span", "after span", "last token")


@dataclass(frozen=True)
class AttentionConfig:
    model: str
    profile: str
    emotions: tuple[str, ...]
    top_n: int = 2

    def __post_init__(self) -> None:
        if self.top_n < 1:
            raise InputError(f"--top-n must be at least 1, got {self.top_n}")


def part_masks(batch: TokenBatch) -> torch.Tensor:
    """[part, batch, pos] boolean masks of the PARTS over a left-padded batch (BOS first)."""
    real = batch.attention_mask.bool()  # [batch, pos]
    pos = torch.arange(real.shape[1], device=real.device)[None, :]  # [1, pos]
    first = real.float().argmax(1, keepdim=True)  # [batch, 1] index of BOS
    bos = pos == first
    last = torch.zeros_like(real)
    last[:, -1] = True
    span = batch.span_mask & ~last
    big = real.shape[1]
    span_start = torch.where(batch.span_mask, pos, big).min(1, keepdim=True).values  # [batch, 1]
    span_end = torch.where(batch.span_mask, pos, -1).max(1, keepdim=True).values
    before = real & ~bos & (pos < span_start)
    after = real & ~last & (pos > span_end)
    return torch.stack([bos, before, span, after, last])


def last_row_parts(model: LoadedModel, batch: TokenBatch, heads: Sequence[tuple[int, int]]) -> np.ndarray:
    """[head, batch, part]: attention mass of the last position on each part, per head and prompt."""
    masks = part_masks(batch).to(torch.float32)  # [part, batch, pos]
    rows: dict[tuple[int, int], Tensor] = {}

    def grab(layer: int):  # noqa: ANN202
        def fn(pattern: Tensor, hook: object) -> Tensor:
            # pattern: [batch, head, query, key]; the last query's row, summed over each part.
            last = pattern[:, :, -1, :].to(torch.float32)  # [batch, head, key]
            for lh in heads:
                if lh[0] == layer:
                    rows[lh] = torch.einsum("bk,pbk->bp", last[:, lh[1], :], masks)
            return pattern

        return fn

    layers = sorted({layer for layer, _ in heads})
    with torch.no_grad():
        last_logits(model, batch, [(pattern_hook(layer), grab(layer)) for layer in layers])
    return np.stack([rows[lh].cpu().numpy() for lh in heads])


def attention_table(
    model: LoadedModel, pairs: Mapping[str, PromptPairs], heads: Mapping[str, Sequence[tuple[int, int]]]
) -> pd.DataFrame:
    """One row per emotion × head × prompt kind × part: mean, sd over pairs, n."""
    out = []
    for emotion, pp in pairs.items():
        emo, neu = tokenize_pairs(model, pp)
        for kind, batch in (("emotion", emo), ("neutral", neu)):
            mass = last_row_parts(model, batch, heads[emotion])  # [head, batch, part]
            for (layer, head), per_head in zip(heads[emotion], mass, strict=True):
                for part, col in zip(PARTS, per_head.T, strict=True):
                    out.append({
                        "emotion": emotion, "layer": layer, "head": head, "prompt": kind, "part": part,
                        "mean": float(col.mean()), "sd": float(col.std(ddof=1)) if len(col) > 1 else 0.0, "n": len(col),
                    })
    return pd.DataFrame(out, columns=list(ATTENTION_COLUMNS))


def attention_pattern(config: AttentionConfig, precision: Precision) -> pd.DataFrame:
    """The stage's one computation: the top heads from the screening, the prepared pairs, the
    table, on `precision`'s device in its dtype."""
    screening = screening_file(config.profile, config.model)
    heads = {e: top_heads(screening, e, config.top_n) for e in config.emotions}
    pairs = {e: stage_pairs(e, config.profile) for e in config.emotions}
    return attention_table(load_planned(config.model, precision, config.profile, len(config.emotions)), pairs, heads)


def attention_figure(table: pd.DataFrame, model_name: str, path: Path) -> Figure:
    """Rows: emotions; columns: their top heads; bars: emotion prompt vs neutral twin per part."""
    emotions = list(dict.fromkeys(table["emotion"]))
    n_cols = int(table.groupby("emotion")[["layer", "head"]].apply(lambda g: len(g.drop_duplicates())).max())
    # 6.5 in wide: the text width of an A4 page with 2 cm margins, so 8 pt text stays 8 pt.
    fig = Figure(figsize=(6.5, 1.9 * len(emotions) + 0.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(emotions), n_cols, squeeze=False, sharey=True)
    x = np.arange(len(PARTS))
    for r, emotion in enumerate(emotions):
        sub = table[table["emotion"] == emotion]
        heads = list(dict.fromkeys(zip(sub["layer"], sub["head"], strict=True)))
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(heads):
                ax.set_visible(False)
                continue
            layer, head = heads[c]
            cell = sub[(sub["layer"] == layer) & (sub["head"] == head)]
            for i, (kind, colour) in enumerate((("emotion", emotion_colour(emotion)), ("neutral", "#999999"))):
                vals = cell[cell["prompt"] == kind].set_index("part").loc[list(PARTS)]
                ax.bar(x + (i - 0.5) * 0.38, vals["mean"], 0.38, yerr=vals["sd"], color=colour,
                       error_kw={"elinewidth": 0.7, "capsize": 1.5}, label=f"{emotion} prompt" if kind == "emotion" else "neutral twin")
            ax.set_title(f"{emotion}: L{layer}H{head} (top {c + 1})", fontsize=9)
            ax.set_xticks(x, [p.replace(" ", "\n") for p in PARTS], fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
            ax.set_ylim(0, 1)
            if c == 0:
                ax.set_ylabel("attention from\nlast position", fontsize=8)
            ax.legend(fontsize=8, frameon=False, loc="upper right")
    fig.suptitle(f"{model_name}: attention of the last prompt position, mean ± sd over pairs", fontsize=9)
    save_png(fig, path)
    return fig


def write_attention(table: pd.DataFrame, model_name: str, output_dir: Path) -> dict[str, Path]:
    """The table (its columns checked) and its figure, each written atomically into output_dir."""
    output_dir = check_output_folder(output_dir)
    check_attention_columns(table.columns, output_dir / ATTENTION_CSV)
    output_dir.mkdir(parents=True, exist_ok=True)
    csv = write_csv(table, output_dir / ATTENTION_CSV)
    attention_figure(table, model_name, output_dir / ATTENTION_PNG)
    return {"csv": csv, "png": output_dir / ATTENTION_PNG}
