"""Head and unit specs: the one `--head-spec` flag names attention heads or MLP units, never both."""

from __future__ import annotations

import re
from dataclasses import dataclass

from analysis.core.loading import ModelSpec
from analysis.base.errors import InputError


Head = tuple[int, int]


Unit = tuple[int, int]  # (layer, neuron)


@dataclass(frozen=True)
class HeadSpec:
    """Parsed `--head-spec`: explicit heads, or the top N of a screening file."""

    heads: tuple[Head, ...] = ()
    top: int | None = None

    @property
    def is_top(self) -> bool:
        return self.top is not None


@dataclass(frozen=True)
class UnitSpec:
    """Parsed unit spec: explicit MLP units (layer, neuron), or the top K of a unit screening file."""

    units: tuple[Unit, ...] = ()
    top: int | None = None

    @property
    def is_top(self) -> bool:
        return self.top is not None


_PAIR = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


_TOP = re.compile(r"^\s*top\s*:\s*(\d+)\s*$")


_UNIT = re.compile(r"^\s*mlp\s*:\s*(\d+)\s*:\s*(\d+)\s*$", re.IGNORECASE)


_NEURON = re.compile(r"^\s*(\d+)\s*$")


_UNIT_TOP = re.compile(r"^\s*mlp-top\s*:\s*(\d+)\s*$", re.IGNORECASE)


_UNIT_HINT = 'expected "mlp:L:N", "mlp:L:N1,N2" (neurons of layer L), "mlp:L1:N1,mlp:L2:N2" or "mlp-top:K", e.g. "mlp:3:17,42"'


def is_unit_spec(spec: str | None) -> bool:
    """Whether a spec names MLP units (it starts with `mlp`); cheap, no checks."""
    return spec is not None and spec.strip().lower().startswith("mlp")


def parse_head_spec(spec: str) -> HeadSpec:
    """Parse `"0:0"`, `"0:0,3:5"` or `"top:N"`; anything else is an InputError."""
    hint = 'expected "L:H", "L1:H1,L2:H2" or "top:N", e.g. "0:0,3:5"'
    if spec is None or not spec.strip():
        raise InputError(f"head spec is empty; {hint}")
    if m := _TOP.match(spec):
        n = int(m.group(1))
        if n < 1:
            raise InputError(f"head spec {spec!r}: top:N needs N >= 1")
        return HeadSpec(top=n)
    heads: list[Head] = []
    for part in spec.split(","):
        m = _PAIR.match(part)
        if not m:
            if is_unit_spec(part):
                raise InputError(f"head spec {spec!r} mixes heads and MLP units; give heads or units (mlp:L:N), not both")
            raise InputError(f"head spec {spec!r}: cannot parse {part.strip()!r}; {hint}")
        head = (int(m.group(1)), int(m.group(2)))
        if head in heads:
            raise InputError(f"head spec {spec!r}: head {head[0]}:{head[1]} is given twice")
        heads.append(head)
    return HeadSpec(heads=tuple(heads))


def parse_unit_spec(spec: str) -> UnitSpec:
    """Parse `"mlp:3:17"`, `"mlp:3:17,42"`, `"mlp:0:1,mlp:2:5"` or `"mlp-top:K"`.

    A bare number continues the layer of the `mlp:L:N` before it, so `mlp:3:17,42` is
    neurons 17 and 42 of layer 3. Anything else is an InputError.
    """
    if spec is None or not spec.strip():
        raise InputError(f"unit spec is empty; {_UNIT_HINT}")
    if m := _UNIT_TOP.match(spec):
        k = int(m.group(1))
        if k < 1:
            raise InputError(f"unit spec {spec!r}: mlp-top:K needs K >= 1")
        return UnitSpec(top=k)
    units: list[Unit] = []
    layer: int | None = None
    for part in spec.split(","):
        if m := _UNIT.match(part):
            layer, neuron = int(m.group(1)), int(m.group(2))
        elif (m := _NEURON.match(part)) and layer is not None:
            neuron = int(m.group(1))
        elif _PAIR.match(part) or _TOP.match(part):
            raise InputError(f"unit spec {spec!r} mixes heads and MLP units; give heads (L:H) or units (mlp:L:N), not both")
        else:
            raise InputError(f"unit spec {spec!r}: cannot parse {part.strip()!r}; {_UNIT_HINT}")
        if (layer, neuron) in units:
            raise InputError(f"unit spec {spec!r}: unit mlp:{layer}:{neuron} is given twice")
        units.append((layer, neuron))
    return UnitSpec(units=tuple(units))


def parse_site_spec(spec: str) -> HeadSpec | UnitSpec:
    """A head spec or a unit spec, told apart by the `mlp` prefix."""
    return parse_unit_spec(spec) if is_unit_spec(spec) else parse_head_spec(spec)


def check_heads(heads: tuple[Head, ...], spec: ModelSpec) -> tuple[Head, ...]:
    for layer, head in heads:
        if not 0 <= layer < spec.n_layers:
            raise InputError(
                f"head {layer}:{head}: layer {layer} is out of range for {spec.name} "
                f"(layers 0..{spec.n_layers - 1})"
            )
        if not 0 <= head < spec.n_heads:
            raise InputError(
                f"head {layer}:{head}: head {head} is out of range for {spec.name} "
                f"(heads 0..{spec.n_heads - 1})"
            )
    return heads


def check_units(units: tuple[Unit, ...], spec: ModelSpec) -> tuple[Unit, ...]:
    """Check MLP units against the loaded model's shape (like `check_heads`)."""
    if units and not spec.d_mlp:
        raise InputError(
            f"unit mlp:{units[0][0]}:{units[0][1]}: model {spec.name} has no MLP units (d_mlp = {spec.d_mlp}: "
            f"attention-only); use a head spec (L:H) for it"
        )
    for layer, neuron in units:
        if not 0 <= layer < spec.n_layers:
            raise InputError(
                f"unit mlp:{layer}:{neuron}: layer {layer} is out of range for {spec.name} "
                f"(layers 0..{spec.n_layers - 1})"
            )
        if not 0 <= neuron < spec.d_mlp:  # type: ignore[operator]  # d_mlp checked above
            raise InputError(
                f"unit mlp:{layer}:{neuron}: neuron {neuron} is out of range for {spec.name} "
                f"(neurons 0..{spec.d_mlp - 1} in each of its {spec.n_layers} MLP layers)"  # type: ignore[operator]
            )
    return units
