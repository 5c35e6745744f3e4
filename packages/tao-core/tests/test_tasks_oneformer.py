"""tao_core.tasks.oneformer on hand-made masks: ideal network outputs score 1 through the padded /
half-resolution path, known mistakes give the hand-computed numbers, the kinds a spec asks for,
merging, unknown class slots, and the written results (numpy only; no torch)."""

import json

import numpy as np
import pytest

from tao_core.errors import TaoUserError
from tao_core.results import StatusLogger
from tao_core.tasks.oneformer import (
    OneFormerEvaluation,
    eval_split,
    evaluation_kinds,
    kpi,
    metric_table,
    write_oneformer_evaluation,
)

CATEGORIES = [{"id": 3, "name": "cat", "isthing": 1}, {"id": 7, "name": "dog", "isthing": 1},
              {"id": 20, "name": "grass", "isthing": 0}]
H, W = 16, 24


def _scene():
    """Panoptic ground truth: grass on the top half, a cat and a dog below, a void band at the bottom."""
    ids = np.zeros((H, W), np.int32)
    ids[:8] = 1
    ids[8:14, :12] = 2
    ids[8:14, 12:] = 4
    segments = [{"id": 1, "category_id": 20, "iscrowd": 0}, {"id": 2, "category_id": 3, "iscrowd": 0},
                {"id": 4, "category_id": 7, "iscrowd": 0}]
    semantic = np.full((H, W), 255, np.int64)
    for s, cls in ((1, 2), (2, 0), (4, 1)):
        semantic[ids == s] = cls
    return {"image_id": 5, "semantic": semantic, "panoptic": (ids, segments)}


def _ideal(masks_and_classes, num_classes=3, spare=2, half=False):
    """Class / mask logits of queries that each predict one mask with one class (+ spare "no object"
    queries). half: the network view of a 32 x 32 padded input at half resolution (masks at 16 x 16)."""
    q = len(masks_and_classes) + spare
    mask_cls = np.full((q, num_classes + 1), -10.0, np.float32)
    mask_cls[len(masks_and_classes):, -1] = 10.0
    size = (16, 16) if half else (H, W)
    mask_pred = np.full((q, *size), -10.0, np.float32)
    for k, (mask, cls) in enumerate(masks_and_classes):
        mask_cls[k, cls] = 10.0
        if half:
            canvas = np.zeros((32, 32), bool)
            canvas[:H, :W] = mask
            mask = canvas[::2, ::2]  # every boundary is on an even pixel, so the bilinear upsample restores it
        mask_pred[k][mask] = 10.0
    return mask_cls, mask_pred


def _evaluation(kinds, **kw):
    return OneFormerEvaluation(kinds, CATEGORIES, num_classes=3, object_mask_threshold=0.5, overlap_threshold=0.8, **kw)


def test_ideal_outputs_score_one_for_every_kind_through_padding_and_upsampling():
    gt = _scene()
    ids, _ = gt["panoptic"]
    mask_cls, mask_pred = _ideal([(ids == 1, 2), (ids == 2, 0), (ids == 4, 1)], half=True)
    ev = _evaluation(["panoptic", "semantic", "instance"])
    out = ev.add(mask_cls, mask_pred, padded_hw=(32, 32), valid_hw=(H, W), ground_truth=gt)
    assert out["semantic"].shape == (H, W)
    r = ev.compute()
    assert r["panoptic"]["PQ"] == pytest.approx(1.0) and r["panoptic"]["All"]["n"] == 3
    assert r["panoptic"]["PQ_th"] == pytest.approx(1.0) and r["panoptic"]["PQ_st"] == pytest.approx(1.0)
    assert r["semantic"]["mIoU"] == pytest.approx(1.0) and r["semantic"]["pACC"] == pytest.approx(1.0)
    # instances from the panoptic ground truth: the two things (grass is stuff), ids from 1
    gt_inst = ev.instance_ground_truth()
    assert [a["category_id"] for a in gt_inst["annotations"]] == [3, 7] and gt_inst["annotations"][0]["id"] == 1
    assert r["instance"]["mAP"] == pytest.approx(1.0)
    assert kpi(r) == pytest.approx({"PQ": 1.0, "SQ": 1.0, "RQ": 1.0, "PQ_th": 1.0, "PQ_st": 1.0, "mIoU": 1.0,
                                    "fwIoU": 1.0, "pACC": 1.0, "mAP": 1.0, "mAP50": 1.0})


