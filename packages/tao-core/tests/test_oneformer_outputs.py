"""tao_core.tasks.oneformer_outputs and tao_core.visualize.segmentation: the shared OneFormer
inference input, the files of each mode, the drawing, the classes and the framework-free ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tao_core.data.coco_panoptic import read_panoptic_png, write_panoptic_png
from tao_core.data.oneformer_ground_truth import load_eval_split
from tao_core.errors import TaoUserError
from tao_core.tasks.oneformer_outputs import (
    OneFormerOutputWriter,
    PostprocessSettings,
    SegmentationClasses,
    evaluation_input,
    inference_classes,
    network_input,
    normalise_input,
    padded_size,
    semantic_png,
    task_tokens,
)
from tao_core.text import task_text, tokenize
from tao_core.visualize.segmentation import Segment, boundaries, draw_instances, draw_segments

CATS = [{"id": 7, "name": "road", "isthing": 0, "color": [128, 64, 128]},
        {"id": 24, "name": "person", "isthing": 1, "color": [220, 20, 60]}]


def classes() -> SegmentationClasses:
    return SegmentationClasses(["road", "person"], [7, 24], [1], [(128, 64, 128), (220, 20, 60)], "test")


def outputs():
    """Two queries over an 8 x 8 network output: query 0 road on the top half, query 1 person on the bottom-left."""
    cls = np.array([[8.0, -4.0, -4.0], [-4.0, 8.0, -4.0]], np.float32)
    masks = np.full((2, 8, 8), -10.0, np.float32)
    masks[0, :4, :] = 10.0
    masks[1, 4:, :4] = 10.0
    return cls, masks


def test_network_input_and_task_tokens():
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    x = network_input(image, (16, 24))
    assert x.shape == (3, 16, 24) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255
    np.testing.assert_array_equal(network_input(image, (30, 50)), image.transpose(2, 0, 1))
    t = task_tokens("panoptic", 16, 3)
    assert t.shape == (3, 16) and t.dtype == np.float32
    np.testing.assert_array_equal(t[2], tokenize([task_text("panoptic")], context_length=16)[0])
    with pytest.raises(TaoUserError, match="inference.mode: 'depth'"):
        task_tokens("depth", 16)
    n = normalise_input(np.full((1, 3, 2, 2), 123.675, np.float32), [123.675, 0, 0], [58.395, 1, 1])
    assert n[0, 0].max() == 0 and n[0, 1].max() == pytest.approx(123.675)
    assert padded_size((50, 70), 32) == (64, 96) and padded_size((50, 70), 0) == (50, 70)


def test_semantic_png_is_8_or_16_bit_category_ids(tmp_path):
    class_map = np.array([[0, 1], [1, 0]])
    path = tmp_path / "a.png"
    path.write_bytes(semantic_png(class_map, [7, 24]))
    np.testing.assert_array_equal(np.asarray(Image.open(path)), [[7, 24], [24, 7]])
    path.write_bytes(semantic_png(class_map, [7, 300]))
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), [[7, 300], [300, 7]])


@pytest.mark.parametrize("mode", ["semantic", "panoptic", "instance"])
def test_writer_files_per_mode(tmp_path, mode):
    image = np.full((16, 16, 3), 90, np.uint8)
    writer = OneFormerOutputWriter(tmp_path, PostprocessSettings(mode, 0.4, 0.8, 3), classes())
    cls, masks = outputs()
    writer.write(tmp_path / "in" / "img.png", image, cls, masks, padded_hw=(32, 32), valid_hw=(32, 32))
    writer.close()
    shot = np.asarray(Image.open(tmp_path / "images_annotated" / "img.png"))
    assert shot.shape == (16, 16, 3) and (shot != 90).any()
    assert json.loads((tmp_path / "images.json").read_text())[0]["id"] == 1
    if mode == "semantic":
        ids = np.asarray(Image.open(tmp_path / "semantic" / "img.png"))
        assert ids[0, 0] == 7 and ids[15, 0] == 24
    elif mode == "panoptic":
        seg = read_panoptic_png(tmp_path / "panoptic" / "img.png")
        pan = json.loads((tmp_path / "panoptic.json").read_text())
        info = {s["category_id"]: s for s in pan["annotations"][0]["segments_info"]}
        assert set(info) == {7, 24} and info[24]["isthing"] == 1
        assert info[7]["area"] == int((seg == info[7]["id"]).sum()) == 128
        assert info[24]["bbox"] == [0.0, 8.0, 8.0, 8.0]
        assert {c["id"] for c in pan["categories"]} == {7, 24}
    else:
        found = json.loads((tmp_path / "instances.json").read_text())
        assert len(found) == 3 and found[0]["category_id"] in (7, 24) and found[0]["score"] > 0.9
        assert found[0]["segmentation"]["size"] == [16, 16]


def test_drawing_colours_outlines_and_legend():
    image = np.zeros((40, 60, 3), np.uint8)
    seg = np.zeros((40, 60), np.int64)
    seg[20:, :30] = 1
    seg[20:, 30:] = 2
    red, blue = (255, 0, 0), (0, 0, 255)
    canvas = np.asarray(draw_segments(image, seg, [Segment(1, "a", red, tagged=False), Segment(2, "b", blue, False)]))
    assert tuple(canvas[35, 10]) == (115, 0, 0)  # 0.45 of the colour over black
    assert tuple(canvas[35, 29]) == (140, 0, 0)  # the outline: the colour darkened
    assert canvas[2:10, 2:10].max() > 200  # the white legend box in the top-left corner
    edge = boundaries(seg)
    assert edge[19, 5] and edge[20, 5] and not edge[30, 5] and edge[30, 29] and edge[30, 30]
    masks = np.zeros((2, 100, 150), bool)
    masks[0, 50:80, 50:90] = masks[1, 60:95, 70:140] = True
    big = np.zeros((100, 150, 3), np.uint8)
    out = np.asarray(draw_instances(big, masks, [Segment(1, "a", red, 0.9), Segment(2, "b", blue, 0.5)]))
    assert out[75, 80, 0] > out[75, 80, 2] > 0  # the better-scored instance is painted last, on top


def test_classes_from_label_map_annotations_or_placeholders(tmp_path):
    label_map = tmp_path / "labels.json"
    label_map.write_text(json.dumps(CATS))
    cfg = {"dataset": {"label_map": str(label_map), "test": {}}}
    c = inference_classes(cfg, 3)
    assert c.names == ["road", "person", "class_2"] and c.category_ids == [7, 24, 25] and c.thing_ids == [1, 2]
    assert c.colors[0] == (128, 64, 128)
    with pytest.raises(TaoUserError, match="names 2 classes but model.sem_seg_head.num_classes has 1"):
        inference_classes(cfg, 1)
    ann = tmp_path / "pan.json"
    ann.write_text(json.dumps({"categories": CATS}))
    assert inference_classes({"dataset": {"test": {"annotations": str(ann)}}}, 2).names == ["road", "person"]
    assert inference_classes({"dataset": {"test": {}}}, 2).names == ["class_0", "class_1"]
    with pytest.raises(TaoUserError, match="inference.mode"):
        PostprocessSettings.from_spec({"model": {"mode": "x"}, "inference": {"mode": None}})


def test_panoptic_ground_truth_without_a_framework(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "pan").mkdir()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "images" / "a.jpg")
    ids = np.zeros((4, 6), np.int64)
    ids[:2] = 5
    ids[2:, :3] = 9
    write_panoptic_png(tmp_path / "pan" / "a.png", ids)
    ann = {"images": [{"id": 3, "file_name": "a.jpg", "width": 6, "height": 4}], "categories": CATS,
           "annotations": [{"image_id": 3, "file_name": "a.png", "segments_info": [
               {"id": 5, "category_id": 7, "iscrowd": 0, "area": 12, "bbox": [0, 0, 6, 2]},
               {"id": 9, "category_id": 24, "iscrowd": 0, "area": 6, "bbox": [0, 2, 3, 2]}]}]}
    (tmp_path / "pan.json").write_text(json.dumps(ann))
    cfg = {"dataset": {"test": {"images": str(tmp_path / "images"), "annotations": str(tmp_path / "pan.json"),
                                "panoptic": str(tmp_path / "pan")}},
           "model": {"sem_seg_head": {"ignore_value": 255}}}
    split = load_eval_split(cfg, "test")
    gt = split.ground_truth(0)
    assert split.fmt == "panoptic" and gt["image_id"] == 3
    np.testing.assert_array_equal(gt["semantic"], [[0] * 6] * 2 + [[1, 1, 1, 255, 255, 255]] * 2)
    assert [s["id"] for s in gt["panoptic"][1]] == [5, 9]


def test_evaluation_input_resizes_like_the_checkpoint_evaluation_and_pads_with_the_mean():
    image = np.random.default_rng(0).integers(0, 256, (427, 640, 3), dtype=np.uint8)
    mean = [123.675, 116.28, 103.53]
    x, hw = evaluation_input(image, (64, 64), 48, 64, mean)  # shorter side 48 -> 72 wide > 64: capped at 64
    assert hw == (43, 64) and x.shape == (3, 64, 64) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :43], network_input(image, (43, 64)))  # the same resize as the loader
    np.testing.assert_array_equal(x[:, 43:], np.broadcast_to(np.float32(mean).reshape(3, 1, 1), (3, 21, 64)))
    x, hw = evaluation_input(image, (32, 32), 800, 1333, mean)  # larger than the engine: scaled down to fit
    assert hw == (21, 32)
    x, hw = evaluation_input(image, (160, 288), 160, 320, mean)  # fits: only the test resize
    assert hw == (160, 240) and (x[:, :, 240:] == np.float32(mean).reshape(3, 1, 1)).all()
