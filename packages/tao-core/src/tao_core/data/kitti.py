"""KITTI object label files: read, write, and target class mapping.

One object per line, space separated:

    type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]

15 fields for ground truth; a 16th `score` field is present in prediction files (TAO's inference
and `kitti_dump` outputs). Class names are lower-cased on read by default, as TAO's converters do,
so a target class mapping must be written with lower-case keys (map_classes matches keys
case-insensitively for the same reason).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_text

_NUMERIC_FIELDS = (
    "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2",
    "height", "width", "length", "x", "y", "z", "rotation_y", "score",
)
_EXPECTED = (
    "15 space-separated fields 'type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y' "
    "(16 with a trailing score)"
)


@dataclass(frozen=True)
class KittiObject:
    """One KITTI label line. bbox is in pixels, (x1, y1) top-left, (x2, y2) bottom-right."""

    type: str
    bbox: tuple[float, float, float, float]
    truncated: float = 0.0
    occluded: int = 0
    alpha: float = 0.0
    dimensions: tuple[float, float, float] = (0.0, 0.0, 0.0)  # height, width, length (m)
    location: tuple[float, float, float] = (0.0, 0.0, 0.0)  # x, y, z in camera coords (m)
    rotation_y: float = 0.0
    score: float | None = None

    @property
    def x1(self) -> float:
        return self.bbox[0]

    @property
    def y1(self) -> float:
        return self.bbox[1]

    @property
    def x2(self) -> float:
        return self.bbox[2]

    @property
    def y2(self) -> float:
        return self.bbox[3]


def parse_kitti_line(line: str, where: str = "<string>", lowercase: bool = True) -> KittiObject:
    """Parse one label line; `where` ("file:line") prefixes the error message."""
    parts = line.split()
    if len(parts) not in (15, 16):
        raise TaoUserError(f"{where}: found {len(parts)} fields; expected {_EXPECTED}")
    values: list[float] = []
    for name, text in zip(_NUMERIC_FIELDS, parts[1:], strict=False):
        try:
            values.append(float(text))
        except ValueError:
            raise TaoUserError(f"{where}: field '{name}' is {text!r}; expected a number") from None
    occluded = values[1]
    if occluded != int(occluded):
        raise TaoUserError(f"{where}: field 'occluded' is {parts[2]!r}; expected an integer")
    name = parts[0].lower() if lowercase else parts[0]
    return KittiObject(
        type=name,
        truncated=values[0],
        occluded=int(occluded),
        alpha=values[2],
        bbox=(values[3], values[4], values[5], values[6]),
        dimensions=(values[7], values[8], values[9]),
        location=(values[10], values[11], values[12]),
        rotation_y=values[13],
        score=values[14] if len(values) == 15 else None,
    )


def read_kitti_labels(path: str | os.PathLike, lowercase: bool = True) -> list[KittiObject]:
    """All objects in a KITTI label file; blank lines are skipped.

    Class names are lower-cased unless lowercase=False. A malformed line raises TaoUserError
    naming the file, the 1-based line number and the expected layout.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaoUserError(f"KITTI label file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise TaoUserError(f"{path}: not a UTF-8 text file ({e.reason}); expected KITTI labels") from None
    return [
        parse_kitti_line(line, f"{path}:{n}", lowercase)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def format_kitti_line(obj: KittiObject) -> str:
    """One label line. bbox and score get 3 decimals (TAO's inference format), the rest 2."""
    if not obj.type or any(c.isspace() for c in obj.type):
        # A space would shift every later field on read-back.
        raise TaoUserError(f"KITTI class name {obj.type!r} must be non-empty and contain no whitespace")
    fields = [obj.type, f"{obj.truncated:.2f}", str(int(obj.occluded)), f"{obj.alpha:.2f}"]
    fields += [f"{v:.3f}" for v in obj.bbox]
    fields += [f"{v:.2f}" for v in (*obj.dimensions, *obj.location, obj.rotation_y)]
    if obj.score is not None:
        fields.append(f"{obj.score:.3f}")
    return " ".join(fields)


def write_kitti_labels(path: str | os.PathLike, objects: Iterable[KittiObject]) -> None:
    """Write objects (score as 16th field when set) atomically; no objects -> an empty file."""
    lines = [format_kitti_line(o) + "\n" for o in objects]
    atomic_write_text(path, "".join(lines))


def normalize_mapping(mapping: Mapping[str, str], source: str = "target class mapping") -> dict[str, str]:
    """Lower-case the keys of a source->target mapping; targets keep their spelling.

    Keys that differ only by case must agree on the target (TAO's default mapping lists both
    "Person" and "person" -> "person"); conflicting ones raise TaoUserError naming `source`.
    """
    out: dict[str, str] = {}
    for key, target in mapping.items():
        if not isinstance(key, str) or not isinstance(target, str) or not key or not target:
            raise TaoUserError(
                f"{source}: entry {key!r}: {target!r}; expected non-empty string class names"
            )
        low = key.lower()
        if low in out and out[low] != target:
            raise TaoUserError(
                f"{source}: '{key}' maps to {target!r} but another spelling of it maps to "
                f"{out[low]!r}; class names are compared lower-cased"
            )
        out[low] = target
    return out


def map_classes(objects: Iterable[KittiObject], mapping: Mapping[str, str]) -> list[KittiObject]:
    """Rename each object's class through a source->target mapping.

    Matching is case-insensitive (labels are lower-cased on read). Objects whose class is not
    a key of `mapping` are dropped: the mapping defines which classes the network learns.
    """
    table = normalize_mapping(mapping)
    return [replace(o, type=table[o.type.lower()]) for o in objects if o.type.lower() in table]
