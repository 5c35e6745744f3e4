"""Where the "name: score" tags go: inside the image, next to their box, never over each other
while there is room, readable on small images."""

import numpy as np
import pytest

from tao_core.visualize.draw import draw_detections, place_tags, tag_font


def _inside(xy, size, image_size):
    (x, y), (w, h), (W, H) = xy, size, image_size
    return 0 <= x and 0 <= y and x + w <= W and y + h <= H


def _overlaps(a, sa, b, sb):
    return min(a[0] + sa[0], b[0] + sb[0]) > max(a[0], b[0]) and min(a[1] + sa[1], b[1] + sb[1]) > max(a[1], b[1])


def test_tags_of_boxes_at_the_edges_stay_inside():
    W, H = 160, 120
    boxes = np.array([[0, 0, 50, 40], [130, 0, 160, 20], [-5, 100, 40, 125], [150, 110, 170, 130]], float)
    sizes = [(60, 14)] * 4
    for xy, s in zip(place_tags(boxes, sizes, (W, H)), sizes):
        assert _inside(xy, s, (W, H)), xy


def test_overlapping_boxes_get_separate_tags():
    # three nearly identical boxes at the top edge of a small image: the bug was three tags on one spot
    boxes = np.array([[10, 0, 100, 80], [12, 2, 102, 82], [8, 1, 98, 79]], float)
    sizes = [(70, 14)] * 3
    spots = place_tags(boxes, sizes, (160, 120))
    for i in range(3):
        assert _inside(spots[i], sizes[i], (160, 120))
        for j in range(i):
            assert not _overlaps(spots[i], sizes[i], spots[j], sizes[j]), (spots[i], spots[j])
    # each stays near its own box's left edge
    assert all(abs(x - b[0]) <= 2 for (x, _), b in zip(spots, boxes))


def test_a_tag_with_room_sits_just_above_its_box():
    assert place_tags(np.array([[40, 50, 90, 90]], float), [(30, 12)], (200, 200)) == [(40, 38)]


def test_higher_scores_choose_first():
    boxes = np.array([[10, 30, 80, 90], [10, 30, 80, 90]], float)
    spots = place_tags(boxes, [(40, 12)] * 2, (200, 200), order=[1, 0])
    assert spots[1] == (10, 18)  # box 1 went first and took the spot above the box
    assert spots[0] != spots[1]


def test_crowded_small_image_keeps_every_tag_inside():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 64, (40, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 30, (40, 2))], axis=1)
    sizes = [(50, 13)] * 40
    for spot, s in zip(place_tags(boxes, sizes, (64, 48)), sizes):
        assert _inside(spot, s, (64, 48))


@pytest.mark.parametrize("size,lo,hi", [((160, 120), 11, 11), ((1920, 1080), 22, 22), ((800, 600), 15, 15)])
def test_font_grows_with_the_image(size, lo, hi):
    font = tag_font(size)
    assert lo <= getattr(font, "size", lo) <= hi


def test_drawn_tag_is_inside_and_has_text():
    img = np.full((60, 100, 3), 128, np.uint8)
    # box at the very top: the old tag went above the image and was cut off
    out = np.asarray(draw_detections(img, [[5, 0, 60, 40], [6, 1, 61, 41]], ["car", "car"], [0.9, 0.8],
                                     color_map={"car": (255, 0, 0)}))
    red = np.all(out == (255, 0, 0), axis=2)
    text = np.all(out == (255, 255, 255), axis=2)  # white text on the red tag
    rows = np.flatnonzero(text.any(axis=1))
    assert len(rows) and rows.min() >= 0 and red[: rows.min() + 1].any()
    # two tags: text rows in two separate bands
    bands = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    assert len(bands) == 2
