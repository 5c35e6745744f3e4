"""`evaluate`: COCO numbers of the task equal tao_core.metrics.coco.evaluate on what it wrote,
an oracle model scores mAP 1 (ids, sizes and labels line up end to end), conf_threshold holds."""

import json
import os
import subprocess
import sys

import pytest
import torch
from detr_task_helpers import status_lines

from tao_core.metrics.coco import evaluate as coco_evaluate
from tao_pytorch.detr.network import DetrNetwork
from tao_pytorch.dino.cli import CLI as DINO_CLI


def _oracle(gt_json: str):
    """DetrNetwork.build_model replacement whose forward returns the ground truth of each image in loader order."""
    gt = json.loads(open(gt_json).read())
    per_image = [(im, [a for a in gt["annotations"] if a["image_id"] == im["id"]]) for im in gt["images"]]
    real_build = DetrNetwork.build_model

    def build(network, cfg):
        model = real_build(network, cfg)  # network: the DetrNetwork (the method's self)
        queue = list(per_image)
        nq, nc = cfg.model.num_queries, cfg.dataset.num_classes

        def forward(samples, targets=None):
            logits = torch.full((samples.shape[0], nq, nc), -8.0)
            boxes = torch.full((samples.shape[0], nq, 4), 0.05)
            for b in range(samples.shape[0]):
                im, anns = queue.pop(0)
                for j, a in enumerate(anns):
                    x, y, w, h = a["bbox"]
                    logits[b, j, a["category_id"]] = 8.0
                    boxes[b, j] = torch.tensor([(x + w / 2) / im["width"], (y + h / 2) / im["height"],
                                                w / im["width"], h / im["height"]])
            return {"pred_logits": logits, "pred_boxes": boxes}

        model.forward = forward
        return model

    return build


def test_oracle_model_scores_map_one(spec, task_data, monkeypatch):
    monkeypatch.setattr(DetrNetwork, "build_model", _oracle(task_data["json_file"]))
    spec_file, results = spec("dino")
    assert DINO_CLI.run("evaluate", ["-e", str(spec_file)]) == 0
    out = results / "evaluate"
    res = json.loads((out / "results.json").read_text())
    assert res["mAP"] == pytest.approx(1.0) and res["mAP50"] == pytest.approx(1.0)
    assert res["data"] == "dataset.val_data_sources"  # no test_data_sources: falls back to val
    assert len(res["stats"]) == 12 and set(res["per_class_ap"]) == {"raccoon"}
    # The same detections, mapped back to the original json's image ids, score the same.
    subset = json.loads(open(task_data["json_file"]).read())
    original_id = {i + 1: im["id"] for i, im in enumerate(subset["images"])}
    dets = json.loads((out / "detections.json").read_text())
    mapped = [{**d, "image_id": original_id[d["image_id"]]} for d in dets]
    assert coco_evaluate(task_data["json_file"], mapped)["stats"] == res["stats"]
    kpi = [s for s in status_lines(results, "evaluate") if "kpi" in s]
    assert kpi and kpi[-1]["kpi"]["mAP"] == pytest.approx(1.0)
    assert status_lines(results, "evaluate")[-1]["status"] == "SUCCESS"


def test_evaluate_command_line_matches_direct_metric(spec):
    """The console entry in a subprocess; results.json == evaluate(ground_truth, detections)."""
    spec_file, results = spec("deformable_detr", evaluate={"conf_threshold": 0.05})
    cmd = [sys.executable, "-c", "from tao_pytorch.deformable_detr.cli import main; main()",
           "evaluate", "-e", str(spec_file), "dataset.batch_size=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "TAO_DEBUG": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = results / "evaluate"
    res = json.loads((out / "results.json").read_text())
    dets = json.loads((out / "detections.json").read_text())
    direct = coco_evaluate(str(out / "ground_truth.json"), dets)
    assert res["stats"] == direct["stats"] and res["mAP"] == direct["mAP"] and res["mAP50"] == direct["mAP50"]
    assert all(d["score"] >= 0.05 for d in dets)
    assert res["conf_threshold"] == 0.05 and res["num_detections"] == len(dets)
    lines = status_lines(results, "evaluate")
    assert [s["status"] for s in lines] == ["STARTED", "RUNNING", "SUCCESS"]
    assert set(lines[1]["kpi"]) == {"mAP", "mAP50"}
