"""tao_core.metrics.coco_report: what every COCO evaluate task writes."""

import json
import logging

from tao_core.metrics.coco_report import restrict_classes, write_coco_evaluation
from tao_core.results.status import StatusLogger


def _gt():
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": 0},
        ],
    }


DETS = [
    {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
    {"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.8},  # a miss
]


def test_restrict_classes_keeps_only_those_ids_and_leaves_gt_alone():
    gt = _gt()
    small, dets = restrict_classes(gt, DETS, ["1"])
    assert [c["id"] for c in small["categories"]] == [1]
    assert [a["category_id"] for a in small["annotations"]] == [1]
    assert [d["category_id"] for d in dets] == [1]
    assert gt == _gt()


def test_write_coco_evaluation_files_status_and_log(tmp_path, caplog):
    status = StatusLogger(tmp_path, "evaluate", enabled=True)
    with caplog.at_level(logging.INFO, logger="tao_core.metrics.coco_report"):
        results = write_coco_evaluation(tmp_path, _gt(), DETS, {"network": "dino", "seconds": 1.5}, status)
    assert results["network"] == "dino" and results["seconds"] == 1.5
    assert 0.4 < results["mAP"] < 0.6 and results["num_images"] == 1
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert json.loads((tmp_path / "detections.json").read_text()) == DETS
    assert json.loads((tmp_path / "ground_truth.json").read_text()) == _gt()
    (line,) = status.read()
    assert line["status"] == "RUNNING" and line["kpi"] == {"mAP": results["mAP"], "mAP50": results["mAP50"]}
    assert "Evaluated 1 images" in line["message"]
    assert any(r.getMessage().startswith("mAP50") for r in caplog.records)
    assert any("AP cat" in r.getMessage() for r in caplog.records)


def test_write_coco_evaluation_restricted_without_status(tmp_path):
    results = write_coco_evaluation(tmp_path, _gt(), DETS, {}, class_ids=[1])
    assert results["mAP"] == 1.0 and list(results["per_class_ap"]) == ["cat"]
    assert [c["id"] for c in json.loads((tmp_path / "ground_truth.json").read_text())["categories"]] == [1]
    assert len(json.loads((tmp_path / "detections.json").read_text())) == 1
