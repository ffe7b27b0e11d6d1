"""Sites: the components an intervention edits (an attention head's z, or an MLP unit's post-activation)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from analysis.base.vocabulary import mlp_post_name, z_hook

Kind = Literal["head", "mlp"]


@dataclass(frozen=True, order=True)
class Site:
    """A component: attention head `index` of `layer`, or MLP neuron `index` of `layer`."""

    kind: Kind
    layer: int
    index: int

    @property
    def hook_name(self) -> str:
        if self.kind == "head":
            return z_hook(self.layer)
        return mlp_post_name(self.layer)

    @property
    def label(self) -> str:
        return f"{self.layer}:{self.index}" if self.kind == "head" else f"mlp:{self.layer}:{self.index}"


def head_sites(heads: Iterable[tuple[int, int]]) -> tuple[Site, ...]:
    return tuple(Site("head", layer, head) for layer, head in heads)


def unit_sites(units: Iterable[tuple[int, int]]) -> tuple[Site, ...]:
    """MLP neurons (layer, neuron) as sites (`blocks.L.mlp.hook_post[..., n]`)."""
    return tuple(Site("mlp", layer, neuron) for layer, neuron in units)
