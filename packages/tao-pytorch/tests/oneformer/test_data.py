"""OneFormer data: the three loaders on the shipped samples and on tiny generated data, targets per
task as SHI-Labs' unified mapper builds them, augmentation, collate, and bad data."""

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tao_core.data.coco_panoptic import read_panoptic_png, write_panoptic_png
from tao_core.errors import TaoUserError
from tao_core.testing import find_dataset
from tao_pytorch.oneformer.data import build_dataloader, build_dataset, collate_oneformer
from tao_pytorch.oneformer.data.targets import CUTMIX_MIN_AREA, build_targets, texts_for

REPO = Path(__file__).resolve().parents[4]
COCO = find_dataset("coco_panoptic_sample", REPO, marker="annotations/panoptic_val2017_sample.json")
CITY = find_dataset("cityscapes_sample", REPO, marker="gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png")
needs_coco = pytest.mark.skipif(COCO is None, reason="shared/data/coco_panoptic_sample not present")
needs_city = pytest.mark.skipif(CITY is None, reason="shared/data/cityscapes_sample not present")

# Cityscapes' 19 evaluated classes: (labelId, name, isthing), trainId = position
CITYSCAPES = [(7, "road", 0), (8, "sidewalk", 0), (11, "building", 0), (12, "wall", 0), (13, "fence", 0),
              (17, "pole", 0), (19, "traffic light", 0), (20, "traffic sign", 0), (21, "vegetation", 0),
              (22, "terrain", 0), (23, "sky", 0), (24, "person", 1), (25, "rider", 1), (26, "car", 1),
              (27, "truck", 1), (28, "bus", 1), (31, "train", 1), (32, "motorcycle", 1), (33, "bicycle", 1)]


def _cfg(split_cfg, *, label_map=None, aug=None, num_classes=133, queries=20, n_ctx=4, **dataset):
    aug = aug or {"test_min_size": 64, "test_max_size": 4000}
    return {"dataset": {"train": split_cfg, "val": split_cfg, "test": split_cfg, "label_map": label_map,
                        "augmentation": aug, **dataset},
            "model": {"sem_seg_head": {"num_classes": num_classes, "ignore_value": 255},
                      "one_former": {"num_object_queries": queries, "size_divisibility": 32},
                      "text_encoder": {"n_ctx": n_ctx, "context_length": 77}}}


def _coco_split():
    return {"images": str(COCO / "val2017"), "annotations": str(COCO / "annotations/panoptic_val2017_sample.json"),
            "panoptic": str(COCO / "panoptic_val2017"), "batch_size": 2, "num_workers": 0}


def _native_size_aug(short):
    # test resize to the image's own shorter side: no resize at all, so targets compare pixel for pixel
    return {"test_min_size": short, "test_max_size": 4000}


# ----------------------------------------------------------------------------- panoptic (COCO sample)


