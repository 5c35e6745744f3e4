"""The `convert` task: KITTI folders -> sharded COCO json (DINO / Deformable DETR).

Spec fields (TAO names): input_source, results_dir, image_dir_name, label_dir_name,
num_shards (32), num_partitions (1), mapping_path (None -> DEFAULT_TARGET_CLASS_MAPPING),
plus optional data_root and image_extension.

input_source is a .txt file naming one data source folder per line (blank lines and lines
starting with '#' ignored). A relative folder is resolved against data_root when given, else
against the folder holding input_source. Each source holds <image_dir_name>/ and
<label_dir_name>/ with one KITTI .txt per image, same stem.

Output, following TAO's naming:

    <results_dir>/<name>/<name>-shard-00000-of-00032.json                 (num_partitions 1)
    <results_dir>/<name>/<name>-fold-000-of-002-shard-00000-of-00032.json (num_partitions > 1)

<name> is the source line's last path component; when two sources share it, as many trailing
components as needed to tell them apart are joined with '_' (raccoon/train -> raccoon_train).

Differences from TAO, on purpose:
- Frames stay in sorted order and the last shard is NOT padded with random duplicates, so the
  union of all shards is exactly the dataset and every id is unique. Folds and shards are
  contiguous, near-equal chunks of the sorted frames (shards may be empty when there are
  fewer frames than shards; all num_shards files are still written).
- Image ids 1..N and annotation ids 1..M run over sources (input_source order), folds, shards and
  frames in that order, so they are unique across all output files of one run.
- Boxes with zero or negative width/height are dropped (COCO losses cannot use them) and counted.

Kept from TAO: categories are the unique mapped target names in descending order with ids 1..K
(the default mapping gives person=1, face=2, bag=3); classes missing from the mapping are
skipped; images' width/height come from the file, EXIF rotation applied; file_name is
"<source line>/<image_dir_name>/<file>", relative to the data root.

Everything is read and checked before the first file is written, so a bad input leaves
results_dir untouched.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tao_core.data.images import IMAGE_EXTENSIONS, image_size
from tao_core.data.kitti import (
    KittiObject,
    map_classes,
    normalize_mapping,
    read_kitti_labels,
)
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_text
from tao_core.spec.access import spec_get, spec_get_default

DEFAULT_TARGET_CLASS_MAPPING: dict[str, str] = {
    "Person": "person",
    "Person Group": "person",
    "Rider": "person",
    "backpack": "bag",
    "face": "face",
    "large_bag": "bag",
    "person": "person",
    "person group": "person",
    "person_group": "person",
    "personal_bag": "bag",
    "rider": "person",
    "rolling_bag": "bag",
    "rollingbag": "bag",
    "largebag": "bag",
    "personalbag": "bag",
}



logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Source:
    line: str  # as written in input_source; becomes the file_name prefix
    folder: Path
    name: str  # output sub-folder and file prefix


@dataclass
class ConvertSummary:
    """What convert() wrote; returned for logging and status.json."""

    files: list[Path]
    num_images: int
    num_annotations: int
    categories: list[dict]
    dropped_degenerate: int
    skipped_unmapped: int


def convert(cfg) -> ConvertSummary:
    """Run the convert task from a spec-like object (attributes as in the module docstring)."""
    from tao_core.specs.detr_common import ConvertConfig  # the schema's defaults for a partial cfg

    return kitti_to_coco_shards(
        input_source=cfg.input_source,
        results_dir=cfg.results_dir,
        image_dir_name=cfg.image_dir_name,
        label_dir_name=cfg.label_dir_name,
        num_shards=spec_get_default(cfg, "num_shards", ConvertConfig),
        num_partitions=spec_get_default(cfg, "num_partitions", ConvertConfig),
        mapping_path=spec_get(cfg, "mapping_path"),
        data_root=spec_get(cfg, "data_root"),
        image_extension=spec_get(cfg, "image_extension"),  # unset: every IMAGE_EXTENSIONS file
    )


def kitti_to_coco_shards(
    input_source: str | os.PathLike,
    results_dir: str | os.PathLike,
    image_dir_name: str,
    label_dir_name: str,
    num_shards: int = 32,
    num_partitions: int = 1,
    mapping_path: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    image_extension: str | None = None,
) -> ConvertSummary:
    """Convert the KITTI sources listed in input_source into sharded COCO json files."""
    for field, value in (("num_shards", num_shards), ("num_partitions", num_partitions)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TaoUserError(f"{field}: got {value!r}; expected an integer > 0")
    if not image_dir_name or not label_dir_name:
        raise TaoUserError("image_dir_name and label_dir_name must both be set")
    if results_dir is None or str(results_dir) == "":
        raise TaoUserError("results_dir must be set")
    mapping = load_mapping(mapping_path)
    sources = read_input_source(input_source, data_root)
    exts = _extensions(image_extension)

    # Pass 1: read and validate everything; nothing is written yet.
    per_source, unmapped, total = [], Counter(), 0
    for source in sources:
        frames, source_unmapped, n_objects = _read_source(source, image_dir_name, label_dir_name, exts, mapping)
        per_source.append(frames)
        unmapped += source_unmapped
        total += n_objects
    skipped = sum(unmapped.values())
    _check_mapping_kept(unmapped, total, mapping_path)
    categories = _categories(mapping)

    # Pass 2: assign ids in output order and build every shard in memory.
    outputs: list[tuple[Path, dict]] = []
    ids = _Ids()
    for source, frames in zip(sources, per_source, strict=True):
        for fold, fold_frames in enumerate(_chunks(frames, num_partitions)):
            for shard, shard_frames in enumerate(_chunks(fold_frames, num_shards)):
                name = _shard_name(source.name, fold, num_partitions, shard, num_shards)
                doc = _coco_doc(shard_frames, categories, ids)
                outputs.append((Path(results_dir) / source.name / name, doc))

    for path, doc in outputs:
        atomic_write_text(path, json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    return ConvertSummary(
        files=[p for p, _ in outputs],
        num_images=ids.image,
        num_annotations=ids.annotation,
        categories=categories,
        dropped_degenerate=ids.dropped,
        skipped_unmapped=skipped,
    )


@dataclass
class _Ids:
    """Last image / annotation id used, shared by all shards of one run so ids never repeat."""

    image: int = 0
    annotation: int = 0
    dropped: int = 0


def _coco_doc(frames, categories: list[dict], ids: _Ids) -> dict:
    cat_ids = {c["name"]: c["id"] for c in categories}
    images, anns = [], []
    for file_name, (width, height), objects in frames:
        ids.image += 1
        images.append({"id": ids.image, "file_name": file_name, "height": height, "width": width})
        for obj in objects:
            # Rounded so x2 - x1 float noise (98.33000000000004) does not reach the json.
            w, h = round(obj.x2 - obj.x1, 6), round(obj.y2 - obj.y1, 6)
            if w <= 0 or h <= 0:
                ids.dropped += 1
                continue
            ids.annotation += 1
            anns.append({
                "id": ids.annotation,
                "image_id": ids.image,
                "category_id": cat_ids[obj.type],
                "bbox": [obj.x1, obj.y1, w, h],
                "area": round(w * h, 6),
                "iscrowd": 0,
            })
    return {"images": images, "annotations": anns, "categories": categories}


def load_mapping(mapping_path: str | os.PathLike | None) -> dict[str, str]:
    """Source->target class mapping (keys lower-cased); None -> DEFAULT_TARGET_CLASS_MAPPING."""
    if mapping_path is None or str(mapping_path) == "":
        return normalize_mapping(DEFAULT_TARGET_CLASS_MAPPING, "DEFAULT_TARGET_CLASS_MAPPING")
    path = Path(mapping_path)
    if not path.is_file():
        raise TaoUserError(f"mapping_path: {path} does not exist or is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaoUserError(f"mapping_path: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not data:
        raise TaoUserError(
            f"mapping_path: {path} holds {type(data).__name__}; expected a non-empty JSON object "
            '{"source class": "target class", ...}'
        )
    return normalize_mapping(data, f"mapping_path {path}")


def read_input_source(
    input_source: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> list[_Source]:
    """The data source folders listed in input_source, with unique output names."""
    if input_source is None or str(input_source) == "":
        raise TaoUserError("input_source must be set to a .txt file listing data source folders")
    path = Path(input_source)
    if not path.is_file():
        raise TaoUserError(f"input_source: {path} does not exist or is not a file")
    root = Path(data_root) if data_root else path.parent
    lines = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        folder = root / line  # an absolute line stays absolute
        if not folder.is_dir():
            raise TaoUserError(f"{path}:{n}: data source folder {folder} does not exist")
        lines.append((line, folder))
    if not lines:
        raise TaoUserError(f"input_source: {path} lists no data source folders")
    folders = [f.resolve() for _, f in lines]
    if len(set(folders)) != len(folders):
        raise TaoUserError(f"input_source: {path} lists the same folder twice")
    names = _unique_names([line for line, _ in lines])
    return [_Source(line, folder, name) for (line, folder), name in zip(lines, names, strict=True)]


def _unique_names(lines: list[str]) -> list[str]:
    # Shortest trailing-component count k that makes the names distinct. Lines identical in
    # every component (same relative path under different roots cannot happen here, but
    # "a/b" vs "a_b" can collide after joining) fall back to an appended index.
    parts = [[p for p in Path(line).parts if p not in (Path(line).anchor, ".", "..")] or ["source"]
             for line in lines]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["_".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{n}_{i}" for i, n in enumerate(names)]


def _extensions(image_extension: str | None) -> tuple[str, ...]:
    if not image_extension:
        return IMAGE_EXTENSIONS
    ext = image_extension.lower()
    return (ext if ext.startswith(".") else "." + ext,)


def _read_source(source: _Source, image_dir_name: str, label_dir_name: str, exts, mapping):
    """Sorted frames [(file_name, (w, h), mapped objects)] and the count of unmapped objects."""
    image_dir = source.folder / image_dir_name
    label_dir = source.folder / label_dir_name
    for what, folder in (("image_dir_name", image_dir), ("label_dir_name", label_dir)):
        if not folder.is_dir():
            raise TaoUserError(f"{what}: {folder} (data source {source.line!r}) does not exist")
    images = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in exts)
    if not images:
        raise TaoUserError(f"{image_dir} holds no images with extension {'/'.join(exts)}")
    stems: dict[str, Path] = {}
    for img in images:
        if img.stem in stems:
            raise TaoUserError(f"{image_dir}: {stems[img.stem].name} and {img.name} share a stem; "
                               "each image needs its own label file")
        stems[img.stem] = img
    missing = [img.stem + ".txt" for img in images if not (label_dir / (img.stem + ".txt")).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise TaoUserError(f"{label_dir}: missing KITTI label files for {len(missing)} images: {shown}")

    frames, unmapped, total = [], Counter(), 0
    prefix = Path(source.line) / image_dir_name
    for img in images:
        objects: list[KittiObject] = read_kitti_labels(label_dir / (img.stem + ".txt"))
        kept = map_classes(objects, mapping)
        total += len(objects)
        if len(kept) != len(objects):
            known = _lower_keys(mapping)
            unmapped.update(o.type.lower() for o in objects if o.type.lower() not in known)
        frames.append(((prefix / img.name).as_posix(), image_size(img), kept))
    return frames, unmapped, total


def _lower_keys(mapping: Mapping[str, str]) -> set[str]:
    return {k.lower() for k in mapping}


# Share of the boxes a mapping may drop before the conversion warns that it probably does not
# know the dataset's classes (TAO's default mapping knows person / face / bag only).
MOSTLY_DROPPED = 0.5


def _check_mapping_kept(unmapped: Counter, total: int, mapping_path) -> None:
    """Dropping every box is an error, most of them a warning; both name the classes seen and the field."""
    n = sum(unmapped.values())
    if not n:
        return
    which = "the default mapping (DEFAULT_TARGET_CLASS_MAPPING)" if not mapping_path else f"mapping_path {mapping_path}"
    seen = ", ".join(f"{name} ({count})" for name, count in unmapped.most_common(10))
    fix = ('set mapping_path to a JSON file mapping each label class to the class to learn, e.g. '
           f'{{"{unmapped.most_common(1)[0][0]}": "{unmapped.most_common(1)[0][0]}"}}')
    if n == total:
        raise TaoUserError(f"{which} keeps none of the {total} boxes: the labels' classes are {seen}; {fix}")
    if n > MOSTLY_DROPPED * total:
        logger.warning("%s drops %d of %d boxes, of the classes %s; %s", which, n, total, seen, fix)
    else:
        logger.info("%s drops %d of %d boxes, of the classes %s", which, n, total, seen)


def _categories(mapping: Mapping[str, str]) -> list[dict]:
    # TAO's get_categories: unique target names sorted descending, ids from 1 (0 = background).
    names = sorted(set(mapping.values()), reverse=True)
    return [{"id": i, "name": n, "supercategory": n} for i, n in enumerate(names, start=1)]


def _chunks(items: list, n: int) -> list[list]:
    # n contiguous near-equal chunks (the first len % n get one extra item), possibly empty.
    base, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        out.append(items[start:start + size])
        start += size
    return out


def _shard_name(name: str, fold: int, num_partitions: int, shard: int, num_shards: int) -> str:
    fold_part = f"-fold-{fold:03d}-of-{num_partitions:03d}" if num_partitions > 1 else ""
    return f"{name}{fold_part}-shard-{shard:05d}-of-{num_shards:05d}.json"
