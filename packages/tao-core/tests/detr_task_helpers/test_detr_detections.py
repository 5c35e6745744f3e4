"""tao_core.visualize.outputs.write_detr_detections: TAO's classmap rule for DETR labels."""

import numpy as np
from PIL import Image

from tao_core.visualize.outputs import InferenceWriter, write_detr_detections


def test_labels_named_by_classmap_line_unnamed_dropped(tmp_path):
    image_path = tmp_path / "img.png"
    Image.new("RGB", (64, 48), (20, 40, 60)).save(image_path)
    writer = InferenceWriter(tmp_path / "out", conf_threshold=0.5)
    det = {
        "scores": np.array([0.9, 0.8, 0.7, 0.3, 0.95], np.float32),
        "labels": np.array([1, 0, 2, 2, 3]),  # 0 and 3 are not in a 2-line classmap
        "boxes": np.array([[1, 2, 10, 12], [0, 0, 5, 5], [20, 20, 40, 40], [3, 3, 6, 6], [0, 0, 9, 9]], np.float32),
    }
    kept = write_detr_detections(writer, str(image_path), None, det, ["cat", "dog"])
    assert kept == 2
    lines = (tmp_path / "out" / "labels" / "img.txt").read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["cat", "dog"]
    assert [float(v) for v in lines[0].split()[4:8]] == [1, 2, 10, 12]
    assert (tmp_path / "out" / "images_annotated" / "img.png").is_file()


def test_no_detections_writes_empty_label_file(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    writer = InferenceWriter(tmp_path, conf_threshold=0.0)
    det = {"scores": np.zeros(0), "labels": np.zeros(0, np.int64), "boxes": np.zeros((0, 4))}
    assert write_detr_detections(writer, "x.jpg", image, det, ["cat"]) == 0
    assert (tmp_path / "labels" / "x.txt").read_text() == ""