@needs_coco
def test_panoptic_sample_targets_per_task():
    with open(COCO / "annotations/panoptic_val2017_sample.json") as f:
        gt = json.load(f)
    cat_index = {c["id"]: i for i, c in enumerate(gt["categories"])}
    ann = next(a for a in gt["annotations"] if a["image_id"] == 142238)
    ids = read_panoptic_png(COCO / "panoptic_val2017" / ann["file_name"])
    cfg = _cfg(_coco_split(), aug=_native_size_aug(427))
    names = [c["name"] for c in gt["categories"]]

    item = build_dataset(cfg, "val", task="panoptic")[0]
    assert item["image_id"] == 142238 and tuple(item["image"].shape) == (3, 427, 640)
    segs = [s for s in ann["segments_info"] if not s["iscrowd"]]
    assert item["labels"].tolist() == [cat_index[s["category_id"]] for s in segs]
    for mask, s in zip(item["masks"].numpy(), segs, strict=True):
        np.testing.assert_array_equal(mask, ids == s["id"])
    # the shipped semantic PNG (made by Mask2Former's rule) equals sem_seg outside the crowd pixels
    semseg = np.asarray(Image.open(COCO / "panoptic_semseg_val2017" / ann["file_name"]))
    crowd = np.isin(ids, [s["id"] for s in ann["segments_info"] if s["iscrowd"]])
    np.testing.assert_array_equal(item["sem_seg"].numpy()[~crowd], semseg[~crowd])
    assert (item["sem_seg"].numpy()[crowd] == 255).all()
    assert item["task_tokens"][0] == 49406 and item["texts"] == texts_for(item["labels"].tolist(), names, "panoptic", 16)

    sem = build_dataset(cfg, "val", task="semantic")[0]
    assert len(set(sem["labels"].tolist())) == len(sem["labels"])  # one mask per class
    assert sorted(sem["labels"].tolist()) == sorted({cat_index[s["category_id"]] for s in segs})
    person = sem["labels"].tolist().index(0)
    np.testing.assert_array_equal(sem["masks"][person].numpy(), np.isin(ids, [s["id"] for s in segs if s["category_id"] == 1]))
    assert sem["texts"].count("a photo with a person") == 1 and sem["texts"][-1] == "a semantic photo"

    inst = build_dataset(cfg, "val", task="instance")[0]
    things = [s for s in segs if gt["categories"][cat_index[s["category_id"]]]["isthing"]]
    assert inst["labels"].tolist() == [cat_index[s["category_id"]] for s in things]
    assert inst["texts"].count("a photo with a person") == sum(s["category_id"] == 1 for s in things)
    assert inst["texts"][-1] == "an instance photo" and len(inst["texts"]) == 16
    assert (inst["sem_seg"].numpy() != 255).sum() == sum((ids == s["id"]).sum() for s in things)


@needs_coco
def test_training_items_are_augmented_and_reproducible():
    aug = {"train_min_size": [200, 240], "train_max_size": 400, "train_crop_size": [160, 192]}
    cfg = _cfg(_coco_split(), aug=aug, task_prob_train={"semantic": 0.0, "instance": 1.0, "panoptic": 0.0})
    ds = build_dataset(cfg, "train")
    torch.manual_seed(3)
    a = ds[1]
    torch.manual_seed(3)
    b = ds[1]
    assert a["task"] == "instance"
    assert tuple(a["image"].shape[1:]) == (160, 192) and a["masks"].shape[1:] == (160, 192)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["masks"], b["masks"])
    torch.manual_seed(4)
    c = ds[1]
    assert not torch.equal(a["image"], c["image"])  # another draw of size / crop / flip


@needs_coco
def test_dataloader_batches_and_serialized_records_agree():
    cfg = _cfg(_coco_split(), aug={"test_min_size": 96, "test_max_size": 200})
    batch = next(iter(build_dataloader(cfg, "val")))
    assert batch["images"].shape[0] == 2 and batch["images"].shape[2] % 32 == 0 and batch["images"].shape[3] % 32 == 0
    assert batch["text_tokens"].shape == (2, 16, 77) and batch["task_tokens"].shape == (2, 77)
    for i, (h, w) in enumerate(batch["image_sizes"]):
        assert not batch["pad_mask"][i, :h, :w].any() and batch["pad_mask"][i, h:].all()
        assert (batch["targets"][i]["sem_seg"][h:] == 255).all() and not batch["targets"][i]["masks"][:, h:].any()
    serialized = build_dataset(_cfg(_coco_split(), aug={"test_min_size": 96, "test_max_size": 200},
                                    dataset_type="serialized"), "val")
    default = build_dataset(cfg, "val")
    for key in ("image", "masks", "labels", "sem_seg"):
        assert torch.equal(serialized[0][key], default[0][key])


# ----------------------------------------------------------------------------- instance (COCO json)


@needs_coco
def test_instance_json_with_annotation_id_zero_is_refused_with_the_fix():
    split = {"images": str(COCO / "val2017"), "annotations": str(COCO / "annotations/instances_from_panoptic_val2017_sample.json")}
    with pytest.raises(TaoUserError, match=r"(?s)instances_from_panoptic_val2017_sample\.json.*annotation ids must be positive.*Renumber them from 1"):
        build_dataset(_cfg(split), "val")


