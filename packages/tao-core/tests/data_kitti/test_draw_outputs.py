"""Drawing detections and the shared inference outputs (images_annotated/ + labels/)."""

import numpy as np
import pytest
from PIL import Image

from tao_core.data.kitti import read_kitti_labels
from tao_core.errors import TaoUserError
from tao_core.visualize.draw import default_color, draw_detections, parse_color
from tao_core.visualize.outputs import InferenceWriter


def _gray(w=120, h=80):
    return np.full((h, w, 3), 128, dtype=np.uint8)


def test_box_edge_has_class_colour_and_size_kept():
    img = _gray()
    out = draw_detections(img, [[20, 30, 90, 70]], ["person"], [0.9], color_map={"person": "red"},
                          outline_width=3)
    assert out.size == (120, 80) and out.mode == "RGB"
    px = np.asarray(out)
    assert tuple(px[50, 20]) == (255, 0, 0)  # left edge, below the tag
    assert tuple(px[50, 22]) == (255, 0, 0)  # width 3 reaches inward
    assert tuple(px[70, 60]) == (255, 0, 0)  # bottom edge
    assert tuple(px[50, 55]) == (128, 128, 128)  # inside untouched
    assert (img == 128).all()  # the caller's array is not modified


@pytest.mark.parametrize("spec", ["#00ff00", "lime", [0, 255, 0], (0, 255, 0), "rgb(0,255,0)"])
def test_colour_spellings(spec):
    assert parse_color(spec) == (0, 255, 0)
    out = draw_detections(_gray(), [[10, 40, 60, 70]], ["car"], color_map={"car": spec})
    assert tuple(np.asarray(out)[55, 10]) == (0, 255, 0)


@pytest.mark.parametrize("bad", ["reddish", [1, 2], [0, 0, 300], "#12"])
def test_unknown_colour_is_user_error(bad):
    with pytest.raises(TaoUserError, match="color_map.car"):
        draw_detections(_gray(), [[1, 1, 5, 5]], ["car"], color_map={"car": bad})


def test_default_palette_is_stable_and_used():
    assert default_color("car") == default_color("car")
    assert default_color("car") != default_color("person")
    out = draw_detections(_gray(), [[10, 40, 60, 70]], ["truck"], [0.4])
    assert tuple(np.asarray(out)[55, 10]) == default_color("truck")


def test_color_map_key_case_insensitive():
    out = draw_detections(_gray(), [[10, 40, 60, 70]], ["Person"], color_map={"person": "blue"})
    assert tuple(np.asarray(out)[55, 10]) == (0, 0, 255)


def test_scores_shown_or_not_change_tag():
    kw = dict(boxes_xyxy=[[10, 40, 100, 70]], class_names=["car"], scores=[0.9])
    with_s = np.asarray(draw_detections(_gray(), **kw))
    without = np.asarray(draw_detections(_gray(), **kw, show_scores=False))
    assert not np.array_equal(with_s, without)


def test_grayscale_and_pil_inputs():
    out = draw_detections(np.zeros((30, 40), np.uint8), [], [])
    assert out.size == (40, 30) and out.mode == "RGB"
    pil = Image.new("L", (50, 20))
    assert draw_detections(pil, [[1, 1, 10, 10]], ["a"]).size == (50, 20)
    assert pil.mode == "L"


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="one of each per box"):
        draw_detections(_gray(), [[1, 1, 5, 5]], ["a", "b"])


def test_writer_writes_both_outputs_and_filters(tmp_path):
    src = tmp_path / "in" / "frame_07.png"
    src.parent.mkdir()
    Image.fromarray(_gray()).save(src)
    writer = InferenceWriter(tmp_path / "res", color_map={"person": "red"}, conf_threshold=0.5)
    img_out, lab_out = writer.write(
        src, None,
        boxes_xyxy=[[20, 30, 90, 70], [5, 5, 15, 15], [40, 40, 60, 60]],
        scores=[0.91234, 0.2, 0.5],
        class_names=["person", "car", "car"],
    )
    assert img_out == tmp_path / "res" / "images_annotated" / "frame_07.png"
    assert lab_out == tmp_path / "res" / "labels" / "frame_07.txt"
    objs = read_kitti_labels(lab_out, lowercase=False)
    assert [(o.type, o.bbox, o.score) for o in objs] == [
        ("person", (20.0, 30.0, 90.0, 70.0), 0.912),
        ("car", (40.0, 40.0, 60.0, 60.0), 0.5),  # score == threshold is kept
    ]
    assert lab_out.read_text().splitlines()[0] == (
        "person 0.00 0 0.00 20.000 30.000 90.000 70.000 0.00 0.00 0.00 0.00 0.00 0.00 0.00 0.912"
    )
    with Image.open(img_out) as im:
        px = np.asarray(im.convert("RGB"))
    assert px.shape == (80, 120, 3)
    assert tuple(px[50, 20]) == (255, 0, 0)
    assert tuple(px[10, 5]) == (128, 128, 128)  # the 0.2 car box was not drawn
    leftovers = [p.name for p in (tmp_path / "res").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_writer_jpeg_and_empty(tmp_path):
    writer = InferenceWriter(tmp_path / "res", conf_threshold=0.95)
    img_out, lab_out = writer.write(tmp_path / "x" / "a.jpeg", _gray(), [[1, 1, 9, 9]], [0.3], ["car"])
    assert img_out.name == "a.jpg" and lab_out.read_text() == ""
    with Image.open(img_out) as im:
        assert im.format == "JPEG" and im.size == (120, 80)


def test_writer_validates_up_front(tmp_path):
    with pytest.raises(TaoUserError, match="unknown colour"):
        InferenceWriter(tmp_path, color_map={"car": "not-a-colour"})
    with pytest.raises(TaoUserError, match="conf_threshold"):
        InferenceWriter(tmp_path, conf_threshold=-0.1)
    assert not any(tmp_path.iterdir())
