"""Draw detection boxes with class names and scores on an image.

Colours follow TAO's inference `color_map` spec: {class name: colour}, where a colour is a
colour name ("red"), a hex string ("#ff0000"), a CSS "rgb(...)" string or an [R, G, B] list.
Classes missing from the map get a colour derived from a hash of their name, so a class keeps
the same colour across images, runs and processes whatever else is in the picture.
"""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from tao_core.errors import TaoUserError

RGB = tuple[int, int, int]
ColorSpec = str | Sequence[int]


def parse_color(value: ColorSpec, where: str = "color_map") -> RGB:
    """An RGB tuple from a colour name, hex/rgb() string or [R, G, B]; else TaoUserError."""
    if isinstance(value, str):
        try:
            rgb = ImageColor.getrgb(value.strip())
        except ValueError:
            raise TaoUserError(
                f"{where}: unknown colour {value!r}; expected a colour name such as 'red', "
                "a hex string '#rrggbb' or an [R, G, B] list"
            ) from None
        return rgb[:3]
    is_rgb = isinstance(value, Sequence) and len(value) == 3
    if is_rgb and all(isinstance(v, int | np.integer) and 0 <= v <= 255 for v in value):
        return int(value[0]), int(value[1]), int(value[2])
    raise TaoUserError(f"{where}: colour {value!r}; expected [R, G, B] with integers 0..255")


def parse_color_map(color_map: Mapping[str, ColorSpec] | None) -> dict[str, RGB]:
    """Validate a whole color_map up front, so a typo fails before any image is processed."""
    if not color_map:
        return {}
    return {str(k): parse_color(v, f"color_map.{k}") for k, v in color_map.items()}


def default_color(name: str) -> RGB:
    """A saturated colour picked from the class name alone (stable across runs)."""
    h = zlib.crc32(name.encode("utf-8"))
    hue = (h % 360) / 360.0
    value = 0.75 + ((h >> 9) % 25) / 100.0  # 0.75..0.99: bright enough to see on dark scenes
    r, g, b = colorsys.hsv_to_rgb(hue, 0.9, value)
    return round(r * 255), round(g * 255), round(b * 255)


def class_color(name: str, colors: Mapping[str, RGB]) -> RGB:
    """The colour for a class: exact key, else case-insensitive key, else default_color."""
    if name in colors:
        return colors[name]
    lowered = {k.lower(): v for k, v in colors.items()}
    return lowered.get(name.lower(), default_color(name))


def to_pil_rgb(image: np.ndarray | Image.Image) -> Image.Image:
    """A new RGB PIL image from a PIL image or an HxW / HxWx{1,3,4} uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # convert() always copies, so the caller's image is untouched
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TaoUserError(f"image array has dtype {arr.dtype}; expected uint8 (0..255)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]), "RGB")
    raise TaoUserError(f"image array has shape {arr.shape}; expected HxW or HxWx3")


def draw_detections(
    image: np.ndarray | Image.Image,
    boxes_xyxy: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    scores: Sequence[float] | np.ndarray | None = None,
    color_map: Mapping[str, ColorSpec] | None = None,
    outline_width: int = 3,
    show_scores: bool = True,
) -> Image.Image:
    """A copy of `image` with one box per detection and a "name: score" tag on each.

    boxes_xyxy are pixel corners (x1, y1, x2, y2), class_names one name per box, scores
    optional (one per box). outline_width 3 is TAO's default. Tags are placed by place_tags:
    always inside the image, never over another tag while a free spot exists, and drawn after
    every box so no outline crosses a tag.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(class_names) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(
            f"got {len(boxes)} boxes, {len(class_names)} class names and "
            f"{'no' if scores is None else len(scores)} scores; expected one of each per box"
        )
    if outline_width < 1:
        raise TaoUserError(f"outline_width: got {outline_width!r}; expected an integer >= 1")
    colors = parse_color_map(color_map)
    canvas = to_pil_rgb(image)
    draw = ImageDraw.Draw(canvas)
    font = tag_font(canvas.size)
    texts, box_colors = [], []
    for i, (box, name) in enumerate(zip(boxes, class_names, strict=True)):
        color = class_color(name, colors)
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=color, width=int(outline_width))
        texts.append(f"{name}: {float(scores[i]):.2f}" if show_scores and scores is not None else name)
        box_colors.append(color)
    sizes = [_text_size(draw, font, t) for t in texts]
    # The best-scoring detections choose their spot first.
    order = list(np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")) if scores is not None else None
    for i, (x, y) in enumerate(place_tags(boxes, sizes, canvas.size, order)):
        _draw_tag(draw, font, texts[i], x, y, sizes[i], box_colors[i])
    return canvas


TAG_PAD = 2  # pixels between the text and the tag's edge


def tag_font(image_size: tuple[int, int]):
    """Pillow's built-in scalable font, sized to the picture: 1/40 of the shorter side, 11 to 22 px
    (readable on a 200-pixel thumbnail, not oversized on a 1080p frame)."""
    size = int(min(22, max(11, round(min(image_size) / 40))))
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, font, text: str) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(right - left) + 2 * TAG_PAD, int(bottom - top) + 2 * TAG_PAD