@needs_coco
def test_instance_masks_equal_pycocotools(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    with open(COCO / "annotations/instances_from_panoptic_val2017_sample.json") as f:
        data = json.load(f)
    for a in data["annotations"]:
        a["id"] += 1
    fixed = tmp_path / "instances.json"
    fixed.write_text(json.dumps(data))
    split = {"images": str(COCO / "val2017"), "annotations": str(fixed)}
    label_map = str(COCO / "annotations/panoptic_coco_categories.json")  # gives isthing: stuff is no instance
    item = build_dataset(_cfg(split, label_map=label_map, aug=_native_size_aug(427)), "val", task="instance")[0]
    api = coco_api.COCO(str(fixed))
    anns = [a for a in api.loadAnns(api.getAnnIds(imgIds=[142238])) if not a["iscrowd"]]
    cats = {c["id"]: c for c in json.loads(Path(label_map).read_text())}
    things = [a for a in anns if cats[a["category_id"]]["isthing"]]
    assert len(item["labels"]) == len(things) > 0
    for mask, a in zip(item["masks"].numpy(), things, strict=True):
        np.testing.assert_array_equal(mask, api.annToMask(a).astype(bool))


# ----------------------------------------------------------------------------- semantic (JSON lines)


def _city_files(tmp_path):
    base = "frankfurt/frankfurt_000000_000294"
    line = {"img": f"leftImg8bit/val/{base}_leftImg8bit.png", "segm": f"gtFine/val/{base}_gtFine_labelIds.png"}
    jsonl = tmp_path / "city.jsonl"
    jsonl.write_text(json.dumps(line) + "\n")
    label_map = tmp_path / "labels.json"
    label_map.write_text(json.dumps([{"id": i, "name": n, "isthing": t} for i, n, t in CITYSCAPES]))
    return jsonl, label_map, base


@needs_city
def test_semantic_jsonl_on_cityscapes(tmp_path, caplog):
    jsonl, label_map, base = _city_files(tmp_path)
    split = {"images": str(CITY), "annotations": str(jsonl), "batch_size": 1, "num_workers": 0}
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(_cfg(split, label_map=str(label_map), num_classes=19, aug=_native_size_aug(128)), "val")
    assert "mask values 1, 2, 3, 4 are not category ids of the label map" in caplog.text
    item = ds[0]
    label_ids = np.asarray(Image.open(CITY / f"gtFine/val/{base}_gtFine_labelIds.png")).astype(np.int64)
    expected = np.full(label_ids.shape, 255)
    for train_id, (label_id, _, _) in enumerate(CITYSCAPES):
        expected[label_ids == label_id] = train_id
    np.testing.assert_array_equal(item["sem_seg"].numpy(), expected)
    assert item["task"] == "semantic" and sorted(item["labels"].tolist()) == sorted(set(expected[expected != 255].tolist()))
    with pytest.raises(TaoUserError, match="cannot give instance targets"):
        build_dataset(_cfg(split, label_map=str(label_map), num_classes=19), "val", task="instance")


@needs_city
def test_semantic_needs_a_label_map_that_fits_num_classes(tmp_path):
    jsonl, label_map, _ = _city_files(tmp_path)
    split = {"images": str(CITY), "annotations": str(jsonl)}
    with pytest.raises(TaoUserError, match="dataset.label_map: needed"):
        build_dataset(_cfg(split), "val")
    with pytest.raises(TaoUserError, match=r"defines 19 classes but model.sem_seg_head.num_classes=10; set model.sem_seg_head.num_classes=19"):
        build_dataset(_cfg(split, label_map=str(label_map), num_classes=10), "val")


# ----------------------------------------------------------------------------- tiny generated data


def _tiny_panoptic(root: Path, n_images=2, h=40, w=56):
    (root / "images").mkdir(parents=True)
    (root / "pan").mkdir()
    cats = [{"id": 1, "name": "cat", "isthing": 1}, {"id": 5, "name": "grass", "isthing": 0}]
    images, anns = [], []
    rng = np.random.default_rng(0)
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i}.jpg")
        ids = np.full((h, w), 7, np.int64)        # grass everywhere
        ids[5:20, 5:25] = 11                      # one cat
        ids[22:35, 30:50] = 12                    # another cat
        ids[0:3, :] = 0                           # a void band
        write_panoptic_png(root / "pan" / f"{i}.png", ids)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h})
        segs = [{"id": sid, "category_id": c, "iscrowd": 0, "area": int((ids == sid).sum())} for sid, c in ((7, 5), (11, 1), (12, 1))]
        anns.append({"image_id": i + 1, "file_name": f"{i}.png", "segments_info": segs})
    (root / "pan.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return {"images": str(root / "images"), "annotations": str(root / "pan.json"), "panoptic": str(root / "pan"),
            "batch_size": 2, "num_workers": 0}


