"""Stage `screen`: prompt pairs × model → per-head scores for every layer × head × emotion.

Three scores per head h of layer L, each over the aligned (emotion prompt, neutral twin) pairs:

- `delta_attn`: attention from the last prompt position onto the span tokens in the emotion
  prompt, minus the same onto the twin's span. Computed per head from that head's own pattern
  (the seed gave one number to many heads; each head here reads its own row).
- `attribution`: gradient × activation difference, sum over patched positions and d_head of
  dM/dz_h · (z_h[emotion] − z_h[neutral]) in the neutral run: a first-order estimate of
  patching z_h from the emotion prompt into its twin. All heads from one backward pass.
- `exact`: the actual change of M when z_h is patched (the same positions), one forward per
  head from the cached residual before layer L, unembedding only the last position.

M is the emotion score of `analysis.scoring` at the last prompt position. `exact` carries
n, a 95 % BCa interval, a sign-flip p and a Benjamini–Hochberg q across all heads × emotions;
pairs that share an emotion expression are resampled and sign-flipped together (one cluster
per expression, analysis.stats), since the expression is what must generalize.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from analysis.errors import InputError, cli
from analysis.interventions import (
    TokenBatch,
    capture,
    exact_patching_sites,
    head_sites,
    last_logits,
    position_ids,
    position_map,
    tokenize_pairs,
)
from analysis.io import check_output_path, read_json, write_json
from analysis.models import LoadedModel, load_model, resolve_model_path
from analysis.outputs import screening_file
from analysis.prompts import EMOTIONS, PROMPTS_ROOT, PromptPairs, load_pairs, span_clusters, subset
from analysis.scoring import emotion_score, lexicon_ids
from analysis.stats import benjamini_hochberg, one_sample_effect, spearman

SCHEMA = "emotion-heads/head-scores/v1"
SCORE_KINDS = ("exact", "attribution", "delta_attn")


# --- where screenings live, and how `top:N` reads them ---------------------------------------


def screening_path(profile: str, model: str) -> Path:
    """Where the pipeline keeps a model's screening (the seed's layout; analysis.outputs)."""
    return screening_file(profile, model)


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
    # Rounded to 1e-6 (nats): heads whose effect is float noise tie and keep layer:head order,
    # so `top:N` and the cumulative curve do not depend on rounding in the last bits.
    rows.sort(key=lambda s: (-round(abs(s[key]), 6), s["layer"], s["head"]))
    if n > len(rows):
        raise InputError(f"head spec top:{n}: screening file {path} ranks only {len(rows)} heads for {emotion}")
    return tuple((int(s["layer"]), int(s["head"])) for s in rows[:n])


# --- the three scores -------------------------------------------------------------------------


@dataclass(frozen=True)
class PairBatches:
    """Emotion and neutral prompts of the screened pairs, padded to one width, and the patch map."""

    emotion: TokenBatch
    neutral: TokenBatch
    idx: Tensor  # [batch, pos] source position for each target position
    mask: Tensor  # [batch, pos] which target positions are patched
    kept: list[int]  # indices of the pairs used (all pairs unless `all` dropped unequal ones)


def pair_batches(model: LoadedModel, pairs: PromptPairs, positions: str) -> PairBatches:
    emo, neu = tokenize_pairs(model, pairs)
    kept = list(range(len(pairs)))
    if positions == "all":
        # Position-by-position patching needs twins of equal token length; others are dropped
        # (and counted in the output).
        same = (emo.lengths == neu.lengths) & (emo.span_mask == neu.span_mask).all(1)
        kept = same.nonzero().flatten().tolist()
        if not kept:
            raise InputError(
                f"positions=all: no pair of {pairs.emotion} has equal token length under {model.spec.name}; "
                f"use positions last or span"
            )
        if len(kept) < len(pairs):
            emo, neu = tokenize_pairs(model, subset(pairs, kept))
    idx, mask = position_map(positions, source=emo, target=neu)
    return PairBatches(emo, neu, idx, mask, kept)


def delta_attn(model: LoadedModel, pb: PairBatches) -> Float[Tensor, "batch layer head"]:
    """Per pair: last-position attention onto the span, emotion prompt minus neutral twin."""
    n_layers = model.spec.n_layers

    def onto_span(batch: TokenBatch) -> Tensor:
        rows: dict[int, Tensor] = {}

        def grab(layer: int):  # noqa: ANN202
            def fn(pattern: Tensor, hook: object) -> Tensor:
                # pattern: [batch, head, query, key]; keep the last query's mass on span keys.
                last = pattern[:, :, -1, :]
                rows[layer] = (last * batch.span_mask[:, None, :].to(last.dtype)).sum(-1)
                return pattern

            return fn

        hooks = [(f"blocks.{layer}.attn.hook_pattern", grab(layer)) for layer in range(n_layers)]
        with torch.no_grad():
            last_logits(model, batch, hooks)
        return torch.stack([rows[layer] for layer in range(n_layers)], 1)

    return onto_span(pb.emotion) - onto_span(pb.neutral)


def _z_names(model: LoadedModel) -> list[str]:
    return [f"blocks.{layer}.attn.hook_z" for layer in range(model.spec.n_layers)]


def _patched_source(z_emo: Tensor, pb: PairBatches) -> Tensor:
    """Emotion z moved to the target positions it would be patched into: [batch, pos, head, d]."""
    gather = pb.idx[:, :, None, None].expand(-1, -1, *z_emo.shape[2:])
    return z_emo.gather(1, gather)


def attribution(
    model: LoadedModel, pb: PairBatches, z_emo: dict[str, Tensor], ids: tuple[list[int], list[int]]
) -> Float[Tensor, "batch layer head"]:
    """Gradient × (patched − clean) z for every head, one forward and one backward pass."""
    names = _z_names(model)
    deltas: dict[str, Tensor] = {}
    z_neu: dict[str, Tensor] = {}

    def open_z(name: str):  # noqa: ANN202
        def fn(z: Tensor, hook: object) -> Tensor:
            # Adding a zero that requires grad puts z on the tape without changing it; its
            # gradient is dM/dz including every downstream path.
            d = torch.zeros_like(z, requires_grad=True)
            deltas[name], z_neu[name] = d, z.detach()
            return z + d

        return fn

    batch = pb.neutral
    with torch.enable_grad(), model.bridge.hooks(fwd_hooks=[(n, open_z(n)) for n in names]):
        out = model.hf(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=position_ids(batch.attention_mask),
            logits_to_keep=1,
            use_cache=False,
        )
        m = emotion_score(out.logits[:, -1], *ids)
        grads = torch.autograd.grad(m.sum(), [deltas[n] for n in names])
    mask = pb.mask[:, :, None, None].to(grads[0].dtype)
    per_layer = [
        (g * (_patched_source(z_emo[n], pb) - z_neu[n]) * mask).sum((1, 3)) for n, g in zip(names, grads, strict=True)
    ]
    return torch.stack(per_layer, 1).detach()


def unchanged_prefix(pb: PairBatches) -> int:
    """Columns before this one are identical in the clean and every patched neutral run.

    Nothing is patched before the first masked column, and where twins have the same tokens
    (and padding) up to a column, patching their z there writes back the same value; causal
    attention keeps everything before the first real change as it was.
    """
    t = pb.neutral.input_ids.shape[1]
    masked = pb.mask.any(0).nonzero().flatten()
    first_masked = int(masked[0]) if len(masked) else t
    differs = (pb.emotion.input_ids != pb.neutral.input_ids) | (pb.emotion.attention_mask != pb.neutral.attention_mask)
    cols = differs.any(0).nonzero().flatten()
    first_diff = int(cols[0]) if len(cols) else t
    return min(max(first_masked, first_diff), t - 1)


def exact_patching(
    model: LoadedModel,
    pb: PairBatches,
    z_emo: dict[str, Tensor],
    heads: list[tuple[int, int]],
    ids: tuple[list[int], list[int]],
    desc: str = "exact",
) -> dict[tuple[int, int], Float[Tensor, " batch"]]:
    """Per head: M(neutral with z_h patched from the emotion prompt) − M(neutral), per pair.

    The shared fast path (analysis.interventions.exact_patching_sites): blocks from the head's
    layer on, positions from the first changed column on, lexicon logits only (DESIGN §10).
    """
    out = exact_patching_sites(
        model, pb.neutral, z_emo, pb.idx, pb.mask, unchanged_prefix(pb), head_sites(heads), ids, desc
    )
    return {(s.layer, s.index): v for s, v in out.items()}


# --- one run: every emotion, every head -------------------------------------------------------


@dataclass(frozen=True)
class ScreeningConfig:
    model: str
    profile: str
    emotions: tuple[str, ...] = EMOTIONS
    positions: str = "all"
    exact_top_k: int = 0
    n_resamples: int = 5000
    seed: int = 0

    component = "head"  # what exact_top_k counts (a class attribute, not a field)

    def __post_init__(self) -> None:
        bad = [e for e in self.emotions if e not in EMOTIONS]
        if bad or not self.emotions:
            raise InputError(f"unknown emotion {bad[0]!r}; allowed: {', '.join(EMOTIONS)}" if bad else "no emotion given")
        if len(set(self.emotions)) != len(self.emotions):
            raise InputError(f"emotions {' '.join(self.emotions)}: an emotion is given twice")
        if self.positions not in ("all", "last", "span"):
            raise InputError(f"unknown positions {self.positions!r}; allowed: all, last, span")
        if self.exact_top_k < 0:
            raise InputError(f"--exact-top-k must be >= 0 (0 = every {self.component}; got {self.exact_top_k})")
        if self.n_resamples < 1:
            raise InputError(f"--n-resamples must be at least 1 (got {self.n_resamples})")


def correct_and_correlate(scores: list[dict], emotions: tuple[str, ...]) -> dict[str, float | None]:
    """Set each row's BH q across every exact score of the run (in place); return the Spearman
    correlation of attribution and exact per emotion (over the rows that have both)."""
    q = benjamini_hochberg([s["exact_p"] if s["exact_p"] is not None else np.nan for s in scores])
    for s, qv in zip(scores, q, strict=True):
        s["exact_q"] = None if np.isnan(qv) else float(qv)
    return {
        e: spearman(
            [s["attribution"] for s in scores if s["emotion"] == e and s["exact"] is not None],
            [s["exact"] for s in scores if s["emotion"] == e and s["exact"] is not None],
        )
        for e in emotions
    }


def screen(model: LoadedModel, cfg: ScreeningConfig, pairs: dict[str, PromptPairs]) -> dict:
    """Compute every score for every head × emotion; returns the JSON document."""
    spec = model.spec
    lex = lexicon_ids(model.tokenizer)
    all_heads = [(layer, head) for layer in range(spec.n_layers) for head in range(spec.n_heads)]
    scores: list[dict] = []
    per_emotion: dict[str, dict] = {}
    for emotion in cfg.emotions:
        pb = pair_batches(model, pairs[emotion], cfg.positions)
        ids = (lex[emotion], lex["neutral"])
        with torch.no_grad():
            z_emo = capture(model, pb.emotion, _z_names(model))
        d_attn = delta_attn(model, pb).mean(0)
        attr = attribution(model, pb, z_emo, ids).mean(0)
        if cfg.exact_top_k and cfg.exact_top_k < len(all_heads):
            order = sorted(all_heads, key=lambda lh: (-abs(float(attr[lh])), lh))
            exact_heads = sorted(order[: cfg.exact_top_k])
        else:
            exact_heads = all_heads
        exact = exact_patching(model, pb, z_emo, exact_heads, ids, desc=f"exact {emotion}")
        clusters = [span_clusters(pairs[emotion])[i] for i in pb.kept]
        per_emotion[emotion] = {"n_pairs": len(pairs[emotion]), "n_pairs_used": len(pb.kept), "n_clusters": len(set(clusters))}
        for layer, head in all_heads:
            row = {
                "layer": layer,
                "head": head,
                "emotion": emotion,
                "delta_attn": float(d_attn[layer, head]),
                "attribution": float(attr[layer, head]),
                "exact": None,
                "exact_ci_low": None,
                "exact_ci_high": None,
                "exact_p": None,
                "exact_q": None,
                "exact_n": None,
                "exact_n_clusters": None,
            }
            values = {"delta_attn": row["delta_attn"], "attribution": row["attribution"]}
            if (layer, head) in exact:
                values["exact"] = float(exact[(layer, head)].mean())
            for k, v in values.items():
                if not np.isfinite(v):
                    raise InputError(f"{k} of head {layer}:{head} ({emotion}) is {v}; refusing to write {cfg.model}'s screening")
            if (layer, head) in exact:
                eff = one_sample_effect(
                    exact[(layer, head)].double().numpy(), n_resamples=cfg.n_resamples, seed=cfg.seed, clusters=clusters
                )
                row.update(
                    exact=eff.mean, exact_ci_low=eff.ci_low, exact_ci_high=eff.ci_high, exact_p=eff.p,
                    exact_n=eff.n, exact_n_clusters=eff.n_clusters,
                )
            scores.append(row)
    corr = correct_and_correlate(scores, cfg.emotions)
    return {
        "schema": SCHEMA,
        "model": cfg.model,
        "profile": cfg.profile,
        "n_layers": spec.n_layers,
        "n_heads": spec.n_heads,
        "emotions": list(cfg.emotions),
        "params": asdict(cfg),
        "metric": "M = logsumexp(logits[emotion lexicon]) - logsumexp(logits[neutral lexicon]) at the last prompt position",
        "pairs": per_emotion,
        "scores": scores,
        "attribution_vs_exact": corr,
    }


def top_lines(doc: dict, rows: list[dict], n: int, key: str, component: str, ci_format: str = "+.4f") -> str:
    """The seed's "top heads" list for ranked rows of heads (component "head") or MLP units
    ("neuron"): the score named, and its interval and q where it is exact."""
    noun = "heads" if component == "head" else "MLP units"
    lines = [f"Top {n} {noun} by |{key}| ({doc['model']}, {doc['profile']}):"]
    for i, s in enumerate(rows, 1):
        extra = ""
        if key == "exact":
            extra = f"  95% CI [{s['exact_ci_low']:{ci_format}}, {s['exact_ci_high']:{ci_format}}]  q={s['exact_q']:.3g}"
        lines.append(
            f"{i:>3}. Layer {s['layer']}, {component.capitalize()} {s[component]}, Emotion: {s['emotion']}, "
            f"{key}: {s[key]:+.6f}{extra}"
        )
    return "\n".join(lines)


def format_top(doc: dict, n: int = 10) -> str:
    key = ranking_score(doc)
    rows = sorted((s for s in doc["scores"] if s[key] is not None), key=lambda s: -abs(s[key]))[:n]
    return top_lines(doc, rows, n, key, "head")


@cli
def main(argv: list[str] | None = None) -> None:
    from analysis.params import load_params

    ap = argparse.ArgumentParser(prog="python -m analysis.head_screening", description="Score every head × emotion.")
    ap.add_argument("--model", required=True, help="toy, a Hugging Face id, or a local folder")
    ap.add_argument("--profile", default=None, help="prompt set under data/prompts (default: params.yaml)")
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--emotions", nargs="+", default=None)
    ap.add_argument("--positions", default=None, help="all | last | span")
    ap.add_argument("--exact-top-k", type=int, default=None)
    ap.add_argument("--n-resamples", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    a = ap.parse_args(argv)
    p = load_params(a.params)
    cfg = ScreeningConfig(
        model=a.model,
        profile=a.profile or p.profile,
        emotions=tuple(a.emotions or p.emotions),
        positions=a.positions or p.screening.positions,
        exact_top_k=p.screening.exact_top_k if a.exact_top_k is None else a.exact_top_k,
        n_resamples=a.n_resamples or p.screening.n_resamples,
        seed=p.seed if a.seed is None else a.seed,
    )
    check_output_path(a.output, suffix=".json", inputs=[resolve_model_path(cfg.model), a.params, PROMPTS_ROOT / cfg.profile])
    pairs = {e: load_pairs(e, cfg.profile) for e in cfg.emotions}
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    model = load_model(cfg.model)
    doc = screen(model, cfg, pairs)
    write_json(a.output, doc)
    print(format_top(doc))
    print(f"wrote {a.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
