"""The package's vocabulary, defined once: emotions, position modes, hook names.

Hook names are the transformer-lens bridge's (the same for every family): `hook_z` is a head's
output before the out-projection, `mlp.hook_post` the MLP's post-activation hidden layer.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("gratitude", "anger", "apology")
NEUTRAL = "neutral"
POSITION_MODES = ("all", "last", "span")  # which prompt positions patching copies


def z_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def pattern_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def mlp_post_name(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"