def test_tiny_panoptic_contiguous_ids_and_fixed_padding(tmp_path):
    split = _tiny_panoptic(tmp_path)
    aug = {"test_min_size": 40, "test_max_size": 100, "fixed_padding": True}
    cfg = _cfg(split, aug=aug, num_classes=2)
    item = build_dataset(cfg, "val")[0]
    assert item["labels"].tolist() == [1, 0, 0]  # grass is index 1, cat index 0 (label-map order)
    batch = next(iter(build_dataloader(cfg, "val")))
    assert tuple(batch["images"].shape[2:]) == (128, 128)  # test_max_size squared, rounded up to 32
    # contiguous_id false: class = id - 1 (grass 4), with placeholders for the skipped ids
    cfg = _cfg(split, aug=aug, num_classes=5, contiguous_id=False)
    item = build_dataset(cfg, "val")[0]
    assert item["labels"].tolist() == [4, 0, 0] and item["texts"][0] == "a photo with a cat"


def test_cutmix_keeps_masks_above_the_small_object_limit(tmp_path):
    split = _tiny_panoptic(tmp_path)
    aug = {"train_min_size": [40], "train_max_size": 100, "train_crop_size": [40, 56]}
    ds = build_dataset(_cfg(split, aug=aug, num_classes=2, cutmix_prob=1.0,
                            task_prob_train={"panoptic": 1.0}), "train")
    for seed in range(4):
        torch.manual_seed(seed)
        item = ds[0]
        areas = item["masks"].flatten(1).sum(1)
        assert (areas > CUTMIX_MIN_AREA).all() and len(item["labels"]) == len(item["masks"])
        painted = item["sem_seg"] != 255
        assert painted.any()


def test_build_targets_drops_crowd_and_empty_segments():
    seg = np.zeros((4, 4), np.int32)
    seg[0] = 1
    seg[1] = 2
    sample = {"image": np.zeros((4, 4, 3), np.uint8), "seg": seg}
    segments = {"ids": np.array([1, 2, 3]), "classes": np.array([0, 0, 1]), "iscrowd": np.array([0, 1, 0])}
    t = build_targets("panoptic", sample, segments, ["a", "b"], np.array([True, False]), 3, 255)
    assert t["labels"].tolist() == [0]  # 2 is crowd, 3 has no pixel
    assert t["texts"] == ["a photo with a a", "a panoptic photo", "a panoptic photo"]
    assert (t["sem_seg"][1] == 255).all() and (t["sem_seg"][0] == 0).all()


# ----------------------------------------------------------------------------- bad data


def test_missing_and_unreadable_files_are_reported_at_once(tmp_path):
    split = _tiny_panoptic(tmp_path, n_images=3)
    os.remove(tmp_path / "images" / "0.jpg")
    (tmp_path / "pan" / "1.png").write_bytes(b"not a png")
    with pytest.raises(TaoUserError) as err:
        build_dataset(_cfg(split, num_classes=2), "val")
    msg = str(err.value)
    assert "2 of 6 files cannot be used (1 missing, 1 unreadable)" in msg
    assert "0.jpg: image file not found" in msg and "pan/1.png" in msg