def test_known_mistakes_give_the_hand_computed_numbers():
    gt = _scene()
    ids, _ = gt["panoptic"]
    wide_cat = np.zeros((H, W), bool)
    wide_cat[8:14, :18] = True  # the cat's mask takes half of the dog (72 + 36 of 108 pixels)
    dog = (ids == 4) & ~wide_cat
    mask_cls, mask_pred = _ideal([(ids == 1, 2), (wide_cat, 0), (dog, 1)])
    ev = _evaluation(["semantic", "panoptic"])
    ev.add(mask_cls, mask_pred, padded_hw=(H, W), valid_hw=(H, W), ground_truth=gt)
    r = ev.compute()
    sem = r["semantic"]
    # 336 labelled pixels (grass 192, cat 72, dog 72); IoU grass 1, cat 72 / 108, dog 36 / 72
    assert sem["per_class_iou"] == pytest.approx({"grass": 1.0, "cat": 72 / 108, "dog": 36 / 72})
    assert sem["mIoU"] == pytest.approx((1 + 72 / 108 + 0.5) / 3)
    assert sem["pACC"] == pytest.approx((192 + 72 + 36) / 336)
    assert sem["fwIoU"] == pytest.approx((192 * 1 + 72 * 72 / 108 + 72 * 0.5) / 336)
    pan = r["panoptic"]
    # cat matched (IoU 2/3 > 0.5), dog not (IoU 0.5 is not > 0.5): dog one FP and one FN
    assert pan["per_class"]["cat"]["pq"] == pytest.approx(72 / 108)
    assert pan["per_class"]["dog"]["pq"] == 0.0 and pan["per_class"]["grass"]["pq"] == pytest.approx(1.0)
    assert pan["PQ"] == pytest.approx((1 + 72 / 108 + 0) / 3)
    assert pan["PQ_th"] == pytest.approx((72 / 108) / 2) and pan["RQ_th"] == pytest.approx((1 + 0) / 2)


def test_instance_ground_truth_given_as_coco_and_a_missed_object():
    from faster_coco_eval.core import mask as mask_api

    gt = _scene()
    ids, _ = gt["panoptic"]
    anns = []
    for n, (sid, cat) in enumerate(((2, 3), (4, 7)), start=1):
        rle = mask_api.encode(np.asfortranarray((ids == sid)[:, :, None].astype(np.uint8)))[0]
        rle["counts"] = rle["counts"].decode("ascii")
        ys, xs = np.nonzero(ids == sid)
        anns.append({"id": n, "image_id": 5, "category_id": cat, "segmentation": rle, "iscrowd": 0,
                     "area": float((ids == sid).sum()), "bbox": [float(xs.min()), float(ys.min()), 12.0, 6.0]})
    coco = {"images": [{"id": 5, "width": W, "height": H}], "annotations": anns, "categories": CATEGORIES[:2]}
    mask_cls, mask_pred = _ideal([(ids == 2, 0)])  # the dog is missed
    ev = _evaluation(["instance"], instances_gt=coco)
    ev.add(mask_cls, mask_pred, padded_hw=(H, W), valid_hw=(H, W), ground_truth={"image_id": 5, "semantic": gt["semantic"]})
    r = ev.compute()
    assert r["instance"]["per_class_ap"]["cat"] == pytest.approx(1.0)
    assert r["instance"]["per_class_ap"]["dog"] == 0.0 and r["instance"]["mAP"] == pytest.approx(0.5)


def test_class_slots_without_a_category_never_match():
    gt = _scene()
    ids, _ = gt["panoptic"]
    mask_cls, mask_pred = _ideal([(ids == 1, 2), (ids == 2, 0), (ids == 4, 4)], num_classes=5)
    ev = OneFormerEvaluation(["panoptic", "semantic", "instance"], CATEGORIES, num_classes=5, object_mask_threshold=0.5)
    ev.add(mask_cls, mask_pred, padded_hw=(H, W), valid_hw=(H, W), ground_truth=gt)
    r = ev.compute()
    assert r["panoptic"]["per_class"]["dog"]["pq"] == 0.0 and r["panoptic"]["per_class"]["cat"]["pq"] == pytest.approx(1.0)
    assert r["semantic"]["per_class_iou"]["dog"] == 0.0  # its pixels went to class slot 4
    assert "class_4" not in r["semantic"]["per_class_iou"]  # no ground truth: not a class of the means
    assert {d["category_id"] for d in ev.detections} <= {3, 7, 20}


def test_merge_equals_one_evaluation_of_all_images():
    gt = _scene()
    ids, _ = gt["panoptic"]
    second = {**gt, "image_id": 6}
    good = _ideal([(ids == 1, 2), (ids == 2, 0), (ids == 4, 1)])
    bad = _ideal([(ids == 1, 2), (ids == 4, 0)])
    whole = _evaluation(["semantic", "panoptic", "instance"])
    a, b = _evaluation(["semantic", "panoptic", "instance"]), _evaluation(["semantic", "panoptic", "instance"])
    for ev, outs, g in ((whole, good, gt), (whole, bad, second), (a, good, gt), (b, bad, second)):
        ev.add(*outs, padded_hw=(H, W), valid_hw=(H, W), ground_truth=g)
    a.merge(b)
    assert kpi(a.compute()) == pytest.approx(kpi(whole.compute()))
    assert a.compute()["num_images"] == 2


