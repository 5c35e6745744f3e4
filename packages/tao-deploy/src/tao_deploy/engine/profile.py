"""The optimization profile: for each input, the min / opt / max shape the engine accepts.

TensorRT builds kernels for this range (and tunes for `opt`); ONNX Runtime would accept any
shape, but the engine refuses what TensorRT would refuse, so an engine behaves the same on
either backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tao_core.errors import TaoUserError
from tao_deploy.engine.onnx_io import TensorSpec


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_json(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, d: dict) -> ShapeRange:
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))


Profile = dict[str, ShapeRange]


def parse_shape(text: str) -> tuple[int, ...]:
    """'8x3x544x960' -> (8, 3, 544, 960): tao-converter's `-p` shape syntax."""
    if not re.fullmatch(r"\s*\d+(\s*x\s*\d+)*\s*", text):
        raise TaoUserError(f"bad shape {text!r}: expected positive integers separated by 'x', e.g. 1x3x544x960")
    dims = tuple(int(p) for p in text.split("x"))
    if any(d <= 0 for d in dims):
        raise TaoUserError(f"bad shape {text!r}: every dimension must be > 0")
    return dims


def batch_profile(
    inputs: list[TensorSpec],
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 1,
    dims: dict[str, tuple[int, ...]] | None = None,
) -> Profile:
    """A profile that varies only the batch (dim 0), as TAO's gen_trt_engine builds it.

    A static batch in the ONNX wins over the requested range (min = opt = max = that batch).
    Other dynamic dims must be given in `dims` (per input, without the batch dim).
    """
    if not 0 < min_batch <= opt_batch <= max_batch:
        raise TaoUserError(
            f"batch sizes must satisfy 0 < min <= opt <= max; got min={min_batch} opt={opt_batch} max={max_batch}"
        )
    dims = dims or {}
    profile: Profile = {}
    for spec in inputs:
        rest = list(spec.shape[1:])
        given = dims.get(spec.name)
        if given is not None:
            if len(given) != len(rest):
                raise TaoUserError(
                    f"input {spec.name!r}: {len(given)} dims given {tuple(given)}, the model has {len(rest)} "
                    f"after the batch dim (shape {spec.shape})"
                )
            for i, (g, r) in enumerate(zip(given, rest)):
                if isinstance(r, int) and r > 0 and g != r:
                    raise TaoUserError(f"input {spec.name!r}: dim {i + 1} is fixed to {r} in the model, got {g}")
            rest = list(given)
        unknown = [i + 1 for i, r in enumerate(rest) if not (isinstance(r, int) and r > 0)]
        if unknown:
            raise TaoUserError(
                f"input {spec.name!r} has dynamic dims {unknown} besides the batch (shape {spec.shape}); "
                "give them explicitly (input dims / -d, or a full -p profile)"
            )
        b = spec.shape[0] if spec.shape else None
        if isinstance(b, int) and b > 0:
            lo = opt = hi = b
        else:
            lo, opt, hi = min_batch, opt_batch, max_batch
        profile[spec.name] = ShapeRange((lo, *rest), (opt, *rest), (hi, *rest))
    return profile


def validate_profile(profile: Profile, inputs: list[TensorSpec]) -> None:
    """Every input covered, ranks match, fixed dims respected, min <= opt <= max per dim."""
    names = [s.name for s in inputs]
    unknown = sorted(set(profile) - set(names))
    if unknown:
        raise TaoUserError(f"profile names input(s) {unknown} that the model does not have; its inputs are {names}")
    for spec in inputs:
        if spec.name not in profile:
            raise TaoUserError(f"no optimization profile for input {spec.name!r} (shape {spec.shape})")
        r = profile[spec.name]
        for label, shape in (("min", r.min), ("opt", r.opt), ("max", r.max)):
            if len(shape) != len(spec.shape):
                raise TaoUserError(
                    f"input {spec.name!r}: {label} shape {_fmt(shape)} has rank {len(shape)}, "
                    f"the model's input has rank {len(spec.shape)} {spec.shape}"
                )
            if any(d <= 0 for d in shape):
                raise TaoUserError(f"input {spec.name!r}: {label} shape {_fmt(shape)} has a dim <= 0")
        for i, (lo, opt, hi) in enumerate(zip(r.min, r.opt, r.max)):
            if not lo <= opt <= hi:
                raise TaoUserError(
                    f"input {spec.name!r}: dim {i} must satisfy min <= opt <= max, got "
                    f"{lo}, {opt}, {hi} (shapes {_fmt(r.min)}, {_fmt(r.opt)}, {_fmt(r.max)})"
                )
            fixed = spec.shape[i]
            if isinstance(fixed, int) and fixed > 0 and not lo == opt == hi == fixed:
                raise TaoUserError(
                    f"input {spec.name!r}: dim {i} is fixed to {fixed} in the model, "
                    f"but the profile gives {lo}, {opt}, {hi}"
                )


def check_shape_in_profile(name: str, shape: tuple[int, ...], r: ShapeRange) -> None:
    """Refuse what a TensorRT engine would refuse, with the allowed range in the message."""
    ok = len(shape) == len(r.min) and all(lo <= d <= hi for d, lo, hi in zip(shape, r.min, r.max))
    if not ok:
        raise TaoUserError(
            f"input {name!r} has shape {_fmt(shape)}, outside the engine's profile "
            f"{_fmt(r.min)} .. {_fmt(r.max)}; rebuild with a wider profile (batch sizes / -p)"
        )


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)
