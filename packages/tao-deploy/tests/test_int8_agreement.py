"""An FP16 / INT8 engine measured against its FP32 graph after the build, and what status.json says."""

import logging

import numpy as np
import pytest

from tao_core.results.status import StatusLogger, task_run
from tao_deploy import Calibration, build_engine
from tao_deploy.detr.detector import raw_decoder
from tao_deploy.detr.testing import tiny_detr
from tao_deploy.engine import agreement as agr
from tao_deploy.engine.builder import record_agreement
from tao_deploy.testing import random_batches


def _det(boxes, scores, labels=None):
    boxes = np.asarray(boxes, np.float32)
    return {"boxes": boxes, "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels if labels is not None else [1] * len(boxes))}


def test_compare_detections_iou_rank_scores_and_class():
    ref = [_det([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.5])]
    same = agr.compare_detections(ref, ref)
    assert same == ([1.0, 1.0], [1.0], [0.0, 0.0])
    # half-overlapping best box (IoU 1/3), second box equal, scores swapped in rank order
    moved = [_det([[5, 0, 15, 10], [20, 20, 30, 30]], [0.5, 0.8])]
    ious, top1, diffs = agr.compare_detections(ref, moved)
    np.testing.assert_allclose(ious, [50 / 150, 1.0])
    np.testing.assert_allclose(top1, [50 / 150])
    np.testing.assert_allclose(diffs, [0.1, 0.0], atol=1e-6)
    # the same box with another class is no match
    other = [_det([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.5], labels=[2, 2])]
    assert agr.compare_detections(ref, other)[0] == [0.0, 0.0]


def test_degraded_names_each_measure_below_threshold():
    good = agr.Agreement(images=4, top_k=10, mean_iou=0.95, top1_iou=0.97, score_abs_diff=0.01, output_rel_err={})
    assert good.degraded() == []
    bad = agr.Agreement(images=4, top_k=10, mean_iou=0.3, top1_iou=0.2, score_abs_diff=0.2, output_rel_err={})
    text = " ".join(bad.degraded())
    assert "mean IoU" in text and "best box" in text and "score" in text


def _build(tmp_path, thresholds=agr.Thresholds(), precision="int8"):
    model = tiny_detr(height=32, width=48, num_queries=10)
    cal = Calibration(data=random_batches((2, 3, 32, 48), 4, seed=1), method="minmax")
    return build_engine(model, tmp_path / f"{precision}.engine", precision, calibration=cal, max_batch=2,
                        check_data=random_batches((2, 3, 32, 48), 2, seed=2), decode=raw_decoder(5),
                        thresholds=thresholds)


def test_int8_build_measures_agreement_with_fp32(tmp_path):
    info = _build(tmp_path)
    found = info.agreement
    assert found["images"] == 4 and found["top_k"] == 10
    assert 0.9 <= found["mean_iou"] <= 1 and found["score_abs_diff"] < 0.05
    assert set(found["output_rel_err"]) == {"pred_logits", "pred_boxes"}
    assert info.degraded == ()


def test_degraded_engine_warns_and_status_says_degraded(tmp_path, caplog):
    strict = agr.Thresholds(min_mean_iou=1.01)  # nothing can pass: the degraded path, on a real build
    with caplog.at_level(logging.WARNING):
        info = _build(tmp_path, strict)
    assert info.degraded and "mean IoU" in info.degraded[0]
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "DEGRADED INT8 ENGINE" in warned and "int8_keep_float" in warned

    with task_run(tmp_path / "results", "gen_trt_engine", network="dino") as status:
        summary = {}
        record_agreement(status, info, summary)
    lines = StatusLogger(tmp_path / "results", "gen_trt_engine").read()
    assert lines[-1]["status"] == "SUCCESS" and lines[-1]["verbosity"] == "WARNING"
    assert lines[-1]["message"].startswith("DEGRADED INT8 engine")
    assert lines[-1]["kpi"]["agreement_mean_iou"] == pytest.approx(info.agreement["mean_iou"])
    assert summary["agreement_with_fp32"]["degraded"] == list(info.degraded)


def test_good_engine_status_keeps_success_message_with_kpi(tmp_path):
    info = _build(tmp_path, precision="fp16")
    assert info.agreement is not None and not info.degraded
    with task_run(tmp_path / "results", "gen_trt_engine", network="dino") as status:
        record_agreement(status, info)
    last = StatusLogger(tmp_path / "results", "gen_trt_engine").read()[-1]
    assert last["message"] == "dino gen_trt_engine finished successfully."
    assert last["kpi"]["agreement_top1_iou"] == pytest.approx(info.agreement["top1_iou"])


def test_each_detr_spec_carries_its_own_measured_keep_float_default():
    from tao_core.specs import deformable_detr, dino
    from tao_core.specs.detr_common import DetrTrtConfig

    assert DetrTrtConfig().int8_keep_float == []  # shared code names no network's layers
    assert dino.ExperimentConfig().gen_trt_engine.tensorrt.int8_keep_float == dino.INT8_KEEP_FLOAT
    assert "transformer/enc_out" in dino.INT8_KEEP_FLOAT and "bbox_embed" in dino.INT8_KEEP_FLOAT
    ddetr = deformable_detr.ExperimentConfig().gen_trt_engine.tensorrt.int8_keep_float
    assert ddetr == deformable_detr.INT8_KEEP_FLOAT == ["transformer/reference_points"]


def test_detectnet_check_flags_the_box_drift_that_cost_ap_which_the_generic_bounds_pass():
    """Issue 9: an unpruned DetectNet_v2 INT8 engine 5.6 AP points below FP32 had mean IoU 0.976
    with the FP32 boxes and passed the generic (DETR-measured) bound 0.8. DetectNet_v2's decode
    carries its own bounds, measured on its demo models (detectnet_v2.engine.AGREEMENT)."""
    from dataclasses import asdict

    from tao_core.processing.detectnet import ClusteringParams, encode_bbox_targets, grid_anchors
    from tao_deploy.detectnet_v2.engine import AGREEMENT, BBOX, COV, decoder

    h, w = 96, 128
    gx, gy = grid_anchors(6, 8, h, w)
    cov = np.zeros((2, 1, 6, 8), np.float32)
    cov[:, 0, 2:4, 3:5] = 0.9

    def outputs(shift):  # one 60 x 50 box per image, moved `shift` pixels to the right
        bbox = encode_bbox_targets([20 + shift, 20, 80 + shift, 70], gx, gy)[None].repeat(2, 0)
        return {COV: cov, BBOX: bbox.astype(np.float32)}

    decode = decoder(["raccoon"], ClusteringParams(coverage_threshold=0.5, minimum_bounding_box_height=0))
    batches = [np.zeros((2, 3, h, w), np.float32)] * 2
    drifted = agr.measure_agreement(lambda b: outputs(0.0), lambda b: outputs(0.73), batches, decode)
    assert drifted.images == 4 and drifted.mean_iou == pytest.approx((60 - 0.73) / (60 + 0.73), abs=1e-3)
    assert drifted.network_thresholds == asdict(AGREEMENT)
    assert any("mean IoU" in d for d in drifted.degraded())
    assert agr.Agreement(**drifted.to_json()).degraded() == drifted.degraded()  # as status.json keeps it
    generic = agr.Agreement(**{**drifted.to_json(), "network_thresholds": None})
    assert generic.degraded() == []  # what let issue 9's engine through
    assert drifted.degraded(agr.Thresholds(min_mean_iou=0.9, min_top1_iou=0.9)) == []  # a caller's own bounds win
    close = agr.measure_agreement(lambda b: outputs(0.0), lambda b: outputs(0.2), batches, decode)
    assert close.mean_iou > 0.99 and close.degraded() == []
