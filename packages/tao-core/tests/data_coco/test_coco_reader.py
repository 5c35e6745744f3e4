"""load_coco_sources: real datasets, every bad input's message, box cleaning, multi-source ids."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tao_core.data.coco import load_coco_sources
from tao_core.errors import TaoUserError


def _shared(shared_data, name, split):
    if shared_data is None:
        pytest.skip("shared/data not available")
    root = shared_data / name
    return {"image_dir": str(root / split / "images"), "json_file": str(root / "annotations" / f"instances_{split}.json")}


@pytest.mark.parametrize("name,split,n_img,n_box,num_classes", [
    ("raccoon", "train", 160, 175, 2), ("raccoon", "val", 40, 42, 2),
    ("bccd", "train", 292, 3922, 4), ("bccd", "val", 72, 964, 4),
])
def test_real_datasets_counts(shared_data, name, split, n_img, n_box, num_classes):
    index = load_coco_sources([_shared(shared_data, name, split)], num_classes)
    assert len(index) == n_img
    assert sum(len(r["boxes"]) for r in index) == n_box
    assert index.stats == {"images": n_img, "boxes": n_box, "dropped_degenerate": 0, "dropped_outside": 0,
                           "clipped": 0}
    for rec in index:
        b = rec["boxes"]
        assert b.dtype == np.float32 and b.shape[1] == 4
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] <= rec["height"]).all()


def test_bccd_class_counts_and_names(shared_data):
    index = load_coco_sources([_shared(shared_data, "bccd", "train")], 4)
    assert [c["name"] for c in index.categories] == ["Platelets", "RBC", "WBC"]
    counts = np.bincount(np.concatenate([r["category_ids"] for r in index]), minlength=4)
    assert counts.tolist() == [0, 291, 3332, 299]


def test_bccd_num_classes_too_small_names_the_fix(shared_data):
    with pytest.raises(TaoUserError) as e:
        load_coco_sources([_shared(shared_data, "bccd", "train")], 3)
    msg = str(e.value)
    assert "category_id 3" in msg and "dataset.num_classes=3" in msg and "dataset.num_classes=4" in msg
    assert "device-side assert" in msg


def test_bad_json_syntax_gives_line_and_column(coco):
    src = coco.make(raw='{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(TaoUserError, match=r"instances\.json: invalid JSON at line 2, column 12"):
        load_coco_sources([src], 2)


def test_missing_json_file(tmp_path):
    with pytest.raises(TaoUserError, match=r"gone\.json: annotation file not found"):
        load_coco_sources([{"image_dir": str(tmp_path), "json_file": str(tmp_path / "gone.json")}], 2)


def test_missing_required_keys(coco):
    src = coco.make(raw=json.dumps({"images": [], "categories": []}))
    with pytest.raises(TaoUserError, match="missing required key 'annotations'"):
        load_coco_sources([src], 2)
    src = coco.make(name="b", anns=[{"bbox": None}])
    with pytest.raises(TaoUserError, match=r"annotations\[0\]: needs .* bbox \[x, y, width, height\]"):
        load_coco_sources([src], 2)


def test_category_id_zero_explains_background(coco):
    src = coco.make(anns=[{"category_id": 0}, {}], categories=[(0, "bg_thing"), (1, "cat")])
    with pytest.raises(TaoUserError) as e:
        load_coco_sources([src], 2)
    msg = str(e.value)
    assert "category_id 0" in msg and "'bg_thing'" in msg and "reserved for background" in msg
    assert "largest id + 1" in msg


def test_category_id_not_below_num_classes(coco):
    src = coco.make(anns=[{"category_id": 7}, {"category_id": 5}, {}],
                    categories=[(1, "a"), (5, "b"), (7, "c")])
    with pytest.raises(TaoUserError) as e:
        load_coco_sources([src], 5)
    msg = str(e.value)
    assert "category_id 5, 7" in msg and "dataset.num_classes=5" in msg
    assert "set dataset.num_classes=8" in msg and "instances.json" in msg


def test_unused_out_of_range_category_is_dropped(coco, caplog):
    # Roboflow-style exports list a supercategory with id 0 that no annotation uses.
    src = coco.make(anns=[{}], categories=[(0, "cells"), (1, "cat")])
    with caplog.at_level(logging.WARNING):
        index = load_coco_sources([src], 2)
    assert [c["id"] for c in index.categories] == [1]
    assert "unused category cells" in caplog.text


@pytest.mark.parametrize("ids,expected", [
    ([0, 1], r"annotation ids must be positive integers, found 0 \(1 annotations\)"),
    ([3, 3, 4], r"duplicate annotation ids: 3"),
])
def test_bad_annotation_ids(coco, ids, expected):
    src = coco.make(anns=[{"id": i} for i in ids])
    with pytest.raises(TaoUserError, match=expected):
        load_coco_sources([src], 2)


def test_unknown_image_and_category_references(coco):
    src = coco.make(anns=[{"image_id": 99}, {"category_id": 4}], categories=[(1, "cat")])
    with pytest.raises(TaoUserError) as e:
        load_coco_sources([src], 10)
    msg = str(e.value)
    assert "2 problems" in msg and "image ids not listed in 'images': 99" in msg
    assert "category ids not listed in 'categories': 4" in msg


def test_missing_images_reported_all_at_once(coco):
    images = [(i, f"img{i}.jpg", 32, 32) for i in range(1, 31)]
    src = coco.make(images=images, write_images=False)
    folder = coco.root / "set" / "images"
    for _, fname, w, h in images[:5]:  # 5 present, 25 missing
        Image.new("RGB", (w, h)).save(folder / fname)
    with pytest.raises(TaoUserError) as e:
        load_coco_sources([src], 2, max_missing_report=20)
    msg = str(e.value)
    assert "25 of 30 images cannot be used (25 missing, 0 unreadable)" in msg
    assert msg.count("image file not found") == 20 and "... and 5 more" in msg
    assert "img6.jpg: image file not found" in msg and "img5.jpg" not in msg


def test_undecodable_image_is_reported(coco):
    src = coco.make(images=[(1, "a.jpg", 64, 48), (2, "b.jpg", 64, 48)])
    (coco.root / "set" / "images" / "b.jpg").write_bytes(b"\x00" * 100)
    with pytest.raises(TaoUserError, match=r"1 of 2 images cannot be used \(0 missing, 1 unreadable\)"):
        load_coco_sources([src], 2)


def test_truncated_image_needs_full_decode(coco):
    src = coco.make(images=[(1, "a.jpg", 64, 48)])
    path = coco.root / "set" / "images" / "a.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert len(load_coco_sources([src], 2, check_images="header")) == 1  # header check passes
    with pytest.raises(TaoUserError, match="cannot decode image"):
        load_coco_sources([src], 2)  # the default decodes every image


def test_zero_size_boxes_dropped_with_count(coco, caplog):
    src = coco.make(anns=[{"bbox": [1, 1, 0, 5]}, {"bbox": [1, 1, 5, -2]}, {}])
    with caplog.at_level(logging.WARNING):
        index = load_coco_sources([src], 2)
    assert len(index[0]["boxes"]) == 1 and index.stats["dropped_degenerate"] == 2
    assert "dropped 2 boxes with non-positive width or height (annotation ids 1, 2)" in caplog.text


def test_out_of_image_boxes_clipped_with_count(coco, caplog):
    # image 64x48: one box sticks out right/bottom, one left/top, one lies entirely outside.
    src = coco.make(anns=[{"bbox": [50, 40, 30, 20]}, {"bbox": [-5, -3, 10, 10]}, {"bbox": [70, 1, 5, 5]}, {}])
    with caplog.at_level(logging.WARNING):
        index = load_coco_sources([src], 2)
    rec = index[0]
    assert rec["boxes"].tolist() == [[50, 40, 64, 48], [0, 0, 5, 7], [1, 2, 11, 14]]
    assert rec["orig_ann_ids"].tolist() == [1, 2, 4]
    assert index.stats["clipped"] == 2 and index.stats["dropped_outside"] == 1
    assert "clipped 2 boxes extending outside their image" in caplog.text
    assert "dropped 1 boxes lying entirely outside" in caplog.text


def test_size_comes_from_the_upright_file(coco, caplog):
    src = coco.make(images=[(1, "a.jpg", 64, 48)], anns=[{}])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (64, 48)).save(coco.root / "set" / "images" / "a.jpg", exif=exif.tobytes())
    with caplog.at_level(logging.WARNING):
        index = load_coco_sources([src], 2)
    assert (index[0]["width"], index[0]["height"]) == (48, 64)
    assert index.stats["size_mismatch"] == 1 and "json 64x48 vs file 48x64" in caplog.text


def test_width_height_optional_only_when_images_are_read(coco):
    raw = json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [],
                      "categories": [{"id": 1, "name": "cat"}]})
    src = coco.make(raw=raw)
    assert (load_coco_sources([src], 2)[0]["width"]) == 64
    with pytest.raises(TaoUserError, match="positive integer width/height"):
        load_coco_sources([src], 2, check_images=False)


def test_several_sources_get_unique_ids(coco):
    a = coco.make("a", images=[(1, "x.jpg", 64, 48), (2, "y.jpg", 64, 48)], anns=[{}, {"image_id": 2}])
    b = coco.make("b", images=[(1, "x.jpg", 32, 32)], anns=[{"category_id": 2}],
                  categories=[(1, "cat"), (2, "dog")])
    index = load_coco_sources([a, b], 3)
    assert [r["image_id"] for r in index] == [1, 2, 3]
    assert [(r["source"], r["orig_image_id"]) for r in index] == [(0, 1), (0, 2), (1, 1)]
    assert np.concatenate([r["ann_ids"] for r in index]).tolist() == [1, 2, 3]
    assert np.concatenate([r["orig_ann_ids"] for r in index]).tolist() == [1, 2, 1]
    assert index[2]["path"].endswith("b/images/x.jpg")
    assert index.original_image_id(3) == (b["json_file"], 1)
    assert [c["name"] for c in index.categories] == ["cat", "dog"]

    gt = index.to_coco_dict()
    assert [im["id"] for im in gt["images"]] == [1, 2, 3]
    assert [(a["id"], a["image_id"], a["category_id"]) for a in gt["annotations"]] == [(1, 1, 1), (2, 2, 1), (3, 3, 2)]
    assert gt["annotations"][0]["bbox"] == [1, 2, 10, 12]


def test_sources_disagreeing_on_a_category_name(coco):
    a = coco.make("a", anns=[{}])
    b = coco.make("b", anns=[{}], categories=[(1, "dog")])
    with pytest.raises(TaoUserError, match="category id 1 is 'cat' in .* but 'dog' in"):
        load_coco_sources([a, b], 2)


def test_json_file_glob_expands_shards(coco):
    a = coco.make("shards", images=[(1, "x.jpg", 64, 48)], anns=[{}])
    # A second shard in the same folder, sharing image_dir.
    shard2 = coco.root / "shards" / "instances2.json"
    shard2.write_text((coco.root / "shards" / "instances.json").read_text())
    index = load_coco_sources({"image_dir": a["image_dir"], "json_file": str(coco.root / "shards" / "instances*.json")}, 2)
    assert len(index) == 2 and len(index.sources) == 2


def test_segmentation_and_crowd_are_kept(coco):
    poly = [[1, 1, 10, 1, 10, 10]]
    rle = {"counts": "abc", "size": [48, 64]}
    src = coco.make(anns=[{"segmentation": poly}, {"segmentation": rle, "iscrowd": 1}, {}])
    rec = load_coco_sources([src], 2)[0]
    assert rec["segmentation"] == [poly, rle, None]
    assert rec["iscrowd"].tolist() == [0, 1, 0]


def test_reemitted_gt_loads_in_pycocotools(shared_data, tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    index = load_coco_sources([_shared(shared_data, "raccoon", "train"), _shared(shared_data, "raccoon", "val")], 2)
    path = tmp_path / "gt.json"
    index.write_coco_json(path)
    gt = coco_api.COCO(str(path))
    assert len(gt.getImgIds()) == 200 and len(gt.getAnnIds()) == 217
    src = json.loads((shared_data / "raccoon" / "annotations" / "instances_val.json").read_text())
    first = src["annotations"][0]
    rec = next(r for r in index if r["source"] == 1 and r["orig_image_id"] == first["image_id"])
    assert gt.loadAnns([int(rec["ann_ids"][0])])[0]["bbox"] == pytest.approx(first["bbox"])


def test_bad_dataset_type(coco):
    with pytest.raises(TaoUserError, match="dataset.dataset_type: got 'fast'"):
        load_coco_sources([coco.make()], 2, dataset_type="fast")


def test_no_framework_import():
    code = ("import sys, tao_core.data.coco, tao_core.data.serialized, tao_core.data.images; "
            "print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_non_integer_or_huge_ids_are_reported(coco):
    src = coco.make(anns=[{"id": 2**70}, {"image_id": "1"}, {"category_id": True}])
    with pytest.raises(TaoUserError) as e:
        load_coco_sources([src], 2)
    msg = str(e.value)
    assert "3 problems" in msg and "annotations[0]" in msg and "annotations[2]" in msg