def test_one_forward_per_kind_counts_an_image_once():
    gt = _scene()
    ids, _ = gt["panoptic"]
    outs = _ideal([(ids == 1, 2), (ids == 2, 0), (ids == 4, 1)])
    ev = _evaluation(["panoptic", "semantic"])
    for kind in ("panoptic", "semantic"):
        ev.add(*outs, padded_hw=(H, W), valid_hw=(H, W), ground_truth=gt, kinds=[kind])
    r = ev.compute()
    assert r["num_images"] == 1 and r["panoptic"]["PQ"] == pytest.approx(1.0) and r["semantic"]["mIoU"] == 1.0
    with pytest.raises(ValueError, match="not evaluated here"):
        ev.add(*outs, padded_hw=(H, W), valid_hw=(H, W), ground_truth=gt, kinds=["instance"])


def test_kinds_follow_the_spec_and_the_data():
    cfg = {"model": {"mode": "panoptic", "test": {"semantic_on": True, "instance_on": False, "panoptic_on": True}},
           "dataset": {"val": {"annotations": "v.json"}, "test": {"annotations": None}}}
    assert evaluation_kinds(cfg, "panoptic") == ["panoptic", "semantic"]
    assert eval_split(cfg) == "val"
    with pytest.raises(TaoUserError, match=r"model.mode: panoptic evaluation cannot be scored on semantic annotations.*"
                                           r"set model.mode to one of \['semantic'\]"):
        evaluation_kinds(cfg, "semantic")
    cfg["model"].update(mode="semantic", test={"instance_on": True})
    with pytest.raises(TaoUserError, match=r"model.test.instance_on: .*set model.test.instance_on to false"):
        evaluation_kinds(cfg, "semantic")
    with pytest.raises(TaoUserError, match="dataset.test.annotations"):
        eval_split({"dataset": {"val": {}, "test": {}}})


def test_bad_inputs_are_clear():
    gt = _scene()
    ev = _evaluation(["semantic"])
    with pytest.raises(ValueError, match=r"mask_cls must be \(Q, 4\)"):
        ev.add(np.zeros((2, 3)), np.zeros((2, H, W)), padded_hw=(H, W), valid_hw=(H, W), ground_truth=gt)
    with pytest.raises(TaoUserError, match="output size"):
        ev.add(np.zeros((2, 4)), np.zeros((2, H, W)), padded_hw=(H, W), valid_hw=(H, W), ground_truth=gt,
               output_hw=(8, 8))
    with pytest.raises(TaoUserError, match="no image was evaluated"):
        ev.compute()
    with pytest.raises(TaoUserError, match=r"num_classes=3"):
        OneFormerEvaluation(["semantic"], CATEGORIES, num_classes=2)
    pan = _evaluation(["panoptic"])
    with pytest.raises(TaoUserError, match="needs panoptic ground truth"):
        pan.add(np.zeros((2, 4)), np.zeros((2, H, W)), padded_hw=(H, W), valid_hw=(H, W),
                ground_truth={"image_id": 1, "semantic": gt["semantic"]})


def test_results_json_and_the_kpi_status_line(tmp_path):
    gt = _scene()
    ids, _ = gt["panoptic"]
    ev = _evaluation(["panoptic", "semantic"])
    ev.add(*_ideal([(ids == 1, 2), (ids == 2, 0), (ids == 4, 1)]), padded_hw=(H, W), valid_hw=(H, W), ground_truth=gt)
    status = StatusLogger(tmp_path, "evaluate", enabled=True)
    results = ev.compute()
    record = write_oneformer_evaluation(tmp_path, results, {"network": "oneformer", "checkpoint": "m.pth"}, status)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert on_disk["network"] == "oneformer" and on_disk["kinds"] == ["panoptic", "semantic"]
    assert on_disk["kpi"]["PQ"] == pytest.approx(1.0) and on_disk["semantic"]["per_class_iou"]["cat"] == 1.0
    assert not list(tmp_path.glob("*.tmp"))
    line = json.loads((tmp_path / "evaluate" / "status.json").read_text().splitlines()[-1])
    assert line["message"] == "Evaluated 1 images: PQ 1.0000, mIoU 1.0000" and line["kpi"]["mIoU"] == 1.0
    table = metric_table(results)
    assert table[1].split() == ["All", "100.00", "100.00", "100.00", "3"]
