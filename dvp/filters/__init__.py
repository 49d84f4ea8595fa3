"""The filter catalogue. A filter is a plain function (image, faces, params) -> image;
it may change `image` in place and must return the result. I/O never happens here.

A job names its filters with a spec string: `NAME` or `NAME:key=value,key=value`,
or several of these joined by `|`, applied in order (`pixelate:blocks=12|mesh`);
each is checked against its filter's declared parameters before anything is
published."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dvp.errors import FilterSpecError
from dvp.faces import Face
from dvp.filters import blackout, blur, cartoon, emoji, mask, mesh, mustache, outline, pixelate, sunglasses
from dvp.messages import STRICT


@dataclass(frozen=True)
class Param:
    default: float
    low: float
    high: float
    help: str
    integer: bool = False


@dataclass(frozen=True)
class FilterDef:
    name: str
    apply: Callable[[np.ndarray, list[Face], Mapping[str, float]], np.ndarray]
    params: Mapping[str, Param]
    summary: str
    needs_landmarks: bool = False


def _catalogue(*modules: Any) -> dict[str, FilterDef]:  # filter modules: NAME, PARAMS, apply, a docstring
    return {m.NAME: FilterDef(m.NAME, m.apply, {k: Param(*v) for k, v in m.PARAMS.items()},
                              m.__doc__.strip().splitlines()[0], getattr(m, "NEEDS_LANDMARKS", False))
            for m in modules}


FILTERS = _catalogue(blur, pixelate, blackout, cartoon, emoji, mask, mustache, sunglasses, mesh, outline)
MAX_STEPS = 8  # filters in one chain


@dataclass(frozen=True)
class Step:
    """One filter with its parameters."""
    filter: FilterDef
    params: Mapping[str, float]

    def __str__(self) -> str:
        given = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items())
                         if v != self.filter.params[k].default)
        return f"{self.filter.name}:{given}" if given else self.filter.name

    def apply(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        return self.filter.apply(image, faces, self.params)


@dataclass(frozen=True)
class FilterSpec:
    """Filters applied one after the other."""
    steps: tuple[Step, ...]

    @property
    def needs_landmarks(self) -> bool:
        return any(step.filter.needs_landmarks for step in self.steps)

    def __str__(self) -> str:
        return "|".join(map(str, self.steps))

    def apply(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        for step in self.steps:
            image = step.apply(image, faces)
        return image


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def parse_spec(spec: str) -> FilterSpec:
    """'pixelate:blocks=8|mesh' -> FilterSpec, or FilterSpecError saying what is wrong."""
    parts = [part.strip() for part in spec.split("|")]
    if len(parts) > MAX_STEPS:
        raise FilterSpecError(f"{len(parts)} filters in one chain; at most {MAX_STEPS}")
    if not all(parts):
        raise FilterSpecError(f"filter spec {spec!r} has an empty step; write NAME[:key=value,...][|NAME...]")
    return FilterSpec(tuple(_parse_step(part) for part in parts))


def _parse_step(spec: str) -> Step:
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in FILTERS:
        raise FilterSpecError(f"unknown filter {name!r}; choose one of: {', '.join(FILTERS)}")
    fdef = FILTERS[name]
    params = {k: p.default for k, p in fdef.params.items()}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, raw = item.partition("=")
        if key not in fdef.params:
            known = ", ".join(fdef.params) or "none"
            raise FilterSpecError(f"filter {name!r} has no parameter {key!r} (parameters: {known})")
        p = fdef.params[key]
        try:
            value = float(raw) if sep else float("nan")
        except ValueError:
            value = float("nan")
        if not (p.low <= value <= p.high) or (p.integer and not value.is_integer()):
            kind = "an integer" if p.integer else "a number"
            raise FilterSpecError(
                f"filter {name!r}: {key} must be {kind} from {_fmt(p.low)} to {_fmt(p.high)}, got {raw!r}")
        params[key] = int(value) if p.integer else value
    return Step(fdef, params)


def privacy_for(spec: FilterSpec, requested: str | None = None) -> str:
    """A job's privacy mode: strict unless asked otherwise, whatever its filters.
    Landmark filters draw on each detection's mesh, which the workers send with
    the boxes; on a frame where a face is only tracked, not found, they fall back
    to its box, and every covering step of the chain still covers it."""
    return STRICT if requested is None else requested
