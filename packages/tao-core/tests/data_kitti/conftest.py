"""Fixtures for the KITTI tests: the real raccoon + bccd sources, or generated look-alikes."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image


def make_kitti_source(root: Path, classes: list[str], sizes: list[tuple[int, int]]) -> Path:
    """A KITTI folder (images/*.jpg, labels/*.txt): image i has i % 3 + 1 boxes."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, (w, h) in enumerate(sizes):
        Image.new("RGB", (w, h), (i * 10 % 255, 80, 120)).save(root / "images" / f"img{i:03d}.jpg")
        lines = []
        for k in range(i % 3 + 1):
            x1, y1 = 2 + 3 * k, 4 + 2 * k
            cls = classes[(i + k) % len(classes)]
            lines.append(f"{cls} 0.00 0 0.00 {x1:.2f} {y1:.2f} {x1 + 10:.2f} {y1 + 7:.2f} "
                         "0.00 0.00 0.00 0.00 0.00 0.00 0.00\n")
        (root / "labels" / f"img{i:03d}.txt").write_text("".join(lines))
    return root


@pytest.fixture
def make_source():
    """make_kitti_source, as a fixture so tests need not import this conftest by name."""
    return make_kitti_source


@pytest.fixture
def two_sources(shared_data, tmp_path):
    """(data_root, [relative source lines], mapping dict): raccoon/train + bccd/train if present."""
    mapping = {"raccoon": "raccoon", "Platelets": "Platelets", "RBC": "RBC", "WBC": "WBC"}
    if shared_data is not None and (shared_data / "raccoon").is_dir() and (shared_data / "bccd").is_dir():
        return shared_data, ["raccoon/train", "bccd/train"], mapping
    root = tmp_path / "generated"
    make_kitti_source(root / "raccoon" / "train", ["raccoon"], [(64 + i, 48) for i in range(9)])
    make_kitti_source(root / "bccd" / "train", ["RBC", "WBC", "Platelets"], [(40, 30 + i) for i in range(7)])
    return root, ["raccoon/train", "bccd/train"], mapping


@pytest.fixture
def convert_cfg(two_sources, tmp_path):
    """A spec-like object for convert(), with input_source and mapping JSON written to tmp_path."""
    import json

    data_root, lines, mapping = two_sources
    src = tmp_path / "cfg" / "sequence.txt"
    src.parent.mkdir()
    src.write_text("".join(line + "\n" for line in lines))
    mp = tmp_path / "cfg" / "mapping.json"
    mp.write_text(json.dumps(mapping))
    return SimpleNamespace(
        input_source=str(src), data_root=str(data_root), results_dir=str(tmp_path / "sharded"),
        image_dir_name="images", label_dir_name="labels", num_shards=3, num_partitions=1,
        mapping_path=str(mp),
    )