def place_tags(
    boxes_xyxy: np.ndarray,
    tag_sizes: Sequence[tuple[int, int]],
    image_size: tuple[int, int],
    order: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """Top-left corner of each box's tag (w, h): inside the image (W, H) whenever the tag fits in
    it, and not overlapping an earlier-placed tag whenever one of the candidate spots is free.

    Candidates, in order: above the box's top-left corner, inside it below the top edge, one tag
    height lower; below the box, inside above the bottom edge, one tag height higher; then spots
    further away from both corners by whole tag heights (up to MAX_TAG_SHIFTS). Every candidate is shifted into the image first. With no free
    spot, the candidate overlapping the placed tags least is taken. `order`: which box chooses
    first (default 0..n-1).
    """
    width, height = image_size
    placed = np.zeros((0, 4), dtype=np.float64)
    result: list[tuple[int, int]] = [(0, 0)] * len(boxes_xyxy)
    for i in range(len(boxes_xyxy)) if order is None else order:
        x1, y1, x2, y2 = (float(v) for v in boxes_xyxy[i])
        w, h = tag_sizes[i]
        bottom = max(y1, y2)
        # nearest the box's top-left corner first, then its bottom-left, then further away
        spots = [(x1, y1 - h), (x1, y1), (x1, y1 + h), (x1, bottom), (x1, bottom - h), (x1, bottom - 2 * h)]
        for step in range(2, MAX_TAG_SHIFTS + 1):
            spots += [(x1, y1 + step * h), (x1, y1 - step * h), (x1, bottom + (step - 1) * h),
                      (x1, bottom - (step + 1) * h)]
        xy = np.array(spots, dtype=np.float64)
        xy[:, 0] = np.clip(xy[:, 0], 0, max(width - w, 0))
        xy[:, 1] = np.clip(xy[:, 1], 0, max(height - h, 0))
        xy = np.round(xy)
        # overlap area of every candidate with every placed tag
        ox = np.clip(np.minimum(xy[:, None, 0] + w, placed[None, :, 2]) - np.maximum(xy[:, None, 0], placed[None, :, 0]),
                     0, None)
        oy = np.clip(np.minimum(xy[:, None, 1] + h, placed[None, :, 3]) - np.maximum(xy[:, None, 1], placed[None, :, 1]),
                     0, None)
        overlap = (ox * oy).sum(axis=1)
        free = np.flatnonzero(overlap == 0)
        k = int(free[0]) if len(free) else int(np.argmin(overlap))
        x, y = int(xy[k, 0]), int(xy[k, 1])
        placed = np.vstack([placed, [x, y, x + w, y + h]])
        result[i] = (x, y)
    return result


MAX_TAG_SHIFTS = 6  # how many tag heights a tag may move away from its box to find a free spot


def _draw_tag(draw: ImageDraw.ImageDraw, font, text: str, x: int, y: int, size: tuple[int, int], color: RGB) -> None:
    # Filled tag in the class colour; black or white text, whichever reads better on it
    # (ITU-R BT.601 luma).
    w, h = size
    left, top, _, _ = draw.textbbox((0, 0), text, font=font)
    draw.rectangle([x, y, x + w - 1, y + h - 1], fill=color)
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    draw.text((x + TAG_PAD - left, y + TAG_PAD - top), text, fill=(0, 0, 0) if luma > 128 else (255, 255, 255),
              font=font)
