"""`inference`: an annotated image and a KITTI label file (score last) for every input image,
only detections at or above inference.conf_threshold, names from the classmap."""

import os

import pytest
from detr_task_helpers import status_lines
from PIL import Image

from tao_pytorch.deformable_detr.cli import CLI as DDETR_CLI
from tao_pytorch.dino.cli import CLI as DINO_CLI

CLIS = {"dino": DINO_CLI, "deformable_detr": DDETR_CLI}


def _labels(folder):
    return {f: [line.split() for line in open(folder / f).read().splitlines()] for f in sorted(os.listdir(folder))}


@pytest.mark.parametrize("network", ["dino", "deformable_detr"])
def test_inference_writes_images_and_labels(network, spec, task_data):
    spec_file, results = spec(network, inference={"conf_threshold": 0.0, "outline_width": 2})
    assert CLIS[network].run("inference", ["-e", str(spec_file)]) == 0
    out = results / "inference"
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(task_data["infer_dir"]))
    assert sorted(os.path.splitext(f)[0] for f in os.listdir(out / "images_annotated")) == stems
    labels = _labels(out / "labels")
    assert sorted(os.path.splitext(f)[0] for f in labels) == stems
    for f, rows in labels.items():
        original = Image.open(os.path.join(task_data["infer_dir"], os.path.splitext(f)[0] + ".jpg"))
        assert Image.open(out / "images_annotated" / (os.path.splitext(f)[0] + ".jpg")).size == original.size
        assert rows, "conf_threshold 0 keeps every decoded raccoon detection"
        for row in rows:
            assert len(row) == 16 and row[0] == "raccoon"
            x1, y1, x2, y2 = map(float, row[4:8])
            assert 0 <= x1 <= x2 <= original.size[0] and 0 <= y1 <= y2 <= original.size[1]
    assert status_lines(results, "inference")[-1]["status"] == "SUCCESS"


def test_inference_respects_conf_threshold(spec):
    spec_file, results = spec("dino", inference={"conf_threshold": 0.0})
    assert DINO_CLI.run("inference", ["-e", str(spec_file)]) == 0
    scores = sorted(float(r[15]) for rows in _labels(results / "inference" / "labels").values() for r in rows)
    # Half-way between two 3-decimal label values, so the rounding in the files cannot blur the count.
    threshold = scores[len(scores) // 2] + 0.0005
    second = results.parent / "second"
    argv = ["-e", str(spec_file), "-r", str(second), f"inference.conf_threshold={threshold}"]
    assert DINO_CLI.run("inference", argv) == 0
    kept = [float(r[15]) for rows in _labels(second / "inference" / "labels").values() for r in rows]
    assert kept and all(s >= threshold for s in kept)
    assert len(kept) == sum(s >= threshold for s in scores)