@pytest.mark.parametrize("field, value, expected", [
    ("category", 0, r"category id 0 is not > 0; ids must start at 1"),
    ("segment", 0, r"segment \(annotation\) ids must be > 0, found 0: id 0 is VOID.*Renumber the segments from 1"),
])
def test_ids_not_above_zero_are_refused(tmp_path, field, value, expected):
    split = _tiny_panoptic(tmp_path)
    data = json.loads(Path(split["annotations"]).read_text())
    if field == "category":
        data["categories"][0]["id"] = value
        for a in data["annotations"]:
            for s in a["segments_info"]:
                s["category_id"] = value if s["category_id"] == 1 else s["category_id"]
    else:
        data["annotations"][0]["segments_info"][1]["id"] = value
    Path(split["annotations"]).write_text(json.dumps(data))
    with pytest.raises(TaoUserError, match=r"(?s)pan\.json.*" + expected):
        build_dataset(_cfg(split, num_classes=2), "val")


def test_bad_jsonl_lines_are_listed(tmp_path):
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"img": "a.png", "segm": "a_mask.png"}\nnot json\n{"img": "b.png"}\n')
    label_map = tmp_path / "labels.json"
    label_map.write_text(json.dumps([{"id": 1, "name": "x"}]))
    with pytest.raises(TaoUserError, match=r"bad\.jsonl: 2 bad lines:\n  line 2: invalid JSON.*\n  line 3: expected"):
        build_dataset(_cfg({"images": str(tmp_path), "annotations": str(jsonl)}, label_map=str(label_map)), "val")


def test_a_file_lost_after_loading_is_a_one_line_error(tmp_path):
    split = _tiny_panoptic(tmp_path)
    loader = build_dataloader(_cfg(split, num_classes=2), "val")
    shutil.rmtree(tmp_path / "pan")
    with pytest.raises(TaoUserError, match=r"pan/0\.png: panoptic PNG not found"):
        next(iter(loader))


def test_collate_pads_to_size_divisibility():
    items = [{"image": torch.ones(3, 30, 40), "labels": torch.tensor([0]), "masks": torch.ones(1, 30, 40, dtype=torch.bool),
              "sem_seg": torch.zeros(30, 40, dtype=torch.int64), "task": "semantic", "task_tokens": torch.zeros(77, dtype=torch.int64),
              "texts": ["a"], "text_tokens": torch.zeros(1, 77, dtype=torch.int64), "image_id": 1, "size": (30, 40)}]
    batch = collate_oneformer(items, size_divisibility=32)
    assert tuple(batch["images"].shape) == (1, 3, 32, 64)
    assert batch["targets"][0]["sem_seg"][30:].eq(255).all() and batch["images"][0, :, 30:].eq(0).all()


# ----------------------------------------------------------------------------- evaluation ground truth


@needs_coco
def test_ground_truth_scores_perfectly_through_the_metrics(tmp_path):
    from tao_core.metrics.coco import evaluate
    from tao_core.metrics.panoptic import PanopticEvaluator
    from tao_core.metrics.segmentation import SemanticEvaluator
    from tao_core.processing.oneformer import instances_to_coco

    ds = build_dataset(_cfg(_coco_split()), "val")
    pan = PanopticEvaluator(ds.table.categories())
    sem = SemanticEvaluator(133)
    semseg_png = np.asarray(Image.open(COCO / "panoptic_semseg_val2017" / "000000142238.png"))
    for i in range(len(ds)):
        gt = ds.ground_truth(i)
        ids, segments = gt["panoptic"]
        pan.update(ids, segments, ids, [{"id": s["id"], "category_id": s["category_id"]} for s in segments])
        sem.update(np.where(gt["semantic"] == 255, 0, gt["semantic"]), gt["semantic"])
        if gt["image_id"] == 142238:  # the shipped semantic PNG is the same convention (crowd painted)
            np.testing.assert_array_equal(gt["semantic"], semseg_png)
    assert pan.compute()["All"]["pq"] == pytest.approx(1.0) and sem.compute()["mIoU"] == pytest.approx(1.0)

    with open(COCO / "annotations/instances_from_panoptic_val2017_sample.json") as f:
        data = json.load(f)
    for a in data["annotations"]:
        a["id"] += 1
    (tmp_path / "instances.json").write_text(json.dumps(data))
    inst = build_dataset(_cfg({"images": str(COCO / "val2017"), "annotations": str(tmp_path / "instances.json")}), "val",
                         task="instance")
    gt_coco = inst.coco_instances()
    results = []
    for i in range(len(inst)):
        from tao_pytorch.oneformer.data import load_sample

        sample, segments = load_sample("instance", inst.records[i], inst.table, 255)
        n = len(segments["classes"])
        results += instances_to_coco({"masks": sample["masks"], "scores": np.linspace(1, 0.5, n, dtype=np.float32),
                                      "labels": segments["classes"]}, inst.records[i]["image_id"], inst.table.category_ids)
    assert evaluate(gt_coco, results, "segm")["mAP"] == pytest.approx(1.0)


