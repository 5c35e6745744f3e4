"""convert: a class mapping that drops every box is an error, one that drops most a warning; both
name the classes seen and the field to set."""

import logging

import pytest

from tao_core.data.kitti_to_coco import kitti_to_coco_shards
from tao_core.errors import TaoUserError


def test_default_mapping_dropping_every_box_is_an_error(tmp_path, make_source):
    make_source(tmp_path / "seq", ["car", "truck"], [(30, 20)] * 4)
    (tmp_path / "list.txt").write_text("seq\n")
    with pytest.raises(TaoUserError) as err:
        kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels", num_shards=1)
    message = str(err.value)
    assert "the default mapping (DEFAULT_TARGET_CLASS_MAPPING) keeps none of the 7 boxes" in message
    assert "car (4)" in message and "truck (3)" in message and "set mapping_path" in message
    assert not (tmp_path / "out").exists()  # nothing written


def test_mapping_dropping_most_boxes_warns(tmp_path, make_source, caplog):
    make_source(tmp_path / "seq", ["car", "tree", "tree"], [(30, 20)] * 3)
    (tmp_path / "list.txt").write_text("seq\n")
    mp = tmp_path / "m.json"
    mp.write_text('{"car": "car"}')
    with caplog.at_level(logging.WARNING):
        s = kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels", num_shards=1,
                                 mapping_path=mp)
    assert s.skipped_unmapped == 4 and s.num_annotations == 2
    assert f"mapping_path {mp} drops 4 of 6 boxes, of the classes tree (4)" in caplog.text
    assert "set mapping_path" in caplog.text
