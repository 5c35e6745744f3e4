"""Every image is decided at load time: a tolerated truncation is a warning naming the file, an
undecodable image an error before compute listing all bad files at once; an empty split and a
split with nothing to score name their real cause."""

import logging

import numpy as np
import pytest
from PIL import Image

from tao_core.data.coco import load_coco_sources
from tao_core.data.images import decode_check, load_image_checked, load_image_rgb
from tao_core.errors import TaoUserError
from tao_core.tasks.evaluation import require_ground_truth


def _photo(path, w=96, h=64):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)).save(path, quality=90)
    return path.read_bytes()


def test_jpeg_missing_its_last_bytes_is_a_warning_not_an_error(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(_photo(path)[:-20])
    with pytest.raises(TaoUserError, match="cut.jpg: cannot decode image"):
        load_image_rgb(path)  # strict by default: only what the check accepted loads truncated
    assert decode_check(path).truncated is not None and decode_check(path).width == 96
    arr, warning = load_image_checked(path)
    assert arr.shape == (64, 96, 3) and str(path) in warning and "cut short" in warning


def test_reader_warns_for_a_tolerated_truncation_and_marks_the_record(coco, caplog):
    src = coco.make(images=[(1, "a.jpg", 96, 64), (2, "b.jpg", 96, 64)])
    path = coco.root / "set" / "images" / "a.jpg"
    path.write_bytes(_photo(path)[:-20])
    with caplog.at_level(logging.WARNING):
        index = load_coco_sources([src], 2)
    assert f"{path}: the file is cut short (truncated)" in caplog.text
    assert [rec["truncated"] for rec in index] == [True, False] and index.stats["truncated"] == 1
    assert load_image_rgb(path, allow_truncated=True).shape == (64, 96, 3)


def test_all_undecodable_images_are_listed_in_one_error(coco):
    src = coco.make(images=[(1, "a.jpg", 96, 64), (2, "b.jpg", 96, 64), (3, "c.jpg", 96, 64)])
    for name in ("a.jpg", "c.jpg"):
        path = coco.root / "set" / "images" / name
        data = _photo(path)
        path.write_bytes(data[: len(data) // 2])  # half the picture missing: not tolerated
    with pytest.raises(TaoUserError) as err:
        load_coco_sources([src], 2)
    message = str(err.value)
    assert "2 of 3 images cannot be used (0 missing, 2 unreadable)" in message
    assert "a.jpg: cannot decode image: the file is cut short and 50% of the image is missing" in message
    assert "c.jpg" in message and "b.jpg" not in message
    assert len(load_coco_sources([src], 2, check_images="header")) == 3  # headers alone are intact


def test_empty_json_names_the_real_cause(coco):
    src = coco.make(images=[], write_images=False)
    with pytest.raises(TaoUserError, match=r"instances.json: lists no images \('images' is empty\)"):
        load_coco_sources([src], 2)


def test_nothing_to_score_is_an_error(coco):
    src = coco.make(anns=[{"bbox": [1, 1, 0, 5]}, {"bbox": [200, 200, 5, 5]}])
    index = load_coco_sources([src], 2)
    with pytest.raises(TaoUserError, match=r"every ground-truth box was dropped \(1 with non-positive width or "
                                           r"height, 1 lying entirely outside their image\)"):
        require_ground_truth(index, "dataset.val_data_sources")
    bare = load_coco_sources([coco.make(name="bare")], 2)
    with pytest.raises(TaoUserError, match="have no ground-truth box"):
        require_ground_truth(bare, "dataset.val_data_sources")
    ok = load_coco_sources([coco.make(name="ok", anns=[{}])], 3)
    require_ground_truth(ok, "dataset.val_data_sources")
    with pytest.raises(TaoUserError, match=r"dataset.eval_class_ids=\[2\]: no ground-truth box"):
        require_ground_truth(ok, "dataset.val_data_sources", [2])