@needs_coco
def test_inference_images_are_resized_like_evaluation(tmp_path):
    from tao_pytorch.oneformer.data import build_inference_dataset

    cfg = _cfg(_coco_split(), aug={"test_min_size": 200, "test_max_size": 300})
    ds = build_inference_dataset(cfg, str(COCO / "val2017"))
    item = ds[0]
    assert item["orig_size"] == (427, 640) and item["size"] == (200, 300)  # 640 * 200 / 427 = 299.8 -> 300
    batch = collate_oneformer([ds[0], ds[1]], size_divisibility=32)
    assert tuple(batch["images"].shape) == (2, 3, 224, 320) and "targets" not in batch
    assert [m["path"].endswith(".jpg") for m in batch["meta"]] == [True, True]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    from tao_pytorch.detr.data.dataset import LoadFailure

    assert isinstance(build_inference_dataset(cfg, str(tmp_path))[0], LoadFailure)


@needs_coco
def test_targets_as_logits_round_trip_to_pq_one():
    """Dataset targets turned into ideal logits, through tao-core's post-processing and PQ: the
    chain that evaluate runs (collate padding, upsample, crop, panoptic merge, category ids)."""
    from tao_core.metrics.panoptic import PanopticEvaluator
    from tao_core.processing.oneformer import panoptic_to_coco, postprocess

    ds = build_dataset(_cfg(_coco_split(), aug=_native_size_aug(427)), "val", task="panoptic")
    item = ds[0]
    batch = collate_oneformer([item], size_divisibility=32)
    target = batch["targets"][0]
    n = len(target["labels"])
    mask_cls = np.full((n + 2, 134), -10.0, np.float32)
    mask_cls[np.arange(n), target["labels"].numpy()] = 10.0
    mask_cls[n:, -1] = 10.0  # two spare queries predict "no object"
    mask_pred = np.full((n + 2, *batch["images"].shape[-2:]), -10.0, np.float32)
    mask_pred[:n][target["masks"].numpy()] = 10.0
    seg, info = postprocess("panoptic", mask_cls, mask_pred, padded_hw=batch["images"].shape[-2:],
                            valid_hw=batch["image_sizes"][0], output_hw=item["orig_size"],
                            thing_ids=ds.table.thing_ids, object_mask_threshold=0.8, overlap_threshold=0.8)
    ev = PanopticEvaluator(ds.table.categories())
    ids, segments = ds.ground_truth(0)["panoptic"]
    ev.update(ids, segments, seg, panoptic_to_coco(info, ds.table.category_ids))
    result = ev.compute()
    assert result["All"]["pq"] == pytest.approx(1.0) and result["All"]["n"] == 5  # 5 categories in this image


def test_label_map_errors_name_the_field(tmp_path):
    split = _tiny_panoptic(tmp_path)
    with pytest.raises(TaoUserError, match=r"dataset.label_map: .*missing.json is not a file"):
        build_dataset(_cfg(split, label_map=str(tmp_path / "missing.json"), num_classes=2), "val")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([{"id": 1, "name": "cat"}]))
    with pytest.raises(TaoUserError, match=r"pan\.json: category ids 5 are not in dataset.label_map"):
        build_dataset(_cfg(split, label_map=str(partial), num_classes=2), "val")
