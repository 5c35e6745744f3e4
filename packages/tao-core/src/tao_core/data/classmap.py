"""Class names of a DINO / Deformable DETR spec: the classmap file, and names by category id.

TAO's convention: category ids are the model's class indices; a classmap file names class id
i + 1 on line i (0-based), so id 0 is background.
"""

from __future__ import annotations

import os
from typing import Any

from tao_core.errors import TaoUserError
from tao_core.spec.access import spec_get

CLASSMAP_FIELD = "dataset.infer_data_sources.classmap"
SOURCE_FIELDS = ("test_data_sources", "val_data_sources", "train_data_sources")


def read_classmap(path: str | os.PathLike | None) -> list[str]:
    """Class names of a classmap file: one per line, line i (0-based) = category id i + 1.

    Trailing blank lines are ignored; a missing, unreadable, non-UTF-8 or empty file, or a blank
    line between names, is a TaoUserError naming the spec field and the file."""
    if not path:
        raise TaoUserError(f"{CLASSMAP_FIELD}: not set; give a text file with one class name per line")
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise TaoUserError(f"{CLASSMAP_FIELD}: {path} {_why_unreadable(e)}") from None
    while names and not names[-1]:
        names.pop()
    if not names or any(not n for n in names):
        raise TaoUserError(f"{CLASSMAP_FIELD}: {path} must list one class name per line, no blanks")
    return names


def _why_unreadable(e: Exception) -> str:
    if isinstance(e, FileNotFoundError):
        return "does not exist"
    if isinstance(e, IsADirectoryError):
        return "is a directory, not a text file"
    if isinstance(e, UnicodeDecodeError):
        return "is not a UTF-8 text file"
    return f"cannot be read ({getattr(e, 'strerror', None) or e})"


def _coco_sources(ds: Any) -> list:
    """The {image_dir, json_file} sources of test, val then train data (each a source or a list)."""
    sources = []
    for field in SOURCE_FIELDS:
        value = spec_get(ds, field)
        if value is None:
            continue
        sources += [value] if hasattr(value, "get") and "json_file" in value else list(value)
    return sources


def names_by_id(cfg: Any) -> dict[int, str]:
    """Category id -> name from the spec's data: the categories of the first existing COCO json of
    the test, val, then train sources, else the inference classmap. Empty when there is none."""
    from tao_core.data.coco import read_json

    ds = cfg.dataset
    for src in _coco_sources(ds):
        json_file = spec_get(src, "json_file")
        if json_file and os.path.isfile(str(json_file)):
            cats = read_json(str(json_file)).get("categories", [])
            return {int(c["id"]): str(c.get("name", c["id"])) for c in cats}
    classmap = spec_get(spec_get(ds, "infer_data_sources"), "classmap")
    if classmap and os.path.isfile(str(classmap)):
        return {i + 1: n for i, n in enumerate(read_classmap(classmap))}
    return {}


def label_names(cfg: Any) -> list[str]:
    """One name per model output class (index = category id, dataset.num_classes of them), as in
    TAO's labels.txt: 'background' at 0 when ids start at 1, 'unknown' where the data names no class."""
    names = names_by_id(cfg)
    out = []
    for i in range(int(cfg.dataset.num_classes)):
        if i in names:
            out.append(names[i])
        elif i == 0 and (not names or min(names) > 0):
            out.append("background")
        else:
            out.append("unknown")
    return out
